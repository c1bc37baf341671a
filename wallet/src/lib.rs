//! chatpay wallet: what a chat client embeds to hold a user's keys, pay
//! someone in a chat, ask for money with a link, and show incoming payments
//! once they are final, without trusting any single validator.
//!
//! ```text
//!  WalletHome (dir): chain.json (pinned chain + validator set), phrase.json,
//!                    accounts.json, keys/NAME.json (encrypted), state/NAME.json
//!        │
//!  Wallet ──▶ NodeClient (several validators, fail over) ──gRPC──▶ validators
//!        │         every commit checked with a FinalityProof:
//!        │         Merkle path ▶ header ▶ … ▶ certified child of the next round
//!        ▼
//!  pay / pay_many / pay_with / pay_request ─▶ Payment (verified receipt)
//!       memos encrypted for payer and payees (memo.rs) unless public
//!  incoming(cursor) ─▶ stream of verified IncomingPayment, resumable
//!  PaymentRequest: chatpay:<address>?amount=&memo=&label=&ref=&exp=&net= links
//!  find_request_payment / wait_request_paid ─▶ the request's verified payment
//! ```
//!
//! A quick tour (runs against a network; see `examples/chat.rs` for a whole
//! chat thread):
//!
//! ```no_run
//! # async fn demo() -> Result<(), chatpay_wallet::WalletError> {
//! use chatpay_wallet::{KdfParams, PaymentRequest, Wallet, WalletHome};
//! let (home, phrase) = WalletHome::create("/tmp/alice".as_ref(), "pw", KdfParams::default())?;
//! println!("write these words down: {}", phrase.words());
//! let wallet = Wallet::connect(home, &["http://127.0.0.1:26650".into()]).await?;
//! let me = wallet.signer("default", "pw")?;
//! let link = PaymentRequest::parse("chatpay:cp1…?amount=2.50&memo=pizza", wallet.chain())?;
//! let paid = wallet.pay_request(&me, &link, None, false).await?;
//! println!("paid in block {}", paid.height);
//! # Ok(()) }
//! ```

mod chain;
mod client;
mod error;
pub mod home;
mod incoming;
pub mod keys;
pub mod memo;
pub mod request;
mod verify;
mod wallet;

pub use chain::ChainInfo;
pub use client::{NodeClient, NodeStatus};
pub use error::WalletError;
pub use home::{AccountEntry, AccountSource, WalletHome};
pub use incoming::{Cursor, IncomingPayment};
pub use keys::{KdfParams, KeyFile, RecoveryPhrase};
pub use request::{DEFAULT_REQUEST_TTL_SECS, NETWORK_PREFIX_HEX, PaymentRequest, unix_now_secs};
pub use wallet::{
    AccountState, History, HistoryEntry, Payment, PaymentDetails, RequestPayment, Signer, Wallet,
    network_chain,
};
