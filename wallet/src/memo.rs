//! Encrypted memos: only the payer and each payee can read what a payment
//! is for (docs/protocol.md, "Encrypted memos"; ADR 0018).
//!
//! ```text
//!  content key k (random, 32 B) ── ChaCha20-Poly1305(k, 0¹², pad(memo), ad) ──▶ ciphertext
//!  ephemeral key e (random) ── for each reader R (payees, then payer):
//!      kek = HKDF-SHA256(salt = none, ikm = x(e·R), info = tag ‖ E ‖ R)
//!      slot = ChaCha20-Poly1305(kek, 0¹², k, ad)
//!  envelope = 0x01 ‖ E ‖ SHA-256(tag ‖ k) ‖ n ‖ slot₁ … slotₙ ‖ ciphertext
//!  ad = "chatpay/memo\0" ‖ genesis hash ‖ sender ‖ nonce
//! ```
//!
//! Every key is used for one encryption only (a fresh ephemeral key and a
//! fresh content key per transfer), so the all-zero nonce is safe. The key
//! check commits the envelope to one content key: ChaCha20-Poly1305 alone
//! lets a sender craft one ciphertext that opens to different memos under
//! different keys, which would show each payee of a split bill another
//! text.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use chatpay_proto::{
    ENCRYPTED_MEMO_SCHEME, Hash, MAX_ENCRYPTED_MEMO_TEXT, MEMO_HEADER_BYTES, MEMO_PADDED_SIZES,
    MEMO_SLOT_BYTES, Memo, PublicKey, SecretKey, Transfer, sha256,
};
use sha2::Sha256;

/// Tag of each reader's key-derivation info.
pub const KEK_INFO_TAG: &[u8] = b"chatpay/memo-kek\0";

/// Tag of the content key check.
pub const KEY_CHECK_TAG: &[u8] = b"chatpay/memo-key\0";

/// Why a memo could not be encrypted or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoError {
    /// The memo text is longer than an encrypted memo carries.
    #[error("an encrypted memo is at most {MAX_ENCRYPTED_MEMO_TEXT} bytes, got {0}")]
    TooLong(usize),
    /// The key is not one of the memo's readers.
    #[error("this account is not one of the memo's readers")]
    NotAReader,
    /// The envelope does not open: damaged, or not made for this transfer.
    #[error("the encrypted memo does not open: {0}")]
    Corrupt(&'static str),
}

/// The random inputs of one encryption (fresh for every transfer; fixed
/// only in test vectors).
#[derive(Clone)]
pub struct MemoSecrets {
    /// The ephemeral secret key e.
    pub ephemeral: [u8; 32],
    /// The content key k.
    pub content_key: [u8; 32],
}

impl MemoSecrets {
    /// Fresh secrets from the operating system's randomness.
    pub fn random() -> Self {
        let mut content_key = [0u8; 32];
        getrandom::fill(&mut content_key).expect("the operating system provides randomness");
        let ephemeral = SecretKey::generate().to_bytes();
        Self {
            ephemeral,
            content_key,
        }
    }
}

/// The padded plaintext: 2-byte big-endian length, the text, zeros up to
/// the smallest of [`MEMO_PADDED_SIZES`] that holds them.
pub fn pad(text: &[u8]) -> Result<Vec<u8>, MemoError> {
    let size = MEMO_PADDED_SIZES
        .iter()
        .copied()
        .find(|size| text.len() + 2 <= *size)
        .ok_or(MemoError::TooLong(text.len()))?;
    let len = u16::try_from(text.len()).expect("at most 254");
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text);
    out.resize(size, 0);
    Ok(out)
}

fn unpad(padded: &[u8]) -> Result<Vec<u8>, MemoError> {
    let [hi, lo, rest @ ..] = padded else {
        return Err(MemoError::Corrupt("padded text too short"));
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len > rest.len() || rest[len..].iter().any(|b| *b != 0) {
        return Err(MemoError::Corrupt("padding is not zeros after the length"));
    }
    Ok(rest[..len].to_vec())
}

/// x-coordinate of `secret · point`.
fn shared_x(secret: &[u8; 32], point: &PublicKey) -> Result<[u8; 32], MemoError> {
    let secret = k256::SecretKey::from_slice(secret).map_err(|_| MemoError::Corrupt("bad key"))?;
    let point = k256::PublicKey::from_sec1_bytes(point.as_bytes())
        .map_err(|_| MemoError::Corrupt("ephemeral key is not a curve point"))?;
    let shared = k256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), point.as_affine());
    Ok((*shared.raw_secret_bytes()).into())
}

/// A reader's key-wrapping key: HKDF-SHA256 with no salt, the shared
/// x-coordinate as input key material and `tag ‖ E ‖ R` as info.
fn kek(shared_x: &[u8; 32], ephemeral: &PublicKey, reader: &PublicKey) -> [u8; 32] {
    let mut info = Vec::with_capacity(KEK_INFO_TAG.len() + 2 * PublicKey::LEN);
    info.extend_from_slice(KEK_INFO_TAG);
    info.extend_from_slice(ephemeral.as_bytes());
    info.extend_from_slice(reader.as_bytes());
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, shared_x)
        .expand(&info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

fn seal(key: &[u8; 32], plaintext: &[u8], ad: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any length below 256 GiB")
}

fn open(key: &[u8; 32], ciphertext: &[u8], ad: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .ok()
}

fn key_check(content_key: &[u8; 32]) -> Hash {
    let mut input = KEY_CHECK_TAG.to_vec();
    input.extend_from_slice(content_key);
    sha256(&input)
}

/// Encrypts `text` for `readers` (each distinct payee, then the payer:
/// [`chatpay_proto::memo_readers`]) of the transfer whose memo associated
/// data is `ad` ([`chatpay_proto::memo_associated_data`]).
pub fn encrypt(
    text: &[u8],
    readers: &[&PublicKey],
    ad: &[u8],
    secrets: &MemoSecrets,
) -> Result<Vec<u8>, MemoError> {
    let padded = pad(text)?;
    let ephemeral_secret = SecretKey::from_slice(&secrets.ephemeral)
        .map_err(|_| MemoError::Corrupt("ephemeral secret is not a valid scalar"))?;
    let ephemeral = ephemeral_secret.public_key();
    let slots = u8::try_from(readers.len()).expect("at most 65 readers");
    let mut out =
        Vec::with_capacity(MEMO_HEADER_BYTES + readers.len() * MEMO_SLOT_BYTES + padded.len() + 16);
    out.push(ENCRYPTED_MEMO_SCHEME);
    out.extend_from_slice(ephemeral.as_bytes());
    out.extend_from_slice(key_check(&secrets.content_key).as_bytes());
    out.push(slots);
    for reader in readers {
        let kek = kek(&shared_x(&secrets.ephemeral, reader)?, ephemeral, reader);
        out.extend_from_slice(&seal(&kek, &secrets.content_key, ad));
    }
    out.extend_from_slice(&seal(&secrets.content_key, &padded, ad));
    Ok(out)
}

/// Opens the encrypted memo of `transfer` with `key`, one of its readers'.
pub fn decrypt(transfer: &Transfer, key: &SecretKey) -> Result<Vec<u8>, MemoError> {
    let Memo::Encrypted(envelope) = transfer.memo() else {
        return Err(MemoError::Corrupt("the memo is not encrypted"));
    };
    let readers = transfer.memo_readers();
    let slot = readers
        .iter()
        .position(|r| *r == key.public_key())
        .ok_or(MemoError::NotAReader)?;
    // Transfer::new checked the layout: the slots and the ciphertext fit.
    let ephemeral = PublicKey::from_slice(&envelope[1..1 + PublicKey::LEN])
        .map_err(|_| MemoError::Corrupt("ephemeral key is not a curve point"))?;
    let check = &envelope[1 + PublicKey::LEN..MEMO_HEADER_BYTES - 1];
    let slots = &envelope[MEMO_HEADER_BYTES..MEMO_HEADER_BYTES + readers.len() * MEMO_SLOT_BYTES];
    let wrapped = &slots[slot * MEMO_SLOT_BYTES..(slot + 1) * MEMO_SLOT_BYTES];
    let ciphertext = &envelope[MEMO_HEADER_BYTES + readers.len() * MEMO_SLOT_BYTES..];
    let ad = transfer.memo_associated_data();
    let kek = kek(
        &shared_x(&key.to_bytes(), &ephemeral)?,
        &ephemeral,
        key.public_key(),
    );
    let content_key: [u8; 32] = open(&kek, wrapped, &ad)
        .and_then(|k| k.try_into().ok())
        .ok_or(MemoError::Corrupt("this reader's key slot does not open"))?;
    if key_check(&content_key).as_bytes() != check {
        return Err(MemoError::Corrupt(
            "the content key does not match its check",
        ));
    }
    let padded = open(&content_key, ciphertext, &ad)
        .ok_or(MemoError::Corrupt("the ciphertext does not open"))?;
    unpad(&padded)
}

/// What a reader sees of a memo: the text of a public memo, the opened text
/// of an encrypted one if `key` is among its readers, and
/// `"(encrypted memo)"` to anyone else.
pub fn read(transfer: &Transfer, key: Option<&SecretKey>) -> MemoText {
    match transfer.memo() {
        Memo::None => MemoText::None,
        Memo::Public(bytes) => MemoText::Public(String::from_utf8_lossy(bytes).into_owned()),
        Memo::Encrypted(_) => match key.map(|k| decrypt(transfer, k)) {
            Some(Ok(bytes)) => MemoText::Private(String::from_utf8_lossy(&bytes).into_owned()),
            Some(Err(e @ MemoError::Corrupt(_))) => MemoText::Unreadable(e.to_string()),
            _ => MemoText::Encrypted,
        },
    }
}

/// A memo as shown to one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoText {
    /// No memo.
    None,
    /// A public memo: everyone can read it.
    Public(String),
    /// An encrypted memo this reader opened.
    Private(String),
    /// An encrypted memo this reader cannot open (not a reader).
    Encrypted,
    /// An encrypted memo for this reader that does not open (damaged or
    /// forged by its sender).
    Unreadable(String),
}

impl MemoText {
    /// The text to show: the memo, `(encrypted memo)`, or empty.
    pub fn display(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::Public(t) | Self::Private(t) => t.clone(),
            Self::Encrypted => "(encrypted memo)".into(),
            Self::Unreadable(why) => format!("(unreadable encrypted memo: {why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatpay_proto::Output;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_slice(&[n; 32]).unwrap()
    }

    fn transfer(memo: Memo, to: &[u8]) -> Transfer {
        let outputs = to
            .iter()
            .map(|n| Output {
                recipient: key(*n).public_key().clone(),
                amount: 1,
            })
            .collect();
        Transfer::new(
            Hash([9; 32]),
            key(1).public_key().clone(),
            4,
            1,
            outputs,
            memo,
        )
        .unwrap()
    }

    fn encrypted(text: &str, to: &[u8]) -> Transfer {
        let plain = transfer(Memo::None, to);
        let e = encrypt(
            text.as_bytes(),
            &plain.memo_readers(),
            &plain.memo_associated_data(),
            &MemoSecrets::random(),
        )
        .unwrap();
        transfer(Memo::Encrypted(e), to)
    }

    #[test]
    fn payer_and_every_payee_read_it_and_nobody_else() {
        let t = encrypted("dinner at Luigi's", &[2, 3, 2]);
        for reader in [1, 2, 3] {
            assert_eq!(decrypt(&t, &key(reader)).unwrap(), b"dinner at Luigi's");
        }
        assert_eq!(decrypt(&t, &key(4)), Err(MemoError::NotAReader));
        assert_eq!(read(&t, Some(&key(4))), MemoText::Encrypted);
        assert_eq!(read(&t, None).display(), "(encrypted memo)");
    }

    #[test]
    fn sizes_are_padded() {
        for (text, padded) in [
            (0, 64),
            (62, 64),
            (63, 128),
            (126, 128),
            (127, 256),
            (254, 256),
        ] {
            assert_eq!(pad(&vec![b'a'; text]).unwrap().len(), padded);
        }
        assert_eq!(pad(&[0; 255]), Err(MemoError::TooLong(255)));
    }

    #[test]
    fn an_envelope_moved_to_another_transfer_does_not_open() {
        let t = encrypted("rent", &[2]);
        let Memo::Encrypted(e) = t.memo().clone() else {
            unreachable!()
        };
        // Same readers, another nonce: the associated data differs.
        let moved = Transfer::new(
            Hash([9; 32]),
            key(1).public_key().clone(),
            5,
            1,
            t.outputs().to_vec(),
            Memo::Encrypted(e),
        )
        .unwrap();
        assert!(matches!(
            decrypt(&moved, &key(2)),
            Err(MemoError::Corrupt(_))
        ));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let t = encrypted("rent", &[2]);
        let Memo::Encrypted(e) = t.memo().clone() else {
            unreachable!()
        };
        for i in 1..e.len() {
            if i == MEMO_HEADER_BYTES - 1 {
                continue; // the slot count: refused by Transfer::new
            }
            let mut bad = e.clone();
            bad[i] ^= 1;
            let bad = transfer(Memo::Encrypted(bad), &[2]);
            // A flip in one reader's slot leaves the other's intact.
            let failed = [1, 2].iter().filter(|r| decrypt(&bad, &key(**r)).is_err());
            assert!(failed.count() >= 1, "byte {i}");
        }
    }
}
