//! Faulty validators and strangers: a simulated host that attacks the
//! honest validators on their validator port while a fault of the schedule
//! tells it to.
//!
//! ```text
//!  schedule ─▶ World::start ─▶ Orders (attacks now on, round now)
//!                                 │ every ATTACK_EVERY_MS
//!                                 ▼
//!   adversary host ── Deliver / FetchBlock ──▶ every honest validator
//! ```
//!
//! The attacker holds the key of the faulty validator it plays (the real
//! validator with that key runs on, honestly, beside it), and, for foreign
//! certificates, every validator's key as another network using the same
//! keys would. A stranger holds no validator key.

use super::net::{PORT, SimConnector};
use super::schedule::Fault;
use super::{HEAL_MS, SETTLE_MS, host};
use crate::validator_key;
use chatpay_node::consensus::core::genesis_certificate;
use chatpay_node::consensus::leader::round_robin;
use chatpay_node::consensus::messages::{Block, Proposal, Timeout, Vote};
use chatpay_node::consensus::wire::ConsensusMessage;
use chatpay_node::execution::state_tree;
use chatpay_node::genesis::Genesis;
use chatpay_node::storage::{MemoryStore, Store};
use chatpay_proto::pb::validator_client::ValidatorClient;
use chatpay_proto::{
    BlockHeader, ChainBinding, QuorumCertificate, SecretKey, ValidatorSignature, merkle_root, pb,
    sha256,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// How often the adversary acts while an attack is on (ms).
const ATTACK_EVERY_MS: u64 = 20;
/// Future rounds a flooding leader signs a proposal for, per tick.
const FLOOD_PER_TICK: u64 = 16;

/// What the adversary is told by the simulation loop.
#[derive(Default)]
pub struct Orders {
    /// Attacks on now.
    pub attacks: Mutex<Vec<Fault>>,
    /// The highest round an honest validator signed in.
    pub round: AtomicU64,
    /// Messages sent so far.
    pub sent: AtomicU64,
}

impl Orders {
    fn attacks(&self) -> Vec<Fault> {
        self.attacks.lock().expect("orders").clone()
    }
}

/// Whether a fault is an attack this module carries out.
pub fn is_attack(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::FloodFutureProposals(_) | Fault::ForeignCertificates(_) | Fault::StrangerFlood
    )
}

/// The adversary's host: acts on `orders` until the simulation ends.
/// `chain` is a store to read public chain data from (the committed head
/// and its certificate, as any client can), one of an honest validator's.
pub async fn run(
    n: usize,
    genesis: Arc<Genesis>,
    chain: Arc<MemoryStore>,
    orders: Arc<Orders>,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xbad_c0de);
    let mut clients: Vec<ValidatorClient<Channel>> = Vec::new();
    let mut streams = Vec::new();
    for v in 0..n {
        let client = ValidatorClient::new(SimConnector::dial(&format!("{}:{PORT}", host(v)))?);
        streams.push(open_stream(client.clone()));
        clients.push(client);
    }
    let forge = Forge::new(n, &genesis, chain);
    while super::now_ms() < HEAL_MS + SETTLE_MS {
        tokio::time::sleep(Duration::from_millis(ATTACK_EVERY_MS)).await;
        let round = orders.round.load(Ordering::Relaxed);
        for attack in orders.attacks() {
            let messages = forge.messages(&attack, round, &mut rng);
            for (to, message) in messages {
                if let Fault::StrangerFlood = attack {
                    let hash = sha256(&rng.random::<u64>().to_be_bytes());
                    let fetch = pb::FetchBlockRequest {
                        block_hash: hash.0.to_vec(),
                    };
                    let mut client = clients[to].clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(SEND_BOUND, client.fetch_block(fetch)).await;
                    });
                }
                // Dropped when the stream is full or broken, as a peer's.
                if streams[to]
                    .try_send(pb::ConsensusMessage::from(&message))
                    .is_ok()
                {
                    orders.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// How long one attacking call may take.
const SEND_BOUND: Duration = Duration::from_millis(500);
/// Messages queued per validator's stream.
const STREAM_QUEUE: usize = 4_096;

/// A consensus stream to one validator, reopened when it breaks (every
/// message goes through the validator's own checks, as a peer's would).
fn open_stream(client: ValidatorClient<Channel>) -> mpsc::Sender<pb::ConsensusMessage> {
    let (tx, mut rx) = mpsc::channel::<pb::ConsensusMessage>(STREAM_QUEUE);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let (inner_tx, inner_rx) = mpsc::channel(STREAM_QUEUE);
            let _ = inner_tx.try_send(first);
            let mut client = client.clone();
            let call = tokio::spawn(async move {
                let _ = client.stream(ReceiverStream::new(inner_rx)).await;
            });
            while let Some(m) = rx.recv().await {
                if inner_tx.send(m).await.is_err() {
                    break;
                }
            }
            call.abort();
        }
    });
    tx
}

/// Makes the attackers' messages.
struct Forge {
    n: usize,
    chain: ChainBinding,
    /// Public chain data: the committed head and its certificate.
    store: Arc<MemoryStore>,
}

impl Forge {
    fn new(n: usize, genesis: &Arc<Genesis>, store: Arc<MemoryStore>) -> Self {
        Self {
            n,
            chain: ChainBinding::genesis(genesis.hash()),
            store,
        }
    }

    /// (recipient, message) pairs of one tick of `attack` in `round`.
    fn messages(
        &self,
        attack: &Fault,
        round: u64,
        rng: &mut SmallRng,
    ) -> Vec<(usize, ConsensusMessage)> {
        let mut out = Vec::new();
        match attack {
            Fault::FloodFutureProposals(v) => {
                for _ in 0..FLOOD_PER_TICK {
                    let ahead = rng.random_range(1..1_000u64);
                    let r = next_led(round + ahead, *v, self.n);
                    if let Some(p) = self.proposal(*v, r) {
                        self.to_all_but(*v, &ConsensusMessage::Proposal(Box::new(p)), &mut out);
                    }
                }
            }
            Fault::ForeignCertificates(v) => {
                let r = round + rng.random_range(1..4u64);
                let t = self.foreign_timeout(*v, r);
                self.to_all_but(*v, &ConsensusMessage::Timeout(t), &mut out);
            }
            Fault::StrangerFlood => {
                let stranger = SecretKey::from_slice(&[0x5a; 32]).expect("a valid scalar");
                let claimed = rng.random_range(0..self.n);
                let block_hash = sha256(&rng.random::<u64>().to_be_bytes());
                let vote = Vote {
                    block_hash,
                    round,
                    height: 1,
                    voter: u32::try_from(claimed).expect("small"),
                    signature: stranger.sign_digest(&Vote::digest(
                        &self.chain,
                        &block_hash,
                        round,
                        1,
                    )),
                };
                let to = round_robin(round + 1, self.n) as usize;
                out.push((to, ConsensusMessage::Vote(vote)));
            }
            _ => {}
        }
        out
    }

    fn to_all_but(&self, v: usize, m: &ConsensusMessage, out: &mut Vec<(usize, ConsensusMessage)>) {
        out.extend((0..self.n).filter(|to| *to != v).map(|to| (to, m.clone())));
    }

    /// Validator `v`'s signed proposal for round `round` (which it leads)
    /// of an empty block on the committed head, with the head's
    /// certificate: a block every validator holding the head could execute
    /// and keep. `None` while the head has no certificate to show.
    fn proposal(&self, v: usize, round: u64) -> Option<Proposal> {
        let head = self.store.last_header().ok()??;
        let justify = if head.height == 0 {
            genesis_certificate(&head)
        } else {
            self.store.block(head.height).ok()??.certificate?
        };
        let burned = self.store.burned().ok()?;
        let header = BlockHeader {
            genesis_hash: head.genesis_hash,
            height: head.height + 1,
            round,
            parent_hash: head.hash(),
            proposer: u32::try_from(v).expect("small"),
            timestamp_ms: head.timestamp_ms,
            tx_count: 0,
            tx_root: merkle_root(&[]),
            state_root: state_tree::update(self.store.as_ref(), head.height + 1, &[], burned)
                .ok()?
                .root,
        };
        let block = Block {
            header,
            transactions: Vec::new(),
            justify,
        };
        let bytes = Proposal::signing_bytes(&self.chain, &block, None);
        Some(Proposal {
            signature: validator_key(v).sign(&bytes),
            block,
            timeout_certificate: None,
        })
    }

    /// Validator `v`'s timeout of `round`, carrying a certificate of round
    /// `round - 1` over a block of another network whose validators use the
    /// same keys.
    fn foreign_timeout(&self, v: usize, round: u64) -> Timeout {
        let elsewhere = ChainBinding::genesis(sha256(b"another network, same keys"));
        let qc_round = round.saturating_sub(1);
        let block_hash = sha256(&qc_round.to_be_bytes());
        let digest = Vote::digest(&elsewhere, &block_hash, qc_round, 1);
        let high_qc = QuorumCertificate {
            block_hash,
            round: qc_round,
            height: 1,
            signatures: (0..self.n)
                .map(|i| ValidatorSignature {
                    validator: u32::try_from(i).expect("small"),
                    signature: validator_key(i).sign_digest(&digest),
                })
                .collect(),
        };
        Timeout {
            round,
            high_qc,
            sender: u32::try_from(v).expect("small"),
            signature: validator_key(v).sign_digest(&Timeout::digest(&self.chain, round, qc_round)),
            last_round_tc: None,
        }
    }
}

/// The first round from `from` on that `v` leads by round-robin (after
/// a timeout: its proposals carry no certificate of the round before).
fn next_led(from: u64, v: usize, n: usize) -> u64 {
    (from..from + n as u64)
        .find(|r| round_robin(*r, n) as usize == v)
        .expect("every validator leads one round in n")
}
