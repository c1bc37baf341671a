//! `chatpay-loadgen`: measures a running network end to end.
//!
//! ```text
//! prepare: testnet homes whose genesis funds M load accounts (keys derived
//!          from their index, so `run` needs no key files)
//! run:     pre-sign transfers (client signing is not measured), submit them
//!          open-loop at RATE spread over the validators (each account
//!          keeping at most WINDOW admitted and not yet committed, as a
//!          wallet pipelining payments would), follow committed blocks, report offered/committed transfers/s, submit→commit
//!          latency (p50/p90/p99/max) and its admission part (due →
//!          acknowledged, p50/p99), rejections by reason, validators' and
//!          its own CPU seconds, and the machine's signature-verification
//!          ceiling
//! ```

use chatpay_node::genesis::AccountFile;
use chatpay_node::testnet::{self, HRP, TestnetSpec};
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::{
    Address, Memo, Output, PublicKey, SecretKey, SignedTransfer, Transfer, TxId,
    memo_associated_data, memo_readers, pb, sha256,
};
use clap::{Parser, Subcommand};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(name = "chatpay-loadgen", about = "chatpay end-to-end load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write validator homes (like `chatpay-node testnet`) funding the load accounts.
    Prepare {
        /// Directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Validator ports, comma separated.
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
        /// Load accounts.
        #[arg(long, default_value_t = 200)]
        accounts: u32,
    },
    /// Drive load and report.
    Run {
        /// Validator addresses (host:port), comma separated.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Load accounts (as prepared).
        #[arg(long, default_value_t = 200)]
        accounts: u32,
        /// Offered transfers per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Seconds of load.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Memo bytes per transfer.
        #[arg(long, default_value_t = 0)]
        memo_bytes: usize,
        /// Encrypt each memo for its payee and payer, as the wallet does
        /// by default (at most 254 bytes); public memos otherwise.
        #[arg(long)]
        memo_encrypted: bool,
        /// Submit through `SubmitTransactions`, up to this many per call
        /// (what is due within 5 ms, per validator), as a gateway relaying
        /// many users' payments would; 0 submits each on its own call.
        #[arg(long, default_value_t = 0)]
        batch: usize,
        /// Transfers per account admitted and not yet seen committed; the
        /// next waits in the load generator (the validators' default
        /// `mempool.max_per_sender`, how far ahead of its committed nonce
        /// an account may submit).
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Seconds at the start whose transfers count as offered and
        /// committed but not in the latency percentiles (a run measured
        /// "after the first minute").
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// Validator process ids (for CPU seconds), comma separated.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Pay this many accounts that do not exist yet, in turn, instead
        /// of the next load account (a chain of many users: each becomes a
        /// leaf of the state tree); 0 pays the load accounts.
        #[arg(long, default_value_t = 0)]
        new_accounts: u32,
    },
}

const CHAIN_ID: &str = "chatpay-bench";
const FEE: u64 = 1_000;

/// Secret key of load account `i`.
fn account(i: u32) -> SecretKey {
    (0u32..)
        .find_map(|c| {
            let mut seed = b"chatpay-loadgen/".to_vec();
            seed.extend_from_slice(&i.to_be_bytes());
            seed.extend_from_slice(&c.to_be_bytes());
            SecretKey::from_slice(&sha256(&seed).0).ok()
        })
        .expect("a valid key")
}

fn main() -> Result<(), String> {
    let cli = Cli::parse();
    // One thread: the load generator's tasks hand work to each other all
    // the time, and across threads each hand-over is a wake-up (it took
    // about an eighth less CPU so, at a fifth of a core under overload).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match cli.command {
        Command::Prepare {
            out,
            validators,
            ports,
            accounts,
        } => prepare(&out, validators, &ports, accounts),
        Command::Run {
            nodes,
            accounts,
            rate,
            duration,
            memo_bytes,
            memo_encrypted,
            batch,
            window,
            warmup,
            pids,
            out,
            new_accounts,
        } => rt.block_on(run(Run {
            nodes,
            accounts,
            rate,
            duration,
            memo_bytes,
            memo_encrypted,
            batch,
            window,
            warmup,
            pids,
            out,
            new_accounts,
        })),
    }
}

fn prepare(
    out: &std::path::Path,
    validators: usize,
    ports: &[u16],
    accounts: u32,
) -> Result<(), String> {
    if ports.len() != validators {
        return Err(format!("{validators} validators need {validators} --ports"));
    }
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let spec = TestnetSpec {
        chain_id: CHAIN_ID.into(),
        listen: addresses.clone(),
        addresses,
        faucet_balance: 1_000_000_000_000,
        fee_per_transfer: FEE,
        accounts: (0..accounts)
            .map(|i| AccountFile {
                address: Address::new(HRP, account(i).public_key().clone())
                    .expect("valid prefix")
                    .to_string(),
                balance: 1_000_000_000_000,
            })
            .collect(),
    };
    testnet::write(out, &spec).map_err(|e| e.to_string())?;
    println!(
        "prepared {validators} validators and {accounts} funded load accounts in {}",
        out.display()
    );
    Ok(())
}

struct Run {
    nodes: Vec<String>,
    accounts: u32,
    rate: u64,
    duration: u64,
    memo_bytes: usize,
    memo_encrypted: bool,
    batch: usize,
    window: usize,
    warmup: u64,
    pids: Vec<u32>,
    out: Option<PathBuf>,
    new_accounts: u32,
}

fn cpu_seconds(pid: u32) -> f64 {
    // /proc/PID/stat fields 14 and 15: user and system time in clock ticks.
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident set size of a process in MiB (VmHWM), 0 if unknown.
fn peak_rss_mib(pid: u32) -> f64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Signature verifications per second on one core.
fn verify_rate() -> f64 {
    let key = account(0);
    let t = Transfer::new(
        chatpay_proto::Hash([1; 32]),
        key.public_key().clone(),
        1,
        FEE,
        vec![Output {
            recipient: key.public_key().clone(),
            amount: 1,
        }],
        vec![],
    )
    .expect("valid")
    .sign(&key);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        t.verify().expect("valid signature");
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Waits, up to 30 s, until the validators use less than a fifth of a core
/// between them (after an overload they still commit what their mempools
/// hold), so that the verification rate measured next is the machine's
/// rather than what the validators leave of it.
async fn until_idle(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let busy = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let mut before = busy();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = busy();
        if now - before < 0.1 {
            return;
        }
        before = now;
    }
}

/// A refusal's stable reason (`chatpay-reason`), else its gRPC code.
fn status_reason(s: &tonic::Status) -> String {
    s.metadata()
        .get("chatpay-reason")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("{:?}", s.code()), str::to_string)
}

/// First wait before submitting a refused transfer again; it doubles with
/// every refusal, up to [`RETRY_AFTER_MAX`].
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(4);
/// After the offered period, how long transfers may still be submitted and
/// commit before the run ends.
const DRAIN: Duration = Duration::from_secs(15);
/// Transfers queued for one gateway (each also holds a place in its
/// account's window); an account waits while its gateway's queue is full.
const GATEWAY_QUEUE: usize = 8_192;
/// How long a gateway collects transfers for one `SubmitTransactions` call.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

/// Whether a wallet would submit a refused transfer again, unchanged.
fn retryable(reason: &str) -> bool {
    matches!(
        reason,
        "mempool_full"
            | "sender_full"
            | "nonce_too_far_ahead"
            | "Unavailable"
            | "DeadlineExceeded"
            | "Cancelled"
            | "ResourceExhausted"
    )
}

/// When an admitted transfer fell due, and when a validator admitted it.
type Admitted = (Instant, Instant);

/// A transfer that fell due: its index, due time and wire form.
struct Due {
    k: usize,
    at: Instant,
    wire: pb::SignedTransaction,
}

/// A transfer with its place in its account's window.
type Windowed = (Due, tokio::sync::OwnedSemaphorePermit);

/// What submitting tasks share.
struct Submitter {
    /// Calls in flight (512); a transfer waits for a free one.
    limit: Arc<tokio::sync::Semaphore>,
    /// When each admitted transfer fell due, and when it was admitted.
    submitted: Arc<Mutex<Vec<Option<Admitted>>>>,
    /// Refusals (every attempt) by reason.
    rejected: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Transfers refused for good, or still refused at the deadline.
    abandoned: AtomicUsize,
    /// No attempt starts after this.
    deadline: Instant,
    /// When the load started.
    started: Instant,
    /// Offered transfers per second.
    rate: f64,
}

impl Submitter {
    /// When transfer `k` falls due: start + k / rate, whatever happened
    /// before (open loop).
    fn due(&self, k: usize) -> Instant {
        self.started + Duration::from_secs_f64(k as f64 / self.rate)
    }

    fn refused(&self, reason: &str) {
        *self
            .rejected
            .lock()
            .unwrap()
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// Transfer `due` was admitted: its window place stays taken until the
    /// follower sees it committed.
    fn admitted(&self, due: &Due, place: tokio::sync::OwnedSemaphorePermit) {
        self.submitted.lock().unwrap()[due.k] = Some((due.at, Instant::now()));
        place.forget();
    }

    /// Gives up on a transfer; its window place goes back to its account.
    fn abandon(&self, place: tokio::sync::OwnedSemaphorePermit) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        drop(place);
    }

    /// Submits `due` on its own call, retrying what a wallet would retry,
    /// with growing waits, until the deadline; `refused` attempts came
    /// before (on a batch call).
    async fn submit(
        self: Arc<Self>,
        mut client: ClientClient<tonic::transport::Channel>,
        due: Due,
        place: tokio::sync::OwnedSemaphorePermit,
        mut refused: u32,
    ) {
        loop {
            if refused > 0 {
                let wait = RETRY_AFTER
                    .saturating_mul(1 << (refused - 1).min(8))
                    .min(RETRY_AFTER_MAX);
                if Instant::now() + wait > self.deadline {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
            // A full client waits for a free call, as a client library
            // queues locally (polling would spin the load generator itself).
            let call = self.limit.clone().acquire_owned().await;
            let request = pb::SubmitTransactionRequest {
                transaction: Some(due.wire.clone()),
            };
            let answer = client.submit_transaction(request).await;
            drop(call);
            match answer {
                Ok(_) => return self.admitted(&due, place),
                Err(s) => {
                    let reason = status_reason(&s);
                    self.refused(&reason);
                    if !retryable(&reason) {
                        break;
                    }
                    refused += 1;
                }
            }
        }
        self.abandon(place);
    }

    /// Submits `items` in one `SubmitTransactions` call; what it refuses and
    /// a wallet would retry goes on [`Self::submit`].
    async fn submit_batch(
        self: Arc<Self>,
        client: ClientClient<tonic::transport::Channel>,
        items: Vec<Windowed>,
    ) {
        let results = match self.limit.clone().acquire_owned().await {
            Err(_) => Vec::new(),
            Ok(_call) => {
                let transactions = items.iter().map(|(d, _)| d.wire.clone()).collect();
                let request = pb::SubmitTransactionsRequest { transactions };
                match client.clone().submit_transactions(request).await {
                    Ok(response) => response.into_inner().results,
                    Err(s) => {
                        self.refused(&status_reason(&s));
                        Vec::new()
                    }
                }
            }
        };
        let mut retries = tokio::task::JoinSet::new();
        for (i, (due, place)) in items.into_iter().enumerate() {
            match results.get(i) {
                Some(result) if result.reason.is_empty() => self.admitted(&due, place),
                Some(result) if !retryable(&result.reason) => {
                    self.refused(&result.reason);
                    self.abandon(place);
                }
                result => {
                    if let Some(result) = result {
                        self.refused(&result.reason);
                    }
                    retries.spawn(self.clone().submit(client.clone(), due, place, 1));
                }
            }
        }
        while retries.join_next().await.is_some() {}
    }

    /// Hands one account's `transfers` (index, wire form) on in nonce
    /// order, each when it falls due and once a place in the account's
    /// window is free: a wallet does not sign further ahead than validators
    /// accept, and a refused transfer is retried rather than left as a gap
    /// that would stall the account.
    async fn account(
        self: Arc<Self>,
        transfers: Vec<(usize, pb::SignedTransaction)>,
        window: Arc<tokio::sync::Semaphore>,
        to: Route,
    ) {
        let mut calls = tokio::task::JoinSet::new();
        for (k, wire) in transfers {
            let at = self.due(k);
            tokio::time::sleep_until(at.into()).await;
            let Ok(place) = window.clone().acquire_owned().await else {
                return;
            };
            let d = Due { k, at, wire };
            match &to {
                Route::Call(client) => {
                    calls.spawn(self.clone().submit(client.clone(), d, place, 0));
                    while calls.try_join_next().is_some() {}
                }
                Route::Gateway(gateway) => {
                    if gateway.send((d, place)).await.is_err() {
                        return;
                    }
                }
            }
        }
        while calls.join_next().await.is_some() {}
    }

    /// A gateway in front of one validator: every [`BATCH_WINDOW`], what
    /// came in goes on `SubmitTransactions` calls of up to `batch`.
    async fn gateway(
        self: Arc<Self>,
        client: ClientClient<tonic::transport::Channel>,
        mut incoming: mpsc::Receiver<Windowed>,
        batch: usize,
    ) {
        let mut calls = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(BATCH_WINDOW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(first) = incoming.recv().await {
            tick.tick().await;
            let mut items = vec![first];
            while let Ok(item) = incoming.try_recv() {
                items.push(item);
            }
            while !items.is_empty() {
                let rest = items.split_off(items.len().min(batch));
                let call = std::mem::replace(&mut items, rest);
                calls.spawn(self.clone().submit_batch(client.clone(), call));
            }
            while calls.try_join_next().is_some() {}
        }
        while calls.join_next().await.is_some() {}
    }
}

/// Where an account's transfers go: a call each, or a gateway's batches.
enum Route {
    Call(ClientClient<tonic::transport::Channel>),
    Gateway(mpsc::Sender<Windowed>),
}

/// Of an `AccountEvent`, the committed transaction's id only: the load
/// generator needs nothing else, and decoding the rest would cost it more
/// than the id (prost skips the fields it does not name).
#[derive(Clone, PartialEq, prost::Message)]
struct EventTxId {
    #[prost(message, optional, tag = "1")]
    transaction: Option<CommittedTxId>,
}

/// `CommittedTransaction.tx_id` alone.
#[derive(Clone, PartialEq, prost::Message)]
struct CommittedTxId {
    #[prost(bytes = "vec", tag = "2")]
    tx_id: Vec<u8>,
}

/// `Client/SubscribeAccount`, decoding each event as [`EventTxId`].
async fn subscribe_tx_ids(
    channel: tonic::transport::Channel,
    request: pb::SubscribeAccountRequest,
) -> Result<tonic::Streaming<EventTxId>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/chatpay.v1.Client/SubscribeAccount");
    let codec = tonic_prost::ProstCodec::<pb::SubscribeAccountRequest, EventTxId>::default();
    let response = grpc
        .server_streaming(tonic::Request::new(request), path, codec)
        .await?;
    Ok(response.into_inner())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn run(r: Run) -> Result<(), String> {
    let channels: Vec<tonic::transport::Channel> = r
        .nodes
        .iter()
        .map(|n| {
            Ok(
                tonic::transport::Endpoint::from_shared(format!("http://{n}"))
                    .map_err(|e| e.to_string())?
                    .timeout(Duration::from_secs(5))
                    .connect_lazy(),
            )
        })
        .collect::<Result<_, String>>()?;
    let clients: Vec<ClientClient<tonic::transport::Channel>> =
        channels.iter().cloned().map(ClientClient::new).collect();
    // Pre-sign: account i sends to i + 1, nonces in order.
    let total = r.rate * r.duration;
    let keys: Vec<SecretKey> = (0..r.accounts).map(account).collect();
    // Continue each account's nonces (the network may have run load before),
    // from the validator furthest ahead: one still catching up would hand
    // out nonces already used, and the same transfers again.
    let mut nonces = Vec::with_capacity(keys.len());
    for k in &keys {
        let address = Address::new(HRP, k.public_key().clone())
            .expect("valid prefix")
            .to_string();
        let mut nonce = 0;
        for c in &clients {
            let r = c
                .clone()
                .get_account(pb::GetAccountRequest {
                    address: address.clone(),
                    include_proof: false,
                })
                .await
                .map_err(|e| e.message().to_string())?;
            nonce = nonce.max(r.into_inner().account.map_or(0, |a| a.nonce));
        }
        nonces.push(nonce);
    }
    let memo = vec![b'm'; r.memo_bytes];
    let status = clients[0]
        .clone()
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    let network = chatpay_proto::Hash::from_slice(&status.genesis_hash)
        .ok_or("the validator's genesis hash is not 32 bytes")?;
    // Recipients that are not load accounts (their keys follow them).
    let fresh: Vec<PublicKey> = (0..r.new_accounts)
        .map(|j| account(r.accounts.saturating_add(j)).public_key().clone())
        .collect();
    let signed: Vec<SignedTransfer> = (0..total)
        .map(|k| {
            let i = (k % u64::from(r.accounts)) as usize;
            nonces[i] += 1;
            let to = match r.new_accounts {
                0 => keys[(i + 1) % keys.len()].public_key().clone(),
                n => fresh[(k % u64::from(n)) as usize].clone(),
            };
            let outputs = vec![Output {
                recipient: to,
                amount: 1,
            }];
            let sender = keys[i].public_key().clone();
            let memo = match (r.memo_encrypted, memo.is_empty()) {
                (true, false) => Memo::Encrypted(
                    chatpay_wallet::memo::encrypt(
                        &memo,
                        &memo_readers(&sender, &outputs),
                        &memo_associated_data(&network, &sender, nonces[i]),
                        &chatpay_wallet::memo::MemoSecrets::random(),
                    )
                    .expect("a memo of at most 254 bytes"),
                ),
                _ => Memo::from(memo.clone()),
            };
            Transfer::new(network, sender, nonces[i], FEE, outputs, memo)
                .expect("valid transfer")
                .sign(&keys[i])
        })
        .collect();
    // Shared by every follower (one copy per account ran out of memory).
    let ids: Arc<HashMap<TxId, usize>> = Arc::new(
        signed
            .iter()
            .enumerate()
            .map(|(k, t)| (t.tx_id(), k))
            .collect(),
    );
    let submitted: Arc<Mutex<Vec<Option<Admitted>>>> =
        Arc::new(Mutex::new(vec![None; signed.len()]));
    let rejected: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut status = clients[0].clone();
    let start_height = status
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|e| format!("{}: {}", r.nodes[0], e.message()))?
        .into_inner()
        .committed_height;
    let cpu_before: Vec<f64> = r.pids.iter().map(|p| cpu_seconds(*p)).collect();
    // This machine's speed drifts within minutes: measure the verification
    // rate before and after the load, and take the mean.
    let verify_before = verify_rate();
    let own_cpu_before = cpu_seconds(std::process::id());

    // Each account's window: places for transfers admitted and not yet
    // seen committed.
    let windows: Arc<Vec<Arc<tokio::sync::Semaphore>>> = Arc::new(
        (0..r.accounts)
            .map(|_| Arc::new(tokio::sync::Semaphore::new(r.window.max(1))))
            .collect(),
    );
    let accounts = keys.len();
    // Follow commits through the client API's subscription: one stream per
    // account, spread over the validators (a commit is seen when the first
    // of its sender's or recipient's streams reports it; the sender's frees
    // its place in the sender's window).
    let committed: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; signed.len()]));
    let seen = Arc::new(AtomicUsize::new(0));
    let (stop_follow, stopped) = tokio::sync::watch::channel(false);
    let mut followers = tokio::task::JoinSet::new();
    for (i, k) in keys.iter().enumerate() {
        let (committed, ids, seen, windows) = (
            committed.clone(),
            ids.clone(),
            seen.clone(),
            windows.clone(),
        );
        let channel = channels[i % channels.len()].clone();
        let mut stopped = stopped.clone();
        let address = Address::new(HRP, k.public_key().clone())
            .expect("valid prefix")
            .to_string();
        followers.spawn(async move {
            let request = pb::SubscribeAccountRequest {
                address,
                from_height: start_height + 1,
            };
            let Ok(mut stream) = subscribe_tx_ids(channel, request).await else {
                return;
            };
            loop {
                let event = tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    e = stream.message() => e,
                };
                let Ok(Some(event)) = event else { return };
                let now = Instant::now();
                let Some(id) = event.transaction.and_then(|t| TxId::from_slice(&t.tx_id)) else {
                    continue;
                };
                let Some(&k) = ids.get(&id) else { continue };
                let first = {
                    let mut c = committed.lock().unwrap();
                    c[k].is_none().then(|| c[k] = Some(now)).is_some()
                };
                if first {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                if k % accounts == i {
                    // The sender's stream comes from the validator the
                    // sender submits to: once that one has committed the
                    // transfer, it accepts the next nonce.
                    windows[i].add_permits(1);
                }
            }
        });
    }

    // Each account's transfers in wire form, before the clock starts: the
    // first transfers would otherwise wait for the conversion of all.
    let mut per_account: Vec<Vec<(usize, pb::SignedTransaction)>> = vec![Vec::new(); accounts];
    for (k, t) in signed.iter().enumerate() {
        per_account[k % accounts].push((k, t.into()));
    }
    // Open loop: transfer k is due at start + k / rate, whatever happened
    // before; its latency counts from then. Its account's task submits it
    // then, or once the account's window has room (the wait counts too).
    // A refusal a wallet would retry (the validator is busy) is retried
    // with growing waits until the deadline: dropping it would leave a
    // nonce gap that stalls its account for the rest of the run.
    let started = Instant::now();
    let offered_for = Duration::from_secs_f64(total as f64 / r.rate as f64);
    let ctx = Arc::new(Submitter {
        limit: Arc::new(tokio::sync::Semaphore::new(512)),
        submitted: submitted.clone(),
        rejected: rejected.clone(),
        abandoned: AtomicUsize::new(0),
        deadline: started + offered_for + DRAIN,
        started,
        rate: r.rate as f64,
    });
    // Account i sends to the validator i % validators (so do all its
    // transfers, k ≡ i mod accounts), on its own calls or through the
    // gateway in front of that validator.
    let mut tasks = tokio::task::JoinSet::new();
    let routes: Vec<Route> = clients
        .iter()
        .map(|c| {
            if r.batch == 0 {
                return Route::Call(c.clone());
            }
            let (to, incoming) = mpsc::channel(GATEWAY_QUEUE);
            tasks.spawn(ctx.clone().gateway(c.clone(), incoming, r.batch));
            Route::Gateway(to)
        })
        .collect();
    for (i, (transfers, window)) in per_account.into_iter().zip(windows.iter()).enumerate() {
        let to = match &routes[i % routes.len()] {
            Route::Call(c) => Route::Call(c.clone()),
            Route::Gateway(g) => Route::Gateway(g.clone()),
        };
        tasks.spawn(ctx.clone().account(transfers, window.clone(), to));
    }
    drop(routes);
    // Offered over the span the transfers fell due in (submissions and
    // retries may go on).
    tokio::time::sleep_until(ctx.due(signed.len().saturating_sub(1)).into()).await;
    let offered_secs = started.elapsed().as_secs_f64();
    // Until every transfer committed or was given up, or the deadline.
    while seen.load(Ordering::Relaxed) + ctx.abandoned.load(Ordering::Relaxed) < signed.len()
        && Instant::now() < ctx.deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What still waits for a window place or a retry is not submitted.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let abandoned = ctx.abandoned.load(Ordering::Relaxed);
    let _ = stop_follow.send(true);
    while followers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    // After the load, every validator must still answer.
    let mut serving = Vec::with_capacity(clients.len());
    for c in &clients {
        let answer = c.clone().get_status(pb::GetStatusRequest {}).await;
        serving.push(answer.is_ok());
    }
    let end_height = status
        .get_status(pb::GetStatusRequest {})
        .await
        .map_or(start_height, |s| s.into_inner().committed_height);
    let blocks = end_height.saturating_sub(start_height);
    let rss: Vec<f64> = r.pids.iter().map(|p| peak_rss_mib(*p)).collect();
    let cpu: Vec<f64> = r
        .pids
        .iter()
        .zip(&cpu_before)
        .map(|(p, b)| cpu_seconds(*p) - b)
        .collect();
    let own_cpu = cpu_seconds(std::process::id()) - own_cpu_before;
    until_idle(&r.pids).await;
    let verify_after = verify_rate();
    let ceiling_per_core = (verify_before + verify_after) / 2.0;
    let (s, c) = (
        submitted.lock().unwrap().clone(),
        committed.lock().unwrap().clone(),
    );
    let measured_from = started + Duration::from_secs(r.warmup);
    let mut latencies: Vec<f64> = s
        .iter()
        .zip(&c)
        .filter_map(|(s, c)| {
            let due = s.as_ref()?.0;
            (due >= measured_from)
                .then(|| Some(c.as_ref()?.duration_since(due).as_secs_f64() * 1000.0))
                .flatten()
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    // From falling due to the validator's acknowledgement (retries and
    // waits for a free call included): the admission part of the latency.
    let mut admission: Vec<f64> = s
        .iter()
        .flatten()
        .filter(|(due, _)| *due >= measured_from)
        .map(|(due, acked)| acked.duration_since(*due).as_secs_f64() * 1000.0)
        .collect();
    admission.sort_by(f64::total_cmp);
    let committed_count = c.iter().filter(|c| c.is_some()).count();
    let admitted = s.iter().filter(|s| s.is_some()).count();
    // Neither admitted, committed nor given up when the run ended: still
    // waiting in the load generator for a window place or a retry.
    let unresolved = s.iter().zip(&c).filter(|(s, c)| s.is_none() && c.is_none());
    let waiting = unresolved.count().saturating_sub(abandoned);
    let last_commit = c
        .iter()
        .flatten()
        .max()
        .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
    let committed_rate = committed_count as f64 / last_commit.max(offered_secs);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let validators = r.nodes.len() as f64;
    let ceiling = cores * ceiling_per_core / validators;
    let result = serde_json::json!({
        "validators": r.nodes.len(),
        "accounts": r.accounts,
        "duration_s": r.duration,
        "memo_bytes": r.memo_bytes,
        "memo_encrypted": r.memo_encrypted,
        "submit_batch": r.batch,
        "window": r.window,
        "warmup_s": r.warmup,
        "offered_tps": total as f64 / offered_secs,
        "admitted": admitted,
        "committed": committed_count,
        "committed_fraction": committed_count as f64 / total as f64,
        "committed_tps": committed_rate,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0.0),
        },
        "admission_ms": {
            "p50": percentile(&admission, 0.50),
            "p99": percentile(&admission, 0.99),
        },
        "rejected": *rejected.lock().unwrap(),
        "abandoned": abandoned,
        "waiting_at_end": waiting,
        "blocks": blocks,
        "blocks_per_s": blocks as f64 / elapsed,
        "validator_cpu_s": cpu,
        "loadgen_cpu_s": own_cpu,
        "validator_peak_rss_mib": rss,
        "validators_serving_after": serving,
        "elapsed_s": elapsed,
        "verify_per_s_per_core": ceiling_per_core,
        "verify_per_s_per_core_before_after": [verify_before, verify_after],
        "cores": cores,
        "verification_ceiling_tps": ceiling,
        "efficiency": committed_rate / ceiling,
    });
    if let Some(out) = &r.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&result).expect("json"))
            .map_err(|e| e.to_string())?;
    }
    println!(
        "offered      {:>10.1} transfers/s ({total} in {offered_secs:.1} s)",
        total as f64 / offered_secs
    );
    println!(
        "committed    {:>10.1} transfers/s ({committed_count} of {total}, {:.1}%)",
        committed_rate,
        100.0 * committed_count as f64 / total as f64
    );
    println!(
        "latency ms   p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "admitted in  p50 {:.0}  p99 {:.0} ms (from falling due to acknowledged)",
        percentile(&admission, 0.5),
        percentile(&admission, 0.99),
    );
    println!(
        "rejected     {:?} (attempts; {abandoned} transfers given up: refused for good, or still refused at the end; \
         {waiting} still waiting in the load generator)",
        rejected.lock().unwrap()
    );
    println!(
        "blocks       {blocks} ({:.1}/s, {:.1} transfers each)",
        blocks as f64 / elapsed,
        committed_count as f64 / blocks.max(1) as f64
    );
    println!("cpu s        {cpu:.1?} (validators), {own_cpu:.1} (load generator)");
    println!("peak rss MiB {rss:.0?} (validators)");
    println!("serving      {serving:?} (validators, after the load)");
    println!(
        "ceiling      {ceiling:.0} transfers/s = {cores} cores x {ceiling_per_core:.0} verifications/s / {validators} validators \
         ({verify_before:.0} before the load, {verify_after:.0} after)"
    );
    println!("efficiency   {:.2}", committed_rate / ceiling);
    Ok(())
}
