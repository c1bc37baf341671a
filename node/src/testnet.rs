//! Writes the homes of a new network: one per validator (key, config,
//! genesis) and a funded faucet key, for a local or multi-host network.
//!
//! ```text
//!  OUT/genesis.json      shared genesis (validators, faucet balance)
//!  OUT/faucet.key        secret key of the funded faucet account (0600)
//!  OUT/node0/            validator.key (0600), config.toml, genesis.json
//!  OUT/node1/ …
//! ```

use crate::config::{CONFIG_FILE, Config, ConfigError, write_key};
use crate::genesis::{AccountFile, Genesis, GenesisFile, ValidatorFile};
use chatpay_proto::{Address, SecretKey};
use std::path::{Path, PathBuf};

/// What a new network is made of.
#[derive(Debug, Clone)]
pub struct TestnetSpec {
    /// Chain id.
    pub chain_id: String,
    /// Per validator: the address peers and clients reach it at (genesis).
    pub addresses: Vec<String>,
    /// Per validator: the address it binds.
    pub listen: Vec<String>,
    /// Faucet balance in base units.
    pub faucet_balance: u64,
    /// Fee per transfer in base units.
    pub fee_per_transfer: u64,
    /// More funded accounts (load tests), besides the faucet.
    pub accounts: Vec<AccountFile>,
}

/// A written network.
#[derive(Debug, Clone)]
pub struct Testnet {
    /// The genesis.
    pub genesis: Genesis,
    /// Validator homes, in index order.
    pub homes: Vec<PathBuf>,
    /// Faucet key file.
    pub faucet_key: PathBuf,
    /// Faucet address.
    pub faucet_address: Address,
}

/// The metrics address of a validator listening on `listen`: the same
/// host, port + 10 (26650 → 26660), or none if that overflows.
fn metrics_address(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(mut a) => match a.port().checked_add(10) {
            Some(p) => {
                a.set_port(p);
                a.to_string()
            }
            None => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Address prefix of generated networks.
pub const HRP: &str = "cp";

/// Writes a new network under `out` (created; must not exist yet or be
/// empty, so no key is ever overwritten).
pub fn write(out: &Path, spec: &TestnetSpec) -> Result<Testnet, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ConfigError::Invalid {
            field: "out",
            reason: format!("{} exists and is not empty", out.display()),
        });
    }
    if spec.addresses.len() != spec.listen.len() || spec.addresses.is_empty() {
        return Err(ConfigError::Invalid {
            field: "validators",
            reason: "one address and one listen address per validator".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let faucet = SecretKey::generate();
    let faucet_key = out.join("faucet.key");
    write_key(&faucet_key, &faucet)?;
    let faucet_address =
        Address::new(HRP, faucet.public_key().clone()).expect("the prefix is valid");
    let keys: Vec<SecretKey> = spec
        .addresses
        .iter()
        .map(|_| SecretKey::generate())
        .collect();
    let file = GenesisFile {
        chain_id: spec.chain_id.clone(),
        hrp: HRP.into(),
        decimals: 6,
        symbol: "CPY".into(),
        fee_per_transfer: spec.fee_per_transfer,
        genesis_time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
        validators: keys
            .iter()
            .zip(&spec.addresses)
            .map(|(k, a)| ValidatorFile {
                public_key: hex::encode(k.public_key().as_bytes()),
                network_address: a.clone(),
            })
            .collect(),
        accounts: std::iter::once(AccountFile {
            address: faucet_address.to_string(),
            balance: spec.faucet_balance,
        })
        .chain(spec.accounts.iter().cloned())
        .collect(),
    };
    let genesis = Genesis::from_file(file.clone()).map_err(|e| ConfigError::Invalid {
        field: "genesis",
        reason: e.to_string(),
    })?;
    let json = serde_json::to_string_pretty(&file).expect("genesis serializes") + "\n";
    let shared = out.join("genesis.json");
    std::fs::write(&shared, &json).map_err(io(&shared))?;
    let mut homes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let home = out.join(format!("node{i}"));
        std::fs::create_dir_all(&home).map_err(io(&home))?;
        write_key(&home.join("validator.key"), key)?;
        let g = home.join("genesis.json");
        std::fs::write(&g, &json).map_err(io(&g))?;
        let mut config = Config::new(spec.listen[i].clone());
        config.metrics_listen = metrics_address(&spec.listen[i]);
        let c = home.join(CONFIG_FILE);
        std::fs::write(&c, config.to_toml()).map_err(io(&c))?;
        homes.push(home);
    }
    Ok(Testnet {
        genesis,
        homes,
        faucet_key,
        faucet_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::read_key;

    #[test]
    fn homes_load_and_agree_on_one_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("net");
        let spec = TestnetSpec {
            chain_id: "chatpay-t".into(),
            addresses: (0..4).map(|i| format!("127.0.0.1:{}", 7000 + i)).collect(),
            listen: (0..4).map(|i| format!("127.0.0.1:{}", 7000 + i)).collect(),
            faucet_balance: 1_000,
            fee_per_transfer: 1,
            accounts: vec![],
        };
        let net = write(&out, &spec).unwrap();
        for (i, home) in net.homes.iter().enumerate() {
            let config = Config::load(home, []).unwrap();
            let genesis = Genesis::load(&home.join(&config.genesis_file)).unwrap();
            assert_eq!(genesis.hash(), net.genesis.hash());
            let key = read_key(&home.join(&config.key_file)).unwrap();
            assert_eq!(key.public_key(), &genesis.validators[i].public_key);
        }
        let faucet = read_key(&net.faucet_key).unwrap();
        assert_eq!(net.genesis.accounts[faucet.public_key()], 1_000);
        // Never over an existing network.
        assert!(write(&out, &spec).is_err());
    }
}
