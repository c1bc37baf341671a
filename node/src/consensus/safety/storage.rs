//! The persisted safety record and its byte layout.
//!
//! ```text
//! version(1)=1 ‖ last_voted_round(8) ‖ one_chain_round(8) ‖ highest_timeout_round(8)
//!   ‖ last_proposed_round(8) ‖ last_proposal_hash(32)
//!   ‖ has_vote(1) [ ‖ block_hash(32) ‖ round(8) ‖ height(8) ‖ signature(64) ]
//! ```

use super::SafetyError;
use crate::consensus::messages::Vote;
use chatpay_proto::{Hash, Signature};

const VERSION: u8 = 1;
const FIXED_LEN: usize = 1 + 8 * 4 + 32 + 1;
const VOTE_LEN: usize = 32 + 8 + 8 + 64;

/// What safety rules remember across restarts. Every field only grows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SafetyData {
    /// Highest round this validator voted or timed out in.
    pub last_voted_round: u64,
    /// Highest certified round seen (the 2-chain lock for timeouts).
    pub one_chain_round: u64,
    /// Highest round this validator timed out of.
    pub highest_timeout_round: u64,
    /// Highest round this validator proposed in.
    pub last_proposed_round: u64,
    /// Hash of the block proposed in `last_proposed_round`.
    pub last_proposal_hash: Hash,
    /// The last vote signed, returned again if asked for the same block.
    pub last_vote: Option<Vote>,
}

impl SafetyData {
    /// The byte layout above.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + VOTE_LEN);
        out.push(VERSION);
        for v in [
            self.last_voted_round,
            self.one_chain_round,
            self.highest_timeout_round,
            self.last_proposed_round,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(self.last_proposal_hash.as_bytes());
        match &self.last_vote {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(v.block_hash.as_bytes());
                out.extend_from_slice(&v.round.to_be_bytes());
                out.extend_from_slice(&v.height.to_be_bytes());
                out.extend_from_slice(v.signature.as_bytes());
            }
        }
        out
    }

    /// Decodes a stored record; `voter` is this validator's index.
    pub fn decode(bytes: &[u8], voter: u32) -> Result<Self, SafetyError> {
        let corrupt = |why: &str| SafetyError::CorruptData(why.to_owned());
        if bytes.len() < FIXED_LEN || bytes[0] != VERSION {
            return Err(corrupt("unknown version or truncated"));
        }
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let mut data = SafetyData {
            last_voted_round: u64_at(1),
            one_chain_round: u64_at(9),
            highest_timeout_round: u64_at(17),
            last_proposed_round: u64_at(25),
            last_proposal_hash: Hash::from_slice(&bytes[33..65]).expect("32 bytes"),
            last_vote: None,
        };
        match (bytes[65], bytes.len() - FIXED_LEN) {
            (0, 0) => {}
            (1, VOTE_LEN) => {
                let v = &bytes[FIXED_LEN..];
                data.last_vote = Some(Vote {
                    block_hash: Hash::from_slice(&v[..32]).expect("32 bytes"),
                    round: u64::from_be_bytes(v[32..40].try_into().expect("8 bytes")),
                    height: u64::from_be_bytes(v[40..48].try_into().expect("8 bytes")),
                    voter,
                    signature: Signature::from_slice(&v[48..]).expect("64 bytes"),
                });
            }
            _ => return Err(corrupt("bad vote field")),
        }
        Ok(data)
    }

    /// Whether `next` only moves forward from `self`.
    pub fn is_monotonic_successor(&self, next: &SafetyData) -> bool {
        next.last_voted_round >= self.last_voted_round
            && next.one_chain_round >= self.one_chain_round
            && next.highest_timeout_round >= self.highest_timeout_round
            && next.last_proposed_round >= self.last_proposed_round
    }
}
