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
    };

    /// [`Self::vote_twice`], if this build honours mutations.
    pub fn vote_twice(&self) -> bool {
        ENABLED && self.vote_twice
    }

    /// [`Self::one_chain_commit`], if this build honours mutations.
    pub fn one_chain_commit(&self) -> bool {
        ENABLED && self.one_chain_commit
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
