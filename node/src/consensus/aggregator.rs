//! Collects verified votes into quorum certificates and timeouts into
//! timeout certificates, and detects equivocation.
//!
//! Inputs must already be signature-checked. The caller bounds which rounds
//! are accepted and prunes old ones ([`Aggregator::prune_below`]), so memory
//! is bounded by (rounds kept) × (validators).

use super::messages::{Timeout, TimeoutCertificate, TimeoutSignature, ValidatorIndex, Vote};
use chatpay_proto::{Hash, QuorumCertificate, ValidatorSignature, quorum};
use std::collections::BTreeMap;

/// Two signed votes of one validator for different blocks in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    /// The first vote seen.
    pub first: Vote,
    /// The conflicting vote.
    pub second: Vote,
}

/// What adding a vote produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted; no certificate yet.
    Counted,
    /// Already counted (same voter, same block).
    Duplicate,
    /// The vote completed a certificate (returned once per block).
    Certified(QuorumCertificate),
    /// The voter already voted for another block in this round; not counted.
    Equivocation(Box<Equivocation>),
}

#[derive(Default)]
struct RoundVotes {
    by_voter: BTreeMap<ValidatorIndex, Vote>,
    /// Signatures per block hash and height (a vote signs both: one that
    /// names another height for the block would spoil the certificate).
    by_block: BTreeMap<(Hash, u64), Vec<ValidatorSignature>>,
    certified: Option<(Hash, u64)>,
}

#[derive(Default)]
struct RoundTimeouts {
    by_sender: BTreeMap<ValidatorIndex, TimeoutSignature>,
    high_qc: Option<QuorumCertificate>,
    done: bool,
}

/// Vote and timeout aggregation for a validator set of `n`.
pub struct Aggregator {
    quorum: usize,
    votes: BTreeMap<u64, RoundVotes>,
    timeouts: BTreeMap<u64, RoundTimeouts>,
}

impl Aggregator {
    /// An empty aggregator for `validators` validators.
    pub fn new(validators: usize) -> Self {
        Self::with_quorum(quorum(validators))
    }

    /// An empty aggregator that certifies with `quorum` signatures.
    pub fn with_quorum(quorum: usize) -> Self {
        Self {
            quorum,
            votes: BTreeMap::new(),
            timeouts: BTreeMap::new(),
        }
    }

    /// Adds a verified vote.
    pub fn add_vote(&mut self, vote: Vote) -> VoteOutcome {
        let round = self.votes.entry(vote.round).or_default();
        if let Some(first) = round.by_voter.get(&vote.voter) {
            if first.block_hash == vote.block_hash {
                return VoteOutcome::Duplicate;
            }
            let first = first.clone();
            return VoteOutcome::Equivocation(Box::new(Equivocation {
                first,
                second: vote,
            }));
        }
        round.by_voter.insert(vote.voter, vote.clone());
        let key = (vote.block_hash, vote.height);
        let signers = round.by_block.entry(key).or_default();
        signers.push(ValidatorSignature {
            validator: vote.voter,
            signature: vote.signature,
        });
        if signers.len() >= self.quorum && round.certified != Some(key) {
            // At most one block per round can reach a quorum among honest
            // votes; if two do, 2f + 1 + 2f + 1 - n > f validators equivocated.
            round.certified = Some(key);
            let mut signatures = signers.clone();
            signatures.sort_by_key(|s| s.validator);
            return VoteOutcome::Certified(QuorumCertificate {
                block_hash: vote.block_hash,
                round: vote.round,
                height: vote.height,
                signatures,
            });
        }
        VoteOutcome::Counted
    }

    /// `qc` with every vote for its block received here since, when that
    /// is more than it carries: a leader proposes with the fullest
    /// certificate it has, so that a validator whose vote came after the
    /// quorum is seen to be up (leader reputation reads the signers).
    pub fn fullest(&self, qc: &QuorumCertificate) -> QuorumCertificate {
        let Some(signers) = self
            .votes
            .get(&qc.round)
            .and_then(|r| r.by_block.get(&(qc.block_hash, qc.height)))
        else {
            return qc.clone();
        };
        if signers.len() <= qc.signatures.len() {
            return qc.clone();
        }
        let mut signatures = signers.clone();
        signatures.sort_by_key(|s| s.validator);
        QuorumCertificate {
            signatures,
            ..qc.clone()
        }
    }

    /// Adds a verified timeout; returns the timeout certificate and the
    /// highest certificate its signers reported, once, when 2f + 1 distinct
    /// validators timed out of the round.
    pub fn add_timeout(
        &mut self,
        timeout: Timeout,
    ) -> Option<(TimeoutCertificate, QuorumCertificate)> {
        let round = self.timeouts.entry(timeout.round).or_default();
        if round.done || round.by_sender.contains_key(&timeout.sender) {
            return None;
        }
        round.by_sender.insert(
            timeout.sender,
            TimeoutSignature {
                sender: timeout.sender,
                high_qc_round: timeout.high_qc.round,
                signature: timeout.signature,
            },
        );
        if round
            .high_qc
            .as_ref()
            .is_none_or(|q| q.round < timeout.high_qc.round)
        {
            round.high_qc = Some(timeout.high_qc);
        }
        if round.by_sender.len() < self.quorum {
            return None;
        }
        round.done = true;
        let mut signatures: Vec<TimeoutSignature> = round.by_sender.values().cloned().collect();
        signatures.sort_by_key(|s| s.sender);
        let tc = TimeoutCertificate {
            round: timeout.round,
            signatures,
        };
        Some((tc, round.high_qc.clone().expect("set above")))
    }

    /// How many distinct validators timed out of `round` (as far as
    /// this validator has heard).
    pub fn timed_out(&self, round: u64) -> usize {
        self.timeouts.get(&round).map_or(0, |r| r.by_sender.len())
    }

    /// Forgets rounds below `round`.
    pub fn prune_below(&mut self, round: u64) {
        self.votes = self.votes.split_off(&round);
        self.timeouts = self.timeouts.split_off(&round);
    }

    /// Rounds with votes or timeouts held.
    pub fn rounds_held(&self) -> usize {
        self.votes.len() + self.timeouts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatpay_proto::{SecretKey, sha256};

    fn key(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n + 1;
        SecretKey::from_slice(&b).unwrap()
    }

    fn chain() -> chatpay_proto::ChainBinding {
        chatpay_proto::ChainBinding::genesis(sha256(b"genesis"))
    }

    fn vote(voter: u8, round: u64, block: &[u8]) -> Vote {
        let block_hash = sha256(block);
        Vote {
            block_hash,
            round,
            height: round,
            voter: u32::from(voter),
            signature: key(voter).sign_digest(&Vote::digest(&chain(), &block_hash, round, round)),
        }
    }

    fn timeout(sender: u8, round: u64, hqc_round: u64) -> Timeout {
        let high_qc = QuorumCertificate {
            block_hash: sha256(&hqc_round.to_be_bytes()),
            round: hqc_round,
            height: hqc_round,
            signatures: vec![],
        };
        Timeout {
            round,
            high_qc,
            sender: u32::from(sender),
            signature: key(sender).sign_digest(&Timeout::digest(&chain(), round, hqc_round)),
            last_round_tc: None,
        }
    }

    #[test]
    fn quorum_of_distinct_votes_makes_one_certificate() {
        let mut agg = Aggregator::new(4);
        assert_eq!(agg.add_vote(vote(0, 1, b"a")), VoteOutcome::Counted);
        assert_eq!(agg.add_vote(vote(0, 1, b"a")), VoteOutcome::Duplicate);
        assert_eq!(agg.add_vote(vote(1, 1, b"a")), VoteOutcome::Counted);
        let VoteOutcome::Certified(qc) = agg.add_vote(vote(3, 1, b"a")) else {
            panic!("no QC")
        };
        assert_eq!(
            qc.signatures
                .iter()
                .map(|s| s.validator)
                .collect::<Vec<_>>(),
            vec![0, 1, 3]
        );
        let validators: Vec<_> = (0..4).map(|i| key(i).public_key().clone()).collect();
        qc.verify(&chain(), &validators).unwrap();
        // The fourth vote does not make a second certificate.
        assert_eq!(agg.add_vote(vote(2, 1, b"a")), VoteOutcome::Counted);
    }

    #[test]
    fn a_vote_naming_another_height_does_not_spoil_the_certificate() {
        // A faulty validator votes for the block with a wrong height: its
        // signature is valid for what it signed, and would make a
        // certificate of the true height fail to verify everywhere.
        let mut agg = Aggregator::new(4);
        let mut wrong = vote(2, 1, b"a");
        wrong.height = 9;
        wrong.signature = key(2).sign_digest(&Vote::digest(&chain(), &wrong.block_hash, 1, 9));
        agg.add_vote(wrong);
        assert_eq!(agg.add_vote(vote(0, 1, b"a")), VoteOutcome::Counted);
        assert_eq!(agg.add_vote(vote(1, 1, b"a")), VoteOutcome::Counted);
        let VoteOutcome::Certified(qc) = agg.add_vote(vote(3, 1, b"a")) else {
            panic!("no QC")
        };
        let validators: Vec<_> = (0..4).map(|i| key(i).public_key().clone()).collect();
        qc.verify(&chain(), &validators).unwrap();
    }

    #[test]
    fn the_fullest_certificate_carries_late_votes() {
        let mut agg = Aggregator::new(4);
        agg.add_vote(vote(0, 1, b"a"));
        agg.add_vote(vote(1, 1, b"a"));
        let VoteOutcome::Certified(qc) = agg.add_vote(vote(2, 1, b"a")) else {
            panic!("no QC")
        };
        assert_eq!(agg.fullest(&qc), qc);
        agg.add_vote(vote(3, 1, b"a"));
        let full = agg.fullest(&qc);
        assert_eq!(full.signatures.len(), 4);
        let validators: Vec<_> = (0..4).map(|i| key(i).public_key().clone()).collect();
        full.verify(&chain(), &validators).unwrap();
    }

    #[test]
    fn conflicting_votes_are_evidence_and_not_counted() {
        let mut agg = Aggregator::new(4);
        agg.add_vote(vote(0, 2, b"a"));
        let VoteOutcome::Equivocation(e) = agg.add_vote(vote(0, 2, b"b")) else {
            panic!()
        };
        assert_eq!(
            (e.first.block_hash, e.second.block_hash),
            (sha256(b"a"), sha256(b"b"))
        );
        agg.add_vote(vote(1, 2, b"b"));
        // Only voters 1 and 2 count for b: no certificate from the equivocator.
        assert_eq!(agg.add_vote(vote(2, 2, b"b")), VoteOutcome::Counted);
    }

    #[test]
    fn timeouts_make_one_certificate_with_the_highest_qc() {
        let mut agg = Aggregator::new(4);
        assert!(agg.add_timeout(timeout(0, 5, 3)).is_none());
        assert!(agg.add_timeout(timeout(0, 5, 3)).is_none());
        assert!(agg.add_timeout(timeout(1, 5, 4)).is_none());
        let (tc, high) = agg.add_timeout(timeout(2, 5, 2)).unwrap();
        assert_eq!((tc.round, tc.high_qc_round(), high.round), (5, 4, 4));
        let validators: Vec<_> = (0..4).map(|i| key(i).public_key().clone()).collect();
        tc.verify(&chain(), &validators).unwrap();
        assert!(
            agg.add_timeout(timeout(3, 5, 4)).is_none(),
            "once per round"
        );
    }

    #[test]
    fn pruning_bounds_memory() {
        let mut agg = Aggregator::new(4);
        for r in 1..=10 {
            agg.add_vote(vote(0, r, b"x"));
            agg.add_timeout(timeout(0, r, r - 1));
        }
        assert_eq!(agg.rounds_held(), 20);
        agg.prune_below(8);
        assert_eq!(agg.rounds_held(), 6);
    }
}
