//! secp256k1 keys and ECDSA signatures, as chatpay uses them.
//!
//! A signature is ECDSA over SHA-256(message) with an RFC 6979 deterministic
//! nonce, encoded as 64 bytes `r ‖ s` (big-endian), with `s` in the lower half
//! of the group order. High-S signatures are rejected so that a third party
//! cannot flip a valid signature into a second valid one.

use crate::hash::{Hash, sha256};
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{SigningKey, VerifyingKey};
use std::cmp::Ordering;
use std::fmt;
use std::hash::Hasher;

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A public key was not 33 bytes.
    #[error("public key must be 33 bytes (compressed SEC1), got {len}")]
    PublicKeyLength {
        /// Length received.
        len: usize,
    },
    /// 33 bytes that are not a compressed point on secp256k1.
    #[error("public key is not a valid compressed secp256k1 point")]
    InvalidPoint,
    /// A secret key that is not a scalar in 1..n.
    #[error("secret key must be 32 bytes encoding a scalar in [1, n)")]
    InvalidSecretKey,
    /// A signature was not 64 bytes.
    #[error("signature must be 64 bytes (r || s), got {len}")]
    SignatureLength {
        /// Length received.
        len: usize,
    },
    /// r or s is zero or not below the group order.
    #[error("signature r or s is zero or not below the group order")]
    MalformedSignature,
    /// s is in the upper half of the group order.
    #[error("signature has a high S value; only low-S signatures are accepted")]
    HighS,
    /// The signature does not verify for this key and message.
    #[error("signature does not verify")]
    Invalid,
}

impl SignatureError {
    /// Stable machine-readable name of the error (used in test vectors and APIs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::PublicKeyLength { .. } => "public_key_length",
            Self::InvalidPoint => "invalid_point",
            Self::InvalidSecretKey => "invalid_secret_key",
            Self::SignatureLength { .. } => "signature_length",
            Self::MalformedSignature => "malformed_signature",
            Self::HighS => "high_s",
            Self::Invalid => "invalid",
        }
    }
}

/// A secp256k1 public key, held in its 33-byte compressed SEC1 form.
///
/// Construction checks that the bytes are a point on the curve, so a value of
/// this type is always a usable verification key.
#[derive(Clone)]
pub struct PublicKey {
    bytes: [u8; 33],
    key: VerifyingKey,
}

impl PublicKey {
    /// Length of a compressed public key.
    pub const LEN: usize = 33;

    /// Parses a 33-byte compressed SEC1 point.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: [u8; 33] = bytes
            .try_into()
            .map_err(|_| SignatureError::PublicKeyLength { len: bytes.len() })?;
        // Only the compressed forms 0x02/0x03 are canonical.
        if bytes[0] != 0x02 && bytes[0] != 0x03 {
            return Err(SignatureError::InvalidPoint);
        }
        #[cfg(feature = "key-cache")]
        if let Some(key) = key_cache::get(&bytes) {
            return Ok(key);
        }
        let key =
            VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| SignatureError::InvalidPoint)?;
        let key = Self { bytes, key };
        #[cfg(feature = "key-cache")]
        key_cache::put(&key);
        Ok(key)
    }

    /// The 33-byte compressed SEC1 encoding.
    pub fn as_bytes(&self) -> &[u8; 33] {
        &self.bytes
    }

    /// Checks `signature` over SHA-256(`message`).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        self.verify_digest(&sha256(message), signature)
    }

    /// Checks `signature` over an already computed SHA-256 `digest`.
    pub fn verify_digest(
        &self,
        digest: &Hash,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let sig = signature.to_k256()?;
        self.key
            .verify_prehash(digest.as_bytes(), &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Keys parsed lately (feature `key-cache`, which validators enable).
///
/// Parsing a key decompresses its point, a field square root that costs an
/// eighth of a signature check, and a validator parses each sender and
/// recipient several times: on submission or forwarding, in the proposal
/// that orders it, in sync. A key is only ever cached after it parsed, and
/// a hit must match all 33 bytes, so the cache changes speed, never
/// results. Slots are picked by x-coordinate bytes; keys chosen to collide
/// only evict each other.
#[cfg(feature = "key-cache")]
mod key_cache {
    use super::PublicKey;
    use std::sync::{LazyLock, Mutex};

    /// Slots (16,384 × about 150 bytes: 2.4 MiB).
    const SLOTS: usize = 1 << 14;

    static CACHE: LazyLock<Box<[Mutex<Option<PublicKey>>]>> =
        LazyLock::new(|| (0..SLOTS).map(|_| Mutex::new(None)).collect());

    fn slot(bytes: &[u8; 33]) -> &'static Mutex<Option<PublicKey>> {
        let x = u16::from_le_bytes([bytes[1], bytes[2]]);
        &CACHE[usize::from(x) % SLOTS]
    }

    pub(super) fn get(bytes: &[u8; 33]) -> Option<PublicKey> {
        let slot = slot(bytes).lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().filter(|k| &k.bytes == bytes).cloned()
    }

    pub(super) fn put(key: &PublicKey) {
        *slot(&key.bytes).lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.bytes))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.bytes))
    }
}

/// A secp256k1 secret key. Its bytes are wiped from memory on drop.
#[derive(Clone)]
pub struct SecretKey {
    key: SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// Parses a 32-byte big-endian scalar in `[1, n)`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let key = SigningKey::from_slice(bytes).map_err(|_| SignatureError::InvalidSecretKey)?;
        let point = key.verifying_key().to_sec1_point(true);
        let public = PublicKey::from_slice(point.as_bytes())?;
        Ok(Self { key, public })
    }

    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
            if let Ok(key) = Self::from_slice(&bytes) {
                return key;
            }
        }
    }

    /// The 32-byte big-endian scalar. Handle with care.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs SHA-256(`message`).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.sign_digest(&sha256(message))
    }

    /// Signs an already computed SHA-256 `digest` (RFC 6979 nonce, low S).
    pub fn sign_digest(&self, digest: &Hash) -> Signature {
        let sig: k256::ecdsa::Signature = self
            .key
            .sign_prehash(digest.as_bytes())
            .expect("signing a 32-byte prehash with a valid key cannot fail");
        let bytes: [u8; 64] = sig.normalize_s().to_bytes().into();
        Signature(bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public)
    }
}

/// A 64-byte `r ‖ s` ECDSA signature as it travels on the wire.
///
/// The bytes are only checked for canonical form (`r`, `s` in range, low S)
/// when verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Length of a signature.
    pub const LEN: usize = 64;

    /// Takes exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| SignatureError::SignatureLength { len: bytes.len() })
    }

    /// The 64 bytes `r ‖ s`.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Checks the canonical form without a key: `r`, `s` in `[1, n)`, low S.
    pub fn check_canonical(&self) -> Result<(), SignatureError> {
        self.to_k256().map(|_| ())
    }

    fn to_k256(self) -> Result<k256::ecdsa::Signature, SignatureError> {
        let sig = k256::ecdsa::Signature::from_slice(&self.0)
            .map_err(|_| SignatureError::MalformedSignature)?;
        if sig.normalize_s() != sig {
            return Err(SignatureError::HighS);
        }
        Ok(sig)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        let mut bytes = [0u8; 32];
        bytes[31] = n;
        SecretKey::from_slice(&bytes).unwrap()
    }

    /// Keys that share a cache slot, or differ only in the parity byte,
    /// come back as themselves; a point off the curve is refused each time.
    #[test]
    fn parsing_a_key_again_gives_the_same_key() {
        let keys: Vec<PublicKey> = (1..=40).map(|n| key(n).public_key().clone()).collect();
        for _ in 0..2 {
            for k in &keys {
                let parsed = PublicKey::from_slice(k.as_bytes()).unwrap();
                assert_eq!(parsed, *k);
                assert_eq!(parsed.key, k.key);
                let mut flipped = *k.as_bytes();
                flipped[0] ^= 1; // 0x02 <-> 0x03: the negated point
                let negated = PublicKey::from_slice(&flipped).unwrap();
                assert_ne!(negated.key, k.key);
                assert_eq!(negated.as_bytes(), &flipped);
            }
        }
        // Same first x bytes (same slot), another key: never a stale hit.
        let mut other = *keys[0].as_bytes();
        for tail in 3..33u8 {
            other[usize::from(tail)] = tail;
            match PublicKey::from_slice(&other) {
                Ok(parsed) => assert_eq!(parsed.as_bytes(), &other),
                Err(e) => assert_eq!(e, SignatureError::InvalidPoint),
            }
        }
        let mut off_curve = [0u8; 33];
        off_curve[0] = 2;
        off_curve[32] = 5; // x = 5: 5^3 + 7 = 132 is not a square mod p
        for _ in 0..2 {
            assert_eq!(
                PublicKey::from_slice(&off_curve).unwrap_err(),
                SignatureError::InvalidPoint
            );
        }
    }

    #[test]
    fn sign_then_verify() {
        let sk = key(7);
        let sig = sk.sign(b"pay bob");
        sk.public_key().verify(b"pay bob", &sig).unwrap();
        assert_eq!(
            sk.public_key().verify(b"pay eve", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            key(8).public_key().verify(b"pay bob", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn high_s_is_rejected() {
        let sk = key(3);
        let sig = sk.sign(b"m");
        // s' = n - s is the other valid signature; it must be refused.
        let k = k256::ecdsa::Signature::from_slice(&sig.0).unwrap();
        let (r, s) = k.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let high = Signature(high.to_bytes().into());
        assert_ne!(high, sig);
        assert_eq!(
            sk.public_key().verify(b"m", &high),
            Err(SignatureError::HighS)
        );
    }

    #[test]
    fn malformed_signatures_and_keys_are_refused() {
        let sk = key(5);
        assert_eq!(
            sk.public_key().verify(b"m", &Signature([0; 64])),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            sk.public_key().verify(b"m", &Signature([0xff; 64])),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            Signature::from_slice(&[1; 63]),
            Err(SignatureError::SignatureLength { len: 63 })
        );
        assert_eq!(
            PublicKey::from_slice(&[2; 32]).unwrap_err(),
            SignatureError::PublicKeyLength { len: 32 }
        );
        let mut uncompressed_prefix = *sk.public_key().as_bytes();
        uncompressed_prefix[0] = 0x04;
        assert_eq!(
            PublicKey::from_slice(&uncompressed_prefix).unwrap_err(),
            SignatureError::InvalidPoint
        );
        assert_eq!(
            SecretKey::from_slice(&[0; 32]).unwrap_err(),
            SignatureError::InvalidSecretKey
        );
        assert_eq!(
            SecretKey::from_slice(&[0xff; 32]).unwrap_err(),
            SignatureError::InvalidSecretKey
        );
    }

    #[test]
    fn signing_is_deterministic() {
        assert_eq!(key(9).sign(b"x"), key(9).sign(b"x"));
    }
}
