//! Merkle tree over a block's (tx id, receipt) leaves, as in RFC 6962/9162.
//!
//! ```text
//! leaf  = SHA-256(0x00 ‖ tx_id ‖ receipt_code)        (receipt_code: 1 byte)
//! node  = SHA-256(0x01 ‖ left ‖ right)
//! root(0 leaves) = SHA-256("")
//! root(n > 1)    = node(root(first k), root(rest)), k = largest power of 2 < n
//! ```
//! The 0x00/0x01 prefixes keep a leaf from ever being read as a node.

use crate::hash::{Hash, TxId, sha256};
use crate::ledger::ReceiptCode;
use sha2::{Digest, Sha256};

/// Most siblings a proof can have (a block holds fewer than 2^32 leaves).
const MAX_PROOF_LEN: usize = 32;

/// Why a Merkle proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// Leaf index not below the leaf count.
    #[error("leaf index {index} is not below leaf count {count}")]
    IndexOutOfRange {
        /// Index given.
        index: u32,
        /// Leaves in the tree.
        count: u32,
    },
    /// Too many or too few siblings for the tree size.
    #[error("proof has the wrong number of siblings ({len})")]
    WrongLength {
        /// Siblings given.
        len: usize,
    },
    /// The recomputed root differs from the expected root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// The leaf hash of one included transaction and its receipt.
pub fn merkle_leaf(tx_id: &TxId, code: ReceiptCode) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(tx_id.as_bytes());
    h.update([code as u8]);
    Hash(h.finalize().into())
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    Hash(h.finalize().into())
}

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n ≥ 2).
    let k = n.next_power_of_two();
    if k == n { n / 2 } else { k / 2 }
}

/// Root over leaf hashes (see module docs).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// Proof that one leaf is in a tree with a given root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleProof {
    /// Position of the leaf.
    pub leaf_index: u32,
    /// Number of leaves in the tree.
    pub leaf_count: u32,
    /// Sibling hashes, leaf level first.
    pub siblings: Vec<Hash>,
}

impl MerkleProof {
    /// Builds the proof for `leaves[index]`, or `None` if out of range.
    pub fn build(leaves: &[Hash], index: usize) -> Option<Self> {
        if index >= leaves.len() {
            return None;
        }
        let mut siblings = Vec::new();
        path(index, leaves, &mut siblings);
        Some(Self {
            leaf_index: u32::try_from(index).ok()?,
            leaf_count: u32::try_from(leaves.len()).ok()?,
            siblings,
        })
    }

    /// Checks that `leaf` is at `leaf_index` in a tree with root `root`
    /// (RFC 9162, section 2.1.3.2).
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), MerkleError> {
        if self.leaf_index >= self.leaf_count {
            return Err(MerkleError::IndexOutOfRange {
                index: self.leaf_index,
                count: self.leaf_count,
            });
        }
        let wrong_length = MerkleError::WrongLength {
            len: self.siblings.len(),
        };
        if self.siblings.len() > MAX_PROOF_LEN {
            return Err(wrong_length);
        }
        let (mut f, mut s) = (self.leaf_index, self.leaf_count - 1);
        let mut r = *leaf;
        for p in &self.siblings {
            if s == 0 {
                return Err(wrong_length);
            }
            if f & 1 == 1 || f == s {
                r = node(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        if s != 0 {
            return Err(wrong_length);
        }
        if r != *root {
            return Err(MerkleError::RootMismatch);
        }
        Ok(())
    }
}

fn path(index: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        path(index, &leaves[..k], out);
        out.push(merkle_root(&leaves[k..]));
    } else {
        path(index - k, &leaves[k..], out);
        out.push(merkle_root(&leaves[..k]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle_leaf(&sha256(&i.to_be_bytes()), ReceiptCode::Success))
            .collect()
    }

    #[test]
    fn every_leaf_proves_for_every_size() {
        for n in 1..=33 {
            let ls = leaves(n);
            let root = merkle_root(&ls);
            for (i, leaf) in ls.iter().enumerate() {
                let proof = MerkleProof::build(&ls, i).unwrap();
                proof.verify(leaf, &root).unwrap();
                // The same proof must not prove another leaf or another position.
                let other = merkle_leaf(&sha256(b"x"), ReceiptCode::Success);
                assert_eq!(proof.verify(&other, &root), Err(MerkleError::RootMismatch));
                if n > 1 {
                    let moved = MerkleProof {
                        leaf_index: ((i + 1) % n) as u32,
                        ..proof.clone()
                    };
                    assert!(moved.verify(leaf, &root).is_err(), "n={n} i={i}");
                }
            }
        }
    }

    #[test]
    fn receipt_code_is_part_of_the_leaf() {
        let id = sha256(b"tx");
        assert_ne!(
            merkle_leaf(&id, ReceiptCode::Success),
            merkle_leaf(&id, ReceiptCode::InsufficientFunds)
        );
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let ls = leaves(5);
        let root = merkle_root(&ls);
        let mut p = MerkleProof::build(&ls, 4).unwrap();
        p.siblings.push(root);
        assert!(matches!(
            p.verify(&ls[4], &root),
            Err(MerkleError::WrongLength { .. })
        ));
        let p = MerkleProof {
            leaf_index: 5,
            leaf_count: 5,
            siblings: vec![],
        };
        assert!(matches!(
            p.verify(&ls[4], &root),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
        let p = MerkleProof {
            leaf_index: 0,
            leaf_count: 5,
            siblings: vec![],
        };
        assert!(matches!(
            p.verify(&ls[0], &root),
            Err(MerkleError::WrongLength { .. })
        ));
    }
}
