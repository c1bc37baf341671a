//! The mempool: signed transfers admitted but not yet committed.
//!
//! ```text
//!  submit ─▶ admit(): dedupe by id → committed? → stateless rules → sender
//!            state (nonce window, balance) → capacity → signature (once)
//!         ─▶ pending, indexed by id, by (sender, nonce), by arrival
//!  propose ◀─ batch(): arrival order, each sender's nonces consecutive
//!  commit  ─▶ on_commit(): drop included and now-stale entries
//! ```
//!
//! Invariants: at most `max_txs` entries and `max_bytes` bytes in total and
//! `max_per_sender` per sender; at most one entry per (sender, nonce); every
//! entry's signature verified, through the validator's [`SignatureCache`]:
//! a transfer already checked in a proposal is not checked again, nor is
//! one admitted here when a proposal orders it.

mod signatures;
#[cfg(test)]
mod tests;

pub use signatures::SignatureCache;

use chatpay_proto::{Account, Hash, PublicKey, SignatureError, SignedTransfer, TxId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Limits of the mempool (node-local configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most pending transactions.
    pub max_txs: usize,
    /// Most bytes of pending transactions (signing bytes + signature).
    pub max_bytes: usize,
    /// Most pending transactions per sender; also how far ahead of its
    /// committed nonce a sender may submit.
    pub max_per_sender: usize,
    /// Most transactions held behind a nonce gap (parked), within
    /// `max_txs`. Parked ones cannot be ordered until the gap fills, so they
    /// never keep out one that can: past this bound, or when the pool is
    /// full, the oldest parked one makes room.
    pub max_parked: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 50_000,
            max_bytes: 64 << 20,
            max_per_sender: 64,
            max_parked: 5_000,
        }
    }
}

/// Outcome of a successful submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newly admitted, and can be ordered now.
    Admitted,
    /// Newly admitted behind a nonce gap: not ordered until the sender's
    /// transfers before it arrive.
    Parked,
    /// The same transaction is already pending (idempotent resubmission).
    AlreadyPending,
}

impl Admission {
    /// Newly admitted (ordered now or once the gap before it fills).
    pub fn is_new(self) -> bool {
        matches!(self, Self::Admitted | Self::Parked)
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// Already committed; it will not be executed again.
    #[error("transaction is already committed at height {height}")]
    AlreadyCommitted {
        /// Height of the block that includes it.
        height: u64,
    },
    /// Signed for another network: its genesis hash is not this chain's.
    #[error(
        "transaction is signed for the network with genesis {got}, this network's genesis \
         is {expected}"
    )]
    WrongChain {
        /// This chain's genesis hash.
        expected: Hash,
        /// The transaction's.
        got: Hash,
    },
    /// Its expiry has passed.
    #[error("transaction expired at {expires_at_ms} ms; the chain's time is {now_ms} ms")]
    Expired {
        /// The transfer's expiry (ms since the Unix epoch).
        expires_at_ms: u64,
        /// The time it was refused at.
        now_ms: u64,
    },
    /// The signature is malformed or does not verify.
    #[error("bad signature: {0}")]
    BadSignature(SignatureError),
    /// An output pays zero.
    #[error("output {index} has a zero amount")]
    ZeroAmount {
        /// Index of the output.
        index: usize,
    },
    /// The fee is below the chain's minimum.
    #[error("fee {fee} is below the minimum {min}")]
    FeeTooLow {
        /// Fee offered.
        fee: u64,
        /// Chain minimum.
        min: u64,
    },
    /// Σ amounts + fee overflows u64.
    #[error("sum of amounts and fee overflows")]
    AmountOverflow,
    /// The sender account does not exist.
    #[error("sender account does not exist (it has never received funds)")]
    UnknownSender,
    /// The nonce is already used by a committed transaction.
    #[error("nonce {nonce} is stale: the account's last committed nonce is {committed}")]
    StaleNonce {
        /// Nonce given.
        nonce: u64,
        /// Last committed nonce.
        committed: u64,
    },
    /// The nonce is too far ahead of the committed nonce.
    #[error("nonce {nonce} is too far ahead: accepted now are {first}..={last}")]
    NonceTooFarAhead {
        /// Nonce given.
        nonce: u64,
        /// Next nonce.
        first: u64,
        /// Highest nonce accepted now.
        last: u64,
    },
    /// Another transaction with this nonce is pending, and this one's fee
    /// is not high enough to replace it.
    #[error(
        "nonce {nonce} is taken by pending transaction {pending}; a transfer with this nonce \
         replaces it with a fee of at least {replace_fee}"
    )]
    NonceTaken {
        /// Nonce given.
        nonce: u64,
        /// The pending transaction's id.
        pending: TxId,
        /// The fee that would replace it.
        replace_fee: u64,
    },
    /// The balance does not cover this and the sender's earlier pending ones.
    #[error("balance {balance} does not cover {needed} (this and earlier pending transfers)")]
    InsufficientFunds {
        /// Needed in total.
        needed: u128,
        /// Committed balance.
        balance: u64,
    },
    /// The mempool is full.
    #[error("mempool is full ({count} transactions, {bytes} bytes); retry later")]
    PoolFull {
        /// Pending count.
        count: usize,
        /// Pending bytes.
        bytes: usize,
    },
    /// The sender has too many pending transactions.
    #[error("sender has {limit} pending transactions, the most allowed; wait for commits")]
    SenderFull {
        /// The per-sender limit.
        limit: usize,
    },
}

impl AdmitError {
    /// Stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AlreadyCommitted { .. } => "already_committed",
            Self::WrongChain { .. } => "wrong_chain",
            Self::Expired { .. } => "expired",
            Self::BadSignature(_) => "bad_signature",
            Self::ZeroAmount { .. } => "zero_amount",
            Self::FeeTooLow { .. } => "fee_too_low",
            Self::AmountOverflow => "amount_overflow",
            Self::UnknownSender => "unknown_sender",
            Self::StaleNonce { .. } => "stale_nonce",
            Self::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            Self::NonceTaken { .. } => "nonce_taken",
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::PoolFull { .. } => "mempool_full",
            Self::SenderFull { .. } => "sender_full",
        }
    }
}

struct Entry {
    tx: SignedTransfer,
    seq: u64,
    bytes: usize,
}

/// Pending transactions.
pub struct Mempool {
    config: MempoolConfig,
    genesis_hash: Hash,
    min_fee: u64,
    /// The last committed block's timestamp: what has expired by then is
    /// refused, and dropped if pending.
    chain_time_ms: u64,
    /// Pending transactions that expire: (expiry, arrival sequence).
    by_expiry: BTreeSet<(u64, u64)>,
    /// Looked up only, never iterated (orders are `by_arrival`'s).
    by_id: HashMap<TxId, Entry>,
    /// Each sender's pending nonces, with the tx id and debit (amounts +
    /// fee) of each, so the funds check needs no lookup per transaction.
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, (TxId, u64)>>,
    by_arrival: BTreeMap<u64, TxId>,
    /// Transactions behind a nonce gap (their sender lacks an earlier nonce
    /// above its committed one), by arrival.
    parked: BTreeMap<u64, TxId>,
    parked_bytes: usize,
    next_seq: u64,
    bytes: usize,
    signatures: Arc<SignatureCache>,
}

/// Size a transaction is accounted for, in the mempool and against a
/// block's `max_block_bytes`: signing bytes + 64-byte signature.
pub fn size_of(tx: &SignedTransfer) -> usize {
    tx.transfer().signing_bytes_len() + chatpay_proto::Signature::LEN
}

impl Mempool {
    /// An empty mempool for the chain whose genesis hashes to `genesis_hash`.
    pub fn new(config: MempoolConfig, genesis_hash: Hash, min_fee: u64) -> Self {
        Self {
            config,
            genesis_hash,
            min_fee,
            chain_time_ms: 0,
            by_expiry: BTreeSet::new(),
            by_id: HashMap::new(),
            by_sender: BTreeMap::new(),
            by_arrival: BTreeMap::new(),
            parked: BTreeMap::new(),
            parked_bytes: 0,
            next_seq: 0,
            bytes: 0,
            // As many as can be pending: what waits here is not checked
            // again when a proposal orders it.
            signatures: Arc::new(SignatureCache::new(config.max_txs)),
        }
    }

    /// The validator's cache of checked signatures (shared with execution).
    pub fn signatures(&self) -> &Arc<SignatureCache> {
        &self.signatures
    }

    /// Pending count.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Pending bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Pending transactions parked behind a nonce gap.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Every pending transaction (handed to the other validators when this
    /// one stops, so nothing it acknowledged depends on it alone).
    /// In order of arrival.
    pub fn transactions(&self) -> Vec<SignedTransfer> {
        self.by_arrival
            .values()
            .map(|id| self.by_id[id].tx.clone())
            .collect()
    }

    /// A pending transaction by id.
    pub fn get(&self, id: &TxId) -> Option<&SignedTransfer> {
        self.by_id.get(id).map(|e| &e.tx)
    }

    /// Whether `tx`, with this very signature, is pending here: admitted,
    /// so its signature was found valid.
    pub fn holds(&self, tx: &SignedTransfer) -> bool {
        self.get(&tx.tx_id())
            .is_some_and(|t| t.signature() == tx.signature())
    }

    /// Admits `tx`. `sender` is the sender's committed account and
    /// `committed_at` the height at which this tx id is committed, if it is.
    pub fn admit(
        &mut self,
        tx: SignedTransfer,
        sender: Option<Account>,
        committed_at: Option<u64>,
    ) -> Result<Admission, AdmitError> {
        let Some(fit) = self.check_cheap(&tx, sender, committed_at)? else {
            return Ok(Admission::AlreadyPending);
        };
        // Last and most expensive: everything else is cheap and read-only.
        self.signatures
            .verify(&tx)
            .map_err(AdmitError::BadSignature)?;
        let parked = fit.parked;
        self.insert(tx, fit);
        Ok(if parked {
            Admission::Parked
        } else {
            Admission::Admitted
        })
    }

    /// Every admission rule but the signature, with `admit`'s arguments:
    /// `Ok(true)` if `tx` would be admitted should its signature verify,
    /// `Ok(false)` if it is already pending. Lets a caller check the
    /// signature without holding the mempool, then [`Mempool::admit`]
    /// (which checks everything again and finds the signature cached).
    pub fn check(
        &self,
        tx: &SignedTransfer,
        sender: Option<Account>,
        committed_at: Option<u64>,
    ) -> Result<bool, AdmitError> {
        Ok(self.check_cheap(tx, sender, committed_at)?.is_some())
    }

    /// The cheap rules; `Some(fit)` when `tx` is not pending.
    fn check_cheap(
        &self,
        tx: &SignedTransfer,
        sender: Option<Account>,
        committed_at: Option<u64>,
    ) -> Result<Option<Fit>, AdmitError> {
        if self.by_id.contains_key(&tx.tx_id()) {
            return Ok(None);
        }
        if let Some(height) = committed_at {
            return Err(AdmitError::AlreadyCommitted { height });
        }
        let debit = self.check_stateless(tx)?;
        let t = tx.transfer();
        let account = sender.ok_or(AdmitError::UnknownSender)?;
        let replaces = self.check_nonce(t.sender(), t.nonce(), t.fee(), account.nonce)?;
        self.check_funds(t.sender(), t.nonce(), debit, account.balance, replaces)?;
        let bytes = size_of(tx);
        // Parked transactions give way: only orderable ones fill the pool.
        let ready_count = self.by_id.len() - self.parked.len();
        let ready_bytes = self.bytes - self.parked_bytes;
        if ready_count >= self.config.max_txs || ready_bytes + bytes > self.config.max_bytes {
            return Err(AdmitError::PoolFull {
                count: self.by_id.len(),
                bytes: self.bytes,
            });
        }
        let held = self.by_sender.get(t.sender()).map_or(0, BTreeMap::len);
        if replaces.is_none() && held >= self.config.max_per_sender {
            return Err(AdmitError::SenderFull {
                limit: self.config.max_per_sender,
            });
        }
        let parked = !self.follows_run(t.sender(), account.nonce, t.nonce());
        Ok(Some(Fit {
            bytes,
            debit,
            parked,
            replaces,
        }))
    }

    /// Whether `nonce` directly follows `sender`'s run of pending nonces
    /// from `committed + 1` (so it can be ordered once they are).
    fn follows_run(&self, sender: &PublicKey, committed: u64, nonce: u64) -> bool {
        let before = nonce - committed - 1;
        let pending = self
            .by_sender
            .get(sender)
            .map_or(0, |m| m.range(committed + 1..nonce).count());
        u64::try_from(pending).is_ok_and(|p| p == before)
    }

    /// Network, expiry, outputs and fee; returns Σ amounts + fee.
    fn check_stateless(&self, tx: &SignedTransfer) -> Result<u64, AdmitError> {
        let t = tx.transfer();
        if t.genesis_hash() != &self.genesis_hash {
            return Err(AdmitError::WrongChain {
                expected: self.genesis_hash,
                got: *t.genesis_hash(),
            });
        }
        check_expiry(tx, self.chain_time_ms)?;
        if let Some(index) = t.outputs().iter().position(|o| o.amount == 0) {
            return Err(AdmitError::ZeroAmount { index });
        }
        if t.fee() < self.min_fee {
            return Err(AdmitError::FeeTooLow {
                fee: t.fee(),
                min: self.min_fee,
            });
        }
        t.total_amount()
            .and_then(|a| a.checked_add(t.fee()))
            .ok_or(AdmitError::AmountOverflow)
    }

    /// The window of nonces; `Some(id)` when `nonce` is taken by pending
    /// transaction `id` and a fee of `fee` replaces it: at least its fee
    /// plus the chain's minimum fee, so each replacement costs the sender
    /// as much as a transfer more (a wallet's cancel or fee bump).
    fn check_nonce(
        &self,
        sender: &PublicKey,
        nonce: u64,
        fee: u64,
        committed: u64,
    ) -> Result<Option<TxId>, AdmitError> {
        if nonce <= committed {
            return Err(AdmitError::StaleNonce { nonce, committed });
        }
        let window = u64::try_from(self.config.max_per_sender).unwrap_or(u64::MAX);
        let last = committed.saturating_add(window);
        if nonce > last {
            return Err(AdmitError::NonceTooFarAhead {
                nonce,
                first: committed + 1,
                last,
            });
        }
        let Some((pending, _)) = self.by_sender.get(sender).and_then(|m| m.get(&nonce)) else {
            return Ok(None);
        };
        let old_fee = self.by_id[pending].tx.transfer().fee();
        let replace_fee = old_fee.saturating_add(self.min_fee);
        if fee >= replace_fee {
            return Ok(Some(*pending));
        }
        Err(AdmitError::NonceTaken {
            nonce,
            pending: *pending,
            replace_fee,
        })
    }

    /// The balance covers this and the sender's earlier pending transfers;
    /// for a replacement, every other pending transfer of the sender (the
    /// later ones were admitted against the debit it replaces).
    fn check_funds(
        &self,
        sender: &PublicKey,
        nonce: u64,
        debit: u64,
        balance: u64,
        replaces: Option<TxId>,
    ) -> Result<(), AdmitError> {
        let earlier: u128 = self.by_sender.get(sender).map_or(0, |m| {
            let others: Box<dyn Iterator<Item = (&u64, &(TxId, u64))>> = match replaces {
                Some(_) => Box::new(m.iter().filter(|(n, _)| **n != nonce)),
                None => Box::new(m.range(..nonce)),
            };
            others.map(|(_, (_, debit))| u128::from(*debit)).sum()
        });
        let needed = earlier + u128::from(debit);
        if needed > u128::from(balance) {
            return Err(AdmitError::InsufficientFunds { needed, balance });
        }
        Ok(())
    }

    fn insert(&mut self, tx: SignedTransfer, fit: Fit) {
        if let Some(old) = fit.replaces {
            self.remove(&old);
        }
        // Room first: the oldest parked transactions give way, past their
        // own bound or the pool's (check_cheap made sure parked ones are
        // enough to make room).
        let parked_full = |m: &Self| fit.parked && m.parked.len() >= m.config.max_parked;
        let pool_full = |m: &Self| {
            m.by_id.len() >= m.config.max_txs || m.bytes + fit.bytes > m.config.max_bytes
        };
        while parked_full(self) || pool_full(self) {
            let Some((_, oldest)) = self.parked.first_key_value() else {
                break;
            };
            let oldest = *oldest;
            self.remove(&oldest);
        }
        let id = tx.tx_id();
        let seq = self.next_seq;
        self.next_seq += 1;
        let t = tx.transfer();
        let sender = t.sender().clone();
        let nonce = t.nonce();
        self.by_sender
            .entry(sender.clone())
            .or_default()
            .insert(nonce, (id, fit.debit));
        self.by_arrival.insert(seq, id);
        if let Some(expiry) = t.expires_at_ms() {
            self.by_expiry.insert((expiry, seq));
        }
        self.bytes += fit.bytes;
        if fit.parked {
            self.parked.insert(seq, id);
            self.parked_bytes += fit.bytes;
        }
        self.by_id.insert(
            id,
            Entry {
                tx,
                seq,
                bytes: fit.bytes,
            },
        );
        if !fit.parked {
            // It may close a gap: what follows it is no longer parked.
            if let Some(after) = nonce.checked_add(1) {
                self.unpark_from(&sender, after);
            }
        }
    }

    /// Unparks `sender`'s parked transactions from nonce `from` on, as far
    /// as its nonces run consecutively: called when `from - 1` stopped being
    /// a gap (admitted, or committed). A run's first transaction that is not
    /// parked ends the walk, since none after it is: usually at once.
    fn unpark_from(&mut self, sender: &PublicKey, from: u64) {
        let Some(nonces) = self.by_sender.get(sender) else {
            return;
        };
        let mut unparked = Vec::new();
        let run = (from..=u64::MAX).zip(nonces.range(from..));
        for (next, (nonce, (id, _))) in run {
            let entry = &self.by_id[id];
            if *nonce != next || !self.parked.contains_key(&entry.seq) {
                break;
            }
            unparked.push((entry.seq, entry.bytes));
        }
        for (seq, bytes) in unparked {
            self.parked.remove(&seq);
            self.parked_bytes -= bytes;
        }
    }

    fn remove(&mut self, id: &TxId) {
        let Some(entry) = self.by_id.remove(id) else {
            return;
        };
        self.by_arrival.remove(&entry.seq);
        if let Some(expiry) = entry.tx.transfer().expires_at_ms() {
            self.by_expiry.remove(&(expiry, entry.seq));
        }
        self.bytes -= entry.bytes;
        if self.parked.remove(&entry.seq).is_some() {
            self.parked_bytes -= entry.bytes;
        }
        let t = entry.tx.transfer();
        if let Some(m) = self.by_sender.get_mut(t.sender()) {
            m.remove(&t.nonce());
            if m.is_empty() {
                self.by_sender.remove(t.sender());
            }
        }
    }

    /// Up to `max_count` transactions and `max_bytes` bytes for a proposal,
    /// oldest first, each sender's nonces consecutive from `next_nonce(sender)`
    /// and skipping `exclude` (already in uncommitted blocks).
    pub fn batch(
        &self,
        max_count: usize,
        max_bytes: usize,
        exclude: &BTreeSet<TxId>,
        next_nonce: &mut dyn FnMut(&PublicKey) -> u64,
    ) -> Vec<SignedTransfer> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut expected: BTreeMap<&PublicKey, u64> = BTreeMap::new();
        for id in self.by_arrival.values() {
            if out.len() >= max_count {
                break;
            }
            let entry = &self.by_id[id];
            let sender = entry.tx.transfer().sender();
            let next = expected.entry(sender).or_insert_with(|| next_nonce(sender));
            if entry.tx.transfer().nonce() != *next {
                continue; // a gap before it, or already taken in a sender run
            }
            // Take this sender's consecutive run from here.
            let run = self.by_sender[sender].range(*next..);
            for (nonce, (run_id, _)) in run {
                if *nonce != *next || out.len() >= max_count {
                    break;
                }
                let e = &self.by_id[run_id];
                if bytes + e.bytes > max_bytes {
                    break;
                }
                *next += 1;
                if !exclude.contains(run_id) {
                    bytes += e.bytes;
                    out.push(e.tx.clone());
                }
            }
        }
        out
    }

    /// Moves the mempool's clock to a committed block's timestamp and
    /// drops what expired before it: no block after it may include those
    /// (block timestamps never go back). The later nonces of their senders
    /// go with them: none can be ordered until the missing nonce is signed
    /// again, and kept they would hold room for nothing (a sender could
    /// fill the pool for free with transfers behind one that expires).
    /// Their clients submit them again.
    pub fn expire(&mut self, block_timestamp_ms: u64) {
        self.chain_time_ms = self.chain_time_ms.max(block_timestamp_ms);
        while let Some(&(expiry, seq)) = self.by_expiry.first() {
            if expiry >= self.chain_time_ms {
                break;
            }
            let id = self.by_arrival[&seq];
            let t = self.by_id[&id].tx.transfer();
            let (sender, nonce) = (t.sender().clone(), t.nonce());
            let doomed: Vec<TxId> = self
                .by_sender
                .get(&sender)
                .map(|m| m.range(nonce..).map(|(_, (id, _))| *id).collect())
                .unwrap_or_default();
            for id in doomed {
                self.remove(&id);
            }
        }
    }

    /// Drops what a committed block included, and every pending transaction
    /// of its senders whose nonce is now stale (`committed_nonce(sender)`).
    pub fn on_commit(
        &mut self,
        included: &[SignedTransfer],
        committed_nonce: &mut dyn FnMut(&PublicKey) -> u64,
    ) {
        for tx in included {
            self.remove(&tx.tx_id());
        }
        let senders: BTreeSet<PublicKey> = included
            .iter()
            .map(|t| t.transfer().sender().clone())
            .collect();
        for sender in senders {
            let committed = committed_nonce(&sender);
            let stale: Vec<TxId> = self
                .by_sender
                .get(&sender)
                .map(|m| m.range(..=committed).map(|(_, (id, _))| *id).collect())
                .unwrap_or_default();
            for id in stale {
                self.remove(&id);
            }
            // The block may have closed a gap with a transfer this
            // validator never held.
            if let Some(after) = committed.checked_add(1) {
                self.unpark_from(&sender, after);
            }
        }
    }
}

/// Whether `tx`'s signature is valid, checked only if this validator has
/// not found it valid before: the signature cache remembers recent checks,
/// and the mempool holds only transfers whose signature checked valid. A
/// transfer can wait in the mempool far longer than the cache remembers
/// (under overload the cache turned over in about 12 s while transfers
/// waited 40 s), and without the second question each was checked again
/// when a block ordered it. The answer is the one a fresh check gives.
pub fn signature_valid(
    signatures: &SignatureCache,
    mempool: &Mutex<Mempool>,
    tx: &SignedTransfer,
) -> bool {
    signatures.remembers(tx)
        || mempool.lock().unwrap_or_else(|e| e.into_inner()).holds(tx)
        || signatures.is_valid(tx)
}

/// Refuses a transfer whose expiry is before `now_ms`, the chain's time
/// (the last committed block's timestamp): no later block can include it.
pub fn check_expiry(tx: &SignedTransfer, now_ms: u64) -> Result<(), AdmitError> {
    match tx.transfer().expires_at_ms() {
        Some(expires_at_ms) if tx.transfer().is_expired_at(now_ms) => Err(AdmitError::Expired {
            expires_at_ms,
            now_ms,
        }),
        _ => Ok(()),
    }
}

/// How an admitted transaction fits: its accounted size and debit, and
/// whether it waits behind a nonce gap.
struct Fit {
    bytes: usize,
    debit: u64,
    parked: bool,
    /// The pending transaction of the same sender and nonce it replaces.
    replaces: Option<TxId>,
}
