//! The voting rules of 2-chain HotStuff (Jolteon, DiemBFT v4), one small pure
//! function each. [`super::SafetyRules`] applies them before signing.

use super::SafetyError;

/// Never sign twice in a round: a vote (or timeout) for `round` needs
/// `round > last_voted_round`.
pub fn check_round_is_new(round: u64, last_voted_round: u64) -> Result<(), SafetyError> {
    if round <= last_voted_round {
        return Err(SafetyError::RoundNotNew {
            round,
            last_voted_round,
        });
    }
    Ok(())
}

/// Vote only for a block that extends the certificate of the round just
/// before it (`block_round = qc_round + 1`), or, after a timeout certificate
/// of the round before it (`block_round = tc_round + 1`), a block whose
/// certificate is at least as high as every certificate the timeout signers
/// reported (`qc_round ≥ tc_high_qc_round`). This is the lock: once 2f + 1
/// honest validators certified a block, no later round's leader can get a
/// conflicting block voted for without extending that certificate.
pub fn check_safe_to_vote(
    block_round: u64,
    qc_round: u64,
    tc: Option<(u64, u64)>,
) -> Result<(), SafetyError> {
    if block_round == qc_round.saturating_add(1) {
        return Ok(());
    }
    match tc {
        Some((tc_round, tc_high_qc_round))
            if block_round == tc_round.saturating_add(1) && qc_round >= tc_high_qc_round =>
        {
            Ok(())
        }
        _ => Err(SafetyError::UnsafeToVote {
            block_round,
            qc_round,
            tc,
        }),
    }
}

/// Time out of `round` only when the round was entered by the certificate
/// (`round = qc_round + 1`) or timeout certificate (`round = tc_round + 1`)
/// of the round before, and never report a certificate lower than the
/// highest one already certified (`qc_round ≥ one_chain_round`).
pub fn check_safe_to_timeout(
    round: u64,
    qc_round: u64,
    tc_round: Option<u64>,
    one_chain_round: u64,
) -> Result<(), SafetyError> {
    let entered = round == qc_round.saturating_add(1)
        || tc_round.is_some_and(|t| round == t.saturating_add(1));
    if !entered || qc_round < one_chain_round {
        return Err(SafetyError::UnsafeToTimeout {
            round,
            qc_round,
            tc_round,
            one_chain_round,
        });
    }
    Ok(())
}

/// Propose at most one block per round.
pub fn check_proposal_round(round: u64, last_proposed_round: u64) -> Result<(), SafetyError> {
    if round <= last_proposed_round {
        return Err(SafetyError::ProposalRoundNotNew {
            round,
            last_proposed_round,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_table() {
        assert!(check_round_is_new(5, 4).is_ok());
        assert!(check_round_is_new(4, 4).is_err());
        assert!(check_round_is_new(3, 4).is_err());

        // (block_round, qc_round, tc) → safe?
        let cases = [
            (5, 4, None, true),
            (5, 3, None, false),
            (5, 3, Some((4, 3)), true),
            (5, 3, Some((4, 4)), false),
            (5, 2, Some((3, 2)), false),
            (6, 4, Some((4, 3)), false),
            (1, 0, None, true),
        ];
        for (b, q, tc, ok) in cases {
            assert_eq!(check_safe_to_vote(b, q, tc).is_ok(), ok, "{b} {q} {tc:?}");
        }

        // (round, qc_round, tc_round, one_chain_round) → safe?
        let cases = [
            (5, 4, None, 4, true),
            (5, 4, None, 5, false),
            (5, 3, Some(4), 3, true),
            (5, 3, Some(4), 4, false),
            (5, 3, None, 3, false),
        ];
        for (r, q, tc, one, ok) in cases {
            assert_eq!(
                check_safe_to_timeout(r, q, tc, one).is_ok(),
                ok,
                "{r} {q} {tc:?} {one}"
            );
        }
        assert!(check_proposal_round(3, 2).is_ok());
        assert!(check_proposal_round(2, 2).is_err());
    }
}
