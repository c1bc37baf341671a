//! Every RocksDB column family, in one place, with its key and value layout.
//! Integers in keys are big-endian so that byte order is numeric order.

/// height (u64) → `pb::BlockRecord` (header + tx ids).
pub const BLOCKS: &str = "blocks";
/// height (u64) → `pb::QuorumCertificate` over the block at that height.
pub const CERTIFICATES: &str = "certificates";
/// block hash (32) → height (u64): the committed height index.
pub const BLOCK_HEIGHTS: &str = "block_heights";
/// tx id (32) → `pb::CommittedTransaction` (transaction, height, index, receipt).
pub const TRANSACTIONS: &str = "transactions";
/// public key (33) → balance (u64) ‖ nonce (u64).
pub const ACCOUNTS: &str = "accounts";
/// public key (33) ‖ height (u64) ‖ index (u32) → tx id (32) ‖ number in
/// the account's history (u64) ‖ running hash before it (32).
pub const HISTORY: &str = "history";
/// fixed key → consensus safety data (opaque bytes owned by consensus);
/// `HIGH_QC_KEY` → the highest quorum certificate seen (`pb::QuorumCertificate`);
/// `HIGH_TC_KEY` → the timeout certificate of the highest round entered by
/// timeout (`pb::TimeoutCertificate`).
pub const SAFETY: &str = "safety";
/// height (u64) ‖ block hash (32) → `pb::Block`: uncommitted blocks this
/// validator accepted, for recovery after a crash; pruned as blocks commit.
pub const PENDING_BLOCKS: &str = "pending_blocks";
/// fixed keys → committed height, burned total.
pub const METADATA: &str = "metadata";
/// node key (borsh: version ‖ nibble path) → node (borsh): the state tree
/// (`execution::state_tree`), every version since the last pruning.
pub const STATE_TREE: &str = "state_tree";
/// stale since version (u64) ‖ node key (borsh) → empty: the state tree's
/// nodes that a later version replaced, pruned once no kept version needs
/// them (`Store::prune_state_tree`).
pub const STALE_TREE_NODES: &str = "stale_tree_nodes";
/// tree key (32) ‖ version (u64) → owner length (u8) ‖ owner's public key
/// (33, absent for the burned total) ‖ leaf: the value of a state tree
/// leaf from that version on (the tree itself keeps only value hashes);
/// pruned with the replaced leaf nodes (`Store::prune_state_tree`).
pub const STATE_VALUES: &str = "state_values";

/// payment reference (32) ‖ height (u64) ‖ index (u32) → tx id (32): the
/// committed transfers that carry each reference (`FindPayment`).
pub const REFERENCES: &str = "references";

/// All column families, created when the database is opened.
pub const ALL: [&str; 13] = [
    BLOCKS,
    CERTIFICATES,
    BLOCK_HEIGHTS,
    TRANSACTIONS,
    ACCOUNTS,
    HISTORY,
    SAFETY,
    METADATA,
    PENDING_BLOCKS,
    STATE_TREE,
    STALE_TREE_NODES,
    STATE_VALUES,
    REFERENCES,
];

/// `METADATA` key of the committed height.
pub const META_COMMITTED_HEIGHT: &[u8] = b"committed_height";
/// `METADATA` key of the version of a snapshot import under way.
pub const META_IMPORT: &[u8] = b"import";
/// `METADATA` key of the first height above genesis kept whole (absent: 1).
pub const META_FIRST_FULL: &[u8] = b"first_full_height";
/// `METADATA` key of the height below which forgotten blocks' rows are
/// deleted (absent: 1); up to the first full height − 1 once a pruning
/// pass has finished.
pub const META_PRUNED_TO: &[u8] = b"pruned_to";
/// `METADATA` key of the total burned fees.
pub const META_BURNED: &[u8] = b"burned";
/// `SAFETY` key of the consensus safety record.
pub const SAFETY_KEY: &[u8] = b"safety";
/// `SAFETY` key of the highest quorum certificate seen.
pub const HIGH_QC_KEY: &[u8] = b"high_qc";
/// `SAFETY` key of the timeout certificate of the highest round entered by
/// timeout.
pub const HIGH_TC_KEY: &[u8] = b"high_tc";
