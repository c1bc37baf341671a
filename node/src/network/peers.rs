//! Links to the other validators: per peer, one bounded queue and one
//! long-lived stream for consensus messages, the same for forwarded
//! transaction batches, and request/response calls for catch-up.

use super::{
    Connector, FORWARD_QUEUE, MAX_BACKOFF, MAX_FORWARD_TXS, MAX_PEER_MESSAGE_BYTES, MIN_BACKOFF,
    PEER_QUEUE, RPC_TIMEOUT, SYNC_TIMEOUT,
};
use crate::consensus::messages::{Block, ValidatorIndex};
use crate::consensus::sync::{MAX_SYNC_BLOCKS, SYNC_RECEIVE_MAX_BYTES, SyncedBlock};
use crate::metrics::Metrics;
use chatpay_proto::{Hash, pb};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

type Client = pb::validator_client::ValidatorClient<Channel>;

/// An open client-streaming call, until it ends.
type Call =
    Pin<Box<dyn Future<Output = Result<tonic::Response<pb::DeliverResponse>, Status>> + Send>>;

/// Consensus messages buffered inside one open stream (on top of the peer
/// queue).
const STREAM_BUFFER: usize = 256;
/// Forwarded batches buffered inside one open stream (on top of
/// [`FORWARD_QUEUE`]): a batch holds up to [`MAX_FORWARD_TXS`] transactions.
const FORWARD_STREAM_BUFFER: usize = 8;

struct Link {
    client: Client,
    consensus: mpsc::Sender<pb::ConsensusMessage>,
    forward: mpsc::Sender<pb::ForwardTransactionsRequest>,
}

/// The other validators, by index (no link to this validator itself).
pub struct Peers {
    me: ValidatorIndex,
    links: Vec<Option<Link>>,
    /// One sync in flight at a time, whoever asks: what it holds is
    /// bounded by [`SYNC_RECEIVE_MAX_BYTES`].
    sync_slot: tokio::sync::Semaphore,
    /// The most encoded bytes kept from one sync response.
    largest_sync_response: std::sync::atomic::AtomicUsize,
}

/// Why a sync brought nothing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another sync is in flight; its answer will come.
    #[error("another sync is in flight")]
    Busy,
    /// The peer failed, timed out, or could not be reached.
    #[error("{0}")]
    Failed(String),
}

impl Peers {
    /// Links to every validator in `addresses` but `me`, with their sending
    /// tasks; the tasks end when `stop` turns true.
    pub fn start(
        me: ValidatorIndex,
        addresses: &[String],
        connector: &dyn Connector,
        stop: &watch::Receiver<bool>,
        metrics: &Arc<Metrics>,
    ) -> Result<(Self, Vec<JoinHandle<()>>), String> {
        let mut links = Vec::with_capacity(addresses.len());
        let mut tasks = Vec::new();
        for (index, addr) in addresses.iter().enumerate() {
            let index = ValidatorIndex::try_from(index).expect("validator sets are small");
            if index == me {
                links.push(None);
                continue;
            }
            let client = Client::new(connector.channel(addr)?)
                .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
            metrics.peer_connected(index, false);
            let (consensus, queue) = mpsc::channel(PEER_QUEUE);
            let (forward, batches) = mpsc::channel(FORWARD_QUEUE);
            tasks.push(tokio::spawn(stream_to_peer(
                index,
                client.clone(),
                queue,
                stop.clone(),
                (STREAM_BUFFER, Some(metrics.clone())),
                |mut c, s| Box::pin(async move { c.stream(s).await }),
            )));
            tasks.push(tokio::spawn(stream_to_peer(
                index,
                client.clone(),
                batches,
                stop.clone(),
                (FORWARD_STREAM_BUFFER, None),
                |mut c, s| Box::pin(async move { c.forward_stream(s).await }),
            )));
            links.push(Some(Link {
                client,
                consensus,
                forward,
            }));
        }
        let peers = Self {
            me,
            links,
            sync_slot: tokio::sync::Semaphore::new(1),
            largest_sync_response: std::sync::atomic::AtomicUsize::new(0),
        };
        Ok((peers, tasks))
    }

    /// The other validators' indices.
    pub fn others(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        (0..self.links.len())
            .filter(|&i| self.links[i].is_some())
            .map(|i| ValidatorIndex::try_from(i).expect("validator sets are small"))
    }

    /// Asks `peer` for a chunk of the state (state sync), within `timeout`;
    /// the chunk is checked for form only ([`crate::state_sync::Restore`]
    /// checks the rest).
    ///
    /// # Errors
    /// When the peer cannot be reached, refuses, times out or answers
    /// something malformed.
    pub async fn state_chunk(
        &self,
        peer: ValidatorIndex,
        request: pb::StateChunkRequest,
        timeout: Duration,
    ) -> Result<crate::state_sync::Chunk, String> {
        let mut client = self
            .link(peer)
            .ok_or_else(|| format!("no link to validator {peer}"))?
            .client
            .clone();
        let call = async move { client.get_state_chunk(request).await };
        let answer = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        crate::state_sync::Chunk::try_from(answer.into_inner()).map_err(|e| e.to_string())
    }

    fn link(&self, peer: ValidatorIndex) -> Option<&Link> {
        self.links.get(peer as usize).and_then(Option::as_ref)
    }

    /// Queues `message` for `peer`; dropped (and logged) when its queue is full.
    pub fn send(&self, peer: ValidatorIndex, message: pb::ConsensusMessage) {
        if let Some(link) = self.link(peer) {
            if link.consensus.try_send(message).is_err() {
                tracing::debug!(peer, "peer queue full or closed; message dropped");
            }
        }
    }

    /// Queues `message` for every other validator.
    pub fn broadcast(&self, message: &pb::ConsensusMessage) {
        for peer in 0..self.links.len() {
            let peer = peer as ValidatorIndex;
            if peer != self.me {
                self.send(peer, message.clone());
            }
        }
    }

    /// Queues a batch of admitted transactions for every other validator.
    pub fn forward(&self, batch: &[pb::SignedTransaction]) {
        for link in self.links.iter().flatten() {
            let request = pb::ForwardTransactionsRequest {
                sender: self.me,
                transactions: batch.to_vec(),
            };
            if link.forward.try_send(request).is_err() {
                tracing::debug!("forward queue full; batch stays local for that peer");
            }
        }
    }

    /// Sends `transactions` to every other validator now, in batches, and
    /// waits (each call bounded by [`RPC_TIMEOUT`]): the last thing a
    /// stopping validator does, so what it acknowledged survives it.
    pub async fn hand_over(&self, transactions: &[pb::SignedTransaction]) -> usize {
        let mut calls = tokio::task::JoinSet::new();
        for link in self.links.iter().flatten() {
            let mut client = link.client.clone();
            let batches: Vec<Vec<pb::SignedTransaction>> = transactions
                .chunks(MAX_FORWARD_TXS)
                .map(<[_]>::to_vec)
                .collect();
            let me = self.me;
            calls.spawn(async move {
                let mut sent = 0;
                for batch in batches {
                    let n = batch.len();
                    let request = pb::ForwardTransactionsRequest {
                        sender: me,
                        transactions: batch,
                    };
                    let call = client.forward_transactions(request);
                    if let Ok(Ok(_)) = tokio::time::timeout(RPC_TIMEOUT, call).await {
                        sent += n;
                    }
                }
                sent
            });
        }
        let mut reached = 0;
        while let Some(done) = calls.join_next().await {
            if done.is_ok_and(|sent| sent == transactions.len()) {
                reached += 1;
            }
        }
        reached
    }

    /// Fetches the block `hash` from `peer` (unverified: the core checks it).
    pub async fn fetch_block(&self, peer: ValidatorIndex, hash: Hash) -> Result<Block, String> {
        let mut client = self
            .link(peer)
            .ok_or_else(|| format!("no link to validator {peer}"))?
            .client
            .clone();
        let request = pb::FetchBlockRequest {
            block_hash: hash.0.to_vec(),
        };
        let response = tokio::time::timeout(RPC_TIMEOUT, client.fetch_block(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?
            .into_inner();
        let block = response.block.ok_or("response without a block")?;
        Block::try_from(block).map_err(|e| e.to_string())
    }

    /// The most encoded bytes kept from one sync response so far (at most
    /// [`SYNC_RECEIVE_MAX_BYTES`]).
    pub fn largest_sync_response(&self) -> usize {
        self.largest_sync_response
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches committed blocks from `from_height` on from `peer`; stops at
    /// the first malformed one (the core checks the rest), and once the
    /// response passes [`SYNC_RECEIVE_MAX_BYTES`] or 4 × [`MAX_SYNC_BLOCKS`]
    /// blocks. One sync at a time: while one is in flight, another returns
    /// [`SyncError::Busy`] at once.
    pub async fn sync_blocks(
        &self,
        peer: ValidatorIndex,
        from_height: u64,
    ) -> Result<Vec<SyncedBlock>, SyncError> {
        let Ok(_slot) = self.sync_slot.try_acquire() else {
            return Err(SyncError::Busy);
        };
        let mut client = self
            .link(peer)
            .ok_or_else(|| SyncError::Failed(format!("no link to validator {peer}")))?
            .client
            .clone();
        let request = pb::SyncBlocksRequest {
            from_height,
            to_height: from_height.saturating_add(4 * MAX_SYNC_BLOCKS - 1),
        };
        let collect = async {
            let mut stream = client
                .sync_blocks(request)
                .await
                .map_err(|s| format!("{}: {}", s.code(), s.message()))?
                .into_inner();
            let mut blocks = Vec::new();
            let mut received = 0usize;
            while let Some(item) = stream.message().await.map_err(|s| s.to_string())? {
                let size = prost::Message::encoded_len(&item);
                if received.saturating_add(size) > SYNC_RECEIVE_MAX_BYTES {
                    tracing::debug!(peer, received, "sync response over its byte cap; cut");
                    break;
                }
                received += size;
                match SyncedBlock::try_from(item) {
                    Ok(b) => blocks.push(b),
                    Err(e) => {
                        tracing::warn!(peer, error = %e, "malformed synced block");
                        break;
                    }
                }
                if blocks.len() as u64 >= 4 * MAX_SYNC_BLOCKS {
                    break;
                }
            }
            self.largest_sync_response
                .fetch_max(received, std::sync::atomic::Ordering::Relaxed);
            Ok(blocks)
        };
        tokio::time::timeout(SYNC_TIMEOUT, collect)
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r)
            .map_err(SyncError::Failed)
    }
}

/// Keeps one streaming call (`open`: consensus messages, or forwarded
/// batches) open to `peer`, feeding it from `queue`; on failure waits
/// (exponential backoff) and opens another. A message in flight when a
/// stream breaks is lost, which consensus tolerates (and a forwarded
/// transaction stays in this validator's mempool). `buffer` messages wait
/// inside the open stream; `metrics`, when given, tracks whether the peer
/// is connected.
async fn stream_to_peer<M: Send + 'static>(
    peer: ValidatorIndex,
    client: Client,
    mut queue: mpsc::Receiver<M>,
    mut stop: watch::Receiver<bool>,
    (buffer, metrics): (usize, Option<Arc<Metrics>>),
    open: fn(Client, ReceiverStream<M>) -> Call,
) {
    let connected = |up| {
        if let Some(m) = &metrics {
            m.peer_connected(peer, up);
        }
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        let (tx, rx) = mpsc::channel(buffer);
        let mut call = open(client.clone(), ReceiverStream::new(rx));
        let opened = tokio::time::Instant::now();
        let mut marked = false;
        let ended = loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                result = &mut call => break result.err(),
                // A stream still open after a second is taken as connected.
                () = tokio::time::sleep_until(opened + Duration::from_secs(1)), if !marked => {
                    connected(true);
                    marked = true;
                }
                message = queue.recv() => match message {
                    None => return,
                    // Never wait here: the call must keep being polled to
                    // notice a dead connection. A full stream drops.
                    Some(m) => match tx.try_send(m) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::debug!(peer, "stream to peer full; message dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break None,
                    },
                },
            }
        };
        connected(false);
        if opened.elapsed() > Duration::from_secs(10) {
            backoff = MIN_BACKOFF;
        }
        match ended {
            Some(status) => {
                tracing::debug!(peer, code = ?status.code(), message = status.message(), "stream to peer ended; reconnecting")
            }
            None => tracing::debug!(peer, "stream to peer closed; reconnecting"),
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
