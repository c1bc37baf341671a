//! Keys: recovery phrases (BIP39), account keys derived from them, and
//! encrypted key files.
//!
//! ```text
//!  12-word phrase ──BIP39──▶ 64-byte seed
//!  seed, account i ──SHA-256("chatpay/account-key\0" ‖ seed ‖ i ‖ c)──▶ secp256k1 key
//!                                        (c = 0, 1, … until the scalar is valid)
//!  key file = argon2id(password, salt) ─▶ XChaCha20-Poly1305(secret), JSON, mode 0600
//! ```

use crate::WalletError;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chatpay_proto::SecretKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Words of a new recovery phrase (128 bits of entropy).
pub const PHRASE_WORDS: usize = 12;

/// A BIP39 recovery phrase (English word list).
#[derive(Clone)]
pub struct RecoveryPhrase(bip39::Mnemonic);

impl std::fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPhrase(…)")
    }
}

impl RecoveryPhrase {
    /// A new random phrase.
    pub fn generate() -> Self {
        let mut entropy = [0u8; 16];
        getrandom::fill(&mut entropy).expect("the operating system provides randomness");
        Self(bip39::Mnemonic::from_entropy(&entropy).expect("16 bytes is a valid entropy size"))
    }

    /// Parses a phrase a person typed (case and spacing are forgiven; a
    /// wrong word or checksum is an error naming the problem).
    pub fn parse(text: &str) -> Result<Self, WalletError> {
        let normalized = text
            .split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ");
        bip39::Mnemonic::parse_normalized(&normalized)
            .map(Self)
            .map_err(|e| WalletError::BadPhrase(e.to_string()))
    }

    /// The words, space separated.
    pub fn words(&self) -> String {
        self.0.to_string()
    }

    /// The key of account `index` (0 is the first account).
    pub fn account_key(&self, index: u32) -> SecretKey {
        let seed = self.0.to_seed_normalized("");
        (0u32..)
            .find_map(|counter| {
                let mut h = Sha256::new();
                h.update(b"chatpay/account-key\0");
                h.update(seed);
                h.update(index.to_be_bytes());
                h.update(counter.to_be_bytes());
                SecretKey::from_slice(&h.finalize()).ok()
            })
            .expect("a valid scalar is found within a few tries")
    }
}

/// Cost of the key-file KDF (argon2id).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (OWASP's argon2id guidance).
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// An encrypted secret as stored on disk (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version (1).
    pub version: u32,
    /// What the secret is: "phrase" or "key".
    pub kind: String,
    /// KDF name ("argon2id").
    pub kdf: String,
    /// KDF cost.
    pub kdf_params: KdfParams,
    /// KDF salt, hex.
    pub salt: String,
    /// Cipher name ("xchacha20poly1305").
    pub cipher: String,
    /// Nonce, hex.
    pub nonce: String,
    /// Ciphertext with tag, hex.
    pub ciphertext: String,
}

fn derive(password: &str, salt: &[u8], params: KdfParams) -> Result<[u8; 32], WalletError> {
    let params = Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| WalletError::Corrupt(format!("key file KDF parameters: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|e| WalletError::Corrupt(format!("key file KDF: {e}")))?;
    Ok(key)
}

fn aad(kind: &str) -> Vec<u8> {
    format!("chatpay-keyfile-v1/{kind}").into_bytes()
}

impl KeyFile {
    /// Encrypts `secret` (of `kind`) under `password`.
    pub fn seal(
        kind: &str,
        secret: &[u8],
        password: &str,
        params: KdfParams,
    ) -> Result<Self, WalletError> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut salt).expect("the operating system provides randomness");
        getrandom::fill(&mut nonce).expect("the operating system provides randomness");
        let key = derive(password, &salt, params)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad(kind),
                },
            )
            .map_err(|_| WalletError::Corrupt("encryption failed".into()))?;
        Ok(Self {
            version: 1,
            kind: kind.into(),
            kdf: "argon2id".into(),
            kdf_params: params,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        })
    }

    /// Decrypts with `password`; a wrong password is [`WalletError::WrongPassword`].
    pub fn open(&self, password: &str) -> Result<Vec<u8>, WalletError> {
        if self.version != 1 || self.kdf != "argon2id" || self.cipher != "xchacha20poly1305" {
            return Err(WalletError::Corrupt(format!(
                "unsupported key file (version {}, {}, {})",
                self.version, self.kdf, self.cipher
            )));
        }
        let bad = |what: &str| WalletError::Corrupt(format!("key file {what} is not valid hex"));
        let salt = hex::decode(&self.salt).map_err(|_| bad("salt"))?;
        let nonce = hex::decode(&self.nonce).map_err(|_| bad("nonce"))?;
        let ciphertext = hex::decode(&self.ciphertext).map_err(|_| bad("ciphertext"))?;
        if nonce.len() != 24 {
            return Err(WalletError::Corrupt(
                "key file nonce must be 24 bytes".into(),
            ));
        }
        let key = derive(password, &salt, self.kdf_params)?;
        XChaCha20Poly1305::new(Key::from_slice(&key))
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad(&self.kind),
                },
            )
            .map_err(|_| WalletError::WrongPassword)
    }

    /// Writes the file with mode 0600, refusing to replace an existing one.
    pub fn write_new(&self, path: &Path) -> Result<(), WalletError> {
        let json = serde_json::to_vec_pretty(self).expect("a key file serializes");
        crate::home::write_private(path, &json)
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self, WalletError> {
        let bytes = std::fs::read(path).map_err(|e| WalletError::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| WalletError::Corrupt(format!("{}: {e}", path.display())))
    }
}

/// Cheap KDF parameters for unit tests.
#[cfg(test)]
pub(crate) const TEST_KDF: KdfParams = KdfParams {
    m_kib: 256,
    t: 1,
    p: 1,
};

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = TEST_KDF;

    #[test]
    fn a_phrase_restores_the_same_keys() {
        let phrase = RecoveryPhrase::generate();
        assert_eq!(phrase.words().split(' ').count(), PHRASE_WORDS);
        let typed = format!("  {}  ", phrase.words().to_uppercase().replace(' ', "   "));
        let restored = RecoveryPhrase::parse(&typed).unwrap();
        for i in 0..3 {
            assert_eq!(
                phrase.account_key(i).public_key(),
                restored.account_key(i).public_key()
            );
        }
        assert_ne!(
            phrase.account_key(0).public_key(),
            phrase.account_key(1).public_key()
        );
    }

    #[test]
    fn a_known_phrase_gives_a_fixed_key() {
        // The BIP39 all-"abandon" phrase; account 0's public key as computed
        // by wallet/testdata/derive_vector.py, an independent implementation.
        let phrase = RecoveryPhrase::parse(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
        .unwrap();
        let key = hex::encode(phrase.account_key(0).public_key().as_bytes());
        assert_eq!(key.len(), 66);
        assert_eq!(key, KNOWN_ACCOUNT_0);
    }

    const KNOWN_ACCOUNT_0: &str = include_str!("../testdata/abandon_account0.txt");

    #[test]
    fn bad_phrases_are_named() {
        let e = RecoveryPhrase::parse("abandon abandon")
            .unwrap_err()
            .to_string();
        assert!(e.contains("recovery phrase"), "{e}");
        let words = "abandon ".repeat(12);
        let e = RecoveryPhrase::parse(&words).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn key_files_open_with_the_password_only() {
        let secret = b"thirty-two bytes of secret key!!";
        let file = KeyFile::seal("key", secret, "correct horse", FAST).unwrap();
        assert_eq!(file.open("correct horse").unwrap(), secret);
        assert!(matches!(
            file.open("wrong"),
            Err(WalletError::WrongPassword)
        ));
        // The kind is bound: relabelling the secret breaks it.
        let mut relabelled = file.clone();
        relabelled.kind = "phrase".into();
        assert!(relabelled.open("correct horse").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        file.write_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(file.write_new(&path).is_err());
        assert_eq!(
            KeyFile::read(&path).unwrap().open("correct horse").unwrap(),
            secret
        );
    }
}
