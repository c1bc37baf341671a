//! Seeded simulation of whole clusters.
//!
//! The real validator ([`chatpay_node::node::run`]: consensus, mempool,
//! execution, the client and validator gRPC services) runs on turmoil's
//! simulated network and clock, several validators and a host of simulated
//! users in one thread. Everything that varies comes from the seed: the
//! fault schedule, the network's latencies and losses, the users' payments.
//! After every simulated millisecond the [`check::Checker`] reads every
//! honest validator's store and checks the invariants; a run stops at the
//! first violation. A seed fixes the whole run, down to the order in which
//! each host's tasks run: a replay prints the same trace line for line
//! (docs/testing.md).
//!
//! ```text
//!   seed ─┬─▶ schedule (faults, twins) ─▶ applied at their times
//!         └─▶ turmoil (latency, loss)    ─▶ v0 … v(n-1) [+ twin copies], users
//!                                                │ every 1 ms
//!                                                ▼
//!                                     checker: stores' blocks, safety records
//! ```

pub mod adversary;
pub mod check;
pub mod net;
pub mod schedule;

use crate::{test_genesis, validator_key};
use chatpay_node::consensus::core::CoreConfig;
use chatpay_node::consensus::core::{CoreStats, Held, MAX_ORPHANS, max_proposals_ahead};
use chatpay_node::consensus::leader::round_robin;
use chatpay_node::consensus::mutations::{Faulty, Mutations};
use chatpay_node::consensus::sync::SYNC_RECEIVE_MAX_BYTES;
use chatpay_node::genesis::Genesis;
use chatpay_node::mempool::MempoolConfig;
use chatpay_node::node::{Clock, NodeConfig, run as run_validator};
use chatpay_node::state_sync::{SyncConfig, SyncFrom};
use chatpay_node::storage::{MemoryStore, Store, columns};
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::pb::get_transaction_response::Status as TxStatus;
use chatpay_proto::{Output, PublicKey, SecretKey, SignedTransfer, Transfer, TxId, pb};
use check::{Checker, SeenCommitted};
use net::{PORT, SimConnector};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use schedule::{Fault, Schedule, Scheduled};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tonic::transport::Channel;

/// Chain id of simulated networks.
pub const CHAIN_ID: &str = "chatpay-sim";
/// How validators start: by replay from genesis.
const GENESIS_JOIN: SyncConfig = SyncConfig {
    from: SyncFrom::Genesis,
    snapshot_min_height: u64::MAX,
    retain_blocks: 0,
};
/// How a validator wiped by [`Fault::WipeToSnapshot`] restarts: from a
/// snapshot at whatever height its peers show committed.
const SNAPSHOT_JOIN: SyncConfig = SyncConfig {
    from: SyncFrom::Snapshot,
    snapshot_min_height: 1,
    retain_blocks: 0,
};
/// Fee per transfer.
pub const FEE: u64 = 10;
/// Each simulated user's opening balance.
pub const USER_BALANCE: u64 = 1_000_000_000;
/// Simulated users paying each other.
pub const USERS: usize = 6;
/// Simulated wall-clock time at the start of a run (ms since the Unix epoch).
pub const EPOCH_MS: u64 = 1_780_000_000_000;
/// Largest message latency on a healthy link.
const BASE_LATENCY_MS: u64 = 5;
/// When the final heal comes (ms of simulated time).
pub const HEAL_MS: u64 = 12_000;
/// Users stop starting payments this long after the heal.
const SUBMIT_AFTER_HEAL_MS: u64 = 4_000;
/// After the heal, the honest validators must agree on one height and every
/// payment must be committed within this bound.
pub const SETTLE_MS: u64 = 20_000;

/// Seeds from here on are run by `make sim` but not by `make test`; some of
/// them simulate 10 validators.
pub const LARGE_FROM_SEED: u64 = 100;

/// A safety rule broken on purpose, to show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Validators vote for a second block in a round.
    VoteTwice,
    /// The disk ignores the fsync of safety data (a vote leaves before its
    /// record is durable).
    SkipSafetyFsync,
    /// Blocks commit on a 1-chain (as soon as they are certified).
    OneChainCommit,
    /// Certificates of one signature fewer than a quorum are formed and
    /// accepted.
    WeakQuorum,
    /// The old quorum formula 2⌊(n − 1)/3⌋ + 1 (too small for n = 5, 6).
    OldQuorum,
    /// Validators vote for a block holding a transfer invalid at its
    /// position, which gets a failed receipt and spends its tx id (the rule
    /// before invalid blocks): a censoring leader burns payments.
    AcceptInvalidTransfers,
    /// Validators execute blocks as if transfers never expired: a leader
    /// includes one after its expiry.
    IgnoreExpiry,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 7] = [
        Mutation::VoteTwice,
        Mutation::SkipSafetyFsync,
        Mutation::OneChainCommit,
        Mutation::WeakQuorum,
        Mutation::OldQuorum,
        Mutation::AcceptInvalidTransfers,
        Mutation::IgnoreExpiry,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::VoteTwice => "vote-twice",
            Mutation::SkipSafetyFsync => "skip-safety-fsync",
            Mutation::OneChainCommit => "one-chain-commit",
            Mutation::WeakQuorum => "weak-quorum",
            Mutation::OldQuorum => "old-quorum",
            Mutation::AcceptInvalidTransfers => "accept-invalid-transfers",
            Mutation::IgnoreExpiry => "ignore-expiry",
        }
    }

    fn switches(self) -> Mutations {
        let mut m = Mutations::NONE;
        match self {
            Mutation::VoteTwice => m.vote_twice = true,
            Mutation::OneChainCommit => m.one_chain_commit = true,
            Mutation::WeakQuorum => m.weak_quorum = true,
            Mutation::OldQuorum => m.old_quorum = true,
            Mutation::AcceptInvalidTransfers => m.accept_invalid_transfers = true,
            Mutation::IgnoreExpiry => m.ignore_expiry = true,
            Mutation::SkipSafetyFsync => {}
        }
        m
    }
}

impl FromStr for Mutation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Mutation::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mutation {s:?}; one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Everything random derives from it.
    pub seed: u64,
    /// Validators (any n; f = ⌊(n − 1)/3⌋ of them may be faulty).
    pub validators: usize,
    /// A safety rule to break, if any.
    pub mutation: Option<Mutation>,
    /// Print the trace as it happens.
    pub verbose: bool,
}

impl SimConfig {
    /// The batch's choice for `seed`: 4, 5, 6 and 7 validators in turn
    /// (n = 5 and 6 are where a quorum formula made for n = 3f + 1 breaks),
    /// and 10 for every tenth seed from [`LARGE_FROM_SEED`] on (seeds only
    /// `make sim`'s larger batch runs).
    pub fn for_seed(seed: u64) -> Self {
        let validators = if seed >= LARGE_FROM_SEED && seed % 10 == 9 {
            10
        } else {
            [4, 5, 6, 7][(seed % 4) as usize]
        };
        Self {
            seed,
            validators,
            mutation: None,
            verbose: false,
        }
    }
}

/// What one run did and found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Validators.
    pub validators: usize,
    /// The schedule, as drawn.
    pub schedule: Schedule,
    /// Faults applied (the final heal excluded).
    pub faults: usize,
    /// Highest consensus round any honest validator reached.
    pub rounds: u64,
    /// Highest committed height.
    pub height: u64,
    /// Payments users saw committed.
    pub committed: usize,
    /// Simulated time run, ms.
    pub simulated_ms: u64,
    /// Faults as applied and commits as observed, with their times.
    pub trace: Vec<String>,
    /// Invariants broken (a run stops at the first step that breaks one).
    pub violations: Vec<String>,
    /// Wall-clock time the run took, ms (the one thing a seed does not fix).
    pub wall_ms: u64,
    /// The most any honest validator held at once, of each kind.
    pub held: Held,
    /// Validators that joined from a state snapshot.
    pub snapshot_joins: usize,
    /// Payments that expired unordered and were signed again.
    pub resigned: usize,
}

/// Most uncommitted blocks an honest validator may hold at once. The block
/// tree refuses more than 1 024 (a full tree halts the validator); blocks
/// of ended rounds are pruned unless certified, so only a certified chain
/// that cannot commit (rounds alternating with timeouts) grows it.
const MAX_HELD_BLOCKS: usize = 128;
/// Most rounds of votes and timeouts aggregated at once (vote and timeout
/// rounds are counted apart; each is bounded by the 1 000 rounds ahead a
/// message may be, and pruned on entering a round).
const MAX_AGGREGATED_ROUNDS: usize = 2 * 1_002;

/// The bounds an honest validator's holdings must stay within.
fn held_violation(h: &Held, n: usize) -> Option<String> {
    let checks = [
        ("uncommitted blocks", h.blocks, MAX_HELD_BLOCKS),
        ("certificates", h.certificates, MAX_HELD_BLOCKS),
        (
            "proposals held ahead",
            h.proposals_ahead,
            max_proposals_ahead(n),
        ),
        ("proposals waiting for ancestors", h.proposals_waiting, n),
        ("orphan blocks", h.orphans, MAX_ORPHANS),
        (
            "aggregated rounds",
            h.aggregated_rounds,
            MAX_AGGREGATED_ROUNDS,
        ),
        (
            "bytes of one sync response",
            h.sync_response_bytes,
            SYNC_RECEIVE_MAX_BYTES,
        ),
    ];
    checks
        .iter()
        .find(|(_, got, max)| got > max)
        .map(|(what, got, max)| format!("holds {got} {what}, more than {max}"))
}

fn held_max(a: Held, b: Held) -> Held {
    Held {
        blocks: a.blocks.max(b.blocks),
        proposals_ahead: a.proposals_ahead.max(b.proposals_ahead),
        proposals_waiting: a.proposals_waiting.max(b.proposals_waiting),
        orphans: a.orphans.max(b.orphans),
        aggregated_rounds: a.aggregated_rounds.max(b.aggregated_rounds),
        certificates: a.certificates.max(b.certificates),
        sync_response_bytes: a.sync_response_bytes.max(b.sync_response_bytes),
    }
}

impl Outcome {
    /// One line for a batch's log.
    pub fn summary(&self) -> String {
        let twins = self.schedule.twins.len();
        let verdict = match self.violations.first() {
            None => "ok".to_string(),
            Some(v) => format!("VIOLATION {v}"),
        };
        format!(
            "seed {}: {} validators, {} twins, {} faults, {} rounds, height {}, {} payments, {:.1} s simulated, held at most {} blocks, {} snapshot joins, {} expired and signed again: {verdict}",
            self.seed,
            self.validators,
            twins,
            self.faults,
            self.rounds,
            self.height,
            self.committed,
            self.simulated_ms as f64 / 1000.0,
            self.held.blocks,
            self.snapshot_joins,
            self.resigned
        )
    }
}

/// The users' record of what they submitted and saw committed.
#[derive(Default)]
struct UserLog {
    /// Payment → when it was first submitted (ms).
    submitted: BTreeMap<TxId, u64>,
    /// Payment → what a validator reported.
    committed: BTreeMap<TxId, SeenCommitted>,
    /// Payments that committed with another receipt than success (their
    /// signer meant them to succeed: a faulty leader burned them).
    failed: Vec<(TxId, i32)>,
    /// Users still running.
    running: usize,
    /// Payments signed again after they expired unordered.
    resigned: usize,
}

fn user_key(i: usize) -> SecretKey {
    let mut b = [0u8; 32];
    b[0] = 0x22;
    b[31] = u8::try_from(i + 1).expect("few users");
    SecretKey::from_slice(&b).expect("a valid scalar")
}

fn host(v: usize) -> String {
    format!("v{v}")
}

fn twin_host(v: usize) -> String {
    format!("v{v}b")
}

fn genesis(n: usize) -> Arc<Genesis> {
    let addresses: Vec<String> = (0..n).map(|i| format!("{}:{PORT}", host(i))).collect();
    let keys: Vec<SecretKey> = (0..USERS).map(user_key).collect();
    let accounts: Vec<(&PublicKey, u64)> = keys
        .iter()
        .map(|k| (k.public_key(), USER_BALANCE))
        .collect();
    test_genesis(CHAIN_ID, FEE, EPOCH_MS, &addresses, &accounts)
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One user: pays the others one payment (one time in four, two in a row,
/// nonces k and k + 1) at a time, resubmitting to the next validator until
/// it sees them committed.
async fn user(
    u: usize,
    n: usize,
    seed: u64,
    log: Arc<Mutex<UserLog>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let key = user_key(u);
    let mut rng = SmallRng::seed_from_u64(seed ^ (0x5eed_0000 + u as u64));
    let mut clients = Vec::new();
    for v in 0..n {
        let channel: Channel = SimConnector::dial(&format!("{}:{PORT}", host(v)))?;
        clients.push(ClientClient::new(channel));
    }
    let stop_submitting = HEAL_MS + SUBMIT_AFTER_HEAL_MS;
    let network = genesis(n).hash();
    // Expiries come from a stream of their own, so that the payments'
    // other draws stay as they were before transfers could expire.
    let mut expiries = SmallRng::seed_from_u64(seed ^ (0xe8b1_0000 + u as u64));
    let mut target = u % n;
    let mut nonce = 1;
    while now_ms() < stop_submitting {
        let count = if rng.random_ratio(1, 4) { 2 } else { 1 };
        let mut payments = Vec::new();
        for _ in 0..count {
            let to = (u + rng.random_range(1..USERS)) % USERS;
            let output = Output {
                recipient: user_key(to).public_key().clone(),
                amount: rng.random_range(1..1_000),
            };
            // One payment in four expires soon: under faults some do
            // before they are ordered, and the user signs the nonce again.
            let expires_at_ms = if expiries.random_ratio(1, 4) {
                EPOCH_MS + now_ms() + expiries.random_range(200..4_000)
            } else {
                0
            };
            let transfer = Transfer::new(
                network,
                key.public_key().clone(),
                nonce,
                FEE,
                vec![output],
                vec![],
            )?
            .with_expiry(expires_at_ms)
            .sign(&key);
            nonce += 1;
            log.lock()
                .expect("user log")
                .submitted
                .insert(transfer.tx_id(), now_ms());
            payments.push(Slot {
                alternatives: vec![transfer],
            });
        }
        follow(&mut clients, &mut target, payments, &key, &log).await;
    }
    Ok(())
}

/// One nonce of a user and the transfers signed for it: the payment, and,
/// if it expired unordered, the same payment signed again without expiry.
/// At most one of them commits.
struct Slot {
    alternatives: Vec<SignedTransfer>,
}

/// How long after its expiry (by the user's clock) a payment not seen
/// committed is signed again: the last block that may include it can still
/// be on its way to commit meanwhile.
const RESIGN_AFTER_EXPIRY_MS: u64 = 500;

impl Slot {
    /// The same payment without expiry, if its last transfer expired
    /// `RESIGN_AFTER_EXPIRY_MS` ago by the clock `now` (ms since epoch).
    fn resign(&self, key: &SecretKey, now: u64) -> Option<SignedTransfer> {
        let last = self.alternatives.last()?.transfer();
        let expiry = last.expires_at_ms()?;
        if now <= expiry.saturating_add(RESIGN_AFTER_EXPIRY_MS) {
            return None;
        }
        // The same fee, as a wallet signs it: a mempool that still holds
        // the expired one (its chain time has not passed the expiry) refuses
        // this one until it drops that one.
        let t = Transfer::new(
            *last.genesis_hash(),
            last.sender().clone(),
            last.nonce(),
            last.fee(),
            last.outputs().to_vec(),
            last.memo().clone(),
        )
        .ok()?;
        Some(t.sign(key))
    }
}

/// Submits `payments` (in nonce order) to `target` and asks after them for
/// 2 s, then moves on to the next validator, until each is committed. A
/// payment that expired unordered is signed again without expiry
/// ([`Slot::resign`]); the one of a slot's transfers that commits counts,
/// and the others leave the log (they can never commit: same nonce).
async fn follow(
    clients: &mut [ClientClient<Channel>],
    target: &mut usize,
    mut open: Vec<Slot>,
    key: &SecretKey,
    log: &Mutex<UserLog>,
) {
    let give_up = HEAL_MS + SETTLE_MS;
    while !open.is_empty() && now_ms() < give_up {
        for slot in &mut open {
            if let Some(again) = slot.resign(key, EPOCH_MS + now_ms()) {
                let mut log = log.lock().expect("user log");
                log.submitted.insert(again.tx_id(), now_ms());
                log.resigned += 1;
                slot.alternatives.push(again);
            }
        }
        for p in open.iter().filter_map(|s| s.alternatives.last()) {
            let submit = pb::SubmitTransactionRequest {
                transaction: Some(pb::SignedTransaction::from(p)),
            };
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                clients[*target].submit_transaction(submit),
            )
            .await;
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut still = Vec::new();
            for slot in open {
                if !settle(&mut clients[*target], *target, &slot, log).await {
                    still.push(slot);
                }
            }
            open = still;
            if open.is_empty() {
                return;
            }
        }
        *target = (*target + 1) % clients.len();
    }
}

/// Whether one of `slot`'s transfers is committed by `validator`; if so it
/// is logged as committed and the others leave the log.
async fn settle(
    client: &mut ClientClient<Channel>,
    validator: usize,
    slot: &Slot,
    log: &Mutex<UserLog>,
) -> bool {
    for p in &slot.alternatives {
        let Some((height, code)) = committed(client, p.tx_id()).await else {
            continue;
        };
        let mut log = log.lock().expect("user log");
        if code != pb::ReceiptCode::Success as i32 {
            log.failed.push((p.tx_id(), code));
        }
        log.committed
            .insert(p.tx_id(), SeenCommitted { height, validator });
        for other in slot.alternatives.iter().filter(|o| o.tx_id() != p.tx_id()) {
            log.submitted.remove(&other.tx_id());
        }
        return true;
    }
    false
}

/// (height, receipt code) of `id` if `client`'s validator reports it
/// committed.
async fn committed(client: &mut ClientClient<Channel>, id: TxId) -> Option<(u64, i32)> {
    let ask = pb::GetTransactionRequest {
        tx_id: id.0.to_vec(),
        include_proof: false,
    };
    let answer = tokio::time::timeout(Duration::from_millis(500), client.get_transaction(ask))
        .await
        .ok()?
        .ok()?;
    match answer.into_inner().status {
        Some(TxStatus::Committed(c)) => Some((c.height, c.receipt.map_or(0, |r| r.code))),
        _ => None,
    }
}

/// The network as the schedule wants it: directed links that drop.
#[derive(Default)]
struct Cuts {
    /// Host index pairs (from, to) currently cut.
    applied: BTreeSet<(usize, usize)>,
}

/// A running simulation and what it has done so far.
struct World<'a> {
    sim: turmoil::Sim<'a>,
    n: usize,
    /// Host names: validators 0..n, then twin copies.
    hosts: Vec<String>,
    /// The hosts each validator index runs on (two for a twin).
    copies: Vec<Vec<usize>>,
    stores: Vec<Arc<MemoryStore>>,
    /// Cuts that make the twins (never healed).
    twin_cuts: BTreeSet<(usize, usize)>,
    cuts: Cuts,
    /// Per host: how many active faults keep it down.
    down: Vec<u32>,
    active: Vec<(Scheduled, Fault)>,
    /// What the adversary host is told to do.
    orders: Arc<adversary::Orders>,
    /// Each validator's Byzantine switches.
    faulty: Vec<Faulty>,
    /// Hosts whose chain data was deleted, not yet told to the checker.
    wiped: Vec<usize>,
    /// Per host: how its next start joins with an empty store.
    join_from: Vec<Arc<Mutex<SyncConfig>>>,
    /// Each validator's (first host's) core counters, as last published.
    stats: Vec<tokio::sync::watch::Receiver<CoreStats>>,
    honest: Vec<usize>,
    trace: Vec<String>,
    verbose: bool,
}

impl<'a> World<'a> {
    fn log(&mut self, now: u64, line: String) {
        if self.verbose {
            println!("{now:>6} ms  {line}");
        }
        self.trace.push(format!("{now} {line}"));
    }

    fn hosts_of(&self, validators: &[usize]) -> Vec<usize> {
        validators
            .iter()
            .flat_map(|v| self.copies[*v].iter().copied())
            .collect()
    }

    fn others(&self, v: usize) -> Vec<usize> {
        (0..self.n).filter(|o| *o != v).collect()
    }

    /// Directed host pairs a fault cuts.
    fn cuts_of(&self, fault: &Fault) -> Vec<(usize, usize)> {
        let both = |a: Vec<usize>, b: Vec<usize>| {
            let mut out = Vec::new();
            for x in &a {
                for y in &b {
                    out.push((*x, *y));
                    out.push((*y, *x));
                }
            }
            out
        };
        match fault {
            Fault::Split(a, b) => both(self.hosts_of(a), self.hosts_of(b)),
            Fault::Mute(v) => {
                let mut out = Vec::new();
                for x in self.hosts_of(&[*v]) {
                    for y in self.hosts_of(&self.others(*v)) {
                        out.push((x, y));
                    }
                }
                out
            }
            Fault::OneWay(a, b) => {
                let mut out = Vec::new();
                for x in self.hosts_of(&[*a]) {
                    for y in self.hosts_of(&[*b]) {
                        out.push((x, y));
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Makes the simulated links match the twins' and the active faults' cuts.
    fn apply_cuts(&mut self) {
        let mut want = self.twin_cuts.clone();
        for (_, f) in &self.active {
            want.extend(self.cuts_of(f));
        }
        let hosts = self.hosts.len();
        for a in 0..hosts {
            for b in a + 1..hosts {
                let changed = [(a, b), (b, a)]
                    .iter()
                    .any(|p| want.contains(p) != self.cuts.applied.contains(p));
                if !changed {
                    continue;
                }
                let (ha, hb) = (self.hosts[a].clone(), self.hosts[b].clone());
                self.sim.repair(ha.as_str(), hb.as_str());
                if want.contains(&(a, b)) {
                    self.sim.partition_oneway(ha.as_str(), hb.as_str());
                }
                if want.contains(&(b, a)) {
                    self.sim.partition_oneway(hb.as_str(), ha.as_str());
                }
            }
        }
        self.cuts.applied = want;
    }

    /// Calls `f` on every link between validator `v` and the others.
    fn each_link(&mut self, v: usize, mut f: impl FnMut(&mut turmoil::Sim<'a>, &str, &str)) {
        let mine = self.hosts_of(&[v]);
        let theirs = self.hosts_of(&self.others(v));
        for a in &mine {
            for b in &theirs {
                f(&mut self.sim, &self.hosts[*a], &self.hosts[*b]);
            }
        }
    }

    /// Checks what each honest validator that is up holds against its
    /// bounds; returns the most each kind reached and the first violation.
    fn check_held(&self, so_far: Held) -> (Held, Option<String>) {
        let mut most = so_far;
        for v in self.honest.iter().filter(|v| self.down[**v] == 0) {
            let held = self.stats[*v].borrow().held;
            most = held_max(most, held);
            if let Some(e) = held_violation(&held, self.n) {
                return (most, Some(format!("v{v} {e}")));
            }
        }
        (most, None)
    }

    /// The leader of the current round as the most advanced honest
    /// validator that is up sees it; round-robin of `round` if none knows.
    fn current_leader(&self, round: u64) -> usize {
        self.honest
            .iter()
            .filter(|v| self.down[**v] == 0)
            .map(|v| *self.stats[*v].borrow())
            .max_by_key(|s| s.round)
            .and_then(|s| s.leader)
            .map_or_else(|| round_robin(round, self.n) as usize, |l| l as usize)
    }

    /// Starts `scheduled`; faults aimed at leaders aim at the current
    /// leader (round-robin of `round`, the round after the highest one
    /// voted in, if no honest validator knows it) and, for a split, the
    /// validators after it by index, who lead the next certified rounds.
    fn start(&mut self, now: u64, scheduled: Scheduled, round: u64) {
        let leading = self.current_leader(round);
        let fault = match scheduled.fault {
            Fault::IsolateLeader => Fault::Split(vec![leading], self.others(leading)),
            Fault::MuteLeader => Fault::Mute(leading),
            Fault::SplitAtLeaders => {
                // The leader and the validators after it by index: the
                // leaders of the next rounds while rounds are certified
                // (leader reputation's rotation, with nobody failed).
                let mut side: Vec<usize> =
                    (0..self.n / 2).map(|k| (leading + k) % self.n).collect();
                side.sort_unstable();
                let rest = (0..self.n).filter(|v| !side.contains(v)).collect();
                Fault::Split(side, rest)
            }
            ref f => f.clone(),
        };
        self.log(
            now,
            format!("fault: {fault} until {} ms", scheduled.until_ms),
        );
        match &fault {
            Fault::Split(..)
            | Fault::OneWay(..)
            | Fault::Mute(_)
            | Fault::IsolateLeader
            | Fault::MuteLeader
            | Fault::SplitAtLeaders => {}
            attack @ (Fault::FloodFutureProposals(_)
            | Fault::ForeignCertificates(_)
            | Fault::StrangerFlood) => {
                self.orders
                    .attacks
                    .lock()
                    .expect("orders")
                    .push(attack.clone());
            }
            Fault::Censor(v) => self.faulty[*v].set_censor(true),
            Fault::BloatSync(v) => self.faulty[*v].set_bloat_sync(true),
            Fault::Slow(v, ms) => {
                self.each_link(*v, |sim, a, b| {
                    sim.set_link_max_message_latency(a, b, Duration::from_millis(*ms))
                });
            }
            Fault::Hold(v) => {
                self.each_link(*v, |sim, a, b| sim.hold(a, b));
            }
            Fault::Lossy(v, per_mille) => {
                self.each_link(*v, |sim, a, b| {
                    sim.set_link_fail_rate(a, b, f64::from(*per_mille) / 1000.0)
                });
            }
            Fault::Crash(v) | Fault::PowerCut(v) | Fault::Wipe(v) | Fault::WipeToSnapshot(v) => {
                let h = *v;
                self.down[h] += 1;
                if self.down[h] == 1 {
                    self.sim.crash(self.hosts[h].as_str());
                }
                if matches!(fault, Fault::PowerCut(_)) {
                    let lost = self.stores[h].unsynced_writes();
                    self.stores[h].lose_unsynced();
                    self.log(now, format!("v{h} lost {lost} unsynced writes"));
                }
                if matches!(fault, Fault::Wipe(_) | Fault::WipeToSnapshot(_)) {
                    self.stores[h].unsafe_reset();
                    self.wiped.push(h);
                    self.log(now, format!("v{h} chain data deleted"));
                }
                if matches!(fault, Fault::WipeToSnapshot(_)) {
                    *self.join_from[h].lock().expect("join mode") = SNAPSHOT_JOIN;
                }
            }
        }
        self.active.push((scheduled, fault));
        self.apply_cuts();
    }

    fn end(&mut self, now: u64, index: usize) -> Option<usize> {
        let (_, fault) = self.active.remove(index);
        self.log(now, format!("end: {fault}"));
        let mut restarted = None;
        match &fault {
            Fault::Slow(v, _) => {
                self.each_link(*v, |sim, a, b| {
                    sim.set_link_max_message_latency(a, b, Duration::from_millis(BASE_LATENCY_MS))
                });
            }
            Fault::Censor(v) => self.faulty[*v].set_censor(false),
            Fault::BloatSync(v) => self.faulty[*v].set_bloat_sync(false),
            Fault::Hold(v) => {
                self.each_link(*v, |sim, a, b| sim.release(a, b));
            }
            Fault::Lossy(v, _) => {
                self.each_link(*v, |sim, a, b| sim.set_link_fail_rate(a, b, 0.0));
            }
            Fault::Crash(v) | Fault::PowerCut(v) | Fault::Wipe(v) | Fault::WipeToSnapshot(v) => {
                let h = *v;
                self.down[h] -= 1;
                if self.down[h] == 0 {
                    self.sim.bounce(self.hosts[h].as_str());
                    self.log(now, format!("v{h} restarts"));
                    restarted = Some(h);
                }
            }
            Fault::Split(..)
            | Fault::OneWay(..)
            | Fault::Mute(_)
            | Fault::IsolateLeader
            | Fault::MuteLeader
            | Fault::SplitAtLeaders => {}
            attack @ (Fault::FloodFutureProposals(_)
            | Fault::ForeignCertificates(_)
            | Fault::StrangerFlood) => {
                let mut attacks = self.orders.attacks.lock().expect("orders");
                if let Some(i) = attacks.iter().position(|a| a == attack) {
                    attacks.remove(i);
                }
            }
        }
        self.apply_cuts();
        restarted
    }
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Outcome {
    let started = std::time::Instant::now();
    let n = config.validators;
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let schedule = Schedule::draw(&mut rng, config.seed, n, HEAL_MS);
    let genesis = genesis(n);
    let supply = u128::from(USER_BALANCE) * USERS as u128;
    let mutations = config.mutation.map_or(Mutations::NONE, Mutation::switches);

    let mut hosts: Vec<String> = (0..n).map(host).collect();
    let mut copies: Vec<Vec<usize>> = (0..n).map(|v| vec![v]).collect();
    for t in &schedule.twins {
        copies[t.validator].push(hosts.len());
        hosts.push(twin_host(t.validator));
    }
    let stores: Vec<Arc<MemoryStore>> = hosts
        .iter()
        .map(|_| Arc::new(MemoryStore::new_empty()))
        .collect();
    if config.mutation == Some(Mutation::SkipSafetyFsync) {
        for s in &stores {
            s.skip_fsync_of(columns::SAFETY);
        }
    }
    let twins: BTreeSet<usize> = schedule.twins.iter().map(|t| t.validator).collect();
    let honest: Vec<usize> = (0..n).filter(|v| !twins.contains(v)).collect();

    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MS))
        .simulation_duration(Duration::from_millis(HEAL_MS + SETTLE_MS + 10_000))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(BASE_LATENCY_MS))
        .tcp_capacity(1 << 16)
        .build();

    // Each validator's Byzantine switches (its twin copy shares them).
    let faulty: Vec<Faulty> = (0..n).map(|_| Faulty::default()).collect();
    let mut stats = Vec::new();
    let mut join_froms = Vec::new();
    for (h, name) in hosts.iter().enumerate() {
        let watch = (h < n).then(|| {
            let (tx, rx) = tokio::sync::watch::channel(CoreStats::default());
            stats.push(rx);
            tx
        });
        let validator = if h < n {
            h
        } else {
            schedule.twins[h - n].validator
        };
        // Honest validators in a twin's second half reach its second copy.
        let mut connector = SimConnector::default();
        for (k, t) in schedule.twins.iter().enumerate() {
            if h < n && t.second_half.contains(&h) {
                connector.redirect.insert(
                    format!("{}:{PORT}", host(t.validator)),
                    format!("{}:{PORT}", hosts[n + k]),
                );
            }
        }
        let connector = Arc::new(connector);
        let node = NodeConfig {
            key: validator_key(validator),
            core: CoreConfig {
                base_timeout_ms: 1_000,
                max_timeout_ms: 4_000,
                idle_interval_ms: 250,
                mutations,
                ..CoreConfig::default()
            },
            mempool: MempoolConfig::default(),
            clock: Clock::from_fn(|| {
                turmoil::since_epoch()
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            stats: watch,
            faulty: faulty[validator].clone(),
            sync: GENESIS_JOIN,
        };
        let (genesis, store) = (genesis.clone(), stores[h].clone());
        let join_from = Arc::new(std::sync::Mutex::new(GENESIS_JOIN));
        join_froms.push(join_from.clone());
        sim.host(name.as_str(), move || {
            let (genesis, mut node, connector) = (genesis.clone(), node.clone(), connector.clone());
            // How this start joins: a snapshot once after a snapshot wipe.
            node.sync = std::mem::replace(&mut *join_from.lock().expect("join mode"), GENESIS_JOIN);
            let store: Arc<dyn Store> = store.clone();
            async move {
                let incoming = net::incoming().await?;
                run_validator(
                    genesis,
                    store,
                    node,
                    incoming,
                    None,
                    connector,
                    std::future::pending(),
                )
                .await?;
                Ok(())
            }
        });
    }

    let log = Arc::new(Mutex::new(UserLog {
        running: USERS,
        ..UserLog::default()
    }));
    for u in 0..USERS {
        let log = log.clone();
        let seed = config.seed;
        sim.client(format!("user{u}").as_str(), async move {
            let result = user(u, n, seed, log.clone()).await;
            log.lock().expect("user log").running -= 1;
            result
        });
    }

    let orders = Arc::new(adversary::Orders::default());
    {
        let (orders, genesis, seed) = (orders.clone(), genesis.clone(), config.seed);
        // Public chain data from an honest validator's store.
        let chain = stores[honest[0]].clone();
        sim.client("adversary", async move {
            adversary::run(n, genesis, chain, orders, seed).await
        });
    }

    // No cuts between the twins and the others: both copies reach every
    // validator (each honest one sees both proposals of a twin leader),
    // and each honest validator's own messages reach one copy.
    let twin_cuts = BTreeSet::new();

    let mut world = World {
        sim,
        n,
        down: vec![0; hosts.len()],
        hosts,
        copies,
        stores,
        twin_cuts,
        cuts: Cuts::default(),
        active: Vec::new(),
        orders: orders.clone(),
        faulty,
        wiped: Vec::new(),
        join_from: join_froms,
        stats,
        honest: honest.clone(),
        trace: Vec::new(),
        verbose: config.verbose,
    };
    world.apply_cuts();
    let mut checker = Checker::new(world.stores.len(), honest.clone(), supply);
    let mut pending: Vec<Scheduled> = schedule.faults.clone();
    pending.reverse();
    let mut faults = 0;
    let mut healed = false;
    let mut height_at_heal = 0;
    // The highest height once every payment is committed: every honest
    // validator must reach it.
    let mut target: Option<u64> = None;
    let mut now = 0;
    let mut held = Held::default();
    loop {
        // Faults due now: ends first, then starts.
        let mut i = 0;
        while i < world.active.len() {
            if world.active[i].0.until_ms <= now || (now >= HEAL_MS && !healed) {
                if world.end(now, i).is_some() {
                    // What users saw committed survives the restart.
                    let seen = log.lock().expect("user log").committed.clone();
                    checker.check_seen(now, &world.stores, &seen);
                }
            } else {
                i += 1;
            }
        }
        while pending.last().is_some_and(|s| s.at_ms <= now) {
            let s = pending.pop().expect("checked");
            world.start(now, s, checker.max_round + 1);
            faults += 1;
            for h in world.wiped.drain(..) {
                checker.wiped(h);
            }
        }
        if now >= HEAL_MS && !healed {
            healed = true;
            height_at_heal = honest.iter().map(|v| checker.height(*v)).max().unwrap_or(0);
            world.log(now, format!("final heal at height {height_at_heal}"));
        }

        orders.round.store(checker.max_round, Ordering::Relaxed);
        if let Err(e) = world.sim.step() {
            checker
                .violations
                .push(format!("t={now} ms: a validator stopped: {e}"));
        }
        now = u64::try_from(world.sim.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (most, violation) = world.check_held(held);
        held = most;
        if let Some(v) = violation {
            checker.violations.push(format!("t={now} ms: {v}"));
        }
        let seen = world.trace.len();
        checker.check(now, &world.stores, &mut world.trace);
        if world.verbose {
            for line in &world.trace[seen..] {
                println!("{line}");
            }
        }
        if !checker.violations.is_empty() {
            break;
        }
        if healed {
            let payments_done = {
                let l = log.lock().expect("user log");
                l.running == 0 && all_committed(&l)
            };
            if payments_done && target.is_none() {
                target = honest.iter().map(|v| checker.height(*v)).max();
            }
            if target.is_some_and(|t| reached(&checker, t, height_at_heal)) {
                world.log(now, "settled".into());
                break;
            }
            if now > HEAL_MS + SETTLE_MS {
                let l = log.lock().expect("user log");
                let unconfirmed = l
                    .submitted
                    .iter()
                    .filter(|(id, at)| **at >= HEAL_MS && !l.committed.contains_key(id))
                    .count();
                let heights: Vec<u64> = honest.iter().map(|v| checker.height(*v)).collect();
                checker.violations.push(format!(
                    "t={now} ms: not settled {SETTLE_MS} ms after the final heal: heights {heights:?} (at heal {height_at_heal}), {unconfirmed} payments submitted after the heal not committed"
                ));
                break;
            }
        }
    }
    let seen = log.lock().expect("user log").committed.clone();
    if checker.violations.is_empty() {
        checker.check_seen(now, &world.stores, &seen);
    }
    if let Some((id, code)) = log.lock().expect("user log").failed.first() {
        checker.violations.push(format!(
            "payment {id} committed with receipt code {code}, not the success its signer meant"
        ));
    }
    let height = honest.iter().map(|v| checker.height(*v)).max().unwrap_or(0);
    let mut trace = world.trace;
    trace.insert(
        0,
        format!("seed {} validators {n}\n{schedule}", config.seed),
    );
    Outcome {
        seed: config.seed,
        validators: n,
        schedule,
        faults,
        rounds: checker.max_round,
        height,
        committed: seen.len(),
        simulated_ms: now,
        trace,
        violations: checker.violations,
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        held,
        snapshot_joins: checker.snapshot_joins,
        resigned: log.lock().expect("user log").resigned,
    }
}

/// One run as a batch sees it: what the run's own process reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// [`Outcome::summary`].
    pub summary: String,
    /// The schedule, as printed.
    pub schedule: String,
    /// [`Outcome::rounds`].
    pub rounds: u64,
    /// [`Outcome::faults`].
    pub faults: usize,
    /// [`Outcome::simulated_ms`].
    pub simulated_ms: u64,
    /// [`Outcome::violations`].
    pub violations: Vec<String>,
    /// [`Outcome::wall_ms`].
    pub wall_ms: u64,
    /// The most encoded bytes an honest validator kept of one sync
    /// response ([`Held::sync_response_bytes`]).
    pub sync_response_bytes: u64,
}

impl Report {
    /// The report of `o`.
    pub fn of(o: &Outcome) -> Self {
        Self {
            seed: o.seed,
            summary: o.summary(),
            schedule: o.schedule.to_string(),
            rounds: o.rounds,
            faults: o.faults,
            simulated_ms: o.simulated_ms,
            violations: o.violations.clone(),
            wall_ms: o.wall_ms,
            sync_response_bytes: o.held.sync_response_bytes as u64,
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "seed": self.seed,
            "summary": self.summary,
            "schedule": self.schedule,
            "rounds": self.rounds,
            "faults": self.faults,
            "simulated_ms": self.simulated_ms,
            "violations": self.violations,
            "wall_ms": self.wall_ms,
            "sync_response_bytes": self.sync_response_bytes,
        })
        .to_string()
    }

    /// Reads [`Report::to_json`]'s line back.
    pub fn from_json(line: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let text = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        let number = |k: &str| v.get(k)?.as_u64();
        Some(Self {
            seed: number("seed")?,
            summary: text("summary")?,
            schedule: text("schedule")?,
            rounds: number("rounds")?,
            faults: usize::try_from(number("faults")?).ok()?,
            simulated_ms: number("simulated_ms")?,
            violations: v
                .get("violations")?
                .as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            wall_ms: number("wall_ms")?,
            sync_response_bytes: number("sync_response_bytes")?,
        })
    }
}

/// Runs each of `seeds` (in list order, `jobs` at a time) in a process of
/// its own, `exe --seed N --report` (the `chatpay-sim` binary), and hands
/// each report to `report` as it comes; with `stop_at_violation`, no seed
/// is started after a run found a violation. A run in its own process is
/// exactly the run `SEED=N make sim` replays: nothing a previous run left in
/// the process can change it (tokio numbers tasks from one global counter,
/// and that number decides in which order a crashed host's tasks are
/// dropped, so in which order its connections close). A process that fails
/// is reported as a violation. Returns the reports in the order they came.
pub fn run_batch(
    exe: &Path,
    seeds: &[u64],
    jobs: usize,
    mutation: Option<Mutation>,
    stop_at_violation: bool,
    report: impl Fn(&Report) + Sync,
) -> Vec<Report> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { return };
                    let r = run_child(exe, seed, mutation);
                    report(&r);
                    if stop_at_violation && !r.violations.is_empty() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    reports.lock().expect("reports").push(r);
                }
            });
        }
    });
    reports.into_inner().expect("reports")
}

/// Runs one seed in a child process and reads its report.
fn run_child(exe: &Path, seed: u64, mutation: Option<Mutation>) -> Report {
    let mut command = Command::new(exe);
    command.args(["--seed", &seed.to_string(), "--report"]);
    if let Some(m) = mutation {
        command.args(["--mutation", m.name()]);
    }
    let failed = |what: String| Report {
        seed,
        summary: format!("seed {seed}: VIOLATION {what}"),
        schedule: String::new(),
        rounds: 0,
        faults: 0,
        simulated_ms: 0,
        violations: vec![what],
        wall_ms: 0,
        sync_response_bytes: 0,
    };
    let output = match command.env_remove("SEED").output() {
        Ok(o) => o,
        Err(e) => return failed(format!("could not start {}: {e}", exe.display())),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last().and_then(Report::from_json) {
        Some(r) => r,
        None => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            failed(format!(
                "the run's process ended with {} and no report: {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

/// Every payment submitted after the heal is committed.
fn all_committed(log: &UserLog) -> bool {
    log.submitted
        .iter()
        .filter(|(_, at)| **at >= HEAL_MS)
        .all(|(id, _)| log.committed.contains_key(id))
}

/// Every honest validator committed `target`, a height above the one at the
/// heal (one block there: a second would have been reported as a fork).
fn reached(checker: &Checker, target: u64, height_at_heal: u64) -> bool {
    target > height_at_heal
        && checker.block_at(target).is_some()
        && checker
            .honest()
            .iter()
            .all(|v| checker.height(*v) >= target)
}
