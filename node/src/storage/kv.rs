//! The [`Store`] logic over an ordered key-value backend with column
//! families and atomic batches. RocksDB and the in-memory map are backends,
//! so both stores share every line of ledger storage logic.

use super::codec::{self, history_key};
use super::columns as cf;
use super::safety_file::{self, SafetyFiles};
use super::{
    BlockCommit, HistoryEntry, Result, StateEntry, Store, StoreError, StoredBlock, TxPosition,
    TxRecord, check_extends,
};
use crate::execution::state_tree;
use chatpay_proto::{Account, BlockHeader, Hash, PublicKey, QuorumCertificate, TxId, state};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

/// How many committed accounts [`KvStore`] keeps in memory: up to this many
/// most recently committed, and up to as many before them (hash tables of
/// about 7.5 MiB per generation, 15 MiB in all).
pub const ACCOUNT_CACHE_ENTRIES: usize = 65_536;

/// One write in an atomic batch.
pub struct Put {
    /// Column family.
    pub cf: &'static str,
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

/// Direction of a scan.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Keys ≥ start, ascending.
    Forward,
    /// Keys ≤ start, descending.
    Reverse,
}

/// An ordered key-value store with column families.
pub trait Backend: Send + Sync + 'static {
    /// Value of `key` in `cf`.
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies every put or none; durable on return when `sync`.
    fn write(&self, puts: Vec<Put>, sync: bool) -> Result<()>;
    /// Deletes `keys` of `cf` (absent ones are fine); durable when `sync`.
    fn delete(&self, cf: &'static str, keys: Vec<Vec<u8>>, sync: bool) -> Result<()>;
    /// Deletes every key of `cf` in `from..to` without reading them (a
    /// scan over deleted keys costs more the more were deleted before);
    /// durable when `sync`.
    fn delete_range(&self, cf: &'static str, from: &[u8], to: &[u8], sync: bool) -> Result<()>;
    /// Makes every write so far durable (RocksDB: syncs the WAL).
    fn sync(&self) -> Result<()>;
    /// Visits entries of `cf` from `start` in `direction` until `visit`
    /// returns false.
    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        direction: Scan,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
}

/// [`Store`] over any [`Backend`].
pub struct KvStore<B> {
    backend: B,
    /// Serializes commits so the height/parent check and the write are one step.
    commit_lock: Mutex<()>,
    /// Accounts as the latest commits wrote them.
    accounts: RwLock<AccountCache>,
    /// Where the safety record and its TC live, when not in the database
    /// (validators on disk: see [`SafetyFiles`]).
    safety_files: Option<SafetyFiles>,
    /// With `safety_files`: the highest certificate recorded since the
    /// record was last written; the next record carries it.
    recorded_qc: Mutex<Option<Vec<u8>>>,
}

/// Committed accounts as the most recent commits wrote them: every
/// admission and every execution reads its senders and recipients, and a
/// lookup in RocksDB's memtable, which holds every version of a busy
/// account, cost more than the rest of admitting a transfer besides its
/// signature check.
///
/// Only commits fill it, after their batch is durable and before they
/// return: a read that misses goes to the store and leaves the cache alone,
/// so a value read just before a commit can never land after the commit's
/// and hide it. Two generations bound it: when `recent` holds `capacity`
/// accounts it becomes `older` and the generation before is dropped;
/// lookups try `recent` first, so an account committed again shadows its
/// older value, and one not committed for two generations is read from the
/// store again.
struct AccountCache {
    recent: HashMap<[u8; PublicKey::LEN], Account>,
    older: HashMap<[u8; PublicKey::LEN], Account>,
    capacity: usize,
}

impl AccountCache {
    fn new(capacity: usize) -> Self {
        Self {
            recent: HashMap::new(),
            older: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, key: &PublicKey) -> Option<Account> {
        let key = key.as_bytes();
        self.recent
            .get(key)
            .or_else(|| self.older.get(key))
            .copied()
    }

    fn committed(&mut self, key: &PublicKey, account: Account) {
        self.recent.insert(*key.as_bytes(), account);
        if self.recent.len() >= self.capacity {
            self.older = std::mem::take(&mut self.recent);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }
}

impl<B: Backend> KvStore<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self::with_account_cache(backend, ACCOUNT_CACHE_ENTRIES)
    }

    /// A store keeping up to `2 × entries` committed accounts in memory.
    pub(crate) fn with_account_cache(backend: B, entries: usize) -> Self {
        Self {
            backend,
            commit_lock: Mutex::new(()),
            accounts: RwLock::new(AccountCache::new(entries)),
            safety_files: None,
            recorded_qc: Mutex::new(None),
        }
    }

    /// Keeps the safety record and its TC in `files` from now on. A record
    /// (and TC) still in the database, written by an older version, is
    /// moved there first unless `files` already holds one.
    pub(crate) fn keep_safety_in(mut self, files: SafetyFiles) -> Result<Self> {
        if files.read(safety_file::HIGH_TC)?.is_none() {
            if let Some(tc) = self.backend.get(cf::SAFETY, cf::HIGH_TC_KEY)? {
                files.write(safety_file::HIGH_TC, &tc)?;
            }
        }
        if files.read(safety_file::RECORD)?.is_none() {
            if let Some(record) = self.backend.get(cf::SAFETY, cf::SAFETY_KEY)? {
                let qc = self.backend.get(cf::SAFETY, cf::HIGH_QC_KEY)?;
                files.write(
                    safety_file::RECORD,
                    &safety_file::encode_record(&record, qc.as_deref()),
                )?;
            }
        }
        self.safety_files = Some(files);
        Ok(self)
    }

    /// The record file's (record, certificate), if it exists.
    fn record_file(files: &SafetyFiles) -> Result<Option<safety_file::RecordFile>> {
        files
            .read(safety_file::RECORD)?
            .map(|bytes| safety_file::decode_record(&bytes))
            .transpose()
    }

    /// How many committed accounts are held in memory.
    #[cfg(test)]
    pub(crate) fn cached_accounts(&self) -> usize {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Drops every cached account (the store under it was emptied).
    pub(crate) fn forget_cached_accounts(&self) {
        let mut cache = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        *cache = AccountCache::new(cache.capacity);
    }

    /// The backend.
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// Up to `limit` keys of a stale index (version (u64) ‖ …) whose
    /// version is at most `up_to_version`, oldest first.
    fn stale_index(
        &self,
        cf: &'static str,
        up_to_version: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut stale: Vec<Vec<u8>> = Vec::new();
        self.backend.scan(cf, &[], Scan::Forward, &mut |key, _| {
            let since = key.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok());
            match since.map(u64::from_be_bytes) {
                Some(v) if v <= up_to_version && stale.len() < limit => {
                    stale.push(key.to_vec());
                    true
                }
                _ => false,
            }
        })?;
        Ok(stale)
    }

    /// The stored values of `key` that no version from `up_to_version` on
    /// reads: all below the one live at `up_to_version`.
    fn stale_values(&self, key: &Hash, up_to_version: u64, out: &mut Vec<Vec<u8>>) -> Result<()> {
        let mut live_seen = false;
        let start = codec::state_value_key(key, up_to_version);
        self.backend
            .scan(cf::STATE_VALUES, &start, Scan::Reverse, &mut |k, _| {
                if k.len() != 40 || k[..32] != key.0 {
                    return false;
                }
                if live_seen {
                    out.push(k.to_vec());
                }
                live_seen = true;
                true
            })
    }

    /// Deletes the rows of the blocks at heights `from..to`: history and
    /// transactions first, then certificates, height index and blocks
    /// (which say what to delete), then records `to` as the height rows
    /// are deleted below. Writes reach the disk in order, so a crash leaves
    /// a prefix done and the record not past it.
    fn forget_blocks(&self, from: u64, to: u64) -> Result<()> {
        let mut keys: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
        for height in from..to {
            let Some(block) = self.block(height)? else {
                continue;
            };
            for id in &block.tx_ids {
                if let Some(record) = self.transaction(id)? {
                    let t = record.transaction.transfer();
                    for who in t.participants() {
                        let row = history_key(who, record.height, record.index);
                        keys.entry(cf::HISTORY).or_default().push(row.to_vec());
                    }
                    if let Some(reference) = t.reference() {
                        let row = codec::reference_key(reference, record.height, record.index);
                        keys.entry(cf::REFERENCES).or_default().push(row.to_vec());
                    }
                }
                keys.entry(cf::TRANSACTIONS)
                    .or_default()
                    .push(id.0.to_vec());
            }
            let key = height.to_be_bytes().to_vec();
            keys.entry(cf::CERTIFICATES).or_default().push(key.clone());
            keys.entry(cf::BLOCK_HEIGHTS)
                .or_default()
                .push(block.header.hash().0.to_vec());
            keys.entry(cf::BLOCKS).or_default().push(key);
        }
        for column in [
            cf::HISTORY,
            cf::REFERENCES,
            cf::TRANSACTIONS,
            cf::CERTIFICATES,
            cf::BLOCK_HEIGHTS,
            cf::BLOCKS,
        ] {
            if let Some(keys) = keys.remove(column) {
                self.backend.delete(column, keys, false)?;
            }
        }
        self.backend.write(
            vec![put(cf::METADATA, cf::META_PRUNED_TO, codec::u64_value(to))],
            false,
        )
    }

    fn history(
        &self,
        key: &PublicKey,
        start: [u8; 45],
        direction: Scan,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let mut out = Vec::new();
        let mut failure = None;
        self.backend
            .scan(cf::HISTORY, &start, direction, &mut |k, v| {
                if out.len() >= limit || !k.starts_with(key.as_bytes()) {
                    return false;
                }
                match codec::decode_history(k, v) {
                    Ok(entry) => out.push(entry),
                    Err(e) => failure = Some(e),
                }
                failure.is_none()
            })?;
        failure.map_or(Ok(out), Err)
    }
}

fn put(cf: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Put {
    Put {
        cf,
        key: key.into(),
        value: value.into(),
    }
}

impl<B: Backend> Store for KvStore<B> {
    fn committed_height(&self) -> Result<Option<u64>> {
        self.backend
            .get(cf::METADATA, cf::META_COMMITTED_HEIGHT)?
            .map(|v| codec::decode_u64(&v, "committed height"))
            .transpose()
    }

    fn commit_block(&self, commit: &BlockCommit) -> Result<()> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last_header()?;
        check_extends(last.as_ref(), commit)?;
        let header = &commit.header;
        let height = header.height;
        if let Some(last_burned) = last.as_ref().map(|_| self.burned()).transpose()? {
            if commit.burned < last_burned {
                return Err(StoreError::InvalidCommit {
                    height,
                    reason: format!("burned total {} below {last_burned}", commit.burned),
                });
            }
        }
        let hash = header.hash();
        let ids = commit.transactions.iter().map(|t| t.tx_id());
        let mut puts = vec![
            put(
                cf::BLOCKS,
                height.to_be_bytes(),
                codec::block_value(header, ids),
            ),
            put(cf::BLOCK_HEIGHTS, hash.0, height.to_be_bytes()),
            put(
                cf::METADATA,
                cf::META_COMMITTED_HEIGHT,
                codec::u64_value(height),
            ),
            put(
                cf::METADATA,
                cf::META_BURNED,
                codec::u64_value(commit.burned),
            ),
        ];
        if let Some(qc) = &commit.certificate {
            puts.push(put(
                cf::CERTIFICATES,
                height.to_be_bytes(),
                codec::certificate_value(qc),
            ));
        }
        for (i, (tx, receipt)) in commit.transactions.iter().zip(&commit.receipts).enumerate() {
            let index = u32::try_from(i).expect("tx_count is a u32");
            let id = tx.tx_id();
            puts.push(put(
                cf::TRANSACTIONS,
                id.0,
                codec::tx_value(tx, height, index, receipt),
            ));
        }
        for (i, tx) in commit.transactions.iter().enumerate() {
            if let Some(reference) = tx.transfer().reference() {
                let index = u32::try_from(i).expect("tx_count is a u32");
                puts.push(put(
                    cf::REFERENCES,
                    codec::reference_key(reference, height, index),
                    tx.tx_id().0,
                ));
            }
        }
        for (key, entry) in &commit.history {
            let (h, index) = entry.position;
            puts.push(put(
                cf::HISTORY,
                history_key(key, h, index),
                codec::history_value(entry),
            ));
        }
        for (key, account) in &commit.accounts {
            puts.push(put(
                cf::ACCOUNTS,
                key.as_bytes().to_vec(),
                codec::account_value(account),
            ));
            let tree_key = state::account_key(key);
            puts.push(put(
                cf::STATE_VALUES,
                codec::state_value_key(&tree_key, height),
                codec::state_value(Some(key.as_bytes()), &state::account_leaf(account)),
            ));
        }
        puts.push(put(
            cf::STATE_VALUES,
            codec::state_value_key(&state::burned_key(), height),
            codec::state_value(None, &state::burned_leaf(commit.burned)),
        ));
        for (key, node) in &commit.tree_nodes {
            puts.push(put(cf::STATE_TREE, key.clone(), node.clone()));
        }
        for key in &commit.stale_tree_nodes {
            let mut index = height.to_be_bytes().to_vec();
            index.extend_from_slice(key);
            puts.push(put(cf::STALE_TREE_NODES, index, Vec::new()));
        }
        self.backend.write(puts, true)?;
        // Still under the commit lock, so commits reach the cache in order.
        let mut cache = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        for (key, account) in &commit.accounts {
            cache.committed(key, *account);
        }
        Ok(())
    }

    fn tree_node(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.backend.get(cf::STATE_TREE, key)
    }

    fn state_value(&self, key_hash: &Hash, version: u64) -> Result<Option<Vec<u8>>> {
        let mut found = None;
        let start = codec::state_value_key(key_hash, version);
        self.backend
            .scan(cf::STATE_VALUES, &start, Scan::Reverse, &mut |k, v| {
                if k.len() == 40 && k[..32] == key_hash.0 {
                    found = Some(v.to_vec());
                }
                false
            })?;
        found
            .map(|v| codec::decode_state_value(&v).map(|(_, leaf)| leaf.to_vec()))
            .transpose()
    }

    fn state_entries(&self, from: &Hash, version: u64, limit: usize) -> Result<Vec<StateEntry>> {
        // Keys in order, each with its versions in order: the last version
        // at or below `version` of each key is its leaf in that tree.
        let mut out: Vec<StateEntry> = Vec::new();
        let mut current: Option<(Hash, Vec<u8>)> = None;
        let mut failure = None;
        let mut flush = |current: &mut Option<(Hash, Vec<u8>)>, out: &mut Vec<StateEntry>| {
            if let Some((key, value)) = current.take() {
                match codec::decode_state_value(&value) {
                    Ok((owner, leaf)) => out.push(StateEntry {
                        key,
                        owner,
                        leaf: leaf.to_vec(),
                    }),
                    Err(e) => failure = Some(e),
                }
            }
        };
        let start = codec::state_value_key(from, 0);
        self.backend
            .scan(cf::STATE_VALUES, &start, Scan::Forward, &mut |k, v| {
                let Some((key, at)) = codec::decode_state_value_key(k) else {
                    return true;
                };
                if current.as_ref().is_some_and(|(c, _)| *c != key) {
                    flush(&mut current, &mut out);
                }
                if out.len() >= limit {
                    return false;
                }
                if at <= version {
                    current = Some((key, v.to_vec()));
                }
                true
            })?;
        if out.len() < limit {
            flush(&mut current, &mut out);
        }
        failure.map_or(Ok(out), Err)
    }

    fn import_state(
        &self,
        version: u64,
        entries: &[StateEntry],
        nodes: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(height) = self.committed_height()? {
            return Err(StoreError::InvalidCommit {
                height,
                reason: "a snapshot is imported only into an empty store".into(),
            });
        }
        let mut puts = vec![put(
            cf::METADATA,
            cf::META_IMPORT,
            codec::u64_value(version),
        )];
        for entry in entries {
            if let Some(owner) = &entry.owner {
                let account =
                    state::decode_account_leaf(&entry.leaf).ok_or_else(|| StoreError::Corrupt {
                        what: "imported account",
                        detail: format!("the leaf of {} is not an account", hex::encode(owner)),
                    })?;
                puts.push(put(
                    cf::ACCOUNTS,
                    owner.to_vec(),
                    codec::account_value(&account),
                ));
            }
            puts.push(put(
                cf::STATE_VALUES,
                codec::state_value_key(&entry.key, version),
                codec::state_value(entry.owner.as_ref(), &entry.leaf),
            ));
        }
        for (key, node) in nodes {
            puts.push(put(cf::STATE_TREE, key.clone(), node.clone()));
        }
        self.backend.write(puts, false)
    }

    fn finish_import(
        &self,
        genesis: &BlockHeader,
        header: &BlockHeader,
        certificate: Option<&QuorumCertificate>,
        burned: u64,
    ) -> Result<()> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let height = header.height;
        if self.committed_height()?.is_some() || genesis.height != 0 || height == 0 {
            return Err(StoreError::InvalidCommit {
                height,
                reason: "an import ends on an empty store, above genesis".into(),
            });
        }
        let mut puts = Vec::new();
        for h in [genesis, header] {
            let key = h.height.to_be_bytes();
            puts.push(put(cf::BLOCKS, key, codec::block_value(h, [].into_iter())));
            puts.push(put(cf::BLOCK_HEIGHTS, h.hash().0, key));
        }
        if let Some(qc) = certificate {
            puts.push(put(
                cf::CERTIFICATES,
                height.to_be_bytes(),
                codec::certificate_value(qc),
            ));
        }
        puts.push(put(cf::METADATA, cf::META_BURNED, codec::u64_value(burned)));
        puts.push(put(
            cf::METADATA,
            cf::META_FIRST_FULL,
            codec::u64_value(height + 1),
        ));
        puts.push(put(
            cf::METADATA,
            cf::META_COMMITTED_HEIGHT,
            codec::u64_value(height),
        ));
        self.backend.write(puts, true)?;
        self.backend
            .delete(cf::METADATA, vec![cf::META_IMPORT.to_vec()], true)
    }

    fn partial_import(&self) -> Result<Option<u64>> {
        if self.committed_height()?.is_some() {
            return Ok(None);
        }
        self.backend
            .get(cf::METADATA, cf::META_IMPORT)?
            .map(|v| codec::decode_u64(&v, "import version"))
            .transpose()
    }

    fn discard_chain_data(&self) -> Result<()> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Past every key: keys are shorter than this and not all 0xff.
        let past_all = [0xff; 128];
        // The import marker, then no committed height: from here until the
        // metadata goes last, a crash leaves a store that is discarded
        // again at the next start (`partial_import`).
        self.backend.write(
            vec![put(cf::METADATA, cf::META_IMPORT, codec::u64_value(0))],
            true,
        )?;
        self.backend
            .delete(cf::METADATA, vec![cf::META_COMMITTED_HEIGHT.to_vec()], true)?;
        for column in cf::ALL {
            if column != cf::SAFETY && column != cf::METADATA {
                self.backend.delete_range(column, &[], &past_all, false)?;
            }
        }
        self.backend.sync()?;
        self.backend
            .delete_range(cf::METADATA, &[], &past_all, true)?;
        drop(_guard);
        self.forget_cached_accounts();
        Ok(())
    }

    fn prune_blocks(&self, below: u64, limit: usize) -> Result<usize> {
        let first = self.first_full_height()?;
        let head = self.committed_height()?.unwrap_or(0);
        // The new first full height: never above the head.
        let end = below
            .min(first.saturating_add(limit as u64))
            .min(head)
            .max(first);
        if end > first {
            // Durable before anything is deleted: from now on nothing below
            // it is served, even if a crash leaves rows behind.
            self.backend.write(
                vec![put(
                    cf::METADATA,
                    cf::META_FIRST_FULL,
                    codec::u64_value(end),
                )],
                true,
            )?;
        }
        // Rows of heights [pruned_to, end − 1) go, the oldest first; a pass
        // a crash cut short is taken up again from where it got.
        let from = self
            .backend
            .get(cf::METADATA, cf::META_PRUNED_TO)?
            .map(|v| codec::decode_u64(&v, "pruned height"))
            .transpose()?
            .unwrap_or(1)
            .max(1);
        let to = end.saturating_sub(1).min(from.saturating_add(limit as u64));
        if to <= from {
            return Ok(usize::try_from(end - first).expect("at most limit"));
        }
        self.forget_blocks(from, to)?;
        Ok(usize::try_from((end - first).max(to - from)).expect("at most limit"))
    }

    fn first_full_height(&self) -> Result<u64> {
        self.backend
            .get(cf::METADATA, cf::META_FIRST_FULL)?
            .map(|v| codec::decode_u64(&v, "first full height"))
            .transpose()
            .map(|h| h.unwrap_or(1))
    }

    fn prune_state_tree(&self, up_to_version: u64, limit: usize) -> Result<usize> {
        let stale = self.stale_index(cf::STALE_TREE_NODES, up_to_version, limit)?;
        let nodes: Vec<Vec<u8>> = stale.iter().map(|k| k[8..].to_vec()).collect();
        // A replaced leaf means its key got a new value (or moved): its
        // values below the one live at `up_to_version` are no longer read.
        // Read here, in the background, so that commits write no index of
        // their own for values.
        let mut keys = std::collections::BTreeSet::new();
        for node in &nodes {
            if let Some(bytes) = self.backend.get(cf::STATE_TREE, node)? {
                if let jmt::storage::Node::Leaf(leaf) = state_tree::decode_node(&bytes)? {
                    keys.insert(Hash(leaf.key_hash().0));
                }
            }
        }
        let mut values = Vec::new();
        for key in &keys {
            self.stale_values(key, up_to_version, &mut values)?;
        }
        // Values and nodes before the index: an index entry left behind by
        // a crash is handled again on the next pass.
        self.backend.delete(cf::STATE_VALUES, values, false)?;
        self.backend.delete(cf::STATE_TREE, nodes, false)?;
        let count = stale.len();
        self.backend.delete(cf::STALE_TREE_NODES, stale, false)?;
        Ok(count)
    }

    fn account(&self, key: &PublicKey) -> Result<Option<Account>> {
        let cached = self
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key);
        if cached.is_some() {
            return Ok(cached);
        }
        self.backend
            .get(cf::ACCOUNTS, key.as_bytes())?
            .map(|v| codec::decode_account(&v))
            .transpose()
    }

    fn block(&self, height: u64) -> Result<Option<StoredBlock>> {
        let key = height.to_be_bytes();
        let Some(bytes) = self.backend.get(cf::BLOCKS, &key)? else {
            return Ok(None);
        };
        let certificate = self
            .backend
            .get(cf::CERTIFICATES, &key)?
            .map(|v| codec::decode_certificate(&v))
            .transpose()?;
        codec::decode_block(&bytes, certificate).map(Some)
    }

    fn height_of(&self, block_hash: &Hash) -> Result<Option<u64>> {
        self.backend
            .get(cf::BLOCK_HEIGHTS, block_hash.as_bytes())?
            .map(|v| codec::decode_u64(&v, "block height"))
            .transpose()
    }

    fn transaction(&self, tx_id: &TxId) -> Result<Option<TxRecord>> {
        self.backend
            .get(cf::TRANSACTIONS, tx_id.as_bytes())?
            .map(|v| codec::decode_tx(&v))
            .transpose()
    }

    fn history_before(
        &self,
        key: &PublicKey,
        before: Option<TxPosition>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        // The predecessor of `before` in (height, index) order; None = newest.
        let start = match before {
            None => history_key(key, u64::MAX, u32::MAX),
            Some((0, 0)) => return Ok(Vec::new()),
            Some((h, 0)) => history_key(key, h - 1, u32::MAX),
            Some((h, i)) => history_key(key, h, i - 1),
        };
        self.history(key, start, Scan::Reverse, limit)
    }

    fn payments_with_reference(
        &self,
        reference: &Hash,
        from: TxPosition,
        limit: usize,
    ) -> Result<Vec<(TxPosition, TxId)>> {
        let start = codec::reference_key(reference, from.0, from.1);
        let mut out = Vec::new();
        let mut failure = None;
        self.backend
            .scan(cf::REFERENCES, &start, Scan::Forward, &mut |k, v| {
                if out.len() >= limit || !k.starts_with(reference.as_bytes()) {
                    return false;
                }
                match codec::decode_reference(k, v) {
                    Ok(row) => out.push(row),
                    Err(e) => failure = Some(e),
                }
                failure.is_none()
            })?;
        failure.map_or(Ok(out), Err)
    }

    fn history_from(
        &self,
        key: &PublicKey,
        from: TxPosition,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        self.history(key, history_key(key, from.0, from.1), Scan::Forward, limit)
    }

    fn burned(&self) -> Result<u64> {
        self.backend
            .get(cf::METADATA, cf::META_BURNED)?
            .map(|v| codec::decode_u64(&v, "burned total"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    fn for_each_account(&self, f: &mut dyn FnMut(&PublicKey, &Account)) -> Result<()> {
        let mut failure = None;
        self.backend
            .scan(cf::ACCOUNTS, &[], Scan::Forward, &mut |k, v| {
                match codec::decode_key(k).and_then(|key| Ok((key, codec::decode_account(v)?))) {
                    Ok((key, account)) => f(&key, &account),
                    Err(e) => failure = Some(e),
                }
                failure.is_none()
            })?;
        failure.map_or(Ok(()), Err)
    }

    fn safety_data(&self) -> Result<Option<Vec<u8>>> {
        match &self.safety_files {
            Some(files) => Ok(Self::record_file(files)?.map(|(record, _)| record)),
            None => self.backend.get(cf::SAFETY, cf::SAFETY_KEY),
        }
    }

    fn put_safety_data(&self, bytes: &[u8]) -> Result<()> {
        match &self.safety_files {
            Some(files) => {
                // What was recorded unsynced before (blocks, certificates)
                // is durable before the record that may let a vote out.
                self.backend.sync()?;
                // The record carries the highest certificate, which covers
                // every certificate round the record says it saw: a wiped
                // validator can still show it and time out.
                let mut recorded = self.recorded_qc.lock().unwrap_or_else(|e| e.into_inner());
                if recorded.is_none() {
                    *recorded = Self::record_file(files)?.and_then(|(_, qc)| qc);
                }
                let file = safety_file::encode_record(bytes, recorded.as_deref());
                files.write(safety_file::RECORD, &file)
            }
            None => self
                .backend
                .write(vec![put(cf::SAFETY, cf::SAFETY_KEY, bytes)], true),
        }
    }

    fn put_pending_block(&self, height: u64, hash: &Hash, bytes: &[u8]) -> Result<()> {
        let mut key = height.to_be_bytes().to_vec();
        key.extend_from_slice(&hash.0);
        self.backend
            .write(vec![put(cf::PENDING_BLOCKS, key, bytes)], false)
    }

    fn pending_blocks(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.backend
            .scan(cf::PENDING_BLOCKS, &[], Scan::Forward, &mut |_, v| {
                out.push(v.to_vec());
                true
            })?;
        Ok(out)
    }

    fn prune_pending_blocks(&self, up_to_height: u64) -> Result<()> {
        // Keys are height (big-endian) ++ hash: heights 0..=up_to_height.
        let Some(end) = up_to_height.checked_add(1) else {
            // Every key: all 0xff and longer than any key sorts after them.
            let past_all = [0xff; 8 + 32 + 1];
            return self
                .backend
                .delete_range(cf::PENDING_BLOCKS, &[], &past_all, false);
        };
        self.backend
            .delete_range(cf::PENDING_BLOCKS, &[], &end.to_be_bytes(), false)
    }

    fn high_qc(&self) -> Result<Option<Vec<u8>>> {
        let stored = self.backend.get(cf::SAFETY, cf::HIGH_QC_KEY)?;
        match (&self.safety_files, stored) {
            (Some(files), None) => Ok(Self::record_file(files)?.and_then(|(_, qc)| qc)),
            (_, stored) => Ok(stored),
        }
    }

    fn put_high_qc(&self, bytes: &[u8]) -> Result<()> {
        if self.safety_files.is_some() {
            *self.recorded_qc.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes.to_vec());
        }
        self.backend
            .write(vec![put(cf::SAFETY, cf::HIGH_QC_KEY, bytes)], false)
    }

    fn high_tc(&self) -> Result<Option<Vec<u8>>> {
        match &self.safety_files {
            Some(files) => files.read(safety_file::HIGH_TC),
            None => self.backend.get(cf::SAFETY, cf::HIGH_TC_KEY),
        }
    }

    fn put_high_tc(&self, bytes: &[u8]) -> Result<()> {
        match &self.safety_files {
            // Synced on its own: once per round ended by timeout.
            Some(files) => files.write(safety_file::HIGH_TC, bytes),
            None => self
                .backend
                .write(vec![put(cf::SAFETY, cf::HIGH_TC_KEY, bytes)], false),
        }
    }
}
