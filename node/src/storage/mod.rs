//! Durable ledger storage.
//!
//! ```text
//!   execution output ──▶ BlockCommit ──▶ Store::commit_block ──▶ one atomic,
//!                                         (checks height/parent)   synced write
//! ```
//!
//! Two implementations of [`Store`] share one test suite: [`RocksStore`]
//! (production, RocksDB) and [`MemoryStore`] (simulation and tests).
//!
//! Invariants:
//! - Blocks are committed at consecutive heights, each extending the previous
//!   header's hash; a commit is all or nothing and is on disk (fsync) when
//!   `commit_block` returns.
//! - Reopening resumes at the last committed height.
//! - Any failure to read or write is returned as [`StoreError`]; callers stop
//!   the node rather than continue on state they could not persist.

mod codec;
pub mod columns;
mod kv;
mod memory;
mod rocks;
pub mod safety_file;
#[cfg(test)]
pub(crate) mod suite;

pub use kv::KvStore;
pub use memory::MemoryStore;
pub use rocks::RocksStore;
pub use safety_file::SafetyFiles;

use chatpay_proto::{
    Account, BlockHeader, Hash, PublicKey, QuorumCertificate, Receipt, SignedTransfer, TxId,
};

/// A storage failure. Every variant is fatal for the node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it could not be decoded.
        detail: String,
    },
    /// A commit that does not extend the committed chain.
    #[error("refusing commit at height {height}: {reason}")]
    InvalidCommit {
        /// Height of the refused commit.
        height: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything one committed block changes, written atomically.
#[derive(Debug, Clone)]
pub struct BlockCommit {
    /// Header of the block (height 0 is the genesis header).
    pub header: BlockHeader,
    /// Certificate over the block, when known.
    pub certificate: Option<QuorumCertificate>,
    /// Included transactions, in block order.
    pub transactions: Vec<SignedTransfer>,
    /// One receipt per transaction, same order.
    pub receipts: Vec<Receipt>,
    /// New state of every account the block touched, sorted by key.
    pub accounts: Vec<(PublicKey, Account)>,
    /// Total fees burned since genesis, after this block.
    pub burned: u64,
    /// The nodes the block adds to the state tree, encoded (key, node):
    /// see [`crate::execution::state_tree`].
    pub tree_nodes: Vec<(Vec<u8>, Vec<u8>)>,
    /// The nodes of earlier versions the block replaces (encoded keys),
    /// stale from its height on: pruned once no kept version needs them.
    pub stale_tree_nodes: Vec<Vec<u8>>,
    /// The history entries the block adds, per account, in block order.
    pub history: Vec<(PublicKey, HistoryEntry)>,
}

/// A committed block as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    /// The header.
    pub header: BlockHeader,
    /// Transaction ids in block order.
    pub tx_ids: Vec<TxId>,
    /// Certificate over the block, when known.
    pub certificate: Option<QuorumCertificate>,
}

/// A committed transaction with its place and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// The transaction as included.
    pub transaction: SignedTransfer,
    /// Height of the including block.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// Outcome.
    pub receipt: Receipt,
}

/// Position of a transaction in the chain: (height, index in block).
pub type TxPosition = (u64, u32);

/// One entry of an account's history (`chatpay_proto::state::HistoryEntry`
/// says what it covers), with where it is in the account's running hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Where the transaction is.
    pub position: TxPosition,
    /// Its id.
    pub tx_id: TxId,
    /// Its number in the account's history, from 1.
    pub number: u64,
    /// The running history hash before it.
    pub hash_before: Hash,
}

/// One leaf of the state tree with the account it belongs to: what a
/// state snapshot carries (`crate::state_sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The tree key.
    pub key: Hash,
    /// The account's public key (33 bytes, compressed; not parsed: a
    /// snapshot checks it by its hash, the tree key); `None` for the
    /// burned total.
    pub owner: Option<[u8; PublicKey::LEN]>,
    /// The leaf.
    pub leaf: Vec<u8>,
}

/// Durable ledger storage. Implementations are safe to share between tasks.
pub trait Store: Send + Sync + 'static {
    /// Height of the last committed block; `None` before genesis is written.
    fn committed_height(&self) -> Result<Option<u64>>;

    /// Writes one block's changes atomically and durably.
    ///
    /// Refused with [`StoreError::InvalidCommit`] unless the header is at the
    /// next height and extends the last committed header (height 0 only on an
    /// empty store), and there is one receipt per transaction.
    fn commit_block(&self, commit: &BlockCommit) -> Result<()>;

    /// Committed state of an account.
    fn account(&self, key: &PublicKey) -> Result<Option<Account>>;

    /// A committed block by height.
    fn block(&self, height: u64) -> Result<Option<StoredBlock>>;

    /// Height of a committed block by hash.
    fn height_of(&self, block_hash: &Hash) -> Result<Option<u64>>;

    /// A committed transaction by id.
    fn transaction(&self, tx_id: &TxId) -> Result<Option<TxRecord>>;

    /// Up to `limit` history entries of `key` strictly before `before`
    /// (all when `None`), newest first.
    fn history_before(
        &self,
        key: &PublicKey,
        before: Option<TxPosition>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>>;

    /// Up to `limit` committed transfers carrying payment reference
    /// `reference`, at or after position `from`, oldest first.
    fn payments_with_reference(
        &self,
        reference: &Hash,
        from: TxPosition,
        limit: usize,
    ) -> Result<Vec<(TxPosition, TxId)>>;

    /// Up to `limit` history entries of `key` at or after `from`, oldest first.
    fn history_from(
        &self,
        key: &PublicKey,
        from: TxPosition,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>>;

    /// Total fees burned since genesis.
    fn burned(&self) -> Result<u64>;

    /// The leaf value of the state tree key `key_hash` at `version`: the
    /// last one written at or below it, `None` if there is none (or it was
    /// pruned: only the versions the tree keeps are readable).
    fn state_value(&self, key_hash: &Hash, version: u64) -> Result<Option<Vec<u8>>>;

    /// A node of the state tree by its encoded key
    /// ([`crate::execution::state_tree::encode_key`]).
    fn tree_node(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Deletes up to `limit` state tree nodes that were replaced at a
    /// version ≤ `up_to_version`, and the leaf values of their keys that
    /// no version from `up_to_version` on reads (trees and values of later
    /// versions stay whole); returns how many nodes. Not synced: a crash only leaves some to delete
    /// again.
    fn prune_state_tree(&self, up_to_version: u64, limit: usize) -> Result<usize>;

    /// Up to `limit` leaves of the tree of `version` whose key is at least
    /// `from`, in key order (a state snapshot's chunk). Only versions the
    /// tree keeps whole are complete.
    fn state_entries(&self, from: &Hash, version: u64, limit: usize) -> Result<Vec<StateEntry>>;

    /// Writes a verified chunk of a state snapshot at `version` into an
    /// empty store: its accounts and leaves, and the tree nodes it
    /// completes (encoded key, node). Not synced; the store stays without
    /// a committed block (and an interrupted import is found by
    /// [`Store::partial_import`]) until [`Store::finish_import`].
    fn import_state(
        &self,
        version: u64,
        entries: &[StateEntry],
        nodes: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()>;

    /// Ends an import: stores the genesis header, the snapshot's header
    /// (with its certificate) as the committed head, and the burned total,
    /// in one synced write. Blocks between genesis and the head are not
    /// in the store ([`Store::first_full_height`]).
    fn finish_import(
        &self,
        genesis: &BlockHeader,
        header: &BlockHeader,
        certificate: Option<&QuorumCertificate>,
        burned: u64,
    ) -> Result<()>;

    /// The version of a snapshot import that started and did not finish.
    fn partial_import(&self) -> Result<Option<u64>>;

    /// Deletes every block, transaction, account and tree node, keeping the
    /// safety record and its certificates (an interrupted import).
    fn discard_chain_data(&self) -> Result<()>;

    /// The lowest height above genesis from which every committed block is
    /// kept whole (with its transactions and history): 1, unless the store
    /// was started from a snapshot (then the snapshot's height + 1).
    fn first_full_height(&self) -> Result<u64>;

    /// Forgets committed blocks below `below − 1` (genesis stays), with
    /// their transactions and history rows, at most `limit` blocks a call
    /// from the oldest kept; the block at `below − 1` stays as the parent
    /// of the first one kept whole, which becomes `below`. The new
    /// [`Store::first_full_height`] is durable before anything is deleted,
    /// so nothing half deleted is ever served; the deletions are not
    /// synced (a crash leaves some to delete again). Returns how many
    /// blocks it forgot.
    fn prune_blocks(&self, below: u64, limit: usize) -> Result<usize>;

    /// Calls `f` for every account, in key order (audits and tests).
    fn for_each_account(&self, f: &mut dyn FnMut(&PublicKey, &Account)) -> Result<()>;

    /// The consensus safety record, if one was stored.
    fn safety_data(&self) -> Result<Option<Vec<u8>>>;

    /// Replaces the consensus safety record; durable when it returns.
    fn put_safety_data(&self, bytes: &[u8]) -> Result<()>;

    /// Records an uncommitted block consensus accepted (opaque bytes), for
    /// recovery. Not synced on its own: the next synced write (the safety
    /// record, before any vote leaves) makes it durable with everything
    /// written before it.
    fn put_pending_block(&self, height: u64, hash: &Hash, bytes: &[u8]) -> Result<()>;

    /// The recorded uncommitted blocks, lowest height first.
    fn pending_blocks(&self) -> Result<Vec<Vec<u8>>>;

    /// Forgets recorded blocks at or below `up_to_height` (committed or dead).
    fn prune_pending_blocks(&self, up_to_height: u64) -> Result<()>;

    /// The highest quorum certificate consensus recorded (opaque bytes).
    fn high_qc(&self) -> Result<Option<Vec<u8>>>;

    /// Records the highest quorum certificate (not synced on its own, like
    /// [`Store::put_pending_block`]).
    fn put_high_qc(&self, bytes: &[u8]) -> Result<()>;

    /// The timeout certificate that took consensus into its highest round,
    /// as recorded (opaque bytes).
    fn high_tc(&self) -> Result<Option<Vec<u8>>>;

    /// Records the timeout certificate of the highest round entered by
    /// timeout (not synced on its own: the safety record's synced write
    /// before a timeout in that round leaves makes it durable).
    fn put_high_tc(&self, bytes: &[u8]) -> Result<()>;

    /// Header of the last committed block, or `None` before genesis.
    fn last_header(&self) -> Result<Option<BlockHeader>> {
        match self.committed_height()? {
            None => Ok(None),
            Some(h) => Ok(self.block(h)?.map(|b| b.header)),
        }
    }
}

/// Checks that `commit` extends `last` (the last committed header).
pub(crate) fn check_extends(last: Option<&BlockHeader>, commit: &BlockCommit) -> Result<()> {
    let height = commit.header.height;
    let refuse = |reason: String| Err(StoreError::InvalidCommit { height, reason });
    match last {
        None if height != 0 => {
            return refuse("the store is empty; the first commit is genesis".into());
        }
        None => {}
        Some(last) => {
            if height != last.height + 1 {
                return refuse(format!("last committed height is {}", last.height));
            }
            if commit.header.parent_hash != last.hash() {
                return refuse(format!(
                    "parent hash {} is not the committed block {}",
                    commit.header.parent_hash,
                    last.hash()
                ));
            }
        }
    }
    if commit.transactions.len() != commit.receipts.len() {
        return refuse(format!(
            "{} transactions but {} receipts",
            commit.transactions.len(),
            commit.receipts.len()
        ));
    }
    if commit.transactions.len() != commit.header.tx_count as usize {
        return refuse(format!(
            "header says {} transactions, commit has {}",
            commit.header.tx_count,
            commit.transactions.len()
        ));
    }
    Ok(())
}
