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
/// Domain tag of a quorum certificate's canonical bytes (what a proposal
/// signature covers of its `justify`).
const QC_DOMAIN_TAG: &[u8] = b"chatpay/qc\0";
/// Domain tag of a timeout certificate's canonical bytes.
const TC_DOMAIN_TAG: &[u8] = b"chatpay/tc\0";
/// Version byte of the header layout: 2 since `state_root` is the root of
/// the state tree (1 held a hash chain of state changes).
const LAYOUT_VERSION: u8 = 2;
/// Version byte of the consensus signing layouts (votes, timeouts,
/// proposals, certificates): 2 binds each to a chain and an epoch.
const CONSENSUS_LAYOUT_VERSION: u8 = 2;

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
    /// Signed for another network (genesis hash).
    WrongChain = 7,
    /// Signature does not verify.
    BadSignature = 8,
    /// Zero amount in an output.
    BadOutputs = 9,
    /// The block's timestamp is past the transfer's expiry.
    Expired = 10,
}

impl ReceiptCode {
    /// All codes, in discriminant order.
    pub const ALL: [ReceiptCode; 10] = [
        Self::Success,
        Self::UnknownSender,
        Self::BadNonce,
        Self::InsufficientFunds,
        Self::FeeTooLow,
        Self::Overflow,
        Self::WrongChain,
        Self::BadSignature,
        Self::BadOutputs,
        Self::Expired,
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
            Self::Expired => "expired",
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
    /// Root of the state tree after this block (every account and the
    /// burned total; `chatpay_proto::state`, docs/ledger.md).
    pub state_root: Hash,
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
        out.extend_from_slice(self.state_root.as_bytes());
        out
    }

    /// Block hash = SHA-256(canonical bytes).
    pub fn hash(&self) -> Hash {
        sha256(&self.canonical_bytes())
    }
}

/// What every consensus signature is bound to: one chain (the hash of its
/// genesis block) and one validator-set epoch (0 until validator-set
/// changes exist). A vote, timeout or proposal signed for another chain or
/// epoch does not verify here, even where validators reuse a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainBinding {
    /// Hash of the genesis block header.
    pub genesis_hash: Hash,
    /// Validator-set epoch.
    pub epoch: u64,
}

impl ChainBinding {
    /// The binding of epoch 0 of the chain whose genesis header hashes to
    /// `genesis_hash`.
    pub fn genesis(genesis_hash: Hash) -> Self {
        Self {
            genesis_hash,
            epoch: 0,
        }
    }

    /// Tag ‖ version ‖ genesis hash ‖ epoch: how every consensus layout starts.
    fn prefix(&self, tag: &[u8], extra: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(tag.len() + 1 + 32 + 8 + extra);
        out.extend_from_slice(tag);
        out.push(CONSENSUS_LAYOUT_VERSION);
        out.extend_from_slice(self.genesis_hash.as_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out
    }
}

/// The bytes a validator signs to vote for a block (docs/protocol.md).
pub fn vote_signing_bytes(
    chain: &ChainBinding,
    block_hash: &Hash,
    round: u64,
    height: u64,
) -> Vec<u8> {
    let mut out = chain.prefix(VOTE_DOMAIN_TAG, 32 + 16);
    out.extend_from_slice(block_hash.as_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out
}

/// The bytes a validator signs to time out of `round`, naming the round of
/// the highest quorum certificate it knows (0 if none beyond genesis).
pub fn timeout_signing_bytes(chain: &ChainBinding, round: u64, high_qc_round: u64) -> Vec<u8> {
    let mut out = chain.prefix(TIMEOUT_DOMAIN_TAG, 16);
    out.extend_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&high_qc_round.to_be_bytes());
    out
}

/// The bytes a leader signs to propose: the block hash, the digest of the
/// certificate it carries (`justify`, [`QuorumCertificate::digest`]) and
/// the digest of the timeout certificate it carries, if any
/// ([`timeout_certificate_digest`]; 32 zero bytes without one). Nothing in
/// a proposal can be swapped without breaking its signature.
pub fn proposal_signing_bytes(
    chain: &ChainBinding,
    block_hash: &Hash,
    justify_digest: &Hash,
    tc_digest: Option<&Hash>,
) -> Vec<u8> {
    let mut out = chain.prefix(PROPOSAL_DOMAIN_TAG, 32 * 3);
    out.extend_from_slice(block_hash.as_bytes());
    out.extend_from_slice(justify_digest.as_bytes());
    out.extend_from_slice(tc_digest.map_or(&[0u8; 32], |d| d.as_bytes()));
    out
}

/// SHA-256 of a timeout certificate's canonical bytes: tag ‖ version ‖
/// round(8) ‖ count(4) ‖ (sender(4) ‖ high_qc_round(8) ‖ signature(64))*,
/// signers in the order carried.
pub fn timeout_certificate_digest<'a>(
    round: u64,
    signers: impl ExactSizeIterator<Item = (u32, u64, &'a Signature)>,
) -> Hash {
    let mut out = Vec::with_capacity(TC_DOMAIN_TAG.len() + 13 + signers.len() * 76);
    out.extend_from_slice(TC_DOMAIN_TAG);
    out.push(CONSENSUS_LAYOUT_VERSION);
    out.extend_from_slice(&round.to_be_bytes());
    let count = u32::try_from(signers.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (sender, high_qc_round, signature) in signers {
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&high_qc_round.to_be_bytes());
        out.extend_from_slice(signature.as_bytes());
    }
    sha256(&out)
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
    /// Fewer than [`quorum`] distinct signers.
    #[error("certificate has {signers} signers, needs {quorum}")]
    NoQuorum {
        /// Distinct signers.
        signers: usize,
        /// [`quorum`] of the validator set.
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

/// Faulty validators tolerated out of `n`: f = ⌊(n − 1) / 3⌋.
pub fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// Votes needed out of `n` validators: n − f. Any two quorums share at
/// least n − 2f ≥ f + 1 validators (one of them honest, who signs once per
/// round), and the n − f honest validators make a quorum on their own. For
/// n = 3f + 1 this is 2f + 1; for other n it is more (n = 6: 5, not 3).
pub fn quorum(n: usize) -> usize {
    n - max_faulty(n)
}

/// A [`quorum`] of validator votes for one block.
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
    /// Checks a [`quorum`] of distinct, known, valid signatures of votes
    /// bound to `chain` against `validators` (its validator set, in order).
    pub fn verify(
        &self,
        chain: &ChainBinding,
        validators: &[PublicKey],
    ) -> Result<(), CertificateError> {
        self.verify_with_quorum(chain, validators, quorum(validators.len()))
    }

    /// SHA-256 of the certificate's canonical bytes: tag ‖ version ‖
    /// block_hash(32) ‖ round(8) ‖ height(8) ‖ count(4) ‖ (validator(4) ‖
    /// signature(64))*, signers in the order carried.
    pub fn digest(&self) -> Hash {
        let mut out = Vec::with_capacity(QC_DOMAIN_TAG.len() + 53 + self.signatures.len() * 68);
        out.extend_from_slice(QC_DOMAIN_TAG);
        out.push(CONSENSUS_LAYOUT_VERSION);
        out.extend_from_slice(self.block_hash.as_bytes());
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        let count = u32::try_from(self.signatures.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for s in &self.signatures {
            out.extend_from_slice(&s.validator.to_be_bytes());
            out.extend_from_slice(s.signature.as_bytes());
        }
        sha256(&out)
    }

    /// Checks `need` distinct, known, valid signatures. Only [`Self::verify`]
    /// (need = [`quorum`]) is safe; a lower bound exists so tests can show
    /// what accepting less would break.
    pub fn verify_with_quorum(
        &self,
        chain: &ChainBinding,
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
            chain,
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
    /// Number of entries in the account's history: the committed transfers
    /// that moved its balance ([`crate::state::HistoryEntry`]).
    pub history_count: u64,
    /// Running hash over those entries, oldest first
    /// ([`crate::state::chain_history`]); all zero when there are none.
    pub history_hash: Hash,
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

    fn chain() -> ChainBinding {
        ChainBinding::genesis(sha256(b"genesis"))
    }

    fn qc_on(chain: &ChainBinding, signers: &[(u32, &SecretKey)]) -> QuorumCertificate {
        let block_hash = sha256(b"block");
        let msg = vote_signing_bytes(chain, &block_hash, 3, 2);
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

    fn qc(signers: &[(u32, &SecretKey)]) -> QuorumCertificate {
        qc_on(&chain(), signers)
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(quorum),
            [1, 2, 3, 3, 4, 5, 5, 6, 7, 7]
        );
    }

    /// For every validator count the genesis accepts (1..=256): any two
    /// quorums share at least f + 1 validators, so at least one honest
    /// validator, who signs once per round, is in both (no two blocks of one
    /// round can be certified); and the n − f honest validators make a
    /// quorum without the f faulty ones (they cannot halt the chain by
    /// staying silent). The old 2⌊(n − 1)/3⌋ + 1 fails the first at n = 5.
    #[test]
    fn any_two_quorums_share_an_honest_validator_for_every_n() {
        for n in 1..=256usize {
            let (q, f) = (quorum(n), max_faulty(n));
            assert!(3 * f < n, "n = {n}: f = {f} is not below a third");
            // Two quorums overlap in at least 2q − n validators.
            let overlap = (2 * q).saturating_sub(n);
            assert!(
                overlap > f,
                "n = {n}: quorums of {q} may share only {overlap} validators, need f + 1 = {}",
                f + 1
            );
            assert!(
                q <= n - f,
                "n = {n}: the honest {} cannot make a quorum of {q}",
                n - f
            );
        }
    }

    #[test]
    fn a_certificate_of_another_chain_or_epoch_does_not_verify() {
        let ks = keys(4);
        let set: Vec<PublicKey> = ks.iter().map(|k| k.public_key().clone()).collect();
        let signers = [(0, &ks[0]), (1, &ks[1]), (3, &ks[3])];
        qc(&signers).verify(&chain(), &set).unwrap();
        let other_chain = ChainBinding::genesis(sha256(b"another genesis"));
        let other_epoch = ChainBinding {
            epoch: 1,
            ..chain()
        };
        for foreign in [other_chain, other_epoch] {
            assert!(matches!(
                qc_on(&foreign, &signers).verify(&chain(), &set),
                Err(CertificateError::BadSignature { index: 0, .. })
            ));
        }
    }

    #[test]
    fn a_certificate_digest_covers_every_field_and_signer() {
        let ks = keys(4);
        let base = qc(&[(0, &ks[0]), (1, &ks[1]), (3, &ks[3])]);
        let mut fewer = base.clone();
        fewer.signatures.pop();
        let mut other_round = base.clone();
        other_round.round += 1;
        let mut other_signer = base.clone();
        other_signer.signatures[2].validator = 2;
        for changed in [fewer, other_round, other_signer] {
            assert_ne!(changed.digest(), base.digest());
        }
    }

    #[test]
    fn certificate_rules() {
        let ks = keys(4);
        let set: Vec<PublicKey> = ks.iter().map(|k| k.public_key().clone()).collect();
        qc(&[(0, &ks[0]), (1, &ks[1]), (3, &ks[3])])
            .verify(&chain(), &set)
            .unwrap();
        assert_eq!(
            qc(&[(0, &ks[0]), (1, &ks[1])]).verify(&chain(), &set),
            Err(CertificateError::NoQuorum {
                signers: 2,
                quorum: 3
            })
        );
        assert_eq!(
            qc(&[(0, &ks[0]), (0, &ks[0]), (1, &ks[1])]).verify(&chain(), &set),
            Err(CertificateError::DuplicateSigner { index: 0 })
        );
        assert!(matches!(
            qc(&[(0, &ks[0]), (1, &ks[1]), (4, &ks[3])]).verify(&chain(), &set),
            Err(CertificateError::UnknownValidator { index: 4, .. })
        ));
        // Right index, wrong key: a forged signature.
        assert!(matches!(
            qc(&[(0, &ks[0]), (1, &ks[1]), (2, &ks[3])]).verify(&chain(), &set),
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
