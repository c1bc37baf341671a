//! Whole clusters of consensus cores in one process, on a deterministic
//! simulated network and clock: they commit the same blocks, keep going
//! with a validator down, and stop (without forking) with two down.

use chatpay_node::consensus::core::{Core, CoreConfig, Input, Output};
use chatpay_node::consensus::messages::Proposal;
use chatpay_node::consensus::safety::SafetyRules;
use chatpay_node::consensus::sync::{MAX_SYNC_BLOCKS, committed_block_by_hash, committed_range};
use chatpay_node::consensus::wire::ConsensusMessage;
use chatpay_node::genesis::{AccountFile, Genesis, GenesisFile, ValidatorFile};
use chatpay_node::ledger::Ledger;
use chatpay_node::mempool::{Mempool, MempoolConfig};
use chatpay_node::storage::{MemoryStore, Store};
use chatpay_proto::{Address, ChainBinding, Output as Pay, SecretKey, Transfer};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

const CHAIN: &str = "chatpay-sim";

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n + 1;
    SecretKey::from_slice(&b).unwrap()
}

fn genesis(n: u8) -> Arc<Genesis> {
    let file = GenesisFile {
        chain_id: CHAIN.into(),
        hrp: "cp".into(),
        decimals: 6,
        symbol: "CPY".into(),
        fee_per_transfer: 1,
        genesis_time_ms: 0,
        validators: (0..n)
            .map(|i| ValidatorFile {
                public_key: hex::encode(key(i).public_key().as_bytes()),
                network_address: format!("127.0.0.1:{}", 9000 + u16::from(i)),
            })
            .collect(),
        accounts: vec![AccountFile {
            address: Address::new("cp", key(100).public_key().clone())
                .unwrap()
                .to_string(),
            balance: 1_000_000,
        }],
    };
    Arc::new(Genesis::from_file(file).unwrap())
}

struct Node {
    core: Core,
    ledger: Arc<Ledger>,
    mempool: Arc<Mutex<Mempool>>,
}

/// A cluster on a FIFO network with a simulated clock; `down` validators
/// neither send nor receive.
struct Cluster {
    nodes: Vec<Node>,
    down: HashSet<usize>,
    queue: VecDeque<(u64, usize, Input)>,
    timers: BTreeMap<(u64, usize, u64, bool), ()>,
    now_ms: u64,
    latency_ms: u64,
    /// A Byzantine leader: each of its proposals gets a signed twin.
    equivocator: Option<usize>,
    /// (reporting node, proposer, round) of double proposals seen.
    evidence: Vec<(usize, u32, u64)>,
    /// Sync requests served.
    syncs: usize,
    /// Messages sent to this validator are also recorded in `tapped`.
    tap: Option<usize>,
    /// Proposals are lost on the way (every round ends by timeout).
    drop_proposals: bool,
    /// One side of a split: messages between these validators and the
    /// others are lost (each side still hears itself). Unlike `down`, they
    /// keep running and their timers fire.
    cut: HashSet<usize>,
    tapped: Vec<(usize, ConsensusMessage)>,
}

impl Cluster {
    fn new(n: u8) -> Self {
        let g = genesis(n);
        let nodes = (0..n)
            .map(|i| {
                let store: Arc<dyn Store> = Arc::new(MemoryStore::new_empty());
                let ledger = Arc::new(Ledger::open(store.clone(), g.clone()).unwrap());
                let mempool = Arc::new(Mutex::new(Mempool::new(
                    MempoolConfig::default(),
                    g.hash(),
                    1,
                )));
                let genesis_block = ledger.last_header().unwrap().hash();
                let safety = SafetyRules::new(
                    key(i),
                    u32::from(i),
                    g.validator_keys(),
                    genesis_block,
                    ChainBinding::genesis(g.hash()),
                    store,
                )
                .unwrap();
                let core = Core::new(
                    u32::from(i),
                    CoreConfig::default(),
                    ledger.clone(),
                    mempool.clone(),
                    safety,
                )
                .unwrap();
                Node {
                    core,
                    ledger,
                    mempool,
                }
            })
            .collect();
        Self {
            nodes,
            down: HashSet::new(),
            queue: VecDeque::new(),
            timers: BTreeMap::new(),
            now_ms: 0,
            latency_ms: 5,
            equivocator: None,
            evidence: Vec::new(),
            syncs: 0,
            tap: None,
            tapped: Vec::new(),
            drop_proposals: false,
            cut: HashSet::new(),
        }
    }

    fn submit(&self, node: usize, nonce: u64) {
        let out = Pay {
            recipient: key(101).public_key().clone(),
            amount: nonce,
        };
        let tx = Transfer::new(
            self.nodes[node].ledger.genesis().hash(),
            key(100).public_key().clone(),
            nonce,
            1,
            vec![out],
            vec![],
        )
        .unwrap()
        .sign(&key(100));
        let n = &self.nodes[node];
        let account = n.ledger.store().account(key(100).public_key()).unwrap();
        n.mempool.lock().unwrap().admit(tx, account, None).unwrap();
    }

    fn dispatch(&mut self, from: usize, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Broadcast(ConsensusMessage::Proposal(p))
                    if self.equivocator == Some(from) =>
                {
                    // Same round, another block (another timestamp), validly
                    // signed with the leader's key: half see one, half the
                    // other, and validator `(from + 1) % n` sees both.
                    let mut twin = (*p).clone();
                    twin.block.header.timestamp_ms += 1;
                    let chain = ChainBinding::genesis(self.nodes[from].ledger.genesis().hash());
                    twin.signature = key(from as u8).sign(&Proposal::signing_bytes(
                        &chain,
                        &twin.block,
                        twin.timeout_certificate.as_ref(),
                    ));
                    let n = self.nodes.len();
                    for to in (0..n).filter(|to| *to != from) {
                        let both = to == (from + 1) % n;
                        if to % 2 == 0 || both {
                            self.send(from, to, ConsensusMessage::Proposal(p.clone()));
                        }
                        if to % 2 == 1 || both {
                            self.send(from, to, ConsensusMessage::Proposal(Box::new(twin.clone())));
                        }
                    }
                }
                Output::DoubleProposal {
                    proposer, round, ..
                } => {
                    self.evidence.push((from, proposer, round));
                }
                Output::Broadcast(m) => {
                    for to in 0..self.nodes.len() {
                        if to != from {
                            self.send(from, to, m.clone());
                        }
                    }
                }
                Output::Send(to, m) => self.send(from, to as usize, m),
                Output::SetTimer { round, after_ms } => {
                    self.timers
                        .insert((self.now_ms + after_ms, from, round, false), ());
                }
                Output::SetProposeTimer { round, after_ms } => {
                    self.timers
                        .insert((self.now_ms + after_ms, from, round, true), ());
                }
                Output::Equivocation(_) | Output::Misbehaviour { .. } => {}
                Output::FetchBlock { peer, hash } => {
                    let server = &self.nodes[peer as usize];
                    let block = match server.core.block(&hash) {
                        Some(b) => Some(b.clone()),
                        None => committed_block_by_hash(server.ledger.store().as_ref(), &hash)
                            .unwrap()
                            .map(|s| s.block),
                    };
                    let input = match block {
                        Some(block) => Input::BlockFetched(peer, Box::new(block)),
                        None => Input::RequestFailed(peer),
                    };
                    self.reply(peer as usize, from, input);
                }
                Output::SyncBlocks { peer, from_height } => {
                    let store = self.nodes[peer as usize].ledger.store().clone();
                    let blocks = committed_range(store.as_ref(), from_height, u64::MAX).unwrap();
                    self.syncs += 1;
                    self.reply(peer as usize, from, Input::Synced(peer, blocks));
                }
            }
        }
    }

    /// A response from `server` to `to`, one round trip later.
    fn reply(&mut self, server: usize, to: usize, input: Input) {
        if !self.down.contains(&server) && !self.down.contains(&to) {
            let at = self.now_ms + 2 * self.latency_ms;
            let pos = self.queue.partition_point(|(t, _, _)| *t <= at);
            self.queue.insert(pos, (at, to, input));
        }
    }

    /// Rebuilds validator `i` from its store, as a restarted process would.
    fn restart(&mut self, i: usize) {
        let g = self.nodes[i].ledger.genesis().clone();
        let store = self.nodes[i].ledger.store().clone();
        let ledger = Arc::new(Ledger::open(store.clone(), g.clone()).unwrap());
        let mempool = Arc::new(Mutex::new(Mempool::new(
            MempoolConfig::default(),
            g.hash(),
            1,
        )));
        let genesis_block = store.block(0).unwrap().unwrap().header.hash();
        let safety = SafetyRules::new(
            key(i as u8),
            i as u32,
            g.validator_keys(),
            genesis_block,
            ChainBinding::genesis(g.hash()),
            store,
        )
        .unwrap();
        let core = Core::new(
            i as u32,
            CoreConfig::default(),
            ledger.clone(),
            mempool.clone(),
            safety,
        )
        .unwrap();
        self.nodes[i] = Node {
            core,
            ledger,
            mempool,
        };
        self.down.remove(&i);
        let out = self.nodes[i].core.handle(self.now_ms, Input::Start);
        self.dispatch(i, out);
    }

    fn send(&mut self, from: usize, to: usize, m: ConsensusMessage) {
        if self.tap == Some(to) && !self.down.contains(&from) {
            self.tapped.push((from, m.clone()));
        }
        if self.drop_proposals && matches!(m, ConsensusMessage::Proposal(_)) {
            return;
        }
        if self.cut.contains(&from) != self.cut.contains(&to) {
            return;
        }
        if !self.down.contains(&from) && !self.down.contains(&to) {
            self.queue.push_back((
                self.now_ms + self.latency_ms,
                to,
                Input::Message(from as u32, m),
            ));
        }
    }

    fn start(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.down.contains(&i) {
                let out = self.nodes[i].core.handle(0, Input::Start);
                self.dispatch(i, out);
            }
        }
    }

    /// Runs until every live node's committed height reaches `height`, or
    /// `deadline_ms` of simulated time passes. Returns whether it got there.
    fn run_until(&mut self, height: u64, deadline_ms: u64) -> bool {
        let live: Vec<usize> = self.live().collect();
        self.run_until_for(&live, height, deadline_ms)
    }

    /// Like `run_until`, watching only `nodes`.
    fn run_until_for(&mut self, nodes: &[usize], height: u64, deadline_ms: u64) -> bool {
        loop {
            if nodes.iter().all(|i| self.height(*i) >= height) {
                return true;
            }
            let next_timer = self.timers.keys().next().map(|k| k.0);
            let next_msg = self.queue.front().map(|(t, _, _)| *t);
            let timer_first = match (next_msg, next_timer) {
                (Some(m), Some(t)) => t < m,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => return false,
            };
            let next_at = if timer_first { next_timer } else { next_msg };
            if next_at.is_some_and(|at| at > deadline_ms) {
                return false; // leave it queued for a later run
            }
            let (at, to, input) = if timer_first {
                self.pop_timer()
            } else {
                self.queue.pop_front().unwrap()
            };
            self.now_ms = self.now_ms.max(at);
            if self.down.contains(&to) {
                continue;
            }
            let out = self.nodes[to].core.handle(self.now_ms, input);
            self.dispatch(to, out);
        }
    }

    fn pop_timer(&mut self) -> (u64, usize, Input) {
        let ((at, node, round, propose), ()) = self.timers.pop_first().unwrap();
        let input = if propose {
            Input::ProposeTimerFired(round)
        } else {
            Input::TimerFired(round)
        };
        (at, node, input)
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.down.contains(i))
    }

    fn height(&self, i: usize) -> u64 {
        self.nodes[i].ledger.last_header().unwrap().height
    }

    /// Every pair of nodes has the same block at every height both have.
    fn assert_agreement(&self) {
        let max = (0..self.nodes.len()).map(|i| self.height(i)).max().unwrap();
        for h in 1..=max {
            let blocks: Vec<_> = self
                .nodes
                .iter()
                .filter_map(|n| n.ledger.store().block(h).unwrap())
                .map(|b| (b.header.hash(), b.header.state_root))
                .collect();
            assert!(
                blocks.windows(2).all(|w| w[0] == w[1]),
                "fork at height {h}: {blocks:?}"
            );
        }
    }

    fn committed_transfers(&self, i: usize) -> u64 {
        let store = self.nodes[i].ledger.store();
        store.account(key(100).public_key()).unwrap().unwrap().nonce
    }
}

#[test]
fn four_validators_commit_the_same_blocks() {
    let mut c = Cluster::new(4);
    for nonce in 1..=30 {
        c.submit((nonce % 4) as usize, nonce);
    }
    c.start();
    assert!(
        c.run_until(10, 60_000),
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    c.assert_agreement();
    // Healthy network: no round timed out (every timer is 1 s, far ahead).
    assert!(c.now_ms < 1_000, "took {} ms of simulated time", c.now_ms);
    assert!(c.nodes[0].core.round() <= 13);
    // Transfers submitted to any validator are committed (each validator's
    // mempool only has its own share; nonces must go in order, so a leader
    // without the next nonce waits for the one that has it).
    assert!(c.run_until(40, 600_000));
    c.assert_agreement();
    for i in 0..4 {
        assert_eq!(c.committed_transfers(i), 30, "node {i}");
    }
}

#[test]
fn three_of_four_keep_committing_and_two_of_four_stop_without_forking() {
    let mut c = Cluster::new(4);
    c.down.insert(3);
    for nonce in 1..=10 {
        c.submit(0, nonce);
    }
    c.start();
    assert!(
        c.run_until(8, 600_000),
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    c.assert_agreement();
    assert_eq!(c.committed_transfers(0), 10);
    // The dead validator failed the first round it was named for and was
    // skipped from then on (round-robin would lose one round in four).
    let timeouts = c.nodes[0].core.stats().timeouts;
    assert!(timeouts <= 2, "{timeouts} rounds timed out");

    let before: Vec<u64> = (0..4).map(|i| c.height(i)).collect();
    c.down.insert(2);
    let progressed = c.run_until(before[0] + 5, c.now_ms + 600_000);
    assert!(!progressed, "two of four down must not commit");
    // At most the blocks already certified before the crash may commit.
    assert!((0..2).all(|i| c.height(i) <= before[i] + 1));
    c.assert_agreement();
}

#[test]
fn a_crashed_validator_is_skipped_as_leader_and_leads_again_once_back() {
    let mut c = Cluster::new(4);
    c.start();
    assert!(c.run_until(5, 600_000));
    c.down.insert(3);
    let timeouts = |c: &Cluster| c.nodes[0].core.stats().timeouts;
    let before = timeouts(&c);
    let h = c.height(0);
    assert!(c.run_until(h + 40, c.now_ms + 600_000));
    // By round-robin it would have led (and lost) about 10 of these rounds.
    // Here only a round it was named for before its crash showed (a
    // certificate still carrying its vote) may time out.
    let lost = timeouts(&c) - before;
    assert!(lost <= 2, "{lost} rounds timed out in 40 blocks");
    c.down.remove(&3);
    let back = c.height(0);
    assert!(c.run_until(back + 20, c.now_ms + 600_000));
    c.assert_agreement();
    let store = c.nodes[0].ledger.store();
    let proposers: Vec<u32> = (back + 1..=c.height(0))
        .map(|h| store.block(h).unwrap().unwrap().header.proposer)
        .collect();
    assert!(
        proposers.contains(&3),
        "it votes again, so it leads again: {proposers:?}"
    );
}

#[test]
fn an_equivocating_leader_causes_no_fork_and_is_reported() {
    let mut c = Cluster::new(4);
    c.equivocator = Some(1);
    for nonce in 1..=10 {
        c.submit(0, nonce);
    }
    c.start();
    // Validator 3 votes for the twins, which never gather a quorum; it misses
    // the blocks that won and fetches them from its peers.
    let reached = c.run_until(12, 600_000);
    assert!(
        reached,
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    c.assert_agreement();
    assert_eq!(c.committed_transfers(0), 10);
    // Validator 2 received both proposals of each round led by 1.
    assert!(
        c.evidence
            .iter()
            .any(|(by, proposer, _)| *by == 2 && *proposer == 1),
        "{:?}",
        c.evidence
    );
}

#[test]
fn a_quiet_chain_advances_at_the_idle_interval() {
    let mut c = Cluster::new(4);
    // A transfer behind a nonce gap (nonce 2, nothing with nonce 1) cannot
    // be ordered yet, so it is no reason to propose.
    for i in 0..4 {
        c.submit(i, 2);
    }
    c.start();
    // Nothing to order: about one block per idle interval (1 s), not a spin.
    assert!(!c.run_until(1_000, 10_000));
    let h = c.height(0);
    assert!((5..=11).contains(&h), "height {h} after 10 s idle");
    assert_eq!(c.committed_transfers(0), 0);
    c.assert_agreement();
    // A transfer reaching the validators (as forwarding will do) is proposed
    // by the next leader at once (a waiting one, or the next to enter its
    // round), and commits well within one idle interval: the block holding it
    // needs two certified descendants, at most two heights above the top.
    // It fills the gap, so the waiting transfer commits with it.
    // A validator that does not want transactions does nothing on the
    // wake-up (the shell then runs it without handing its worker over).
    for i in 0..4 {
        c.submit(i, 1);
        let wanted = c.nodes[i].core.wants_transactions();
        let out = c.nodes[i]
            .core
            .handle(c.now_ms, Input::TransactionsAvailable);
        assert!(wanted || out.is_empty(), "validator {i} acted: {out:?}");
        c.dispatch(i, out);
    }
    let before = c.now_ms;
    let top = (0..4).map(|i| c.height(i)).max().unwrap();
    assert!(c.run_until(top + 2, before + 10_000));
    assert_eq!(c.committed_transfers(0), 2);
    assert!(
        c.now_ms - before < 1_000,
        "committed in {} ms",
        c.now_ms - before
    );
    c.assert_agreement();
}

#[test]
fn a_single_validator_chain_commits() {
    let mut c = Cluster::new(1);
    for nonce in 1..=5 {
        c.submit(0, nonce);
    }
    // Behind a gap (no nonce 6): pending, never ordered, no reason to
    // propose (before, a lone validator proposed empty blocks forever
    // without returning from a step).
    c.submit(0, 7);
    c.start();
    assert!(c.run_until(3, 60_000));
    assert_eq!(c.committed_transfers(0), 5);
    // Then it idles instead of spinning.
    let h = c.height(0);
    assert!(!c.run_until(h + 1_000, c.now_ms + 5_000));
    assert!(
        c.height(0) <= h + 6,
        "height {} after 5 s idle",
        c.height(0)
    );
}

#[test]
fn a_validator_cut_off_catches_up_when_it_returns() {
    let mut c = Cluster::new(4);
    c.down.insert(3);
    for nonce in 1..=20 {
        c.submit(0, nonce);
    }
    c.start();
    // Far behind (more than the fetch depth): it must sync by height range.
    assert!(c.run_until(40, 600_000));
    assert_eq!(c.height(3), 0);
    c.down.remove(&3);
    let target = c.height(0) + 2;
    assert!(
        c.run_until(target, c.now_ms + 600_000),
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    assert!(c.syncs > 0, "caught up without a range sync");
    c.assert_agreement();
    assert_eq!(c.committed_transfers(3), 20);
    let digests: Vec<_> = (0..4)
        .map(|i| {
            c.nodes[i]
                .ledger
                .store()
                .block(target)
                .unwrap()
                .unwrap()
                .header
                .state_root
        })
        .collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn a_restarted_validator_resumes_from_its_store_and_rejoins() {
    let mut c = Cluster::new(4);
    for nonce in 1..=10 {
        c.submit(1, nonce);
    }
    c.start();
    assert!(c.run_until(6, 600_000));
    // Validator 2 stops; the others go on without it for a while.
    c.down.insert(2);
    let stopped_at = c.height(2);
    assert!(c.run_until(stopped_at + 8, c.now_ms + 600_000));
    c.restart(2);
    let target = c.height(0) + 3;
    assert!(
        c.run_until(target, c.now_ms + 600_000),
        "heights {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
    );
    c.assert_agreement();
    // It votes again: with validator 3 down, 0, 1 and 2 are the quorum.
    c.down.insert(3);
    let h = c.height(0);
    assert!(c.run_until_for(&[0, 1, 2], h + 3, c.now_ms + 600_000));
    c.assert_agreement();
}

#[test]
fn synced_blocks_from_a_lying_peer_commit_nothing_unproven() {
    let mut c = Cluster::new(4);
    c.down.insert(3);
    c.start();
    assert!(c.run_until(12, 600_000));
    let served = committed_range(c.nodes[0].ledger.store().as_ref(), 1, 10).unwrap();
    assert_eq!(served.len(), 10);
    let feed = |c: &mut Cluster, blocks| {
        let now = c.now_ms;
        let _ = c.nodes[3].core.handle(now, Input::Synced(0, blocks));
        c.height(3)
    };
    // One certified block alone proves nothing: it may still be abandoned.
    assert_eq!(feed(&mut c, served[..1].to_vec()), 0);
    // A batch that does not start at the receiver's head is not linked.
    assert_eq!(feed(&mut c, served[1..].to_vec()), 0);
    // A forged certificate anywhere in the part to commit: nothing commits.
    let mut forged = served.clone();
    let sig = &mut forged[5].block.justify.signatures[0].signature;
    *sig = chatpay_proto::Signature::from_slice(&[7u8; 64]).unwrap();
    forged[4].certificate = None;
    assert_eq!(feed(&mut c, forged), 0);
    // A header altered in transit (its state digest): the chain breaks there
    // and nothing from that block on commits; a proven prefix before it may.
    let mut altered = served.clone();
    altered[6].block.header.state_root = chatpay_proto::sha256(b"forged");
    let h = feed(&mut c, altered);
    assert!(h < 7, "committed {h} past an altered block");
    // The honest rest commits the prefix its last certified pair proves.
    let h = feed(&mut c, served[h as usize..].to_vec());
    assert!((8..=9).contains(&h), "committed {h}");
    for height in 1..=h {
        let mine = c.nodes[3].ledger.store().block(height).unwrap().unwrap();
        let theirs = c.nodes[0].ledger.store().block(height).unwrap().unwrap();
        assert_eq!(mine.header.hash(), theirs.header.hash());
        assert!(
            mine.certificate.is_some(),
            "height {height} stored without its QC"
        );
    }
}

#[test]
fn a_validator_far_behind_syncs_batch_after_batch_without_waiting_for_proposals() {
    let mut c = Cluster::new(4);
    c.down.insert(3);
    c.start();
    let top = 3 * MAX_SYNC_BLOCKS + 10;
    assert!(c.run_until(top, 6_000_000));
    let top = c.height(0);
    // Validator 3 hears nothing but the answers to its own requests.
    let mut requests = 0;
    let mut next = Some(1);
    while let Some(from) = next {
        requests += 1;
        assert!(requests <= 6, "still asking after {requests} requests");
        let served = committed_range(c.nodes[0].ledger.store().as_ref(), from, u64::MAX).unwrap();
        let before = c.height(3);
        let now = c.now_ms;
        let out = c.nodes[3].core.handle(now, Input::Synced(0, served));
        let asked: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Output::SyncBlocks {
                    peer: 0,
                    from_height,
                } => Some(*from_height),
                _ => None,
            })
            .collect();
        if c.height(3) > before {
            assert_eq!(asked, vec![c.height(3) + 1], "after height {}", c.height(3));
        } else {
            assert!(
                asked.is_empty(),
                "asked {asked:?} after a batch that committed nothing"
            );
        }
        next = asked.first().copied();
    }
    // Batches of at most MAX_SYNC_BLOCKS, then one that commits nothing;
    // the last block or two wait for a certificate that proves them.
    assert_eq!(requests, top.div_ceil(MAX_SYNC_BLOCKS) + 1);
    assert!(
        c.height(3) + 2 >= top,
        "stopped at {} of {top}",
        c.height(3)
    );
    c.assert_agreement();
}

#[test]
fn every_validator_crashing_at_once_resumes_from_what_it_recorded() {
    for stop_at in [3u64, 5, 8, 13] {
        let mut c = Cluster::new(4);
        for nonce in 1..=10 {
            c.submit(0, nonce);
        }
        c.start();
        assert!(c.run_until(stop_at, 600_000));
        // All crash: messages in flight and timers are lost; each restarts
        // from its own store (committed blocks, recorded uncommitted blocks,
        // highest certificate and safety record).
        c.queue.clear();
        c.timers.clear();
        for i in 0..4 {
            c.restart(i);
        }
        let top = (0..4).map(|i| c.height(i)).max().unwrap();
        assert!(
            c.run_until(top + 3, c.now_ms + 600_000),
            "stalled after a full restart at {stop_at}: heights {:?}",
            (0..4).map(|i| c.height(i)).collect::<Vec<_>>()
        );
        c.assert_agreement();
    }
}

#[test]
fn every_validator_restarting_after_timing_out_of_a_round_entered_by_timeout_resumes() {
    let mut c = Cluster::new(4);
    c.start();
    assert!(c.run_until(3, 600_000));
    // No proposal arrives: every round ends by a TC, and every validator
    // times out of the round that TC took it into.
    c.drop_proposals = true;
    let before = c.nodes[0].core.round();
    assert!(!c.run_until(u64::MAX, c.now_ms + 20_000));
    for n in &c.nodes {
        let s = n.core.stats();
        // Timed out of a round after `before`, which only a TC entered.
        assert!(s.last_voted_round > before, "{s:?}");
    }
    // All restart. Their safety records forbid a timeout below the round
    // each timed out of, and no certificate of a lower round gets them
    // there: only the recorded TC does (or they wait for each other).
    c.queue.clear();
    c.timers.clear();
    c.drop_proposals = false;
    for i in 0..4 {
        c.restart(i);
    }
    let top = (0..4).map(|i| c.height(i)).max().unwrap();
    assert!(
        c.run_until(top + 3, c.now_ms + 600_000),
        "stalled after a full restart: heights {:?}, rounds {:?}",
        (0..4).map(|i| c.height(i)).collect::<Vec<_>>(),
        c.nodes.iter().map(|n| n.core.round()).collect::<Vec<_>>()
    );
    c.assert_agreement();
}

#[test]
fn after_a_long_partition_the_chain_resumes_within_a_base_timeout() {
    let config = CoreConfig::default();
    let mut c = Cluster::new(4);
    c.start();
    assert!(c.run_until(3, 600_000));
    // Every round ends by timeout until round timeouts reach their cap.
    c.drop_proposals = true;
    assert!(!c.run_until(u64::MAX, c.now_ms + 4 * config.max_timeout_ms));
    // Then a 2 | 2 split: neither side can certify a timeout, so every
    // timeout sent in the round they are in is lost.
    c.cut = [2, 3].into();
    let deadline = c.now_ms + 3 * config.max_timeout_ms + config.max_timeout_ms / 3;
    assert!(!c.run_until(u64::MAX, deadline));
    c.now_ms = deadline;
    let h = (0..4).map(|i| c.height(i)).max().unwrap();
    c.cut.clear();
    c.drop_proposals = false;
    assert!(
        c.run_until(h + 1, deadline + 2 * config.base_timeout_ms),
        "no commit within {} ms of the heal: rounds {:?}",
        2 * config.base_timeout_ms,
        c.nodes.iter().map(|n| n.core.round()).collect::<Vec<_>>()
    );
    c.assert_agreement();
}

#[test]
fn a_validator_times_out_with_f_plus_one_others_not_at_its_own_timer() {
    let mut c = Cluster::new(4);
    c.start();
    assert!(c.run_until(3, 600_000));
    let round = c.nodes[3].core.round();
    // Validator `i` times out of `round` (its timer fires), and what it
    // broadcast is handed to validator 3 alone.
    let timeout_of = |c: &mut Cluster, i: usize| -> ConsensusMessage {
        assert_eq!(c.nodes[i].core.round(), round, "validator {i}");
        let now = c.now_ms;
        c.nodes[i]
            .core
            .handle(now, Input::TimerFired(round))
            .into_iter()
            .find_map(|o| match o {
                Output::Broadcast(m @ ConsensusMessage::Timeout(_)) => Some(m),
                _ => None,
            })
            .expect("a timeout is broadcast")
    };
    let times_out = |out: &[Output]| {
        out.iter().any(|o| {
            matches!(o, Output::Broadcast(ConsensusMessage::Timeout(t)) if t.round == round && t.sender == 3)
        })
    };
    let now = c.now_ms;
    // One validator (f) timing out could be a liar: validator 3 waits.
    let first = timeout_of(&mut c, 1);
    let out = c.nodes[3].core.handle(now, Input::Message(1, first));
    assert!(!times_out(&out), "timed out on f timeouts: {out:?}");
    // f + 1: at least one honest validator gave up on the round.
    let second = timeout_of(&mut c, 0);
    let out = c.nodes[3].core.handle(now, Input::Message(0, second));
    assert!(times_out(&out), "no timeout after f + 1: {out:?}");
    assert_eq!(c.nodes[3].core.stats().timeouts, 1);
    // Its own timer, firing later, repeats the timeout but counts no
    // second timed-out round.
    let out = c.nodes[3].core.handle(now + 1, Input::TimerFired(round));
    assert!(times_out(&out) || c.nodes[3].core.round() > round);
    assert_eq!(c.nodes[3].core.stats().timeouts, 1);
}

#[test]
fn after_a_failed_request_the_next_sign_of_the_gap_asks_another_signer() {
    let mut c = Cluster::new(4);
    for nonce in 1..=4 {
        c.submit(0, nonce);
    }
    c.start();
    assert!(c.run_until(2, 600_000));
    c.down.insert(3);
    c.tap = Some(3);
    let h = c.height(0);
    assert!(c.run_until(h + 4, c.now_ms + 600_000));
    let (from, proposal) = c
        .tapped
        .iter()
        .rev()
        .find_map(|(from, m)| match m {
            ConsensusMessage::Proposal(p) => {
                Some((*from as u32, m.clone(), p.block.justify.clone()))
            }
            _ => None,
        })
        .map(|(from, m, justify)| (from, (m, justify)))
        .unwrap();
    let (proposal, justify) = proposal;
    c.down.remove(&3);
    let asked = |out: &[Output]| -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                Output::FetchBlock { peer, .. } | Output::SyncBlocks { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    };
    let now = c.now_ms;
    let out = c.nodes[3]
        .core
        .handle(now, Input::Message(from, proposal.clone()));
    // The proposer, or a validator that signed the certificate of the
    // missing block, is asked first.
    let first = asked(&out);
    assert_eq!(first.len(), 1, "{out:?}");
    let first = first[0];
    let signed = |v: u32| justify.signatures.iter().any(|s| s.validator == v);
    assert!(first == from || signed(first), "asked {first}");
    // While that request is in flight, nothing more is asked.
    let out = c.nodes[3]
        .core
        .handle(now + 1, Input::Message(from, proposal.clone()));
    assert!(asked(&out).is_empty(), "{out:?}");
    // It fails. Nothing is asked from the failure itself (a peer that fails
    // at once would be asked in a loop)...
    let out = c.nodes[3].core.handle(now + 2, Input::RequestFailed(first));
    assert!(asked(&out).is_empty(), "{out:?}");
    // ...but the next sign of the gap, though it comes long before the
    // request would have expired, asks another validator that signed the
    // certificate of the missing block.
    let out = c.nodes[3]
        .core
        .handle(now + 3, Input::Message(from, proposal));
    let again = asked(&out);
    assert_eq!(again.len(), 1, "{out:?}");
    assert!(again[0] != first && again[0] != 3, "asked {again:?}");
    assert!(signed(again[0]));
    // A failure reported for a request no longer in flight changes nothing.
    let out = c.nodes[3].core.handle(now + 4, Input::RequestFailed(first));
    assert!(asked(&out).is_empty(), "{out:?}");
    // The cluster then brings it up to date.
    let target = c.height(0) + 2;
    assert!(c.run_until(target, c.now_ms + 600_000));
    c.assert_agreement();
}

#[test]
fn a_non_leader_cannot_displace_the_leaders_proposal_while_its_parent_is_fetched() {
    let mut c = Cluster::new(4);
    c.start();
    assert!(c.run_until(2, 600_000));
    c.down.insert(3);
    c.tap = Some(3);
    let h = c.height(0);
    assert!(c.run_until(h + 3, c.now_ms + 600_000));
    let p = c
        .tapped
        .iter()
        .rev()
        .find_map(|(_, m)| match m {
            ConsensusMessage::Proposal(p) => Some((**p).clone()),
            _ => None,
        })
        .unwrap();
    let leader = p.block.header.proposer;
    let round = p.block.round();
    // Validator 3 lacks the parent, so it cannot tell who leads the round.
    // Another validator signs the leader's block as its own proposal.
    let impostor = (0..3u32).find(|v| *v != leader).unwrap();
    let far_block = p.block.clone();
    let mut block = p.block.clone();
    block.header.proposer = impostor;
    let chain = ChainBinding::genesis(c.nodes[0].ledger.genesis().hash());
    let bytes = Proposal::signing_bytes(&chain, &block, p.timeout_certificate.as_ref());
    let forged = Proposal {
        signature: key(impostor as u8).sign(&bytes),
        block,
        timeout_certificate: p.timeout_certificate.clone(),
    };
    let now = c.now_ms;
    let node = &mut c.nodes[3].core;
    let mut out = node.handle(
        now,
        Input::Message(leader, ConsensusMessage::Proposal(Box::new(p))),
    );
    let forged = ConsensusMessage::Proposal(Box::new(forged));
    out.extend(node.handle(now + 1, Input::Message(impostor, forged)));
    assert_eq!(node.stats().held.proposals_waiting, 2);
    // A block claiming a height far above its certificate's (so that it
    // would wait for ancestors that never come) is refused on receipt.
    let third = (0..3u32).find(|v| *v != leader && *v != impostor).unwrap();
    let mut far = far_block;
    far.header.height += 100;
    far.header.proposer = third;
    let bytes = Proposal::signing_bytes(&chain, &far, None);
    let far = Proposal {
        signature: key(third as u8).sign(&bytes),
        block: far,
        timeout_certificate: None,
    };
    let far = ConsensusMessage::Proposal(Box::new(far));
    node.handle(now + 1, Input::Message(third, far));
    assert_eq!(node.stats().held.proposals_waiting, 2);
    // Validator 0 answers every request of validator 3 until none is left.
    let mut t = now + 2;
    for _ in 0..64 {
        let mut next = Vec::new();
        for o in out {
            let input = match o {
                Output::FetchBlock { hash, .. } => {
                    let server = &c.nodes[0];
                    let block = server.core.block(&hash).cloned().or_else(|| {
                        committed_block_by_hash(server.ledger.store().as_ref(), &hash)
                            .unwrap()
                            .map(|s| s.block)
                    });
                    Input::BlockFetched(0, Box::new(block.unwrap()))
                }
                Output::SyncBlocks { from_height, .. } => {
                    let store = c.nodes[0].ledger.store().clone();
                    Input::Synced(
                        0,
                        committed_range(store.as_ref(), from_height, u64::MAX).unwrap(),
                    )
                }
                _ => continue,
            };
            t += 1;
            next.extend(c.nodes[3].core.handle(t, input));
        }
        if next.is_empty() {
            break;
        }
        out = next;
    }
    // The leader's proposal got its vote once its ancestors were in.
    let stats = c.nodes[3].core.stats();
    assert_eq!(stats.last_voted_round, round, "{stats:?}");
    assert_eq!(stats.held.proposals_waiting, 0);
}

/// A deterministic pseudo-random sequence for the fuzz test below.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Fuzzes the consensus message handler: a validator is fed every genuine
/// message of a live cluster, interleaved with thousands of corrupted copies
/// (bit flips, truncations, re-encodings) and with validly signed nonsense
/// from a faulty validator (votes for unknown blocks, timeouts for rounds far
/// ahead, replays). It must not panic, must commit exactly the cluster's
/// blocks, and must keep its memory bounded.
#[test]
fn the_consensus_handler_survives_corrupted_and_forged_messages() {
    use chatpay_node::consensus::messages::{Timeout, Vote};
    use chatpay_proto::{pb, sha256};
    use prost::Message;
    let mut c = Cluster::new(4);
    c.down.insert(3);
    c.tap = Some(3);
    for nonce in 1..=20 {
        c.submit(0, nonce);
    }
    c.start();
    assert!(c.run_until(50, 600_000));
    let tapped = std::mem::take(&mut c.tapped);
    let honest_height = c.height(0);

    // A fresh validator 3, fed the recorded stream with noise.
    let g = c.nodes[0].ledger.genesis().clone();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new_empty());
    let ledger = Arc::new(Ledger::open(store.clone(), g.clone()).unwrap());
    let mempool = Arc::new(Mutex::new(Mempool::new(
        MempoolConfig::default(),
        g.hash(),
        1,
    )));
    let genesis_block = ledger.last_header().unwrap().hash();
    let safety = SafetyRules::new(
        key(3),
        3,
        g.validator_keys(),
        genesis_block,
        ChainBinding::genesis(g.hash()),
        store.clone(),
    )
    .unwrap();
    let mut core = Core::new(3, CoreConfig::default(), ledger.clone(), mempool, safety).unwrap();
    let mut now = 0u64;
    core.handle(now, Input::Start);
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut delivered, mut undecodable, mut refused_by_conversion) = (0u64, 0u64, 0u64);
    for (from, message) in &tapped {
        now += 5;
        // The replay's clock keeps up with the chain's (a proposal more
        // than MAX_CLOCK_DRIFT_MS ahead of it gets no vote).
        if let ConsensusMessage::Proposal(p) = message {
            now = now.max(p.block.header.timestamp_ms);
        }
        let wire = pb::ConsensusMessage::from(message).encode_to_vec();
        for _ in 0..32 {
            let mut bytes = wire.clone();
            match rng.below(3) {
                0 => {
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                _ => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] = rng.below(256) as u8;
                }
            }
            let Ok(decoded) = pb::ConsensusMessage::decode(bytes.as_slice()) else {
                undecodable += 1;
                continue;
            };
            let Ok(converted) = ConsensusMessage::try_from(decoded) else {
                refused_by_conversion += 1;
                continue;
            };
            let claimed = converted.sender();
            core.handle(now, Input::Message(claimed, converted));
            delivered += 1;
        }
        // Validly signed nonsense from validator 2 (a faulty one).
        let chain = ChainBinding::genesis(c.nodes[0].ledger.genesis().hash());
        let round = core.round() + rng.below(3_000);
        let junk_hash = sha256(&rng.below(u64::MAX).to_be_bytes());
        let vote = Vote {
            block_hash: junk_hash,
            round,
            height: rng.below(100),
            voter: 2,
            signature: key(2).sign_digest(&Vote::digest(&chain, &junk_hash, round, 7)),
        };
        core.handle(now, Input::Message(2, ConsensusMessage::Vote(vote)));
        let high_qc = chatpay_node::consensus::core::genesis_certificate(
            &c.nodes[0].ledger.genesis().header(),
        );
        let timeout = Timeout {
            round,
            high_qc,
            sender: 2,
            signature: key(2).sign_digest(&Timeout::digest(&chain, round, 0)),
            last_round_tc: None,
        };
        core.handle(now, Input::Message(2, ConsensusMessage::Timeout(timeout)));
        delivered += 2;
        // The genuine message, twice (replay).
        core.handle(now, Input::Message(*from as u32, message.clone()));
        core.handle(now, Input::Message(*from as u32, message.clone()));
    }
    let height = ledger.last_header().unwrap().height;
    assert!(
        height + 3 >= honest_height,
        "followed to {height} of {honest_height}"
    );
    // The cluster may be a block behind what it already sent: let it catch up.
    assert!(c.run_until_for(&[0, 1, 2], height, c.now_ms + 60_000));
    for h in 1..=height {
        let mine = store.block(h).unwrap().unwrap().header.hash();
        let theirs = c.nodes[0]
            .ledger
            .store()
            .block(h)
            .unwrap()
            .unwrap()
            .header
            .hash();
        assert_eq!(mine, theirs, "height {h}");
    }
    assert!(
        delivered > 1_000,
        "only {delivered} corrupted messages reached the core"
    );
    eprintln!(
        "{} genuine messages, {delivered} corrupted or forged delivered, {undecodable} undecodable, {refused_by_conversion} refused by conversion; followed to height {height}",
        tapped.len()
    );
}

// Byzantine proposers, voters and strangers, one validator's core at a
// time: each test shows the attack refused and, with the same setup made
// honest, accepted (so the refusal comes from the rule named, not from an
// unrelated check).

mod byzantine {
    use super::*;
    use chatpay_node::consensus::core::{MAX_CLOCK_DRIFT_MS, genesis_certificate};
    use chatpay_node::consensus::messages::{
        Block, Timeout, TimeoutCertificate, TimeoutSignature, Vote,
    };
    use chatpay_node::execution::check_signature;
    use chatpay_proto::{
        BlockHeader, QuorumCertificate, SignedTransfer, ValidatorSignature, sha256,
    };

    fn chain(c: &Cluster) -> ChainBinding {
        ChainBinding::genesis(c.nodes[0].ledger.genesis().hash())
    }

    /// The proposal of `round`'s leader (of four) extending genesis with
    /// `txs`, with a header true to their execution, carrying `tc`.
    fn proposal(
        c: &Cluster,
        round: u64,
        txs: Vec<SignedTransfer>,
        timestamp_ms: u64,
        tc: Option<TimeoutCertificate>,
    ) -> Proposal {
        let ledger = &c.nodes[0].ledger;
        let parent = ledger.last_header().unwrap();
        let out = ledger
            .execute_on(&[], timestamp_ms, &txs, &check_signature)
            .unwrap();
        let proposer = (round % 4) as u32;
        let header = BlockHeader {
            genesis_hash: parent.genesis_hash,
            height: 1,
            round,
            parent_hash: parent.hash(),
            proposer,
            timestamp_ms,
            tx_count: txs.len() as u32,
            tx_root: out.tx_root,
            state_root: out.state_root,
        };
        let block = Block {
            header,
            transactions: txs,
            justify: genesis_certificate(&parent),
        };
        let bytes = Proposal::signing_bytes(&chain(c), &block, tc.as_ref());
        Proposal {
            signature: key(proposer as u8).sign(&bytes),
            block,
            timeout_certificate: tc,
        }
    }

    fn transfers(count: u64) -> Vec<SignedTransfer> {
        (1..=count)
            .map(|nonce| {
                let out = Pay {
                    recipient: key(101).public_key().clone(),
                    amount: 1,
                };
                Transfer::new(
                    genesis(4).hash(),
                    key(100).public_key().clone(),
                    nonce,
                    1,
                    vec![out],
                    vec![],
                )
                .unwrap()
                .sign(&key(100))
            })
            .collect()
    }

    fn voted(outputs: &[Output]) -> bool {
        outputs
            .iter()
            .any(|o| matches!(o, Output::Send(_, ConsensusMessage::Vote(_))))
    }

    /// Validator 0 of a fresh cluster of four, in round 1.
    fn validator_0() -> Cluster {
        let mut c = Cluster::new(4);
        c.nodes[0].core.handle(0, Input::Start);
        c
    }

    fn deliver(c: &mut Cluster, to: usize, from: u32, m: ConsensusMessage) -> Vec<Output> {
        c.nodes[to].core.handle(0, Input::Message(from, m))
    }

    /// Whether validator 0 votes for `p` (sent to the next leader, or to
    /// itself when it leads next).
    fn voted_for(c: &mut Cluster, p: Proposal) -> bool {
        let before = c.nodes[0].core.stats().last_voted_round;
        let out = propose(c, p);
        voted(&out) || c.nodes[0].core.stats().last_voted_round > before
    }

    fn propose(c: &mut Cluster, p: Proposal) -> Vec<Output> {
        let from = p.block.header.proposer;
        deliver(c, 0, from, ConsensusMessage::Proposal(Box::new(p)))
    }

    #[test]
    fn a_leader_flooding_its_future_rounds_cannot_halt_the_chain() {
        let mut c = validator_0();
        // Validator 2 leads rounds 2, 6, 10, … after a timeout: it signs an
        // empty block for each of its rounds up to 1 000 ahead.
        let flood: Vec<Proposal> = (1..250)
            .map(|k| proposal(&c, 2 + 4 * k, vec![], 0, None))
            .collect();
        for p in &flood {
            assert!(!voted_for(&mut c, p.clone()));
        }
        let held = flood
            .iter()
            .filter(|p| c.nodes[0].core.block(&p.block.hash()).is_some())
            .count();
        assert_eq!(held, 0, "blocks of future rounds executed and held");
        // The round's own leader is still heard.
        let honest = proposal(&c, 1, vec![], 0, None);
        assert!(voted_for(&mut c, honest));
    }

    #[test]
    fn an_oversized_proposal_is_refused_before_execution() {
        let max = CoreConfig::default().max_block_txs as u64;
        let mut c = validator_0();
        let big = proposal(&c, 1, transfers(max + 1), 0, None);
        let hash = big.block.hash();
        assert!(!voted_for(&mut c, big));
        assert!(c.nodes[0].core.block(&hash).is_none());
        let mut c = validator_0();
        let full = proposal(&c, 1, transfers(max), 0, None);
        assert!(voted_for(&mut c, full));
    }

    #[test]
    fn a_proposal_from_the_future_gets_no_vote() {
        let mut c = validator_0();
        let ahead = proposal(&c, 1, vec![], MAX_CLOCK_DRIFT_MS + 1, None);
        assert!(!voted_for(&mut c, ahead));
        let mut c = validator_0();
        let within = proposal(&c, 1, vec![], MAX_CLOCK_DRIFT_MS, None);
        assert!(voted_for(&mut c, within));
    }

    fn qc_of(binding: &ChainBinding, round: u64) -> QuorumCertificate {
        let block_hash = sha256(b"a block of round 50");
        let digest = Vote::digest(binding, &block_hash, round, 7);
        QuorumCertificate {
            block_hash,
            round,
            height: 7,
            signatures: [0u8, 1, 3]
                .iter()
                .map(|i| ValidatorSignature {
                    validator: u32::from(*i),
                    signature: key(*i).sign_digest(&digest),
                })
                .collect(),
        }
    }

    #[test]
    fn a_certificate_from_another_chain_is_refused() {
        // The same validator keys run another network. A faulty validator
        // plants a certificate from there in its timeout, to raise every
        // honest high QC to a block that does not exist here.
        for (binding, round_after) in [
            (ChainBinding::genesis(sha256(b"another network")), 1),
            (chain(&validator_0()), 51),
        ] {
            let mut c = validator_0();
            let ours = chain(&c);
            let t = Timeout {
                round: 60,
                high_qc: qc_of(&binding, 50),
                sender: 3,
                signature: key(3).sign_digest(&Timeout::digest(&ours, 60, 50)),
                last_round_tc: None,
            };
            deliver(&mut c, 0, 3, ConsensusMessage::Timeout(t));
            assert_eq!(c.nodes[0].core.round(), round_after);
        }
    }

    fn tc_of(c: &Cluster, signers: &[u8]) -> TimeoutCertificate {
        let digest = Timeout::digest(&chain(c), 1, 0);
        TimeoutCertificate {
            round: 1,
            signatures: signers
                .iter()
                .map(|i| TimeoutSignature {
                    sender: u32::from(*i),
                    high_qc_round: 0,
                    signature: key(*i).sign_digest(&digest),
                })
                .collect(),
        }
    }

    #[test]
    fn a_proposal_with_a_swapped_certificate_is_refused() {
        let mut c = validator_0();
        // Round 2's leader signed its proposal with the TC of 0, 1 and 3; a
        // relay swaps in another valid TC of the same round.
        let mut swapped = proposal(&c, 2, vec![], 0, Some(tc_of(&c, &[0, 1, 3])));
        swapped.timeout_certificate = Some(tc_of(&c, &[0, 1, 2, 3]));
        assert!(!voted_for(&mut c, swapped));
        assert_eq!(c.nodes[0].core.round(), 1);
        let mut c = validator_0();
        let signed = proposal(&c, 2, vec![], 0, Some(tc_of(&c, &[0, 1, 2, 3])));
        assert!(voted_for(&mut c, signed));
    }

    #[test]
    fn votes_and_timeouts_of_the_last_round_do_not_overflow() {
        let mut c = validator_0();
        let ours = chain(&c);
        let block_hash = sha256(b"anything");
        let vote = Vote {
            block_hash,
            round: u64::MAX,
            height: 1,
            voter: 1,
            signature: key(1).sign_digest(&Vote::digest(&ours, &block_hash, u64::MAX, 1)),
        };
        deliver(&mut c, 0, 1, ConsensusMessage::Vote(vote));
        let genesis = c.nodes[0].ledger.last_header().unwrap();
        let timeout = Timeout {
            round: u64::MAX,
            high_qc: genesis_certificate(&genesis),
            sender: 1,
            signature: key(1).sign_digest(&Timeout::digest(&ours, u64::MAX, 0)),
            last_round_tc: None,
        };
        deliver(&mut c, 0, 1, ConsensusMessage::Timeout(timeout));
        assert_eq!(c.nodes[0].core.round(), 1);
    }

    #[test]
    fn a_forged_vote_of_the_current_round_is_not_counted() {
        // Validator 2 leads round 2 and collects round 1's votes. Two are
        // genuine; the third claims validator 3 but is signed by another
        // key, for the current round (not dropped as old).
        for (signer_of_3, round_after) in [(1u8, 1), (3, 2)] {
            let mut c = Cluster::new(4);
            c.nodes[2].core.handle(0, Input::Start);
            let ours = chain(&c);
            let block_hash = sha256(b"round 1's block");
            let digest = Vote::digest(&ours, &block_hash, 1, 1);
            for (voter, signer) in [(0u8, 0u8), (1, 1), (3, signer_of_3)] {
                let vote = Vote {
                    block_hash,
                    round: 1,
                    height: 1,
                    voter: u32::from(voter),
                    signature: key(signer).sign_digest(&digest),
                };
                deliver(&mut c, 2, u32::from(voter), ConsensusMessage::Vote(vote));
            }
            assert_eq!(c.nodes[2].core.round(), round_after);
        }
    }
}

/// A sync response stops at its byte cap even where the chain gives it no
/// provable point (a peer serving or asking for 256 blocks of 4 MiB each
/// would move a gigabyte), and at a provable point when it has one.
#[test]
fn a_sync_response_stops_at_its_byte_cap_provable_or_not() {
    use chatpay_node::consensus::sync::{SyncBudget, committed_range_within};
    let mut c = Cluster::new(4);
    for nonce in 1..=12 {
        c.submit(0, nonce);
    }
    c.start();
    assert!(c.run_until(8, 60_000));
    let store = c.nodes[0].ledger.store().clone();
    let served = |blocks, bytes, max_bytes| {
        let budget = SyncBudget {
            blocks,
            bytes,
            max_blocks: 100,
            max_bytes,
        };
        committed_range_within(store.as_ref(), 1, u64::MAX, budget).unwrap()
    };
    let bytes = |blocks: &[chatpay_node::consensus::sync::SyncedBlock]| -> usize {
        blocks
            .iter()
            .flat_map(|b| &b.block.transactions)
            .map(chatpay_node::mempool::size_of)
            .sum()
    };
    // A cap of one transfer's bytes: the response ends with the block
    // that crossed it, whether or not its last two blocks prove a commit.
    let open = served(1, 1, usize::MAX);
    let first = served(100, usize::MAX, usize::MAX)
        .iter()
        .flat_map(|b| &b.block.transactions)
        .next()
        .map(chatpay_node::mempool::size_of)
        .expect("the chain carries transfers");
    let one = first;
    // Soft bounds never reached: only the hard byte cap stops it.
    let capped = served(100, usize::MAX, one);
    let through = capped
        .iter()
        .position(|b| !b.block.transactions.is_empty())
        .expect("a block with a transfer");
    assert_eq!(
        capped.len(),
        through + 1,
        "stopped right after crossing the cap"
    );
    assert_eq!(bytes(&capped[..through]), 0);
    // Without a byte cap it stops at the first provable point.
    let [.., a, b] = open.as_slice() else {
        panic!("{} blocks", open.len())
    };
    assert_eq!(a.block.header.round + 1, b.block.header.round);
}
