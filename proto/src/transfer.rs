//! Transfers, their canonical signing bytes, tx ids and signatures.
//!
//! The signing bytes layout (version 2) is specified byte by byte in
//! `docs/protocol.md`; [`Transfer::signing_bytes`] is its reference
//! implementation and `proto/testdata/transfer_vectors.json` its test vectors.
//! Layout 2 binds a transfer to one network's genesis hash, and carries an
//! optional expiry, an optional payment reference and a memo that is absent,
//! public or encrypted (ADR 0018).

use crate::crypto::{PublicKey, SecretKey, Signature, SignatureError};
use crate::hash::{Hash, TxId, sha256};

/// Domain tag that starts every transfer's signing bytes (NUL-terminated, so
/// no other chatpay tag can be a prefix of it or it of another).
pub const TRANSFER_DOMAIN_TAG: &[u8] = b"chatpay/transfer\0";

/// Version byte of the signing bytes layout.
pub const TRANSFER_VERSION: u8 = 2;

/// Most outputs one transfer may have.
pub const MAX_OUTPUTS: usize = 64;

/// Most bytes of a public memo.
pub const MAX_MEMO_BYTES: usize = 256;

/// Longest chain id.
pub const MAX_CHAIN_ID_BYTES: usize = 64;

/// Version byte that starts an encrypted memo envelope.
pub const ENCRYPTED_MEMO_SCHEME: u8 = 1;

/// Sizes an encrypted memo's padded plaintext may have (the 2-byte length
/// and the memo, then zeros): an observer learns only which of these it is.
pub const MEMO_PADDED_SIZES: [usize; 3] = [64, 128, 256];

/// Longest memo text an encrypted memo carries (the largest padded size
/// less its 2-byte length).
pub const MAX_ENCRYPTED_MEMO_TEXT: usize = 254;

/// Bytes of one wrapped content key (32-byte key + 16-byte tag).
pub const MEMO_SLOT_BYTES: usize = 48;

/// Bytes of an AEAD tag (ChaCha20-Poly1305).
pub const MEMO_TAG_BYTES: usize = 16;

/// Bytes of an encrypted memo envelope before its key slots: scheme,
/// ephemeral key, key check, slot count.
pub const MEMO_HEADER_BYTES: usize = 1 + PublicKey::LEN + 32 + 1;

/// Longest encrypted memo envelope: 65 key slots (64 distinct recipients
/// and the sender) and the largest ciphertext.
pub const MAX_ENCRYPTED_MEMO_BYTES: usize =
    MEMO_HEADER_BYTES + (MAX_OUTPUTS + 1) * MEMO_SLOT_BYTES + 256 + MEMO_TAG_BYTES;

/// A payment reference: 32 bytes a payment request names, so that the app
/// that made the request can find the payment (`FindPayment`).
pub type PaymentReference = Hash;

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
    /// Public memo longer than [`MAX_MEMO_BYTES`].
    #[error("memo is at most {MAX_MEMO_BYTES} bytes, got {len}")]
    MemoTooLong {
        /// Memo length given.
        len: usize,
    },
    /// An encrypted memo whose envelope does not have the layout of
    /// docs/protocol.md ("Encrypted memos") for this transfer.
    #[error("encrypted memo: {reason}")]
    BadEncryptedMemo {
        /// What is wrong with it.
        reason: String,
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

/// The memo of a transfer: absent, public bytes everyone can read, or an
/// encrypted envelope only the payer and the payees can open.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Memo {
    /// No memo.
    #[default]
    None,
    /// Public bytes, 1..=[`MAX_MEMO_BYTES`] (an empty public memo is
    /// [`Memo::None`]).
    Public(Vec<u8>),
    /// An encrypted memo envelope (docs/protocol.md, "Encrypted memos"),
    /// at most [`MAX_ENCRYPTED_MEMO_BYTES`].
    Encrypted(Vec<u8>),
}

impl Memo {
    /// The memo kind byte of the signing bytes: 0 none, 1 public,
    /// 2 encrypted.
    pub fn kind(&self) -> u8 {
        match self {
            Self::None => 0,
            Self::Public(_) => 1,
            Self::Encrypted(_) => 2,
        }
    }

    /// The memo's bytes (empty for none).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::Public(b) | Self::Encrypted(b) => b,
        }
    }

    /// The public memo bytes, if the memo is public.
    pub fn public(&self) -> Option<&[u8]> {
        match self {
            Self::Public(b) => Some(b),
            _ => None,
        }
    }

    /// Whether the memo is encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Self::Encrypted(_))
    }
}

/// Public bytes, or none when empty.
impl From<Vec<u8>> for Memo {
    fn from(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            Self::None
        } else {
            Self::Public(bytes)
        }
    }
}

/// The readers of a transfer's encrypted memo, in key-slot order: each
/// distinct recipient other than the sender, in order of first appearance
/// in the outputs, then the sender.
pub fn memo_readers<'a>(sender: &'a PublicKey, outputs: &'a [Output]) -> Vec<&'a PublicKey> {
    let mut readers: Vec<&PublicKey> = Vec::with_capacity(outputs.len() + 1);
    for output in outputs {
        let key = &output.recipient;
        if key != sender && !readers.contains(&key) {
            readers.push(key);
        }
    }
    readers.push(sender);
    readers
}

/// Checks an encrypted memo envelope's layout against the readers it must
/// have: scheme byte, slot count = readers, ciphertext of a padded size.
/// The cryptography is the readers' to check; a validator checks lengths.
fn check_envelope(envelope: &[u8], readers: usize) -> Result<(), TransferError> {
    let bad = |reason: String| Err(TransferError::BadEncryptedMemo { reason });
    if envelope.len() < MEMO_HEADER_BYTES {
        return bad(format!(
            "{} bytes is shorter than its {MEMO_HEADER_BYTES}-byte header",
            envelope.len()
        ));
    }
    if envelope[0] != ENCRYPTED_MEMO_SCHEME {
        return bad(format!(
            "scheme {} is unknown (this version reads {ENCRYPTED_MEMO_SCHEME})",
            envelope[0]
        ));
    }
    let slots = usize::from(envelope[MEMO_HEADER_BYTES - 1]);
    if slots != readers {
        return bad(format!(
            "{slots} key slots for {readers} readers (each distinct recipient and the sender)"
        ));
    }
    let ciphertext = envelope.len() - MEMO_HEADER_BYTES;
    let ciphertext = ciphertext.checked_sub(slots * MEMO_SLOT_BYTES);
    let padded = ciphertext.and_then(|c| c.checked_sub(MEMO_TAG_BYTES));
    match padded {
        Some(p) if MEMO_PADDED_SIZES.contains(&p) => Ok(()),
        _ => bad(format!(
            "{} bytes: the ciphertext after {slots} key slots is not one of the padded \
             sizes {MEMO_PADDED_SIZES:?} plus a {MEMO_TAG_BYTES}-byte tag",
            envelope.len()
        )),
    }
}

/// The content of a payment: what the sender signs.
///
/// A value of this type always respects the structural limits (1..=
/// [`MAX_OUTPUTS`] outputs, a public memo of at most [`MAX_MEMO_BYTES`], an
/// encrypted memo envelope of the right layout); ledger rules (network,
/// nonce, balance, fee, zero amounts, expiry) are checked by execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transfer {
    genesis_hash: Hash,
    sender: PublicKey,
    nonce: u64,
    fee: u64,
    expires_at_ms: u64,
    reference: Option<PaymentReference>,
    outputs: Vec<Output>,
    memo: Memo,
}

impl Transfer {
    /// Builds a transfer for the network whose genesis hashes to
    /// `genesis_hash`, with no expiry and no reference, checking the
    /// structural limits.
    pub fn new(
        genesis_hash: Hash,
        sender: PublicKey,
        nonce: u64,
        fee: u64,
        outputs: Vec<Output>,
        memo: impl Into<Memo>,
    ) -> Result<Self, TransferError> {
        if outputs.is_empty() {
            return Err(TransferError::NoOutputs);
        }
        if outputs.len() > MAX_OUTPUTS {
            return Err(TransferError::TooManyOutputs {
                count: outputs.len(),
            });
        }
        let memo = match memo.into() {
            Memo::Public(bytes) if bytes.is_empty() => Memo::None,
            Memo::Public(bytes) if bytes.len() > MAX_MEMO_BYTES => {
                return Err(TransferError::MemoTooLong { len: bytes.len() });
            }
            Memo::Encrypted(envelope) => {
                check_envelope(&envelope, memo_readers(&sender, &outputs).len())?;
                Memo::Encrypted(envelope)
            }
            memo => memo,
        };
        Ok(Self {
            genesis_hash,
            sender,
            nonce,
            fee,
            expires_at_ms: 0,
            reference: None,
            outputs,
            memo,
        })
    }

    /// The same transfer, valid only in blocks whose timestamp is at most
    /// `expires_at_ms` (milliseconds since the Unix epoch; 0 = never
    /// expires).
    #[must_use]
    pub fn with_expiry(mut self, expires_at_ms: u64) -> Self {
        self.expires_at_ms = expires_at_ms;
        self
    }

    /// The same transfer, carrying `reference` (a payment request's).
    #[must_use]
    pub fn with_reference(mut self, reference: Option<PaymentReference>) -> Self {
        self.reference = reference;
        self
    }

    /// Hash of the genesis of the one network the transfer is valid on.
    pub fn genesis_hash(&self) -> &Hash {
        &self.genesis_hash
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

    /// The last block timestamp (ms since the Unix epoch) the transfer may
    /// be included at, if it expires.
    pub fn expires_at_ms(&self) -> Option<u64> {
        (self.expires_at_ms != 0).then_some(self.expires_at_ms)
    }

    /// Whether a block with timestamp `timestamp_ms` is too late for it.
    pub fn is_expired_at(&self, timestamp_ms: u64) -> bool {
        self.expires_at_ms != 0 && timestamp_ms > self.expires_at_ms
    }

    /// The payment reference, if any.
    pub fn reference(&self) -> Option<&PaymentReference> {
        self.reference.as_ref()
    }

    /// Recipients and amounts, 1..=[`MAX_OUTPUTS`].
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The memo.
    pub fn memo(&self) -> &Memo {
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
            + Hash::LEN // genesis hash
            + PublicKey::LEN
            + 8 // nonce
            + 8 // fee
            + 8 // expiry
            + 1 // reference flag
            + self.reference.map_or(0, |_| Hash::LEN)
            + 1 // output count
            + self.outputs.len() * (PublicKey::LEN + 8)
            + 1 // memo kind
            + match self.memo {
                Memo::None => 0,
                _ => 2 + self.memo.bytes().len(),
            }
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

    /// The readers of an encrypted memo, in key-slot order ([`memo_readers`]).
    pub fn memo_readers(&self) -> Vec<&PublicKey> {
        memo_readers(&self.sender, &self.outputs)
    }

    /// The canonical bytes that are hashed into the tx id and signed
    /// (layout version 2, `docs/protocol.md`).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let len = self.signing_bytes_len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(TRANSFER_DOMAIN_TAG);
        out.push(TRANSFER_VERSION);
        out.extend_from_slice(self.genesis_hash.as_bytes());
        out.extend_from_slice(self.sender.as_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.fee.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        match &self.reference {
            None => out.push(0),
            Some(reference) => {
                out.push(1);
                out.extend_from_slice(reference.as_bytes());
            }
        }
        // Lengths fit: the constructor bounds them by 64 and 3 459.
        out.push(u8::try_from(self.outputs.len()).expect("outputs ≤ 64"));
        for output in &self.outputs {
            out.extend_from_slice(output.recipient.as_bytes());
            out.extend_from_slice(&output.amount.to_be_bytes());
        }
        out.push(self.memo.kind());
        if self.memo != Memo::None {
            let memo = self.memo.bytes();
            let memo_len = u16::try_from(memo.len()).expect("memo ≤ 3 459 bytes");
            out.extend_from_slice(&memo_len.to_be_bytes());
            out.extend_from_slice(memo);
        }
        debug_assert_eq!(out.len(), len);
        out
    }

    /// tx id = SHA-256(signing bytes).
    pub fn tx_id(&self) -> TxId {
        sha256(&self.signing_bytes())
    }

    /// The associated data that binds an encrypted memo to this transfer:
    /// `"chatpay/memo\0" ‖ genesis hash ‖ sender ‖ nonce` (docs/protocol.md).
    pub fn memo_associated_data(&self) -> Vec<u8> {
        memo_associated_data(&self.genesis_hash, &self.sender, self.nonce)
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

/// Domain tag of an encrypted memo's associated data.
pub const MEMO_DOMAIN_TAG: &[u8] = b"chatpay/memo\0";

/// `"chatpay/memo\0" ‖ genesis hash ‖ sender ‖ nonce (8 bytes, big-endian)`:
/// the associated data of every AEAD in an encrypted memo, so that an
/// envelope copied into another transfer does not open.
pub fn memo_associated_data(genesis_hash: &Hash, sender: &PublicKey, nonce: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(MEMO_DOMAIN_TAG.len() + Hash::LEN + PublicKey::LEN + 8);
    out.extend_from_slice(MEMO_DOMAIN_TAG);
    out.extend_from_slice(genesis_hash.as_bytes());
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(&nonce.to_be_bytes());
    out
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

    const NET: Hash = Hash([7; 32]);

    fn key(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n;
        SecretKey::from_slice(&b).unwrap()
    }

    fn out(n: u8, amount: u64) -> Output {
        Output {
            recipient: key(n).public_key().clone(),
            amount,
        }
    }

    fn transfer(memo: &[u8]) -> Transfer {
        Transfer::new(
            NET,
            key(1).public_key().clone(),
            1,
            10,
            vec![out(2, 5)],
            memo.to_vec(),
        )
        .unwrap()
    }

    /// An envelope of the right length for `readers` and padded size `padded`.
    fn envelope(readers: usize, padded: usize) -> Vec<u8> {
        let mut e = vec![0u8; MEMO_HEADER_BYTES + readers * MEMO_SLOT_BYTES + padded + 16];
        e[0] = ENCRYPTED_MEMO_SCHEME;
        e[MEMO_HEADER_BYTES - 1] = u8::try_from(readers).unwrap();
        e
    }

    #[test]
    fn limits_are_enforced() {
        let sender = key(1).public_key().clone();
        let mk =
            |outs: Vec<Output>, memo: Memo| Transfer::new(NET, sender.clone(), 1, 0, outs, memo);
        assert_eq!(mk(vec![], Memo::None), Err(TransferError::NoOutputs));
        assert_eq!(
            mk(vec![out(2, 1); 65], Memo::None),
            Err(TransferError::TooManyOutputs { count: 65 })
        );
        assert!(mk(vec![out(2, 1); 64], Memo::Public(vec![0; 256])).is_ok());
        assert_eq!(
            mk(vec![out(2, 1)], Memo::Public(vec![0; 257])),
            Err(TransferError::MemoTooLong { len: 257 })
        );
        for bad in ["", "Chat", "a b", &"x".repeat(65)] {
            assert!(validate_chain_id(bad).is_err());
        }
        // An empty public memo is no memo: one transfer, one encoding.
        assert_eq!(
            mk(vec![out(2, 1)], Memo::Public(vec![])).unwrap().memo(),
            &Memo::None
        );
    }

    #[test]
    fn encrypted_memo_envelopes_are_checked_for_their_readers() {
        let sender = key(1).public_key().clone();
        let mk = |outs: Vec<Output>, e: Vec<u8>| {
            Transfer::new(NET, sender.clone(), 1, 0, outs, Memo::Encrypted(e))
        };
        // One recipient: two readers (it and the sender).
        assert!(mk(vec![out(2, 1)], envelope(2, 64)).is_ok());
        assert!(mk(vec![out(2, 1)], envelope(2, 256)).is_ok());
        // A recipient twice, and the sender paying itself, add no reader.
        assert!(mk(vec![out(2, 1), out(2, 1), out(1, 1)], envelope(2, 128)).is_ok());
        assert!(mk(vec![out(2, 1), out(3, 1)], envelope(3, 64)).is_ok());
        let refused = [
            (vec![out(2, 1)], envelope(3, 64)),
            (vec![out(2, 1), out(3, 1)], envelope(2, 64)),
            (vec![out(2, 1)], envelope(2, 100)),
            (vec![out(2, 1)], envelope(2, 512)),
            (vec![out(2, 1)], vec![ENCRYPTED_MEMO_SCHEME; 10]),
            (vec![out(2, 1)], {
                let mut e = envelope(2, 64);
                e[0] = 2;
                e
            }),
        ];
        for (outs, e) in refused {
            assert!(
                matches!(mk(outs, e), Err(TransferError::BadEncryptedMemo { .. })),
                "accepted"
            );
        }
        let max = envelope(65, 256);
        assert_eq!(max.len(), MAX_ENCRYPTED_MEMO_BYTES);
        let outs: Vec<Output> = (2..=65).map(|n| out(n, 1)).collect();
        assert!(mk(outs, max).is_ok());
    }

    #[test]
    fn memo_readers_are_distinct_recipients_then_the_sender() {
        let t = Transfer::new(
            NET,
            key(1).public_key().clone(),
            1,
            0,
            vec![out(3, 1), out(1, 1), out(2, 1), out(3, 1)],
            Memo::None,
        )
        .unwrap();
        let expected = [key(3), key(2), key(1)];
        let expected: Vec<&PublicKey> = expected.iter().map(SecretKey::public_key).collect();
        assert_eq!(t.memo_readers(), expected);
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
        let mk = |net: Hash, s: &PublicKey, nonce, fee, amount, memo: Memo| {
            Transfer::new(net, s.clone(), nonce, fee, vec![out(2, amount)], memo).unwrap()
        };
        let a = || Memo::Public(b"a".to_vec());
        let variants = [
            mk(Hash([8; 32]), &sender, 1, 10, 5, a()),
            mk(NET, key(3).public_key(), 1, 10, 5, a()),
            mk(NET, &sender, 2, 10, 5, a()),
            mk(NET, &sender, 1, 11, 5, a()),
            mk(NET, &sender, 1, 10, 6, a()),
            mk(NET, &sender, 1, 10, 5, Memo::Public(b"b".to_vec())),
            mk(NET, &sender, 1, 10, 5, Memo::None),
            mk(NET, &sender, 1, 10, 5, a()).with_expiry(1),
            mk(NET, &sender, 1, 10, 5, a()).with_reference(Some(Hash([0; 32]))),
            mk(NET, &sender, 1, 10, 5, a()).with_reference(Some(Hash([1; 32]))),
        ];
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(base.signing_bytes());
        for v in variants {
            assert!(seen.insert(v.signing_bytes()), "{v:?} collides");
        }
    }

    #[test]
    fn public_and_encrypted_memos_of_the_same_bytes_differ() {
        let sender = key(1).public_key().clone();
        let e = envelope(2, 64);
        let public = Transfer::new(
            NET,
            sender.clone(),
            1,
            0,
            vec![out(2, 1)],
            Memo::Public(e.clone()),
        );
        let encrypted = Transfer::new(NET, sender, 1, 0, vec![out(2, 1)], Memo::Encrypted(e));
        assert_ne!(public.unwrap().tx_id(), encrypted.unwrap().tx_id());
    }

    #[test]
    fn expiry_is_inclusive() {
        let t = transfer(b"").with_expiry(1_000);
        assert!(!t.is_expired_at(999));
        assert!(!t.is_expired_at(1_000));
        assert!(t.is_expired_at(1_001));
        assert!(!transfer(b"").is_expired_at(u64::MAX));
    }

    #[test]
    fn signing_bytes_start_with_tag_and_version() {
        let bytes = transfer(b"").signing_bytes();
        assert!(bytes.starts_with(TRANSFER_DOMAIN_TAG));
        assert_eq!(bytes[TRANSFER_DOMAIN_TAG.len()], TRANSFER_VERSION);
        // tag 17 + version 1 + genesis 32 + sender 33 + nonce 8 + fee 8 +
        // expiry 8 + reference flag 1 + count 1 + output 41 + memo kind 1
        assert_eq!(bytes.len(), 17 + 1 + 32 + 33 + 8 + 8 + 8 + 1 + 1 + 41 + 1);
    }
}
