//! Incoming payments: a stream of verified payments to one account,
//! resumable from a cursor without duplicates or gaps.

use serde::{Deserialize, Serialize};

/// Where an account's history stood right after one entry: its position
/// in the chain, its number, and the running hash after it (verified
/// against a proven account). Payments are reported in cursor order, and a
/// stream started after a cursor reports only later ones.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cursor {
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
    /// The entry's number in the account's history, from 1 (0: a cursor
    /// saved before histories were numbered; resuming from it re-reads
    /// the history from the start and reports nothing at or before it).
    #[serde(default)]
    pub history_count: u64,
    /// The running history hash after the entry.
    #[serde(default)]
    pub history_hash: [u8; 32],
}

/// A payment to the account, final and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingPayment {
    /// The transaction.
    pub tx_id: chatpay_proto::TxId,
    /// Who paid.
    pub from: chatpay_proto::Address,
    /// Amount to this account (all its outputs), base units.
    pub amount: u64,
    /// The transfer's memo (lossy UTF-8): public, opened with a key given
    /// to `Wallet::read_memos_of`, or `(encrypted memo)`.
    pub memo: String,
    /// Whether the memo was sent encrypted.
    pub memo_encrypted: bool,
    /// Where it is; store it to resume after it.
    pub cursor: Cursor,
}
