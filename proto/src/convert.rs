//! Fallible conversions from wire types (`pb::*`, untrusted) to domain types,
//! and infallible ones back. Every error names the field at fault, with its
//! path from the message root, e.g. `transfer.outputs[2].recipient`.

use crate::crypto::{PublicKey, Signature};
use crate::hash::Hash;
use crate::ledger::{BlockHeader, QuorumCertificate, Receipt, ReceiptCode, ValidatorSignature};
use crate::merkle::MerkleProof;
use crate::pb;
use crate::transfer::{
    MAX_OUTPUTS, Memo, Output, SignedTransfer, TRANSFER_VERSION, Transfer, TransferError,
};

/// A wire message that does not make a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// A required field is absent.
    #[error("missing field '{field}'")]
    Missing {
        /// Path of the field.
        field: String,
    },
    /// A field is present but invalid.
    #[error("invalid field '{field}': {reason}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConversionError {
    /// A missing field at `field`.
    pub fn missing(field: impl Into<String>) -> Self {
        Self::Missing {
            field: field.into(),
        }
    }

    /// An invalid field at `field`.
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The same error with its field path under `prefix` (`prefix.field`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::Missing { field } => Self::missing(format!("{prefix}.{field}")),
            Self::Invalid { field, reason } => Self::invalid(format!("{prefix}.{field}"), reason),
        }
    }

    /// The path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            Self::Missing { field } | Self::Invalid { field, .. } => field,
        }
    }
}

type Result<T> = std::result::Result<T, ConversionError>;

fn public_key(bytes: &[u8], field: &str) -> Result<PublicKey> {
    if bytes.is_empty() {
        return Err(ConversionError::missing(field));
    }
    PublicKey::from_slice(bytes).map_err(|e| ConversionError::invalid(field, e))
}

/// Parses a required 32-byte hash field named `field`.
pub fn hash_field(bytes: &[u8], field: &str) -> Result<Hash> {
    if bytes.is_empty() {
        return Err(ConversionError::missing(field));
    }
    Hash::from_slice(bytes).ok_or_else(|| {
        ConversionError::invalid(field, format!("must be 32 bytes, got {}", bytes.len()))
    })
}

/// Parses a required 64-byte signature field named `field`.
pub fn signature_field(bytes: &[u8], field: &str) -> Result<Signature> {
    if bytes.is_empty() {
        return Err(ConversionError::missing(field));
    }
    Signature::from_slice(bytes).map_err(|e| ConversionError::invalid(field, e))
}

impl TryFrom<pb::Transfer> for Transfer {
    type Error = ConversionError;

    fn try_from(t: pb::Transfer) -> Result<Self> {
        check_transfer_version(t.version)?;
        let genesis_hash = hash_field(&t.genesis_hash, "transfer.genesis_hash")?;
        let sender = public_key(&t.sender, "transfer.sender")?;
        if t.outputs.len() > MAX_OUTPUTS {
            // Refuse before parsing (and decompressing) every recipient.
            let count = t.outputs.len();
            return Err(ConversionError::invalid(
                "transfer.outputs",
                TransferError::TooManyOutputs { count },
            ));
        }
        let reference = match t.reference.len() {
            0 => None,
            _ => Some(hash_field(&t.reference, "transfer.reference")?),
        };
        let memo = match (t.memo.is_empty(), t.encrypted_memo.is_empty()) {
            (_, true) => Memo::from(t.memo),
            (true, false) => Memo::Encrypted(t.encrypted_memo),
            (false, false) => {
                return Err(ConversionError::invalid(
                    "transfer.encrypted_memo",
                    "a transfer carries a public memo or an encrypted one, not both",
                ));
            }
        };
        let outputs = t
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let recipient =
                    public_key(&o.recipient, &format!("transfer.outputs[{i}].recipient"))?;
                Ok(Output {
                    recipient,
                    amount: o.amount,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let transfer =
            Transfer::new(genesis_hash, sender, t.nonce, t.fee, outputs, memo).map_err(|e| {
                let field = match e {
                    TransferError::BadChainId { .. } => "transfer.genesis_hash",
                    TransferError::NoOutputs | TransferError::TooManyOutputs { .. } => {
                        "transfer.outputs"
                    }
                    TransferError::MemoTooLong { .. } => "transfer.memo",
                    TransferError::BadEncryptedMemo { .. } => "transfer.encrypted_memo",
                };
                ConversionError::invalid(field, e)
            })?;
        Ok(transfer
            .with_expiry(t.expires_at_ms)
            .with_reference(reference))
    }
}

/// Refuses every signing-bytes layout but [`TRANSFER_VERSION`], naming what
/// the client should do.
fn check_transfer_version(version: u32) -> Result<()> {
    match version {
        v if v == u32::from(TRANSFER_VERSION) => Ok(()),
        0 | 1 => Err(ConversionError::invalid(
            "transfer.version",
            format!(
                "layout 1 transfers (bound to a chain id only, replayable on any network \
                 with the same id) are no longer accepted: sign layout {TRANSFER_VERSION}, \
                 bound to the genesis hash (docs/protocol.md)"
            ),
        )),
        v => Err(ConversionError::invalid(
            "transfer.version",
            format!("layout {v} is unknown: this network accepts layout {TRANSFER_VERSION}"),
        )),
    }
}

impl From<&Transfer> for pb::Transfer {
    fn from(t: &Transfer) -> Self {
        let (memo, encrypted_memo) = match t.memo() {
            Memo::None => (Vec::new(), Vec::new()),
            Memo::Public(b) => (b.clone(), Vec::new()),
            Memo::Encrypted(b) => (Vec::new(), b.clone()),
        };
        pb::Transfer {
            version: u32::from(TRANSFER_VERSION),
            genesis_hash: t.genesis_hash().0.to_vec(),
            sender: t.sender().as_bytes().to_vec(),
            nonce: t.nonce(),
            fee: t.fee(),
            expires_at_ms: t.expires_at_ms().unwrap_or(0),
            reference: t.reference().map(|r| r.0.to_vec()).unwrap_or_default(),
            outputs: t
                .outputs()
                .iter()
                .map(|o| pb::Output {
                    recipient: o.recipient.as_bytes().to_vec(),
                    amount: o.amount,
                })
                .collect(),
            memo,
            encrypted_memo,
        }
    }
}

impl TryFrom<pb::SignedTransaction> for SignedTransfer {
    type Error = ConversionError;

    fn try_from(t: pb::SignedTransaction) -> Result<Self> {
        let transfer = t
            .transfer
            .ok_or_else(|| ConversionError::missing("transfer"))?;
        let transfer = Transfer::try_from(transfer)?;
        let signature = signature_field(&t.signature, "signature")?;
        Ok(SignedTransfer::new(transfer, signature))
    }
}

impl From<&SignedTransfer> for pb::SignedTransaction {
    fn from(t: &SignedTransfer) -> Self {
        pb::SignedTransaction {
            transfer: Some(t.transfer().into()),
            signature: t.signature().as_bytes().to_vec(),
        }
    }
}

impl TryFrom<pb::Receipt> for Receipt {
    type Error = ConversionError;

    fn try_from(r: pb::Receipt) -> Result<Self> {
        let code = u8::try_from(r.code)
            .ok()
            .and_then(ReceiptCode::from_u8)
            .ok_or_else(|| {
                ConversionError::invalid("code", format!("unknown receipt code {}", r.code))
            })?;
        Ok(Receipt { code })
    }
}

impl From<&Receipt> for pb::Receipt {
    fn from(r: &Receipt) -> Self {
        pb::Receipt {
            code: i32::from(r.code as u8),
        }
    }
}

impl TryFrom<pb::BlockHeader> for BlockHeader {
    type Error = ConversionError;

    fn try_from(h: pb::BlockHeader) -> Result<Self> {
        Ok(BlockHeader {
            genesis_hash: hash_field(&h.genesis_hash, "header.genesis_hash")?,
            height: h.height,
            round: h.round,
            parent_hash: hash_field(&h.parent_hash, "header.parent_hash")?,
            proposer: h.proposer,
            timestamp_ms: h.timestamp_ms,
            tx_count: h.tx_count,
            tx_root: hash_field(&h.tx_root, "header.tx_root")?,
            state_root: hash_field(&h.state_root, "header.state_root")?,
        })
    }
}

impl From<&BlockHeader> for pb::BlockHeader {
    fn from(h: &BlockHeader) -> Self {
        pb::BlockHeader {
            genesis_hash: h.genesis_hash.0.to_vec(),
            height: h.height,
            round: h.round,
            parent_hash: h.parent_hash.0.to_vec(),
            proposer: h.proposer,
            timestamp_ms: h.timestamp_ms,
            tx_count: h.tx_count,
            tx_root: h.tx_root.0.to_vec(),
            state_root: h.state_root.0.to_vec(),
        }
    }
}

/// Most signatures a certificate may carry on the wire.
const MAX_CERTIFICATE_SIGNATURES: usize = 1024;

impl TryFrom<pb::QuorumCertificate> for QuorumCertificate {
    type Error = ConversionError;

    fn try_from(q: pb::QuorumCertificate) -> Result<Self> {
        if q.signatures.len() > MAX_CERTIFICATE_SIGNATURES {
            return Err(ConversionError::invalid(
                "certificate.signatures",
                format!(
                    "at most {MAX_CERTIFICATE_SIGNATURES}, got {}",
                    q.signatures.len()
                ),
            ));
        }
        let signatures = q
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let field = format!("certificate.signatures[{i}].signature");
                Ok(ValidatorSignature {
                    validator: s.validator,
                    signature: signature_field(&s.signature, &field)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QuorumCertificate {
            block_hash: hash_field(&q.block_hash, "certificate.block_hash")?,
            round: q.round,
            height: q.height,
            signatures,
        })
    }
}

impl From<&QuorumCertificate> for pb::QuorumCertificate {
    fn from(q: &QuorumCertificate) -> Self {
        pb::QuorumCertificate {
            block_hash: q.block_hash.0.to_vec(),
            round: q.round,
            height: q.height,
            signatures: q
                .signatures
                .iter()
                .map(|s| pb::ValidatorSignature {
                    validator: s.validator,
                    signature: s.signature.as_bytes().to_vec(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::MerkleProof> for MerkleProof {
    type Error = ConversionError;

    fn try_from(p: pb::MerkleProof) -> Result<Self> {
        if p.siblings.len() > 32 {
            return Err(ConversionError::invalid(
                "proof.siblings",
                format!("at most 32, got {}", p.siblings.len()),
            ));
        }
        let siblings = p
            .siblings
            .iter()
            .enumerate()
            .map(|(i, s)| hash_field(s, &format!("proof.siblings[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        Ok(MerkleProof {
            leaf_index: p.leaf_index,
            leaf_count: p.leaf_count,
            siblings,
        })
    }
}

impl From<&MerkleProof> for pb::MerkleProof {
    fn from(p: &MerkleProof) -> Self {
        pb::MerkleProof {
            leaf_index: p.leaf_index,
            leaf_count: p.leaf_count,
            siblings: p.siblings.iter().map(|s| s.0.to_vec()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn key(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n;
        SecretKey::from_slice(&b).unwrap()
    }

    fn wire() -> pb::SignedTransaction {
        let out = Output {
            recipient: key(2).public_key().clone(),
            amount: 5,
        };
        let t = Transfer::new(
            Hash([3; 32]),
            key(1).public_key().clone(),
            1,
            1,
            vec![out],
            vec![],
        )
        .unwrap()
        .with_expiry(9)
        .with_reference(Some(Hash([4; 32])));
        (&t.sign(&key(1))).into()
    }

    #[test]
    fn round_trip() {
        let w = wire();
        let d = SignedTransfer::try_from(w.clone()).unwrap();
        d.verify().unwrap();
        assert_eq!(pb::SignedTransaction::from(&d), w);
    }

    #[test]
    fn errors_name_the_field() {
        type Mutation = Box<dyn Fn(&mut pb::SignedTransaction)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|w| w.transfer = None), "transfer"),
            (Box::new(|w| w.signature.clear()), "signature"),
            (Box::new(|w| w.signature.push(0)), "signature"),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().version = 0),
                "transfer.version",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().version = 3),
                "transfer.version",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().genesis_hash.clear()),
                "transfer.genesis_hash",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().genesis_hash.push(0)),
                "transfer.genesis_hash",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().reference = vec![1; 31]),
                "transfer.reference",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().encrypted_memo = vec![1; 200]),
                "transfer.encrypted_memo",
            ),
            (
                Box::new(|w| {
                    let t = w.transfer.as_mut().unwrap();
                    t.memo = b"hi".to_vec();
                    t.encrypted_memo = vec![1; 200];
                }),
                "transfer.encrypted_memo",
            ),
            (
                Box::new(|w| {
                    w.transfer
                        .as_mut()
                        .unwrap()
                        .sender
                        .pop()
                        .map(|_| ())
                        .unwrap()
                }),
                "transfer.sender",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().outputs.clear()),
                "transfer.outputs",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().outputs[0].recipient = vec![9; 33]),
                "transfer.outputs[0].recipient",
            ),
            (
                Box::new(|w| w.transfer.as_mut().unwrap().memo = vec![0; 257]),
                "transfer.memo",
            ),
            (
                Box::new(|w| {
                    let t = w.transfer.as_mut().unwrap();
                    t.outputs = vec![t.outputs[0].clone(); 65];
                }),
                "transfer.outputs",
            ),
        ];
        for (mutate, field) in cases {
            let mut w = wire();
            mutate(&mut w);
            let err = SignedTransfer::try_from(w).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn unknown_receipt_code_is_refused() {
        assert!(Receipt::try_from(pb::Receipt { code: 0 }).is_err());
        assert!(Receipt::try_from(pb::Receipt { code: 300 }).is_err());
        assert_eq!(
            Receipt::try_from(pb::Receipt { code: 1 }).unwrap().code,
            ReceiptCode::Success
        );
    }
}
