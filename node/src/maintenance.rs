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

/// Makes sure the safety record and the timeout certificate of the highest
/// round entered are in their files under `safety_dir` (a database written
/// by an older version still holds them; they are moved out first), so
/// that what follows can delete the database. A validator whose record is
/// ahead of every certificate it holds cannot time out again (the safety
/// rules forbid it); if a quorum of validators were in that state after a
/// reset, the chain would stop, so the TC is kept with the record.
fn secure_safety(data_dir: &Path, safety_dir: &Path) -> Result<Option<u64>, String> {
    if !data_dir.exists() {
        return Ok(None);
    }
    let store = open(data_dir)?
        .keep_safety_in(
            crate::storage::SafetyFiles::open(safety_dir)
                .map_err(|e| format!("{}: {e}", safety_dir.display()))?,
        )
        .map_err(|e| e.to_string())?;
    store.committed_height().map_err(|e| e.to_string())
}

/// Deletes the chain data under `data_dir`; the safety record and the
/// timeout certificate of the highest round entered stay in `safety_dir`,
/// which is not touched (a crash at any point loses neither). The
/// validator then catches up from its peers. Returns the height that was
/// removed.
pub fn unsafe_reset(data_dir: &Path, safety_dir: &Path) -> Result<Option<u64>, String> {
    let height = secure_safety(data_dir, safety_dir)?;
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    }
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

/// Replaces the database under `data_dir` with the backup `from`; the
/// safety record and its timeout certificate stay in `safety_dir` (the
/// backup's own, older ones are never read while those exist). Returns the
/// restored height.
pub fn restore(data_dir: &Path, safety_dir: &Path, from: &Path) -> Result<Option<u64>, String> {
    // Check the backup opens before touching anything.
    let restored_height = open(from)?.committed_height().map_err(|e| e.to_string())?;
    secure_safety(data_dir, safety_dir)?;
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

    fn store(data: &Path, safety: &Path) -> RocksStore {
        RocksStore::open_with_safety_files(data, safety).unwrap()
    }

    #[test]
    fn reset_backup_and_restore_never_roll_back_the_safety_record_or_its_tc() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let safety = dir.path().join("safety");
        {
            // Written by a version that kept the record in the database:
            // the first maintenance command moves it out.
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
            let e = unsafe_reset(&data, &safety).unwrap_err();
            assert!(e.contains("stop it first"), "{e}");
        }

        assert_eq!(unsafe_reset(&data, &safety).unwrap(), Some(0));
        assert!(!data.exists());
        {
            let store = store(&data, &safety);
            assert_eq!(store.committed_height().unwrap(), None);
            assert_eq!(
                store.safety_data().unwrap().unwrap(),
                b"signed up to round 7"
            );
            // The TC that let it sign in round 7 stays, and so does the
            // highest certificate the record was written with: without it
            // the validator could not show a certificate as high as the
            // rounds its record says it saw, and could never time out.
            assert_eq!(store.high_tc().unwrap().unwrap(), b"TC of round 6");
            assert_eq!(store.high_qc().unwrap().unwrap(), b"QC of round 5");
            store.put_safety_data(b"signed up to round 9").unwrap();
            store.put_high_tc(b"TC of round 8").unwrap();
        }
        assert_eq!(restore(&data, &safety, &copy).unwrap(), Some(0));
        let store = store(&data, &safety);
        assert_eq!(store.committed_height().unwrap(), Some(0));
        assert_eq!(
            store.safety_data().unwrap().unwrap(),
            b"signed up to round 9"
        );
        assert_eq!(store.high_tc().unwrap().unwrap(), b"TC of round 8");
    }

    #[test]
    fn deleting_the_chain_data_midway_or_by_hand_keeps_the_safety_record() {
        // A crash of `unsafe-reset` right after it deleted the database, or
        // an operator's `rm -rf data`: the record lived in the database, so
        // the validator came back with none and could vote twice in a
        // round it had voted in.
        let dir = tempfile::tempdir().unwrap();
        let (data, safety) = (dir.path().join("data"), dir.path().join("safety"));
        {
            let store: Arc<dyn Store> = Arc::new(store(&data, &safety));
            Ledger::open(store.clone(), genesis()).unwrap();
            store.put_safety_data(b"voted in round 12").unwrap();
            store.put_high_tc(b"TC of round 11").unwrap();
        }
        std::fs::remove_dir_all(&data).unwrap();
        let store = store(&data, &safety);
        assert_eq!(store.committed_height().unwrap(), None);
        assert_eq!(store.safety_data().unwrap().unwrap(), b"voted in round 12");
        assert_eq!(store.high_tc().unwrap().unwrap(), b"TC of round 11");
    }
}
