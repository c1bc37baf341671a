//! The state digest: a hash chain over every state change since genesis.
//!
//! ```text
//! digest(0) = SHA-256("chatpay/state" 0x00 ‖ 0x01 ‖ genesis_hash)
//! digest(h) = SHA-256("chatpay/state" 0x00 ‖ 0x01 ‖ digest(h−1) ‖ height(8)
//!                     ‖ burned(8) ‖ count(4) ‖ (key(33) ‖ balance(8) ‖ nonce(8))*)
//! ```
//! with the touched accounts sorted by key. The genesis hash covers the
//! initial balances, so equal digests at a height mean equal states. Cost is
//! proportional to the accounts a block touches, not to all accounts.

use chatpay_proto::{Account, Hash, PublicKey};
use sha2::{Digest, Sha256};

const STATE_DOMAIN_TAG: &[u8] = b"chatpay/state\0";

/// Digest of the state at height 0.
pub fn genesis_state_digest(genesis_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(STATE_DOMAIN_TAG);
    h.update([1]);
    h.update(genesis_hash.as_bytes());
    Hash(h.finalize().into())
}

/// Digest after a block at `height` that left `accounts` (sorted by key) in
/// the given state and the burned total at `burned`.
pub fn next_state_digest(
    previous: &Hash,
    height: u64,
    burned: u64,
    accounts: &[(PublicKey, Account)],
) -> Hash {
    debug_assert!(
        accounts.windows(2).all(|w| w[0].0 < w[1].0),
        "accounts sorted by key"
    );
    let mut h = Sha256::new();
    h.update(STATE_DOMAIN_TAG);
    h.update([1]);
    h.update(previous.as_bytes());
    h.update(height.to_be_bytes());
    h.update(burned.to_be_bytes());
    h.update(
        u32::try_from(accounts.len())
            .expect("touched accounts fit in u32")
            .to_be_bytes(),
    );
    for (key, account) in accounts {
        h.update(key.as_bytes());
        h.update(account.balance.to_be_bytes());
        h.update(account.nonce.to_be_bytes());
    }
    Hash(h.finalize().into())
}
