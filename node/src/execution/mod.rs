//! Deterministic execution of committed blocks.
//!
//! ```text
//!  parent state (StateView) + ordered transactions ──execute──▶ ExecutionOutput
//!      receipts (one per tx), new state of touched accounts, burned total,
//!      tx_root (Merkle over (tx id, receipt)), state root and the state
//!      tree's new nodes (`state_tree`)
//! ```
//!
//! `execute` is a pure function of its inputs: no clock, no randomness, no
//! I/O besides reading the parent state. Every honest node computes the same
//! output for the same block. Rules (docs/ledger.md):
//! - each transfer is checked in order: network (genesis hash), expiry
//!   (not before the block's timestamp), signature, outputs (no zero
//!   amount), sender exists, nonce = last + 1, fee ≥ fee per transfer,
//!   Σ amounts + fee without overflow, balance ≥ Σ amounts + fee;
//! - a transfer whose network, expiry, signature, outputs, fee, sender or nonce is
//!   wrong at its position makes the whole block invalid (no vote, no
//!   commit): a leader cannot burn a payment's tx id by including it where
//!   it fails;
//! - a transfer whose sender's balance is too low there (or whose credit
//!   would overflow) gets a receipt with the reason and changes nothing;
//! - a successful one debits the sender, advances its nonce, credits every
//!   output (creating accounts) and burns the fee;
//! - supply is conserved: Σ balances + burned is the same before and after.

mod apply;
pub mod state_tree;

pub use apply::{
    BranchView, ChainRules, ExecutionError, ExecutionOutput, OnInvalid, ParentState, StateView,
    check_signature, execute, execute_as, execute_leaving_out_invalid, invalidates_block,
};
