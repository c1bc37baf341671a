//! Catch-up: what a validator serves to peers that fell behind, and how a
//! batch of committed blocks from a peer is checked before it is applied.
//!
//! ```text
//!  behind by a few blocks ─▶ FetchBlock(parent hash) … until a known block
//!  behind by more         ─▶ SyncBlocks(from = committed + 1) ─▶ commit the
//!                            prefix a certified 2-chain proves, then fetch
//! ```
//!
//! A served block is hostile until checked: the chain must link to the
//! receiver's committed head by hash, every stored certificate is verified,
//! and only the prefix ending in a block with a certified child of the very
//! next round (the 2-chain commit rule) is committed. A block that is only
//! certified may still be abandoned, so it is never committed from a batch.

use super::core::genesis_certificate;
use super::messages::Block;
use crate::storage::{Store, StoreError};
use chatpay_proto::{Hash, QuorumCertificate, SignedTransfer};

/// Most blocks a peer is asked for, or serves, per sync request.
pub const MAX_SYNC_BLOCKS: u64 = 64;
/// Transaction bytes after which a sync response stops (at a provable point).
pub const SYNC_RESPONSE_BYTES: usize = 8 << 20;
/// Transaction bytes a sync response never goes past, provable point or
/// not (the receiver then asks again from where it got).
pub const SYNC_RESPONSE_MAX_BYTES: usize = 2 * SYNC_RESPONSE_BYTES;
/// Encoded bytes a validator takes in from one sync response before it
/// stops reading: the server's cap plus one block's headers and
/// certificates and one more message. One sync is in flight at a time, so
/// this bounds what catch-up holds.
pub const SYNC_RECEIVE_MAX_BYTES: usize = SYNC_RESPONSE_MAX_BYTES + (16 << 20);
/// A block further than this above the committed head is caught up by
/// height range, not fetched parent by parent.
pub const MAX_FETCH_DEPTH: u64 = 16;

/// A committed block as served for catch-up: the block (with the certificate
/// of its parent) and the certificate of the block itself, when stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedBlock {
    /// The block.
    pub block: Block,
    /// The certificate over this block.
    pub certificate: Option<QuorumCertificate>,
}

/// The committed block at `height` (≥ 1) as served to peers; `None` for
/// one this store does not keep whole (it joined from a state snapshot
/// above it).
pub fn committed_block(store: &dyn Store, height: u64) -> Result<Option<SyncedBlock>, StoreError> {
    if height == 0 || height < store.first_full_height()? {
        return Ok(None);
    }
    let Some(stored) = store.block(height)? else {
        return Ok(None);
    };
    let parent = store
        .block(height - 1)?
        .ok_or_else(|| missing(height - 1))?;
    let justify = if height == 1 {
        genesis_certificate(&parent.header)
    } else {
        match parent.certificate {
            Some(qc) => qc,
            None => return Err(missing(height - 1)),
        }
    };
    let transactions = stored
        .tx_ids
        .iter()
        .map(|id| {
            store
                .transaction(id)?
                .map(|r| r.transaction)
                .ok_or_else(|| missing(height))
        })
        .collect::<Result<Vec<SignedTransfer>, StoreError>>()?;
    Ok(Some(SyncedBlock {
        block: Block {
            header: stored.header,
            transactions,
            justify,
        },
        certificate: stored.certificate,
    }))
}

/// The committed block with hash `hash`, if this validator committed it.
pub fn committed_block_by_hash(
    store: &dyn Store,
    hash: &Hash,
) -> Result<Option<SyncedBlock>, StoreError> {
    match store.height_of(hash)? {
        Some(height) => committed_block(store, height),
        None => Ok(None),
    }
}

fn missing(height: u64) -> StoreError {
    StoreError::Corrupt {
        what: "committed block",
        detail: format!("block {height} lacks its transactions or certificate"),
    }
}

/// How much one sync response may hold.
#[derive(Debug, Clone, Copy)]
pub struct SyncBudget {
    /// Blocks after which it stops at the next provable point.
    pub blocks: u64,
    /// Transaction bytes after which it stops at the next provable point.
    pub bytes: usize,
    /// Most blocks in any case.
    pub max_blocks: u64,
    /// Most transaction bytes in any case (one block may cross it).
    pub max_bytes: usize,
}

/// What a validator serves: [`MAX_SYNC_BLOCKS`] and [`SYNC_RESPONSE_BYTES`],
/// continued up to four times the count and [`SYNC_RESPONSE_MAX_BYTES`].
pub const SYNC_BUDGET: SyncBudget = SyncBudget {
    blocks: MAX_SYNC_BLOCKS,
    bytes: SYNC_RESPONSE_BYTES,
    max_blocks: 4 * MAX_SYNC_BLOCKS,
    max_bytes: SYNC_RESPONSE_MAX_BYTES,
};

/// Committed blocks from `from` (≥ 1) to at most `to`, within
/// [`SYNC_BUDGET`] (see [`committed_range_within`]).
pub fn committed_range(
    store: &dyn Store,
    from: u64,
    to: u64,
) -> Result<Vec<SyncedBlock>, StoreError> {
    committed_range_within(store, from, to, SYNC_BUDGET)
}

/// Committed blocks from `from` (≥ 1) to at most `to`, bounded by
/// `budget.blocks` and `budget.bytes`. Past those bounds it continues
/// until the last two blocks are of consecutive rounds, so the receiver can
/// prove a commit from the batch, but never past `budget.max_blocks`
/// blocks, nor past `budget.max_bytes` of transactions.
pub fn committed_range_within(
    store: &dyn Store,
    from: u64,
    to: u64,
    budget: SyncBudget,
) -> Result<Vec<SyncedBlock>, StoreError> {
    let from = from.max(1);
    let Some(top) = store.committed_height()? else {
        return Ok(Vec::new());
    };
    let last = to.min(top);
    let mut out: Vec<SyncedBlock> = Vec::new();
    let mut bytes = 0usize;
    let mut height = from;
    while height <= last {
        let count = out.len() as u64;
        let full = count >= budget.blocks || bytes >= budget.bytes;
        let spent = count >= budget.max_blocks || bytes >= budget.max_bytes;
        if spent || (full && provable(&out)) {
            break;
        }
        let Some(block) = committed_block(store, height)? else {
            break;
        };
        bytes += block
            .block
            .transactions
            .iter()
            .map(|t| t.transfer().signing_bytes_len() + 64)
            .sum::<usize>();
        out.push(block);
        height += 1;
    }
    Ok(out)
}

fn provable(blocks: &[SyncedBlock]) -> bool {
    match blocks {
        [.., a, b] => a.block.header.round.checked_add(1) == Some(b.block.header.round),
        _ => false,
    }
}

/// The certificate over `blocks[i]` carried by a batch: the next block's
/// `justify`, else the one served with it.
pub fn certificate_of(blocks: &[SyncedBlock], i: usize) -> Option<&QuorumCertificate> {
    blocks
        .get(i + 1)
        .map(|next| &next.block.justify)
        .or(blocks[i].certificate.as_ref())
}
