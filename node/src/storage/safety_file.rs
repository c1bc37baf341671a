//! The consensus safety record in files of its own, outside the chain
//! database.
//!
//! ```text
//!  <home>/safety/record   what this validator last signed (SafetyData),
//!                         with the highest certificate it had then
//!  <home>/safety/high_tc  the timeout certificate of its highest round
//!  write: name.tmp ─write─▶ fsync ─rename─▶ name ─▶ fsync the directory
//! ```
//!
//! The chain database can be deleted and rebuilt from peers (`unsafe-reset`,
//! `restore`, an operator's `rm -rf data`); the record must not be, or the
//! validator could sign a second vote in a round it already voted in. So it
//! lives where no maintenance command deletes, and each write replaces the
//! whole file atomically: a crash at any point leaves the old record or the
//! new one, never a mix and never none.

use super::{Result, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the safety record.
pub const RECORD: &str = "record";
/// File name of the timeout certificate of the highest round entered.
pub const HIGH_TC: &str = "high_tc";
/// Largest file read back (a record is under 300 bytes; a TC of 256
/// signers under 20 KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The record file's bytes: record length (4 bytes, big-endian), the
/// record, then the highest certificate (absent: nothing).
pub fn encode_record(record: &[u8], qc: Option<&[u8]>) -> Vec<u8> {
    let len = u32::try_from(record.len()).expect("a safety record is small");
    let mut out = Vec::with_capacity(4 + record.len() + qc.map_or(0, <[u8]>::len));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(qc.unwrap_or_default());
    out
}

/// What a record file holds: the record and the highest certificate.
pub type RecordFile = (Vec<u8>, Option<Vec<u8>>);

/// The (record, certificate) of a record file.
pub fn decode_record(bytes: &[u8]) -> Result<RecordFile> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        what: "safety record file",
        detail: detail.into(),
    };
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("shorter than its length prefix"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| corrupt("length"))?;
    if rest.len() < len {
        return Err(corrupt("shorter than the record it announces"));
    }
    let (record, qc) = rest.split_at(len);
    Ok((record.to_vec(), (!qc.is_empty()).then(|| qc.to_vec())))
}

/// A directory of atomically replaced files.
#[derive(Debug, Clone)]
pub struct SafetyFiles {
    dir: PathBuf,
}

fn io_error(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Db(format!("{}: {e}", path.display()))
}

impl SafetyFiles {
    /// Opens (creating it if needed) the directory `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The content of file `name`, if it exists.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        match fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, &e)),
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                return Err(StoreError::Db(format!(
                    "{}: {} bytes, more than a safety file holds",
                    path.display(),
                    m.len()
                )));
            }
            Ok(_) => {}
        }
        fs::read(&path).map(Some).map_err(|e| io_error(&path, &e))
    }

    /// Replaces file `name` with `bytes`, durably: written to a temporary
    /// file, synced, renamed over the old one, and the directory synced.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_error(&tmp, &e))?;
        file.write_all(bytes).map_err(|e| io_error(&tmp, &e))?;
        file.sync_all().map_err(|e| io_error(&tmp, &e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, &e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_file_holds_the_record_and_the_certificate() {
        for qc in [None, Some(&b"QC of round 9"[..])] {
            let bytes = encode_record(b"signed in round 9", qc);
            let (record, got) = decode_record(&bytes).unwrap();
            assert_eq!(record, b"signed in round 9");
            assert_eq!(got.as_deref(), qc);
        }
        assert!(decode_record(&[0, 0, 0, 9, 1]).is_err());
        assert!(decode_record(&[0, 0]).is_err());
    }

    #[test]
    fn a_write_replaces_the_whole_file_and_a_stale_temporary_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let files = SafetyFiles::open(&dir.path().join("safety")).unwrap();
        assert_eq!(files.read(RECORD).unwrap(), None);
        files.write(RECORD, b"round 7").unwrap();
        // A crash between writing the temporary and renaming it leaves it
        // behind; the record is still the last complete one.
        fs::write(files.dir().join("record.tmp"), b"round 9, torn").unwrap();
        assert_eq!(files.read(RECORD).unwrap().unwrap(), b"round 7");
        files.write(RECORD, b"round 9").unwrap();
        assert_eq!(files.read(RECORD).unwrap().unwrap(), b"round 9");
        assert!(!files.dir().join("record.tmp").exists());
    }
}
