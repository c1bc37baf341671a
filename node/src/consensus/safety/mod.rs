//! Safety rules: the only code that holds the validator key and signs votes,
//! timeouts and proposals.
//!
//! ```text
//!  request (block / round) ─▶ verify certificates ─▶ rules.rs checks
//!     ─▶ update SafetyData ─▶ Store::put_safety_data (fsync) ─▶ sign ─▶ return
//! ```
//!
//! Invariants:
//! - A signature leaves this module only after the state that forbids a
//!   conflicting one is durable, so a crash and restart (even `kill -9` right
//!   after a vote) cannot lead to two votes in one round.
//! - Asked again to vote for the block it already voted for, it returns the
//!   stored vote; asked for another block in a round it voted or timed out
//!   in, it refuses.
//! - The persisted record only moves forward (asserted).

mod rules;
mod storage;

pub use storage::SafetyData;

use super::messages::Proposal;
use super::messages::{Block, Timeout, TimeoutCertificate, ValidatorIndex, Vote};
use super::mutations::Mutations;
use crate::storage::{Store, StoreError};
use chatpay_proto::{ChainBinding, Hash, PublicKey, QuorumCertificate, SecretKey, Signature};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

/// Why safety rules refused to sign, or could not.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    /// Already voted or timed out in this round or a later one.
    #[error("round {round} is not above last voted round {last_voted_round}")]
    RoundNotNew {
        /// Round asked.
        round: u64,
        /// Last voted round.
        last_voted_round: u64,
    },
    /// The block does not follow its certificate or a timeout certificate.
    #[error(
        "unsafe to vote for round {block_round} with certificate of round {qc_round} and timeout certificate {tc:?}"
    )]
    UnsafeToVote {
        /// Block round.
        block_round: u64,
        /// Its certificate's round.
        qc_round: u64,
        /// (round, highest certificate round) of the timeout certificate.
        tc: Option<(u64, u64)>,
    },
    /// Timing out here could help a conflicting block.
    #[error(
        "unsafe to time out of round {round} (certificate {qc_round}, timeout certificate {tc_round:?}, certified {one_chain_round})"
    )]
    UnsafeToTimeout {
        /// Round asked.
        round: u64,
        /// Round of the certificate offered.
        qc_round: u64,
        /// Round of the timeout certificate offered.
        tc_round: Option<u64>,
        /// Highest certified round seen.
        one_chain_round: u64,
    },
    /// Already proposed in this round or a later one.
    #[error("already proposed in round {last_proposed_round}; refusing round {round}")]
    ProposalRoundNotNew {
        /// Round asked.
        round: u64,
        /// Last proposed round.
        last_proposed_round: u64,
    },
    /// Not this validator's block to propose.
    #[error("block proposer {proposer} is not this validator ({me})")]
    NotProposer {
        /// Header proposer.
        proposer: ValidatorIndex,
        /// This validator.
        me: ValidatorIndex,
    },
    /// A certificate did not verify.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// The block's certificate is not for its parent.
    #[error("block certificate is for {qc_block}, but the block's parent is {parent}")]
    WrongParent {
        /// Block the certificate certifies.
        qc_block: Hash,
        /// Parent named by the header.
        parent: Hash,
    },
    /// The stored record could not be read.
    #[error("corrupt safety data: {0}")]
    CorruptData(String),
    /// The record could not be persisted: the node must stop.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The signer of votes, timeouts and proposals for one validator.
pub struct SafetyRules {
    key: SecretKey,
    me: ValidatorIndex,
    validators: Vec<PublicKey>,
    genesis_block: Hash,
    /// The chain and epoch every signature is bound to.
    chain: ChainBinding,
    store: Arc<dyn Store>,
    data: SafetyData,
    mutations: Mutations,
    /// Certificates verified lately, newest last. The same certificate
    /// arrives in the proposal, the votes' next proposal and every timeout
    /// of a round; an identical one is not checked again (its validity is a
    /// function of its contents and the fixed validator set).
    verified: RefCell<VecDeque<Verified>>,
}

/// A certificate that verified.
#[derive(PartialEq, Eq)]
enum Verified {
    Quorum(QuorumCertificate),
    Timeout(TimeoutCertificate),
}

/// Verified certificates remembered (a few rounds' worth).
const VERIFIED_MEMORY: usize = 16;

impl SafetyRules {
    /// Loads the persisted record (or starts fresh) for validator `me` of
    /// the chain `chain`, whose genesis block hashes to `genesis_block`.
    ///
    /// # Panics
    /// If `key` is not the key of validator `me`.
    pub fn new(
        key: SecretKey,
        me: ValidatorIndex,
        validators: Vec<PublicKey>,
        genesis_block: Hash,
        chain: ChainBinding,
        store: Arc<dyn Store>,
    ) -> Result<Self, SafetyError> {
        assert_eq!(
            validators.get(me as usize),
            Some(key.public_key()),
            "safety rules key is not validator {me}'s"
        );
        let data = match store.safety_data()? {
            Some(bytes) => SafetyData::decode(&bytes, me)?,
            None => SafetyData::default(),
        };
        Ok(Self {
            key,
            me,
            validators,
            genesis_block,
            chain,
            store,
            data,
            mutations: Mutations::NONE,
            verified: RefCell::new(VecDeque::with_capacity(VERIFIED_MEMORY)),
        })
    }

    /// Breaks the rules named in `mutations` (simulation tests only; inert
    /// unless built with the `mutations` feature).
    pub fn set_mutations(&mut self, mutations: Mutations) {
        self.mutations = mutations;
    }

    /// The chain and epoch this validator signs for.
    pub fn chain(&self) -> &ChainBinding {
        &self.chain
    }

    /// The current record.
    pub fn data(&self) -> &SafetyData {
        &self.data
    }

    /// Checks a certificate; the genesis certificate (round 0, no
    /// signatures) is valid only for the genesis block.
    pub fn verify_certificate(&self, qc: &QuorumCertificate) -> Result<(), SafetyError> {
        if qc.round == 0 && qc.height == 0 && qc.signatures.is_empty() {
            return if qc.block_hash == self.genesis_block {
                Ok(())
            } else {
                Err(SafetyError::BadCertificate(
                    "genesis certificate for another block".into(),
                ))
            };
        }
        self.verify_once(Verified::Quorum(qc.clone()), |need| {
            qc.verify_with_quorum(&self.chain, &self.validators, need)
                .map_err(|e| e.to_string())
        })
    }

    /// Checks a timeout certificate, if there is one.
    pub fn verify_tc(&self, tc: Option<&TimeoutCertificate>) -> Result<(), SafetyError> {
        match tc {
            Some(tc) => self.verify_once(Verified::Timeout(tc.clone()), |need| {
                tc.verify_with_quorum(&self.chain, &self.validators, need)
                    .map_err(|e| e.to_string())
            }),
            None => Ok(()),
        }
    }

    /// Runs `check` (given the signatures needed) unless `certificate`
    /// verified lately; remembers it if it verifies now.
    fn verify_once(
        &self,
        certificate: Verified,
        check: impl FnOnce(usize) -> Result<(), String>,
    ) -> Result<(), SafetyError> {
        if self.verified.borrow().contains(&certificate) {
            return Ok(());
        }
        check(self.mutations.quorum(self.validators.len())).map_err(SafetyError::BadCertificate)?;
        let mut verified = self.verified.borrow_mut();
        if verified.len() == VERIFIED_MEMORY {
            verified.pop_front();
        }
        verified.push_back(certificate);
        Ok(())
    }

    /// Makes `next` the record: asserts it only moves forward, then persists
    /// it durably before anything signed under it is returned.
    fn persist(&mut self, next: SafetyData) -> Result<(), SafetyError> {
        assert!(
            self.data.is_monotonic_successor(&next),
            "safety data must only move forward: {:?} -> {next:?}",
            self.data
        );
        self.store.put_safety_data(&next.encode())?;
        self.data = next;
        Ok(())
    }

    fn observe_qc(next: &mut SafetyData, qc_round: u64) {
        next.one_chain_round = next.one_chain_round.max(qc_round);
    }

    /// Signs a vote for `block`, entered after `tc` if the round before ended
    /// by timeout.
    pub fn vote(
        &mut self,
        block: &Block,
        tc: Option<&TimeoutCertificate>,
    ) -> Result<Vote, SafetyError> {
        let header = &block.header;
        let hash = header.hash();
        if let Some(last) = &self.data.last_vote {
            if last.round == header.round && last.block_hash == hash {
                return Ok(last.clone());
            }
        }
        if block.justify.block_hash != header.parent_hash {
            return Err(SafetyError::WrongParent {
                qc_block: block.justify.block_hash,
                parent: header.parent_hash,
            });
        }
        self.verify_certificate(&block.justify)?;
        self.verify_tc(tc)?;
        if !self.mutations.vote_twice() {
            rules::check_round_is_new(header.round, self.data.last_voted_round)?;
        }
        let tc_rounds = tc.map(|t| (t.round, t.high_qc_round()));
        rules::check_safe_to_vote(header.round, block.justify.round, tc_rounds)?;
        let digest = Vote::digest(&self.chain, &hash, header.round, header.height);
        let vote = Vote {
            block_hash: hash,
            round: header.round,
            height: header.height,
            voter: self.me,
            signature: self.key.sign_digest(&digest),
        };
        let mut next = self.data.clone();
        Self::observe_qc(&mut next, block.justify.round);
        next.last_voted_round = header.round;
        next.last_vote = Some(vote.clone());
        self.persist(next)?;
        Ok(vote)
    }

    /// Signs a timeout of `round`, reporting `high_qc`, entered after `tc`.
    pub fn timeout(
        &mut self,
        round: u64,
        high_qc: &QuorumCertificate,
        tc: Option<&TimeoutCertificate>,
    ) -> Result<Timeout, SafetyError> {
        self.verify_certificate(high_qc)?;
        self.verify_tc(tc)?;
        let mut next = self.data.clone();
        Self::observe_qc(&mut next, high_qc.round);
        rules::check_safe_to_timeout(
            round,
            high_qc.round,
            tc.map(|t| t.round),
            self.data.one_chain_round,
        )?;
        if round < self.data.last_voted_round {
            return Err(SafetyError::RoundNotNew {
                round,
                last_voted_round: self.data.last_voted_round,
            });
        }
        // After timing out of a round, never vote in it.
        next.last_voted_round = next.last_voted_round.max(round);
        next.highest_timeout_round = next.highest_timeout_round.max(round);
        self.persist(next)?;
        Ok(Timeout {
            round,
            high_qc: high_qc.clone(),
            sender: self.me,
            signature: self
                .key
                .sign_digest(&Timeout::digest(&self.chain, round, high_qc.round)),
            last_round_tc: tc
                .filter(|t| t.round.checked_add(1) == Some(round))
                .cloned(),
        })
    }

    /// Signs this validator's proposal of `block` carrying `tc` (one block
    /// per round).
    pub fn sign_proposal(
        &mut self,
        block: &Block,
        tc: Option<&TimeoutCertificate>,
    ) -> Result<Signature, SafetyError> {
        let header = &block.header;
        if header.proposer != self.me {
            return Err(SafetyError::NotProposer {
                proposer: header.proposer,
                me: self.me,
            });
        }
        let hash = header.hash();
        let again =
            header.round == self.data.last_proposed_round && hash == self.data.last_proposal_hash;
        if !again {
            rules::check_proposal_round(header.round, self.data.last_proposed_round)?;
            let mut next = self.data.clone();
            next.last_proposed_round = header.round;
            next.last_proposal_hash = hash;
            self.persist(next)?;
        }
        Ok(self
            .key
            .sign(&Proposal::signing_bytes(&self.chain, block, tc)))
    }
}

#[cfg(test)]
mod tests;
