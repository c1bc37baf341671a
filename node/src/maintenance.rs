//! Offline maintenance of a validator's database (the validator must be
//! stopped): wipe the chain, back it up, restore it.
//!
//! The consensus safety record (what this validator last signed) is never
//! rolled back by these commands: a reset keeps it and a restore keeps the
//! current one over the backup's, so a restored validator cannot sign
//! anything that conflicts with what it signed before.

use crate::storage::{RocksStore, Store, StoreError};
use std::path::Path;

fn open(data_dir: &Path) -> Result<RocksStore, String> {
    RocksStore::open(data_dir).map_err(|e| match e {
        StoreError::Db(m) if m.to_ascii_lowercase().contains("lock") => format!(
            "{} is in use (is the validator running? stop it first): {m}",
            data_dir.display()
        ),
        other => format!("{}: {other}", data_dir.display()),
    })
}

/// What a validator signed and what lets it go on signing: its safety
/// record, and the timeout certificate that took it into its highest round.
/// A validator whose record is ahead of every certificate it holds cannot
/// time out again (the safety rules forbid it); if a quorum of validators
/// were in that state after a reset, the chain would stop.
#[derive(Default)]
struct Kept {
    record: Option<Vec<u8>>,
    timeout_certificate: Option<Vec<u8>>,
}

fn read_safety(data_dir: &Path) -> Result<Kept, String> {
    if !data_dir.exists() {
        return Ok(Kept::default());
    }
    kept(&open(data_dir)?)
}

fn kept(store: &RocksStore) -> Result<Kept, String> {
    Ok(Kept {
        record: store.safety_data().map_err(|e| e.to_string())?,
        timeout_certificate: store.high_tc().map_err(|e| e.to_string())?,
    })
}

fn write_safety(data_dir: &Path, kept: Kept) -> Result<(), String> {
    let store = open(data_dir)?;
    if let Some(tc) = kept.timeout_certificate {
        store.put_high_tc(&tc).map_err(|e| e.to_string())?;
    }
    if let Some(bytes) = kept.record {
        store.put_safety_data(&bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Deletes the chain data under `data_dir`, keeping the safety record and
/// the timeout certificate of the highest round entered. The validator then
/// catches up from its peers. Returns the height that was removed.
pub fn unsafe_reset(data_dir: &Path) -> Result<Option<u64>, String> {
    let (height, safety) = {
        let store = open(data_dir)?;
        let height = store.committed_height().map_err(|e| e.to_string())?;
        (height, kept(&store)?)
    };
    std::fs::remove_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    write_safety(data_dir, safety)?;
    Ok(height)
}

/// Writes a consistent copy of the database to `out` (must not exist).
/// Returns the committed height it holds.
pub fn backup(data_dir: &Path, out: &Path) -> Result<Option<u64>, String> {
    if out.exists() {
        return Err(format!("{} already exists", out.display()));
    }
    let store = open(data_dir)?;
    store
        .checkpoint(out)
        .map_err(|e| format!("backup to {}: {e}", out.display()))?;
    store.committed_height().map_err(|e| e.to_string())
}

/// Replaces the database under `data_dir` with the backup `from`, keeping
/// the current safety record (and timeout certificate) when there is one.
/// Returns the restored height.
pub fn restore(data_dir: &Path, from: &Path) -> Result<Option<u64>, String> {
    // Check the backup opens before touching anything.
    let restored_height = open(from)?.committed_height().map_err(|e| e.to_string())?;
    let current = read_safety(data_dir)?;
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().map_err(|e| e.to_string())?.is_file() {
            std::fs::copy(entry.path(), data_dir.join(entry.file_name()))
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
    }
    write_safety(data_dir, current)?;
    Ok(restored_height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{Genesis, GenesisFile, ValidatorFile};
    use crate::ledger::Ledger;
    use chatpay_proto::SecretKey;
    use std::sync::Arc;

    fn genesis() -> Arc<Genesis> {
        let file = GenesisFile {
            chain_id: "chatpay-m".into(),
            hrp: "cp".into(),
            decimals: 6,
            symbol: "CPY".into(),
            fee_per_transfer: 1,
            genesis_time_ms: 0,
            validators: vec![ValidatorFile {
                public_key: hex::encode(SecretKey::generate().public_key().as_bytes()),
                network_address: "127.0.0.1:1".into(),
            }],
            accounts: vec![],
        };
        Arc::new(Genesis::from_file(file).unwrap())
    }

    #[test]
    fn reset_backup_and_restore_never_roll_back_the_safety_record_or_its_tc() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        {
            let store: Arc<dyn Store> = Arc::new(RocksStore::open(&data).unwrap());
            Ledger::open(store.clone(), genesis()).unwrap();
            store.put_safety_data(b"signed up to round 7").unwrap();
            store.put_high_tc(b"TC of round 6").unwrap();
            store.put_high_qc(b"QC of round 5").unwrap();
        }
        let copy = dir.path().join("backup");
        assert_eq!(backup(&data, &copy).unwrap(), Some(0));
        assert!(backup(&data, &copy).unwrap_err().contains("exists"));

        // A locked database (validator running) gets a clear error.
        {
            let _running = RocksStore::open(&data).unwrap();
            let e = unsafe_reset(&data).unwrap_err();
            assert!(e.contains("stop it first"), "{e}");
        }

        assert_eq!(unsafe_reset(&data).unwrap(), Some(0));
        {
            let store = RocksStore::open(&data).unwrap();
            assert_eq!(store.committed_height().unwrap(), None);
            assert_eq!(
                store.safety_data().unwrap().unwrap(),
                b"signed up to round 7"
            );
            // The TC that let it sign in round 7 stays; the QC, over a
            // block that is gone, does not.
            assert_eq!(store.high_tc().unwrap().unwrap(), b"TC of round 6");
            assert_eq!(store.high_qc().unwrap(), None);
            store.put_safety_data(b"signed up to round 9").unwrap();
            store.put_high_tc(b"TC of round 8").unwrap();
        }
        assert_eq!(restore(&data, &copy).unwrap(), Some(0));
        let store = RocksStore::open(&data).unwrap();
        assert_eq!(store.committed_height().unwrap(), Some(0));
        assert_eq!(
            store.safety_data().unwrap().unwrap(),
            b"signed up to round 9"
        );
        assert_eq!(store.high_tc().unwrap().unwrap(), b"TC of round 8");
    }
}
