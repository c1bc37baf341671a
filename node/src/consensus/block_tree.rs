//! The tree of uncommitted blocks above the last committed one, their
//! certificates, and the 2-chain commit rule.
//!
//! ```text
//!  committed root ◀── B0 (round r) ◀── B1 (round r+1) ◀── ...
//!  QC(B1) with B1.round = B0.round + 1  ⇒  commit B0 and its ancestors, in order
//! ```
//!
//! Pure and bounded: at most [`MAX_PENDING_BLOCKS`] uncommitted blocks.

use super::messages::Block;
use super::mutations::Mutations;
use chatpay_proto::{BlockHeader, Hash, QuorumCertificate};
use std::collections::BTreeMap;

/// Most uncommitted blocks held (forks included).
pub const MAX_PENDING_BLOCKS: usize = 1_024;

/// Why a block or certificate was not added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The parent is neither the committed root nor a held block.
    #[error("parent {parent} of block {block} is unknown")]
    UnknownParent {
        /// The block.
        block: Hash,
        /// Its missing parent.
        parent: Hash,
    },
    /// Height or round does not follow the parent.
    #[error("block {block} does not follow its parent: {reason}")]
    BadLink {
        /// The block.
        block: Hash,
        /// What is wrong.
        reason: String,
    },
    /// The block's certificate is not for its parent.
    #[error("block {block} justifies {justified}, not its parent {parent}")]
    WrongJustify {
        /// The block.
        block: Hash,
        /// Block its certificate is for.
        justified: Hash,
        /// Its parent.
        parent: Hash,
    },
    /// At or below the committed height: too old to matter.
    #[error("block at height {height} is not above the committed height {committed}")]
    Stale {
        /// Its height.
        height: u64,
        /// Committed height.
        committed: u64,
    },
    /// The tree is full.
    #[error("{MAX_PENDING_BLOCKS} uncommitted blocks held; refusing more")]
    Full,
}

/// Certificates of blocks not held are kept up to this many heights above
/// the committed head (the fetch depth: farther, a validator syncs).
const CERTIFICATES_AHEAD: u64 = super::sync::MAX_FETCH_DEPTH;

/// Uncommitted blocks and certificates.
pub struct BlockTree {
    root: BlockHeader,
    root_hash: Hash,
    blocks: BTreeMap<Hash, Block>,
    certificates: BTreeMap<Hash, QuorumCertificate>,
    high_qc: QuorumCertificate,
    mutations: Mutations,
}

impl BlockTree {
    /// A tree whose root is the committed block `root`, certified by `root_qc`.
    pub fn new(root: BlockHeader, root_qc: QuorumCertificate) -> Self {
        let root_hash = root.hash();
        Self {
            root,
            root_hash,
            blocks: BTreeMap::new(),
            certificates: BTreeMap::new(),
            high_qc: root_qc,
            mutations: Mutations::NONE,
        }
    }

    /// The same tree, breaking the rules named in `mutations` (simulation
    /// tests only; inert unless built with the `mutations` feature).
    pub fn with_mutations(mut self, mutations: Mutations) -> Self {
        self.mutations = mutations;
        self
    }

    /// The last committed header.
    pub fn root(&self) -> &BlockHeader {
        &self.root
    }

    /// The hash of the last committed header.
    pub fn root_hash(&self) -> Hash {
        self.root_hash
    }

    /// The highest certificate known.
    pub fn high_qc(&self) -> &QuorumCertificate {
        &self.high_qc
    }

    /// A held block.
    pub fn block(&self, hash: &Hash) -> Option<&Block> {
        self.blocks.get(hash)
    }

    /// Whether `hash` is the root or a held block.
    pub fn contains(&self, hash: &Hash) -> bool {
        *hash == self.root_hash || self.blocks.contains_key(hash)
    }

    /// Uncommitted blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no uncommitted block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    fn header_of(&self, hash: &Hash) -> Option<&BlockHeader> {
        if *hash == self.root_hash {
            Some(&self.root)
        } else {
            self.blocks.get(hash).map(|b| &b.header)
        }
    }

    /// Adds a block whose parent is held (or is the root). Its certificate
    /// (`justify`) is recorded too. Returns the blocks this commits.
    pub fn insert_block(&mut self, block: Block) -> Result<Vec<Block>, TreeError> {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) {
            return Ok(Vec::new());
        }
        let h = &block.header;
        if h.height <= self.root.height {
            return Err(TreeError::Stale {
                height: h.height,
                committed: self.root.height,
            });
        }
        if block.justify.block_hash != h.parent_hash {
            return Err(TreeError::WrongJustify {
                block: hash,
                justified: block.justify.block_hash,
                parent: h.parent_hash,
            });
        }
        let parent = self
            .header_of(&h.parent_hash)
            .ok_or(TreeError::UnknownParent {
                block: hash,
                parent: h.parent_hash,
            })?;
        if h.height != parent.height + 1 || h.round <= parent.round {
            let reason = format!(
                "height {} round {} after parent height {} round {}",
                h.height, h.round, parent.height, parent.round
            );
            return Err(TreeError::BadLink {
                block: hash,
                reason,
            });
        }
        if self.blocks.len() >= MAX_PENDING_BLOCKS {
            return Err(TreeError::Full);
        }
        let justify = block.justify.clone();
        self.blocks.insert(hash, block);
        Ok(self.insert_qc(justify))
    }

    /// Records a certificate (of a held block, or one to be fetched) and
    /// returns the blocks it commits by the 2-chain rule, oldest first.
    pub fn insert_qc(&mut self, qc: QuorumCertificate) -> Vec<Block> {
        if qc.round > self.high_qc.round {
            self.high_qc = qc.clone();
        }
        let certified = qc.block_hash;
        // A certificate of a committed height (a late message), or far above
        // the head for a block not held (the validator is behind and
        // catches up by range sync), is not kept.
        let above = qc.height > self.root.height;
        let near = qc.height <= self.root.height.saturating_add(CERTIFICATES_AHEAD);
        if above && (near || self.blocks.contains_key(&certified)) {
            self.certificates.insert(certified, qc);
        }
        let Some(child) = self.blocks.get(&certified) else {
            return Vec::new();
        };
        if self.mutations.one_chain_commit() {
            return self.commit(certified);
        }
        let parent_hash = child.header.parent_hash;
        let Some(parent) = self.blocks.get(&parent_hash) else {
            return Vec::new();
        };
        if parent.header.round + 1 != child.header.round {
            return Vec::new();
        }
        self.commit(parent_hash)
    }

    /// Commits `hash` and its uncommitted ancestors; prunes everything that
    /// does not descend from the new root.
    fn commit(&mut self, hash: Hash) -> Vec<Block> {
        let mut chain = Vec::new();
        let mut cursor = hash;
        while cursor != self.root_hash {
            let block = self
                .blocks
                .remove(&cursor)
                .expect("ancestors of a held block are held");
            cursor = block.header.parent_hash;
            chain.push(block);
        }
        chain.reverse();
        let new_root = chain.last().expect("commit of a held block").header.clone();
        self.root_hash = new_root.hash();
        self.root = new_root;
        // Keep only descendants of the new root.
        let mut keep: BTreeMap<Hash, Block> = BTreeMap::new();
        let mut frontier = vec![self.root_hash];
        while let Some(parent) = frontier.pop() {
            let children: Vec<Hash> = self
                .blocks
                .iter()
                .filter(|(_, b)| b.header.parent_hash == parent)
                .map(|(h, _)| *h)
                .collect();
            for child in children {
                let block = self.blocks.remove(&child).expect("listed above");
                frontier.push(child);
                keep.insert(child, block);
            }
        }
        self.blocks = keep;
        let root_height = self.root.height;
        self.certificates
            .retain(|h, q| q.height > root_height || *h == self.root_hash);
        chain
    }

    /// The certificate that a held child of `parent` in the round after it
    /// carries (the child whose certificate committed `parent`; the lowest
    /// hash if a faulty leader made two).
    pub fn carried_certificate(&self, parent: &Hash) -> Option<&QuorumCertificate> {
        let round = self.header_of(parent)?.round;
        self.blocks
            .iter()
            .filter(|(_, b)| b.header.parent_hash == *parent)
            .filter(|(_, b)| round.checked_add(1) == Some(b.header.round))
            .map(|(_, b)| &b.justify)
            .next()
    }

    /// Certificates held (of held blocks, and of blocks near the head).
    pub fn certificates_held(&self) -> usize {
        self.certificates.len()
    }

    /// The certificate of a held block, if one was seen.
    pub fn certificate(&self, hash: &Hash) -> Option<&QuorumCertificate> {
        self.certificates.get(hash)
    }

    /// Forgets the blocks of rounds below `round` that no certificate
    /// reaches: neither certified nor an ancestor of a certified block or
    /// of a block of `round` or later. Such a block lost its round, and
    /// whoever certifies it later shows the certificate, which fetches it
    /// again. Without this, a leader's blocks that never gather a quorum
    /// would pile up for as long as nothing commits. Returns the hashes
    /// forgotten.
    pub fn prune_uncertified_before(&mut self, round: u64) -> Vec<Hash> {
        let mut keep = std::collections::BTreeSet::new();
        let live: Vec<Hash> = self
            .blocks
            .iter()
            .filter(|(h, b)| b.header.round >= round || self.certificates.contains_key(*h))
            .map(|(h, _)| *h)
            .collect();
        for start in live {
            let mut cursor = start;
            while let Some(block) = self.blocks.get(&cursor) {
                if !keep.insert(cursor) {
                    break;
                }
                cursor = block.header.parent_hash;
            }
        }
        let dropped: Vec<Hash> = self
            .blocks
            .keys()
            .filter(|h| !keep.contains(*h))
            .copied()
            .collect();
        for h in &dropped {
            self.blocks.remove(h);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatpay_proto::sha256;

    fn genesis() -> BlockHeader {
        BlockHeader {
            genesis_hash: sha256(b"g"),
            height: 0,
            round: 0,
            parent_hash: Hash::default(),
            proposer: 0,
            timestamp_ms: 0,
            tx_count: 0,
            tx_root: sha256(b""),
            state_root: sha256(b"s0"),
        }
    }

    fn qc_of(h: &BlockHeader) -> QuorumCertificate {
        QuorumCertificate {
            block_hash: h.hash(),
            round: h.round,
            height: h.height,
            signatures: vec![],
        }
    }

    fn child(parent: &BlockHeader, round: u64, salt: u8) -> Block {
        let header = BlockHeader {
            height: parent.height + 1,
            round,
            parent_hash: parent.hash(),
            state_root: sha256(&[salt]),
            ..parent.clone()
        };
        Block {
            header,
            transactions: vec![],
            justify: qc_of(parent),
        }
    }

    fn heights(blocks: &[Block]) -> Vec<u64> {
        blocks.iter().map(|b| b.header.height).collect()
    }

    #[test]
    fn two_chain_commits_in_order() {
        let g = genesis();
        let mut t = BlockTree::new(g.clone(), qc_of(&g));
        let b1 = child(&g, 1, 1);
        let b2 = child(&b1.header, 2, 1);
        let b3 = child(&b2.header, 3, 1);
        assert!(t.insert_block(b1.clone()).unwrap().is_empty());
        // b2 carries QC(b1): b1 certified, no child certified yet.
        assert!(t.insert_block(b2.clone()).unwrap().is_empty());
        // b3 carries QC(b2): b2 (round 2) certified, child of b1 (round 1) → commit b1.
        assert_eq!(heights(&t.insert_block(b3.clone()).unwrap()), vec![1]);
        assert_eq!(t.root().height, 1);
        assert_eq!(heights(&t.insert_qc(qc_of(&b3.header))), vec![2]);
        assert_eq!(t.high_qc().round, 3);
    }

    #[test]
    fn a_round_gap_delays_the_commit_then_ancestors_commit_together() {
        let g = genesis();
        let mut t = BlockTree::new(g.clone(), qc_of(&g));
        let b1 = child(&g, 1, 1);
        let b2 = child(&b1.header, 3, 1); // round 2 timed out
        let b3 = child(&b2.header, 4, 1);
        t.insert_block(b1).unwrap();
        assert!(
            t.insert_block(b2).unwrap().is_empty(),
            "QC(b1) alone commits nothing"
        );
        // QC(b2) with b2.round = 3 ≠ b1.round + 1: still nothing.
        assert!(t.insert_block(b3.clone()).unwrap().is_empty());
        // QC(b3), b3.round = b2.round + 1 → commit b2 and its ancestor b1.
        assert_eq!(heights(&t.insert_qc(qc_of(&b3.header))), vec![1, 2]);
    }

    #[test]
    fn equivocating_leader_cannot_fork_and_losers_are_pruned() {
        let g = genesis();
        let mut t = BlockTree::new(g.clone(), qc_of(&g));
        let a = child(&g, 1, 1);
        let b = child(&g, 1, 2); // same round, other block
        t.insert_block(a.clone()).unwrap();
        t.insert_block(b.clone()).unwrap();
        assert_eq!(t.len(), 2);
        let a2 = child(&a.header, 2, 1);
        t.insert_block(a2.clone()).unwrap();
        let committed = t.insert_qc(qc_of(&a2.header));
        assert_eq!(
            committed.iter().map(Block::hash).collect::<Vec<_>>(),
            vec![a.hash()]
        );
        assert!(!t.contains(&b.hash()), "the other branch is gone");
        assert!(t.contains(&a2.hash()));
        assert!(matches!(
            t.insert_block(child(&b.header, 2, 3)),
            Err(TreeError::UnknownParent { .. })
        ));
        assert!(matches!(t.insert_block(b), Err(TreeError::Stale { .. })));
    }

    #[test]
    fn uncertified_blocks_of_ended_rounds_are_pruned_and_certified_ones_kept() {
        let g = genesis();
        let mut tree = BlockTree::new(g.clone(), qc_of(&g));
        // Round gaps, so nothing commits: b1, b2 and b3 are certified by
        // their children; round 6's block and the fork at round 7 never
        // are, and round 8 is current.
        let b1 = child(&g, 1, 0);
        let b2 = child(&b1.header, 3, 0);
        let b3 = child(&b2.header, 5, 0);
        let lost6 = child(&b3.header, 6, 0);
        let lost7 = child(&b1.header, 7, 1);
        let b8 = child(&b3.header, 8, 0);
        for b in [&b1, &b2, &b3, &lost6, &lost7, &b8] {
            assert!(tree.insert_block(b.clone()).unwrap().is_empty());
        }
        let mut dropped = tree.prune_uncertified_before(8);
        dropped.sort();
        let mut expected = vec![lost6.hash(), lost7.hash()];
        expected.sort();
        assert_eq!(dropped, expected);
        for kept in [&b1, &b2, &b3, &b8] {
            assert!(tree.contains(&kept.hash()));
        }
        assert_eq!(tree.len(), 4);
        // Shown again (its certificate fetches it), it is taken back.
        assert!(tree.insert_block(lost6.clone()).is_ok());
        assert!(tree.contains(&lost6.hash()));
    }

    #[test]
    fn certificates_of_committed_or_far_heights_are_not_kept() {
        let g = genesis();
        let mut tree = BlockTree::new(g.clone(), qc_of(&g));
        let mut at = |height: u64| {
            let mut h = g.clone();
            h.height = height;
            h.round = height;
            h.timestamp_ms = 7; // not the genesis block itself
            tree.insert_qc(qc_of(&h));
            tree.certificates_held()
        };
        // A late certificate of the committed height: not kept.
        assert_eq!(at(0), 0);
        // Within the fetch depth: kept, to be stored with its block.
        assert_eq!(at(CERTIFICATES_AHEAD), 1);
        // Farther, of a block not held: the validator syncs; not kept.
        assert_eq!(at(CERTIFICATES_AHEAD + 1), 1);
        assert_eq!(at(1_000), 1);
    }

    #[test]
    fn refuses_bad_links() {
        let g = genesis();
        let mut t = BlockTree::new(g.clone(), qc_of(&g));
        let b1 = child(&g, 1, 1);
        let orphan = child(&b1.header, 2, 1);
        assert!(matches!(
            t.insert_block(orphan),
            Err(TreeError::UnknownParent { .. })
        ));
        let mut same_round = child(&g, 0, 1);
        same_round.header.round = 0;
        assert!(matches!(
            t.insert_block(same_round),
            Err(TreeError::BadLink { .. })
        ));
        let mut skip = child(&g, 1, 1);
        skip.header.height = 2;
        assert!(matches!(
            t.insert_block(skip),
            Err(TreeError::BadLink { .. })
        ));
        let mut wrong = child(&g, 1, 1);
        wrong.justify.block_hash = sha256(b"x");
        assert!(matches!(
            t.insert_block(wrong),
            Err(TreeError::WrongJustify { .. })
        ));
    }
}
