//! Leader election: round-robin that skips validators which failed to lead
//! and have not shown since that they are back (leader reputation).
//!
//! Every block carries, besides its parent's certificate, what the chain
//! shows about its leaders ([`Leadership`]):
//!
//! - A block whose round is more than one above its parent's shows that
//!   the rounds in between ended without a certified block: their leaders
//!   *failed*. The leader of the first of them is the one the parent named;
//!   the others followed a timeout (the rule below).
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
//! - **after a timed-out round** (the proposal carries a TC of r − 1 and
//!   the QC of an earlier round, for block B): the first validator from
//!   `r mod n` on, wrapping around, that has not failed as of a block of
//!   round r on B (the leaders of the rounds after B's included); `r mod n`
//!   if every validator has. So a dead validator named once costs one
//!   round, not a second one when round-robin lands on it.
//!
//! Every honest validator that holds B computes the same leader: the rule
//! reads B's chain (rounds, proposers, and the signers of the certificates
//! its blocks carry), nothing local. Safety does not depend on who leads
//! (each validator votes once per round whoever proposes); validators that
//! disagree (one that restarted and rebuilt the failures from its store, see
//! `Core::new`) cost at most the rounds they disagree about, which end by
//! timeout, and a timed-out round makes them agree again.
//!
//! What a faulty validator can do with it: a faulty leader chooses which
//! votes (at least a quorum) its certificate carries, so it can keep a
//! failed honest validator marked failed for longer; it cannot mark an
//! honest validator failed without failing a round, which marks itself
//! too. The rotation order is fixed by index, so f colluding validators
//! cannot hand leadership to each other.

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

    /// Rule: the leader of `round` after a timed-out round, for a proposal
    /// extending the block with this leadership (of round `parent_round`):
    /// the first validator from `round mod n` on, wrapping around, that
    /// has not failed as of a block of `round` on that parent (the leaders
    /// of the rounds in between included); `round mod n` if all have.
    pub fn after_timeout(
        &self,
        parent_round: u64,
        round: u64,
        validators: usize,
    ) -> ValidatorIndex {
        let failed = failed_by(self, parent_round, round, validators);
        let start = u32::try_from(round % validators as u64).expect("below n");
        first_not_failed(start, &failed, validators).unwrap_or(start)
    }
}

/// The failures as of a block of `round` whose parent (of `parent_round`)
/// has leadership `parent`: the parent's, less those older than
/// [`EXCLUDE_ROUNDS`], plus the leaders of the rounds in between, which
/// ended without a certified block. The first of them was led by the
/// validator the parent named, and its votes went to the one after that
/// (both suspected); each later one by the rule after a timeout, applied
/// to the failures known by then. Only the first and the last `validators`
/// rounds of a long gap are read.
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
        let start = u32::try_from(r % n).expect("below n");
        let leader = first_not_failed(start, &failed, validators).unwrap_or(start);
        failed.insert(leader, r);
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
            // suspected; 11 (3 by round-robin, 0 suspected: so 1) too; 12
            // proposed by 0, back by proposing. Next after 0 is 2.
            Step {
                parent: (&[], 3),
                block: (12, 0, 9, &[0, 1, 2]),
                failed: &[(1, 11), (3, 10)],
                next: 2,
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
                failed: &[(0, 51), (2, 98), (3, 99)],
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
                chain.after_timeout(parent_round, round, n)
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
            assert_eq!(lost.len(), 1, "down from {down}: {lost:?}");
        }
        assert!(run(1_000, u64::MAX).is_empty());
    }

    #[test]
    fn after_a_timeout_the_failed_are_skipped_too() {
        // The parent (round 9) named 3, whose round 10 timed out: 3 and 0
        // (its votes' collector) are suspected, so round 11 (11 mod 4 = 3)
        // goes to the next that is not, 1.
        let parent = Leadership {
            failed: BTreeMap::new(),
            next: 3,
        };
        assert_eq!(parent.after_timeout(9, 11, 4), 1);
        // Round 12 after a timeout of 11 with a parent of 10: 3 and 0
        // suspected; 12 mod 4 = 0, so 1 leads.
        assert_eq!(parent.after_timeout(10, 12, 4), 1);
        // A failure of long ago expired; the round before (named: 0, votes
        // for 1) timed out: 2 leads.
        let old = Leadership {
            failed: failed(&[(1, 5)]),
            next: 0,
        };
        assert_eq!(
            old.after_timeout(EXCLUDE_ROUNDS + 11, EXCLUDE_ROUNDS + 13, 4),
            2
        );
    }
}
