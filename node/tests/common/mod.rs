//! A network of real `chatpay-node` processes written by `chatpay-node
//! testnet`, on 127.0.0.1, for the process-level tests. Every process still
//! running is killed when the network is dropped, so a failing test leaves
//! nothing behind.
#![allow(dead_code)]

use chatpay_node::config::read_key;
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::{BlockHeader, Hash, Output, SecretKey, Transfer, pb};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_chatpay-node");
pub const WAIT: Duration = Duration::from_secs(60);

/// The validator processes; every one still running is killed on drop, so a
/// failing test leaves nothing behind.
pub struct Network {
    pub dir: tempfile::TempDir,
    /// One lazily (re)connecting channel per validator.
    clients: Vec<ClientClient<Channel>>,
    pub children: Vec<Option<Child>>,
    pub faucet: SecretKey,
    pub chain_id: String,
    /// The network's genesis hash (what transfers are signed for).
    pub genesis_hash: chatpay_proto::Hash,
    pub fee: u64,
    pub hrp: String,
    /// Each validator's listening socket, bound here for the whole test and
    /// passed to every run of its process as fd 3 (`LISTEN_FDS`): the port
    /// is never free, so no other process can take it between two runs.
    listeners: Vec<std::net::TcpListener>,
}

impl Drop for Network {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` listening sockets on 127.0.0.1, each on a port the system chose.
/// They stay bound while held; a validator process gets its own as fd 3.
pub fn listeners(n: usize) -> Vec<std::net::TcpListener> {
    (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect()
}

impl Network {
    pub fn home(&self, i: usize) -> PathBuf {
        self.dir.path().join("net").join(format!("node{i}"))
    }

    pub async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listeners = listeners(4);
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
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
                    // Bounded calls: a stopped (SIGSTOP) validator must
                    // not hang the test.
                    let channel = tonic::transport::Endpoint::from_shared(endpoint)
                        .unwrap()
                        .connect_timeout(Duration::from_secs(1))
                        .timeout(Duration::from_secs(2))
                        .connect_lazy();
                    ClientClient::new(channel)
                })
                .collect(),
            children: (0..4).map(|_| None).collect(),
            faucet,
            chain_id: "chatpay-proc".into(),
            genesis_hash: chatpay_proto::Hash::default(),
            fee: 0,
            hrp: String::new(),
            listeners,
        };
        for i in 0..4 {
            net.start(i);
        }
        let status = net.status(0).await;
        net.fee = status.fee_per_transfer;
        net.genesis_hash = chatpay_proto::Hash::from_slice(&status.genesis_hash).unwrap();
        net.hrp = status.hrp;
        net
    }

    pub fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home(i).join("node.log"))
            .unwrap();
        use command_fds::{CommandFdExt, FdMapping};
        let socket = std::os::fd::OwnedFd::from(self.listeners[i].try_clone().unwrap());
        let child = Command::new(BIN)
            .fd_mappings(vec![FdMapping {
                parent_fd: socket,
                child_fd: 3,
            }])
            .unwrap()
            .env("LISTEN_FDS", "1")
            .env_remove("LISTEN_PID")
            .arg("start")
            .arg("--home")
            .arg(self.home(i))
            // Every validator of a fresh network starts at once: none would
            // answer another's snapshot offer request before its own ended.
            .arg("--sync-from")
            .arg("genesis")
            .env(
                "CHATPAY_LOG",
                std::env::var("CHAOS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .env("CHATPAY_METRICS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The client of validator `i` (calls fail while it is down).
    pub async fn client(&self, i: usize) -> ClientClient<Channel> {
        self.clients[i].clone()
    }

    /// The last lines of every validator's log (for failure messages).
    pub fn log_tails(&self) -> String {
        (0..4)
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- validator {i} ---\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails the test for a call to validator `i` that failed, with every
    /// validator's log tail (a validator that stopped says why there).
    pub fn down(&self, i: usize, e: &tonic::Status) -> ! {
        panic!("validator {i}: {e}\n{}", self.log_tails())
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.home(i).join("node.log")).unwrap_or_default()
    }

    /// Status of validator `i`, retrying while it starts.
    pub async fn status(&self, i: usize) -> pb::GetStatusResponse {
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

    pub async fn height(&self, i: usize) -> u64 {
        self.status(i).await.committed_height
    }

    pub async fn wait_for_height(&self, nodes: &[usize], height: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for &i in nodes {
            while self.height(i).await < height {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "validator {i} below {height}\n{}",
                    self.log_tails()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub async fn block(&self, i: usize, height: u64) -> (Hash, Hash) {
        let mut client = self.client(i).await;
        let block = client
            .get_block(pb::GetBlockRequest { height })
            .await
            .unwrap_or_else(|e| self.down(i, &e))
            .into_inner();
        let header = BlockHeader::try_from(block.block.unwrap().header.unwrap()).unwrap();
        (header.hash(), header.state_root)
    }

    /// Same block hash and state digest on `nodes` at every height they all have.
    pub async fn assert_agreement(&self, nodes: &[usize]) {
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

    pub async fn pay(&self, node: usize, nonce: u64) {
        self.try_pay(node, nonce).await.unwrap();
    }

    pub async fn try_pay(&self, node: usize, nonce: u64) -> Result<(), tonic::Status> {
        let out = Output {
            recipient: SecretKey::generate().public_key().clone(),
            amount: 1_000,
        };
        let tx = Transfer::new(
            self.genesis_hash,
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

    pub async fn nonce(&self, i: usize) -> u64 {
        let faucet = self.faucet.public_key().clone();
        self.account(i, &faucet).await.map_or(0, |a| a.nonce)
    }

    pub async fn wait_for_nonce(&self, nodes: &[usize], nonce: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for &i in nodes {
            while self.nonce(i).await < nonce {
                assert!(tokio::time::Instant::now() < deadline, "{}", self.log(i));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub fn home_has_data(home: &Path) -> bool {
    home.join("data").join("CURRENT").exists()
}

impl Network {
    /// Sends `signal` (e.g. "STOP", "CONT", "TERM") to validator `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i].as_ref().expect("running").id();
        // The shell's builtin `kill`: a minimal machine may lack /bin/kill.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {pid}"))
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Height of validator `i`, or `None` if it does not answer.
    pub async fn try_height(&self, i: usize) -> Option<u64> {
        let mut c = self.clients[i].clone();
        c.get_status(pb::GetStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner().committed_height)
    }

    /// Round of validator `i`'s newest committed block.
    pub async fn last_round(&self, i: usize) -> u64 {
        let h = self.height(i).await;
        let mut c = self.clients[i].clone();
        let b = c
            .get_block(pb::GetBlockRequest { height: h })
            .await
            .unwrap()
            .into_inner();
        b.block.unwrap().header.unwrap().round
    }

    /// Balance of `key` on validator `i`.
    pub async fn balance(&self, i: usize, key: &chatpay_proto::PublicKey) -> u64 {
        self.account(i, key).await.map_or(0, |a| a.balance)
    }

    /// The account of `key` as validator `i` has it.
    pub async fn account(&self, i: usize, key: &chatpay_proto::PublicKey) -> Option<pb::Account> {
        let address = chatpay_proto::Address::new(&self.hrp, key.clone())
            .unwrap()
            .to_string();
        let mut c = self.clients[i].clone();
        c.get_account(pb::GetAccountRequest {
            address,
            include_proof: false,
        })
        .await
        .unwrap_or_else(|e| self.down(i, &e))
        .into_inner()
        .account
    }
}

/// A deterministic pseudo-random sequence (xorshift64*), seeded so that a
/// chaos run can be repeated: the seed is printed.
pub struct Rng(u64);

impl Rng {
    /// From `CHAOS_SEED`, else the clock.
    pub fn from_env() -> Self {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("CHAOS_SEED={seed}");
        Self(seed.max(1))
    }

    /// Next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Signed transfers from the faucet, submitted at a steady pace to whichever
/// validators answer, resubmitted (same bytes) until committed, the way a
/// wallet does.
pub struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<pb::SignedTransaction>>,
}

/// Recipients of the load.
pub fn recipients() -> Vec<SecretKey> {
    (1..=5u8)
        .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
        .collect()
}

impl Load {
    /// Starts about `per_second` transfers a second, at most 32 uncommitted.
    pub fn start(net: &Network, per_second: u64) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (faucet, chain_id, fee, clients) = (
            net.faucet.clone(),
            net.genesis_hash,
            net.fee,
            net.clients.clone(),
        );
        let task = tokio::spawn(async move {
            let to = recipients();
            let mut sent: Vec<pb::SignedTransaction> = Vec::new();
            let mut last_resubmit = tokio::time::Instant::now();
            let mut committed = 0u64;
            let pace = Duration::from_millis(1000 / per_second.max(1));
            let mut turn = 0usize;
            loop {
                if *stopped.borrow() {
                    return sent;
                }
                turn += 1;
                let client = |k: usize| clients[k % clients.len()].clone();
                if let Ok(r) = client(turn)
                    .get_account(pb::GetAccountRequest {
                        include_proof: false,
                        address: chatpay_proto::Address::new("cp", faucet.public_key().clone())
                            .unwrap()
                            .to_string(),
                    })
                    .await
                {
                    committed = committed.max(r.into_inner().account.map_or(0, |a| a.nonce));
                }
                let next = sent.len() as u64 + 1;
                if next <= committed + 32 {
                    let out = Output {
                        recipient: to[(next % 5) as usize].public_key().clone(),
                        amount: 1_000 + next,
                    };
                    let tx = Transfer::new(
                        chain_id,
                        faucet.public_key().clone(),
                        next,
                        fee,
                        vec![out],
                        vec![],
                    )
                    .unwrap()
                    .sign(&faucet);
                    let wire: pb::SignedTransaction = (&tx).into();
                    sent.push(wire.clone());
                    let _ = client(turn)
                        .submit_transaction(pb::SubmitTransactionRequest {
                            transaction: Some(wire),
                        })
                        .await;
                }
                if last_resubmit.elapsed() > Duration::from_secs(2) {
                    last_resubmit = tokio::time::Instant::now();
                    for (i, wire) in sent.iter().enumerate().skip(committed as usize) {
                        let _ = client(turn + i)
                            .submit_transaction(pb::SubmitTransactionRequest {
                                transaction: Some(wire.clone()),
                            })
                            .await;
                    }
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(pace) => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops submitting new transfers; returns every one submitted.
    pub async fn stop(self) -> Vec<pb::SignedTransaction> {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}

impl Network {
    /// Resubmits `sent` until all are committed on every validator, then
    /// checks the ledger: the same block hash and state digest on every
    /// validator at every height, each transfer committed exactly once with
    /// success, and no money made or lost. Returns the number checked.
    pub async fn settle_and_verify(&self, sent: &[pb::SignedTransaction]) -> usize {
        let n = sent.len() as u64;
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut round = 0usize;
        loop {
            let mut done = true;
            for i in 0..4 {
                if self.nonce(i).await < n {
                    done = false;
                }
            }
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all {n} transfers committed"
            );
            round += 1;
            for (k, wire) in sent.iter().enumerate() {
                let mut c = self.clients[(round + k) % 4].clone();
                let _ = c
                    .submit_transaction(pb::SubmitTransactionRequest {
                        transaction: Some(wire.clone()),
                    })
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Same chain everywhere, up to the lowest height.
        self.assert_agreement(&[0, 1, 2, 3]).await;
        // Each transfer once, with success.
        for wire in sent {
            let id = chatpay_proto::SignedTransfer::try_from(wire.clone())
                .unwrap()
                .tx_id();
            let mut c = self.clients[0].clone();
            let r = c
                .get_transaction(pb::GetTransactionRequest {
                    tx_id: id.0.to_vec(),
                    include_proof: false,
                })
                .await
                .unwrap_or_else(|e| self.down(0, &e))
                .into_inner();
            match r.status {
                Some(pb::get_transaction_response::Status::Committed(t)) => {
                    assert_eq!(
                        t.receipt.unwrap().code,
                        chatpay_proto::ReceiptCode::Success as i32
                    );
                }
                other => panic!("transfer {id} not committed: {other:?}"),
            }
        }
        // Supply: faucet + recipients + burned fees = the faucet's genesis balance.
        let genesis: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("net/genesis.json")).unwrap(),
        )
        .unwrap();
        let supply = genesis["accounts"][0]["balance"].as_u64().unwrap();
        for i in 0..4 {
            let mut total = self.balance(i, self.faucet.public_key()).await + self.fee * n;
            for r in recipients() {
                total += self.balance(i, r.public_key()).await;
            }
            assert_eq!(total, supply, "validator {i}: money made or lost");
        }
        sent.len()
    }
}
