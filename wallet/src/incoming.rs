//! Incoming payments: a stream of verified payments to one account,
//! resumable from a cursor without duplicates or gaps.

use serde::{Deserialize, Serialize};

/// Position of a transaction in the chain; payments are reported in cursor
/// order, and a stream started after a cursor reports only later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
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
    /// The transfer's memo (lossy UTF-8).
    pub memo: String,
    /// Where it is; store it to resume after it.
    pub cursor: Cursor,
}
