//! RocksDB backend: one column family per kind of record
//! ([`columns`](super::columns)), commits as one `WriteBatch` with fsync.

use super::kv::{Backend, KvStore, Put, Scan};
use super::{Result, SafetyFiles, StoreError, columns};
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use std::path::Path;

/// A RocksDB database with chatpay's column families.
pub struct RocksBackend {
    db: DB,
}

/// A [`Store`](super::Store) on disk.
pub type RocksStore = KvStore<RocksBackend>;

fn db_error(e: rocksdb::Error) -> StoreError {
    StoreError::Db(e.into_string())
}

impl RocksStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Bound open files and background work on small machines.
        opts.set_max_open_files(512);
        opts.set_keep_log_file_num(4);
        // Commits are serialized: one writer, which lets a batch's sorted
        // inserts reuse their position in the memtable.
        opts.set_allow_concurrent_memtable_write(false);
        let cfs = columns::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(*cf, column_options(cf)));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(db_error)?;
        Ok(KvStore::new(RocksBackend { db }))
    }
}

/// Options of column family `cf`.
fn column_options(cf: &str) -> Options {
    let mut opts = Options::default();
    if cf == columns::TRANSACTIONS {
        // Executing a block looks up each of its transaction ids, and almost
        // every one is new: bloom filters, over the memtable and over each
        // table file, answer most such lookups without searching either.
        opts.set_memtable_prefix_bloom_ratio(0.02);
        opts.set_memtable_whole_key_filtering(true);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
    }
    opts
}

impl RocksStore {
    /// Opens (or creates) the database at `path`, keeping the safety record
    /// and its TC in files under `safety_dir` (outside the database, so
    /// that deleting or restoring the database never rolls them back).
    pub fn open_with_safety_files(path: &Path, safety_dir: &Path) -> Result<Self> {
        Self::open(path)?.keep_safety_in(SafetyFiles::open(safety_dir)?)
    }

    /// Writes a consistent copy of the database to `dir` (which must not
    /// exist): a RocksDB checkpoint, hard links where the file system allows.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.backend().db).map_err(db_error)?;
        checkpoint.create_checkpoint(dir).map_err(db_error)
    }
}

impl RocksBackend {
    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Db(format!("column family {name} is missing")))
    }
}

impl Backend for RocksBackend {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf)?, key).map_err(db_error)
    }

    fn write(&self, mut puts: Vec<Put>, sync: bool) -> Result<()> {
        // In key order, each memtable insert starts from where the one
        // before ended (single writer, below). The sort is stable: of two
        // puts of one key, the later still wins.
        puts.sort_by(|a, b| (a.cf, &a.key).cmp(&(b.cf, &b.key)));
        let mut batch = WriteBatch::default();
        for p in puts {
            batch.put_cf(self.cf(p.cf)?, p.key, p.value);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts).map_err(db_error)
    }

    fn delete(&self, cf: &'static str, keys: Vec<Vec<u8>>, sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        let handle = self.cf(cf)?;
        for k in keys {
            batch.delete_cf(handle, k);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts).map_err(db_error)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(db_error)
    }

    fn delete_range(&self, cf: &'static str, from: &[u8], to: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(cf)?, from, to);
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts).map_err(db_error)
    }

    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        direction: Scan,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let dir = match direction {
            Scan::Forward => Direction::Forward,
            Scan::Reverse => Direction::Reverse,
        };
        for item in self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(start, dir))
        {
            let (k, v) = item.map_err(db_error)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}
