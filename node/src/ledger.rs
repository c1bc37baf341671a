//! The ledger: genesis + execution + storage, committing blocks in order.
//!
//! ```text
//!  build_block(txs) ──execute on committed state──▶ header with tx_root, digest
//!  commit(header, txs, qc) ──re-execute, compare──▶ Store::commit_block (synced)
//!                                                  └─▶ broadcast CommittedBlock
//! ```
//! A committed block is announced only after it is durable, so nothing that
//! leaves the node (subscriptions, API answers) depends on state that a crash
//! could lose.

use crate::consensus::mutations::Mutations;
use crate::execution::state_tree;
use crate::execution::{
    BranchView, ChainRules, ExecutionError, ExecutionOutput, OnInvalid, ParentState,
    check_signature, execute_as, execute_leaving_out_invalid,
};
use crate::genesis::Genesis;
use crate::storage::{BlockCommit, HistoryEntry, Store, StoreError};
use chatpay_proto::{BlockHeader, Hash, PublicKey, QuorumCertificate, Receipt, SignedTransfer};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// Committed blocks kept for slow subscribers before they must re-read from
/// the store.
const EVENT_BUFFER: usize = 1024;

/// Why the ledger refused to open or to commit.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Storage failed (fatal for the node).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database was created from another genesis.
    #[error("database belongs to genesis {stored}, but genesis file hashes to {expected}")]
    GenesisMismatch {
        /// Hash in the database.
        stored: Hash,
        /// Hash of the genesis file.
        expected: Hash,
    },
    /// A block includes a transaction twice (in itself or its branch).
    #[error("transaction {tx_id} is {place}; a block may not include it")]
    Duplicate {
        /// The repeated transaction.
        tx_id: chatpay_proto::TxId,
        /// "repeated in the block" or "already in the branch".
        place: &'static str,
    },
    /// A block includes a transfer that is invalid at its position (see
    /// [`crate::execution::invalidates_block`]).
    #[error("transactions[{index}] ({tx_id}) is invalid at its position: {}", code.as_str())]
    InvalidTransfer {
        /// Position in the block.
        index: usize,
        /// Its tx id.
        tx_id: chatpay_proto::TxId,
        /// Why.
        code: chatpay_proto::ReceiptCode,
    },
    /// A block to commit does not match its own execution.
    #[error("block at height {height} does not match its execution: {reason}")]
    Mismatch {
        /// Height of the block.
        height: u64,
        /// Which field differs.
        reason: String,
    },
}

/// A block as announced after commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    /// The header.
    pub header: BlockHeader,
    /// Transactions in order.
    pub transactions: Vec<SignedTransfer>,
    /// Receipts in the same order.
    pub receipts: Vec<Receipt>,
    /// The history entries the block added, in block order.
    pub history: Vec<(PublicKey, HistoryEntry)>,
    /// Each account's entries, built by the first subscriber that asks,
    /// so N subscribers cost one pass, not N.
    by_account: OnceLock<BTreeMap<PublicKey, Vec<HistoryEntry>>>,
}

impl CommittedBlock {
    /// A committed block with its transactions, their receipts and the
    /// history entries it added.
    pub fn new(
        header: BlockHeader,
        transactions: Vec<SignedTransfer>,
        receipts: Vec<Receipt>,
        history: Vec<(PublicKey, HistoryEntry)>,
    ) -> Self {
        Self {
            header,
            transactions,
            receipts,
            history,
            by_account: OnceLock::new(),
        }
    }

    /// The history entries the block added to `key`'s account, in block
    /// order.
    pub fn history_of(&self, key: &PublicKey) -> &[HistoryEntry] {
        let index = self.by_account.get_or_init(|| {
            let mut index: BTreeMap<PublicKey, Vec<HistoryEntry>> = BTreeMap::new();
            for (key, entry) in &self.history {
                index.entry(key.clone()).or_default().push(*entry);
            }
            index
        });
        index.get(key).map_or(&[], Vec::as_slice)
    }
}

/// A block executed on top of uncommitted ancestors (speculatively).
#[derive(Debug, Clone)]
pub struct Speculative {
    /// Its header.
    pub header: BlockHeader,
    /// Its transactions.
    pub transactions: Vec<SignedTransfer>,
    /// What executing it gave.
    pub output: ExecutionOutput,
}

/// Genesis, rules and the store, with commit notifications.
pub struct Ledger {
    store: Arc<dyn Store>,
    genesis: Arc<Genesis>,
    rules: ChainRules,
    events: broadcast::Sender<Arc<CommittedBlock>>,
    /// Rules broken on purpose (simulation only; see
    /// [`Mutations::accept_invalid_transfers`]).
    mutations: Mutations,
}

/// Refuses a store whose state tree does not reach its committed head: one
/// written before the state tree existed, or damaged.
fn check_state_tree(store: &dyn Store) -> Result<(), LedgerError> {
    let Some(head) = store.last_header()? else {
        return Ok(());
    };
    match state_tree::root_at(store, head.height)? {
        Some(root) if root == head.state_root => Ok(()),
        found => Err(StoreError::Corrupt {
            what: "state tree",
            detail: format!(
                "the root at height {} is {found:?}, the header says {}: the database was \
                 written by a version without the state tree, or is damaged; \
                 `chatpay-node unsafe-reset` deletes the chain data and the validator \
                 catches up from its peers (a devnet: `make devnet ARGS=--reset`)",
                head.height, head.state_root
            ),
        }
        .into()),
    }
}

impl Ledger {
    /// Opens the ledger on `store`, writing genesis if the store is empty and
    /// refusing a store that was started from another genesis.
    pub fn open(store: Arc<dyn Store>, genesis: Arc<Genesis>) -> Result<Self, LedgerError> {
        match store.block(0)? {
            None => store.commit_block(&genesis.commit())?,
            Some(block) if block.header.genesis_hash != genesis.hash() => {
                return Err(LedgerError::GenesisMismatch {
                    stored: block.header.genesis_hash,
                    expected: genesis.hash(),
                });
            }
            // The same genesis, its state encoded by another version.
            Some(block) if block.header.state_root != genesis.header().state_root => {
                return Err(StoreError::Corrupt {
                    what: "state tree",
                    detail: format!(
                        "the stored genesis state root is {}, this version builds {}: the \
                         database was written by a version with another state layout; \
                         `chatpay-node unsafe-reset` deletes the chain data and the validator \
                         catches up from its peers (a devnet: `make devnet ARGS=--reset`)",
                        block.header.state_root,
                        genesis.header().state_root
                    ),
                }
                .into());
            }
            Some(_) => {}
        }
        check_state_tree(store.as_ref())?;
        let rules = ChainRules {
            genesis_hash: genesis.hash(),
            fee_per_transfer: genesis.fee_per_transfer,
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Self {
            store,
            genesis,
            rules,
            events,
            mutations: Mutations::NONE,
        })
    }

    /// The same ledger, breaking the rules named in `mutations` (simulation
    /// tests only; inert unless built with the `mutations` feature).
    pub fn with_mutations(mut self, mutations: Mutations) -> Self {
        self.mutations = mutations;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Genesis.
    pub fn genesis(&self) -> &Arc<Genesis> {
        &self.genesis
    }

    /// Execution rules from genesis.
    pub fn rules(&self) -> &ChainRules {
        &self.rules
    }

    /// Header of the last committed block.
    pub fn last_header(&self) -> Result<BlockHeader, LedgerError> {
        self.store.last_header()?.ok_or_else(|| {
            StoreError::Corrupt {
                what: "chain",
                detail: "no genesis block".into(),
            }
            .into()
        })
    }

    /// Receives every block after it is committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedBlock>> {
        self.events.subscribe()
    }

    /// Refuses a block that repeats a transaction. A committed one needs
    /// no lookup: every transfer a block includes spends its sender's
    /// nonce, so including it again is a wrong nonce (ADR 0016), and the
    /// rule reads nothing outside the state tree.
    fn check_unique(transactions: &[SignedTransfer]) -> Result<(), LedgerError> {
        let mut seen = std::collections::BTreeSet::new();
        for tx in transactions {
            let tx_id = tx.tx_id();
            if !seen.insert(tx_id) {
                return Err(LedgerError::Duplicate {
                    tx_id,
                    place: "repeated in the block",
                });
            }
        }
        Ok(())
    }

    /// Executes `transactions` as the child of the last block of `branch`:
    /// uncommitted blocks, oldest first, the first extending the committed
    /// head (an empty branch means the committed head itself). This is how a
    /// leader fills, and a voter checks, the header of a block whose parent
    /// is certified but not yet committed. `timestamp_ms` is the block's
    /// (transfer expiry is checked against it). `signature_valid` checks
    /// signatures (see [`execute`]).
    pub fn execute_on(
        &self,
        branch: &[&Speculative],
        timestamp_ms: u64,
        transactions: &[SignedTransfer],
        signature_valid: &dyn Fn(&SignedTransfer) -> bool,
    ) -> Result<ExecutionOutput, LedgerError> {
        let on_invalid = if self.mutations.accept_invalid_transfers() {
            OnInvalid::Receipt
        } else {
            OnInvalid::Refuse
        };
        self.execute_on_as(
            branch,
            timestamp_ms,
            transactions,
            signature_valid,
            on_invalid,
        )
    }

    /// [`Ledger::execute_on`], treating a transfer invalid at its position
    /// as `on_invalid` says (the simulator's censoring leader builds its
    /// block with [`OnInvalid::Receipt`]).
    pub fn execute_on_as(
        &self,
        branch: &[&Speculative],
        timestamp_ms: u64,
        transactions: &[SignedTransfer],
        signature_valid: &dyn Fn(&SignedTransfer) -> bool,
        on_invalid: OnInvalid,
    ) -> Result<ExecutionOutput, LedgerError> {
        let timestamp_ms = self.expiry_clock(timestamp_ms);
        let state = self.state_after(branch, timestamp_ms, transactions)?;
        let outputs: Vec<&ExecutionOutput> = branch.iter().map(|b| &b.output).collect();
        let view = BranchView::new(self.store.as_ref(), &outputs);
        let done = execute_as(
            &self.rules,
            &view,
            &state,
            transactions,
            signature_valid,
            on_invalid,
        );
        match done {
            Ok((out, _)) => Ok(out),
            Err(ExecutionError::Store(e)) => Err(LedgerError::Store(e)),
            Err(ExecutionError::InvalidTransfer { index, tx_id, code }) => {
                Err(LedgerError::InvalidTransfer { index, tx_id, code })
            }
        }
    }

    /// What a leader fills its block with: [`Ledger::execute_on`] of
    /// `transactions`, leaving out those that would make the block invalid
    /// (see [`crate::execution::execute_leaving_out_invalid`]). Returns the
    /// output and the transactions kept.
    pub fn execute_for_proposal(
        &self,
        branch: &[&Speculative],
        timestamp_ms: u64,
        transactions: &[SignedTransfer],
        signature_valid: &dyn Fn(&SignedTransfer) -> bool,
    ) -> Result<(ExecutionOutput, Vec<SignedTransfer>), LedgerError> {
        let timestamp_ms = self.expiry_clock(timestamp_ms);
        let state = self.state_after(branch, timestamp_ms, transactions)?;
        let outputs: Vec<&ExecutionOutput> = branch.iter().map(|b| &b.output).collect();
        let view = BranchView::new(self.store.as_ref(), &outputs);
        let (out, kept) =
            execute_leaving_out_invalid(&self.rules, &view, &state, transactions, signature_valid)?;
        if kept.len() < transactions.len() {
            tracing::debug!(
                left_out = transactions.len() - kept.len(),
                "transfers invalid at their place left out of a proposal"
            );
        }
        Ok((out, kept))
    }

    /// The time transfer expiry is checked against: the block's timestamp,
    /// or never expired under [`Mutations::ignore_expiry`] (simulation).
    fn expiry_clock(&self, timestamp_ms: u64) -> u64 {
        if self.mutations.ignore_expiry() {
            0
        } else {
            timestamp_ms
        }
    }

    /// The state `transactions` execute on as the child of the last block of
    /// `branch` (see [`Ledger::execute_on`]): checks that the branch extends
    /// the committed head and that no transaction repeats one of the
    /// branch's or the chain's.
    fn state_after(
        &self,
        branch: &[&Speculative],
        timestamp_ms: u64,
        transactions: &[SignedTransfer],
    ) -> Result<ParentState, LedgerError> {
        let head = self.last_header()?;
        let mut parent = &head;
        for block in branch {
            if block.header.parent_hash != parent.hash() || block.header.height != parent.height + 1
            {
                return Err(LedgerError::Mismatch {
                    height: block.header.height,
                    reason: format!("branch does not extend height {}", parent.height),
                });
            }
            parent = &block.header;
        }
        let mut seen = std::collections::BTreeSet::new();
        for tx in branch.iter().flat_map(|b| b.transactions.iter()) {
            seen.insert(tx.tx_id());
        }
        for tx in transactions {
            if seen.contains(&tx.tx_id()) {
                return Err(LedgerError::Duplicate {
                    tx_id: tx.tx_id(),
                    place: "already in the branch",
                });
            }
        }
        Self::check_unique(transactions)?;
        let burned = match branch.last() {
            Some(b) => b.output.burned,
            None => self.store.burned()?,
        };
        Ok(ParentState {
            height: parent.height,
            state_root: parent.state_root,
            burned,
            timestamp_ms,
        })
    }

    /// Builds the next block on the committed state: executes `transactions`
    /// and fills the header's tx root and state root. Refused if a
    /// transaction repeats.
    pub fn build_block(
        &self,
        round: u64,
        proposer: u32,
        timestamp_ms: u64,
        transactions: &[SignedTransfer],
    ) -> Result<BlockHeader, LedgerError> {
        let parent = self.last_header()?;
        let out = self.execute_on(&[], timestamp_ms, transactions, &check_signature)?;
        Ok(BlockHeader {
            genesis_hash: self.genesis.hash(),
            height: parent.height + 1,
            round,
            parent_hash: parent.hash(),
            proposer,
            timestamp_ms,
            tx_count: u32::try_from(transactions.len()).expect("blocks are bounded"),
            tx_root: out.tx_root,
            state_root: out.state_root,
        })
    }

    /// Executes and durably commits the next block, then announces it.
    ///
    /// Refused if the header does not extend the committed chain or differs
    /// from what executing `transactions` gives (tx root, state root, count,
    /// genesis hash), or if a transaction repeats.
    pub fn commit(
        &self,
        header: BlockHeader,
        transactions: Vec<SignedTransfer>,
        certificate: Option<QuorumCertificate>,
    ) -> Result<Arc<CommittedBlock>, LedgerError> {
        self.commit_then(header, transactions, certificate, |_| {})
    }

    /// [`Ledger::commit`], running `before_announce` as
    /// [`Ledger::commit_executed_then`] does.
    pub fn commit_then(
        &self,
        header: BlockHeader,
        transactions: Vec<SignedTransfer>,
        certificate: Option<QuorumCertificate>,
        before_announce: impl FnOnce(&CommittedBlock),
    ) -> Result<Arc<CommittedBlock>, LedgerError> {
        let out = self.execute_on(&[], header.timestamp_ms, &transactions, &check_signature)?;
        self.commit_executed_then(header, transactions, certificate, out, before_announce)
    }

    /// Durably commits the next block from an execution this node already
    /// did (with [`Ledger::execute_on`], possibly while the block's parent was
    /// uncommitted), then announces it. The header is checked against that
    /// output and the committed chain exactly as in [`Ledger::commit`]; the
    /// transactions are not executed again.
    pub fn commit_executed(
        &self,
        header: BlockHeader,
        transactions: Vec<SignedTransfer>,
        certificate: Option<QuorumCertificate>,
        out: ExecutionOutput,
    ) -> Result<Arc<CommittedBlock>, LedgerError> {
        self.commit_executed_then(header, transactions, certificate, out, |_| {})
    }

    /// [`Ledger::commit_executed`], running `before_announce` on the block
    /// once it is durable and before subscribers hear of it: what depends
    /// on the commit is brought up to date first (the mempool drops what
    /// the block included, so a client told of the commit finds room for
    /// its next transfers at once).
    pub fn commit_executed_then(
        &self,
        header: BlockHeader,
        transactions: Vec<SignedTransfer>,
        certificate: Option<QuorumCertificate>,
        out: ExecutionOutput,
        before_announce: impl FnOnce(&CommittedBlock),
    ) -> Result<Arc<CommittedBlock>, LedgerError> {
        let parent = self.last_header()?;
        let height = header.height;
        let mismatch = |reason: String| Err(LedgerError::Mismatch { height, reason });
        if header.genesis_hash != self.genesis.hash() {
            return mismatch("genesis hash differs".into());
        }
        if height != parent.height + 1 || header.parent_hash != parent.hash() {
            return mismatch(format!(
                "does not extend committed height {}",
                parent.height
            ));
        }
        if header.tx_count as usize != transactions.len()
            || out.receipts.len() != transactions.len()
        {
            return mismatch(format!(
                "tx_count {} for {} txs",
                header.tx_count,
                transactions.len()
            ));
        }
        if header.tx_root != out.tx_root {
            return mismatch(format!(
                "tx_root {} != executed {}",
                header.tx_root, out.tx_root
            ));
        }
        if header.state_root != out.state_root {
            return mismatch(format!(
                "state_root {} != executed {}",
                header.state_root, out.state_root
            ));
        }
        let commit = BlockCommit {
            header,
            certificate,
            transactions,
            receipts: out.receipts,
            accounts: out.accounts,
            burned: out.burned,
            tree_nodes: out
                .tree_nodes
                .iter()
                .map(|(k, n)| (state_tree::encode_key(k), state_tree::encode_node(n)))
                .collect(),
            stale_tree_nodes: out
                .stale_tree_nodes
                .iter()
                .map(state_tree::encode_key)
                .collect(),
            history: out.history,
        };
        self.store.commit_block(&commit)?;
        let block = Arc::new(CommittedBlock::new(
            commit.header,
            commit.transactions,
            commit.receipts,
            commit.history,
        ));
        before_announce(&block);
        // No subscribers is fine; they read the store when they come.
        let _ = self.events.send(block.clone());
        Ok(block)
    }
}
