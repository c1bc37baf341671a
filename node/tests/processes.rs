//! Four `chatpay-node start` processes on 127.0.0.1, written by
//! `chatpay-node testnet`: transfers submitted to any validator commit;
//! kill -9 of one leaves the others committing and, restarted, it catches up
//! to the same blocks and state digests; with two killed nothing commits and
//! nothing forks, and the chain resumes when they return.

use chatpay_node::config::read_key;
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::{BlockHeader, Hash, Output, SecretKey, Transfer, pb};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_chatpay-node");
const WAIT: Duration = Duration::from_secs(60);

/// The validator processes; every one still running is killed on drop, so a
/// failing test leaves nothing behind.
struct Network {
    dir: tempfile::TempDir,
    /// One lazily (re)connecting channel per validator.
    clients: Vec<ClientClient<Channel>>,
    children: Vec<Option<Child>>,
    faucet: SecretKey,
    chain_id: String,
    fee: u64,
    hrp: String,
}

impl Drop for Network {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Network {
    fn home(&self, i: usize) -> PathBuf {
        self.dir.path().join("net").join(format!("node{i}"))
    }

    async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(4);
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let out = dir.path().join("net");
        let status = Command::new(BIN)
            .args(["testnet", "--validators", "4", "--chain-id", "chatpay-proc"])
            .arg("--out")
            .arg(&out)
            .args(["--ports", &list.join(",")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        // Faster rounds than production so the test is quick.
        for i in 0..4 {
            let path = out.join(format!("node{i}/config.toml"));
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("base_timeout_ms = 3000", "base_timeout_ms = 1000")
                .replace("max_timeout_ms = 60000", "max_timeout_ms = 4000")
                .replace("idle_interval_ms = 1000", "idle_interval_ms = 100");
            std::fs::write(&path, text).unwrap();
        }
        let faucet = read_key(&out.join("faucet.key")).unwrap();
        let mut net = Network {
            dir,
            clients: ports
                .iter()
                .map(|p| {
                    let endpoint = format!("http://127.0.0.1:{p}");
                    let channel = tonic::transport::Endpoint::from_shared(endpoint)
                        .unwrap()
                        .connect_lazy();
                    ClientClient::new(channel)
                })
                .collect(),
            children: (0..4).map(|_| None).collect(),
            faucet,
            chain_id: "chatpay-proc".into(),
            fee: 0,
            hrp: String::new(),
        };
        for i in 0..4 {
            net.start(i);
        }
        let status = net.status(0).await;
        net.fee = status.fee_per_transfer;
        net.hrp = status.hrp;
        net
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home(i).join("node.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("start")
            .arg("--home")
            .arg(self.home(i))
            .env("CHATPAY_LOG", "info")
            .env("CHATPAY_METRICS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// kill -9.
    fn kill(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The client of validator `i` (calls fail while it is down).
    async fn client(&self, i: usize) -> ClientClient<Channel> {
        self.clients[i].clone()
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.home(i).join("node.log")).unwrap_or_default()
    }

    /// Status of validator `i`, retrying while it starts.
    async fn status(&self, i: usize) -> pb::GetStatusResponse {
        let mut client = self.client(i).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match client.get_status(pb::GetStatusRequest {}).await {
                Ok(r) => return r.into_inner(),
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{e}: {}",
                        self.log(i)
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn height(&self, i: usize) -> u64 {
        self.status(i).await.committed_height
    }

    async fn wait_for_height(&self, nodes: &[usize], height: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for &i in nodes {
            while self.height(i).await < height {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "validator {i} below {height}: {}",
                    self.log(i)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn block(&self, i: usize, height: u64) -> (Hash, Hash) {
        let mut client = self.client(i).await;
        let block = client
            .get_block(pb::GetBlockRequest { height })
            .await
            .unwrap()
            .into_inner();
        let header = BlockHeader::try_from(block.block.unwrap().header.unwrap()).unwrap();
        (header.hash(), header.state_digest)
    }

    /// Same block hash and state digest on `nodes` at every height they all have.
    async fn assert_agreement(&self, nodes: &[usize]) {
        let mut top = u64::MAX;
        for &i in nodes {
            top = top.min(self.height(i).await);
        }
        for h in 1..=top {
            let first = self.block(nodes[0], h).await;
            for &i in &nodes[1..] {
                assert_eq!(self.block(i, h).await, first, "validator {i}, height {h}");
            }
        }
    }

    async fn pay(&self, node: usize, nonce: u64) {
        self.try_pay(node, nonce).await.unwrap();
    }

    async fn try_pay(&self, node: usize, nonce: u64) -> Result<(), tonic::Status> {
        let out = Output {
            recipient: SecretKey::generate().public_key().clone(),
            amount: 1_000,
        };
        let tx = Transfer::new(
            &self.chain_id,
            self.faucet.public_key().clone(),
            nonce,
            self.fee,
            vec![out],
            vec![],
        )
        .unwrap()
        .sign(&self.faucet);
        let mut client = self.client(node).await;
        client
            .submit_transaction(pb::SubmitTransactionRequest {
                transaction: Some((&tx).into()),
            })
            .await
            .map(|_| ())
    }

    async fn nonce(&self, i: usize) -> u64 {
        let address = chatpay_proto::Address::new(&self.hrp, self.faucet.public_key().clone())
            .unwrap()
            .to_string();
        let mut client = self.client(i).await;
        let r = client
            .get_account(pb::GetAccountRequest { address })
            .await
            .unwrap()
            .into_inner();
        r.account.map_or(0, |a| a.nonce)
    }

    async fn wait_for_nonce(&self, nodes: &[usize], nonce: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for &i in nodes {
            while self.nonce(i).await < nonce {
                assert!(tokio::time::Instant::now() < deadline, "{}", self.log(i));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn home_has_data(home: &Path) -> bool {
    home.join("data").join("CURRENT").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_validators_survive_kill_9_and_catch_up() {
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    for nonce in 1..=6 {
        net.pay((nonce % 4) as usize, nonce).await;
    }
    net.wait_for_nonce(&[0, 1, 2, 3], 6).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;

    // kill -9 one: the other three keep committing.
    net.kill(3);
    assert!(home_has_data(&net.home(3)));
    let h = net.height(0).await;
    for nonce in 7..=9 {
        net.pay((nonce % 3) as usize, nonce).await;
    }
    net.wait_for_nonce(&[0, 1, 2], 9).await;
    net.wait_for_height(&[0, 1, 2], h + 4).await;

    // Restarted over its RocksDB, it catches up to the same chain.
    net.start(3);
    let top = net.height(0).await;
    net.wait_for_height(&[3], top + 2).await;
    assert_eq!(net.nonce(3).await, 9);
    net.assert_agreement(&[0, 1, 2, 3]).await;

    // kill -9 two: no quorum, nothing commits, nothing forks.
    net.kill(2);
    net.kill(3);
    let before = [net.height(0).await, net.height(1).await];
    net.pay(0, 10).await;
    // A bounded observation window: several round timeouts (1 s, 2 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, b) in before.iter().enumerate() {
        let after = net.height(i).await;
        assert!(
            after <= b + 1,
            "validator {i}: {b} -> {after} without a quorum"
        );
    }
    assert_eq!(net.nonce(0).await, 9);
    net.assert_agreement(&[0, 1]).await;

    // Both back: the chain resumes and the pending transfer commits.
    net.start(2);
    net.start(3);
    net.wait_for_nonce(&[0, 1, 2, 3], 10).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_transfer() {
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    // Transfers go to validator 3 only, as fast as it acknowledges them;
    // SIGTERM reaches it in the middle.
    let pid = net.children[3].as_ref().unwrap().id();
    let mut acknowledged = 0u64;
    let mut terminated = false;
    for nonce in 1..=60u64 {
        if nonce == 25 {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            terminated = true;
        }
        match net.try_pay(3, nonce).await {
            Ok(()) => acknowledged = nonce,
            Err(_) if terminated => break,
            Err(e) => panic!("refused before SIGTERM: {e}"),
        }
    }
    assert!(acknowledged >= 24, "acknowledged {acknowledged}");
    // It exits cleanly, within the bound.
    let mut child = net.children[3].take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}: {}", net.log(3));
    assert!(
        net.log(3).contains("handed pending transactions"),
        "{}",
        net.log(3)
    );
    // Every acknowledged transfer commits on the other three.
    net.wait_for_nonce(&[0, 1, 2], acknowledged).await;
}
