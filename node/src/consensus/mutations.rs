//! Switches that break one safety rule on purpose, so the simulator can
//! show that its checker catches the break (`tests/src/sim`). A fourth
//! break, safety data written without fsync, is a property of the simulated
//! disk ([`crate::storage::MemoryStore::skip_fsync_of`]), not of the node.
//!
//! The switches exist in every build, but they only act when the crate is
//! built with the `mutations` feature: without it every accessor below is
//! `false` at compile time and the code it guards is removed. Only the test
//! crate enables the feature (a workspace build that includes it, like
//! `make bench`'s, compiles it in); even then nothing but the simulator sets
//! a switch: no configuration, flag or environment variable reaches them.

/// Which safety rules to break. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Vote for a second block in a round already voted in.
    pub vote_twice: bool,
    /// Commit a block as soon as it is certified (a 1-chain rule).
    pub one_chain_commit: bool,
    /// Accept and form certificates with one signature fewer than a quorum.
    pub weak_quorum: bool,
    /// Use the old quorum formula 2⌊(n − 1)/3⌋ + 1, too small whenever
    /// n ≠ 3f + 1 (n = 6: 3 of 6, so two halves certify apart).
    pub old_quorum: bool,
    /// Execute a transfer invalid at its position (broken signature,
    /// nonce out of order) as a failed receipt that spends its tx id, the
    /// rule before invalid blocks: a leader can then censor any payment.
    pub accept_invalid_transfers: bool,
    /// Execute every block as if transfers never expired (rule 1a gone):
    /// a leader includes a transfer after its expiry.
    pub ignore_expiry: bool,
}

/// Whether this build honours [`Mutations`].
pub const ENABLED: bool = cfg!(feature = "mutations");

impl Mutations {
    /// No rule broken.
    pub const NONE: Self = Self {
        vote_twice: false,
        one_chain_commit: false,
        weak_quorum: false,
        old_quorum: false,
        accept_invalid_transfers: false,
        ignore_expiry: false,
    };

    /// [`Self::vote_twice`], if this build honours mutations.
    pub fn vote_twice(&self) -> bool {
        ENABLED && self.vote_twice
    }

    /// [`Self::one_chain_commit`], if this build honours mutations.
    pub fn one_chain_commit(&self) -> bool {
        ENABLED && self.one_chain_commit
    }

    /// [`Self::accept_invalid_transfers`], if this build honours mutations.
    pub fn accept_invalid_transfers(&self) -> bool {
        ENABLED && self.accept_invalid_transfers
    }

    /// [`Self::ignore_expiry`], if this build honours mutations.
    pub fn ignore_expiry(&self) -> bool {
        ENABLED && self.ignore_expiry
    }

    /// The number of signatures a certificate needs out of `n`:
    /// [`chatpay_proto::quorum`], or what [`Self::weak_quorum`] or
    /// [`Self::old_quorum`] make of it in a build that honours mutations.
    pub fn quorum(&self, n: usize) -> usize {
        let q = chatpay_proto::quorum(n);
        if ENABLED && self.old_quorum {
            2 * chatpay_proto::max_faulty(n) + 1
        } else if ENABLED && self.weak_quorum {
            q.saturating_sub(1).max(1)
        } else {
            q
        }
    }
}

/// Byzantine behaviours a validator can be switched to, and back, while it
/// runs: the simulator's faulty validators that must use the node's own
/// state to attack (a censoring leader builds its block from its mempool
/// and ledger; a sync-response bloater answers from its store). Inert,
/// like [`Mutations`], unless built with the `mutations` feature; clones
/// share the switches.
#[derive(Debug, Clone, Default)]
pub struct Faulty(std::sync::Arc<FaultySwitches>);

#[derive(Debug, Default)]
struct FaultySwitches {
    censor: std::sync::atomic::AtomicBool,
    bloat_sync: std::sync::atomic::AtomicBool,
    forge_state: std::sync::atomic::AtomicBool,
}

impl Faulty {
    /// When leading, include another's payment where it is invalid: after
    /// a later transfer of its sender (nonce out of order) or with a broken
    /// signature, executed as a failed receipt (the old rule) so that its
    /// tx id would be spent.
    pub fn set_censor(&self, on: bool) {
        self.0
            .censor
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Self::set_censor`] is on (and this build honours it).
    pub fn censor(&self) -> bool {
        ENABLED && self.0.censor.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answer every sync request with the real blocks under broken
    /// certificates, padded with junk blocks past the receiver's byte cap.
    pub fn set_bloat_sync(&self, on: bool) {
        self.0
            .bloat_sync
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Self::set_bloat_sync`] is on (and this build honours it).
    pub fn bloat_sync(&self) -> bool {
        ENABLED && self.0.bloat_sync.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serve state chunks with the first account's balance raised by one:
    /// a forged snapshot under a true header and proof.
    pub fn set_forge_state(&self, on: bool) {
        self.0
            .forge_state
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Self::set_forge_state`] is on (and this build honours it).
    pub fn forge_state(&self) -> bool {
        ENABLED
            && self
                .0
                .forge_state
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A censoring leader's batch ([`Faulty::censor`] on): `batch` with one
/// payment made invalid where it stands, a sender's later transfer moved
/// before its earlier one if the batch has two, else the first transfer
/// with a broken signature (its tx id unchanged). `None` when the switch is
/// off or the batch is empty.
pub fn censored(
    faulty: &Faulty,
    batch: &[chatpay_proto::SignedTransfer],
) -> Option<Vec<chatpay_proto::SignedTransfer>> {
    if !faulty.censor() || batch.is_empty() {
        return None;
    }
    let mut txs = batch.to_vec();
    for i in 0..txs.len() {
        let (sender, nonce) = (txs[i].transfer().sender(), txs[i].transfer().nonce());
        let later = (i + 1..txs.len())
            .find(|&j| txs[j].transfer().sender() == sender && txs[j].transfer().nonce() > nonce);
        if let Some(j) = later {
            txs.swap(i, j);
            return Some(txs);
        }
    }
    let mut signature = *txs[0].signature();
    signature.0[0] ^= 1;
    txs[0] = chatpay_proto::SignedTransfer::new(txs[0].transfer().clone(), signature);
    Some(txs)
}
