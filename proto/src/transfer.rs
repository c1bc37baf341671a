//! Transfers, their canonical signing bytes, tx ids and signatures.
//!
//! The signing bytes layout (version 1) is specified byte by byte in
//! `docs/protocol.md`; [`Transfer::signing_bytes`] is its reference
//! implementation and `proto/testdata/transfer_vectors.json` its test vectors.

use crate::crypto::{PublicKey, SecretKey, Signature, SignatureError};
use crate::hash::{TxId, sha256};

/// Domain tag that starts every transfer's signing bytes (NUL-terminated, so
/// no other chatpay tag can be a prefix of it or it of another).
pub const TRANSFER_DOMAIN_TAG: &[u8] = b"chatpay/transfer\0";

/// Version byte of the signing bytes layout.
pub const TRANSFER_VERSION: u8 = 1;

/// Most outputs one transfer may have.
pub const MAX_OUTPUTS: usize = 64;

/// Most memo bytes one transfer may carry.
pub const MAX_MEMO_BYTES: usize = 256;

/// Longest chain id.
pub const MAX_CHAIN_ID_BYTES: usize = 64;

/// Why a transfer is structurally invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Chain id empty, too long, or with characters outside `[a-z0-9._-]`.
    #[error("chain id must be 1 to {MAX_CHAIN_ID_BYTES} bytes of [a-z0-9._-], got {chain_id:?}")]
    BadChainId {
        /// The refused chain id.
        chain_id: String,
    },
    /// No outputs.
    #[error("a transfer needs at least one output")]
    NoOutputs,
    /// More than [`MAX_OUTPUTS`] outputs.
    #[error("a transfer has at most {MAX_OUTPUTS} outputs, got {count}")]
    TooManyOutputs {
        /// Outputs given.
        count: usize,
    },
    /// Memo longer than [`MAX_MEMO_BYTES`].
    #[error("memo is at most {MAX_MEMO_BYTES} bytes, got {len}")]
    MemoTooLong {
        /// Memo length given.
        len: usize,
    },
}

/// Checks a chain id: 1..=64 bytes of `[a-z0-9._-]`.
pub fn validate_chain_id(chain_id: &str) -> Result<(), TransferError> {
    let ok = !chain_id.is_empty()
        && chain_id.len() <= MAX_CHAIN_ID_BYTES
        && chain_id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
    if ok {
        Ok(())
    } else {
        Err(TransferError::BadChainId {
            chain_id: chain_id.to_owned(),
        })
    }
}

/// One recipient and the base units it receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Output {
    /// Recipient's public key.
    pub recipient: PublicKey,
    /// Amount in base units. Zero is representable but refused by execution.
    pub amount: u64,
}

/// The content of a payment: what the sender signs.
///
/// A value of this type always respects the structural limits (chain id
/// syntax, 1..=[`MAX_OUTPUTS`] outputs, memo ≤ [`MAX_MEMO_BYTES`]); ledger rules
/// (nonce, balance, fee, zero amounts) are checked by execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transfer {
    chain_id: String,
    sender: PublicKey,
    nonce: u64,
    fee: u64,
    outputs: Vec<Output>,
    memo: Vec<u8>,
}

impl Transfer {
    /// Builds a transfer, checking the structural limits.
    pub fn new(
        chain_id: impl Into<String>,
        sender: PublicKey,
        nonce: u64,
        fee: u64,
        outputs: Vec<Output>,
        memo: Vec<u8>,
    ) -> Result<Self, TransferError> {
        let chain_id = chain_id.into();
        validate_chain_id(&chain_id)?;
        if outputs.is_empty() {
            return Err(TransferError::NoOutputs);
        }
        if outputs.len() > MAX_OUTPUTS {
            return Err(TransferError::TooManyOutputs {
                count: outputs.len(),
            });
        }
        if memo.len() > MAX_MEMO_BYTES {
            return Err(TransferError::MemoTooLong { len: memo.len() });
        }
        Ok(Self {
            chain_id,
            sender,
            nonce,
            fee,
            outputs,
            memo,
        })
    }

    /// Chain the transfer is valid on.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Paying account.
    pub fn sender(&self) -> &PublicKey {
        &self.sender
    }

    /// Sender's nonce (last committed + 1).
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Fee in base units.
    pub fn fee(&self) -> u64 {
        self.fee
    }

    /// Recipients and amounts, 1..=[`MAX_OUTPUTS`].
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Memo bytes, at most [`MAX_MEMO_BYTES`].
    pub fn memo(&self) -> &[u8] {
        &self.memo
    }

    /// Sum of the output amounts, or `None` if it overflows u64.
    pub fn total_amount(&self) -> Option<u64> {
        self.outputs
            .iter()
            .try_fold(0u64, |sum, o| sum.checked_add(o.amount))
    }

    /// Length of [`Transfer::signing_bytes`], without building them.
    pub fn signing_bytes_len(&self) -> usize {
        TRANSFER_DOMAIN_TAG.len()
            + 1 // version
            + 1 // chain id length
            + self.chain_id.len()
            + PublicKey::LEN
            + 8 // nonce
            + 8 // fee
            + 1 // output count
            + self.outputs.len() * (PublicKey::LEN + 8)
            + 2 // memo length
            + self.memo.len()
    }

    /// Accounts the transfer touches: the sender and every recipient, sorted,
    /// each once.
    pub fn participants(&self) -> Vec<&PublicKey> {
        let mut keys: Vec<&PublicKey> = std::iter::once(&self.sender)
            .chain(self.outputs.iter().map(|o| &o.recipient))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The canonical bytes that are hashed into the tx id and signed
    /// (layout version 1, `docs/protocol.md`).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let len = self.signing_bytes_len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(TRANSFER_DOMAIN_TAG);
        out.push(TRANSFER_VERSION);
        // Lengths fit: the constructor bounds them by 64, 64 and 256.
        out.push(u8::try_from(self.chain_id.len()).expect("chain id ≤ 64 bytes"));
        out.extend_from_slice(self.chain_id.as_bytes());
        out.extend_from_slice(self.sender.as_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.fee.to_be_bytes());
        out.push(u8::try_from(self.outputs.len()).expect("outputs ≤ 64"));
        for output in &self.outputs {
            out.extend_from_slice(output.recipient.as_bytes());
            out.extend_from_slice(&output.amount.to_be_bytes());
        }
        out.extend_from_slice(
            &u16::try_from(self.memo.len())
                .expect("memo ≤ 256")
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.memo);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// tx id = SHA-256(signing bytes).
    pub fn tx_id(&self) -> TxId {
        sha256(&self.signing_bytes())
    }

    /// Signs the transfer with the sender's key.
    ///
    /// # Panics
    /// If `key` is not the sender's key: signing for someone else is a bug.
    pub fn sign(self, key: &SecretKey) -> SignedTransfer {
        assert_eq!(
            key.public_key(),
            &self.sender,
            "signing key is not the transfer's sender"
        );
        let tx_id = self.tx_id();
        let signature = key.sign_digest(&tx_id);
        SignedTransfer {
            transfer: self,
            signature,
            tx_id,
        }
    }
}

/// A transfer with its sender's signature, as submitted and as included in
/// blocks (a "transaction").
///
/// The signature is carried as received; [`SignedTransfer::verify`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransfer {
    transfer: Transfer,
    signature: Signature,
    tx_id: TxId,
}

impl SignedTransfer {
    /// Pairs a transfer with a signature (not yet verified).
    pub fn new(transfer: Transfer, signature: Signature) -> Self {
        let tx_id = transfer.tx_id();
        Self {
            transfer,
            signature,
            tx_id,
        }
    }

    /// The signed content.
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }

    /// The signature as received.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// tx id = SHA-256(signing bytes), independent of the signature bytes.
    pub fn tx_id(&self) -> TxId {
        self.tx_id
    }

    /// Checks the signature against the sender key (canonical, low S).
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.transfer
            .sender
            .verify_digest(&self.tx_id, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n;
        SecretKey::from_slice(&b).unwrap()
    }

    fn transfer(memo: &[u8]) -> Transfer {
        let out = Output {
            recipient: key(2).public_key().clone(),
            amount: 5,
        };
        Transfer::new(
            "chatpay-test",
            key(1).public_key().clone(),
            1,
            10,
            vec![out],
            memo.into(),
        )
        .unwrap()
    }

    #[test]
    fn limits_are_enforced() {
        let sender = key(1).public_key().clone();
        let out = Output {
            recipient: key(2).public_key().clone(),
            amount: 1,
        };
        let mk = |chain: &str, outs: Vec<Output>, memo: Vec<u8>| {
            Transfer::new(chain, sender.clone(), 1, 0, outs, memo)
        };
        assert_eq!(mk("c", vec![], vec![]), Err(TransferError::NoOutputs));
        assert_eq!(
            mk("c", vec![out.clone(); 65], vec![]),
            Err(TransferError::TooManyOutputs { count: 65 })
        );
        assert!(mk("c", vec![out.clone(); 64], vec![0; 256]).is_ok());
        assert_eq!(
            mk("c", vec![out.clone()], vec![0; 257]),
            Err(TransferError::MemoTooLong { len: 257 })
        );
        for bad in ["", "Chat", "a b", &"x".repeat(65)] {
            assert!(matches!(
                mk(bad, vec![out.clone()], vec![]),
                Err(TransferError::BadChainId { .. })
            ));
        }
    }

    #[test]
    fn tx_id_ignores_signature_bytes() {
        let signed = transfer(b"lunch").sign(&key(1));
        signed.verify().unwrap();
        let other = SignedTransfer::new(signed.transfer().clone(), Signature([7; 64]));
        assert_eq!(other.tx_id(), signed.tx_id());
        assert!(other.verify().is_err());
    }

    #[test]
    fn every_field_changes_the_signing_bytes() {
        let base = transfer(b"a");
        let sender = key(1).public_key().clone();
        let r = key(2).public_key().clone();
        let o = |amount| {
            vec![Output {
                recipient: r.clone(),
                amount,
            }]
        };
        let variants = [
            Transfer::new("chatpay-tesu", sender.clone(), 1, 10, o(5), b"a".to_vec()),
            Transfer::new(
                "chatpay-test",
                key(3).public_key().clone(),
                1,
                10,
                o(5),
                b"a".to_vec(),
            ),
            Transfer::new("chatpay-test", sender.clone(), 2, 10, o(5), b"a".to_vec()),
            Transfer::new("chatpay-test", sender.clone(), 1, 11, o(5), b"a".to_vec()),
            Transfer::new("chatpay-test", sender.clone(), 1, 10, o(6), b"a".to_vec()),
            Transfer::new("chatpay-test", sender.clone(), 1, 10, o(5), b"b".to_vec()),
            Transfer::new("chatpay-test", sender.clone(), 1, 10, o(5), b"".to_vec()),
        ];
        for v in variants {
            assert_ne!(v.unwrap().signing_bytes(), base.signing_bytes());
        }
    }

    #[test]
    fn signing_bytes_start_with_tag_and_version() {
        let bytes = transfer(b"").signing_bytes();
        assert!(bytes.starts_with(TRANSFER_DOMAIN_TAG));
        assert_eq!(bytes[TRANSFER_DOMAIN_TAG.len()], TRANSFER_VERSION);
        // tag 17 + version 1 + len 1 + "chatpay-test" 12 + 33 + 8 + 8 + 1 + 41 + 2
        assert_eq!(bytes.len(), 17 + 1 + 1 + 12 + 33 + 8 + 8 + 1 + 41 + 2);
    }
}
