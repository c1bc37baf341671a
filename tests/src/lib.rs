//! chatpay multi-node test support: a local network of full validators in
//! one process (gRPC on 127.0.0.1, in-memory ledgers), for end-to-end tests
//! of the wallet and of clients.

pub mod sim;

use chatpay_node::consensus::core::CoreConfig;
use chatpay_node::consensus::mutations::Faulty;
use chatpay_node::genesis::{AccountFile, Genesis, GenesisFile, ValidatorFile};
use chatpay_node::mempool::MempoolConfig;
use chatpay_node::network::TcpConnector;
use chatpay_node::node::{Clock, NodeConfig, NodeError, run};
use chatpay_node::state_sync::{SyncConfig, SyncFrom};
use chatpay_node::storage::{MemoryStore, Store};
use chatpay_proto::{Address, PublicKey, SecretKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// Chain id of local test networks.
pub const CHAIN_ID: &str = "chatpay-local";
/// Fee per transfer of local test networks, base units.
pub const FEE: u64 = 1_000;
/// Faucet balance, base units.
pub const FAUCET_BALANCE: u64 = 1_000_000_000_000;

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), NodeError>>,
}

/// Validators running in this process; stopped when dropped.
pub struct LocalNetwork {
    /// The genesis.
    pub genesis: Arc<Genesis>,
    /// The funded faucet account's key.
    pub faucet: SecretKey,
    addrs: Vec<SocketAddr>,
    metrics: Vec<SocketAddr>,
    /// Each validator's (gRPC, metrics) sockets, bound for the network's
    /// whole life: a restart serves on the same sockets, so no other
    /// process can take a port while a validator is down.
    sockets: Vec<(std::net::TcpListener, std::net::TcpListener)>,
    stores: Vec<Arc<dyn Store>>,
    running: Vec<Option<Running>>,
    mempool: MempoolConfig,
    /// How each validator joins when its store is empty (by replay,
    /// unless a test says otherwise).
    sync: Vec<SyncConfig>,
    /// Each validator's Byzantine switches (all off unless a test turns
    /// one on).
    faulty: Vec<Faulty>,
}

/// The key of validator `i` of a local network (for tests that play a
/// validator, e.g. replaying its messages).
pub fn validator_key(i: usize) -> SecretKey {
    let mut b = [0u8; 32];
    b[0] = 0x11;
    b[31] = u8::try_from(i + 1).expect("small networks");
    SecretKey::from_slice(&b).expect("a valid scalar")
}

/// A genesis whose validator `i` has [`validator_key`]`(i)` and address
/// `addresses[i]`, funding `accounts`.
pub fn test_genesis(
    chain_id: &str,
    fee_per_transfer: u64,
    genesis_time_ms: u64,
    addresses: &[String],
    accounts: &[(&PublicKey, u64)],
) -> Arc<Genesis> {
    let file = GenesisFile {
        chain_id: chain_id.into(),
        hrp: "cp".into(),
        decimals: 6,
        symbol: "CPY".into(),
        fee_per_transfer,
        genesis_time_ms,
        validators: addresses
            .iter()
            .enumerate()
            .map(|(i, address)| ValidatorFile {
                public_key: hex::encode(validator_key(i).public_key().as_bytes()),
                network_address: address.clone(),
            })
            .collect(),
        accounts: accounts
            .iter()
            .map(|(key, balance)| AccountFile {
                address: Address::new("cp", (*key).clone())
                    .expect("valid prefix")
                    .to_string(),
                balance: *balance,
            })
            .collect(),
    };
    Arc::new(Genesis::from_file(file).expect("a valid genesis"))
}

impl LocalNetwork {
    /// Starts `n` validators with fast timeouts (1 s rounds, 100 ms idle).
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, MempoolConfig::default()).await
    }

    /// [`LocalNetwork::start`] with mempool bounds `mempool`.
    pub async fn start_with(n: usize, mempool: MempoolConfig) -> Self {
        Self::start_funding(n, mempool, SecretKey::generate(), 0).await
    }

    /// [`LocalNetwork::start_with`] whose genesis funds `faucet` and starts
    /// at `genesis_time_ms`: two networks funding one key share an account
    /// (and its nonces), as a network started over does; another genesis
    /// time makes it another network with the same chain id.
    pub async fn start_funding(
        n: usize,
        mempool: MempoolConfig,
        faucet: SecretKey,
        genesis_time_ms: u64,
    ) -> Self {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1"),
            );
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound"))
            .collect();
        let mut metrics_listeners = Vec::new();
        for _ in 0..n {
            metrics_listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1"),
            );
        }
        let metrics = metrics_listeners
            .iter()
            .map(|l| l.local_addr().expect("bound"))
            .collect();
        let addresses: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let genesis = test_genesis(
            CHAIN_ID,
            FEE,
            genesis_time_ms,
            &addresses,
            &[(faucet.public_key(), FAUCET_BALANCE)],
        );
        let sockets: Vec<_> = listeners
            .into_iter()
            .zip(metrics_listeners)
            .map(|(l, m)| {
                let std = |l: TcpListener| l.into_std().expect("a tokio listener converts");
                (std(l), std(m))
            })
            .collect();
        let mut net = Self {
            genesis,
            faucet,
            addrs,
            metrics,
            sockets,
            stores: (0..n)
                .map(|_| Arc::new(MemoryStore::new_empty()) as Arc<dyn Store>)
                .collect(),
            running: (0..n).map(|_| None).collect(),
            mempool,
            sync: vec![
                SyncConfig {
                    from: SyncFrom::Genesis,
                    ..SyncConfig::default()
                };
                n
            ],
            faulty: (0..n).map(|_| Faulty::default()).collect(),
        };
        for i in 0..n {
            net.restart(i).await;
        }
        net
    }

    fn launch(&mut self, i: usize, listener: TcpListener, metrics: TcpListener) {
        let config = NodeConfig {
            key: validator_key(i),
            core: CoreConfig {
                base_timeout_ms: 1_000,
                max_timeout_ms: 4_000,
                idle_interval_ms: 100,
                ..CoreConfig::default()
            },
            mempool: self.mempool,
            clock: Clock::system(),
            stats: None,
            faulty: self.faulty[i].clone(),
            sync: self.sync[i],
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            self.genesis.clone(),
            self.stores[i].clone(),
            config,
            TcpListenerStream::new(listener),
            Some(metrics),
            Arc::new(TcpConnector::default()),
            async move {
                let _ = stopped.await;
            },
        ));
        self.running[i] = Some(Running { stop, task });
    }

    /// `http://` URLs of the validators' gRPC servers.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    /// Address of validator `i`'s Prometheus endpoint (`GET /metrics`).
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        self.metrics[i]
    }

    /// The ledger store of validator `i` (read it to check what it holds).
    pub fn store(&self, i: usize) -> &Arc<dyn Store> {
        &self.stores[i]
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// Whether the network has no validators.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Stops validator `i` and waits until it has stopped.
    pub async fn stop(&mut self, i: usize) {
        if let Some(r) = self.running[i].take() {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
    }

    /// Starts validator `i` (again) on its sockets, over its store.
    pub async fn restart(&mut self, i: usize) {
        let tokio = |l: &std::net::TcpListener| {
            TcpListener::from_std(l.try_clone().expect("a socket clones")).expect("a listener")
        };
        let (listener, metrics) = (tokio(&self.sockets[i].0), tokio(&self.sockets[i].1));
        self.launch(i, listener, metrics);
    }

    /// Validator `i`'s Byzantine switches (it reads them as it runs).
    pub fn faulty(&self, i: usize) -> &Faulty {
        &self.faulty[i]
    }

    /// Stops validator `i`, deletes its chain data (its safety record
    /// kept, as `chatpay-node unsafe-reset` does) and starts it again,
    /// joining as `sync` says.
    pub async fn rejoin(&mut self, i: usize, sync: SyncConfig) {
        self.stop(i).await;
        self.stores[i]
            .discard_chain_data()
            .expect("the store deletes its chain data");
        self.sync[i] = sync;
        self.restart(i).await;
    }

    /// Committed height of validator `i`.
    pub fn height(&self, i: usize) -> u64 {
        self.stores[i]
            .committed_height()
            .expect("store readable")
            .unwrap_or(0)
    }

    /// Committed heights of all validators.
    pub fn heights(&self) -> Vec<u64> {
        (0..self.len()).map(|i| self.height(i)).collect()
    }

    /// Polls until every validator in `nodes` reaches `height`; panics with
    /// the heights after `within`.
    pub async fn wait_for(&self, nodes: &[usize], height: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !nodes.iter().all(|i| self.height(*i) >= height) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "heights {:?}, wanted {height} on {nodes:?}",
                self.heights()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Committed nonce of `key` on validator `i`.
    pub fn nonce(&self, i: usize, key: &PublicKey) -> u64 {
        self.stores[i]
            .account(key)
            .expect("store readable")
            .map_or(0, |a| a.nonce)
    }

    /// Polls until every validator committed `key`'s transfers up to `nonce`.
    pub async fn wait_for_nonce(&self, key: &PublicKey, nonce: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while (0..self.len()).any(|i| self.nonce(i, key) < nonce) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "heights {:?}, nonce {nonce} not committed everywhere",
                self.heights()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts the same block hash and state root on every validator at
    /// every height they all have (from the highest a validator that
    /// joined from a snapshot joined at).
    pub fn assert_agreement(&self) {
        let top = self.heights().into_iter().min().unwrap_or(0);
        let first = self
            .stores
            .iter()
            .map(|s| s.first_full_height().expect("store readable") - 1)
            .max()
            .unwrap_or(0)
            .max(1);
        for h in first..=top {
            let blocks: Vec<_> = self
                .stores
                .iter()
                .map(|s| {
                    let b = s.block(h).expect("store readable").expect("committed");
                    (b.header.hash(), b.header.state_root)
                })
                .collect();
            assert!(
                blocks.windows(2).all(|w| w[0] == w[1]),
                "height {h}: {blocks:?}"
            );
        }
    }

    /// Stops every validator.
    pub async fn shutdown(mut self) {
        for i in 0..self.running.len() {
            self.stop(i).await;
        }
    }
}
