//! The consensus core: a synchronous state machine driving rounds.
//!
//! ```text
//!  Input (message from a peer, timer fired, start) + now_ms
//!     └─▶ handle() ─▶ Vec<Output> (broadcast, send, set timer, equivocation)
//! ```
//! No sockets, clock or tasks inside: the async shell (or a simulator) owns
//! them and feeds inputs. Committed blocks are executed and written through
//! the ledger before `handle` returns, in order, exactly once.
//!
//! A proposal whose parent this validator lacks is held while the missing
//! blocks are fetched from the proposer ([`Output::FetchBlock`] for a few,
//! [`Output::SyncBlocks`] when far behind); see [`super::sync`].

use super::aggregator::{Aggregator, Equivocation, VoteOutcome};
use super::block_tree::BlockTree;
use super::leader::{BlockFacts, EXCLUDE_ROUNDS, Leadership, round_robin};
use super::messages::{Block, Proposal, Timeout, TimeoutCertificate, ValidatorIndex, Vote};
use super::mutations::{Faulty, Mutations, censored};
use super::pacemaker::{NewRound, Pacemaker};
use super::safety::{SafetyError, SafetyRules};
use super::sync::{MAX_FETCH_DEPTH, SyncedBlock, certificate_of};
use super::wire::ConsensusMessage;
use crate::execution::{BranchView, OnInvalid, StateView};
use crate::ledger::{CommittedBlock, Ledger, LedgerError, Speculative};
use crate::mempool::{Mempool, SignatureCache, signature_valid, size_of};
use chatpay_proto::pb;
use chatpay_proto::{BlockHeader, Hash, PublicKey, QuorumCertificate, SignedTransfer, TxId};
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Node-local consensus parameters.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    /// Most transactions per proposed block.
    pub max_block_txs: usize,
    /// Most transaction bytes per proposed block.
    pub max_block_bytes: usize,
    /// First round timeout.
    pub base_timeout_ms: u64,
    /// Largest round timeout after backoff.
    pub max_timeout_ms: u64,
    /// With nothing to order, a leader waits this long before proposing an
    /// empty block, so a quiet chain advances (and shows it is alive)
    /// without spinning. Must be below `base_timeout_ms`.
    pub idle_interval_ms: u64,
    /// Safety rules to break on purpose (simulation tests only; inert
    /// unless built with the `mutations` feature).
    pub mutations: Mutations,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            max_block_txs: 2_000,
            max_block_bytes: 4 << 20,
            base_timeout_ms: 3_000,
            max_timeout_ms: 60_000,
            idle_interval_ms: 1_000,
            mutations: Mutations::NONE,
        }
    }
}

/// What the shell feeds the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin: enter round 1.
    Start,
    /// A message from validator `from`.
    Message(ValidatorIndex, ConsensusMessage),
    /// The timer set for `round` fired.
    TimerFired(u64),
    /// The idle wait of a leader for `round` ended.
    ProposeTimerFired(u64),
    /// The mempool received transactions (a waiting leader proposes now).
    TransactionsAvailable,
    /// A block requested with [`Output::FetchBlock`], as the peer sent it.
    BlockFetched(ValidatorIndex, Box<Block>),
    /// Committed blocks requested with [`Output::SyncBlocks`], as the peer
    /// sent them (checked before anything is applied).
    Synced(ValidatorIndex, Vec<SyncedBlock>),
    /// A [`Output::FetchBlock`] or [`Output::SyncBlocks`] sent to this peer
    /// failed: it did not have what was asked, or could not be reached.
    RequestFailed(ValidatorIndex),
}

/// What the core asks the shell to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send to every other validator.
    Broadcast(ConsensusMessage),
    /// Send to one validator.
    Send(ValidatorIndex, ConsensusMessage),
    /// Report `TimerFired(round)` after `after_ms`.
    SetTimer {
        /// Round the timer is for.
        round: u64,
        /// Delay.
        after_ms: u64,
    },
    /// Report `ProposeTimerFired(round)` after `after_ms`.
    SetProposeTimer {
        /// Round the leader waits in.
        round: u64,
        /// Delay.
        after_ms: u64,
    },
    /// A validator signed two votes in one round (evidence to log/keep).
    Equivocation(Box<Equivocation>),
    /// A leader signed two different proposals for one round.
    DoubleProposal {
        /// The leader.
        proposer: ValidatorIndex,
        /// The round.
        round: u64,
        /// Hash of the first proposal seen.
        first: Hash,
        /// Hash of the second.
        second: Hash,
    },
    /// Fetch the block `hash` from `peer`; report it as
    /// [`Input::BlockFetched`] (or nothing, if it cannot be had).
    FetchBlock {
        /// Validator to ask.
        peer: ValidatorIndex,
        /// Block wanted.
        hash: Hash,
    },
    /// A peer sent an invalid message (the node counts it in a metric).
    Misbehaviour {
        /// Who sent it (as the link claims; unauthenticated links may lie).
        peer: ValidatorIndex,
        /// What was wrong, a fixed label.
        what: &'static str,
    },
    /// Fetch committed blocks from `from_height` on from `peer`; report them
    /// as [`Input::Synced`].
    SyncBlocks {
        /// Validator to ask.
        peer: ValidatorIndex,
        /// First height wanted.
        from_height: u64,
    },
}

/// Counters and gauges of one core, for metrics (read after a step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Current round.
    pub round: u64,
    /// Highest round this validator voted or timed out in.
    pub last_voted_round: u64,
    /// Rounds this validator timed out of.
    pub timeouts: u64,
    /// Quorum certificates this validator formed from votes.
    pub qcs_formed: u64,
    /// Timeout certificates this validator formed.
    pub tcs_formed: u64,
    /// Whether it is fetching blocks it lacks before it can follow.
    pub catching_up: bool,
    /// The leader of the current round as this validator sees it (`None`
    /// while it lacks the block that names it).
    pub leader: Option<ValidatorIndex>,
    /// What it holds that peers can make it hold (each bounded, checked by
    /// the simulator after every step).
    pub held: Held,
}

/// Sizes of what a validator holds on peers' account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Uncommitted blocks in the block tree (and their executions).
    pub blocks: usize,
    /// Proposals held for rounds not entered yet (at most one per proposer).
    pub proposals_ahead: usize,
    /// Proposals waiting for their ancestors (at most one per proposer).
    pub proposals_waiting: usize,
    /// Fetched blocks waiting for their parents.
    pub orphans: usize,
    /// Rounds with votes or timeouts being aggregated.
    pub aggregated_rounds: usize,
    /// Certificates of uncommitted blocks.
    pub certificates: usize,
    /// The most encoded bytes kept from one sync response so far (filled
    /// in by the node's shell, which reads them; 0 from the core alone).
    pub sync_response_bytes: usize,
}

/// Most proposals held ahead: one per validator.
pub fn max_proposals_ahead(validators: usize) -> usize {
    validators
}

/// Most fetched blocks held while their parents are fetched.
pub const MAX_ORPHANS: usize = 64;

/// Rounds of proposals remembered for double-proposal detection.
const PROPOSAL_MEMORY_ROUNDS: u64 = 64;
/// How long an unanswered fetch or sync request holds back the next one.
const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Votes and timeouts further ahead of the current round are dropped, so a
/// faulty validator cannot make this one hold state for unbounded rounds.
const MAX_ROUNDS_AHEAD: u64 = 1_000;
/// Uncertified blocks are kept for this many rounds after their own: a
/// quorum certificate formed just before a round's timeout may still
/// arrive with the next proposal.
const PRUNE_AFTER_ROUNDS: u64 = 2;

/// One validator's consensus state.
pub struct Core {
    me: ValidatorIndex,
    validators: Vec<PublicKey>,
    config: CoreConfig,
    ledger: Arc<Ledger>,
    mempool: Arc<Mutex<Mempool>>,
    /// Signatures this validator checked (shared with its mempool).
    signatures: Arc<SignatureCache>,
    safety: SafetyRules,
    tree: BlockTree,
    aggregator: Aggregator,
    pacemaker: Pacemaker,
    speculative: BTreeMap<Hash, Speculative>,
    /// Per executed block (the keys of `speculative`), who leads next.
    leadership: BTreeMap<Hash, Leadership>,
    /// The committed head's leadership.
    root_leadership: Leadership,
    certificates: BTreeMap<Hash, QuorumCertificate>,
    /// The first proposal seen per round and proposer (a round may have two
    /// rightful proposers: the leader the certified block names, and the
    /// round-robin one for a proposal after a timeout).
    proposals_seen: BTreeMap<(u64, ValidatorIndex), Hash>,
    /// Rounds whose leader's double proposal was reported already.
    double_proposals: BTreeSet<(u64, ValidatorIndex)>,
    waiting_to_propose: Option<u64>,
    /// The round whose proposal waits for the block of the highest certificate.
    blocked_proposal: Option<u64>,
    /// Attempts to fetch the block of the highest certificate (which signer
    /// is asked next).
    certified_fetches: usize,
    /// No new attempt before this time.
    certified_fetch_at: u64,
    /// Round of the highest certificate recorded in the store.
    recorded_high_qc_round: u64,
    /// Rebuilding from recorded state (nothing is recorded again meanwhile).
    recovering: bool,
    /// Per proposer, its newest proposal whose ancestors are being fetched.
    /// Per proposer because the leader of a round is not known before the
    /// certified block is here: one slot for all would let any validator
    /// displace the leader's proposal with one of its own.
    pending: BTreeMap<ValidatorIndex, Proposal>,
    /// Per proposer, its proposal for the lowest round not entered yet.
    ahead: BTreeMap<ValidatorIndex, Proposal>,
    /// Held proposals whose round has started, handled after the input.
    ahead_due: Vec<(ValidatorIndex, Proposal)>,
    /// Fetched blocks whose parents are being fetched.
    orphans: BTreeMap<Hash, Block>,
    /// Blocks asked for and not received yet (others are not accepted).
    expected: BTreeSet<Hash>,
    /// No new fetch or sync request before this time (one in flight).
    request_until_ms: u64,
    /// The peer the request in flight went to.
    requested_from: Option<ValidatorIndex>,
    /// The peer whose last request failed: the next goes to another
    /// validator that certified what is missing.
    unhelpful: Option<ValidatorIndex>,
    /// This validator's own messages to itself, handled after the current
    /// input (a queue, not recursion, so a single validator cannot recurse).
    to_self: VecDeque<ConsensusMessage>,
    /// The last commit included transactions: the next block carries the
    /// certificate that tells the other validators, so do not delay it.
    commit_to_announce: bool,
    now_ms: u64,
    out: Vec<Output>,
    stats: CoreStats,
    /// The highest round this validator timed out of (its timer fired).
    timed_out_round: u64,
    /// Byzantine behaviours switched on by the simulator.
    faulty: Faulty,
}

/// How far a new block's timestamp may be ahead of this validator's clock
/// (unless it only repeats its parent's, which an honest leader whose
/// clock is behind its parent's does). One leader can therefore move the
/// chain's clock at most this far ahead of the honest validators' clocks.
pub const MAX_CLOCK_DRIFT_MS: u64 = 30_000;

/// Rule: vote only for a block whose timestamp is not ahead of the local
/// clock by more than [`MAX_CLOCK_DRIFT_MS`], or equals its parent's. (That
/// it is not below its parent's is checked for every block accepted.)
fn check_timestamp_fresh(header: &BlockHeader, parent_ts: u64, now_ms: u64) -> Result<(), String> {
    let ts = header.timestamp_ms;
    if ts == parent_ts || ts <= now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
        return Ok(());
    }
    Err(format!(
        "timestamp {ts} ms is more than {MAX_CLOCK_DRIFT_MS} ms past the clock {now_ms} ms"
    ))
}

/// A refusal of the safety rules is expected (logged at debug); a failure
/// to write the safety record is not: the node stops rather than go on
/// with a record it could not make durable.
///
/// # Panics
/// On [`SafetyError::Store`].
fn refused_or_fatal(round: u64, what: &str, e: &SafetyError) {
    if let SafetyError::Store(e) = e {
        panic!("writing the safety record for a {what} in round {round} failed: {e}");
    }
    tracing::debug!(round, error = %e, "safety rules refused a {what}");
}

/// Decodes what this validator recorded for a restart (`None` if unreadable).
fn decode_record<P, T>(bytes: &[u8]) -> Option<T>
where
    P: prost::Message + Default,
    T: TryFrom<P>,
{
    P::decode(bytes).ok().and_then(|p| T::try_from(p).ok())
}

/// The certificate of the genesis block (no signatures).
pub fn genesis_certificate(genesis: &BlockHeader) -> QuorumCertificate {
    QuorumCertificate {
        block_hash: genesis.hash(),
        round: 0,
        height: 0,
        signatures: vec![],
    }
}

/// Committed blocks replayed on start to rebuild which leaders failed: as
/// many as rounds a failure is remembered (a block has a round of its
/// own), so every failure still in force is replayed.
const LEADERSHIP_REPLAY_BLOCKS: u64 = EXCLUDE_ROUNDS;

/// The leadership of the committed head `root`, rebuilt from the last
/// [`LEADERSHIP_REPLAY_BLOCKS`] committed blocks: their rounds and
/// proposers, and the signers of the certificate each carried (stored with
/// its parent). Only the window's start is approximated (who led before
/// it); see [`super::leader`] for what a disagreement costs.
fn stored_leadership(
    ledger: &Ledger,
    root: &BlockHeader,
    validators: usize,
) -> Result<Leadership, LedgerError> {
    let store = ledger.store();
    // A store that joined from a snapshot at H keeps blocks from H on:
    // the window then starts after H, as it would after any other start.
    let first = root
        .height
        .saturating_sub(LEADERSHIP_REPLAY_BLOCKS)
        .max(store.first_full_height()?)
        .max(1);
    let mut parent = match first - 1 {
        0 => None,
        h => store.block(h)?,
    };
    let mut leadership = match &parent {
        None => Leadership::genesis(validators),
        Some(p) => Leadership {
            failed: BTreeMap::new(),
            next: round_robin(p.header.round.saturating_add(1), validators),
        },
    };
    for height in first..=root.height {
        let Some(block) = store.block(height)? else {
            break;
        };
        let signers: Vec<ValidatorIndex> = parent
            .as_ref()
            .and_then(|p| p.certificate.as_ref())
            .map(|qc| qc.signatures.iter().map(|s| s.validator).collect())
            .unwrap_or_default();
        let facts = BlockFacts {
            round: block.header.round,
            proposer: block.header.proposer,
            parent_round: parent.as_ref().map_or(0, |p| p.header.round),
            signers: &signers,
        };
        leadership = Leadership::after(&leadership, facts, validators);
        parent = Some(block);
    }
    Ok(leadership)
}

impl Core {
    /// A core over a ledger at its committed head (genesis, or where the
    /// validator stopped: it resumes after the round of the head's certificate).
    pub fn new(
        me: ValidatorIndex,
        config: CoreConfig,
        ledger: Arc<Ledger>,
        mempool: Arc<Mutex<Mempool>>,
        mut safety: SafetyRules,
    ) -> Result<Self, LedgerError> {
        safety.set_mutations(config.mutations);
        assert!(
            config.idle_interval_ms < config.base_timeout_ms,
            "idle interval must be below the round timeout"
        );
        let validators = ledger.genesis().validator_keys();
        let root = ledger.last_header()?;
        let root_qc = if root.height == 0 {
            genesis_certificate(&root)
        } else {
            let stored = ledger.store().block(root.height)?;
            stored.and_then(|b| b.certificate).unwrap_or_else(|| {
                // Only this validator can use an unsigned root; it learns a
                // real certificate from the next proposal it receives.
                tracing::warn!(height = root.height, "committed head has no certificate");
                QuorumCertificate {
                    block_hash: root.hash(),
                    round: root.round,
                    height: root.height,
                    signatures: vec![],
                }
            })
        };
        let signatures = mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .signatures()
            .clone();
        let root_leadership = stored_leadership(&ledger, &root, validators.len())?;
        let mut pacemaker = Pacemaker::new(config.base_timeout_ms, config.max_timeout_ms);
        if root_qc.round > 0 {
            pacemaker.on_qc(root_qc.round);
        }
        let mut core = Self {
            me,
            aggregator: Aggregator::with_quorum(config.mutations.quorum(validators.len())),
            validators,
            config,
            pacemaker,
            tree: BlockTree::new(root, root_qc).with_mutations(config.mutations),
            ledger,
            mempool,
            signatures,
            safety,
            speculative: BTreeMap::new(),
            leadership: BTreeMap::new(),
            root_leadership,
            certificates: BTreeMap::new(),
            proposals_seen: BTreeMap::new(),
            double_proposals: BTreeSet::new(),
            waiting_to_propose: None,
            blocked_proposal: None,
            certified_fetches: 0,
            certified_fetch_at: 0,
            recorded_high_qc_round: 0,
            recovering: false,
            pending: BTreeMap::new(),
            ahead: BTreeMap::new(),
            ahead_due: Vec::new(),
            orphans: BTreeMap::new(),
            expected: BTreeSet::new(),
            request_until_ms: 0,
            requested_from: None,
            unhelpful: None,
            to_self: VecDeque::new(),
            commit_to_announce: false,
            now_ms: 0,
            out: Vec::new(),
            stats: CoreStats::default(),
            timed_out_round: 0,
            faulty: Faulty::default(),
        };
        core.recover();
        Ok(core)
    }

    /// Misbehaves as `faulty` says while its switches are on (simulation
    /// only; inert unless built with the `mutations` feature).
    pub fn set_faulty(&mut self, faulty: Faulty) {
        self.faulty = faulty;
    }

    /// The current round.
    pub fn round(&self) -> u64 {
        self.pacemaker.round()
    }

    /// Counters and gauges for metrics.
    pub fn stats(&self) -> CoreStats {
        CoreStats {
            round: self.pacemaker.round(),
            last_voted_round: self.safety.data().last_voted_round,
            catching_up: self
                .pending
                .values()
                .any(|p| p.block.round() >= self.pacemaker.round()),
            leader: self.leader(),
            held: Held {
                blocks: self.tree.len().max(self.speculative.len()),
                proposals_ahead: self.ahead.len() + self.ahead_due.len(),
                proposals_waiting: self.pending.len(),
                orphans: self.orphans.len(),
                aggregated_rounds: self.aggregator.rounds_held(),
                certificates: self.certificates.len().max(self.tree.certificates_held()),
                sync_response_bytes: 0,
            },
            ..self.stats
        }
    }

    /// Whether [`Input::TransactionsAvailable`] would do anything: only a
    /// leader waiting for transactions to propose acts on it, and it
    /// changes nothing else (the shell runs it without handing the worker
    /// over when it would not).
    pub fn wants_transactions(&self) -> bool {
        self.waiting_to_propose.is_some()
    }

    /// An uncommitted block this validator holds (served to peers that
    /// fetch it; committed blocks are read from the store).
    pub fn block(&self, hash: &Hash) -> Option<&Block> {
        self.tree.block(hash)
    }

    /// Handles one input at time `now_ms`.
    ///
    /// # Panics
    /// If the ledger or safety storage fails: the node must stop rather than
    /// continue on state it could not persist.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Start => {
                let round = self.pacemaker.round();
                self.enter(NewRound {
                    round,
                    timeout_ms: self.pacemaker.timeout_ms(),
                });
            }
            Input::Message(from, message) => self.on_message(from, message),
            Input::TimerFired(round) => self.on_timer(round),
            Input::ProposeTimerFired(due) => self.propose_if_waiting(due),
            Input::TransactionsAvailable => {
                if let Some(due) = self.waiting_to_propose {
                    self.propose_if_waiting(due);
                }
            }
            Input::BlockFetched(peer, block) => self.on_block_fetched(peer, *block),
            Input::Synced(peer, blocks) => self.on_synced(peer, blocks),
            Input::RequestFailed(peer) => self.on_request_failed(peer),
        }
        loop {
            while let Some(message) = self.to_self.pop_front() {
                self.on_message(self.me, message);
            }
            if let Some((from, p)) = self.ahead_due.pop() {
                self.on_proposal(from, p);
                continue;
            }
            if !self.propose_if_unblocked() {
                break;
            }
        }
        std::mem::take(&mut self.out)
    }

    fn on_message(&mut self, from: ValidatorIndex, message: ConsensusMessage) {
        match message {
            ConsensusMessage::Proposal(p) => self.on_proposal(from, *p),
            ConsensusMessage::Vote(v) => self.on_vote(from, v),
            ConsensusMessage::Timeout(t) => self.on_timeout(from, t),
        }
    }

    fn send_to_self(&mut self, message: ConsensusMessage) {
        self.to_self.push_back(message);
    }

    fn enter(&mut self, new: NewRound) {
        tracing::debug!(
            validator = self.me,
            round = new.round,
            timeout_ms = new.timeout_ms,
            "entering round"
        );
        self.aggregator.prune_below(new.round.saturating_sub(1));
        self.prune_ended_rounds(new.round);
        // Held proposals of the round entered are handled now (their
        // leader is checked then: it may only be known now).
        self.ahead.retain(|_, p| p.block.round() >= new.round);
        let due: Vec<ValidatorIndex> = self
            .ahead
            .iter()
            .filter(|(_, p)| p.block.round() == new.round)
            .map(|(from, _)| *from)
            .collect();
        for from in due {
            let p = self.ahead.remove(&from).expect("listed above");
            self.ahead_due.push((from, p));
        }
        self.out.push(Output::SetTimer {
            round: new.round,
            after_ms: new.timeout_ms,
        });
        self.waiting_to_propose = None;
        self.blocked_proposal = None;
        self.lead_if_leader(new.round);
    }

    /// Proposes in `round` (the current one) if this validator leads it:
    /// at once if there is work, else after the idle interval. While the
    /// block of the highest certificate is missing the leader is not known
    /// yet: the block is fetched and this runs again once it is here.
    fn lead_if_leader(&mut self, round: u64) {
        let Some(leader) = self.leader() else {
            self.blocked_proposal = Some(round);
            self.fetch_certified_block();
            return;
        };
        if leader != self.me {
            return;
        }
        if self.has_work() {
            self.propose(round);
        } else {
            self.waiting_to_propose = Some(round);
            self.out.push(Output::SetProposeTimer {
                round,
                after_ms: self.config.idle_interval_ms,
            });
        }
    }

    /// The leader of the current round as this validator sees it (from its
    /// highest certificate), if it holds the block that decides it.
    pub fn leader(&self) -> Option<ValidatorIndex> {
        self.leader_of(self.pacemaker.round(), self.tree.high_qc())
    }

    /// The leader of `round` for a proposal carrying `justify` (and a TC
    /// unless `justify` is of the round before): the one the certified
    /// block names, or round-robin after a timed-out round (see
    /// [`super::leader`]); `None` while the certified block is not here.
    fn leader_of(&self, round: u64, justify: &QuorumCertificate) -> Option<ValidatorIndex> {
        if justify.round.checked_add(1) != Some(round) {
            // After a timeout: the same for every validator, whatever
            // certificate each holds (see `super::leader`).
            return Some(round_robin(round, self.validators.len()));
        }
        self.next_leader_after(&justify.block_hash)
    }

    /// The leader of the round after block `hash`, for a proposal that
    /// carries its certificate, if the block is here (executed or the head).
    fn next_leader_after(&self, hash: &Hash) -> Option<ValidatorIndex> {
        self.leadership_of(hash).map(|l| l.next)
    }

    fn leadership_of(&self, hash: &Hash) -> Option<&Leadership> {
        if *hash == self.tree.root_hash() {
            return Some(&self.root_leadership);
        }
        self.leadership.get(hash)
    }

    /// The leadership of `block`, whose parent's is `parent`.
    fn leadership_after(&self, parent: &Leadership, block: &Block) -> Leadership {
        let signers: Vec<ValidatorIndex> = block
            .justify
            .signatures
            .iter()
            .map(|s| s.validator)
            .collect();
        let facts = BlockFacts {
            round: block.header.round,
            proposer: block.header.proposer,
            parent_round: block.justify.round,
            signers: &signers,
        };
        Leadership::after(parent, facts, self.validators.len())
    }

    /// Asks for the block of the highest certificate from a validator that
    /// signed it (each held it to vote), each attempt the next signer, so
    /// one that withholds it delays the block by one attempt. Attempts are
    /// [`REQUEST_TIMEOUT_MS`] apart (see `propose_if_unblocked`).
    fn fetch_certified_block(&mut self) {
        let high_qc = self.tree.high_qc().clone();
        let signers: Vec<ValidatorIndex> = high_qc
            .signatures
            .iter()
            .map(|s| s.validator)
            .filter(|v| *v != self.me)
            .collect();
        let Some(peer) = signers
            .get(self.certified_fetches % signers.len().max(1))
            .copied()
        else {
            return;
        };
        self.certified_fetches = self.certified_fetches.wrapping_add(1);
        self.certified_fetch_at = self.now_ms.saturating_add(REQUEST_TIMEOUT_MS);
        self.request_block(peer, high_qc.block_hash);
    }

    /// Forgets uncertified blocks of rounds that ended before the one
    /// before `round` (the block tree's rule), and their executions.
    fn prune_ended_rounds(&mut self, round: u64) {
        let dropped = self
            .tree
            .prune_uncertified_before(round.saturating_sub(PRUNE_AFTER_ROUNDS));
        if !dropped.is_empty() {
            tracing::debug!(
                blocks = dropped.len(),
                round,
                "forgot blocks of ended rounds"
            );
            for hash in dropped {
                self.speculative.remove(&hash);
                self.leadership.remove(&hash);
            }
        }
    }

    /// Decides whether to propose in the current round once the block of
    /// the highest certificate, which the decision (or the proposal)
    /// waited for, is here.
    fn propose_if_unblocked(&mut self) -> bool {
        let round = self.pacemaker.round();
        if self.blocked_proposal != Some(round) {
            return false;
        }
        if self.branch_to(&self.tree.high_qc().block_hash).is_none() {
            // Still missing: ask the next signer once the last attempt is
            // a request timeout old (failed or unanswered).
            if self.now_ms >= self.certified_fetch_at && self.now_ms >= self.request_until_ms {
                self.fetch_certified_block();
            }
            return false;
        }
        self.blocked_proposal = None;
        self.lead_if_leader(round);
        true
    }

    fn propose_if_waiting(&mut self, due: u64) {
        let round = self.pacemaker.round();
        if self.waiting_to_propose == Some(round) && due == round {
            self.propose(round);
        }
    }

    /// Whether a block now would order something: a pending transaction it
    /// could take (its sender's next nonce), uncommitted ancestors holding
    /// transactions (which need certified descendants to commit), or a
    /// commit of transactions that only this validator knows of yet.
    /// Transfers waiting behind a nonce gap are not work: a leader that
    /// counted them would propose empty blocks back to back for as long as
    /// the gap lasts (and a lone validator would never stop).
    fn has_work(&self) -> bool {
        if self.commit_to_announce {
            return true;
        }
        let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
        let Some(branch) = self.branch_to(&self.tree.high_qc().block_hash) else {
            // Proposing fetches the certified block first.
            return !pool.is_empty();
        };
        if branch.iter().any(|s| !s.transactions.is_empty()) {
            return true;
        }
        // The branch orders nothing, so nothing pending is excluded.
        let outputs: Vec<_> = branch.iter().map(|b| &b.output).collect();
        let view = BranchView::new(self.ledger.store().as_ref(), &outputs);
        let mut next_nonce =
            |k: &PublicKey| view.account(k).ok().flatten().map_or(1, |a| a.nonce + 1);
        !pool
            .batch(
                1,
                self.config.max_block_bytes,
                &BTreeSet::new(),
                &mut next_nonce,
            )
            .is_empty()
    }

    /// Uncommitted ancestors of `hash`, oldest first (empty for the root).
    fn branch_to(&self, hash: &Hash) -> Option<Vec<&Speculative>> {
        let root = self.tree.root().hash();
        let mut branch = Vec::new();
        let mut cursor = *hash;
        while cursor != root {
            let block = self.speculative.get(&cursor)?;
            cursor = block.header.parent_hash;
            branch.push(block);
        }
        branch.reverse();
        Some(branch)
    }

    fn propose(&mut self, round: u64) {
        self.waiting_to_propose = None;
        self.commit_to_announce = false;
        let high_qc = self.aggregator.fullest(self.tree.high_qc());
        self.blocked_proposal = None;
        let Some(branch) = self.branch_to(&high_qc.block_hash) else {
            // Votes can outrun the proposal they are for: wait for the
            // block (and ask its proposer for it) instead of letting the
            // round time out.
            tracing::debug!(round, "certified block not here yet; proposing once it is");
            self.blocked_proposal = Some(round);
            self.fetch_certified_block();
            return;
        };
        let parent = branch
            .last()
            .map_or_else(|| self.tree.root().clone(), |b| b.header.clone());
        let exclude: BTreeSet<TxId> = branch
            .iter()
            .flat_map(|b| b.transactions.iter().map(|t| t.tx_id()))
            .collect();
        let outputs: Vec<_> = branch.iter().map(|b| &b.output).collect();
        let view = BranchView::new(self.ledger.store().as_ref(), &outputs);
        let mut next_nonce =
            |k: &PublicKey| view.account(k).ok().flatten().map_or(1, |a| a.nonce + 1);
        let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
        let pending = pool.len();
        let transactions = pool.batch(
            self.config.max_block_txs,
            self.config.max_block_bytes,
            &exclude,
            &mut next_nonce,
        );
        drop(pool);
        tracing::debug!(
            round,
            pending,
            transactions = transactions.len(),
            branch = branch.len(),
            "proposing"
        );
        // Taken from the mempool: each signature was checked on admission.
        let signature_valid =
            |t: &SignedTransfer| signature_valid(&self.signatures, &self.mempool, t);
        // Expiry is checked against the timestamp the block will carry.
        let timestamp_ms = self.now_ms.max(parent.timestamp_ms);
        let executed = self
            .ledger
            .execute_for_proposal(&branch, timestamp_ms, &transactions, &signature_valid)
            .and_then(|(output, kept)| match censored(&self.faulty, &kept) {
                Some(txs) => {
                    let on = OnInvalid::Receipt;
                    let out = self.ledger.execute_on_as(
                        &branch,
                        timestamp_ms,
                        &txs,
                        &signature_valid,
                        on,
                    )?;
                    Ok((out, txs))
                }
                None => Ok((output, kept)),
            });
        let (output, transactions) = match executed {
            Ok(done) => done,
            Err(LedgerError::Store(e)) => panic!("ledger storage failed while proposing: {e}"),
            Err(e) => {
                // A batch the ledger refuses (a duplicate) is a mempool bug;
                // skip this proposal rather than stop the validator.
                tracing::error!(round, error = %e, "proposal batch refused by the ledger");
                return;
            }
        };
        let header = BlockHeader {
            genesis_hash: self.ledger.genesis().hash(),
            height: parent.height + 1,
            round,
            parent_hash: parent.hash(),
            proposer: self.me,
            timestamp_ms,
            tx_count: u32::try_from(transactions.len()).expect("bounded by max_block_txs"),
            tx_root: output.tx_root,
            state_root: output.state_root,
        };
        let block = Block {
            header,
            transactions,
            justify: high_qc.clone(),
        };
        let timeout_certificate = if high_qc.round.checked_add(1) == Some(round) {
            None
        } else {
            self.pacemaker.last_tc().cloned()
        };
        let signature = match self
            .safety
            .sign_proposal(&block, timeout_certificate.as_ref())
        {
            Ok(s) => s,
            Err(e) => {
                refused_or_fatal(round, "proposal", &e);
                return;
            }
        };
        let proposal = Proposal {
            block,
            timeout_certificate,
            signature,
        };
        self.out
            .push(Output::Broadcast(ConsensusMessage::Proposal(Box::new(
                proposal.clone(),
            ))));
        self.send_to_self(ConsensusMessage::Proposal(Box::new(proposal)));
    }

    /// Whether a proposal is worth a signature check: from the leader of
    /// its round, who sent it, no further ahead than [`MAX_ROUNDS_AHEAD`],
    /// within this validator's block limits, with a transaction count that
    /// matches its header. Nothing is executed or stored before this and
    /// the signatures pass.
    fn proposal_admissible(&self, from: ValidatorIndex, p: &Proposal) -> Result<(), String> {
        let h = &p.block.header;
        if h.proposer != from {
            return Err(format!("proposer {} is not the sender {from}", h.proposer));
        }
        if p.block.justify.block_hash != h.parent_hash {
            return Err("its certificate is not of its parent".into());
        }
        if p.block.justify.height.checked_add(1) != Some(h.height) {
            return Err(format!(
                "height {} is not one above its certificate's {}",
                h.height, p.block.justify.height
            ));
        }
        // Unknown while the certified block is not here: checked again
        // before the vote (`follow_proposal`).
        if let Some(leader) = self.leader_of(h.round, &p.block.justify) {
            if leader != from {
                return Err(format!("round {} is led by {leader}, not {from}", h.round));
            }
        }
        let ahead = self.pacemaker.round().saturating_add(MAX_ROUNDS_AHEAD);
        if h.round > ahead {
            return Err(format!("round {} is beyond round {ahead}", h.round));
        }
        let count = p.block.transactions.len();
        if count > self.config.max_block_txs || usize::try_from(h.tx_count) != Ok(count) {
            return Err(format!(
                "{count} transactions (header says {}, limit {})",
                h.tx_count, self.config.max_block_txs
            ));
        }
        let bytes: usize = p.block.transactions.iter().map(size_of).sum();
        if bytes > self.config.max_block_bytes {
            return Err(format!(
                "{bytes} transaction bytes, limit {}",
                self.config.max_block_bytes
            ));
        }
        Ok(())
    }

    /// Whether some certificate this validator knows certifies `hash`.
    fn is_certified(&self, hash: &Hash) -> bool {
        self.certificates.contains_key(hash)
            || self.tree.certificate(hash).is_some()
            || self.tree.high_qc().block_hash == *hash
    }

    fn on_proposal(&mut self, from: ValidatorIndex, p: Proposal) {
        let round = p.block.round();
        if let Err(reason) = self.proposal_admissible(from, &p) {
            self.peer_misbehaved(from, "inadmissible proposal", &reason);
            return;
        }
        if let Err(e) = p.verify_signature(self.safety.chain(), &self.validators) {
            self.peer_misbehaved(from, "proposal with a bad signature", &e.to_string());
            return;
        }
        let hash = p.block.hash();
        let first = *self.proposals_seen.entry((round, from)).or_insert(hash);
        if first != hash && !self.config.mutations.vote_twice() {
            // Evidence once per round: a leader signing thousands of
            // proposals for one round must not write thousands of lines.
            if self.double_proposals.insert((round, from)) {
                self.out.push(Output::DoubleProposal {
                    proposer: from,
                    round,
                    first,
                    second: hash,
                });
            }
            return self.peer_misbehaved(from, "second proposal in a round", "");
        }
        let current = self.pacemaker.round();
        let remembered = |r: &u64| r.saturating_add(PROPOSAL_MEMORY_ROUNDS) >= current;
        self.proposals_seen.retain(|(r, _), _| remembered(r));
        self.double_proposals.retain(|(r, _)| remembered(r));
        if let Err(e) = self.safety.verify_certificate(&p.block.justify) {
            self.peer_misbehaved(from, "proposal with a bad certificate", &e.to_string());
            return;
        }
        if let Some(tc) = &p.timeout_certificate {
            if let Err(e) = self.safety.verify_tc(Some(tc)) {
                let e = e.to_string();
                self.peer_misbehaved(from, "proposal with a bad timeout certificate", &e);
                return;
            }
        }
        self.process_qc(p.block.justify.clone());
        if let Some(tc) = p.timeout_certificate.clone() {
            self.on_tc(tc);
        }
        if self.speculative.contains_key(&hash) {
            return; // already handled (our own proposal echoed, or a resend)
        }
        let current = self.pacemaker.round();
        if round > current {
            self.hold_ahead(from, p);
            return;
        }
        if round < current && !self.is_certified(&hash) {
            // Its round ended without it: nothing can vote for it now, and
            // a certificate that names it later fetches it.
            tracing::debug!(from, round, current, "proposal of an ended round ignored");
            return;
        }
        self.follow_proposal(from, p);
    }

    /// Keeps one proposal per proposer for a round not entered yet (the
    /// lowest), handled when that round starts: one per proposer, so a
    /// leader signing proposals for all its future rounds holds one slot.
    fn hold_ahead(&mut self, from: ValidatorIndex, p: Proposal) {
        let round = p.block.round();
        let lower = self
            .ahead
            .get(&from)
            .is_none_or(|held| round < held.block.round());
        if lower {
            tracing::debug!(from, round, "proposal for a later round held");
            self.ahead.insert(from, p);
        }
    }

    /// Executes (or waits for the ancestors of) a verified proposal of the
    /// current round, or a certified one, and votes for it if it is of the
    /// current round.
    fn follow_proposal(&mut self, from: ValidatorIndex, p: Proposal) {
        let round = p.block.round();
        let Some(parent_ts) = self.parent_timestamp(&p.block.header.parent_hash) else {
            if p.block.header.height <= self.tree.root().height.saturating_add(1) {
                // Its parent is at or below the committed head, and not it:
                // a dead fork, nothing to wait for.
                tracing::debug!(from, round, "proposal on a dead fork ignored");
                return;
            }
            self.wait_for_ancestors(from, &p.block);
            if self
                .pending
                .get(&from)
                .is_none_or(|q| q.block.round() <= round)
            {
                self.pending.insert(from, p);
            }
            return;
        };
        if self.leader_of(round, &p.block.justify) != Some(from) {
            let detail = format!("round {round}");
            return self.peer_misbehaved(from, "proposal from a validator not leading", &detail);
        }
        if let Err(reason) = check_timestamp_fresh(&p.block.header, parent_ts, self.now_ms) {
            return self.peer_misbehaved(from, "proposal with a timestamp ahead", &reason);
        }
        if !self.accept_block(from, &p.block) {
            return;
        }
        if round != self.pacemaker.round() {
            return;
        }
        match self.safety.vote(&p.block, p.timeout_certificate.as_ref()) {
            Ok(vote) => {
                let next_leader = self
                    .next_leader_after(&p.block.hash())
                    .expect("a block just accepted is held");
                if next_leader == self.me {
                    self.send_to_self(ConsensusMessage::Vote(vote));
                } else {
                    self.out
                        .push(Output::Send(next_leader, ConsensusMessage::Vote(vote)));
                }
            }
            Err(e) => refused_or_fatal(round, "vote", &e),
        }
    }

    /// A peer sent something invalid: counted (`Output::Misbehaviour`, a
    /// metric in the node) and logged at debug only, so that a stranger or
    /// a faulty validator sending garbage cannot fill the operator's disk.
    fn peer_misbehaved(&mut self, from: ValidatorIndex, what: &'static str, detail: &str) {
        tracing::debug!(from, detail, "{what}");
        self.out.push(Output::Misbehaviour { peer: from, what });
    }

    /// The timestamp of `hash`, if it is the committed head or a held,
    /// executed block (the parent a new block can extend).
    fn parent_timestamp(&self, hash: &Hash) -> Option<u64> {
        if *hash == self.tree.root().hash() {
            return Some(self.tree.root().timestamp_ms);
        }
        self.speculative.get(hash).map(|s| s.header.timestamp_ms)
    }

    /// Executes a block whose parent this validator holds, checks its header
    /// against the execution, and adds it to the tree (committing what that
    /// commits). The block's signatures and certificate are checked already.
    fn accept_block(&mut self, from: ValidatorIndex, block: &Block) -> bool {
        let round = block.round();
        let Some(branch) = self.branch_to(&block.header.parent_hash) else {
            return false;
        };
        let parent_ts = branch
            .last()
            .map_or(self.tree.root().timestamp_ms, |b| b.header.timestamp_ms);
        if block.header.timestamp_ms < parent_ts {
            tracing::debug!(from, round, "block timestamp below its parent's");
            self.out.push(Output::Misbehaviour {
                peer: from,
                what: "block with a timestamp below its parent's",
            });
            return false;
        }
        // Each signature is checked once per validator: those it admitted
        // are not checked again, and those checked here are not checked on
        // admission when the transfer is forwarded after its proposal.
        let signature_valid =
            |t: &SignedTransfer| signature_valid(&self.signatures, &self.mempool, t);
        let output = match self.ledger.execute_on(
            &branch,
            block.header.timestamp_ms,
            &block.transactions,
            &signature_valid,
        ) {
            Ok(o) => o,
            Err(LedgerError::Store(e)) => panic!("ledger storage failed executing a block: {e}"),
            Err(e) => {
                self.peer_misbehaved(from, "block that does not execute", &e.to_string());
                return false;
            }
        };
        let h = &block.header;
        if h.tx_root != output.tx_root || h.state_root != output.state_root {
            let detail = format!("round {round}");
            self.peer_misbehaved(from, "block header disagrees with its execution", &detail);
            return false;
        }
        let Some(parent) = self.leadership_of(&block.header.parent_hash) else {
            return false; // the branch above shows it is here
        };
        let leadership = self.leadership_after(parent, block);
        let committed = match self.tree.insert_block(block.clone()) {
            Ok(committed) => committed,
            Err(e) => {
                self.peer_misbehaved(from, "block refused by the block tree", &e.to_string());
                return false;
            }
        };
        self.leadership.insert(block.hash(), leadership);
        self.speculative.insert(
            block.hash(),
            Speculative {
                header: block.header.clone(),
                transactions: block.transactions.clone(),
                output,
            },
        );
        if !self.recovering {
            // Kept so that a crash of every validator loses no certified
            // block (durable with the safety record written before a vote).
            let bytes = pb::Block::from(block).encode_to_vec();
            self.ledger
                .store()
                .put_pending_block(block.header.height, &block.hash(), &bytes)
                .expect("recording an accepted block failed: storage is broken");
        }
        self.remember_certificate(&block.justify);
        self.commit_all(committed);
        self.record_high_qc();
        true
    }

    /// Records the highest certificate when it rose (with the next synced
    /// write), so a restart resumes from it rather than from the committed
    /// head.
    fn record_high_qc(&mut self) {
        let high = self.tree.high_qc();
        if high.round > self.recorded_high_qc_round && !self.recovering {
            self.recorded_high_qc_round = high.round;
            let bytes = pb::QuorumCertificate::from(high).encode_to_vec();
            self.ledger
                .store()
                .put_high_qc(&bytes)
                .expect("recording the highest certificate failed: storage is broken");
        }
    }

    /// Rebuilds the uncommitted part of the tree from what was recorded
    /// before a restart: the recorded blocks that extend the committed head
    /// (executed again) and the highest certificate.
    fn recover(&mut self) {
        self.recovering = true;
        let store = self.ledger.store().clone();
        let blocks = store
            .pending_blocks()
            .expect("reading recorded blocks failed: storage is broken");
        let mut recovered = 0usize;
        for bytes in blocks {
            let Some(block) = decode_record::<pb::Block, Block>(&bytes) else {
                tracing::warn!("skipping an unreadable recorded block");
                continue;
            };
            if block.header.height <= self.tree.root().height
                || self.speculative.contains_key(&block.hash())
                || self.branch_to(&block.header.parent_hash).is_none()
            {
                continue;
            }
            if self.accept_block(self.me, &block) {
                recovered += 1;
            }
        }
        if let Some(bytes) = store
            .high_qc()
            .expect("reading the highest certificate failed: storage is broken")
        {
            match decode_record::<pb::QuorumCertificate, QuorumCertificate>(&bytes) {
                Some(qc) if qc.round > self.tree.high_qc().round => {
                    self.remember_certificate(&qc);
                    let committed = self.tree.insert_qc(qc);
                    self.commit_all(committed);
                }
                Some(_) => {}
                None => tracing::warn!("unreadable recorded certificate ignored"),
            }
        }
        let high = self.tree.high_qc().round;
        self.recorded_high_qc_round = high;
        self.pacemaker.on_qc(high);
        // The round entered by timeout, if above: `Input::Start` enters it.
        if let Some(bytes) = store
            .high_tc()
            .expect("reading the timeout certificate failed: storage is broken")
        {
            match decode_record::<pb::TimeoutCertificate, TimeoutCertificate>(&bytes) {
                Some(tc) => {
                    self.pacemaker.on_tc(tc);
                }
                None => tracing::warn!("unreadable recorded timeout certificate ignored"),
            }
        }
        self.recovering = false;
        if recovered > 0 {
            tracing::info!(
                blocks = recovered,
                high_qc_round = high,
                "recovered uncommitted blocks"
            );
        }
    }

    /// `block` (verified) extends a block this validator lacks: asks `peer`
    /// for the parent, or for committed blocks when far behind. One request
    /// at a time; an unanswered one expires after [`REQUEST_TIMEOUT_MS`].
    fn wait_for_ancestors(&mut self, peer: ValidatorIndex, block: &Block) {
        let root = self.tree.root().height;
        if block.header.height <= root + 1 {
            return; // its parent is at or below the committed head: a dead fork
        }
        let peer = self.helpful(peer, &block.justify);
        if self.now_ms < self.request_until_ms || peer == self.me {
            return;
        }
        if block.header.height > root + MAX_FETCH_DEPTH {
            self.request_until_ms = self.now_ms + REQUEST_TIMEOUT_MS;
            self.requested_from = Some(peer);
            self.out.push(Output::SyncBlocks {
                peer,
                from_height: root + 1,
            });
        } else {
            self.request_block(peer, block.header.parent_hash);
        }
    }

    /// Asks `peer` for the block `hash`, unless a request is in flight.
    fn request_block(&mut self, peer: ValidatorIndex, hash: Hash) {
        if self.now_ms < self.request_until_ms || peer == self.me {
            return;
        }
        self.request_until_ms = self.now_ms + REQUEST_TIMEOUT_MS;
        self.requested_from = Some(peer);
        if self.expected.len() >= MAX_ORPHANS {
            self.expected.clear();
        }
        self.expected.insert(hash);
        self.out.push(Output::FetchBlock { peer, hash });
    }

    fn on_block_fetched(&mut self, peer: ValidatorIndex, block: Block) {
        let hash = block.hash();
        if !self.expected.remove(&hash) {
            tracing::debug!(peer, %hash, "unrequested block ignored");
            return;
        }
        self.request_until_ms = 0;
        self.requested_from = None;
        self.unhelpful = None;
        if !self.tree.contains(&hash) && block.header.height > self.tree.root().height {
            if let Err(e) = self.safety.verify_certificate(&block.justify) {
                tracing::warn!(peer, %hash, error = %e, "fetched block with a bad certificate");
                return;
            }
            self.process_qc(block.justify.clone());
            if self.branch_to(&block.header.parent_hash).is_some() {
                if self.accept_block(peer, &block) {
                    self.adopt_orphans(peer);
                }
            } else {
                if self.orphans.len() >= MAX_ORPHANS {
                    self.orphans.clear();
                }
                self.wait_for_ancestors(peer, &block);
                self.orphans.insert(hash, block);
            }
        }
        self.retry_pending();
    }

    /// The request in flight failed: the peer lacked what was asked (a
    /// validator that did not vote for it, or a liar) or could not be
    /// reached. The next message that shows the gap may ask again at once,
    /// not only once the request expires, and asks another validator if it
    /// comes from the same peer. Nothing is asked from here: a peer that
    /// fails at once would otherwise be asked in a loop.
    fn on_request_failed(&mut self, peer: ValidatorIndex) {
        if self.requested_from != Some(peer) {
            return; // an older request, already given up on
        }
        self.request_until_ms = 0;
        self.requested_from = None;
        self.unhelpful = Some(peer);
    }

    /// `peer`, unless its last request failed: then a validator whose
    /// signature is on `qc` (it voted for the block `qc` certifies, so it
    /// held it), other than this one and that peer.
    fn helpful(&self, peer: ValidatorIndex, qc: &QuorumCertificate) -> ValidatorIndex {
        if self.unhelpful != Some(peer) {
            return peer;
        }
        qc.signatures
            .iter()
            .map(|s| s.validator)
            .find(|v| *v != self.me && *v != peer)
            .unwrap_or(peer)
    }

    /// Adds held fetched blocks whose parents arrived, oldest first.
    fn adopt_orphans(&mut self, peer: ValidatorIndex) {
        let root = self.tree.root().height;
        self.orphans.retain(|_, b| b.header.height > root);
        loop {
            let ready = self
                .orphans
                .iter()
                .find(|(_, b)| self.speculative.contains_key(&b.header.parent_hash))
                .map(|(h, _)| *h);
            let Some(hash) = ready else { break };
            let block = self.orphans.remove(&hash).expect("found above");
            self.accept_block(peer, &block);
        }
    }

    /// Handles the held proposals again whose parents are here.
    /// Those on a parent at or below the committed head that is not here
    /// (a dead fork) are dropped. Those of ended rounds are kept: once
    /// certified, they still bring their block without a fetch.
    fn retry_pending(&mut self) {
        let root = self.tree.root().height;
        for (from, p) in std::mem::take(&mut self.pending) {
            if self.branch_to(&p.block.header.parent_hash).is_some() {
                self.on_proposal(from, p);
            } else if p.block.header.height <= root.saturating_add(1) {
                tracing::debug!(from, round = p.block.round(), "waiting proposal dropped");
            } else {
                self.wait_for_ancestors(from, &p.block);
                self.pending.entry(from).or_insert(p);
            }
        }
    }

    /// Commits the prefix of a peer's batch that links to the committed head
    /// and ends in a block whose certified child is of the next round (the
    /// 2-chain rule): certified alone is not committed. Every certificate
    /// stored with a block is verified first. A batch that commits nothing
    /// makes the peer unhelpful: the next request goes to another.
    fn on_synced(&mut self, peer: ValidatorIndex, blocks: Vec<SyncedBlock>) {
        self.request_until_ms = 0;
        self.requested_from = None;
        let genesis_hash = self.ledger.genesis().hash();
        let mut parent = self.tree.root().clone();
        let mut linked = 0;
        for s in &blocks {
            let h = &s.block.header;
            if h.parent_hash != parent.hash()
                || h.height != parent.height + 1
                || h.round <= parent.round
                || h.genesis_hash != genesis_hash
                || s.block.justify.block_hash != h.parent_hash
            {
                tracing::warn!(
                    peer,
                    height = h.height,
                    "synced block does not link to the chain"
                );
                break;
            }
            linked += 1;
            parent = h.clone();
        }
        let blocks = &blocks[..linked];
        let certified = |i: usize| {
            certificate_of(blocks, i).filter(|qc| {
                let h = &blocks[i].block.header;
                qc.block_hash == h.hash()
                    && qc.round == h.round
                    && qc.height == h.height
                    && self.safety.verify_certificate(qc).is_ok()
            })
        };
        let proven = (0..linked.saturating_sub(1)).rev().find(|&i| {
            blocks[i].block.round().checked_add(1) == Some(blocks[i + 1].block.round())
                && certified(i + 1).is_some()
        });
        let Some(last) = proven else {
            tracing::warn!(peer, blocks = linked, "synced blocks prove no commit");
            self.unhelpful = Some(peer);
            return;
        };
        let Some(certificates) = (0..=last)
            .map(|i| certified(i).cloned())
            .collect::<Option<Vec<_>>>()
        else {
            tracing::warn!(peer, "synced blocks with a bad certificate");
            self.unhelpful = Some(peer);
            return;
        };
        let mut root_qc = None;
        let mut leadership = self.root_leadership.clone();
        for (s, qc) in blocks[..=last].iter().zip(certificates) {
            let b = &s.block;
            let committed = self.ledger.commit_then(
                b.header.clone(),
                b.transactions.clone(),
                Some(qc.clone()),
                |block| self.drop_committed(block),
            );
            match committed {
                Ok(_) => {
                    root_qc = Some(qc);
                    leadership = self.leadership_after(&leadership, b);
                }
                Err(LedgerError::Store(e)) => panic!("ledger storage failed while syncing: {e}"),
                Err(e) => {
                    tracing::warn!(peer, height = b.header.height, error = %e, "synced block refused");
                    break;
                }
            }
        }
        let Some(root_qc) = root_qc else {
            self.unhelpful = Some(peer);
            return;
        };
        self.unhelpful = None;
        let root = self.ledger.last_header().expect("just committed");
        tracing::info!(
            peer,
            height = root.height,
            "caught up with committed blocks"
        );
        // The tree restarts at the new head; uncommitted blocks are fetched again.
        self.ledger
            .store()
            .prune_pending_blocks(root.height)
            .expect("pruning recorded blocks failed: storage is broken");
        self.tree = BlockTree::new(root, root_qc.clone()).with_mutations(self.config.mutations);
        self.root_leadership = leadership;
        self.speculative.clear();
        self.leadership.clear();
        self.certificates.clear();
        self.expected.clear();
        self.process_qc(root_qc);
        self.adopt_orphans(peer);
        self.retry_pending();
        // The peer may hold more: ask on while batches commit something
        // rather than wait for the next proposal to show the gap, which a
        // chain stalled for want of this validator's vote sends only once
        // per round timeout. A batch that commits nothing ends it.
        if self.now_ms >= self.request_until_ms && peer != self.me {
            self.request_until_ms = self.now_ms + REQUEST_TIMEOUT_MS;
            self.requested_from = Some(peer);
            self.out.push(Output::SyncBlocks {
                peer,
                from_height: self.tree.root().height + 1,
            });
        }
    }

    fn on_vote(&mut self, from: ValidatorIndex, vote: Vote) {
        let Some(next) = vote.round.checked_add(1) else {
            return self.peer_misbehaved(from, "vote for the last round", "");
        };
        if vote.voter != from {
            return;
        }
        // Votes go to the leader the block names. Votes may outrun their
        // block: one for a block not here yet is counted (the aggregator
        // holds one per voter and round), and a certificate it completes
        // fetches the block.
        if self
            .next_leader_after(&vote.block_hash)
            .is_some_and(|l| l != self.me)
        {
            return;
        }
        let current = self.pacemaker.round();
        if next < current || vote.round > current.saturating_add(MAX_ROUNDS_AHEAD) {
            return; // too old to matter, or too far ahead to hold
        }
        if let Err(e) = vote.verify(self.safety.chain(), &self.validators) {
            return self.peer_misbehaved(from, "vote with a bad signature", &e.to_string());
        }
        match self.aggregator.add_vote(vote) {
            VoteOutcome::Certified(qc) => {
                self.stats.qcs_formed += 1;
                self.process_qc(qc);
            }
            VoteOutcome::Equivocation(e) => {
                tracing::warn!(
                    voter = e.first.voter,
                    round = e.first.round,
                    "equivocating votes"
                );
                self.out.push(Output::Equivocation(e));
            }
            VoteOutcome::Counted | VoteOutcome::Duplicate => {}
        }
    }

    fn on_timer(&mut self, round: u64) {
        if !self.pacemaker.is_current(round) {
            return;
        }
        if round > self.timed_out_round {
            tracing::debug!(validator = self.me, round, "round timed out");
            self.timed_out_round = round;
            self.stats.timeouts += 1;
        }
        let high_qc = self.tree.high_qc().clone();
        let tc = self.pacemaker.last_tc().cloned();
        match self.safety.timeout(round, &high_qc, tc.as_ref()) {
            Ok(t) => {
                self.out
                    .push(Output::Broadcast(ConsensusMessage::Timeout(t.clone())));
                self.send_to_self(ConsensusMessage::Timeout(t));
            }
            // Expected after a restart, until a certificate as high as the
            // last one this validator signed over arrives from a peer.
            Err(e) => refused_or_fatal(round, "timeout", &e),
        }
        // Keep repeating the timeout until the round ends.
        if self.pacemaker.is_current(round) {
            self.out.push(Output::SetTimer {
                round,
                after_ms: self.pacemaker.repeat_ms(),
            });
        }
    }

    fn on_timeout(&mut self, from: ValidatorIndex, t: Timeout) {
        let current = self.pacemaker.round();
        let Some(next) = t.round.checked_add(1) else {
            return self.peer_misbehaved(from, "timeout of the last round", "");
        };
        if t.sender != from || next < current || t.round > current.saturating_add(MAX_ROUNDS_AHEAD)
        {
            return;
        }
        if let Err(e) = t.verify(self.safety.chain(), &self.validators) {
            return self.peer_misbehaved(from, "timeout with a bad signature", &e.to_string());
        }
        if let Err(e) = self.safety.verify_certificate(&t.high_qc) {
            return self.peer_misbehaved(from, "timeout with a bad certificate", &e.to_string());
        }
        self.process_qc(t.high_qc.clone());
        // The TC that took the sender into its round takes this validator
        // there too (it restarted, or missed the timeouts that made it).
        let mut t = t;
        if let Some(tc) = t.last_round_tc.take() {
            if tc.round.checked_add(1) == Some(t.round) && tc.round >= self.pacemaker.round() {
                match self.safety.verify_tc(Some(&tc)) {
                    Ok(()) => self.on_tc(tc),
                    Err(e) => {
                        let e = e.to_string();
                        self.peer_misbehaved(from, "timeout with a bad timeout certificate", &e);
                    }
                }
            }
        }
        if let Some((tc, _)) = self.aggregator.add_timeout(t) {
            self.stats.tcs_formed += 1;
            self.on_tc(tc);
            return;
        }
        // f + 1 validators timed out of the round this validator is in: at
        // least one of them is honest, so the round is lost. Time out now
        // rather than at this validator's own timer, which may come a
        // backed-off timeout later (validators enter a round at different
        // times when its TC reaches them late). f liars alone cannot end a
        // round this way.
        let round = self.pacemaker.round();
        let faulty = self.validators.len().saturating_sub(1) / 3;
        if self.timed_out_round < round && self.aggregator.timed_out(round) > faulty {
            self.on_timer(round);
        }
    }

    /// Enters the round after a verified `tc` if that is ahead, recording
    /// the TC first. A restart then resumes in that round: the safety record
    /// may hold a timeout signed in it, and only this TC lets the validator
    /// sign that timeout again (without it, validators that all restarted
    /// after timing out of a round they entered by TC wait for each other).
    fn on_tc(&mut self, tc: TimeoutCertificate) {
        if tc.round < self.pacemaker.round() {
            return;
        }
        if !self.recovering {
            let bytes = pb::TimeoutCertificate::from(&tc).encode_to_vec();
            self.ledger
                .store()
                .put_high_tc(&bytes)
                .expect("recording the timeout certificate failed: storage is broken");
        }
        if let Some(new) = self.pacemaker.on_tc(tc) {
            self.enter(new);
        }
    }

    /// Keeps `qc` (the first seen for its block) to store with the block
    /// when it commits, unless its block is committed already, or more than
    /// [`MAX_FETCH_DEPTH`]
    /// above the committed head and not held: that far behind, this
    /// validator catches up by range sync, which brings each block's
    /// certificate. Without the limit a validator far behind would keep one
    /// certificate per block the others commit meanwhile.
    fn remember_certificate(&mut self, qc: &QuorumCertificate) {
        let root = self.tree.root().height;
        if qc.height <= root {
            return; // committed already (a late or replayed message)
        }
        let near = qc.height <= root.saturating_add(MAX_FETCH_DEPTH);
        if near || self.tree.contains(&qc.block_hash) {
            self.certificates
                .entry(qc.block_hash)
                .or_insert_with(|| qc.clone());
        }
    }

    /// Records a verified certificate: commits what it commits, and enters
    /// the next round if it is ahead.
    fn process_qc(&mut self, qc: QuorumCertificate) {
        self.remember_certificate(&qc);
        let round = qc.round;
        let committed = self.tree.insert_qc(qc);
        self.commit_all(committed);
        self.record_high_qc();
        if let Some(new) = self.pacemaker.on_qc(round) {
            self.enter(new);
        }
    }

    /// Commits blocks the tree released, in order, and forgets executions of
    /// the branches it pruned.
    fn commit_all(&mut self, blocks: Vec<Block>) {
        if blocks.is_empty() {
            return;
        }
        if blocks.iter().any(|b| !b.transactions.is_empty()) {
            self.commit_to_announce = true;
        }
        // Each block is stored with the certificate its committed child
        // carried, the one every validator read (leader reputation reads
        // its signers; range sync serves it as the child's `justify`).
        let carried: Vec<Option<QuorumCertificate>> = (0..blocks.len())
            .map(|i| match blocks.get(i + 1) {
                Some(child) => Some(child.justify.clone()),
                None => self.tree.carried_certificate(&blocks[i].hash()).cloned(),
            })
            .collect();
        for (block, carried) in blocks.into_iter().zip(carried) {
            self.commit(block, carried);
        }
        let tree = &self.tree;
        self.speculative.retain(|h, _| tree.contains(h));
        self.leadership.retain(|h, _| tree.contains(h));
        self.ledger
            .store()
            .prune_pending_blocks(self.tree.root().height)
            .expect("pruning recorded blocks failed: storage is broken");
    }

    fn commit(&mut self, block: Block, carried: Option<QuorumCertificate>) {
        let hash = block.hash();
        // Every block in the tree was executed before it was inserted; commit
        // that execution instead of running the block a third time.
        let executed = self
            .speculative
            .remove(&hash)
            .expect("blocks enter the tree only after they are executed");
        if let Some(leadership) = self.leadership.remove(&hash) {
            self.root_leadership = leadership;
        }
        let known = self.certificates.remove(&hash);
        let certificate = carried.filter(|qc| qc.block_hash == hash).or(known);
        let committed = self
            .ledger
            .commit_executed_then(
                block.header,
                block.transactions,
                certificate,
                executed.output,
                |block| self.drop_committed(block),
            )
            .expect("committing a certified, executed block failed: storage is broken");
        let height = committed.header.height;
        self.certificates.retain(|_, q| q.height > height);
    }

    /// Drops what a committed block included (or made stale) from the
    /// mempool; the ledger runs it before announcing the block.
    fn drop_committed(&self, committed: &CommittedBlock) {
        let store = self.ledger.store();
        let mut nonce = |k: &PublicKey| store.account(k).ok().flatten().map_or(0, |a| a.nonce);
        let mut pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
        pool.on_commit(&committed.transactions, &mut nonce);
        pool.expire(committed.header.timestamp_ms);
    }
}
