//! Checking a validator's answers about an account: the account against
//! its proof, and a page of history against the account's history hash
//! (docs/protocol.md, "Account proofs" and "Account history"). Pure
//! functions; a failure is a sentence saying what the answer got wrong.

use chatpay_proto::state::{self, HistoryEntry};
use chatpay_proto::{Account, AccountProof, Hash, PublicKey, ReceiptCode, SignedTransfer, pb};

/// An account as proven at a committed height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProvenAccount {
    /// The account (all zero when it does not exist).
    pub account: Account,
    /// The height it is proven at.
    pub height: u64,
}

/// Checks a `GetAccount` answer asked with `include_proof`.
pub(crate) fn check_account(
    response: pb::GetAccountResponse,
    key: &PublicKey,
    genesis: &Hash,
    validators: &[PublicKey],
) -> Result<ProvenAccount, String> {
    let proof = response.proof.ok_or("an account without its proof")?;
    let proof = AccountProof::try_from(proof).map_err(|e| format!("a malformed proof: {e}"))?;
    let a = response.account.ok_or("a proof without its account")?;
    let history_hash = match a.history_hash.as_slice() {
        [] if a.history_count == 0 => Hash::default(),
        bytes => Hash::from_slice(bytes).ok_or("a history hash that is not 32 bytes")?,
    };
    let account = Account {
        balance: a.balance,
        nonce: a.nonce,
        history_count: a.history_count,
        history_hash,
    };
    // An account in its initial state may be absent from the tree.
    let height = proof
        .verify(key, Some(&account), genesis, validators)
        .or_else(|e| match account == Account::default() {
            true => proof.verify(key, None, genesis, validators),
            false => Err(e),
        })
        .map_err(|e| format!("an account its proof does not show: {e}"))?;
    if response.height != height {
        return Err(format!(
            "height {} for an account proven at height {height}",
            response.height
        ));
    }
    Ok(ProvenAccount { account, height })
}

/// A committed transaction as a validator reported it.
#[derive(Debug, Clone)]
pub(crate) struct Reported {
    pub tx: SignedTransfer,
    pub height: u64,
    pub index: u32,
    pub receipt: ReceiptCode,
}

impl Reported {
    pub fn from_pb(c: pb::CommittedTransaction) -> Result<Self, String> {
        let tx = c
            .transaction
            .ok_or("a committed transaction without its transaction")?;
        let tx = SignedTransfer::try_from(tx).map_err(|e| e.to_string())?;
        let receipt = c
            .receipt
            .ok_or("a committed transaction without a receipt")?;
        let receipt = chatpay_proto::Receipt::try_from(receipt).map_err(|e| e.to_string())?;
        Ok(Self {
            tx,
            height: c.height,
            index: c.index,
            receipt: receipt.code,
        })
    }

    /// The history entry this is for `key`, if it is one.
    pub fn entry(&self, key: &PublicKey) -> Result<HistoryEntry, String> {
        if self.receipt != ReceiptCode::Success {
            return Err(format!(
                "transaction {} with receipt {} in a history (only transfers that moved money are)",
                self.tx.tx_id(),
                self.receipt.as_str()
            ));
        }
        HistoryEntry::of(
            self.tx.transfer(),
            self.tx.tx_id(),
            key,
            self.height,
            self.index,
        )
        .ok_or_else(|| {
            format!(
                "transaction {} in the history of an account it does not move",
                self.tx.tx_id()
            )
        })
    }
}

/// One verified history entry.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub reported: Reported,
    pub entry: HistoryEntry,
    /// Its number in the account's history, from 1.
    pub number: u64,
    /// The running hash after it.
    pub hash_after: Hash,
}

/// A verified page, oldest entry first, and where the history stood
/// before it.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub entries: Vec<Verified>,
    pub count_before: u64,
    pub hash_before: Hash,
}

/// Checks a `ListTransactions` page asked with `limit` and `at_height`,
/// whose newest entry must be the account's entry number `count`, after
/// which its running hash is `hash` (from a proven account, or from the
/// page after this one). The page must hold `limit` entries, or every
/// entry up to `count`.
pub(crate) fn check_page(
    page: pb::ListTransactionsResponse,
    key: &PublicKey,
    (count, hash): (u64, Hash),
    limit: u32,
    at_height: u64,
) -> Result<Page, String> {
    let len = page.transactions.len() as u64;
    if len > u64::from(limit) {
        return Err(format!("{len} entries for a page of {limit}"));
    }
    if page.history_count_before.checked_add(len) != Some(count) {
        return Err(format!(
            "{len} entries after {} for a history of {count}: entries left out or added",
            page.history_count_before
        ));
    }
    // A full page, or all that is left: a short page would hide the rest
    // behind a true running hash.
    if len < u64::from(limit) && page.history_count_before != 0 {
        return Err(format!(
            "a page of {len} entries for {limit} asked, with {} before it: entries left out",
            page.history_count_before
        ));
    }
    let hash_before = match page.history_hash_before.as_slice() {
        [] if page.history_count_before == 0 => Hash::default(),
        bytes => Hash::from_slice(bytes).ok_or("a history hash that is not 32 bytes")?,
    };
    if page.history_count_before == 0 && hash_before != Hash::default() {
        return Err("a history that does not start from the empty hash".into());
    }
    let mut entries = Vec::with_capacity(page.transactions.len());
    let (mut running, mut number) = (hash_before, page.history_count_before);
    let mut last: Option<(u64, u32)> = None;
    for t in page.transactions.into_iter().rev() {
        let reported = Reported::from_pb(t)?;
        let position = (reported.height, reported.index);
        if reported.height > at_height || last.is_some_and(|l| position <= l) {
            return Err(format!(
                "an entry at {position:?}, out of order or above height {at_height}"
            ));
        }
        last = Some(position);
        let entry = reported.entry(key)?;
        running = state::chain_history(&running, &entry);
        number += 1;
        entries.push(Verified {
            reported,
            entry,
            number,
            hash_after: running,
        });
    }
    if running != hash {
        return Err(format!(
            "a page that does not chain to the account's history hash at entry {count}: an \
             entry changed, left out or added"
        ));
    }
    Ok(Page {
        entries,
        count_before: page.history_count_before,
        hash_before,
    })
}
