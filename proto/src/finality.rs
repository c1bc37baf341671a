//! Finality proofs: what lets a wallet trust that a transaction committed,
//! with a given outcome, without trusting the validator that answered.
//!
//! ```text
//!  (tx id, receipt code) ──Merkle path──▶ header.tx_root
//!  header ◀─parent─ path[0] ◀─ … ◀─ path[k] ◀─parent─ commit_header
//!  commit_header.round = parent.round + 1, QC(commit_header) from 2f + 1
//!  ⇒ commit_header's parent is committed (2-chain rule), and with it header
//! ```

use crate::convert::ConversionError;
use crate::state::{self, StateProof, StateProofError};
use crate::{
    Account, BlockHeader, CertificateError, ChainBinding, Hash, MerkleError, MerkleProof,
    PublicKey, QuorumCertificate, ReceiptCode, TxId, merkle_leaf, pb,
};

/// Most headers between the including block and the committing pair.
pub const MAX_COMMIT_PATH: usize = 64;

/// A decoded finality proof (see `pb::FinalityProof`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalityProof {
    /// Header of the including block.
    pub header: BlockHeader,
    /// Headers after it, oldest first, up to the parent of `commit_header`.
    pub commit_path: Vec<BlockHeader>,
    /// The certified block of the round after its parent's.
    pub commit_header: BlockHeader,
    /// Certificate over `commit_header`.
    pub commit_certificate: QuorumCertificate,
    /// Merkle path of (tx id, receipt code) to `header.tx_root`.
    pub proof: MerkleProof,
}

/// Why a finality proof does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinalityError {
    /// The proof is from another chain.
    #[error("block is from another chain (genesis {found}, expected {expected})")]
    WrongChain {
        /// Genesis hash in the header.
        found: Hash,
        /// The wallet's genesis hash.
        expected: Hash,
    },
    /// The header is not at the height the transaction claims.
    #[error("proof is for height {found}, transaction claims {claimed}")]
    WrongHeight {
        /// Height in the header.
        found: u64,
        /// Height claimed.
        claimed: u64,
    },
    /// The proof is for another position in the block than the record's.
    #[error("proof is for position {found} in the block, the record says {claimed}")]
    WrongIndex {
        /// Leaf index in the proof.
        found: u32,
        /// Index claimed.
        claimed: u32,
    },
    /// The proof's tree has another number of leaves than the block has
    /// transactions.
    #[error("proof is over {found} leaves, the block holds {count} transactions")]
    WrongLeafCount {
        /// Leaf count in the proof.
        found: u32,
        /// The header's transaction count.
        count: u32,
    },
    /// The transaction and receipt are not in the block.
    #[error("transaction and receipt not in the block: {0}")]
    NotIncluded(MerkleError),
    /// The header chain does not link.
    #[error("commit path broken at height {height}")]
    BrokenPath {
        /// Height of the header whose parent does not match.
        height: u64,
    },
    /// The certified block is not of the round right after its parent's.
    #[error("certified block of round {round} does not follow round {parent_round}")]
    NotConsecutive {
        /// Its round.
        round: u64,
        /// Its parent's round.
        parent_round: u64,
    },
    /// The certificate is not over the committing header.
    #[error("certificate is for another block")]
    CertificateMismatch,
    /// The certificate's signatures do not make a quorum of the validators.
    #[error("invalid certificate: {0}")]
    BadCertificate(CertificateError),
}

impl FinalityProof {
    /// Checks that the transaction `tx_id` with outcome `code` is at
    /// position `index` of block `height` of the chain `genesis_hash`, and
    /// that the block is committed as certified by `validators` (the
    /// genesis set). A wallet that checked this may use (height, index) as
    /// a cursor: both are proven, not taken from the answer.
    pub fn verify(
        &self,
        tx_id: &TxId,
        code: ReceiptCode,
        height: u64,
        index: u32,
        genesis_hash: &Hash,
        validators: &[PublicKey],
    ) -> Result<(), FinalityError> {
        if self.header.genesis_hash != *genesis_hash {
            return Err(FinalityError::WrongChain {
                found: self.header.genesis_hash,
                expected: *genesis_hash,
            });
        }
        if self.header.height != height {
            return Err(FinalityError::WrongHeight {
                found: self.header.height,
                claimed: height,
            });
        }
        if self.proof.leaf_index != index {
            return Err(FinalityError::WrongIndex {
                found: self.proof.leaf_index,
                claimed: index,
            });
        }
        if self.proof.leaf_count != self.header.tx_count {
            return Err(FinalityError::WrongLeafCount {
                found: self.proof.leaf_count,
                count: self.header.tx_count,
            });
        }
        self.proof
            .verify(&merkle_leaf(tx_id, code), &self.header.tx_root)
            .map_err(FinalityError::NotIncluded)?;
        verify_commit(
            &self.header,
            &self.commit_path,
            &self.commit_header,
            &self.commit_certificate,
            genesis_hash,
            validators,
        )
    }
}

/// Checks that `header` is committed: `commit_path` links it to
/// `commit_header`'s parent, `commit_header` is of the round right after
/// that parent's, and `qc` is a quorum certificate of `validators` over
/// `commit_header` on the chain `genesis_hash` (the 2-chain rule).
fn verify_commit(
    header: &BlockHeader,
    commit_path: &[BlockHeader],
    commit_header: &BlockHeader,
    qc: &QuorumCertificate,
    genesis_hash: &Hash,
    validators: &[PublicKey],
) -> Result<(), FinalityError> {
    if header.genesis_hash != *genesis_hash {
        return Err(FinalityError::WrongChain {
            found: header.genesis_hash,
            expected: *genesis_hash,
        });
    }
    let mut parent = header;
    for next in commit_path.iter().chain([commit_header]) {
        if next.parent_hash != parent.hash() || Some(next.height) != parent.height.checked_add(1) {
            return Err(FinalityError::BrokenPath {
                height: next.height,
            });
        }
        parent = next;
    }
    let parent_round = commit_path.last().unwrap_or(header).round;
    if Some(commit_header.round) != parent_round.checked_add(1) {
        return Err(FinalityError::NotConsecutive {
            round: commit_header.round,
            parent_round,
        });
    }
    if qc.block_hash != commit_header.hash()
        || qc.round != commit_header.round
        || qc.height != commit_header.height
    {
        return Err(FinalityError::CertificateMismatch);
    }
    qc.verify(&ChainBinding::genesis(*genesis_hash), validators)
        .map_err(FinalityError::BadCertificate)
}

/// That a header committed, without the transaction part of a
/// [`FinalityProof`]: what an [`AccountProof`] is read against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitProof {
    /// The committed header.
    pub header: BlockHeader,
    /// Headers after it, oldest first, up to the parent of `commit_header`.
    pub commit_path: Vec<BlockHeader>,
    /// The certified block of the round after its parent's.
    pub commit_header: BlockHeader,
    /// Certificate over `commit_header`.
    pub commit_certificate: QuorumCertificate,
}

impl CommitProof {
    /// Checks that `header` is a committed block of the chain
    /// `genesis_hash`, as certified by `validators`.
    ///
    /// # Errors
    /// When it is not shown to be.
    pub fn verify(
        &self,
        genesis_hash: &Hash,
        validators: &[PublicKey],
    ) -> Result<(), FinalityError> {
        verify_commit(
            &self.header,
            &self.commit_path,
            &self.commit_header,
            &self.commit_certificate,
            genesis_hash,
            validators,
        )
    }
}

/// Why an [`AccountProof`] does not prove an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountProofError {
    /// The header is not shown to be committed.
    #[error("header not proven committed: {0}")]
    NotCommitted(FinalityError),
    /// The account is not what the tree holds at that header.
    #[error("account not in the state of height {height}: {source}")]
    NotInState {
        /// The header's height.
        height: u64,
        /// What the path shows instead.
        source: StateProofError,
    },
}

/// An account (or its absence) in the state of a committed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    /// The account's path to `commit.header.state_root`.
    pub state: StateProof,
    /// That the header committed.
    pub commit: CommitProof,
}

impl AccountProof {
    /// Checks that `key`'s account is `account` (`None`: the account does
    /// not exist) after the committed block `commit.header` of the chain
    /// `genesis_hash`, certified by `validators`; returns that block's
    /// height, the height the account is verified at.
    ///
    /// # Errors
    /// When the proof shows anything else.
    pub fn verify(
        &self,
        key: &PublicKey,
        account: Option<&Account>,
        genesis_hash: &Hash,
        validators: &[PublicKey],
    ) -> Result<u64, AccountProofError> {
        self.commit
            .verify(genesis_hash, validators)
            .map_err(AccountProofError::NotCommitted)?;
        let header = &self.commit.header;
        let leaf = account.map(state::account_leaf);
        self.state
            .verify(
                &header.state_root,
                &state::account_key(key),
                leaf.as_deref(),
            )
            .map_err(|source| AccountProofError::NotInState {
                height: header.height,
                source,
            })?;
        Ok(header.height)
    }
}

impl TryFrom<pb::CommitProof> for CommitProof {
    type Error = ConversionError;

    fn try_from(p: pb::CommitProof) -> Result<Self, ConversionError> {
        let certificate = p
            .commit_certificate
            .ok_or_else(|| ConversionError::missing("commit_certificate"))?;
        Ok(Self {
            header: header(p.header, "header")?,
            commit_path: commit_path(p.commit_path)?,
            commit_header: header(p.commit_header, "commit_header")?,
            commit_certificate: QuorumCertificate::try_from(certificate)
                .map_err(|e| e.within("commit_certificate"))?,
        })
    }
}

impl From<&CommitProof> for pb::CommitProof {
    fn from(p: &CommitProof) -> Self {
        Self {
            header: Some((&p.header).into()),
            commit_path: p.commit_path.iter().map(Into::into).collect(),
            commit_header: Some((&p.commit_header).into()),
            commit_certificate: Some((&p.commit_certificate).into()),
        }
    }
}

impl TryFrom<pb::AccountProof> for AccountProof {
    type Error = ConversionError;

    fn try_from(p: pb::AccountProof) -> Result<Self, ConversionError> {
        let state = p.state.ok_or_else(|| ConversionError::missing("state"))?;
        let commit = p.commit.ok_or_else(|| ConversionError::missing("commit"))?;
        Ok(Self {
            state: StateProof::try_from(state).map_err(|e| e.within("state"))?,
            commit: CommitProof::try_from(commit).map_err(|e| e.within("commit"))?,
        })
    }
}

impl From<&AccountProof> for pb::AccountProof {
    fn from(p: &AccountProof) -> Self {
        Self {
            state: Some((&p.state).into()),
            commit: Some((&p.commit).into()),
        }
    }
}

fn header(h: Option<pb::BlockHeader>, field: &str) -> Result<BlockHeader, ConversionError> {
    let h = h.ok_or_else(|| ConversionError::missing(field))?;
    BlockHeader::try_from(h).map_err(|e| e.within(field))
}

fn commit_path(path: Vec<pb::BlockHeader>) -> Result<Vec<BlockHeader>, ConversionError> {
    if path.len() > MAX_COMMIT_PATH {
        return Err(ConversionError::invalid(
            "commit_path",
            format!("at most {MAX_COMMIT_PATH} headers, got {}", path.len()),
        ));
    }
    path.into_iter()
        .enumerate()
        .map(|(i, h)| header(Some(h), &format!("commit_path[{i}]")))
        .collect()
}

impl TryFrom<pb::FinalityProof> for FinalityProof {
    type Error = ConversionError;

    fn try_from(p: pb::FinalityProof) -> Result<Self, ConversionError> {
        let certificate = p
            .commit_certificate
            .ok_or_else(|| ConversionError::missing("commit_certificate"))?;
        let proof = p.proof.ok_or_else(|| ConversionError::missing("proof"))?;
        Ok(Self {
            header: header(p.header, "header")?,
            commit_path: commit_path(p.commit_path)?,
            commit_header: header(p.commit_header, "commit_header")?,
            commit_certificate: QuorumCertificate::try_from(certificate)
                .map_err(|e| e.within("commit_certificate"))?,
            proof: MerkleProof::try_from(proof).map_err(|e| e.within("proof"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecretKey, ValidatorSignature, merkle_leaf, sha256, vote_signing_bytes};

    fn keys() -> Vec<SecretKey> {
        (1..=4u8)
            .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
            .collect()
    }

    fn header(parent: &BlockHeader, round: u64, tx_root: Hash) -> BlockHeader {
        BlockHeader {
            genesis_hash: parent.genesis_hash,
            height: parent.height + 1,
            round,
            parent_hash: parent.hash(),
            proposer: 0,
            timestamp_ms: 0,
            tx_count: 1,
            tx_root,
            state_root: sha256(b"state"),
        }
    }

    fn qc(h: &BlockHeader, signers: &[SecretKey]) -> QuorumCertificate {
        let chain = ChainBinding::genesis(h.genesis_hash);
        let bytes = vote_signing_bytes(&chain, &h.hash(), h.round, h.height);
        QuorumCertificate {
            block_hash: h.hash(),
            round: h.round,
            height: h.height,
            signatures: signers
                .iter()
                .enumerate()
                .map(|(i, k)| ValidatorSignature {
                    validator: i as u32,
                    signature: k.sign(&bytes),
                })
                .collect(),
        }
    }

    /// A proof of tx `t` in block 2 (round 2), path [block 3 (round 4)],
    /// committed by block 4 (round 5).
    fn setup() -> (FinalityProof, TxId, Vec<PublicKey>) {
        let k = keys();
        let t: TxId = sha256(b"tx");
        let leaves = [merkle_leaf(&t, ReceiptCode::Success), sha256(b"other")];
        let genesis = BlockHeader {
            genesis_hash: sha256(b"genesis"),
            height: 0,
            round: 0,
            parent_hash: Hash([0; 32]),
            proposer: 0,
            timestamp_ms: 0,
            tx_count: 0,
            tx_root: Hash([0; 32]),
            state_root: Hash([0; 32]),
        };
        let b1 = header(&genesis, 1, sha256(b"x"));
        let b2 = BlockHeader {
            tx_count: 2,
            ..header(&b1, 2, crate::merkle_root(&leaves))
        };
        let b3 = header(&b2, 4, sha256(b"y"));
        let b4 = header(&b3, 5, sha256(b"z"));
        let proof = FinalityProof {
            header: b2,
            commit_path: vec![b3],
            commit_certificate: qc(&b4, &k[..3]),
            commit_header: b4,
            proof: MerkleProof::build(&leaves, 0).unwrap(),
        };
        (proof, t, k.iter().map(|k| k.public_key().clone()).collect())
    }

    #[test]
    fn a_true_proof_verifies_and_every_forgery_fails() {
        let (p, t, vals) = setup();
        let g = p.header.genesis_hash;
        let check = |p: &FinalityProof| p.verify(&t, ReceiptCode::Success, 2, 0, &g, &vals);
        check(&p).unwrap();
        // Another outcome than the one in the block.
        let e = p.verify(&t, ReceiptCode::InsufficientFunds, 2, 0, &g, &vals);
        assert!(matches!(e, Err(FinalityError::NotIncluded(_))));
        // Another height, another chain.
        assert!(p.verify(&t, ReceiptCode::Success, 3, 0, &g, &vals).is_err());
        assert!(
            p.verify(&t, ReceiptCode::Success, 2, 0, &sha256(b"no"), &vals)
                .is_err()
        );
        // Another position than the record claims: a cursor made up by the
        // node (the wallet resumes from the proven one).
        assert!(matches!(
            p.verify(&t, ReceiptCode::Success, 2, 1, &g, &vals),
            Err(FinalityError::WrongIndex {
                found: 0,
                claimed: 1
            })
        ));
        // A tree of another size than the block's transaction count.
        let mut short = p.clone();
        short.proof.leaf_count = 1;
        short.proof.siblings.clear();
        assert!(matches!(
            check(&short),
            Err(FinalityError::WrongLeafCount { found: 1, count: 2 })
        ));
        // A path with a gap.
        let mut gap = p.clone();
        gap.commit_path.clear();
        assert!(matches!(check(&gap), Err(FinalityError::BrokenPath { .. })));
        // Certified, but not by a child of the next round: proves no commit.
        let mut slow = p.clone();
        slow.commit_header.round = 6;
        slow.commit_certificate = qc(&slow.commit_header, &keys()[..3]);
        assert!(matches!(
            check(&slow),
            Err(FinalityError::NotConsecutive { .. })
        ));
        // A certificate over another block, or too few signers.
        let mut other = p.clone();
        other.commit_certificate = qc(&p.commit_path[0], &keys()[..3]);
        assert!(matches!(
            check(&other),
            Err(FinalityError::CertificateMismatch)
        ));
        let mut few = p.clone();
        few.commit_certificate = qc(&p.commit_header, &keys()[..2]);
        assert!(matches!(check(&few), Err(FinalityError::BadCertificate(_))));
        // Signatures of keys outside the validator set.
        let strangers: Vec<SecretKey> = (9..=11u8)
            .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
            .collect();
        let mut forged = p.clone();
        forged.commit_certificate = qc(&p.commit_header, &strangers);
        assert!(matches!(
            check(&forged),
            Err(FinalityError::BadCertificate(_))
        ));
        // And the wire form round-trips through the decoder.
        let wire = pb::FinalityProof {
            header: Some((&p.header).into()),
            certificate: None,
            commit_certificate: Some((&p.commit_certificate).into()),
            commit_header: Some((&p.commit_header).into()),
            proof: Some((&p.proof).into()),
            commit_path: p.commit_path.iter().map(Into::into).collect(),
        };
        assert_eq!(FinalityProof::try_from(wire).unwrap(), p);
    }
}
