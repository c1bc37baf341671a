//! In-memory backend: the same store logic as RocksDB, for simulation and
//! tests. A batch is applied under one lock, so it is atomic.
//!
//! It models a disk the way RocksDB uses one: every write is visible at
//! once, but only a synced write makes it durable, together with every
//! write before it (one write-ahead log, synced in order).
//! [`MemoryStore::lose_unsynced`] is the power cut: what was not synced is
//! gone.

use super::Result;
use super::columns;
use super::kv::{Backend, KvStore, Put, Scan};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

type Column = BTreeMap<Vec<u8>, Vec<u8>>;
type Columns = BTreeMap<&'static str, Column>;

/// One write not yet synced.
enum Op {
    Put(Put),
    Delete(&'static str, Vec<Vec<u8>>),
}

impl Op {
    fn apply(self, columns: &mut Columns) {
        match self {
            Op::Put(p) => {
                columns.entry(p.cf).or_default().insert(p.key, p.value);
            }
            Op::Delete(cf, keys) => {
                if let Some(col) = columns.get_mut(cf) {
                    for k in keys {
                        col.remove(&k);
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct Disk {
    /// What reads see.
    live: Columns,
    /// What survives a power cut.
    durable: Columns,
    /// Writes since the last sync, oldest first.
    unsynced: Vec<Op>,
    /// Columns whose synced writes are not synced (a disk that lies).
    fsync_ignored: Vec<&'static str>,
}

impl Disk {
    fn record(&mut self, ops: Vec<Op>, sync: bool, cfs: &[&'static str]) {
        for op in &ops {
            match op {
                Op::Put(p) => {
                    self.live
                        .entry(p.cf)
                        .or_default()
                        .insert(p.key.clone(), p.value.clone());
                }
                Op::Delete(cf, keys) => {
                    if let Some(col) = self.live.get_mut(cf) {
                        for k in keys {
                            col.remove(k);
                        }
                    }
                }
            }
        }
        self.unsynced.extend(ops);
        let honoured = sync && !cfs.iter().all(|cf| self.fsync_ignored.contains(cf));
        if honoured {
            for op in self.unsynced.drain(..) {
                op.apply(&mut self.durable);
            }
        }
    }
}

/// Column families as ordered maps, with a model of what is durable.
pub struct MemoryBackend {
    disk: Mutex<Disk>,
}

/// A [`Store`](super::Store) held in memory.
pub type MemoryStore = KvStore<MemoryBackend>;

impl MemoryStore {
    /// An empty store.
    pub fn new_empty() -> Self {
        KvStore::new(MemoryBackend::empty())
    }

    /// An empty store keeping up to `2 × entries` committed accounts in
    /// memory (tests of that cache use a few).
    #[cfg(test)]
    pub(crate) fn empty_with_account_cache(entries: usize) -> Self {
        KvStore::with_account_cache(MemoryBackend::empty(), entries)
    }

    /// A power cut: every write not yet synced is lost. Call it only while
    /// nothing uses the store (the validator is stopped).
    pub fn lose_unsynced(&self) {
        self.backend().with(|d| {
            d.unsynced.clear();
            d.live = d.durable.clone();
        });
    }

    /// Writes made since the last sync (lost by [`Self::lose_unsynced`]).
    pub fn unsynced_writes(&self) -> usize {
        self.backend().with(|d| d.unsynced.len())
    }

    /// What `chatpay-node unsafe-reset` does to a stopped validator's
    /// database: every column emptied except the safety record, the
    /// highest certificate it had (the record carries it) and the timeout
    /// certificate of the highest round entered, which are kept (durable).
    /// The validator then starts from genesis and catches up from its
    /// peers. Call it only while nothing uses the store.
    pub fn unsafe_reset(&self) {
        use super::Store;
        let record = self.safety_data().expect("memory reads cannot fail");
        let tc = self.high_tc().expect("memory reads cannot fail");
        let qc = self.high_qc().expect("memory reads cannot fail");
        self.backend().with(|d| {
            let empty: Columns = columns::ALL.iter().map(|cf| (*cf, Column::new())).collect();
            d.unsynced.clear();
            d.live = empty.clone();
            d.durable = empty;
        });
        self.forget_cached_accounts();
        // Written back as `maintenance::unsafe_reset` does, synced.
        if let Some(tc) = tc {
            self.put_high_tc(&tc).expect("memory writes cannot fail");
        }
        if let Some(qc) = qc {
            self.put_high_qc(&qc).expect("memory writes cannot fail");
        }
        if let Some(record) = record {
            self.put_safety_data(&record)
                .expect("memory writes cannot fail");
        }
    }

    /// Makes the disk ignore the sync of writes that touch only column
    /// `cf` (they become durable with the next real sync). Simulation tests
    /// use it to break the rule that safety data is durable before a vote
    /// leaves, and show the checker notices.
    pub fn skip_fsync_of(&self, cf: &'static str) {
        self.backend().with(|d| d.fsync_ignored.push(cf));
    }
}

impl MemoryBackend {
    fn empty() -> Self {
        let columns: Columns = columns::ALL.iter().map(|cf| (*cf, Column::new())).collect();
        MemoryBackend {
            disk: Mutex::new(Disk {
                live: columns.clone(),
                durable: columns,
                ..Disk::default()
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Disk) -> T) -> T {
        // A panic while holding the lock cannot leave a half-applied batch:
        // batches are applied with infallible inserts.
        let mut guard = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl Backend for MemoryBackend {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.with(|d| d.live.get(cf).and_then(|col| col.get(key).cloned())))
    }

    fn write(&self, puts: Vec<Put>, sync: bool) -> Result<()> {
        let cfs: Vec<&'static str> = puts.iter().map(|p| p.cf).collect();
        let ops = puts.into_iter().map(Op::Put).collect();
        self.with(|d| d.record(ops, sync, &cfs));
        Ok(())
    }

    fn delete(&self, cf: &'static str, keys: Vec<Vec<u8>>, sync: bool) -> Result<()> {
        self.with(|d| d.record(vec![Op::Delete(cf, keys)], sync, &[cf]));
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.with(|d| d.record(Vec::new(), true, &[]));
        Ok(())
    }

    fn delete_range(&self, cf: &'static str, from: &[u8], to: &[u8], sync: bool) -> Result<()> {
        self.with(|d| {
            let keys: Vec<Vec<u8>> = d.live.get(cf).map_or_else(Vec::new, |col| {
                col.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                    .map(|(k, _)| k.clone())
                    .collect()
            });
            d.record(vec![Op::Delete(cf, keys)], sync, &[cf]);
        });
        Ok(())
    }

    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        direction: Scan,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        // Copy out a chunk at a time under the lock, visit without it
        // (visit may call back); most scans stop after a few entries.
        const CHUNK: usize = 64;
        let mut from: Bound<Vec<u8>> = Bound::Included(start.to_vec());
        loop {
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = self.with(|d| {
                let Some(col) = d.live.get(cf) else {
                    return Vec::new();
                };
                let copy = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
                let from = match &from {
                    Bound::Included(k) => Bound::Included(k.as_slice()),
                    Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
                    Bound::Unbounded => Bound::Unbounded,
                };
                match direction {
                    Scan::Forward => col
                        .range::<[u8], _>((from, Bound::Unbounded))
                        .take(CHUNK)
                        .map(copy)
                        .collect(),
                    Scan::Reverse => col
                        .range::<[u8], _>((Bound::Unbounded, from))
                        .rev()
                        .take(CHUNK)
                        .map(copy)
                        .collect(),
                }
            });
            for (k, v) in &chunk {
                if !visit(k, v) {
                    return Ok(());
                }
            }
            match chunk.last() {
                Some((k, _)) if chunk.len() == CHUNK => from = Bound::Excluded(k.clone()),
                _ => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    #[test]
    fn a_power_cut_keeps_synced_writes_and_everything_before_them() {
        let store = MemoryStore::new_empty();
        store.put_high_qc(b"a").unwrap(); // not synced
        assert_eq!(store.unsynced_writes(), 1);
        store.lose_unsynced();
        assert_eq!(store.high_qc().unwrap(), None);

        store.put_high_qc(b"b").unwrap();
        store.put_safety_data(b"s1").unwrap(); // synced: takes b along
        store.put_high_qc(b"c").unwrap();
        store.lose_unsynced();
        assert_eq!(store.high_qc().unwrap(), Some(b"b".to_vec()));
        assert_eq!(store.safety_data().unwrap(), Some(b"s1".to_vec()));
    }

    #[test]
    fn an_ignored_fsync_loses_the_write_until_a_real_sync() {
        let store = MemoryStore::new_empty();
        store.skip_fsync_of(columns::SAFETY);
        store.put_safety_data(b"s1").unwrap();
        store.lose_unsynced();
        assert_eq!(store.safety_data().unwrap(), None);

        store.put_safety_data(b"s2").unwrap();
        let other = Put {
            cf: columns::METADATA,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        store.backend().write(vec![other], true).unwrap(); // a real sync
        store.lose_unsynced();
        assert_eq!(store.safety_data().unwrap(), Some(b"s2".to_vec()));
    }
}
