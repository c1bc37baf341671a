//! `execute`: apply an ordered list of transactions to a parent state.

use super::state_tree::{self, TreeNodes, TreeView};
use crate::storage::{HistoryEntry, Store, StoreError, TxPosition};
use chatpay_proto::{
    Account, Hash, PublicKey, Receipt, ReceiptCode, SignedTransfer, merkle_leaf, merkle_root, state,
};
use jmt::storage::{Node, NodeKey};
use std::collections::BTreeMap;

/// Read access to the state a block executes on: its accounts, and the
/// nodes of its state tree.
pub trait StateView: TreeView {
    /// State of an account, `None` if it does not exist.
    fn account(&self, key: &PublicKey) -> Result<Option<Account>, StoreError>;
}

impl<S: Store + ?Sized> StateView for S {
    fn account(&self, key: &PublicKey) -> Result<Option<Account>, StoreError> {
        Store::account(self, key)
    }
}

impl<S: Store + ?Sized> TreeView for S {
    fn tree_node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        Store::tree_node(self, &state_tree::encode_key(key))?
            .map(|bytes| state_tree::decode_node(&bytes))
            .transpose()
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

impl<V: StateView + ?Sized> TreeView for BranchView<'_, V> {
    fn tree_node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        for output in self.branch.iter().rev() {
            if let Some(node) = output.tree_nodes.get(key) {
                return Ok(Some(node.clone()));
            }
        }
        self.base.tree_node(key)
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
    /// Transfers signed for another network (another genesis) are refused.
    pub genesis_hash: Hash,
    /// Minimum fee per transfer.
    pub fee_per_transfer: u64,
}

/// What execution needs to know about the parent block, and the executed
/// block's own timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentState {
    /// Height of the parent.
    pub height: u64,
    /// State root after the parent.
    pub state_root: Hash,
    /// Burned total after the parent.
    pub burned: u64,
    /// Timestamp of the block executed on it (ms since the Unix epoch):
    /// a transfer whose expiry is before it is invalid there.
    pub timestamp_ms: u64,
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
    /// Root of the state tree after the block.
    pub state_root: Hash,
    /// The nodes the block adds to the state tree (its version is the
    /// block's height).
    pub tree_nodes: TreeNodes,
    /// The nodes of earlier versions the block replaces.
    pub stale_tree_nodes: Vec<NodeKey>,
    /// The history entries the block adds (one per transfer that succeeded
    /// and account it moved), in block order.
    pub history: Vec<(PublicKey, HistoryEntry)>,
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

/// Why a block cannot be executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// Reading the parent state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The block includes a transfer its signer did not make valid at that
    /// position: a block that holds one is invalid (docs/ledger.md,
    /// "Invalid blocks"), so that a leader cannot burn a payment's tx id.
    #[error("transactions[{index}] ({tx_id}) is invalid at its position: {}", code.as_str())]
    InvalidTransfer {
        /// Position in the block.
        index: usize,
        /// Its tx id.
        tx_id: chatpay_proto::TxId,
        /// What is wrong with it.
        code: ReceiptCode,
    },
}

/// Whether a transfer refused with `code` makes the block that includes it
/// invalid. Every refusal but two: the network, the expiry, the signature,
/// the outputs and the fee are the signer's own and were checked on
/// admission (the expiry against the block's timestamp, which its leader
/// chose knowing it);
/// the sender's existence and nonce follow from the chain and the
/// sender's own earlier transfers, which the leader orders. Only a balance
/// too low (or a credit that would overflow) can follow from what others
/// sent or did not send, and those are receipts: the transfer takes its
/// place in the block and changes nothing.
pub fn invalidates_block(code: ReceiptCode) -> bool {
    !matches!(
        code,
        ReceiptCode::Success | ReceiptCode::InsufficientFunds | ReceiptCode::Overflow
    )
}

/// Executes `transactions` in order on `view` (the state after `parent`).
/// `signature_valid` answers whether a transaction's signature verifies:
/// [`check_signature`] checks it; a validator passes its
/// [`SignatureCache`](crate::mempool::SignatureCache), which checks each
/// signature once and remembers the answer. It is asked only for
/// transactions on this chain.
///
/// # Errors
/// When reading the parent state fails, or a transfer is invalid at its
/// position ([`invalidates_block`]); a balance too low is a receipt.
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
) -> Result<ExecutionOutput, ExecutionError> {
    let (out, _) = execute_as(
        rules,
        view,
        parent,
        transactions,
        signature_valid,
        OnInvalid::Refuse,
    )?;
    Ok(out)
}

/// What a leader runs on the batch it is about to propose: [`execute`],
/// leaving out every transfer that would make the block invalid (a
/// mempool entry gone stale), and returning the transfers kept.
///
/// # Errors
/// Only when reading the parent state fails.
pub fn execute_leaving_out_invalid<V: StateView + ?Sized>(
    rules: &ChainRules,
    view: &V,
    parent: &ParentState,
    transactions: &[SignedTransfer],
    signature_valid: &dyn Fn(&SignedTransfer) -> bool,
) -> Result<(ExecutionOutput, Vec<SignedTransfer>), StoreError> {
    let done = execute_as(
        rules,
        view,
        parent,
        transactions,
        signature_valid,
        OnInvalid::LeaveOut,
    );
    match done {
        Ok(done) => Ok(done),
        Err(ExecutionError::Store(e)) => Err(e),
        Err(ExecutionError::InvalidTransfer { .. }) => unreachable!("left out, not refused"),
    }
}

/// What [`execute_as`] does with a transfer that [`invalidates_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// The block is invalid ([`execute`]: the rule).
    Refuse,
    /// The transfer is left out ([`execute_leaving_out_invalid`]: a leader
    /// filling its block).
    LeaveOut,
    /// The transfer gets a failed receipt and its tx id is spent: the rule
    /// before invalid blocks (ADR 0011), which let a leader censor a
    /// payment. Only the simulator uses it, for a censoring leader and for
    /// the mutation that restores the old rule (`consensus::mutations`).
    Receipt,
}

/// [`execute`], treating a transfer that [`invalidates_block`] as
/// `on_invalid` says; returns the transfers kept (all but those left out).
///
/// # Errors
/// When reading the parent state fails, or with [`OnInvalid::Refuse`] when
/// a transfer is invalid at its position.
///
/// # Panics
/// If supply is not conserved, as [`execute`].
pub fn execute_as<V: StateView + ?Sized>(
    rules: &ChainRules,
    view: &V,
    parent: &ParentState,
    transactions: &[SignedTransfer],
    signature_valid: &dyn Fn(&SignedTransfer) -> bool,
    on_invalid: OnInvalid,
) -> Result<(ExecutionOutput, Vec<SignedTransfer>), ExecutionError> {
    let leave_out_invalid = on_invalid == OnInvalid::LeaveOut;
    let mut overlay = Overlay {
        view,
        before: BTreeMap::new(),
        after: BTreeMap::new(),
    };
    let height = parent.height + 1;
    let mut burned = parent.burned;
    let mut receipts = Vec::with_capacity(transactions.len());
    let mut kept = Vec::with_capacity(transactions.len());
    let mut history = Vec::new();
    for (index, tx) in transactions.iter().enumerate() {
        let code = match apply_one(
            rules,
            parent.timestamp_ms,
            &mut overlay,
            tx,
            signature_valid,
        )? {
            Ok(fee) => {
                burned = burned.checked_add(fee).expect("burned ≤ supply ≤ u64::MAX");
                let position = (
                    height,
                    u32::try_from(receipts.len()).expect("tx_count is a u32"),
                );
                record_history(&mut overlay, tx, position, &mut history);
                ReceiptCode::Success
            }
            Err(code) if invalidates_block(code) && leave_out_invalid => continue,
            Err(code) if invalidates_block(code) && on_invalid == OnInvalid::Refuse => {
                return Err(ExecutionError::InvalidTransfer {
                    index,
                    tx_id: tx.tx_id(),
                    code,
                });
            }
            Err(code) => code,
        };
        receipts.push(Receipt { code });
        if leave_out_invalid {
            kept.push(tx.clone());
        }
    }
    let transactions = if leave_out_invalid {
        &kept[..]
    } else {
        transactions
    };
    check_conservation(&overlay, burned - parent.burned);
    let accounts: Vec<(PublicKey, Account)> = overlay.after.into_iter().collect();
    let leaves: Vec<Hash> = transactions
        .iter()
        .zip(&receipts)
        .map(|(tx, r)| merkle_leaf(&tx.tx_id(), r.code))
        .collect();
    let tree = state_tree::update(view, height, &accounts, burned)?;
    let out = ExecutionOutput {
        tx_root: merkle_root(&leaves),
        state_root: tree.root,
        tree_nodes: tree.nodes,
        stale_tree_nodes: tree.stale,
        receipts,
        accounts,
        burned,
        history,
    };
    Ok((out, kept))
}

/// Adds the history entry of a transfer that succeeded at `position` to
/// every account it moved, chaining each account's running hash.
fn record_history<V: ?Sized>(
    overlay: &mut Overlay<'_, V>,
    tx: &SignedTransfer,
    (height, index): TxPosition,
    history: &mut Vec<(PublicKey, HistoryEntry)>,
) {
    let t = tx.transfer();
    for key in t.participants() {
        let Some(entry) = state::HistoryEntry::of(t, tx.tx_id(), key, height, index) else {
            continue;
        };
        let account = overlay
            .after
            .get_mut(key)
            .expect("a transfer that succeeded wrote every account it moved");
        let number = account.history_count + 1;
        history.push((
            key.clone(),
            HistoryEntry {
                position: (height, index),
                tx_id: entry.tx_id,
                number,
                hash_before: account.history_hash,
            },
        ));
        account.history_hash = state::chain_history(&account.history_hash, &entry);
        account.history_count = number;
    }
}

/// Applies one transfer to the overlay: `Ok(Ok(fee))` on success,
/// `Ok(Err(code))` when a rule refuses it. A refusal changes nothing,
/// except that a transfer its sender signed for the right nonce and fee
/// but that fails for want of funds (or on an overflow) spends its nonce:
/// every transfer a block includes spends its sender's nonce, so a tx id
/// cannot be included twice and no set of spent ids is state outside the
/// tree (ADR 0016).
fn apply_one<V: StateView + ?Sized>(
    rules: &ChainRules,
    timestamp_ms: u64,
    overlay: &mut Overlay<'_, V>,
    tx: &SignedTransfer,
    signature_valid: &dyn Fn(&SignedTransfer) -> bool,
) -> Result<Result<u64, ReceiptCode>, StoreError> {
    let t = tx.transfer();
    if t.genesis_hash() != &rules.genesis_hash {
        return Ok(Err(ReceiptCode::WrongChain));
    }
    if t.is_expired_at(timestamp_ms) {
        return Ok(Err(ReceiptCode::Expired));
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
    // The nonce is spent from here on, whatever the outcome.
    sender.nonce += 1;
    let Some(debit) = t.total_amount().and_then(|a| a.checked_add(t.fee())) else {
        return Ok(spend_nonce(
            overlay,
            t.sender(),
            sender,
            ReceiptCode::Overflow,
        ));
    };
    if sender.balance < debit {
        let code = ReceiptCode::InsufficientFunds;
        return Ok(spend_nonce(overlay, t.sender(), sender, code));
    }
    let unpaid = sender;
    sender.balance -= debit;
    // Credit on a scratch copy so that a failure leaves the balances untouched.
    let mut credited: BTreeMap<PublicKey, Account> = BTreeMap::new();
    credited.insert(t.sender().clone(), sender);
    for output in t.outputs() {
        let current = match credited.get(&output.recipient) {
            Some(a) => *a,
            None => overlay.get(&output.recipient)?.unwrap_or_default(),
        };
        let Some(balance) = current.balance.checked_add(output.amount) else {
            return Ok(spend_nonce(
                overlay,
                t.sender(),
                unpaid,
                ReceiptCode::Overflow,
            ));
        };
        credited.insert(output.recipient.clone(), Account { balance, ..current });
    }
    overlay.after.extend(credited);
    Ok(Ok(t.fee()))
}

/// A transfer that failed after its nonce and fee were found right: the
/// sender's account with its nonce spent and its balance unchanged.
fn spend_nonce<V: ?Sized>(
    overlay: &mut Overlay<'_, V>,
    key: &PublicKey,
    spent: Account,
    code: ReceiptCode,
) -> Result<u64, ReceiptCode> {
    overlay.after.insert(key.clone(), spent);
    Err(code)
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
