//! Prometheus metrics of a validator, served at `/metrics`.
//!
//! ```text
//!  core step ──stats()──▶ round, last voted round, timeouts, QCs, TCs, catching up
//!  ledger commits ──────▶ committed height, transfers, commit latency
//!  TimedStore ──────────▶ store write latency
//!  peer streams ────────▶ peer connection state
//!  scrape ──────────────▶ mempool size (read then)
//! ```

use crate::api::ApiState;
use crate::consensus::core::CoreStats;
use crate::storage::{
    BlockCommit, HistoryEntry, StateEntry, Store, StoredBlock, TxPosition, TxRecord,
};
use chatpay_proto::{Account, BlockHeader, Hash, PublicKey, QuorumCertificate, TxId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Label of per-peer series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// Validator index of the peer.
    pub peer: u32,
}

/// Label of the misbehaviour counter: what was wrong, a fixed set of
/// strings chosen by the code (never a value a peer chose).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MisbehaviourLabel {
    /// What was wrong.
    pub what: String,
}

/// Every series a validator exports (names prefixed `chatpay_`).
pub struct Metrics {
    registry: Registry,
    round: Gauge,
    last_voted_round: Gauge,
    timeouts: Counter,
    qcs_formed: Counter,
    tcs_formed: Counter,
    catching_up: Gauge,
    leader: Gauge,
    committed_height: Gauge,
    transfers_committed: Counter,
    commit_latency: Histogram,
    mempool_txs: Gauge,
    mempool_bytes: Gauge,
    mempool_parked: Gauge,
    store_write_seconds: Histogram,
    peer_connected: Family<PeerLabel, Gauge>,
    peer_misbehaviour: Family<MisbehaviourLabel, Counter>,
    last_stats: std::sync::Mutex<CoreStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chatpay");
        let round = Gauge::default();
        let last_voted_round = Gauge::default();
        let timeouts = Counter::default();
        let qcs_formed = Counter::default();
        let tcs_formed = Counter::default();
        let catching_up = Gauge::default();
        let leader = Gauge::default();
        let committed_height = Gauge::default();
        let transfers_committed = Counter::default();
        // 5 ms … ~40 s.
        let commit_latency = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let mempool_txs = Gauge::default();
        let mempool_bytes = Gauge::default();
        let mempool_parked = Gauge::default();
        // 50 µs … ~0.8 s.
        let store_write_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        let peer_connected = Family::<PeerLabel, Gauge>::default();
        let peer_misbehaviour = Family::<MisbehaviourLabel, Counter>::default();
        let r = &mut registry;
        r.register("round", "Current consensus round", round.clone());
        r.register(
            "last_voted_round",
            "Highest round this validator signed a vote or timeout in",
            last_voted_round.clone(),
        );
        r.register(
            "timeouts",
            "Rounds this validator timed out of",
            timeouts.clone(),
        );
        r.register(
            "qcs_formed",
            "Quorum certificates formed from votes here",
            qcs_formed.clone(),
        );
        r.register(
            "tcs_formed",
            "Timeout certificates formed here",
            tcs_formed.clone(),
        );
        r.register(
            "catching_up",
            "1 while fetching blocks it lacks",
            catching_up.clone(),
        );
        r.register(
            "leader",
            "Leader of the current round as this validator sees it (-1 while unknown)",
            leader.clone(),
        );
        r.register(
            "committed_height",
            "Height of the last committed block",
            committed_height.clone(),
        );
        r.register(
            "transfers_committed",
            "Transfers in committed blocks",
            transfers_committed.clone(),
        );
        r.register(
            "commit_latency_seconds",
            "From a block's proposal timestamp to its commit here",
            commit_latency.clone(),
        );
        r.register(
            "mempool_transactions",
            "Pending transactions",
            mempool_txs.clone(),
        );
        r.register(
            "mempool_bytes",
            "Bytes of pending transactions",
            mempool_bytes.clone(),
        );
        r.register(
            "mempool_parked",
            "Pending transactions behind a nonce gap (they give way when the pool is full)",
            mempool_parked.clone(),
        );
        r.register(
            "store_write_seconds",
            "Durable write of one committed block",
            store_write_seconds.clone(),
        );
        r.register(
            "peer_connected",
            "1 while the stream to the peer is open",
            peer_connected.clone(),
        );
        r.register(
            "peer_misbehaviour",
            "Invalid consensus messages refused, by what was wrong (logged at debug only)",
            peer_misbehaviour.clone(),
        );
        Self {
            registry,
            round,
            last_voted_round,
            timeouts,
            qcs_formed,
            tcs_formed,
            catching_up,
            leader,
            committed_height,
            transfers_committed,
            commit_latency,
            mempool_txs,
            mempool_bytes,
            mempool_parked,
            store_write_seconds,
            peer_connected,
            peer_misbehaviour,
            last_stats: std::sync::Mutex::new(CoreStats::default()),
        }
    }

    /// Records the core's counters after a step.
    pub fn observe_core(&self, stats: CoreStats) {
        let mut last = self.last_stats.lock().unwrap_or_else(|e| e.into_inner());
        self.round
            .set(i64::try_from(stats.round).unwrap_or(i64::MAX));
        self.last_voted_round
            .set(i64::try_from(stats.last_voted_round).unwrap_or(i64::MAX));
        self.timeouts
            .inc_by(stats.timeouts.saturating_sub(last.timeouts));
        self.qcs_formed
            .inc_by(stats.qcs_formed.saturating_sub(last.qcs_formed));
        self.tcs_formed
            .inc_by(stats.tcs_formed.saturating_sub(last.tcs_formed));
        self.catching_up.set(i64::from(stats.catching_up));
        self.leader.set(stats.leader.map_or(-1, i64::from));
        *last = stats;
    }

    /// Records a committed block.
    pub fn observe_commit(&self, header: &BlockHeader, now_ms: u64) {
        self.committed_height
            .set(i64::try_from(header.height).unwrap_or(i64::MAX));
        self.transfers_committed.inc_by(u64::from(header.tx_count));
        let latency = now_ms.saturating_sub(header.timestamp_ms);
        self.commit_latency.observe(latency as f64 / 1000.0);
    }

    /// Counts one invalid message of kind `what` from a peer.
    pub fn peer_misbehaved(&self, what: &str) {
        self.peer_misbehaviour
            .get_or_create(&MisbehaviourLabel { what: what.into() })
            .inc();
    }

    /// Records whether the stream to `peer` is open.
    pub fn peer_connected(&self, peer: u32, up: bool) {
        self.peer_connected
            .get_or_create(&PeerLabel { peer })
            .set(i64::from(up));
    }

    /// The text exposition of every series, reading the mempool now.
    pub fn render(&self, api: &ApiState) -> String {
        {
            let pool = api.mempool.lock().unwrap_or_else(|e| e.into_inner());
            self.mempool_txs
                .set(i64::try_from(pool.len()).unwrap_or(i64::MAX));
            self.mempool_bytes
                .set(i64::try_from(pool.bytes()).unwrap_or(i64::MAX));
            self.mempool_parked
                .set(i64::try_from(pool.parked()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    api: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, api) = (metrics.clone(), api.clone());
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(&api),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A [`Store`] that times durable block writes.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

type R<T> = crate::storage::Result<T>;

impl Store for TimedStore {
    fn committed_height(&self) -> R<Option<u64>> {
        self.inner.committed_height()
    }
    fn commit_block(&self, commit: &BlockCommit) -> R<()> {
        let started = Instant::now();
        let r = self.inner.commit_block(commit);
        self.metrics
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        r
    }
    fn account(&self, key: &PublicKey) -> R<Option<Account>> {
        self.inner.account(key)
    }
    fn block(&self, height: u64) -> R<Option<StoredBlock>> {
        self.inner.block(height)
    }
    fn height_of(&self, block_hash: &Hash) -> R<Option<u64>> {
        self.inner.height_of(block_hash)
    }
    fn transaction(&self, tx_id: &TxId) -> R<Option<TxRecord>> {
        self.inner.transaction(tx_id)
    }
    fn history_before(
        &self,
        key: &PublicKey,
        before: Option<TxPosition>,
        limit: usize,
    ) -> R<Vec<HistoryEntry>> {
        self.inner.history_before(key, before, limit)
    }
    fn history_from(
        &self,
        key: &PublicKey,
        from: TxPosition,
        limit: usize,
    ) -> R<Vec<HistoryEntry>> {
        self.inner.history_from(key, from, limit)
    }
    fn payments_with_reference(
        &self,
        reference: &Hash,
        from: TxPosition,
        limit: usize,
    ) -> R<Vec<(TxPosition, chatpay_proto::TxId)>> {
        self.inner.payments_with_reference(reference, from, limit)
    }
    fn burned(&self) -> R<u64> {
        self.inner.burned()
    }
    fn tree_node(&self, key: &[u8]) -> R<Option<Vec<u8>>> {
        self.inner.tree_node(key)
    }
    fn state_value(&self, key_hash: &chatpay_proto::Hash, version: u64) -> R<Option<Vec<u8>>> {
        self.inner.state_value(key_hash, version)
    }
    fn prune_state_tree(&self, up_to_version: u64, limit: usize) -> R<usize> {
        self.inner.prune_state_tree(up_to_version, limit)
    }
    fn state_entries(&self, from: &Hash, version: u64, limit: usize) -> R<Vec<StateEntry>> {
        self.inner.state_entries(from, version, limit)
    }
    fn import_state(
        &self,
        version: u64,
        entries: &[StateEntry],
        nodes: &[(Vec<u8>, Vec<u8>)],
    ) -> R<()> {
        self.inner.import_state(version, entries, nodes)
    }
    fn finish_import(
        &self,
        genesis: &BlockHeader,
        header: &BlockHeader,
        certificate: Option<&QuorumCertificate>,
        burned: u64,
    ) -> R<()> {
        self.inner
            .finish_import(genesis, header, certificate, burned)
    }
    fn partial_import(&self) -> R<Option<u64>> {
        self.inner.partial_import()
    }
    fn discard_chain_data(&self) -> R<()> {
        self.inner.discard_chain_data()
    }
    fn first_full_height(&self) -> R<u64> {
        self.inner.first_full_height()
    }
    fn prune_blocks(&self, below: u64, limit: usize) -> R<usize> {
        self.inner.prune_blocks(below, limit)
    }
    fn for_each_account(&self, f: &mut dyn FnMut(&PublicKey, &Account)) -> R<()> {
        self.inner.for_each_account(f)
    }
    fn safety_data(&self) -> R<Option<Vec<u8>>> {
        self.inner.safety_data()
    }
    fn put_safety_data(&self, bytes: &[u8]) -> R<()> {
        self.inner.put_safety_data(bytes)
    }
    fn put_pending_block(&self, height: u64, hash: &Hash, bytes: &[u8]) -> R<()> {
        self.inner.put_pending_block(height, hash, bytes)
    }
    fn pending_blocks(&self) -> R<Vec<Vec<u8>>> {
        self.inner.pending_blocks()
    }
    fn prune_pending_blocks(&self, up_to_height: u64) -> R<()> {
        self.inner.prune_pending_blocks(up_to_height)
    }
    fn high_qc(&self) -> R<Option<Vec<u8>>> {
        self.inner.high_qc()
    }
    fn put_high_qc(&self, bytes: &[u8]) -> R<()> {
        self.inner.put_high_qc(bytes)
    }
    fn high_tc(&self) -> R<Option<Vec<u8>>> {
        self.inner.high_tc()
    }
    fn put_high_tc(&self, bytes: &[u8]) -> R<()> {
        self.inner.put_high_tc(bytes)
    }
    fn last_header(&self) -> R<Option<BlockHeader>> {
        self.inner.last_header()
    }
}
