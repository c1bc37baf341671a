//! chatpay validator node: orders signed transfers by BFT consensus, applies
//! them to the ledger and serves wallets over gRPC.
//!
//! The wire types and canonical signing it relies on live in `chatpay-proto`.
