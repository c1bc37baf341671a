//! `execute`: apply an ordered list of transactions to a parent state.

use super::digest::next_state_digest;
use crate::storage::{Store, StoreError};
use chatpay_proto::{
    Account, Hash, PublicKey, Receipt, ReceiptCode, SignedTransfer, merkle_leaf, merkle_root,
};
use std::collections::BTreeMap;

/// Read access to the state a block executes on.
pub trait StateView {
    /// State of an account, `None` if it does not exist.
    fn account(&self, key: &PublicKey) -> Result<Option<Account>, StoreError>;
}

impl<S: Store + ?Sized> StateView for S {
    fn account(&self, key: &PublicKey) -> Result<Option<Account>, StoreError> {
        Store::account(self, key)
    }
}

/// The state after a branch of executed but uncommitted blocks: each
/// block's account updates, newest first, over the committed store.
pub struct BranchView<'a, V: ?Sized> {
    base: &'a V,
    /// Outputs of the uncommitted ancestors, oldest first.
    branch: &'a [&'a ExecutionOutput],
}

impl<'a, V: StateView + ?Sized> BranchView<'a, V> {
    /// `branch` holds the outputs of the blocks above `base`, oldest first.
    pub fn new(base: &'a V, branch: &'a [&'a ExecutionOutput]) -> Self {
        Self { base, branch }
    }
}

impl<V: StateView + ?Sized> StateView for BranchView<'_, V> {
    fn account(&self, key: &PublicKey) -> Result<Option<Account>, StoreError> {
        for output in self.branch.iter().rev() {
            if let Ok(i) = output.accounts.binary_search_by(|(k, _)| k.cmp(key)) {
                return Ok(Some(output.accounts[i].1));
            }
        }
        self.base.account(key)
    }
}

/// Checks a transaction's signature (for [`execute`] when nothing was
/// checked before).
pub fn check_signature(tx: &SignedTransfer) -> bool {
    tx.verify().is_ok()
}

/// The chain parameters execution needs (from genesis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRules {
    /// Transfers for another chain are refused.
    pub chain_id: String,
    /// Minimum fee per transfer.
    pub fee_per_transfer: u64,
}

/// What execution needs to know about the parent block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentState {
    /// Height of the parent.
    pub height: u64,
    /// State digest after the parent.
    pub state_digest: Hash,
    /// Burned total after the parent.
    pub burned: u64,
}

/// Result of executing one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionOutput {
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// New state of every touched account, sorted by key.
    pub accounts: Vec<(PublicKey, Account)>,
    /// Burned total after the block.
    pub burned: u64,
    /// Merkle root over (tx id, receipt code).
    pub tx_root: Hash,
    /// State digest after the block.
    pub state_digest: Hash,
}

/// Accounts read and written while executing one block.
struct Overlay<'a, V: ?Sized> {
    view: &'a V,
    before: BTreeMap<PublicKey, Option<Account>>,
    after: BTreeMap<PublicKey, Account>,
}

impl<V: StateView + ?Sized> Overlay<'_, V> {
    fn get(&mut self, key: &PublicKey) -> Result<Option<Account>, StoreError> {
        if let Some(a) = self.after.get(key) {
            return Ok(Some(*a));
        }
        if let Some(a) = self.before.get(key) {
            return Ok(*a);
        }
        let a = self.view.account(key)?;
        self.before.insert(key.clone(), a);
        Ok(a)
    }
}

/// Executes `transactions` in order on `view` (the state after `parent`).
/// `signature_valid` answers whether a transaction's signature verifies:
/// [`check_signature`] checks it; a validator passes its
/// [`SignatureCache`](crate::mempool::SignatureCache), which checks each
/// signature once and remembers the answer. It is asked only for
/// transactions on this chain.
///
/// # Errors
/// Only when reading the parent state fails; ledger rule violations are
/// receipts, not errors.
///
/// # Panics
/// If supply is not conserved (Σ balance changes + Δburned ≠ 0): that is a
/// bug in execution, and continuing would corrupt the ledger.
pub fn execute<V: StateView + ?Sized>(
    rules: &ChainRules,
    view: &V,
    parent: &ParentState,
    transactions: &[SignedTransfer],
    signature_valid: &dyn Fn(&SignedTransfer) -> bool,
) -> Result<ExecutionOutput, StoreError> {
    let mut overlay = Overlay {
        view,
        before: BTreeMap::new(),
        after: BTreeMap::new(),
    };
    let mut burned = parent.burned;
    let mut receipts = Vec::with_capacity(transactions.len());
    for tx in transactions {
        let code = match apply_one(rules, &mut overlay, tx, signature_valid)? {
            Ok(fee) => {
                burned = burned.checked_add(fee).expect("burned ≤ supply ≤ u64::MAX");
                ReceiptCode::Success
            }
            Err(code) => code,
        };
        receipts.push(Receipt { code });
    }
    check_conservation(&overlay, burned - parent.burned);
    let accounts: Vec<(PublicKey, Account)> = overlay.after.into_iter().collect();
    let leaves: Vec<Hash> = transactions
        .iter()
        .zip(&receipts)
        .map(|(tx, r)| merkle_leaf(&tx.tx_id(), r.code))
        .collect();
    let height = parent.height + 1;
    Ok(ExecutionOutput {
        tx_root: merkle_root(&leaves),
        state_digest: next_state_digest(&parent.state_digest, height, burned, &accounts),
        receipts,
        accounts,
        burned,
    })
}

/// Applies one transfer to the overlay: `Ok(Ok(fee))` on success,
/// `Ok(Err(code))` when a rule refuses it (nothing changed).
fn apply_one<V: StateView + ?Sized>(
    rules: &ChainRules,
    overlay: &mut Overlay<'_, V>,
    tx: &SignedTransfer,
    signature_valid: &dyn Fn(&SignedTransfer) -> bool,
) -> Result<Result<u64, ReceiptCode>, StoreError> {
    let t = tx.transfer();
    if t.chain_id() != rules.chain_id {
        return Ok(Err(ReceiptCode::WrongChain));
    }
    if !signature_valid(tx) {
        return Ok(Err(ReceiptCode::BadSignature));
    }
    if t.outputs().iter().any(|o| o.amount == 0) {
        return Ok(Err(ReceiptCode::BadOutputs));
    }
    let Some(mut sender) = overlay.get(t.sender())? else {
        return Ok(Err(ReceiptCode::UnknownSender));
    };
    if Some(t.nonce()) != sender.nonce.checked_add(1) {
        return Ok(Err(ReceiptCode::BadNonce));
    }
    if t.fee() < rules.fee_per_transfer {
        return Ok(Err(ReceiptCode::FeeTooLow));
    }
    let Some(debit) = t.total_amount().and_then(|a| a.checked_add(t.fee())) else {
        return Ok(Err(ReceiptCode::Overflow));
    };
    if sender.balance < debit {
        return Ok(Err(ReceiptCode::InsufficientFunds));
    }
    sender.balance -= debit;
    sender.nonce += 1;
    // Credit on a scratch copy so that a failure leaves the overlay untouched.
    let mut credited: BTreeMap<PublicKey, Account> = BTreeMap::new();
    credited.insert(t.sender().clone(), sender);
    for output in t.outputs() {
        let current = match credited.get(&output.recipient) {
            Some(a) => *a,
            None => overlay.get(&output.recipient)?.unwrap_or_default(),
        };
        let Some(balance) = current.balance.checked_add(output.amount) else {
            return Ok(Err(ReceiptCode::Overflow));
        };
        credited.insert(output.recipient.clone(), Account { balance, ..current });
    }
    overlay.after.extend(credited);
    Ok(Ok(t.fee()))
}

fn check_conservation<V: ?Sized>(overlay: &Overlay<'_, V>, burned_delta: u64) {
    let delta: i128 = overlay
        .after
        .iter()
        .map(|(key, after)| {
            let before = overlay
                .before
                .get(key)
                .copied()
                .flatten()
                .unwrap_or_default();
            i128::from(after.balance) - i128::from(before.balance)
        })
        .sum();
    assert_eq!(
        delta + i128::from(burned_delta),
        0,
        "supply not conserved: balances changed by {delta}, burned by {burned_delta}"
    );
}
