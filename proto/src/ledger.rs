//! Ledger types shared by validators and wallets: receipts, block headers,
//! quorum certificates and accounts, with their canonical bytes.

use crate::crypto::{PublicKey, Signature, SignatureError};
use crate::hash::{Hash, sha256};
use std::collections::BTreeSet;

/// Domain tag of a block header's canonical bytes.
const HEADER_DOMAIN_TAG: &[u8] = b"chatpay/block-header\0";
/// Domain tag of a vote's canonical bytes.
const VOTE_DOMAIN_TAG: &[u8] = b"chatpay/vote\0";
/// Domain tag of a timeout's canonical bytes.
const TIMEOUT_DOMAIN_TAG: &[u8] = b"chatpay/timeout\0";
/// Domain tag of a proposal's canonical bytes.
const PROPOSAL_DOMAIN_TAG: &[u8] = b"chatpay/proposal\0";
/// Version byte of the header and vote layouts.
const LAYOUT_VERSION: u8 = 1;

/// Outcome of executing an included transaction. The discriminant is the
/// byte used in Merkle leaves and equals the protobuf enum value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ReceiptCode {
    /// Executed: outputs credited, amounts and fee debited, nonce advanced.
    Success = 1,
    /// The sender has no account.
    UnknownSender = 2,
    /// The nonce is not the sender's last nonce + 1.
    BadNonce = 3,
    /// Balance below the sum of amounts plus fee.
    InsufficientFunds = 4,
    /// Fee below the chain's fee per transfer.
    FeeTooLow = 5,
    /// A sum or a credited balance would overflow u64.
    Overflow = 6,
    /// Chain id does not match.
    WrongChain = 7,
    /// Signature does not verify.
    BadSignature = 8,
    /// Zero amount in an output.
    BadOutputs = 9,
}

impl ReceiptCode {
    /// All codes, in discriminant order.
    pub const ALL: [ReceiptCode; 9] = [
        Self::Success,
        Self::UnknownSender,
        Self::BadNonce,
        Self::InsufficientFunds,
        Self::FeeTooLow,
        Self::Overflow,
        Self::WrongChain,
        Self::BadSignature,
        Self::BadOutputs,
    ];

    /// The code with this discriminant, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| *c as u8 == value)
    }

    /// Stable lowercase name for logs and CLIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::UnknownSender => "unknown_sender",
            Self::BadNonce => "bad_nonce",
            Self::InsufficientFunds => "insufficient_funds",
            Self::FeeTooLow => "fee_too_low",
            Self::Overflow => "overflow",
            Self::WrongChain => "wrong_chain",
            Self::BadSignature => "bad_signature",
            Self::BadOutputs => "bad_outputs",
        }
    }
}

/// Receipt of an included transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// What happened.
    pub code: ReceiptCode,
}

impl Receipt {
    /// Whether the transfer took effect.
    pub fn is_success(&self) -> bool {
        self.code == ReceiptCode::Success
    }
}

/// Header of a block; its hash identifies the block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Hash of the genesis this chain started from.
    pub genesis_hash: Hash,
    /// Height (genesis 0, first block 1).
    pub height: u64,
    /// Consensus round the block was proposed in.
    pub round: u64,
    /// Hash of the parent header.
    pub parent_hash: Hash,
    /// Proposer index in the genesis validator set.
    pub proposer: u32,
    /// Proposer's clock, ms since the Unix epoch (informational).
    pub timestamp_ms: u64,
    /// Number of transactions.
    pub tx_count: u32,
    /// Merkle root over (tx id, receipt) leaves.
    pub tx_root: Hash,
    /// Digest of the ledger state after this block.
    pub state_digest: Hash,
}

impl BlockHeader {
    /// Canonical bytes (`docs/protocol.md`, "Block header").
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_DOMAIN_TAG.len() + 1 + 32 * 4 + 8 * 3 + 4 * 2);
        out.extend_from_slice(HEADER_DOMAIN_TAG);
        out.push(LAYOUT_VERSION);
        out.extend_from_slice(self.genesis_hash.as_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(self.parent_hash.as_bytes());
        out.extend_from_slice(&self.proposer.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.tx_count.to_be_bytes());
        out.extend_from_slice(self.tx_root.as_bytes());
        out.extend_from_slice(self.state_digest.as_bytes());
        out
    }

    /// Block hash = SHA-256(canonical bytes).
    pub fn hash(&self) -> Hash {
        sha256(&self.canonical_bytes())
    }
}

/// The bytes a validator signs to vote for a block.
pub fn vote_signing_bytes(block_hash: &Hash, round: u64, height: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(VOTE_DOMAIN_TAG.len() + 1 + 32 + 16);
    out.extend_from_slice(VOTE_DOMAIN_TAG);
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(block_hash.as_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out
}

/// The bytes a validator signs to time out of `round`, naming the round of
/// the highest quorum certificate it knows (0 if none beyond genesis).
pub fn timeout_signing_bytes(round: u64, high_qc_round: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(TIMEOUT_DOMAIN_TAG.len() + 1 + 16);
    out.extend_from_slice(TIMEOUT_DOMAIN_TAG);
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&high_qc_round.to_be_bytes());
    out
}

/// The bytes a leader signs to propose the block with hash `block_hash`.
pub fn proposal_signing_bytes(block_hash: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROPOSAL_DOMAIN_TAG.len() + 1 + 32);
    out.extend_from_slice(PROPOSAL_DOMAIN_TAG);
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(block_hash.as_bytes());
    out
}

/// One validator's signature in a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidatorSignature {
    /// Index in the genesis validator set.
    pub validator: u32,
    /// Signature over the vote bytes.
    pub signature: Signature,
}

/// Why a quorum certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A signer index outside the validator set.
    #[error("signer index {index} is not a validator (set has {validators})")]
    UnknownValidator {
        /// Index given.
        index: u32,
        /// Size of the validator set.
        validators: usize,
    },
    /// The same validator signed twice.
    #[error("validator {index} appears twice in the certificate")]
    DuplicateSigner {
        /// Index repeated.
        index: u32,
    },
    /// Fewer than 2f + 1 distinct signers.
    #[error("certificate has {signers} signers, needs {quorum}")]
    NoQuorum {
        /// Distinct signers.
        signers: usize,
        /// 2f + 1.
        quorum: usize,
    },
    /// One signature does not verify.
    #[error("signature of validator {index} is invalid: {source}")]
    BadSignature {
        /// Signer index.
        index: u32,
        /// Why.
        source: SignatureError,
    },
}

/// Votes needed out of `n` validators: 2f + 1 with f = ⌊(n − 1) / 3⌋.
pub fn quorum(n: usize) -> usize {
    2 * (n.saturating_sub(1) / 3) + 1
}

/// 2f + 1 validator votes for one block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuorumCertificate {
    /// Certified block hash.
    pub block_hash: Hash,
    /// Round the block was proposed in.
    pub round: u64,
    /// Height of the block.
    pub height: u64,
    /// Signatures of distinct validators.
    pub signatures: Vec<ValidatorSignature>,
}

impl QuorumCertificate {
    /// Checks 2f + 1 distinct, known, valid signatures against `validators`
    /// (the genesis validator set, in order).
    pub fn verify(&self, validators: &[PublicKey]) -> Result<(), CertificateError> {
        self.verify_with_quorum(validators, quorum(validators.len()))
    }

    /// Checks `need` distinct, known, valid signatures. Only [`Self::verify`]
    /// (need = 2f + 1) is safe; a lower bound exists so tests can show what
    /// accepting less would break.
    pub fn verify_with_quorum(
        &self,
        validators: &[PublicKey],
        need: usize,
    ) -> Result<(), CertificateError> {
        let mut seen = BTreeSet::new();
        for sig in &self.signatures {
            let index = sig.validator;
            if usize::try_from(index).map_or(true, |i| i >= validators.len()) {
                return Err(CertificateError::UnknownValidator {
                    index,
                    validators: validators.len(),
                });
            }
            if !seen.insert(index) {
                return Err(CertificateError::DuplicateSigner { index });
            }
        }
        if seen.len() < need {
            return Err(CertificateError::NoQuorum {
                signers: seen.len(),
                quorum: need,
            });
        }
        let digest = sha256(&vote_signing_bytes(
            &self.block_hash,
            self.round,
            self.height,
        ));
        for sig in &self.signatures {
            let key = &validators[sig.validator as usize];
            key.verify_digest(&digest, &sig.signature)
                .map_err(|source| CertificateError::BadSignature {
                    index: sig.validator,
                    source,
                })?;
        }
        Ok(())
    }
}

/// State of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Account {
    /// Balance in base units.
    pub balance: u64,
    /// Last committed nonce (0 if the account never sent).
    pub nonce: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn keys(n: u8) -> Vec<SecretKey> {
        (1..=n)
            .map(|i| {
                let mut b = [0u8; 32];
                b[31] = i;
                SecretKey::from_slice(&b).unwrap()
            })
            .collect()
    }

    fn qc(signers: &[(u32, &SecretKey)]) -> QuorumCertificate {
        let block_hash = sha256(b"block");
        let msg = vote_signing_bytes(&block_hash, 3, 2);
        QuorumCertificate {
            block_hash,
            round: 3,
            height: 2,
            signatures: signers
                .iter()
                .map(|(i, k)| ValidatorSignature {
                    validator: *i,
                    signature: k.sign(&msg),
                })
                .collect(),
        }
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!([1, 4, 5, 7, 10].map(quorum), [1, 3, 3, 5, 7]);
    }

    #[test]
    fn certificate_rules() {
        let ks = keys(4);
        let set: Vec<PublicKey> = ks.iter().map(|k| k.public_key().clone()).collect();
        qc(&[(0, &ks[0]), (1, &ks[1]), (3, &ks[3])])
            .verify(&set)
            .unwrap();
        assert_eq!(
            qc(&[(0, &ks[0]), (1, &ks[1])]).verify(&set),
            Err(CertificateError::NoQuorum {
                signers: 2,
                quorum: 3
            })
        );
        assert_eq!(
            qc(&[(0, &ks[0]), (0, &ks[0]), (1, &ks[1])]).verify(&set),
            Err(CertificateError::DuplicateSigner { index: 0 })
        );
        assert!(matches!(
            qc(&[(0, &ks[0]), (1, &ks[1]), (4, &ks[3])]).verify(&set),
            Err(CertificateError::UnknownValidator { index: 4, .. })
        ));
        // Right index, wrong key: a forged signature.
        assert!(matches!(
            qc(&[(0, &ks[0]), (1, &ks[1]), (2, &ks[3])]).verify(&set),
            Err(CertificateError::BadSignature { index: 2, .. })
        ));
    }

    #[test]
    fn receipt_codes_round_trip() {
        for c in ReceiptCode::ALL {
            assert_eq!(ReceiptCode::from_u8(c as u8), Some(c));
        }
        assert_eq!(ReceiptCode::from_u8(0), None);
    }
}
