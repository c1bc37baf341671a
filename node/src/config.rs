//! A validator's configuration: `config.toml` in its home, with
//! environment overrides, validated before anything starts.
//!
//! ```toml
//! listen = "0.0.0.0:26650"     # one gRPC port: client API + validator service
//! key_file = "validator.key"   # paths are relative to the home
//! genesis_file = "genesis.json"
//! data_dir = "data"
//! safety_dir = "safety"        # what it last signed; never deleted by maintenance
//! log = "info"                 # tracing filter, e.g. "info,chatpay_node=debug"
//! log_format = "text"          # or "json" (one object per line)
//! metrics_listen = "127.0.0.1:26660"  # Prometheus /metrics; "" turns it off
//!
//! [consensus]
//! base_timeout_ms = 3000
//! max_timeout_ms = 60000
//! idle_interval_ms = 1000
//! max_block_txs = 2000
//! max_block_bytes = 4194304
//!
//! [mempool]
//! max_txs = 50000
//! max_bytes = 67108864
//! max_per_sender = 64
//! max_parked = 5000
//!
//! [sync]                       # joining with an empty store (ADR 0016)
//! from = "snapshot"            # or "genesis": replay every block
//! snapshot_min_height = 1024   # replay below this committed height
//! retain_blocks = 0            # blocks kept whole; 0: all, else >= 10001
//! ```
//! Every field can be overridden by an environment variable named after
//! it: `CHATPAY_LISTEN`, `CHATPAY_LOG_FORMAT`, `CHATPAY_CONSENSUS_BASE_TIMEOUT_MS`,
//! `CHATPAY_MEMPOOL_MAX_TXS`, … (`CHATPAY_` + section + `_` + field, upper
//! case). `chatpay-node config show --home DIR` prints the result.

use crate::consensus::core::CoreConfig;
use crate::consensus::wire::MAX_BLOCK_TXS;
use crate::mempool::MempoolConfig;
use crate::network::MAX_PEER_MESSAGE_BYTES;
use crate::state_sync::{MIN_RETAIN_BLOCKS, SyncConfig, SyncFrom};
use chatpay_proto::SecretKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Name of the configuration file in a validator home.
pub const CONFIG_FILE: &str = "config.toml";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        message: String,
    },
    /// A setting is out of range.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// Setting name, as in the file.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Consensus settings of `[consensus]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// First round timeout.
    pub base_timeout_ms: u64,
    /// Largest round timeout after backoff.
    pub max_timeout_ms: u64,
    /// Longest a leader waits with nothing to order before an empty block.
    pub idle_interval_ms: u64,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Most transaction bytes per block.
    pub max_block_bytes: usize,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        let c = CoreConfig::default();
        Self {
            base_timeout_ms: c.base_timeout_ms,
            max_timeout_ms: c.max_timeout_ms,
            idle_interval_ms: c.idle_interval_ms,
            max_block_txs: c.max_block_txs,
            max_block_bytes: c.max_block_bytes,
        }
    }
}

/// How a validator with an empty store joins a running chain: `[sync]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// "snapshot" (the state at a recent committed height from the peers,
    /// each chunk checked against that height's certified root) or
    /// "genesis" (replay every block; keeps the whole history).
    pub from: SyncFrom,
    /// A snapshot is taken only when the peers can show at least this
    /// height committed; below it the validator replays.
    pub snapshot_min_height: u64,
    /// Committed blocks kept whole below the head; older blocks, their
    /// transactions and history rows are deleted (wallets read them from
    /// validators that keep them). 0 keeps everything; otherwise at least
    /// 10 001.
    pub retain_blocks: u64,
}

impl Default for SyncSection {
    fn default() -> Self {
        let s = SyncConfig::default();
        Self {
            from: s.from,
            snapshot_min_height: s.snapshot_min_height,
            retain_blocks: s.retain_blocks,
        }
    }
}

/// Mempool settings of `[mempool]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    /// Most pending transactions.
    pub max_txs: usize,
    /// Most pending bytes.
    pub max_bytes: usize,
    /// Most pending transactions per sender.
    pub max_per_sender: usize,
    /// Most pending transactions behind a nonce gap (within `max_txs`).
    pub max_parked: usize,
}

impl Default for MempoolSection {
    fn default() -> Self {
        let m = MempoolConfig::default();
        Self {
            max_txs: m.max_txs,
            max_bytes: m.max_bytes,
            max_per_sender: m.max_per_sender,
            max_parked: m.max_parked,
        }
    }
}

/// The whole `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server binds.
    pub listen: String,
    /// Validator key file (hex secret key), relative to the home.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Genesis file, relative to the home.
    #[serde(default = "default_genesis_file")]
    pub genesis_file: PathBuf,
    /// RocksDB directory, relative to the home.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory of the consensus safety record (what this validator last
    /// signed), relative to the home. Kept apart from `data_dir` so that
    /// `unsafe-reset`, `restore` or deleting the chain data never rolls it
    /// back; never delete it while the validator's key is in use.
    #[serde(default = "default_safety_dir")]
    pub safety_dir: PathBuf,
    /// Log filter.
    #[serde(default = "default_log")]
    pub log: String,
    /// Log format: "text" or "json".
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Address of the Prometheus `/metrics` endpoint; empty: none.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// Consensus settings.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Mempool settings.
    #[serde(default)]
    pub mempool: MempoolSection,
    /// How the validator joins with an empty store.
    #[serde(default)]
    pub sync: SyncSection,
}

fn default_key_file() -> PathBuf {
    "validator.key".into()
}
fn default_genesis_file() -> PathBuf {
    "genesis.json".into()
}
fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_safety_dir() -> PathBuf {
    "safety".into()
}
fn default_log() -> String {
    "info".into()
}
fn default_log_format() -> String {
    "text".into()
}
fn default_metrics_listen() -> String {
    "127.0.0.1:26660".into()
}

impl Config {
    /// A configuration listening on `listen`, every other setting default.
    pub fn new(listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            key_file: default_key_file(),
            genesis_file: default_genesis_file(),
            data_dir: default_data_dir(),
            safety_dir: default_safety_dir(),
            log: default_log(),
            log_format: default_log_format(),
            metrics_listen: default_metrics_listen(),
            consensus: ConsensusSection::default(),
            mempool: MempoolSection::default(),
            sync: SyncSection::default(),
        }
    }

    /// Reads `home/config.toml`, applies `env` overrides (pass
    /// `std::env::vars()`), and validates the result.
    pub fn load(
        home: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let path = home.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: path.clone(),
            message,
        };
        let file: Config = toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        // Overrides apply to the full configuration (defaults filled in), so
        // any field can be set from the environment.
        let mut table = toml::Table::try_from(&file).map_err(|e| parse_error(e.to_string()))?;
        for (name, value) in env {
            if let Some(field) = name.strip_prefix(ENV_PREFIX) {
                override_field(&mut table, &field.to_ascii_lowercase(), &value)?;
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    parse_error(format!("after environment overrides: {e}"))
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid("listen", format!("{:?} is not ip:port", self.listen));
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "metrics_listen",
                format!(
                    "{:?} is not ip:port (or \"\" for none)",
                    self.metrics_listen
                ),
            );
        }
        if self.log_format != "text" && self.log_format != "json" {
            return invalid(
                "log_format",
                format!("{:?}: use \"text\" or \"json\"", self.log_format),
            );
        }
        let c = &self.consensus;
        if c.base_timeout_ms == 0 || c.base_timeout_ms > c.max_timeout_ms {
            return invalid(
                "consensus.base_timeout_ms",
                format!("must be in 1..=max_timeout_ms ({})", c.max_timeout_ms),
            );
        }
        if c.idle_interval_ms >= c.base_timeout_ms {
            return invalid(
                "consensus.idle_interval_ms",
                format!("must be below base_timeout_ms ({})", c.base_timeout_ms),
            );
        }
        if c.max_block_txs == 0 || c.max_block_txs > MAX_BLOCK_TXS {
            return invalid(
                "consensus.max_block_txs",
                format!("must be in 1..={MAX_BLOCK_TXS}"),
            );
        }
        let max_bytes = MAX_PEER_MESSAGE_BYTES / 2;
        if c.max_block_bytes < 4096 || c.max_block_bytes > max_bytes {
            return invalid(
                "consensus.max_block_bytes",
                format!("must be in 4096..={max_bytes}"),
            );
        }
        let retain = self.sync.retain_blocks;
        if retain != 0 && retain < MIN_RETAIN_BLOCKS {
            return invalid(
                "sync.retain_blocks",
                format!("must be 0 (keep every block) or at least {MIN_RETAIN_BLOCKS}"),
            );
        }
        let m = &self.mempool;
        if m.max_txs == 0 || m.max_bytes == 0 || m.max_per_sender == 0 || m.max_parked == 0 {
            return invalid("mempool", "every bound must be above 0".into());
        }
        Ok(())
    }

    /// The consensus settings for the core.
    pub fn core(&self) -> CoreConfig {
        let c = &self.consensus;
        CoreConfig {
            max_block_txs: c.max_block_txs,
            max_block_bytes: c.max_block_bytes,
            base_timeout_ms: c.base_timeout_ms,
            max_timeout_ms: c.max_timeout_ms,
            idle_interval_ms: c.idle_interval_ms,
            mutations: crate::consensus::mutations::Mutations::NONE,
        }
    }

    /// The mempool bounds.
    pub fn mempool(&self) -> MempoolConfig {
        MempoolConfig {
            max_txs: self.mempool.max_txs,
            max_bytes: self.mempool.max_bytes,
            max_per_sender: self.mempool.max_per_sender,
            max_parked: self.mempool.max_parked,
        }
    }

    /// How to join with an empty store.
    pub fn sync(&self) -> SyncConfig {
        SyncConfig {
            from: self.sync.from,
            snapshot_min_height: self.sync.snapshot_min_height,
            retain_blocks: self.sync.retain_blocks,
        }
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configuration serializes")
    }
}

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "CHATPAY_";

/// Sets `field` (`listen`, `consensus_base_timeout_ms`, …) in `table` from
/// the text of an environment variable, typed like the field it replaces.
/// Variables that name no field are left alone (other tools share the prefix).
fn override_field(table: &mut toml::Table, field: &str, text: &str) -> Result<(), ConfigError> {
    let (target, key) = match table.get(field) {
        Some(_) => (&mut *table, field.to_string()),
        None => {
            let Some((section, key)) = ["consensus", "mempool", "sync"].iter().find_map(|s| {
                field
                    .strip_prefix(&format!("{s}_"))
                    .map(|k| (s.to_string(), k.to_string()))
            }) else {
                return Ok(());
            };
            match table.get_mut(&section).and_then(toml::Value::as_table_mut) {
                Some(t) if t.contains_key(&key) => (t, key),
                _ => return Ok(()),
            }
        }
    };
    let name = format!("{ENV_PREFIX}{}", field.to_ascii_uppercase());
    let value = match &target[&key] {
        toml::Value::Integer(_) => text
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| ConfigError::Parse {
                path: name.clone().into(),
                message: format!("{text:?} is not a whole number"),
            })?,
        _ => toml::Value::String(text.to_string()),
    };
    target.insert(key, value);
    Ok(())
}

/// Reads a key file: the 32-byte secret key in hex (whitespace ignored).
pub fn read_key(path: &Path) -> Result<SecretKey, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: format!("not hex: {e}"),
    })?;
    SecretKey::from_slice(&bytes).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: format!("not a secp256k1 secret key: {e}"),
    })
}

/// Writes a key file readable by its owner only (mode 0600), refusing to
/// overwrite an existing one.
pub fn write_key(path: &Path, key: &SecretKey) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ConfigError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        dir
    }

    #[test]
    fn defaults_fill_a_minimal_file_and_env_overrides_it() {
        let dir = home("listen = \"127.0.0.1:1\"\n");
        let env = [
            ("CHATPAY_LISTEN".to_string(), "0.0.0.0:9".to_string()),
            (
                "CHATPAY_CONSENSUS_IDLE_INTERVAL_MS".to_string(),
                "250".to_string(),
            ),
            ("CHATPAY_MEMPOOL_MAX_TXS".to_string(), "7".to_string()),
            ("CHATPAY_PASSWORD".to_string(), "not a setting".to_string()),
        ];
        let c = Config::load(dir.path(), env).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9");
        assert_eq!(c.consensus.idle_interval_ms, 250);
        assert_eq!(c.mempool.max_txs, 7);
        let env = [("CHATPAY_MEMPOOL_MAX_TXS".to_string(), "many".to_string())];
        let e = Config::load(dir.path(), env).unwrap_err().to_string();
        assert!(
            e.contains("CHATPAY_MEMPOOL_MAX_TXS") && e.contains("whole number"),
            "{e}"
        );
        assert_eq!(
            c.core().base_timeout_ms,
            CoreConfig::default().base_timeout_ms
        );
        let round_trip = home(&c.to_toml());
        assert_eq!(Config::load(round_trip.path(), []).unwrap(), c);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = home("listen = \"127.0.0.1:1\"\nlisten_port = 3\n");
        let e = Config::load(dir.path(), []).unwrap_err().to_string();
        assert!(e.contains("listen_port"), "{e}");
        let dir = home("listen = \"127.0.0.1:1\"\n[consensus]\nidle_interval_ms = 5000\n");
        let e = Config::load(dir.path(), []).unwrap_err().to_string();
        assert!(e.contains("consensus.idle_interval_ms"), "{e}");
        let dir = home("listen = \"nowhere\"\n");
        let e = Config::load(dir.path(), []).unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SecretKey::generate();
        write_key(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_key(&path).unwrap().public_key(), key.public_key());
        assert!(write_key(&path, &SecretKey::generate()).is_err());
    }
}
