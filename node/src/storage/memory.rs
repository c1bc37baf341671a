//! In-memory backend: the same store logic as RocksDB, for simulation and
//! tests. A batch is applied under one lock, so it is atomic.

use super::Result;
use super::columns;
use super::kv::{Backend, KvStore, Put, Scan};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

type Column = BTreeMap<Vec<u8>, Vec<u8>>;

/// Column families as ordered maps.
pub struct MemoryBackend {
    columns: Mutex<HashMap<&'static str, Column>>,
}

/// A [`Store`](super::Store) held in memory.
pub type MemoryStore = KvStore<MemoryBackend>;

impl MemoryStore {
    /// An empty store.
    pub fn new_empty() -> Self {
        let columns = columns::ALL.iter().map(|cf| (*cf, Column::new())).collect();
        KvStore::new(MemoryBackend {
            columns: Mutex::new(columns),
        })
    }
}

impl MemoryBackend {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<&'static str, Column>) -> T) -> T {
        // A panic while holding the lock cannot leave a half-applied batch:
        // batches are applied with infallible inserts.
        let mut guard = self.columns.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl Backend for MemoryBackend {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.with(|c| c.get(cf).and_then(|col| col.get(key).cloned())))
    }

    fn write(&self, puts: Vec<Put>, _sync: bool) -> Result<()> {
        self.with(|c| {
            for p in puts {
                c.entry(p.cf).or_default().insert(p.key, p.value);
            }
        });
        Ok(())
    }

    fn delete(&self, cf: &'static str, keys: Vec<Vec<u8>>, _sync: bool) -> Result<()> {
        self.with(|c| {
            if let Some(col) = c.get_mut(cf) {
                for k in keys {
                    col.remove(&k);
                }
            }
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
        // Copy out under the lock, visit without it (visit may call back).
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self.with(|c| {
            let Some(col) = c.get(cf) else {
                return Vec::new();
            };
            match direction {
                Scan::Forward => col
                    .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Scan::Reverse => col
                    .range::<[u8], _>((Bound::Unbounded, Bound::Included(start)))
                    .rev()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        });
        for (k, v) in &entries {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }
}
