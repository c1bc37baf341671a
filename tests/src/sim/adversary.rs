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
use super::{EPOCH_MS, HEAL_MS, SETTLE_MS, host};
use crate::validator_key;
use chatpay_node::consensus::core::genesis_certificate;
use chatpay_node::consensus::leader::leader;
use chatpay_node::consensus::messages::{Block, Proposal, Timeout, Vote};
use chatpay_node::consensus::wire::ConsensusMessage;
use chatpay_node::execution::check_signature;
use chatpay_node::genesis::Genesis;
use chatpay_node::ledger::Ledger;
use chatpay_node::storage::MemoryStore;
use chatpay_proto::pb::validator_client::ValidatorClient;
use chatpay_proto::{
    BlockHeader, ChainBinding, QuorumCertificate, SecretKey, ValidatorSignature, pb, sha256,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// How often the adversary acts while an attack is on (ms).
const ATTACK_EVERY_MS: u64 = 20;
/// Future rounds a flooding leader signs a proposal for, per tick.
const FLOOD_PER_TICK: u64 = 8;

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
pub async fn run(
    n: usize,
    genesis: Arc<Genesis>,
    orders: Arc<Orders>,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xbad_c0de);
    let mut clients: Vec<ValidatorClient<Channel>> = Vec::new();
    for v in 0..n {
        clients.push(ValidatorClient::new(SimConnector::dial(&format!(
            "{}:{PORT}",
            host(v)
        ))?));
    }
    let forge = Forge::new(n, &genesis);
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
                    let _ = timeout(clients[to].fetch_block(fetch)).await;
                }
                let _ = timeout(clients[to].deliver(pb::ConsensusMessage::from(&message))).await;
                orders.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

async fn timeout<T>(call: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(200), call)
        .await
        .ok()
}

/// Makes the attackers' messages.
struct Forge {
    n: usize,
    chain: ChainBinding,
    genesis: BlockHeader,
    /// The execution of an empty block on genesis: (tx root, state digest).
    empty: (chatpay_proto::Hash, chatpay_proto::Hash),
}

impl Forge {
    fn new(n: usize, genesis: &Arc<Genesis>) -> Self {
        let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), genesis.clone())
            .expect("a ledger over a fresh store");
        let out = ledger
            .execute_on(&[], &[], &check_signature)
            .expect("an empty block executes");
        Self {
            n,
            chain: ChainBinding::genesis(genesis.hash()),
            genesis: genesis.header(),
            empty: (out.tx_root, out.state_digest),
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
                    let ahead = rng.random_range(1..200u64);
                    let r = next_led(round + ahead, *v, self.n);
                    let p = self.proposal(*v, r);
                    self.to_all_but(*v, &ConsensusMessage::Proposal(Box::new(p)), &mut out);
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
                let to = leader(round + 1, self.n) as usize;
                out.push((to, ConsensusMessage::Vote(vote)));
            }
            _ => {}
        }
        out
    }

    fn to_all_but(&self, v: usize, m: &ConsensusMessage, out: &mut Vec<(usize, ConsensusMessage)>) {
        out.extend((0..self.n).filter(|to| *to != v).map(|to| (to, m.clone())));
    }

    /// Validator `v`'s signed proposal of an empty block on genesis for
    /// round `round` (which it leads).
    fn proposal(&self, v: usize, round: u64) -> Proposal {
        let header = BlockHeader {
            genesis_hash: self.genesis.genesis_hash,
            height: 1,
            round,
            parent_hash: self.genesis.hash(),
            proposer: u32::try_from(v).expect("small"),
            timestamp_ms: EPOCH_MS,
            tx_count: 0,
            tx_root: self.empty.0,
            state_digest: self.empty.1,
        };
        let block = Block {
            header,
            transactions: Vec::new(),
            justify: genesis_certificate(&self.genesis),
        };
        let bytes = Proposal::signing_bytes(&self.chain, &block, None);
        Proposal {
            signature: validator_key(v).sign(&bytes),
            block,
            timeout_certificate: None,
        }
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

/// The first round from `from` on that `v` leads.
fn next_led(from: u64, v: usize, n: usize) -> u64 {
    (from..from + n as u64)
        .find(|r| leader(*r, n) as usize == v)
        .expect("every validator leads one round in n")
}
