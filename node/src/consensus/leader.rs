//! Leader election: round-robin that skips validators which failed to lead
//! and have not shown since that they are back (leader reputation).
//!
//! Every block carries, besides its parent's certificate, what the chain
//! shows about its leaders ([`Leadership`]):
//!
//! - A block whose round is more than one above its parent's shows that
//!   the rounds in between ended without a certified block: their leaders
//!   *failed*. The leader of the first of them is the one the parent named
//!   (the validator its votes went to is suspected with it); the others
//!   were round-robin (they followed a timeout).
//! - A failed validator is *back* once it signs the certificate of a round
//!   after its failure (the one a later block carries) or proposes a block
//!   of a later round. An entry older than [`EXCLUDE_ROUNDS`] rounds is
//!   dropped, so a validator that never shows is tried again, rarely.
//!
//! The leader of round r is:
//!
//! - **after a certified round** (the proposal for r carries the QC of
//!   round r − 1, for block B): the first validator after B's proposer, in
//!   index order and wrapping around, that has not failed as of B (round-
//!   robin skipping the failed). A crashed validator fails the first round
//!   it is named for, and is skipped from then on until it votes again.
//! - **after a timed-out round** (the proposal carries a TC of r − 1):
//!   round-robin, `r mod n`. It must not depend on any certificate:
//!   validators that time out hold different highest certificates, and a
//!   rule that read them could leave every validator sure that another
//!   leads (the simulator found exactly that stall). A dead validator that
//!   round-robin lands on right after a timeout costs one more round.
//!
//! Every honest validator that holds B computes the same leader: the rule
//! reads B's chain (rounds, proposers, and the signers of the certificates
//! its blocks carry), nothing local. Safety does not depend on who leads
//! (each validator votes once per round whoever proposes); validators that
//! disagree (after a faulty leader sent one block with two certificates, or
//! about who led before a restarted validator's replay window) cost the
//! rounds they disagree about, which end by timeout.
//!
//! What a faulty validator can do with it: a faulty leader chooses which
//! votes (at least a quorum) its certificate carries, so it can keep a
//! failed honest validator marked failed for longer, and it can withhold
//! its block from the next vote collector to get honest validators
//! suspected (docs/consensus.md). The rotation order is fixed by index, so
//! f colluding validators cannot hand leadership to each other.

use super::messages::ValidatorIndex;
use std::collections::BTreeMap;

/// A failure older than this many rounds is forgotten: a validator that
/// never shows it is back is named again once per this many rounds (a
/// crashed one costs one round timeout each time).
pub const EXCLUDE_ROUNDS: u64 = 10_000;

/// The leader of `round` among `validators` validators by round-robin (the
/// rule after a timed-out round).
///
/// # Panics
/// If `validators` is 0 (genesis validation rules that out).
pub fn round_robin(round: u64, validators: usize) -> ValidatorIndex {
    assert!(validators > 0, "a validator set is never empty");
    let n = u64::try_from(validators).expect("at most 256 validators");
    u32::try_from(round % n).expect("index below validator count")
}

/// What a block's chain shows about leaders: who failed and is not back,
/// and who leads the round after the block when its proposal carries the
/// block's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// Validators that failed to lead and are not back, each with the
    /// (last) round it failed. At most one entry per validator.
    pub failed: BTreeMap<ValidatorIndex, u64>,
    /// The leader of the round after this block's, when the proposal for
    /// it carries this block's certificate.
    pub next: ValidatorIndex,
}

/// The facts of one block the rule reads.
#[derive(Debug, Clone, Copy)]
pub struct BlockFacts<'a> {
    /// Its round.
    pub round: u64,
    /// Its proposer.
    pub proposer: ValidatorIndex,
    /// Its parent's round (the round of the certificate it carries).
    pub parent_round: u64,
    /// The signers of the certificate it carries (of its parent).
    pub signers: &'a [ValidatorIndex],
}

impl Leadership {
    /// Genesis: nobody failed; round 1 is led by round-robin.
    pub fn genesis(validators: usize) -> Self {
        Self {
            failed: BTreeMap::new(),
            next: round_robin(1, validators),
        }
    }

    /// The leadership of `block`, whose parent's is `parent`, among
    /// `validators` validators.
    pub fn after(parent: &Leadership, block: BlockFacts<'_>, validators: usize) -> Self {
        let mut failed = failed_by(parent, block.parent_round, block.round, validators);
        failed.retain(|v, round| {
            let voted_since = block.signers.contains(v) && block.parent_round > *round;
            let proposed_since = *v == block.proposer && block.round > *round;
            !(voted_since || proposed_since)
        });
        let next = first_not_failed(block.proposer.saturating_add(1), &failed, validators)
            .unwrap_or_else(|| round_robin(block.round.saturating_add(1), validators));
        Self { failed, next }
    }
}

/// The failures as of a block of `round` whose parent (of `parent_round`)
/// has leadership `parent`: the parent's, less those older than
/// [`EXCLUDE_ROUNDS`], plus the leaders of the rounds in between, which
/// ended without a certified block. The first of them was led by the
/// validator the parent named, and its votes went to the one after that
/// (both suspected); each later one by round-robin (it followed a
/// timeout). Only the first and the last `validators` rounds of a long gap
/// are read.
fn failed_by(
    parent: &Leadership,
    parent_round: u64,
    round: u64,
    validators: usize,
) -> BTreeMap<ValidatorIndex, u64> {
    let mut failed = parent.failed.clone();
    failed.retain(|_, r| r.saturating_add(EXCLUDE_ROUNDS) >= round);
    let Some(first) = parent_round.checked_add(1) else {
        return failed;
    };
    if first >= round {
        return failed;
    }
    // The first round failed either at its leader or at the validator its
    // votes went to (the next leader it would have named, usually the
    // validator after it): both are suspected; the innocent one is back
    // with its next vote.
    failed.insert(parent.next, first);
    if let Some(collector) = first_not_failed(parent.next.saturating_add(1), &failed, validators) {
        failed.insert(collector, first);
    }
    let n = u64::try_from(validators).expect("at most 256 validators");
    let from = first.saturating_add(1).max(round.saturating_sub(n));
    for r in from..round {
        failed.insert(round_robin(r, validators), r);
    }
    failed
}

/// The first validator from `start` on (mod n), wrapping around, that has
/// not `failed`.
fn first_not_failed(
    start: ValidatorIndex,
    failed: &BTreeMap<ValidatorIndex, u64>,
    validators: usize,
) -> Option<ValidatorIndex> {
    let n = u32::try_from(validators).expect("at most 256 validators");
    (0..n)
        .map(|step| (start % n + step) % n)
        .find(|v| !failed.contains_key(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_after_a_timeout() {
        let leaders: Vec<_> = (0..9).map(|r| round_robin(r, 4)).collect();
        assert_eq!(leaders, vec![0, 1, 2, 3, 0, 1, 2, 3, 0]);
        assert_eq!(round_robin(u64::MAX, 7), (u64::MAX % 7) as u32);
    }

    fn facts(round: u64, proposer: u32, parent_round: u64, signers: &[u32]) -> BlockFacts<'_> {
        BlockFacts {
            round,
            proposer,
            parent_round,
            signers,
        }
    }

    fn failed(entries: &[(u32, u64)]) -> BTreeMap<u32, u64> {
        entries.iter().copied().collect()
    }

    /// One row: the parent's leadership, the block; the failures after it
    /// and the next leader.
    struct Step {
        parent: (&'static [(u32, u64)], u32),
        block: (u64, u32, u64, &'static [u32]),
        failed: &'static [(u32, u64)],
        next: u32,
    }

    #[test]
    fn leadership_table() {
        let rows = [
            // All up, consecutive rounds: the validator after the proposer.
            Step {
                parent: (&[], 1),
                block: (10, 1, 9, &[0, 1, 2]),
                failed: &[],
                next: 2,
            },
            // Round 10 (named: 3, its votes for 0) timed out: 3 and 0
            // suspected; 11 (3 by round-robin) too; 12 proposed by 0, back
            // by proposing. Next after 0 is 1.
            Step {
                parent: (&[], 3),
                block: (12, 0, 9, &[0, 1, 2]),
                failed: &[(3, 11)],
                next: 1,
            },
            // 3 failed: after 2 comes 0.
            Step {
                parent: (&[(3, 11)], 0),
                block: (20, 2, 19, &[0, 1, 2]),
                failed: &[(3, 11)],
                next: 0,
            },
            // 3 signed the certificate of round 19 > 11: back, and next.
            Step {
                parent: (&[(3, 11)], 0),
                block: (20, 2, 19, &[1, 2, 3]),
                failed: &[],
                next: 3,
            },
            // Its vote of round 11 itself does not clear it.
            Step {
                parent: (&[(3, 11)], 0),
                block: (12, 2, 11, &[1, 2, 3]),
                failed: &[(3, 11)],
                next: 0,
            },
            // Proposing a later round clears it.
            Step {
                parent: (&[(3, 11)], 3),
                block: (13, 3, 12, &[0, 1, 2]),
                failed: &[],
                next: 0,
            },
            // Forgotten after EXCLUDE_ROUNDS.
            Step {
                parent: (&[(3, 11)], 0),
                block: (11 + EXCLUDE_ROUNDS + 1, 2, 11 + EXCLUDE_ROUNDS, &[0, 1, 2]),
                failed: &[],
                next: 3,
            },
            // A long partition: every leader of its last rounds failed but
            // the proposer, who is back by proposing.
            Step {
                parent: (&[], 0),
                block: (100, 1, 50, &[]),
                failed: &[(0, 96), (2, 98), (3, 99)],
                next: 1,
            },
        ];
        for (i, s) in rows.iter().enumerate() {
            let parent = Leadership {
                failed: failed(s.parent.0),
                next: s.parent.1,
            };
            let (round, proposer, parent_round, signers) = s.block;
            let got = Leadership::after(&parent, facts(round, proposer, parent_round, signers), 4);
            assert_eq!(got.failed, failed(s.failed), "row {i}");
            assert_eq!(got.next, s.next, "row {i}");
        }
    }

    /// Leaders of a 4-validator chain where validator 3 is down from round
    /// `down` on: rounds it is named for time out (the next is led by
    /// round-robin). Returns the rounds lost.
    fn run(rounds: u64, down: u64) -> Vec<u64> {
        let n = 4;
        let mut chain = Leadership::genesis(n);
        let (mut parent_round, mut round, mut lost) = (0u64, 1u64, Vec::new());
        let mut by_timeout = false;
        while round < rounds {
            let leader = if by_timeout {
                round_robin(round, n)
            } else {
                chain.next
            };
            if leader == 3 && round >= down {
                lost.push(round);
                by_timeout = true;
                round += 1;
                continue;
            }
            let signers: Vec<u32> = (0..4).filter(|v| *v != 3 || round < down).collect();
            let facts = facts(round, leader, parent_round, &signers);
            chain = Leadership::after(&chain, facts, n);
            parent_round = round;
            round += 1;
            by_timeout = false;
        }
        lost
    }

    #[test]
    fn a_crashed_validator_costs_one_round_not_one_in_n() {
        for down in 100..110 {
            let lost = run(1_000, down);
            assert!(
                !lost.is_empty() && lost.len() <= 2,
                "down from {down}: {lost:?}"
            );
        }
        assert!(run(1_000, u64::MAX).is_empty());
    }
}
