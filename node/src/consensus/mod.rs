//! BFT consensus: 2-chain HotStuff (Jolteon / DiemBFT v4 family).
//!
//! ```text
//!  proposals, votes, timeouts (verified) ─▶ core ─▶ actions (send, commit, timers)
//!                                             │
//!                                   safety rules: the only signer
//!                                   (fsync of SafetyData before a signature)
//! ```
//!
//! This module holds the consensus messages and the safety rules; the
//! round-driving core and the validator network build on them.

pub mod aggregator;
pub mod block_tree;
pub mod core;
pub mod leader;
pub mod messages;
pub mod mutations;
pub mod pacemaker;
pub mod safety;
pub mod sync;
pub mod wire;
