//! Consensus messages as verified domain values, with their canonical
//! signing bytes (defined in `chatpay-proto`, docs/protocol.md).

use chatpay_proto::{
    BlockHeader, CertificateError, ChainBinding, Hash, PublicKey, QuorumCertificate, Signature,
    SignatureError, SignedTransfer, proposal_signing_bytes, quorum, sha256,
    timeout_certificate_digest, timeout_signing_bytes, vote_signing_bytes,
};
use std::collections::BTreeSet;

/// Index of a validator in the genesis validator set.
pub type ValidatorIndex = u32;

/// A block: header, transactions, and the certificate of its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header (its hash is the block hash).
    pub header: BlockHeader,
    /// Transactions in execution order.
    pub transactions: Vec<SignedTransfer>,
    /// Certificate of the parent block (the genesis certificate for height 1).
    pub justify: QuorumCertificate,
}

impl Block {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Round of the block.
    pub fn round(&self) -> u64 {
        self.header.round
    }
}

/// A signed vote for a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// Block voted for.
    pub block_hash: Hash,
    /// Its round.
    pub round: u64,
    /// Its height.
    pub height: u64,
    /// Who votes.
    pub voter: ValidatorIndex,
    /// Signature over the vote bytes.
    pub signature: Signature,
}

impl Vote {
    /// SHA-256 of the vote bytes, what the signature covers.
    pub fn digest(chain: &ChainBinding, block_hash: &Hash, round: u64, height: u64) -> Hash {
        sha256(&vote_signing_bytes(chain, block_hash, round, height))
    }

    /// Checks the signature, bound to `chain`, against the voter's key.
    pub fn verify(
        &self,
        chain: &ChainBinding,
        validators: &[PublicKey],
    ) -> Result<(), MessageError> {
        let key = validator_key(validators, self.voter)?;
        key.verify_digest(
            &Self::digest(chain, &self.block_hash, self.round, self.height),
            &self.signature,
        )
        .map_err(|source| MessageError::BadSignature {
            sender: self.voter,
            source,
        })
    }
}

/// A signed timeout: the sender gives up on `round`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// Round given up.
    pub round: u64,
    /// Highest certificate the sender knows.
    pub high_qc: QuorumCertificate,
    /// Who times out.
    pub sender: ValidatorIndex,
    /// Signature over the timeout bytes (round, high_qc.round).
    pub signature: Signature,
    /// The TC of `round - 1`, if the sender entered the round by timeout
    /// (outside the signature; it is checked on its own).
    pub last_round_tc: Option<TimeoutCertificate>,
}

impl Timeout {
    /// SHA-256 of the timeout bytes.
    pub fn digest(chain: &ChainBinding, round: u64, high_qc_round: u64) -> Hash {
        sha256(&timeout_signing_bytes(chain, round, high_qc_round))
    }

    /// Checks the signature (bound to `chain`), and that the carried
    /// certificate is below the round. The certificate itself is checked by
    /// the caller (it may be cached).
    pub fn verify(
        &self,
        chain: &ChainBinding,
        validators: &[PublicKey],
    ) -> Result<(), MessageError> {
        if self.high_qc.round >= self.round {
            return Err(MessageError::Invalid(format!(
                "timeout for round {} carries a certificate of round {}",
                self.round, self.high_qc.round
            )));
        }
        let key = validator_key(validators, self.sender)?;
        key.verify_digest(
            &Self::digest(chain, self.round, self.high_qc.round),
            &self.signature,
        )
        .map_err(|source| MessageError::BadSignature {
            sender: self.sender,
            source,
        })
    }
}

/// One signer of a timeout certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutSignature {
    /// Signer.
    pub sender: ValidatorIndex,
    /// Round of the signer's highest certificate.
    pub high_qc_round: u64,
    /// Signature over (round, high_qc_round).
    pub signature: Signature,
}

/// 2f + 1 timeouts for one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutCertificate {
    /// Round timed out.
    pub round: u64,
    /// Distinct signers.
    pub signatures: Vec<TimeoutSignature>,
}

impl TimeoutCertificate {
    /// Highest certificate round any signer reported: a proposal after this
    /// certificate must extend a certificate at least this high.
    pub fn high_qc_round(&self) -> u64 {
        self.signatures
            .iter()
            .map(|s| s.high_qc_round)
            .max()
            .unwrap_or(0)
    }

    /// Checks a [`quorum`] of distinct, valid signers bound to `chain`.
    pub fn verify(
        &self,
        chain: &ChainBinding,
        validators: &[PublicKey],
    ) -> Result<(), MessageError> {
        self.verify_with_quorum(chain, validators, quorum(validators.len()))
    }

    /// SHA-256 of the certificate's canonical bytes (what a proposal that
    /// carries it signs; docs/protocol.md).
    pub fn digest(&self) -> Hash {
        timeout_certificate_digest(
            self.round,
            self.signatures
                .iter()
                .map(|s| (s.sender, s.high_qc_round, &s.signature)),
        )
    }

    /// Checks `need` distinct, valid signers bound to `chain`.
    pub fn verify_with_quorum(
        &self,
        chain: &ChainBinding,
        validators: &[PublicKey],
        need: usize,
    ) -> Result<(), MessageError> {
        let mut seen = BTreeSet::new();
        for s in &self.signatures {
            if !seen.insert(s.sender) {
                return Err(MessageError::Certificate(
                    CertificateError::DuplicateSigner { index: s.sender },
                ));
            }
            if s.high_qc_round >= self.round {
                return Err(MessageError::Invalid(format!(
                    "timeout certificate of round {} names a certificate of round {}",
                    self.round, s.high_qc_round
                )));
            }
            let key = validator_key(validators, s.sender)?;
            key.verify_digest(
                &Timeout::digest(chain, self.round, s.high_qc_round),
                &s.signature,
            )
            .map_err(|source| MessageError::BadSignature {
                sender: s.sender,
                source,
            })?;
        }
        if seen.len() < need {
            return Err(MessageError::Certificate(CertificateError::NoQuorum {
                signers: seen.len(),
                quorum: need,
            }));
        }
        Ok(())
    }
}

/// A leader's signed proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The proposed block.
    pub block: Block,
    /// Certificate of the previous round when it ended by timeout.
    pub timeout_certificate: Option<TimeoutCertificate>,
    /// Signature of the proposer (the header's `proposer`) over
    /// [`Self::signing_bytes`]: the block hash, its certificate and the
    /// timeout certificate, bound to the chain and epoch.
    pub signature: Signature,
}

impl Proposal {
    /// What the proposer signs for `block` carrying `tc`.
    pub fn signing_bytes(
        chain: &ChainBinding,
        block: &Block,
        tc: Option<&TimeoutCertificate>,
    ) -> Vec<u8> {
        let tc_digest = tc.map(TimeoutCertificate::digest);
        proposal_signing_bytes(
            chain,
            &block.hash(),
            &block.justify.digest(),
            tc_digest.as_ref(),
        )
    }

    /// Checks the proposer's signature.
    pub fn verify_signature(
        &self,
        chain: &ChainBinding,
        validators: &[PublicKey],
    ) -> Result<(), MessageError> {
        let proposer = self.block.header.proposer;
        let key = validator_key(validators, proposer)?;
        let bytes = Self::signing_bytes(chain, &self.block, self.timeout_certificate.as_ref());
        key.verify(&bytes, &self.signature)
            .map_err(|source| MessageError::BadSignature {
                sender: proposer,
                source,
            })
    }
}

/// Why a consensus message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The sender index is not a validator.
    #[error("sender {sender} is not in the validator set of {validators}")]
    UnknownValidator {
        /// Index claimed.
        sender: ValidatorIndex,
        /// Size of the set.
        validators: usize,
    },
    /// A signature does not verify.
    #[error("signature of validator {sender} is invalid: {source}")]
    BadSignature {
        /// Claimed signer.
        sender: ValidatorIndex,
        /// Why.
        source: SignatureError,
    },
    /// A certificate is invalid.
    #[error("invalid certificate: {0}")]
    Certificate(CertificateError),
    /// A structurally invalid message.
    #[error("invalid message: {0}")]
    Invalid(String),
}

fn validator_key(
    validators: &[PublicKey],
    index: ValidatorIndex,
) -> Result<&PublicKey, MessageError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| validators.get(i))
        .ok_or(MessageError::UnknownValidator {
            sender: index,
            validators: validators.len(),
        })
}
