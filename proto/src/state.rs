//! What the state tree holds: the key and the leaf of every account, and
//! of the burned total (docs/ledger.md, "State tree").
//!
//! ```text
//! account key  = SHA-256("chatpay/account\0" ‖ public key (33))
//! account leaf = "chatpay/account\0" ‖ 0x01 ‖ balance (8) ‖ nonce (8)
//! burned key   = SHA-256("chatpay/burned\0")
//! burned leaf  = "chatpay/burned\0" ‖ 0x01 ‖ burned (8)
//! ```
//!
//! Integers are big-endian. The tree is a Jellyfish Merkle tree over
//! SHA-256 whose version is the block height; its root is the header's
//! `state_root`. This module has no tree code: a client that verifies a
//! proof needs only these encodings and the tree's hashing rules.

use crate::{Account, Hash, PublicKey, sha256};

const ACCOUNT_TAG: &[u8] = b"chatpay/account\0";
const BURNED_TAG: &[u8] = b"chatpay/burned\0";
/// Layout version of the leaves.
pub const LEAF_VERSION: u8 = 1;

/// The tree key of `key`'s account.
pub fn account_key(key: &PublicKey) -> Hash {
    let mut bytes = Vec::with_capacity(ACCOUNT_TAG.len() + 33);
    bytes.extend_from_slice(ACCOUNT_TAG);
    bytes.extend_from_slice(key.as_bytes());
    sha256(&bytes)
}

/// The leaf of an account.
pub fn account_leaf(account: &Account) -> Vec<u8> {
    let mut out = Vec::with_capacity(ACCOUNT_TAG.len() + 17);
    out.extend_from_slice(ACCOUNT_TAG);
    out.push(LEAF_VERSION);
    out.extend_from_slice(&account.balance.to_be_bytes());
    out.extend_from_slice(&account.nonce.to_be_bytes());
    out
}

/// The tree key of the burned total.
pub fn burned_key() -> Hash {
    sha256(BURNED_TAG)
}

/// The leaf of the burned total.
pub fn burned_leaf(burned: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(BURNED_TAG.len() + 9);
    out.extend_from_slice(BURNED_TAG);
    out.push(LEAF_VERSION);
    out.extend_from_slice(&burned.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_leaves_are_distinct_and_fixed() {
        let key = crate::SecretKey::from_slice(&[7; 32]).unwrap();
        let a = account_key(key.public_key());
        assert_ne!(a, burned_key());
        let leaf = account_leaf(&Account {
            balance: 5,
            nonce: 2,
        });
        assert_eq!(leaf.len(), 16 + 1 + 16);
        assert_eq!(
            &leaf[16..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(burned_leaf(9).len(), 15 + 1 + 8);
    }
}
