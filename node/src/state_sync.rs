//! State sync: a validator with an empty store joins from a snapshot of
//! the state at a recent committed height instead of replaying every block
//! since genesis, then follows blocks from there (ADR 0016).
//!
//! ```text
//!  joining validator                         any peer
//!  GetStateChunk(height 0, limit 0) ───────▶ newest height it can show
//!                                    ◀──────  committed: header H + commit proof
//!  verify the commit proof (2-chain, quorum of the genesis set)
//!  GetStateChunk(H, from k, 2 048) ────────▶ leaves k.. of the tree of H
//!                                    ◀──────  + range proof of the last one
//!  TreeRestore::add: the leaves so far hash, with the proof's right
//!  siblings, to H.state_root ─ store leaves, accounts, finished nodes
//!  … until `last` ─ finish: the rebuilt tree's root is H.state_root
//!  finish_import (synced): genesis + H as the committed head
//! ```
//!
//! A peer is hostile until checked: the header must be shown committed by
//! a quorum of the genesis validators, every chunk must verify against that
//! header's root (a leaf changed, dropped or added fails the range proof),
//! each account leaf's key must be its owner's account key, and the whole
//! tree must have the header's root before the store is marked committed.
//! A chunk that does not verify names the peer, and the import goes on
//! from another. Nothing before H is in the store: history below H and
//! blocks up to H are served by validators that kept them.

use crate::execution::state_tree::{self, TreeRestore};
use crate::storage::{StateEntry, Store, StoreError};
use chatpay_proto::{
    BlockHeader, ChainBinding, CommitProof, ConversionError, Hash, MAX_COMMIT_PATH, PublicKey,
    QuorumCertificate, pb, state,
};

/// Most leaves a validator serves in one chunk (about 300 KiB).
pub const MAX_CHUNK_LEAVES: usize = 2_048;
/// How far below its head a validator serves the state: 200 of the 256
/// versions it keeps whole (`node::STATE_VERSIONS_KEPT`), so the pruner
/// does not take apart a version while it is served.
pub const SERVED_VERSIONS: u64 = 200;

/// Leaves of the state tree at one committed height, from a requested key
/// on, with what proves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The header of the height, shown committed.
    pub commit: CommitProof,
    /// The certificate over that header, when the server stores it.
    pub certificate: Option<QuorumCertificate>,
    /// The leaves, in key order.
    pub entries: Vec<StateEntry>,
    /// The range proof of the last leaf ([`state_tree::range_proof`]).
    pub range_proof: Vec<u8>,
    /// No key follows the last leaf.
    pub last: bool,
    /// The server's [`Store::first_full_height`].
    pub first_full_height: u64,
}

/// The newest committed block D whose committed child C is of round
/// D.round + 1 and certified: the newest block a client can be shown
/// committed, with the proof of it. `None` while none of the last
/// [`MAX_COMMIT_PATH`] blocks is.
///
/// # Errors
/// When the store cannot be read.
pub fn newest_commit_proof(store: &dyn Store) -> Result<Option<CommitProof>, StoreError> {
    let head = store.committed_height()?.unwrap_or(0);
    let lowest = head
        .saturating_sub(MAX_COMMIT_PATH as u64)
        .max(store.first_full_height()?.saturating_sub(1));
    let mut child = store.block(head)?;
    for height in (lowest..head).rev() {
        let Some(parent) = store.block(height)? else {
            return Ok(None);
        };
        if let Some(c) = child.filter(|c| c.header.round == parent.header.round + 1) {
            if let Some(qc) = c.certificate {
                return Ok(Some(CommitProof {
                    header: parent.header,
                    commit_path: Vec::new(),
                    commit_header: c.header,
                    commit_certificate: qc,
                }));
            }
        }
        child = Some(parent);
    }
    Ok(None)
}

/// The proof that the committed block at `height` committed: the headers
/// after it up to the first block D whose committed child C is of round
/// D.round + 1 and certified, and C with its certificate (ADR 0003).
/// `None` when no such pair is within [`MAX_COMMIT_PATH`] blocks above.
///
/// # Errors
/// When the store cannot be read.
pub fn commit_proof_at(store: &dyn Store, height: u64) -> Result<Option<CommitProof>, StoreError> {
    let Some(block) = store.block(height)? else {
        return Ok(None);
    };
    let mut path = Vec::new();
    let mut parent = block.header.clone();
    for h in height + 1..=height + 1 + MAX_COMMIT_PATH as u64 {
        let Some(child) = store.block(h)? else {
            break;
        };
        if child.header.round == parent.round + 1 {
            if let Some(qc) = child.certificate {
                return Ok(Some(CommitProof {
                    header: block.header,
                    commit_path: path,
                    commit_header: child.header,
                    commit_certificate: qc,
                }));
            }
        }
        path.push(child.header.clone());
        parent = child.header;
    }
    Ok(None)
}

/// The chunk of the state at `height` (0: the newest height
/// [`newest_commit_proof`] finds) from key `from` on, with at most `limit`
/// leaves (capped at [`MAX_CHUNK_LEAVES`]). `None` when this store cannot
/// show that height committed or no longer keeps its tree whole.
///
/// # Errors
/// When the store cannot be read.
pub fn serve_chunk(
    store: &dyn Store,
    height: u64,
    from: &Hash,
    limit: usize,
) -> Result<Option<Chunk>, StoreError> {
    let first_full_height = store.first_full_height()?;
    let head = store.committed_height()?.unwrap_or(0);
    let commit = match height {
        0 => newest_commit_proof(store)?,
        h if h < first_full_height.saturating_sub(1) => None,
        // Well inside the versions the tree keeps whole, so that pruning
        // does not take one apart while it is served.
        h if h.saturating_add(SERVED_VERSIONS) < head => None,
        h => commit_proof_at(store, h)?,
    };
    let Some(commit) = commit else {
        return Ok(None);
    };
    let height = commit.header.height;
    // A version whose root was pruned is not kept whole.
    if state_tree::root_at(store, height)? != Some(commit.header.state_root) {
        return Ok(None);
    }
    let certificate = store
        .block(height)?
        .and_then(|b| b.certificate)
        .filter(|qc| qc.block_hash == commit.header.hash());
    let limit = limit.min(MAX_CHUNK_LEAVES);
    let mut entries = if limit == 0 {
        Vec::new()
    } else {
        store.state_entries(from, height, limit + 1)?
    };
    let last = entries.len() <= limit;
    entries.truncate(limit);
    let range_proof = match entries.last() {
        Some(e) => state_tree::range_proof(store, height, &e.key)?,
        None => Vec::new(),
    };
    Ok(Some(Chunk {
        commit,
        certificate,
        entries,
        range_proof,
        last,
        first_full_height,
    }))
}

/// Why a snapshot could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// What a peer served does not verify: the import goes on from another.
    #[error("refused: {0}")]
    Refused(String),
    /// The store failed (fatal).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refused(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Refused(what.into())
}

/// The key after `key` (keys are 256-bit numbers); `None` after the last.
fn next_key(key: &Hash) -> Option<Hash> {
    let mut next = *key;
    for byte in next.0.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            return Some(next);
        }
    }
    None
}

/// What the chain must be for a snapshot to be taken in.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The chain's genesis hash.
    pub genesis_hash: Hash,
    /// The genesis validator set, which certifies commits.
    pub validators: Vec<PublicKey>,
}

/// An import under way into an empty store, chunk by chunk.
pub struct Restore {
    store: std::sync::Arc<dyn Store>,
    header: BlockHeader,
    certificate: Option<QuorumCertificate>,
    tree: TreeRestore,
    /// Where the next chunk starts; `None` once the last one is in.
    next: Option<Hash>,
    burned: Option<u64>,
    leaves: u64,
}

impl Restore {
    /// Starts importing the state of the header `offer` shows committed
    /// (an answer to a chunk request, leaves or not) into `store`, which
    /// must hold no committed block.
    ///
    /// # Errors
    /// [`SnapshotError::Refused`] when the header is not shown committed by
    /// `trust`, or the certificate served with it does not certify it.
    pub fn start(
        store: std::sync::Arc<dyn Store>,
        trust: &Trust,
        offer: &Chunk,
    ) -> Result<Self, SnapshotError> {
        offer
            .commit
            .verify(&trust.genesis_hash, &trust.validators)
            .map_err(|e| refused(format!("the snapshot's header: {e}")))?;
        let header = offer.commit.header.clone();
        if header.height == 0 {
            return Err(refused("a snapshot of genesis"));
        }
        let certificate = match &offer.certificate {
            None => None,
            Some(qc) => {
                let binding = ChainBinding::genesis(trust.genesis_hash);
                let over = qc.block_hash == header.hash()
                    && qc.round == header.round
                    && qc.height == header.height;
                if !over || qc.verify(&binding, &trust.validators).is_err() {
                    return Err(refused("the certificate served with the snapshot's header"));
                }
                Some(qc.clone())
            }
        };
        Ok(Self {
            store,
            tree: TreeRestore::new(header.height, &header.state_root),
            header,
            certificate,
            next: Some(Hash::default()),
            burned: None,
            leaves: 0,
        })
    }

    /// The header whose state is imported.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The key the next chunk must start from; `None` once every leaf is in.
    pub fn next(&self) -> Option<Hash> {
        self.next
    }

    /// Leaves taken in so far.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// Takes in the next chunk (requested from [`Restore::next`]) after
    /// checking it against the header's root, and stores it.
    ///
    /// # Errors
    /// [`SnapshotError::Refused`] when the chunk is of another header, is
    /// empty, holds a malformed leaf or a leaf under another key, or does
    /// not verify; nothing of it is stored then.
    pub fn add(&mut self, chunk: Chunk) -> Result<(), SnapshotError> {
        let Some(from) = self.next else {
            return Err(refused("a chunk after the last"));
        };
        if chunk.commit.header != self.header {
            return Err(refused("a chunk of another height"));
        }
        if chunk.entries.is_empty() {
            // Nothing after the last leaf taken: the root check decides.
            if chunk.last {
                self.next = None;
                return Ok(());
            }
            return Err(refused("an empty chunk that is not the last"));
        }
        let mut burned = self.burned;
        for e in &chunk.entries {
            if e.key < from {
                return Err(refused("a leaf before the requested key"));
            }
            match &e.owner {
                Some(owner) if state::account_key_of(owner) == e.key => {
                    if state::decode_account_leaf(&e.leaf).is_none() {
                        let owner = hex::encode(owner);
                        return Err(refused(format!("the leaf of {owner} is not an account")));
                    }
                }
                None if e.key == state::burned_key() => {
                    burned = Some(
                        state::decode_burned_leaf(&e.leaf)
                            .ok_or_else(|| refused("the burned leaf is malformed"))?,
                    );
                }
                _ => return Err(refused("a leaf under a key that is not its owner's")),
            }
        }
        let leaves = chunk
            .entries
            .iter()
            .map(|e| (e.key, e.leaf.clone()))
            .collect();
        let nodes = self
            .tree
            .add(leaves, &chunk.range_proof)
            .map_err(|e| refused(format!("the chunk does not verify: {e}")))?;
        self.store
            .import_state(self.header.height, &chunk.entries, &nodes)?;
        self.burned = burned;
        self.leaves += chunk.entries.len() as u64;
        let last_key = chunk.entries.last().expect("not empty").key;
        self.next = if chunk.last {
            None
        } else {
            next_key(&last_key)
        };
        Ok(())
    }

    /// Ends the import once the last chunk is in: the tree is complete and
    /// of the header's root, and the store's committed head becomes the
    /// header (after `genesis`, the chain's block 0).
    ///
    /// # Errors
    /// [`SnapshotError::Refused`] when chunks are missing, or the leaves do
    /// not make the header's root (a server said `last` too early).
    pub fn finish(self, genesis: &BlockHeader) -> Result<BlockHeader, SnapshotError> {
        if self.next.is_some() {
            return Err(refused("the import ended before the last chunk"));
        }
        let burned = self
            .burned
            .ok_or_else(|| refused("the snapshot has no burned total"))?;
        let height = self.header.height;
        let nodes = self
            .tree
            .finish()
            .map_err(|e| refused(format!("finishing the tree: {e}")))?;
        self.store.import_state(height, &[], &nodes)?;
        let root = state_tree::root_at(self.store.as_ref(), height)?;
        if root != Some(self.header.state_root) {
            return Err(refused(format!(
                "the leaves make the root {root:?}, the header says {}",
                self.header.state_root
            )));
        }
        self.store
            .finish_import(genesis, &self.header, self.certificate.as_ref(), burned)?;
        tracing::info!(
            height,
            leaves = self.leaves,
            "state imported from a snapshot"
        );
        Ok(self.header)
    }
}

/// Where a validator whose store is empty starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncFrom {
    /// Replays every block since genesis (keeps the whole history).
    Genesis,
    /// Imports the state at a recent committed height from its peers when
    /// the chain is far ahead, then follows blocks from there.
    #[default]
    Snapshot,
}

impl std::str::FromStr for SyncFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "genesis" => Ok(Self::Genesis),
            "snapshot" => Ok(Self::Snapshot),
            other => Err(format!(
                "sync from '{other}': expected 'genesis' or 'snapshot'"
            )),
        }
    }
}

/// How a validator with an empty store joins a running chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// Genesis replay or snapshot.
    pub from: SyncFrom,
    /// With [`SyncFrom::Snapshot`]: a snapshot is taken only when the
    /// newest height a peer can show committed is at least this.
    pub snapshot_min_height: u64,
    /// Committed blocks kept whole below the head (with their
    /// transactions and history); older ones are forgotten. 0 keeps every
    /// block; otherwise at least [`MIN_RETAIN_BLOCKS`].
    pub retain_blocks: u64,
}

/// The fewest blocks a validator that prunes keeps: a restart reads the
/// blocks of the last [`EXCLUDE_ROUNDS`] rounds and their parent to
/// rebuild leader reputation.
///
/// [`EXCLUDE_ROUNDS`]: crate::consensus::leader::EXCLUDE_ROUNDS
pub const MIN_RETAIN_BLOCKS: u64 = crate::consensus::leader::EXCLUDE_ROUNDS + 1;

/// The default of [`SyncConfig::snapshot_min_height`].
pub const SNAPSHOT_MIN_HEIGHT: u64 = 1_024;

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            from: SyncFrom::Snapshot,
            snapshot_min_height: SNAPSHOT_MIN_HEIGHT,
            retain_blocks: 0,
        }
    }
}

/// How long a joining validator waits for its peers' offers.
const OFFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long one chunk may take.
const CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Imports tried before the validator replays from genesis instead.
const ATTEMPTS: usize = 3;
/// How long one import may take before it is abandoned (a faulty peer
/// answering just within [`CHUNK_TIMEOUT`] cannot hold it for ever).
const IMPORT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Before a validator opens its ledger: with [`SyncFrom::Snapshot`] and a
/// store without blocks (but genesis), imports the state at the newest
/// height its peers show committed, when that is at least
/// [`SyncConfig::snapshot_min_height`]. An import a crash interrupted is
/// discarded first. Otherwise (no peer offers one, every attempt failed,
/// or the chain is not that far) the store is left for replay from
/// genesis. Returns the imported header, if any.
///
/// # Errors
/// Only when the store fails.
pub async fn join(
    store: &std::sync::Arc<dyn Store>,
    genesis: &BlockHeader,
    trust: &Trust,
    peers: &std::sync::Arc<crate::network::Peers>,
    config: SyncConfig,
) -> Result<Option<BlockHeader>, StoreError> {
    if let Some(version) = store.partial_import()? {
        tracing::warn!(version, "discarding a snapshot import that did not finish");
        store.discard_chain_data()?;
    }
    if config.from != SyncFrom::Snapshot {
        return Ok(None);
    }
    let local = store.committed_height()?.unwrap_or(0);
    let mut refused_by: Vec<crate::consensus::messages::ValidatorIndex> = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let offers = offers(peers, trust, &refused_by).await;
        let Some((_, best)) = offers.first() else {
            tracing::info!("no validator offers a state snapshot; following from the store");
            return Ok(None);
        };
        let height = best.commit.header.height;
        let kept_from: Vec<u64> = offers.iter().map(|(_, o)| o.first_full_height).collect();
        if attempt == 1 && !worth_a_snapshot(local, height, &kept_from, config) {
            return Ok(None);
        }
        if store.committed_height()?.is_some() || attempt > 1 {
            store.discard_chain_data()?;
        }
        match import(store, genesis, trust, peers, &offers).await {
            Ok(header) => return Ok(Some(header)),
            Err((_, SnapshotError::Store(e))) => return Err(e),
            Err((peer, SnapshotError::Refused(why))) => {
                tracing::warn!(attempt, peer, why, "state snapshot import failed");
                refused_by.extend(peer);
            }
        }
        store.discard_chain_data()?;
    }
    tracing::warn!("no state snapshot could be imported; replaying from genesis");
    Ok(None)
}

/// Whether to import the snapshot of `height` over a store at `local`:
/// an empty store (genesis only) when the chain is at least
/// [`SyncConfig::snapshot_min_height`]; a store with blocks only when no
/// peer that answered keeps the block after its head whole (`kept_from`:
/// each one's first full height; they forget old blocks), so that range
/// sync cannot bring it.
fn worth_a_snapshot(local: u64, height: u64, kept_from: &[u64], config: SyncConfig) -> bool {
    if local == 0 {
        if height < config.snapshot_min_height {
            tracing::info!(
                height,
                min = config.snapshot_min_height,
                "the chain is not far ahead; replaying from genesis"
            );
            return false;
        }
        return true;
    }
    let stranded = height > local && kept_from.iter().all(|&f| f > local.saturating_add(1));
    if stranded {
        tracing::warn!(
            local,
            height,
            "no validator keeps the blocks after this one's head; its chain data is \
             replaced by a state snapshot (the safety record stays)"
        );
    }
    stranded
}

/// Every peer's offer that verifies (but those in `skip`), highest first.
async fn offers(
    peers: &std::sync::Arc<crate::network::Peers>,
    trust: &Trust,
    skip: &[crate::consensus::messages::ValidatorIndex],
) -> Vec<(crate::consensus::messages::ValidatorIndex, Chunk)> {
    let mut asks = tokio::task::JoinSet::new();
    for peer in peers.others().filter(|p| !skip.contains(p)) {
        let peers = peers.clone();
        asks.spawn(async move {
            let request = pb::StateChunkRequest {
                height: 0,
                from_key: Vec::new(),
                limit: 0,
            };
            (peer, peers.state_chunk(peer, request, OFFER_TIMEOUT).await)
        });
    }
    let mut offers = Vec::new();
    while let Some(answer) = asks.join_next().await {
        let Ok((peer, answer)) = answer else {
            continue;
        };
        match answer {
            Ok(chunk) => match chunk.commit.verify(&trust.genesis_hash, &trust.validators) {
                Ok(()) => offers.push((peer, chunk)),
                Err(e) => {
                    tracing::warn!(peer, error = %e, "a snapshot offer that does not verify");
                }
            },
            Err(e) => tracing::debug!(peer, error = %e, "no snapshot offer"),
        }
    }
    // Highest first; among equals, by index (a replayable order).
    offers.sort_by_key(|(p, c)| (std::cmp::Reverse(c.commit.header.height), *p));
    offers
}

/// A peer by its index.
type Peer = crate::consensus::messages::ValidatorIndex;

/// Asks `peer` for the chunk of `height` from `from`, in a task of its own.
fn fetch(
    peers: &std::sync::Arc<crate::network::Peers>,
    peer: Peer,
    height: u64,
    from: Hash,
) -> tokio::task::JoinHandle<(Peer, Result<Chunk, String>)> {
    let peers = peers.clone();
    tokio::spawn(async move {
        let request = pb::StateChunkRequest {
            height,
            from_key: from.0.to_vec(),
            limit: u32::try_from(MAX_CHUNK_LEAVES).expect("small"),
        };
        (peer, peers.state_chunk(peer, request, CHUNK_TIMEOUT).await)
    })
}

/// Imports the state of the best offer, chunk by chunk, from the peers
/// that offered that height or above (the next one when a peer cannot be
/// reached). The next chunk is asked for as soon as one arrives (it starts
/// after that one's last key), so the server reads it while this validator
/// checks and stores the one before. A chunk that does not verify ends
/// the attempt and names its peer (a failed check leaves the tree restore
/// unusable).
async fn import(
    store: &std::sync::Arc<dyn Store>,
    genesis: &BlockHeader,
    trust: &Trust,
    peers: &std::sync::Arc<crate::network::Peers>,
    offers: &[(Peer, Chunk)],
) -> Result<BlockHeader, (Option<Peer>, SnapshotError)> {
    let (first, offer) = &offers[0];
    let mut restore = Restore::start(store.clone(), trust, offer).map_err(|e| (Some(*first), e))?;
    let height = restore.header().height;
    let mut sources: Vec<Peer> = offers
        .iter()
        .filter(|(_, o)| o.commit.header.height >= height)
        .map(|(p, _)| *p)
        .collect();
    tracing::info!(
        height,
        sources = sources.len(),
        "importing a state snapshot"
    );
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + IMPORT_DEADLINE;
    // Time spent waiting on each peer: past the deadline, the slowest is
    // named.
    let mut waited: std::collections::BTreeMap<Peer, std::time::Duration> = Default::default();
    let (mut turn, mut chunks, mut last_peer) = (0usize, 0usize, *first);
    let mut pending = Some(fetch(peers, sources[0], height, Hash::default()));
    while let Some(task) = pending.take() {
        let asked = tokio::time::Instant::now();
        let Ok(joined) = tokio::time::timeout_at(deadline, task).await else {
            let slowest = waited.iter().max_by_key(|(_, d)| **d).map(|(p, _)| *p);
            return Err((slowest, refused("the import took longer than its deadline")));
        };
        let (peer, answer) = joined.map_err(|e| (None, refused(e.to_string())))?;
        *waited.entry(peer).or_default() += asked.elapsed();
        // An honest server fills every chunk but the last.
        let answer = answer.and_then(|c| match c.entries.len() {
            n if n < MAX_CHUNK_LEAVES && !c.last => {
                Err(format!("a chunk of {n} leaves that is not the last"))
            }
            _ => Ok(c),
        });
        let chunk = match answer {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::debug!(peer, error = %e, "no snapshot chunk; asking another validator");
                sources.retain(|p| *p != peer);
                if sources.is_empty() {
                    let why = format!("no validator serves the rest of it (last: {e})");
                    return Err((Some(peer), refused(why)));
                }
                let from = restore.next().expect("a chunk was asked for");
                turn += 1;
                pending = Some(fetch(peers, sources[turn % sources.len()], height, from));
                continue;
            }
        };
        // The next chunk starts after this one's last key: ask for it (of
        // the next source in turn) while this one is checked and stored.
        turn += 1;
        if !chunk.last {
            if let Some(from) = chunk.entries.last().and_then(|e| next_key(&e.key)) {
                pending = Some(fetch(peers, sources[turn % sources.len()], height, from));
            }
        }
        if let Err(e) = crate::node::blocking(|| restore.add(chunk)) {
            if let Some(task) = pending {
                task.abort();
            }
            return Err((Some(peer), e));
        }
        chunks += 1;
        last_peer = peer;
    }
    // Whoever served the last chunk said it was the last.
    let header =
        crate::node::blocking(|| restore.finish(genesis)).map_err(|e| (Some(last_peer), e))?;
    tracing::info!(
        height,
        chunks,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "state snapshot imported"
    );
    Ok(header)
}

impl From<&Chunk> for pb::StateChunk {
    fn from(c: &Chunk) -> Self {
        Self {
            commit: Some((&c.commit).into()),
            certificate: c.certificate.as_ref().map(Into::into),
            leaves: c
                .entries
                .iter()
                .map(|e| pb::StateLeaf {
                    owner: e.owner.as_ref().map_or_else(Vec::new, |k| k.to_vec()),
                    leaf: e.leaf.clone(),
                })
                .collect(),
            range_proof: c.range_proof.clone(),
            last: c.last,
            first_full_height: c.first_full_height,
        }
    }
}

impl TryFrom<pb::StateChunk> for Chunk {
    type Error = ConversionError;

    fn try_from(p: pb::StateChunk) -> Result<Self, ConversionError> {
        let commit = p.commit.ok_or_else(|| ConversionError::missing("commit"))?;
        let commit = CommitProof::try_from(commit).map_err(|e| e.within("commit"))?;
        let certificate = p
            .certificate
            .map(QuorumCertificate::try_from)
            .transpose()
            .map_err(|e| e.within("certificate"))?;
        if p.leaves.len() > MAX_CHUNK_LEAVES {
            return Err(ConversionError::invalid(
                "leaves",
                format!("{} leaves, more than {MAX_CHUNK_LEAVES}", p.leaves.len()),
            ));
        }
        let entries = p
            .leaves
            .into_iter()
            .map(|l| {
                // The key is not parsed (a point decompression per leaf
                // was most of an import's time): its hash must be the
                // leaf's tree key, which only the real key's is.
                let owner: Option<[u8; PublicKey::LEN]> = match l.owner.len() {
                    0 => None,
                    _ => Some(l.owner.as_slice().try_into().map_err(|_| {
                        ConversionError::invalid(
                            "leaves.owner",
                            format!("{} bytes, not {}", l.owner.len(), PublicKey::LEN),
                        )
                    })?),
                };
                let key = owner
                    .as_ref()
                    .map_or_else(state::burned_key, state::account_key_of);
                Ok(StateEntry {
                    key,
                    owner,
                    leaf: l.leaf,
                })
            })
            .collect::<Result<Vec<_>, ConversionError>>()?;
        Ok(Self {
            commit,
            certificate,
            entries,
            range_proof: p.range_proof,
            last: p.last,
            first_full_height: p.first_full_height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_taken_over_an_empty_store_far_behind_or_a_stranded_one() {
        let config = SyncConfig {
            snapshot_min_height: 100,
            ..SyncConfig::default()
        };
        // An empty store: only when the chain is far enough.
        assert!(!worth_a_snapshot(0, 99, &[1, 1], config));
        assert!(worth_a_snapshot(0, 100, &[1, 1], config));
        // A store at 50: range sync works while one peer keeps block 51.
        assert!(!worth_a_snapshot(50, 5_000, &[1, 60], config));
        assert!(!worth_a_snapshot(50, 5_000, &[51, 60], config));
        // Nobody keeps it: stranded.
        assert!(worth_a_snapshot(50, 5_000, &[52, 60], config));
        // Not behind at all.
        assert!(!worth_a_snapshot(50, 50, &[52, 60], config));
    }

    #[test]
    fn the_key_after_counts_in_base_256() {
        let mut k = Hash::default();
        k.0[31] = 0xff;
        let mut want = Hash::default();
        want.0[30] = 1;
        assert_eq!(next_key(&k), Some(want));
        assert_eq!(next_key(&Hash([0xff; 32])), None);
    }
}
