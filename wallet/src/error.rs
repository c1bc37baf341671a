//! Errors a person can act on: each says what went wrong and what was tried.

use std::path::{Path, PathBuf};

/// Why a wallet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No wallet at the home directory.
    #[error("no wallet in {0} (create one with `chatpay init` or `chatpay restore`)")]
    NoWallet(PathBuf),
    /// A wallet or account already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// No account of that name.
    #[error("no account named {0:?} (see `chatpay accounts`)")]
    NoAccount(String),
    /// The password does not open the key file.
    #[error("wrong password")]
    WrongPassword,
    /// A recovery phrase that is not valid.
    #[error("invalid recovery phrase: {0}")]
    BadPhrase(String),
    /// A stored file that does not parse.
    #[error("corrupt wallet file: {0}")]
    Corrupt(String),
    /// An address that does not parse.
    #[error("invalid address {input:?}: {reason}")]
    BadAddress {
        /// What was given.
        input: String,
        /// Why it is refused.
        reason: String,
    },
    /// An amount that does not parse.
    #[error("invalid amount {input:?}: {reason}")]
    BadAmount {
        /// What was given.
        input: String,
        /// Why it is refused.
        reason: String,
    },
    /// A payment link that does not parse.
    #[error("invalid payment link: {0}")]
    BadRequest(String),
    /// Input that cannot be used (an account name, a password, a key, a
    /// validator URL, a transfer, a cursor): the message names it and
    /// says what would do.
    #[error("{0}")]
    Invalid(String),
    /// No validator answered.
    #[error("no validator reachable (tried {}): {last}", tried.join(", "))]
    Unreachable {
        /// URLs tried.
        tried: Vec<String>,
        /// The last error.
        last: String,
    },
    /// The validators are of another chain than the wallet's.
    #[error(
        "{node} is on chain {found}, this wallet is on {expected}; if that network was \
         started over on purpose, `chatpay repin` pins the new chain"
    )]
    WrongChain {
        /// The node.
        node: String,
        /// The wallet's genesis hash or chain id.
        expected: String,
        /// The node's.
        found: String,
    },
    /// Not enough money.
    #[error("insufficient funds: balance {balance}, this payment needs {needed}")]
    InsufficientFunds {
        /// Balance, formatted with the symbol.
        balance: String,
        /// Amounts plus fee, formatted with the symbol.
        needed: String,
    },
    /// The validator refused the transaction.
    #[error("refused by the network ({reason}): {message}")]
    Refused {
        /// Stable reason code (`chatpay-reason`).
        reason: String,
        /// The validator's message.
        message: String,
    },
    /// A validator's answer failed verification.
    #[error("could not verify the validator's answer: {0}")]
    Unverified(String),
    /// A validator answered with something its proofs contradict (or with
    /// state older than the wallet has already seen proven); the wallet
    /// asks it last from now on.
    #[error("validator {node} lied: {what}")]
    Lied {
        /// The validator's URL.
        node: String,
        /// What it got wrong.
        what: String,
    },
    /// A validator answered with true state older than the wallet has
    /// already seen proven: it is behind (or replays old answers); it is
    /// asked after the others until it proves a recent height again.
    #[error("validator {node} is behind: {what}")]
    Behind {
        /// The validator's URL.
        node: String,
        /// How far.
        what: String,
    },
    /// The payment did not become final in time (it may still: the same
    /// transaction is resubmitted, never a second one).
    #[error(
        "transaction {tx_id} not final after {seconds} s; it is kept and resubmitted on the next payment"
    )]
    Timeout {
        /// The transaction.
        tx_id: String,
        /// How long it waited.
        seconds: u64,
    },
    /// Any other error from a validator.
    #[error("validator error: {0}")]
    Node(String),
}

impl WalletError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
