//! Genesis: the chain's identity and starting state, shared by every node.
//!
//! Loaded from a JSON file (`genesis.json`), validated, and hashed over its
//! canonical bytes. The hash is in every block header, so nodes started from
//! different genesis files build incompatible chains and refuse each other's
//! blocks. Validators' network addresses are operational and not hashed: a
//! validator can move to a new address without forking the chain.

use crate::execution::state_tree::{self, EmptyTree, TreeUpdate};
use crate::storage::BlockCommit;
use chatpay_proto::{
    Account, Address, BlockHeader, DEFAULT_DECIMALS, DEFAULT_HRP, Hash, MAX_DECIMALS, PublicKey,
    merkle_root, sha256, validate_chain_id, validate_hrp,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Domain tag of the genesis canonical bytes.
const GENESIS_DOMAIN_TAG: &[u8] = b"chatpay/genesis\0";
/// Most validators a chain may have.
pub const MAX_VALIDATORS: usize = 256;
/// Most accounts genesis may fund.
pub const MAX_GENESIS_ACCOUNTS: usize = 1_000_000;
/// Longest currency symbol.
const MAX_SYMBOL_LEN: usize = 16;

/// Why a genesis file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("cannot read genesis file {path}: {source}")]
    Io {
        /// Path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid genesis JSON.
    #[error("genesis is not valid JSON: {0}")]
    Parse(String),
    /// A field has an invalid value.
    #[error("genesis field '{field}' is invalid: {reason}")]
    Invalid {
        /// Field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// No validators.
    #[error("genesis has no validators; a chain needs at least one")]
    NoValidators,
    /// The same validator key twice.
    #[error("validator key {key} appears twice in genesis")]
    DuplicateValidator {
        /// The repeated key (hex).
        key: String,
    },
    /// The same account twice.
    #[error("account {address} appears twice in genesis")]
    DuplicateAccount {
        /// The repeated address.
        address: String,
    },
    /// Initial balances sum to more than u64::MAX.
    #[error("initial balances sum to more than {max} base units", max = u64::MAX)]
    SupplyOverflow,
}

fn invalid(field: impl Into<String>, reason: impl ToString) -> GenesisError {
    GenesisError::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

fn default_hrp() -> String {
    DEFAULT_HRP.to_owned()
}

fn default_decimals() -> u8 {
    DEFAULT_DECIMALS
}

fn default_symbol() -> String {
    "CPY".to_owned()
}

/// A validator as written in `genesis.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ValidatorFile {
    /// 33-byte compressed public key, hex.
    pub public_key: String,
    /// Address of its validator gRPC service, `host:port`.
    pub network_address: String,
}

/// A funded account as written in `genesis.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    /// bech32m address.
    pub address: String,
    /// Initial balance in base units.
    pub balance: u64,
}

/// `genesis.json` as written on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// Chain id, 1..=64 bytes of `[a-z0-9._-]`.
    pub chain_id: String,
    /// Address human-readable part (default `cp`).
    #[serde(default = "default_hrp")]
    pub hrp: String,
    /// Decimals for display (default 6, at most 18).
    #[serde(default = "default_decimals")]
    pub decimals: u8,
    /// Currency symbol for display (default `CPY`).
    #[serde(default = "default_symbol")]
    pub symbol: String,
    /// Minimum fee of a transfer, in base units; fees are burned.
    pub fee_per_transfer: u64,
    /// Genesis time, ms since the Unix epoch (timestamp of block 0).
    #[serde(default)]
    pub genesis_time_ms: u64,
    /// Validator set, in index order.
    pub validators: Vec<ValidatorFile>,
    /// Initial balances.
    #[serde(default)]
    pub accounts: Vec<AccountFile>,
}

/// A validator of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// Consensus key.
    pub public_key: PublicKey,
    /// Validator gRPC address, `host:port`.
    pub network_address: String,
}

/// Validated genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    /// Chain id.
    pub chain_id: String,
    /// Address human-readable part.
    pub hrp: String,
    /// Display decimals.
    pub decimals: u8,
    /// Display symbol.
    pub symbol: String,
    /// Minimum fee per transfer.
    pub fee_per_transfer: u64,
    /// Timestamp of block 0.
    pub genesis_time_ms: u64,
    /// Validators in index order.
    pub validators: Vec<Validator>,
    /// Initial balances by key.
    pub accounts: BTreeMap<PublicKey, u64>,
    /// Σ initial balances.
    pub total_supply: u64,
    hash: Hash,
    /// Root of the state tree of the initial balances.
    state_root: Hash,
}

impl Genesis {
    /// Reads and validates `genesis.json`.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses and validates genesis JSON.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let file: GenesisFile =
            serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        Self::from_file(file)
    }

    /// Validates a parsed genesis file.
    pub fn from_file(file: GenesisFile) -> Result<Self, GenesisError> {
        validate_chain_id(&file.chain_id).map_err(|e| invalid("chain_id", e))?;
        validate_hrp(&file.hrp).map_err(|e| invalid("hrp", e))?;
        if file.decimals > MAX_DECIMALS {
            return Err(invalid(
                "decimals",
                format!("{} is above {MAX_DECIMALS}", file.decimals),
            ));
        }
        let symbol_ok = !file.symbol.is_empty()
            && file.symbol.len() <= MAX_SYMBOL_LEN
            && file.symbol.bytes().all(|b| b.is_ascii_alphanumeric());
        if !symbol_ok {
            return Err(invalid("symbol", "use 1 to 16 ASCII letters or digits"));
        }
        let validators = validators(&file.validators)?;
        let (accounts, total_supply) = accounts(&file.accounts, &file.hrp)?;
        let mut genesis = Genesis {
            chain_id: file.chain_id,
            hrp: file.hrp,
            decimals: file.decimals,
            symbol: file.symbol,
            fee_per_transfer: file.fee_per_transfer,
            genesis_time_ms: file.genesis_time_ms,
            validators,
            accounts,
            total_supply,
            hash: Hash::default(),
            state_root: Hash::default(),
        };
        genesis.hash = sha256(&genesis.canonical_bytes());
        genesis.state_root = genesis.state_tree().root;
        Ok(genesis)
    }

    /// The file form (for writing `genesis.json`).
    pub fn to_file(&self) -> GenesisFile {
        GenesisFile {
            chain_id: self.chain_id.clone(),
            hrp: self.hrp.clone(),
            decimals: self.decimals,
            symbol: self.symbol.clone(),
            fee_per_transfer: self.fee_per_transfer,
            genesis_time_ms: self.genesis_time_ms,
            validators: self
                .validators
                .iter()
                .map(|v| ValidatorFile {
                    public_key: hex::encode(v.public_key.as_bytes()),
                    network_address: v.network_address.clone(),
                })
                .collect(),
            accounts: self
                .accounts
                .iter()
                .map(|(k, b)| AccountFile {
                    address: self.address(k).to_string(),
                    balance: *b,
                })
                .collect(),
        }
    }

    /// Hash of the canonical genesis bytes; identifies the chain.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The validators' public keys, in index order.
    pub fn validator_keys(&self) -> Vec<PublicKey> {
        self.validators
            .iter()
            .map(|v| v.public_key.clone())
            .collect()
    }

    /// The address of `key` on this chain.
    pub fn address(&self, key: &PublicKey) -> Address {
        Address::new(&self.hrp, key.clone()).expect("hrp validated at load")
    }

    /// Header of block 0.
    pub fn header(&self) -> BlockHeader {
        BlockHeader {
            genesis_hash: self.hash,
            height: 0,
            round: 0,
            parent_hash: Hash::default(),
            proposer: 0,
            timestamp_ms: self.genesis_time_ms,
            tx_count: 0,
            tx_root: merkle_root(&[]),
            state_root: self.state_root,
        }
    }

    /// The commit that writes block 0, the initial balances and the state
    /// tree at version 0.
    pub fn commit(&self) -> BlockCommit {
        let nodes = self.state_tree().nodes;
        BlockCommit {
            header: self.header(),
            certificate: None,
            transactions: Vec::new(),
            receipts: Vec::new(),
            accounts: self.initial_accounts(),
            burned: 0,
            tree_nodes: nodes
                .iter()
                .map(|(k, n)| (state_tree::encode_key(k), state_tree::encode_node(n)))
                .collect(),
            stale_tree_nodes: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The initial accounts, sorted by key.
    fn initial_accounts(&self) -> Vec<(PublicKey, Account)> {
        self.accounts
            .iter()
            .map(|(k, b)| {
                let account = Account {
                    balance: *b,
                    ..Account::default()
                };
                (k.clone(), account)
            })
            .collect()
    }

    /// The state tree of the initial balances (version 0): root and nodes.
    fn state_tree(&self) -> TreeUpdate {
        state_tree::update(&EmptyTree, 0, &self.initial_accounts(), 0)
            .expect("a tree built from nothing reads nothing")
    }

    /// Canonical bytes (`docs/ledger.md`, "Genesis hash").
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(GENESIS_DOMAIN_TAG);
        // Layout 4 names the rules and the state layout: a chain whose
        // failed transfers kept their nonce free (layout 2), whose
        // transfers were signed in layout 1 (layout 3), or whose leaves
        // are encoded otherwise, is another chain, whose certificates do
        // not verify here.
        out.push(4);
        out.push(chatpay_proto::state::LEAF_VERSION);
        for s in [&self.chain_id, &self.hrp] {
            out.push(u8::try_from(s.len()).expect("validated ≤ 64"));
            out.extend_from_slice(s.as_bytes());
        }
        out.push(self.decimals);
        out.push(u8::try_from(self.symbol.len()).expect("validated ≤ 16"));
        out.extend_from_slice(self.symbol.as_bytes());
        out.extend_from_slice(&self.fee_per_transfer.to_be_bytes());
        out.extend_from_slice(&self.genesis_time_ms.to_be_bytes());
        out.extend_from_slice(
            &u16::try_from(self.validators.len())
                .expect("≤ 256")
                .to_be_bytes(),
        );
        for v in &self.validators {
            out.extend_from_slice(v.public_key.as_bytes());
        }
        out.extend_from_slice(
            &u32::try_from(self.accounts.len())
                .expect("≤ 1e6")
                .to_be_bytes(),
        );
        for (key, balance) in &self.accounts {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&balance.to_be_bytes());
        }
        out
    }
}

fn validators(list: &[ValidatorFile]) -> Result<Vec<Validator>, GenesisError> {
    if list.is_empty() {
        return Err(GenesisError::NoValidators);
    }
    if list.len() > MAX_VALIDATORS {
        return Err(invalid(
            "validators",
            format!("at most {MAX_VALIDATORS}, got {}", list.len()),
        ));
    }
    let mut out: Vec<Validator> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let bytes = hex::decode(&v.public_key)
            .map_err(|e| invalid(format!("validators[{i}].public_key"), e))?;
        let public_key = PublicKey::from_slice(&bytes)
            .map_err(|e| invalid(format!("validators[{i}].public_key"), e))?;
        if out.iter().any(|o| o.public_key == public_key) {
            return Err(GenesisError::DuplicateValidator {
                key: v.public_key.clone(),
            });
        }
        check_network_address(&v.network_address)
            .map_err(|reason| invalid(format!("validators[{i}].network_address"), reason))?;
        out.push(Validator {
            public_key,
            network_address: v.network_address.clone(),
        });
    }
    Ok(out)
}

/// `host:port` with a non-empty host and a non-zero port.
pub fn check_network_address(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("'{addr}' is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("'{addr}' needs a host and a non-zero port"));
    }
    Ok(())
}

fn accounts(
    list: &[AccountFile],
    hrp: &str,
) -> Result<(BTreeMap<PublicKey, u64>, u64), GenesisError> {
    if list.len() > MAX_GENESIS_ACCOUNTS {
        return Err(invalid(
            "accounts",
            format!("at most {MAX_GENESIS_ACCOUNTS}, got {}", list.len()),
        ));
    }
    let mut out = BTreeMap::new();
    let mut supply: u64 = 0;
    for (i, a) in list.iter().enumerate() {
        let address = Address::parse(&a.address, hrp)
            .map_err(|e| invalid(format!("accounts[{i}].address"), e))?;
        if out
            .insert(address.public_key().clone(), a.balance)
            .is_some()
        {
            return Err(GenesisError::DuplicateAccount {
                address: a.address.clone(),
            });
        }
        supply = supply
            .checked_add(a.balance)
            .ok_or(GenesisError::SupplyOverflow)?;
    }
    Ok((out, supply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatpay_proto::SecretKey;

    fn key(n: u8) -> PublicKey {
        let mut b = [0u8; 32];
        b[31] = n;
        SecretKey::from_slice(&b).unwrap().public_key().clone()
    }

    fn file() -> GenesisFile {
        GenesisFile {
            chain_id: "chatpay-test".into(),
            hrp: "cp".into(),
            decimals: 6,
            symbol: "CPY".into(),
            fee_per_transfer: 1_000,
            genesis_time_ms: 1,
            validators: (1..=4)
                .map(|i| ValidatorFile {
                    public_key: hex::encode(key(i).as_bytes()),
                    network_address: format!("127.0.0.1:{}", 26600 + u16::from(i)),
                })
                .collect(),
            accounts: vec![
                AccountFile {
                    address: Address::new("cp", key(10)).unwrap().to_string(),
                    balance: 1_000_000,
                },
                AccountFile {
                    address: Address::new("cp", key(11)).unwrap().to_string(),
                    balance: 5,
                },
            ],
        }
    }

    #[test]
    fn valid_genesis_round_trips_through_json() {
        let g = Genesis::from_file(file()).unwrap();
        assert_eq!(g.total_supply, 1_000_005);
        let json = serde_json::to_string_pretty(&g.to_file()).unwrap();
        let again = Genesis::from_json(&json).unwrap();
        assert_eq!(again, g);
        assert_eq!(again.hash(), g.hash());
    }

    #[test]
    fn hash_covers_safety_fields_but_not_network_addresses() {
        let base = Genesis::from_file(file()).unwrap().hash();
        let mut moved = file();
        moved.validators[0].network_address = "10.0.0.1:26600".into();
        assert_eq!(Genesis::from_file(moved).unwrap().hash(), base);
        type Change = Box<dyn Fn(&mut GenesisFile)>;
        let changes: Vec<Change> = vec![
            Box::new(|f| f.chain_id = "other".into()),
            Box::new(|f| f.fee_per_transfer += 1),
            Box::new(|f| f.decimals = 2),
            Box::new(|f| f.symbol = "X".into()),
            Box::new(|f| f.genesis_time_ms += 1),
            Box::new(|f| f.accounts[1].balance += 1),
            Box::new(|f| f.validators.swap(0, 1)),
            Box::new(|f| {
                f.validators.pop();
            }),
        ];
        for change in changes {
            let mut f = file();
            change(&mut f);
            assert_ne!(Genesis::from_file(f).unwrap().hash(), base);
        }
    }

    #[test]
    fn invalid_genesis_gets_a_clear_error() {
        let mut f = file();
        f.validators.clear();
        assert!(matches!(
            Genesis::from_file(f),
            Err(GenesisError::NoValidators)
        ));
        let mut f = file();
        f.validators[1].public_key = f.validators[0].public_key.clone();
        assert!(matches!(
            Genesis::from_file(f),
            Err(GenesisError::DuplicateValidator { .. })
        ));
        let mut f = file();
        f.accounts[1].address = f.accounts[0].address.clone();
        assert!(matches!(
            Genesis::from_file(f),
            Err(GenesisError::DuplicateAccount { .. })
        ));
        let mut f = file();
        f.accounts[0].balance = u64::MAX;
        assert!(matches!(
            Genesis::from_file(f),
            Err(GenesisError::SupplyOverflow)
        ));
        let field = |f: GenesisFile| match Genesis::from_file(f) {
            Err(GenesisError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut f = file();
        f.chain_id = "Bad Chain".into();
        assert_eq!(field(f), "chain_id");
        let mut f = file();
        f.validators[2].public_key = "02abcd".into();
        assert_eq!(field(f), "validators[2].public_key");
        let mut f = file();
        f.validators[3].network_address = "localhost".into();
        assert_eq!(field(f), "validators[3].network_address");
        let mut f = file();
        f.accounts[0].address = Address::new("tcp", key(10)).unwrap().to_string();
        assert_eq!(field(f), "accounts[0].address");
        let mut f = file();
        f.decimals = 19;
        assert_eq!(field(f), "decimals");
        assert!(matches!(
            Genesis::from_json("{"),
            Err(GenesisError::Parse(_))
        ));
        assert!(matches!(
            Genesis::from_json(
                r#"{"chain_id":"a","fee_per_transfer":1,"validators":[],"extra":1}"#
            ),
            Err(GenesisError::Parse(_))
        ));
    }
}
