//! What the state tree holds, and how a client checks it: the key and the
//! leaf of every account and of the burned total, the account history that
//! each leaf commits to, and the proof of a leaf against a header's
//! `state_root` (docs/protocol.md, "Account proofs" and "Account history").
//!
//! ```text
//! account key  = SHA-256("chatpay/account\0" ‖ public key (33))
//! account leaf = "chatpay/account\0" ‖ 0x02 ‖ balance (8) ‖ nonce (8)
//!                ‖ history count (8) ‖ history hash (32)
//! burned key   = SHA-256("chatpay/burned\0")
//! burned leaf  = "chatpay/burned\0" ‖ 0x02 ‖ burned (8)
//! history entry = height (8) ‖ index (4) ‖ tx id (32) ‖ direction (1) ‖ amount (8)
//! history hash  = SHA-256("chatpay/history\0" ‖ previous hash ‖ entry), from 32 zero bytes
//! ```
//!
//! Integers are big-endian. The tree is a Jellyfish Merkle tree over
//! SHA-256 whose version is the block height; its root is the header's
//! `state_root`. This module has no tree-building code: a client that
//! verifies a proof needs only these encodings and [`StateProof::verify`].

use crate::convert::ConversionError;
use crate::{Account, Hash, PublicKey, Transfer, TxId, pb, sha256};
use sha2::{Digest, Sha256};

const ACCOUNT_TAG: &[u8] = b"chatpay/account\0";
const BURNED_TAG: &[u8] = b"chatpay/burned\0";
const HISTORY_TAG: &[u8] = b"chatpay/history\0";
/// Layout version of the leaves.
pub const LEAF_VERSION: u8 = 2;
/// Length of an account leaf.
pub const ACCOUNT_LEAF_LEN: usize = 16 + 1 + 8 + 8 + 8 + 32;
/// Most siblings in a [`StateProof`]: one per bit of the key.
pub const MAX_SIBLINGS: usize = 256;
/// Hash of an empty subtree in the tree.
pub const PLACEHOLDER_HASH: Hash = Hash(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
const LEAF_DOMAIN: &[u8] = b"JMT::LeafNode";
const INTERNAL_DOMAIN: &[u8] = b"JMT::IntrnalNode";

/// The tree key of `key`'s account.
pub fn account_key(key: &PublicKey) -> Hash {
    account_key_of(key.as_bytes())
}

/// The tree key of the account whose public key is encoded as `key` (33
/// bytes, compressed), without parsing the point.
pub fn account_key_of(key: &[u8; PublicKey::LEN]) -> Hash {
    let mut bytes = Vec::with_capacity(ACCOUNT_TAG.len() + PublicKey::LEN);
    bytes.extend_from_slice(ACCOUNT_TAG);
    bytes.extend_from_slice(key);
    sha256(&bytes)
}

/// The leaf of an account.
pub fn account_leaf(account: &Account) -> Vec<u8> {
    let mut out = Vec::with_capacity(ACCOUNT_LEAF_LEN);
    out.extend_from_slice(ACCOUNT_TAG);
    out.push(LEAF_VERSION);
    out.extend_from_slice(&account.balance.to_be_bytes());
    out.extend_from_slice(&account.nonce.to_be_bytes());
    out.extend_from_slice(&account.history_count.to_be_bytes());
    out.extend_from_slice(&account.history_hash.0);
    out
}

/// An account leaf read back; `None` if `leaf` is not one.
pub fn decode_account_leaf(leaf: &[u8]) -> Option<Account> {
    let body = leaf
        .strip_prefix(ACCOUNT_TAG)?
        .strip_prefix(&[LEAF_VERSION])?;
    if body.len() != ACCOUNT_LEAF_LEN - ACCOUNT_TAG.len() - 1 {
        return None;
    }
    let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
    Some(Account {
        balance: u64_at(0),
        nonce: u64_at(8),
        history_count: u64_at(16),
        history_hash: Hash::from_slice(&body[24..]).expect("32 bytes"),
    })
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

/// A burned-total leaf read back; `None` if `leaf` is not one.
pub fn decode_burned_leaf(leaf: &[u8]) -> Option<u64> {
    let body = leaf
        .strip_prefix(BURNED_TAG)?
        .strip_prefix(&[LEAF_VERSION])?;
    Some(u64::from_be_bytes(body.try_into().ok()?))
}

/// Which way a history entry moved the account's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The account signed the transfer.
    Sent = 1,
    /// The account is only a recipient.
    Received = 2,
}

/// One entry of an account's history: a committed transfer, with a
/// success receipt, that the account signed or received from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryEntry {
    /// Height of the including block.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// The transfer's id.
    pub tx_id: TxId,
    /// Sent or received.
    pub direction: Direction,
    /// Sent: what the account's balance went down by (the fee and the
    /// outputs to others). Received: the sum of its outputs.
    pub amount: u64,
}

impl HistoryEntry {
    /// The entry of `key` for `transfer` (id `tx_id`) at `height`/`index`,
    /// `None` if `key` is neither its sender nor a recipient, or an amount
    /// does not fit in a u64 (such a transfer never succeeds).
    pub fn of(
        transfer: &Transfer,
        tx_id: TxId,
        key: &PublicKey,
        height: u64,
        index: u32,
    ) -> Option<Self> {
        let to_key = transfer
            .outputs()
            .iter()
            .filter(|o| o.recipient == *key)
            .try_fold(0u64, |sum, o| sum.checked_add(o.amount))?;
        let (direction, amount) = if transfer.sender() == key {
            let debit = transfer.total_amount()?.checked_add(transfer.fee())?;
            (Direction::Sent, debit - to_key)
        } else if to_key > 0 {
            (Direction::Received, to_key)
        } else {
            return None;
        };
        Some(Self {
            height,
            index,
            tx_id,
            direction,
            amount,
        })
    }

    /// The 53 bytes the running hash covers.
    pub fn encode(&self) -> [u8; 53] {
        let mut out = [0u8; 53];
        out[..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..12].copy_from_slice(&self.index.to_be_bytes());
        out[12..44].copy_from_slice(&self.tx_id.0);
        out[44] = self.direction as u8;
        out[45..].copy_from_slice(&self.amount.to_be_bytes());
        out
    }
}

/// The running history hash after `entry`, given the one before it.
pub fn chain_history(previous: &Hash, entry: &HistoryEntry) -> Hash {
    let mut h = Sha256::new();
    h.update(HISTORY_TAG);
    h.update(previous.0);
    h.update(entry.encode());
    Hash(h.finalize().into())
}

/// Why a [`StateProof`] does not prove what it is checked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateProofError {
    /// More siblings than a key has bits.
    #[error("{0} siblings, at most 256")]
    TooLong(usize),
    /// An inclusion was checked, the proof ends at another key or nowhere.
    #[error("the proof does not end at the key's leaf")]
    NotIncluded,
    /// The leaf is the key's, with another value.
    #[error("the leaf holds another value")]
    WrongValue,
    /// An absence was checked, and the proof ends at the key's own leaf.
    #[error("the key is in the tree")]
    Included,
    /// The other key's leaf is not in the subtree the key falls into.
    #[error("the leaf does not share the key's path")]
    NotOnPath,
    /// The path does not hash to the root.
    #[error("the path hashes to {found}, the root is {expected}")]
    WrongRoot {
        /// What the path hashes to.
        found: Hash,
        /// The root checked against.
        expected: Hash,
    },
}

/// The path of one key in a state tree: the leaf it ends at (key, value
/// hash), if any, and the sibling hashes from that leaf's level up to the
/// root. Built by the validator from the tree; checked by anyone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateProof {
    /// (key, SHA-256 of the leaf value) of the leaf the path ends at.
    pub leaf: Option<(Hash, Hash)>,
    /// Sibling hashes, leaf level first; at most [`MAX_SIBLINGS`].
    pub siblings: Vec<Hash>,
}

/// Hash of a leaf node: SHA-256("JMT::LeafNode" ‖ key ‖ value hash).
pub fn leaf_hash(key: &Hash, value_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(LEAF_DOMAIN);
    h.update(key.0);
    h.update(value_hash.0);
    Hash(h.finalize().into())
}

/// Hash of an internal node: SHA-256("JMT::IntrnalNode" ‖ left ‖ right).
pub fn internal_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(INTERNAL_DOMAIN);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Bit `i` of `key`, from the most significant (bit 0 picks the root's
/// child).
fn bit(key: &Hash, i: usize) -> bool {
    key.0[i / 8] & (0x80 >> (i % 8)) != 0
}

fn common_prefix_bits(a: &Hash, b: &Hash) -> usize {
    (0..256).take_while(|&i| bit(a, i) == bit(b, i)).count()
}

impl StateProof {
    /// Checks that `key` holds `value` (`Some`) or is absent (`None`) in
    /// the tree whose root is `root`.
    ///
    /// # Errors
    /// When the proof shows something else, or does not hash to `root`.
    pub fn verify(
        &self,
        root: &Hash,
        key: &Hash,
        value: Option<&[u8]>,
    ) -> Result<(), StateProofError> {
        let depth = self.siblings.len();
        if depth > MAX_SIBLINGS {
            return Err(StateProofError::TooLong(depth));
        }
        match (value, &self.leaf) {
            (Some(value), Some((leaf_key, value_hash))) => {
                if leaf_key != key {
                    return Err(StateProofError::NotIncluded);
                }
                if sha256(value) != *value_hash {
                    return Err(StateProofError::WrongValue);
                }
            }
            (Some(_), None) => return Err(StateProofError::NotIncluded),
            (None, Some((leaf_key, _))) => {
                if leaf_key == key {
                    return Err(StateProofError::Included);
                }
                // The other key must sit where `key` would: the only leaf
                // of the subtree at the end of `key`'s path.
                if common_prefix_bits(key, leaf_key) < depth {
                    return Err(StateProofError::NotOnPath);
                }
            }
            (None, None) => {}
        }
        let mut hash = self
            .leaf
            .as_ref()
            .map_or(PLACEHOLDER_HASH, |(k, v)| leaf_hash(k, v));
        for (level, sibling) in self.siblings.iter().enumerate() {
            // Leaf level first: the sibling at `level` is beside bit
            // depth − 1 − level of the key.
            hash = if bit(key, depth - 1 - level) {
                internal_hash(sibling, &hash)
            } else {
                internal_hash(&hash, sibling)
            };
        }
        if hash != *root {
            return Err(StateProofError::WrongRoot {
                found: hash,
                expected: *root,
            });
        }
        Ok(())
    }
}

impl TryFrom<pb::StateProof> for StateProof {
    type Error = ConversionError;

    fn try_from(p: pb::StateProof) -> Result<Self, ConversionError> {
        if p.siblings.len() > MAX_SIBLINGS {
            return Err(ConversionError::invalid(
                "siblings",
                format!("at most {MAX_SIBLINGS}, got {}", p.siblings.len()),
            ));
        }
        let leaf = match (p.leaf_key.is_empty(), p.leaf_value_hash.is_empty()) {
            (true, true) => None,
            _ => Some((
                crate::hash_field(&p.leaf_key, "leaf_key")?,
                crate::hash_field(&p.leaf_value_hash, "leaf_value_hash")?,
            )),
        };
        let siblings = p
            .siblings
            .iter()
            .enumerate()
            .map(|(i, s)| crate::hash_field(s, &format!("siblings[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Self { leaf, siblings })
    }
}

impl From<&StateProof> for pb::StateProof {
    fn from(p: &StateProof) -> Self {
        let (leaf_key, leaf_value_hash) = p.leaf.map_or((Vec::new(), Vec::new()), |(k, v)| {
            (k.0.to_vec(), v.0.to_vec())
        });
        Self {
            leaf_key,
            leaf_value_hash,
            siblings: p.siblings.iter().map(|s| s.0.to_vec()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_leaves_are_distinct_and_fixed() {
        let key = crate::SecretKey::from_slice(&[7; 32]).unwrap();
        let a = account_key(key.public_key());
        assert_ne!(a, burned_key());
        let account = Account {
            balance: 5,
            nonce: 2,
            history_count: 3,
            history_hash: Hash([9; 32]),
        };
        let leaf = account_leaf(&account);
        assert_eq!(leaf.len(), ACCOUNT_LEAF_LEN);
        assert_eq!(
            &leaf[16..41],
            &[
                2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3
            ]
        );
        assert_eq!(decode_account_leaf(&leaf), Some(account));
        assert_eq!(decode_account_leaf(&leaf[1..]), None);
        assert_eq!(decode_account_leaf(&burned_leaf(9)), None);
        assert_eq!(burned_leaf(9).len(), 15 + 1 + 8);
    }

    #[test]
    fn history_entries_say_who_paid_what() {
        let k = |i: u8| crate::SecretKey::from_slice(&[i; 32]).unwrap();
        let (a, b) = (k(1), k(2));
        let t = Transfer::new(
            crate::Hash([5; 32]),
            a.public_key().clone(),
            1,
            10,
            vec![
                crate::Output {
                    recipient: b.public_key().clone(),
                    amount: 100,
                },
                crate::Output {
                    recipient: a.public_key().clone(),
                    amount: 7,
                },
            ],
            Vec::new(),
        )
        .unwrap();
        let id = sha256(b"tx");
        let sent = HistoryEntry::of(&t, id, a.public_key(), 3, 1).unwrap();
        assert_eq!((sent.direction, sent.amount), (Direction::Sent, 110));
        let got = HistoryEntry::of(&t, id, b.public_key(), 3, 1).unwrap();
        assert_eq!((got.direction, got.amount), (Direction::Received, 100));
        assert_eq!(HistoryEntry::of(&t, id, k(3).public_key(), 3, 1), None);
        // The running hash depends on every field and on the order.
        let h1 = chain_history(&Hash::default(), &sent);
        let h2 = chain_history(&h1, &got);
        assert_ne!(
            h2,
            chain_history(&chain_history(&Hash::default(), &got), &sent)
        );
        assert_ne!(
            h1,
            chain_history(&Hash::default(), &HistoryEntry { amount: 1, ..sent })
        );
    }
}
