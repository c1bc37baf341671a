//! The wallet home directory: which chain, which accounts, their encrypted
//! keys, and per-account state (pending transactions, incoming cursor).
//!
//! ```text
//!  HOME/chain.json      the chain, pinned on first contact (validator set)
//!  HOME/phrase.json     encrypted recovery phrase (absent if import-only)
//!  HOME/accounts.json   names, addresses, how each key was made
//!  HOME/keys/NAME.json  encrypted secret key of each account (0600)
//!  HOME/state/NAME.json pending transactions and the incoming cursor
//!  HOME/proven.json     the highest committed height a validator proved (every 64 blocks)
//! ```

use crate::WalletError;
use crate::chain::ChainInfo;
use crate::incoming::Cursor;
use crate::keys::{KdfParams, KeyFile, RecoveryPhrase};
use chatpay_proto::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the first account.
pub const DEFAULT_ACCOUNT: &str = "default";

/// How an account's key was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccountSource {
    /// Derived from the recovery phrase at this index.
    Derived(u32),
    /// Imported raw key (not recoverable from the phrase).
    Imported,
}

/// One account of the wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountEntry {
    /// Its name.
    pub name: String,
    /// Its public key, hex.
    pub public_key: String,
    /// How its key was made.
    pub source: AccountSource,
}

impl AccountEntry {
    /// The public key.
    pub fn key(&self) -> Result<PublicKey, WalletError> {
        hex::decode(&self.public_key)
            .ok()
            .and_then(|b| PublicKey::from_slice(&b).ok())
            .ok_or_else(|| WalletError::Corrupt(format!("public key of account {}", self.name)))
    }
}

/// A transaction signed and not yet known final, kept so that it is
/// resubmitted (same tx id) instead of paid twice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingTx {
    /// Its nonce.
    pub nonce: u64,
    /// Its tx id, hex.
    pub tx_id: String,
    /// The signed transaction (protobuf), hex.
    pub signed: String,
}

/// Per-account state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountState {
    /// Signed, not yet final.
    #[serde(default)]
    pub pending: Vec<PendingTx>,
    /// Where incoming payments were last reported up to.
    #[serde(default)]
    pub incoming: Option<Cursor>,
}

/// A wallet directory.
#[derive(Debug, Clone)]
pub struct WalletHome {
    dir: PathBuf,
    params: KdfParams,
}

/// Writes a new file readable by its owner only, refusing to replace one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                WalletError::Exists(path.display().to_string())
            } else {
                WalletError::io(path, e)
            }
        })?;
    file.write_all(bytes)
        .map_err(|e| WalletError::io(path, e))?;
    file.sync_all().map_err(|e| WalletError::io(path, e))
}

/// Replaces a file atomically (write a temporary file, fsync, rename).
fn replace(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|e| WalletError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, WalletError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| WalletError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalletError::io(path, e)),
    }
}

fn check_name(name: &str) -> Result<(), WalletError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(WalletError::Invalid(format!(
            "invalid account name {name:?}: use 1-32 letters, digits, '-' or '_'"
        )))
    }
}

impl WalletHome {
    /// A new wallet with a new recovery phrase and the account `default`.
    /// Show the phrase to the person once; it is also stored encrypted.
    pub fn create(
        dir: &Path,
        password: &str,
        params: KdfParams,
    ) -> Result<(Self, RecoveryPhrase), WalletError> {
        let phrase = RecoveryPhrase::generate();
        let home = Self::restore(dir, &phrase, password, params)?;
        Ok((home, phrase))
    }

    /// A wallet restored from `phrase`: the same accounts' keys as the
    /// wallet it was written down from (account `default` is index 0).
    pub fn restore(
        dir: &Path,
        phrase: &RecoveryPhrase,
        password: &str,
        params: KdfParams,
    ) -> Result<Self, WalletError> {
        if dir.join("accounts.json").exists() {
            return Err(WalletError::Exists(format!(
                "a wallet in {}",
                dir.display()
            )));
        }
        for sub in [dir.to_path_buf(), dir.join("keys"), dir.join("state")] {
            std::fs::create_dir_all(&sub).map_err(|e| WalletError::io(&sub, e))?;
        }
        let home = Self {
            dir: dir.into(),
            params,
        };
        KeyFile::seal("phrase", phrase.words().as_bytes(), password, params)?
            .write_new(&dir.join("phrase.json"))?;
        home.save_accounts(&[])?;
        home.add_account(
            DEFAULT_ACCOUNT,
            &phrase.account_key(0),
            AccountSource::Derived(0),
            password,
        )?;
        Ok(home)
    }

    /// Opens an existing wallet.
    pub fn open(dir: &Path) -> Result<Self, WalletError> {
        if !dir.join("accounts.json").exists() {
            return Err(WalletError::NoWallet(dir.into()));
        }
        Ok(Self {
            dir: dir.into(),
            params: KdfParams::default(),
        })
    }

    /// Uses `params` for key files written from now on.
    pub fn with_kdf(mut self, params: KdfParams) -> Self {
        self.params = params;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The accounts, in creation order.
    pub fn accounts(&self) -> Result<Vec<AccountEntry>, WalletError> {
        Ok(read_json(&self.dir.join("accounts.json"))?.unwrap_or_default())
    }

    /// The account `name`.
    pub fn account(&self, name: &str) -> Result<AccountEntry, WalletError> {
        self.accounts()?
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| WalletError::NoAccount(name.into()))
    }

    fn save_accounts(&self, accounts: &[AccountEntry]) -> Result<(), WalletError> {
        let json = serde_json::to_vec_pretty(accounts).expect("accounts serialize");
        replace(&self.dir.join("accounts.json"), &json)
    }

    fn add_account(
        &self,
        name: &str,
        key: &SecretKey,
        source: AccountSource,
        password: &str,
    ) -> Result<AccountEntry, WalletError> {
        check_name(name)?;
        let mut accounts = self.accounts()?;
        if accounts.iter().any(|a| a.name == name) {
            return Err(WalletError::Exists(format!("account {name:?}")));
        }
        let entry = AccountEntry {
            name: name.into(),
            public_key: hex::encode(key.public_key().as_bytes()),
            source,
        };
        if accounts.iter().any(|a| a.public_key == entry.public_key) {
            return Err(WalletError::Exists("an account with this key".into()));
        }
        KeyFile::seal("key", &key.to_bytes(), password, self.params)?
            .write_new(&self.key_path(name))?;
        accounts.push(entry.clone());
        self.save_accounts(&accounts)?;
        Ok(entry)
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.json"))
    }

    /// A new account derived from the recovery phrase (the next index).
    pub fn new_account(&self, name: &str, password: &str) -> Result<AccountEntry, WalletError> {
        let file = KeyFile::read(&self.dir.join("phrase.json")).map_err(|_| {
            WalletError::Invalid("this wallet has no recovery phrase; import keys instead".into())
        })?;
        let words = String::from_utf8(file.open(password)?)
            .map_err(|_| WalletError::Corrupt("stored phrase is not text".into()))?;
        let phrase = RecoveryPhrase::parse(&words)?;
        let next = self
            .accounts()?
            .iter()
            .filter_map(|a| match a.source {
                AccountSource::Derived(i) => Some(i + 1),
                AccountSource::Imported => None,
            })
            .max()
            .unwrap_or(0);
        self.add_account(
            name,
            &phrase.account_key(next),
            AccountSource::Derived(next),
            password,
        )
    }

    /// Imports a raw secret key as account `name`.
    pub fn import_key(
        &self,
        name: &str,
        key: &SecretKey,
        password: &str,
    ) -> Result<AccountEntry, WalletError> {
        self.add_account(name, key, AccountSource::Imported, password)
    }

    /// The secret key of `name` (the password opens it).
    pub fn secret_key(&self, name: &str, password: &str) -> Result<SecretKey, WalletError> {
        let entry = self.account(name)?;
        let bytes = KeyFile::read(&self.key_path(name))?.open(password)?;
        let key = SecretKey::from_slice(&bytes)
            .map_err(|_| WalletError::Corrupt(format!("key of account {name}")))?;
        if hex::encode(key.public_key().as_bytes()) != entry.public_key {
            return Err(WalletError::Corrupt(format!(
                "key file of {name} holds another key"
            )));
        }
        Ok(key)
    }

    /// The pinned chain, once known.
    pub fn chain(&self) -> Result<Option<ChainInfo>, WalletError> {
        read_json(&self.dir.join("chain.json"))
    }

    /// Pins the chain (first contact).
    pub fn pin_chain(&self, chain: &ChainInfo) -> Result<(), WalletError> {
        let json = serde_json::to_vec_pretty(chain).expect("chain serializes");
        replace(&self.dir.join("chain.json"), &json)
    }

    /// Pins `chain` in place of the pinned one (its network was started
    /// over): what belonged to the old chain goes with it. Pending
    /// transfers are dropped, so none is ever submitted to the new chain,
    /// where the same chain id would make it valid again. Incoming cursors
    /// and the proven height are dropped too: the new chain starts again
    /// from block 0. Returns the chain pinned before.
    pub fn repin_chain(&self, chain: &ChainInfo) -> Result<Option<ChainInfo>, WalletError> {
        let old = self.chain()?;
        for account in self.accounts()? {
            let path = self.state_path(&account.name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| WalletError::io(&path, e))?;
            }
        }
        let proven = self.dir.join("proven.json");
        if proven.exists() {
            std::fs::remove_file(&proven).map_err(|e| WalletError::io(&proven, e))?;
        }
        self.pin_chain(chain)?;
        Ok(old)
    }

    /// Removes account `name`: its key file, its state and its entry. An
    /// imported key is gone for good; a derived one can be derived again
    /// from the recovery phrase.
    pub fn remove_account(&self, name: &str) -> Result<AccountEntry, WalletError> {
        let mut accounts = self.accounts()?;
        let at = accounts
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| WalletError::NoAccount(name.into()))?;
        let entry = accounts.remove(at);
        self.save_accounts(&accounts)?;
        for path in [self.key_path(name), self.state_path(name)] {
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| WalletError::io(&path, e))?;
            }
        }
        Ok(entry)
    }

    /// The highest committed height a validator has proven to this
    /// wallet, as last saved (0 before any).
    pub fn proven_height(&self) -> Result<u64, WalletError> {
        let saved: Option<ProvenHeight> = read_json(&self.dir.join("proven.json"))?;
        Ok(saved.map_or(0, |p| p.height))
    }

    /// Saves the highest proven height (atomically, synced).
    pub fn save_proven_height(&self, height: u64) -> Result<(), WalletError> {
        let json = serde_json::to_vec_pretty(&ProvenHeight { height }).expect("serializes");
        replace(&self.dir.join("proven.json"), &json)
    }

    /// State of account `name`.
    pub fn state(&self, name: &str) -> Result<AccountState, WalletError> {
        Ok(read_json(&self.state_path(name))?.unwrap_or_default())
    }

    /// Saves the state of account `name` (atomically, synced).
    pub fn save_state(&self, name: &str, state: &AccountState) -> Result<(), WalletError> {
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        replace(&self.state_path(name), &json)
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.dir.join("state").join(format!("{name}.json"))
    }
}

/// `proven.json`: below this height, an answer is old state.
#[derive(Debug, Serialize, Deserialize)]
struct ProvenHeight {
    height: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = crate::keys::TEST_KDF;

    #[test]
    fn the_proven_height_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = WalletHome::create(&dir.path().join("a"), "pw", FAST).unwrap();
        assert_eq!(home.proven_height().unwrap(), 0);
        home.save_proven_height(640).unwrap();
        let again = WalletHome::open(&dir.path().join("a")).unwrap();
        assert_eq!(again.proven_height().unwrap(), 640);
    }

    #[test]
    fn accounts_are_derived_in_order_and_restore_from_the_phrase() {
        let dir = tempfile::tempdir().unwrap();
        let (home, phrase) = WalletHome::create(&dir.path().join("a"), "pw", FAST).unwrap();
        let home = home.with_kdf(FAST);
        let second = home.new_account("savings", "pw").unwrap();
        assert_eq!(second.source, AccountSource::Derived(1));
        assert!(matches!(
            home.new_account("savings", "pw"),
            Err(WalletError::Exists(_))
        ));
        assert!(matches!(
            home.new_account("x", "nope"),
            Err(WalletError::WrongPassword)
        ));
        assert!(home.new_account("no spaces", "pw").is_err());
        let imported = home
            .import_key("hot", &SecretKey::generate(), "pw")
            .unwrap();
        assert_eq!(imported.source, AccountSource::Imported);
        let third = home.new_account("third", "pw").unwrap();
        assert_eq!(third.source, AccountSource::Derived(2));

        let restored = WalletHome::restore(&dir.path().join("b"), &phrase, "other", FAST).unwrap();
        let restored = restored.with_kdf(FAST);
        restored.new_account("savings", "other").unwrap();
        assert_eq!(
            restored.account("default").unwrap(),
            home.account("default").unwrap()
        );
        assert_eq!(
            restored.account("savings").unwrap().public_key,
            second.public_key
        );
        let key = home.secret_key("savings", "pw").unwrap();
        assert_eq!(hex::encode(key.public_key().as_bytes()), second.public_key);
        assert!(matches!(
            WalletHome::open(&dir.path().join("c")),
            Err(WalletError::NoWallet(_))
        ));
        assert!(WalletHome::restore(&dir.path().join("a"), &phrase, "pw", FAST).is_err());
    }
}
