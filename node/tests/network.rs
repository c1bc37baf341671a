//! Four validators in one process, each a full node (gRPC server, peer
//! streams, consensus, in-memory ledger) on 127.0.0.1: they commit transfers
//! submitted to any of them, survive one crash, stop without forking with
//! two down, and the stopped ones catch up when they return.

use chatpay_node::consensus::core::CoreConfig;
use chatpay_node::genesis::{AccountFile, Genesis, GenesisFile, ValidatorFile};
use chatpay_node::mempool::MempoolConfig;
use chatpay_node::network::TcpConnector;
use chatpay_node::node::{NodeConfig, NodeError, run};
use chatpay_node::storage::{MemoryStore, Store};
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::{Address, Output, SecretKey, Transfer, pb};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

const CHAIN: &str = "chatpay-net";
const FEE: u64 = 1;

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n + 1;
    SecretKey::from_slice(&b).unwrap()
}

/// Payer key, funded at genesis.
fn payer() -> SecretKey {
    key(100)
}

fn pay(nonce: u64) -> pb::SignedTransaction {
    let out = Output {
        recipient: key(101).public_key().clone(),
        amount: nonce,
    };
    let tx = Transfer::new(
        CHAIN,
        payer().public_key().clone(),
        nonce,
        FEE,
        vec![out],
        vec![],
    )
    .unwrap()
    .sign(&payer());
    (&tx).into()
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), NodeError>>,
}

struct Cluster {
    genesis: Arc<Genesis>,
    addrs: Vec<SocketAddr>,
    stores: Vec<Arc<dyn Store>>,
    running: Vec<Option<Running>>,
}

impl Cluster {
    async fn start(n: u8) -> Self {
        // RUST_LOG=chatpay_node=debug shows what the validators do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_ansi(false)
            .try_init();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let file = GenesisFile {
            chain_id: CHAIN.into(),
            hrp: "cp".into(),
            decimals: 6,
            symbol: "CPY".into(),
            fee_per_transfer: FEE,
            genesis_time_ms: 0,
            validators: (0..n)
                .map(|i| ValidatorFile {
                    public_key: hex::encode(key(i).public_key().as_bytes()),
                    network_address: addrs[i as usize].to_string(),
                })
                .collect(),
            accounts: vec![AccountFile {
                address: Address::new("cp", payer().public_key().clone())
                    .unwrap()
                    .to_string(),
                balance: 1_000_000_000,
            }],
        };
        let genesis = Arc::new(Genesis::from_file(file).unwrap());
        let mut cluster = Self {
            genesis,
            addrs,
            stores: (0..n)
                .map(|_| Arc::new(MemoryStore::new_empty()) as Arc<dyn Store>)
                .collect(),
            running: (0..n).map(|_| None).collect(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            cluster.launch(i, listener);
        }
        cluster
    }

    fn launch(&mut self, i: usize, listener: TcpListener) {
        let config = NodeConfig {
            key: key(i as u8),
            core: CoreConfig {
                base_timeout_ms: 1_000,
                max_timeout_ms: 4_000,
                idle_interval_ms: 100,
                ..CoreConfig::default()
            },
            mempool: MempoolConfig::default(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            self.genesis.clone(),
            self.stores[i].clone(),
            config,
            TcpListenerStream::new(listener),
            Arc::new(TcpConnector::default()),
            async move {
                let _ = stopped.await;
            },
        ));
        self.running[i] = Some(Running { stop, task });
    }

    /// Stops validator `i` gracefully and waits until it has stopped.
    async fn stop(&mut self, i: usize) {
        let r = self.running[i].take().expect("running");
        let _ = r.stop.send(());
        r.task.await.unwrap().unwrap();
    }

    /// Starts validator `i` again on its address, over its store.
    async fn restart(&mut self, i: usize) {
        let listener = TcpListener::bind(self.addrs[i]).await.unwrap();
        self.launch(i, listener);
    }

    fn height(&self, i: usize) -> u64 {
        self.stores[i].committed_height().unwrap().unwrap_or(0)
    }

    fn heights(&self) -> Vec<u64> {
        (0..self.stores.len()).map(|i| self.height(i)).collect()
    }

    /// Polls until every node in `nodes` reaches `height`, or fails the test.
    async fn wait_for(&self, nodes: &[usize], height: u64, within: Duration) {
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

    /// Same block hash and state digest at every height all nodes have.
    fn assert_agreement(&self) {
        let top = self.heights().into_iter().min().unwrap();
        for h in 1..=top {
            let blocks: Vec<_> = self
                .stores
                .iter()
                .map(|s| {
                    let b = s.block(h).unwrap().unwrap();
                    (b.header.hash(), b.header.state_digest)
                })
                .collect();
            assert!(
                blocks.windows(2).all(|w| w[0] == w[1]),
                "height {h}: {blocks:?}"
            );
        }
    }

    /// Polls until every node committed the payer's transfers up to `nonce`.
    async fn wait_for_nonce(&self, nonce: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while (0..self.stores.len()).any(|i| self.committed_nonce(i) < nonce) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "heights {:?}",
                self.heights()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn committed_nonce(&self, i: usize) -> u64 {
        self.stores[i]
            .account(payer().public_key())
            .unwrap()
            .map_or(0, |a| a.nonce)
    }

    async fn client(&self, i: usize) -> ClientClient<tonic::transport::Channel> {
        ClientClient::connect(format!("http://{}", self.addrs[i]))
            .await
            .unwrap()
    }

    async fn shutdown(mut self) {
        for i in 0..self.running.len() {
            if self.running[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

async fn submit(c: &Cluster, node: usize, nonce: u64) {
    let mut client = c.client(node).await;
    client
        .submit_transaction(pb::SubmitTransactionRequest {
            transaction: Some(pay(nonce)),
        })
        .await
        .unwrap();
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_to_any_validator_commit_and_a_crashed_one_catches_up() {
    let mut c = Cluster::start(4).await;
    // Each transfer goes to a different validator; the one that leads next
    // proposes it only if forwarding brought it there.
    for nonce in 1..=8 {
        submit(&c, (nonce % 4) as usize, nonce).await;
    }
    c.wait_for_nonce(8).await;
    c.assert_agreement();

    // One down: the other three keep committing.
    c.stop(3).await;
    let h = c.height(0);
    for nonce in 9..=12 {
        submit(&c, (nonce % 3) as usize, nonce).await;
    }
    // Rounds whose leader, or next leader, is down end by timeout, so this
    // is slower than a healthy chain.
    c.wait_for(&[0, 1, 2], h + 10, WAIT).await;
    assert!((0..3).all(|i| c.committed_nonce(i) == 12));
    assert!(c.height(3) < h + 10);

    // Back: it catches up (by range sync: more than the fetch depth behind)
    // to the same blocks and state digest, and votes again.
    c.restart(3).await;
    let top = c.heights().into_iter().max().unwrap();
    c.wait_for(&[0, 1, 2, 3], top + 2, WAIT).await;
    c.assert_agreement();
    assert_eq!(c.committed_nonce(3), 12);
    c.stop(2).await;
    let h = c.heights().into_iter().max().unwrap();
    c.wait_for(&[0, 1, 3], h + 3, WAIT).await;
    c.assert_agreement();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_four_down_stops_without_forking_and_resumes() {
    let mut c = Cluster::start(4).await;
    c.wait_for(&[0, 1, 2, 3], 3, WAIT).await;
    c.stop(2).await;
    c.stop(3).await;
    let before = c.heights();
    submit(&c, 0, 1).await;
    // Several round timeouts (1 s, 2 s) pass with no quorum.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = c.heights();
    for i in 0..2 {
        // At most a block certified before the crash may still commit.
        assert!(
            after[i] <= before[i] + 1,
            "before {before:?} after {after:?}"
        );
    }
    assert!((0..2).all(|i| c.committed_nonce(i) == 0));
    c.assert_agreement();

    c.restart(2).await;
    c.restart(3).await;
    c.wait_for_nonce(1).await;
    c.assert_agreement();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_refused_and_the_cluster_goes_on() {
    use pb::validator_client::ValidatorClient;
    let c = Cluster::start(4).await;
    c.wait_for(&[0, 1, 2, 3], 2, WAIT).await;
    let mut peer = ValidatorClient::connect(format!("http://{}", c.addrs[0]))
        .await
        .unwrap();
    let refused = |r: Result<tonic::Response<pb::DeliverResponse>, tonic::Status>| {
        let s = r.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        s.message().to_string()
    };
    // An empty message, a short signature, a sender outside the set.
    let empty = pb::ConsensusMessage { message: None };
    assert!(refused(peer.deliver(empty.clone()).await).contains("message"));
    let vote = |sender, signature: Vec<u8>| pb::ConsensusMessage {
        message: Some(pb::consensus_message::Message::Vote(pb::Vote {
            block_hash: vec![1; 32],
            round: 1,
            height: 1,
            sender,
            signature,
        })),
    };
    assert!(refused(peer.deliver(vote(1, vec![1; 3])).await).contains("vote.signature"));
    assert!(refused(peer.deliver(vote(99, vec![1; 64])).await).contains("99"));
    // On the long-lived stream, the first bad message ends it.
    let messages = tokio_stream::iter(vec![vote(1, vec![1; 64]), empty]);
    refused(peer.stream(messages).await);
    // Oversized and malformed requests of the other calls.
    let many = pb::ForwardTransactionsRequest {
        sender: 1,
        transactions: vec![pay(1); 1_025],
    };
    let s = peer.forward_transactions(many).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let s = peer
        .fetch_block(pb::FetchBlockRequest {
            block_hash: vec![1; 5],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let s = peer
        .fetch_block(pb::FetchBlockRequest {
            block_hash: vec![1; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::NotFound);
    let s = peer
        .sync_blocks(pb::SyncBlocksRequest {
            from_height: 0,
            to_height: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    // A well-formed vote with a bad signature reaches the core, which drops
    // it; the validator keeps serving and the chain keeps committing.
    peer.deliver(vote(1, vec![1; 64])).await.unwrap();
    submit(&c, 0, 1).await;
    c.wait_for_nonce(1).await;
    c.assert_agreement();
    c.shutdown().await;
}
