//! chatpay validator node: orders signed transfers by BFT consensus, applies
//! them to the ledger and serves wallets over gRPC.
//!
//! ```text
//!  wallets ──gRPC──▶ api ──▶ mempool ──▶ (consensus) ──▶ ledger::Ledger::commit
//!                     ▲                                     │ execution (pure)
//!                     │                                     ▼
//!                     └──── subscriptions ◀──── storage (RocksDB, atomic, synced)
//! ```
//!
//! The wire types and canonical signing live in `chatpay-proto`.

pub mod api;
pub mod config;
pub mod consensus;
pub mod execution;
pub mod genesis;
pub mod ledger;
pub mod maintenance;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod node;
pub mod state_sync;
pub mod storage;
pub mod testnet;
