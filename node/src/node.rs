//! The async shell of a validator: owns the sockets, the clock and the
//! tasks, and feeds the pure consensus core.
//!
//! ```text
//!  peers' streams ─┐                                ┌─▶ peer queues (send, broadcast)
//!  timers ─────────┼─▶ events (bounded) ─▶ Core ─────┼─▶ timers
//!  fetch/sync ─────┤     one task, inputs in order   └─▶ fetch/sync calls ─▶ events
//!  admitted txs ───┘   (ledger writes are synced before the next input)
//! ```
//! One gRPC server carries the client API, the validator service, health
//! and reflection. [`run`] returns after a graceful shutdown, once the core
//! has stopped: nothing is committed after it returns.

use crate::api::{self, ApiState};
use crate::consensus::core::{Core, CoreConfig, CoreStats, Input, Output};
use crate::consensus::messages::{Block, ValidatorIndex};
use crate::consensus::mutations::Faulty;
use crate::consensus::safety::{SafetyError, SafetyRules};
use crate::genesis::Genesis;
use crate::ledger::{Ledger, LedgerError};
use crate::mempool::{Mempool, MempoolConfig};
use crate::metrics::{Metrics, TimedStore};
use crate::network::{Connector, MAX_FORWARD_TXS, Peers, SyncError, ValidatorService};
use crate::state_sync::{self, SyncConfig};
use crate::storage::Store;
use chatpay_proto::{ChainBinding, Hash, SecretKey, SignedTransfer, pb};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic_health::server::HealthReporter;

/// Inputs queued for the core task.
pub const EVENT_QUEUE: usize = 4_096;
/// Admitted transactions queued for forwarding.
pub const ADMITTED_QUEUE: usize = 16_384;
/// How long a forwarded batch waits for more transactions after its first:
/// one message per peer every few milliseconds rather than one per
/// transaction (each costs both sides far more than a transaction's bytes).
pub const FORWARD_LINGER: Duration = Duration::from_millis(5);

/// What the core task receives.
#[derive(Debug)]
pub enum CoreEvent {
    /// An input for the core.
    Input(Input),
    /// A peer asks for an uncommitted block this validator holds.
    Block(Hash, oneshot::Sender<Option<Block>>),
}

/// A validator's own settings (the chain's are in the genesis).
#[derive(Clone)]
pub struct NodeConfig {
    /// The validator's consensus key.
    pub key: SecretKey,
    /// Consensus timing and block limits.
    pub core: CoreConfig,
    /// Mempool bounds.
    pub mempool: MempoolConfig,
    /// Where the validator reads the time.
    pub clock: Clock,
    /// Receives the core's counters after each input, for a program that
    /// embeds the validator (the simulator reads who leads from it).
    pub stats: Option<watch::Sender<CoreStats>>,
    /// Byzantine behaviours the simulator switches on and off (inert
    /// unless built with the `mutations` feature; `Faulty::default()`
    /// everywhere else).
    pub faulty: Faulty,
    /// How the validator joins a running chain with an empty store.
    pub sync: SyncConfig,
}

/// Where a validator reads wall-clock time, in milliseconds since the Unix
/// epoch: block timestamps, round timers' notion of now, commit latency.
/// Real validators use [`Clock::system`]; a simulation passes its simulated
/// clock so a run does not depend on the machine's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Self(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }))
    }

    /// A clock that reads `now_ms`.
    pub fn from_fn(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now_ms))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Why a validator could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The key is not in the genesis validator set.
    #[error("key {0} is not a validator of this chain")]
    NotAValidator(String),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The safety record could not be loaded.
    #[error("safety rules: {0}")]
    Safety(#[from] SafetyError),
    /// A peer address is unusable.
    #[error("network: {0}")]
    Network(String),
    /// The gRPC server failed.
    #[error("server: {0}")]
    Server(#[from] tonic::transport::Error),
    /// The consensus task stopped on its own (storage failure).
    #[error("consensus stopped unexpectedly: {0}")]
    Consensus(String),
}

/// Runs a validator over `store` until `shutdown` completes, serving gRPC on
/// `incoming`, Prometheus metrics on `metrics_listener` (if any), and
/// reaching peers (the genesis addresses) through `connector`.
pub async fn run<I, IO, IE>(
    genesis: Arc<Genesis>,
    store: Arc<dyn Store>,
    config: NodeConfig,
    incoming: I,
    metrics_listener: Option<tokio::net::TcpListener>,
    connector: Arc<dyn Connector>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let keys = genesis.validator_keys();
    let me = keys
        .iter()
        .position(|k| k == config.key.public_key())
        .ok_or_else(|| NodeError::NotAValidator(config.key.public_key().to_string()))?;
    let me = ValidatorIndex::try_from(me).expect("validator sets are small");
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn Store> = Arc::new(TimedStore::new(store, metrics.clone()));
    let (stop_tx, stop) = watch::channel(false);
    let addresses: Vec<String> = genesis
        .validators
        .iter()
        .map(|v| v.network_address.clone())
        .collect();
    let (peers, mut tasks) = Peers::start(me, &addresses, connector.as_ref(), &stop, &metrics)
        .map_err(NodeError::Network)?;
    let peers = Arc::new(peers);
    let trust = state_sync::Trust {
        genesis_hash: genesis.hash(),
        validators: genesis.validator_keys(),
    };
    let joined = state_sync::join(&store, &genesis.header(), &trust, &peers, config.sync).await;
    let opened = joined
        .map_err(LedgerError::from)
        .and_then(|_| Ledger::open(store.clone(), genesis.clone()));
    let ledger = match opened {
        Ok(ledger) => Arc::new(ledger.with_mutations(config.core.mutations)),
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(e.into());
        }
    };
    let store_for_pruning = store.clone();
    let mut pool = Mempool::new(config.mempool, genesis.hash(), genesis.fee_per_transfer);
    // The chain's time, which expiry is judged by, from the committed head.
    pool.expire(ledger.last_header()?.timestamp_ms);
    let mempool = Arc::new(Mutex::new(pool));
    let genesis_block = genesis.header().hash();
    let chain = ChainBinding::genesis(genesis.hash());
    let safety = SafetyRules::new(config.key.clone(), me, keys, genesis_block, chain, store)?;
    let mut core = Core::new(me, config.core, ledger.clone(), mempool.clone(), safety)?;
    core.set_faulty(config.faulty.clone());

    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let (admitted_tx, admitted) = mpsc::channel(ADMITTED_QUEUE);
    let state = Arc::new(ApiState {
        ledger: ledger.clone(),
        mempool: mempool.clone(),
        admitted: Some(admitted_tx),
    });
    tracing::info!(
        validator = me,
        height = ledger.last_header()?.height,
        chain_id = %genesis.chain_id,
        "validator starting"
    );
    let validator = ValidatorService::new(events_tx.clone(), state.clone(), stop.clone())
        .with_faulty(config.faulty.clone());
    let (router, health) = api::router(state.clone(), stop.clone()).await;
    let router = router.add_service(validator.into_server());
    let shell = Shell {
        peers: peers.clone(),
        events: events_tx.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        clock: config.clock.clone(),
        stats: config.stats.clone(),
    };
    let mut core_task = tokio::spawn(drive(core, events, shell, stop.clone()));
    tasks.push(tokio::spawn(observe_commits(
        ledger.subscribe(),
        metrics.clone(),
        config.clock.clone(),
        stop.clone(),
    )));
    if let Some(listener) = metrics_listener {
        let mut stop = stop.clone();
        let (metrics, state) = (metrics.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::metrics::serve(listener, metrics, state, stopped).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }));
    }
    tasks.push(tokio::spawn(forward_admitted(
        admitted,
        events_tx.clone(),
        peers.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(prune(
        store_for_pruning,
        config.sync.retain_blocks,
        stop.clone(),
    )));

    let stop_on_shutdown = {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            api::set_health(&health, false).await;
            let _ = stop_tx.send(true);
        }
    };
    let server = router.serve_with_incoming_shutdown(incoming, stop_on_shutdown);
    tokio::pin!(server);
    let outcome = tokio::select! {
        biased;
        served = &mut server => served.map_err(NodeError::from),
        ended = &mut core_task => match ended {
            // Shutdown began: the core stopped first; let the server finish.
            Ok(()) if *stop.borrow() => server.await.map_err(NodeError::from),
            Ok(()) => Err(NodeError::Consensus("the core task returned".into())),
            Err(e) => Err(NodeError::Consensus(e.to_string())),
        },
    };
    let _ = stop_tx.send(true);
    // The server has stopped taking requests: hand what this validator
    // acknowledged and has not seen committed to the others.
    let pending: Vec<pb::SignedTransaction> = mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .transactions()
        .iter()
        .map(Into::into)
        .collect();
    if !pending.is_empty() {
        let reached = peers.hand_over(&pending).await;
        tracing::info!(
            validator = me,
            transactions = pending.len(),
            validators_reached = reached,
            "handed pending transactions to the other validators"
        );
    }
    if !core_task.is_finished() {
        let _ = (&mut core_task).await;
    }
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!(validator = me, "validator stopped");
    outcome
}

/// Runs one input through the core. Ledger and safety writes block on
/// fsync, so the worker is handed over first ([`blocking`]), except for a
/// wake-up about new transactions that the core does not want: every
/// admitted batch sends one (hundreds a second under load), and it neither
/// reads nor writes anything then, while each hand-over wakes a thread.
fn step(core: &mut Core, clock: &Clock, input: Input) -> Vec<Output> {
    let now = clock.now_ms();
    if matches!(input, Input::TransactionsAvailable) && !core.wants_transactions() {
        return core.handle(now, input);
    }
    blocking(|| core.handle(now, input))
}

/// Versions of the state tree kept whole, for proofs and snapshots at
/// heights this close to the committed head.
pub const STATE_VERSIONS_KEPT: u64 = 256;
/// Nodes deleted per pruning step, between which the task yields.
const PRUNE_BATCH: usize = 4_096;
/// How often the pruner looks for versions to drop.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Blocks forgotten per pruning step, between which the task yields (up
/// to 8 × `MAX_BLOCK_TXS` transactions read and deleted).
const PRUNE_BLOCKS_BATCH: usize = 8;

/// Deletes the state tree's nodes that no kept version needs (replaced at
/// least [`STATE_VERSIONS_KEPT`] versions below the committed head) and,
/// with `retain_blocks` > 0, the blocks older than that (their
/// transactions and history rows too), a bounded batch at a time, beside
/// the commits: it never holds the commit lock, and what a crash
/// interrupts is deleted on the next pass.
async fn prune(store: Arc<dyn Store>, retain_blocks: u64, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        let head = match store.committed_height() {
            Ok(h) => h.unwrap_or(0),
            Err(e) => {
                tracing::error!(error = %e, "reading the committed height for pruning");
                continue;
            }
        };
        if retain_blocks > 0 {
            let below = head.saturating_sub(retain_blocks).saturating_add(1);
            in_batches("committed blocks", PRUNE_BLOCKS_BATCH, &stop, || {
                store.prune_blocks(below, PRUNE_BLOCKS_BATCH)
            })
            .await;
        }
        if let Some(up_to) = head.checked_sub(STATE_VERSIONS_KEPT) {
            in_batches("state tree nodes", PRUNE_BATCH, &stop, || {
                store.prune_state_tree(up_to, PRUNE_BATCH)
            })
            .await;
        }
    }
}

/// Runs `step` (which deletes up to `batch` of `what` and says how many)
/// until a step deletes fewer or fails, yielding between steps, or until
/// `stop` turns true.
async fn in_batches(
    what: &str,
    batch: usize,
    stop: &watch::Receiver<bool>,
    mut step: impl FnMut() -> crate::storage::Result<usize>,
) {
    while !*stop.borrow() {
        match blocking(&mut step) {
            Ok(n) if n == batch => tokio::task::yield_now().await,
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(pruned = n, "{what} pruned");
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "pruning {what} failed");
                return;
            }
        }
    }
}

/// Runs blocking work (fsync, store reads, signature checks) from a task.
/// On a multi-threaded runtime the worker first hands its other tasks to
/// another thread, so they are not held up. On a current-thread runtime
/// (tests, and every simulated host) it runs in place: work handed to an OS
/// thread would finish at a moment no seed fixes, and a simulated run must
/// depend on its seed alone.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    if multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Checks (of signatures, some tens of microseconds each) run between two
/// yields of a task by [`each_yielding`].
pub(crate) const CHECKS_PER_YIELD: usize = 4;

/// Maps `items` through `f` on the calling task, yielding to the runtime
/// after every [`CHECKS_PER_YIELD`], and stops at the first error. For
/// batches of signature checks: handing each batch to another thread
/// ([`blocking`]) woke a thread several hundred times a second per peer,
/// and the yields keep one batch from holding a worker for milliseconds.
pub(crate) async fn each_yielding<T, R, E>(
    items: Vec<T>,
    mut f: impl FnMut(T) -> Result<R, E>,
) -> Result<Vec<R>, E> {
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        for item in items.by_ref().take(CHECKS_PER_YIELD) {
            out.push(f(item)?);
        }
        tokio::task::yield_now().await;
    }
    Ok(out)
}

/// What the core task drives besides the core.
struct Shell {
    peers: Arc<Peers>,
    events: mpsc::Sender<CoreEvent>,
    metrics: Arc<Metrics>,
    health: HealthReporter,
    clock: Clock,
    stats: Option<watch::Sender<CoreStats>>,
}

/// Keeps the commit metrics.
async fn observe_commits(
    mut commits: tokio::sync::broadcast::Receiver<Arc<crate::ledger::CommittedBlock>>,
    metrics: Arc<Metrics>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            next = commits.recv() => match next {
                Ok(block) => metrics.observe_commit(&block.header, clock.now_ms()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The core task: inputs one at a time, outputs carried out in order.
async fn drive(
    mut core: Core,
    mut events: mpsc::Receiver<CoreEvent>,
    shell: Shell,
    mut stop: watch::Receiver<bool>,
) {
    let mut round_timer: Option<(Instant, u64)> = None;
    let mut propose_timer: Option<(Instant, u64)> = None;
    let mut next = Some(Input::Start);
    let mut serving = true;
    loop {
        if let Some(input) = next.take() {
            for output in step(&mut core, &shell.clock, input) {
                if let Output::Misbehaviour { what, .. } = output {
                    shell.metrics.peer_misbehaved(what);
                    continue;
                }
                carry_out(
                    output,
                    &shell.peers,
                    &shell.events,
                    &mut round_timer,
                    &mut propose_timer,
                );
            }
            let mut stats = core.stats();
            stats.held.sync_response_bytes = shell.peers.largest_sync_response();
            shell.metrics.observe_core(stats);
            if let Some(watch) = &shell.stats {
                watch.send_replace(stats);
            }
            if stats.catching_up == serving && !*stop.borrow() {
                serving = !stats.catching_up;
                api::set_health(&shell.health, serving).await;
            }
        }
        let far = Instant::now() + Duration::from_secs(86_400);
        tokio::select! {
           biased;
            _ = stop.wait_for(|s| *s) => return,
            event = events.recv() => match event {
                None => return,
                Some(CoreEvent::Input(input)) => next = Some(input),
                Some(CoreEvent::Block(hash, reply)) => {
                    let _ = reply.send(core.block(&hash).cloned());
                }
            },
            () = tokio::time::sleep_until(round_timer.map_or(far, |t| t.0)), if round_timer.is_some() => {
                let (_, round) = round_timer.take().expect("guarded");
                next = Some(Input::TimerFired(round));
            }
            () = tokio::time::sleep_until(propose_timer.map_or(far, |t| t.0)), if propose_timer.is_some() => {
                let (_, round) = propose_timer.take().expect("guarded");
                next = Some(Input::ProposeTimerFired(round));
            }
        }
    }
}

fn carry_out(
    output: Output,
    peers: &Arc<Peers>,
    events: &mpsc::Sender<CoreEvent>,
    round_timer: &mut Option<(Instant, u64)>,
    propose_timer: &mut Option<(Instant, u64)>,
) {
    match output {
        Output::Broadcast(m) => peers.broadcast(&pb::ConsensusMessage::from(&m)),
        Output::Send(to, m) => peers.send(to, pb::ConsensusMessage::from(&m)),
        Output::SetTimer { round, after_ms } => {
            *round_timer = Some((Instant::now() + Duration::from_millis(after_ms), round));
        }
        Output::SetProposeTimer { round, after_ms } => {
            *propose_timer = Some((Instant::now() + Duration::from_millis(after_ms), round));
        }
        Output::Equivocation(e) => tracing::warn!(
            voter = e.first.voter,
            round = e.first.round,
            first = %e.first.block_hash,
            second = %e.second.block_hash,
            "evidence: validator signed two votes in one round"
        ),
        Output::DoubleProposal {
            proposer,
            round,
            first,
            second,
        } => tracing::warn!(
            proposer,
            round,
            %first,
            %second,
            "evidence: leader signed two proposals in one round"
        ),
        // Counted by the caller.
        Output::Misbehaviour { .. } => {}
        Output::FetchBlock { peer, hash } => {
            let (peers, events) = (peers.clone(), events.clone());
            tokio::spawn(async move {
                match peers.fetch_block(peer, hash).await {
                    Ok(block) => {
                        let input = Input::BlockFetched(peer, Box::new(block));
                        let _ = events.send(CoreEvent::Input(input)).await;
                    }
                    Err(e) => {
                        tracing::debug!(peer, %hash, error = %e, "fetch failed");
                        let input = Input::RequestFailed(peer);
                        let _ = events.send(CoreEvent::Input(input)).await;
                    }
                }
            });
        }
        Output::SyncBlocks { peer, from_height } => {
            let (peers, events) = (peers.clone(), events.clone());
            tokio::spawn(async move {
                match peers.sync_blocks(peer, from_height).await {
                    Ok(blocks) => {
                        tracing::debug!(peer, from_height, blocks = blocks.len(), "synced");
                        let input = Input::Synced(peer, blocks);
                        let _ = events.send(CoreEvent::Input(input)).await;
                    }
                    // The sync in flight reports for itself.
                    Err(SyncError::Busy) => {
                        tracing::debug!(peer, from_height, "a sync is in flight already");
                    }
                    Err(e) => {
                        tracing::debug!(peer, from_height, error = %e, "sync failed");
                        let input = Input::RequestFailed(peer);
                        let _ = events.send(CoreEvent::Input(input)).await;
                    }
                }
            });
        }
    }
}

/// Wakes the core for newly admitted transactions and forwards them to the
/// other validators in batches: what arrives within [`FORWARD_LINGER`] of
/// a batch's first transaction, up to [`MAX_FORWARD_TXS`].
async fn forward_admitted(
    mut admitted: mpsc::Receiver<SignedTransfer>,
    events: mpsc::Sender<CoreEvent>,
    peers: Arc<Peers>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::new();
    loop {
        let count = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            n = admitted.recv_many(&mut batch, MAX_FORWARD_TXS) => n,
        };
        if count == 0 {
            return;
        }
        // When the queue is full the wake-up is skipped: a waiting leader
        // still proposes at its idle interval.
        let _ = events.try_send(CoreEvent::Input(Input::TransactionsAvailable));
        let linger = tokio::time::sleep(FORWARD_LINGER);
        tokio::pin!(linger);
        while batch.len() < MAX_FORWARD_TXS {
            let room = MAX_FORWARD_TXS - batch.len();
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                () = &mut linger => break,
                n = admitted.recv_many(&mut batch, room) => if n == 0 { break },
            }
        }
        let wire: Vec<pb::SignedTransaction> = batch.drain(..).map(|t| (&t).into()).collect();
        peers.forward(&wire);
    }
}
