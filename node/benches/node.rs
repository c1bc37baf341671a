//! Micro-benchmarks of a validator's per-block work, on blocks of 1,000
//! chat payments from 1,000 senders:
//! - `execute`: executing a block on the committed state (in memory and on
//!   RocksDB), checking every signature and, as for transfers the mempool
//!   already checked, none;
//! - `commit`: writing an executed block durably (RocksDB, fsync) and, for
//!   contrast, to memory;
//! - `consensus`: four consensus cores in one thread taking a block of 1,000
//!   pending transfers from proposal to commit on every core: the leader's
//!   proposal, the votes on it, and the (empty) blocks whose certificates
//!   commit it, every message through its wire encoding;
//! - `mempool`: with 20,000 transfers pending, admitting 1,000 more (their
//!   signatures found in the cache) and dropping them as committed, and
//!   taking a proposal's batch of 1,000.
//!
//! `cargo bench -p chatpay-node` (or `make microbench`).

use chatpay_node::consensus::core::{Core, CoreConfig, Input, Output};
use chatpay_node::consensus::safety::SafetyRules;
use chatpay_node::consensus::wire::ConsensusMessage;
use chatpay_node::execution::check_signature;
use chatpay_node::genesis::{AccountFile, Genesis, GenesisFile, ValidatorFile};
use chatpay_node::ledger::Ledger;
use chatpay_node::mempool::{Mempool, MempoolConfig};
use chatpay_node::storage::{MemoryStore, RocksStore, Store};
use chatpay_proto::{Address, BlockHeader, Output as Pay, SecretKey, SignedTransfer, Transfer, pb};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const CHAIN: &str = "chatpay-bench";
const FEE: u64 = 1_000;
const BLOCK: usize = 1_000;
const VALIDATORS: usize = 4;

fn secret(tag: u8, i: usize) -> SecretKey {
    let mut b = [0u8; 32];
    b[0] = tag;
    b[28..].copy_from_slice(&u32::try_from(i + 1).expect("small").to_be_bytes());
    SecretKey::from_slice(&b).expect("a valid scalar")
}

/// Senders, and a genesis funding each of them.
struct Fixture {
    accounts: Vec<SecretKey>,
    genesis: Arc<Genesis>,
}

impl Fixture {
    fn new() -> Self {
        let accounts: Vec<SecretKey> = (0..BLOCK).map(|i| secret(0x22, i)).collect();
        let file = GenesisFile {
            chain_id: CHAIN.into(),
            hrp: "cp".into(),
            decimals: 6,
            symbol: "CPY".into(),
            fee_per_transfer: FEE,
            genesis_time_ms: 0,
            validators: (0..VALIDATORS)
                .map(|i| ValidatorFile {
                    public_key: hex::encode(secret(0x11, i).public_key().as_bytes()),
                    network_address: format!("127.0.0.1:{}", 9000 + i),
                })
                .collect(),
            accounts: accounts
                .iter()
                .map(|k| AccountFile {
                    address: Address::new("cp", k.public_key().clone())
                        .expect("valid hrp")
                        .to_string(),
                    balance: 1_000_000_000_000,
                })
                .collect(),
        };
        let genesis = Arc::new(Genesis::from_file(file).expect("a valid genesis"));
        Self { accounts, genesis }
    }

    /// One block: sender `i` pays sender `i + 1` with `nonce`.
    fn block(&self, nonce: u64) -> Vec<SignedTransfer> {
        let n = self.accounts.len();
        (0..n)
            .map(|i| {
                let pay = Pay {
                    recipient: self.accounts[(i + 1) % n].public_key().clone(),
                    amount: 1_250,
                };
                Transfer::new(
                    self.genesis.hash(),
                    self.accounts[i].public_key().clone(),
                    nonce,
                    FEE,
                    vec![pay],
                    b"lunch".to_vec(),
                )
                .expect("within the limits")
                .sign(&self.accounts[i])
            })
            .collect()
    }

    fn ledger(&self, store: Arc<dyn Store>) -> Arc<Ledger> {
        Arc::new(Ledger::open(store, self.genesis.clone()).expect("opens"))
    }
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new_empty())
}

fn rocks(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(RocksStore::open(dir.path()).expect("opens"))
}

fn execute(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("execute_1000_transfers");
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.sample_size(20);
    let txs = f.block(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, store) in [("memory", memory()), ("rocksdb", rocks(&dir))] {
        let ledger = f.ledger(store);
        g.bench_function(format!("{name}/checking_signatures"), |b| {
            b.iter(|| {
                ledger
                    .execute_on(&[], 0, &txs, &check_signature)
                    .expect("executes")
            })
        });
        g.bench_function(format!("{name}/signatures_checked_on_admission"), |b| {
            b.iter(|| {
                ledger
                    .execute_on(&[], 0, &txs, &|_| true)
                    .expect("executes")
            })
        });
    }
    g.finish();
}

fn commit(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("commit_1000_transfers");
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.sample_size(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, store) in [("memory", memory()), ("rocksdb_fsync", rocks(&dir))] {
        let ledger = f.ledger(store);
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let parent = ledger.last_header().expect("a head");
                    let txs = f.block(parent.height + 1);
                    let out = ledger
                        .execute_on(&[], 0, &txs, &|_| true)
                        .expect("executes");
                    let header = BlockHeader {
                        genesis_hash: f.genesis.hash(),
                        height: parent.height + 1,
                        round: parent.height + 1,
                        parent_hash: parent.hash(),
                        proposer: 0,
                        timestamp_ms: parent.timestamp_ms + 1,
                        tx_count: u32::try_from(txs.len()).expect("small"),
                        tx_root: out.tx_root,
                        state_root: out.state_root,
                    };
                    (header, txs, out)
                },
                |(header, txs, out)| {
                    ledger
                        .commit_executed(header, txs, None, out)
                        .expect("commits")
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// Four cores exchanging messages in one thread, instantly and in order.
struct Cluster {
    cores: Vec<Core>,
    ledgers: Vec<Arc<Ledger>>,
    mempools: Vec<Arc<Mutex<Mempool>>>,
    queue: VecDeque<(usize, Input)>,
    now_ms: u64,
    nonce: u64,
}

impl Cluster {
    fn new(f: &Fixture) -> Self {
        let mut cluster = Self {
            cores: Vec::new(),
            ledgers: Vec::new(),
            mempools: Vec::new(),
            queue: VecDeque::new(),
            now_ms: 0,
            nonce: 0,
        };
        for i in 0..VALIDATORS {
            let store = memory();
            let ledger = f.ledger(store.clone());
            let mempool = Arc::new(Mutex::new(Mempool::new(
                MempoolConfig::default(),
                f.genesis.hash(),
                FEE,
            )));
            let me = u32::try_from(i).expect("small");
            let genesis_block = ledger.last_header().expect("genesis").hash();
            let safety = SafetyRules::new(
                secret(0x11, i),
                me,
                f.genesis.validator_keys(),
                genesis_block,
                chatpay_proto::ChainBinding::genesis(f.genesis.hash()),
                store,
            )
            .expect("fresh safety data");
            let core = Core::new(
                me,
                CoreConfig::default(),
                ledger.clone(),
                mempool.clone(),
                safety,
            )
            .expect("a core");
            cluster.cores.push(core);
            cluster.ledgers.push(ledger);
            cluster.mempools.push(mempool);
        }
        cluster
            .queue
            .extend((0..VALIDATORS).map(|i| (i, Input::Start)));
        cluster.drain();
        cluster
    }

    /// Signs the next block's transfers and admits them everywhere.
    fn admit_block(&mut self, f: &Fixture) {
        self.nonce += 1;
        for tx in f.block(self.nonce) {
            for (mempool, ledger) in self.mempools.iter().zip(&self.ledgers) {
                let sender = ledger
                    .store()
                    .account(tx.transfer().sender())
                    .expect("reads");
                mempool
                    .lock()
                    .expect("not poisoned")
                    .admit(tx.clone(), sender, None)
                    .expect("admitted");
            }
        }
    }

    /// The waiting leader proposes; everything that follows is delivered
    /// until no core has anything left to say (the block is committed).
    fn round(&mut self) {
        self.queue
            .extend((0..VALIDATORS).map(|i| (i, Input::TransactionsAvailable)));
        self.drain();
    }

    fn drain(&mut self) {
        while let Some((to, input)) = self.queue.pop_front() {
            self.now_ms += 1;
            let outputs = self.cores[to].handle(self.now_ms, input);
            for output in outputs {
                match output {
                    Output::Broadcast(m) => {
                        let bytes = pb::ConsensusMessage::from(&m).encode_to_vec();
                        for peer in (0..VALIDATORS).filter(|p| *p != to) {
                            self.deliver(to, peer, &bytes);
                        }
                    }
                    Output::Send(peer, m) => {
                        let bytes = pb::ConsensusMessage::from(&m).encode_to_vec();
                        self.deliver(to, peer as usize, &bytes);
                    }
                    // Nothing times out, and a waiting leader is woken by
                    // the next block's transfers.
                    Output::SetTimer { .. } | Output::SetProposeTimer { .. } => {}
                    other => panic!("a fault-free round asked for {other:?}"),
                }
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let m = pb::ConsensusMessage::decode(bytes).expect("decodes");
        let m = ConsensusMessage::try_from(m).expect("well formed");
        let from = u32::try_from(from).expect("small");
        self.queue.push_back((to, Input::Message(from, m)));
    }

    fn committed_transfers(&self) -> Vec<u64> {
        self.ledgers
            .iter()
            .map(|l| {
                let head = l.last_header().expect("a head").height;
                (1..=head)
                    .map(|h| {
                        l.store()
                            .block(h)
                            .expect("reads")
                            .map_or(0, |b| u64::from(b.header.tx_count))
                    })
                    .sum()
            })
            .collect()
    }
}

fn consensus(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("consensus_round_4_validators");
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.sample_size(20);
    let cluster = RefCell::new(Cluster::new(f));
    g.bench_function("block_of_1000_transfers_proposed_to_committed", |b| {
        b.iter_batched(
            || cluster.borrow_mut().admit_block(f),
            |()| cluster.borrow_mut().round(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    // The rounds measured did what they claim: every core committed every
    // transfer of every block.
    let cluster = cluster.into_inner();
    let committed = cluster.committed_transfers();
    let all = cluster.nonce * BLOCK as u64;
    assert!(
        committed.iter().all(|c| *c == all),
        "committed {committed:?} transfers of {all}"
    );
}

/// Nonces pending per sender in the mempool benchmark (20 000 in all).
const PENDING_NONCES: u64 = 20;

fn mempool(c: &mut Criterion, f: &Fixture) {
    let mut pool = Mempool::new(MempoolConfig::default(), f.genesis.hash(), FEE);
    let funded = |_: &chatpay_proto::PublicKey| {
        Some(chatpay_proto::Account {
            balance: 1_000_000_000_000,
            ..Default::default()
        })
    };
    for nonce in 1..=PENDING_NONCES {
        for t in f.block(nonce) {
            let sender = funded(t.transfer().sender());
            pool.admit(t, sender, None).expect("admitted");
        }
    }
    let next = f.block(PENDING_NONCES + 1);
    for t in &next {
        pool.signatures().verify(t).expect("valid");
    }
    let mut g = c.benchmark_group("mempool_20000_pending");
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.bench_function("admit_and_drop_1000", |b| {
        b.iter(|| {
            for t in &next {
                let sender = funded(t.transfer().sender());
                pool.admit(t.clone(), sender, None).expect("admitted");
            }
            pool.on_commit(&next, &mut |_| 0);
        });
    });
    g.bench_function("batch_of_1000", |b| {
        b.iter(|| {
            let batch = pool.batch(BLOCK, 4 << 20, &Default::default(), &mut |_| 1);
            assert_eq!(batch.len(), BLOCK);
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let f = Fixture::new();
    mempool(c, &f);
    execute(c, &f);
    commit(c, &f);
    consensus(c, &f);
}

criterion_group!(node_benches, benches);
criterion_main!(node_benches);
