//! Handlers of `chatpay.v1.Validator`: what peers send and ask for.

use super::{MAX_FORWARD_TXS, MAX_PEER_MESSAGE_BYTES};
use crate::api::ApiState;
use crate::consensus::core::Input;
use crate::consensus::mutations::Faulty;
use crate::consensus::sync::{
    MAX_SYNC_BLOCKS, SYNC_RECEIVE_MAX_BYTES, SyncedBlock, committed_block_by_hash, committed_range,
};
use crate::consensus::wire::ConsensusMessage;
use crate::node::{CoreEvent, blocking, each_yielding};
use crate::state_sync;
use crate::storage::Store;
use chatpay_proto::{Hash, SignedTransfer, hash_field, pb};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// The `chatpay.v1.Validator` service of one validator.
#[derive(Clone)]
pub struct ValidatorService {
    events: mpsc::Sender<CoreEvent>,
    api: Arc<ApiState>,
    validators: usize,
    stopping: watch::Receiver<bool>,
    faulty: Faulty,
}

impl ValidatorService {
    /// A service feeding the core through `events`, admitting forwarded
    /// transactions through `api`; `stopping` turns true at shutdown.
    pub fn new(
        events: mpsc::Sender<CoreEvent>,
        api: Arc<ApiState>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let validators = api.ledger.genesis().validators.len();
        Self {
            events,
            api,
            validators,
            stopping,
            faulty: Faulty::default(),
        }
    }

    /// The same service, misbehaving as `faulty` says (simulation only).
    pub fn with_faulty(mut self, faulty: Faulty) -> Self {
        self.faulty = faulty;
        self
    }

    /// The tonic server, with the message size cap applied.
    pub fn into_server(self) -> pb::validator_server::ValidatorServer<Self> {
        pb::validator_server::ValidatorServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    /// Decodes one message and queues it for the core (waiting for room:
    /// a slow core slows its peers' streams rather than growing a queue).
    async fn deliver(&self, message: pb::ConsensusMessage) -> Result<(), Status> {
        let message = ConsensusMessage::try_from(message)
            .map_err(|e| Status::invalid_argument(format!("invalid consensus message: {e}")))?;
        let from = message.sender();
        if from as usize >= self.validators {
            return Err(Status::invalid_argument(format!(
                "sender {from} is not one of the {} validators",
                self.validators
            )));
        }
        self.events
            .send(CoreEvent::Input(Input::Message(from, message)))
            .await
            .map_err(|_| Status::unavailable("validator is shutting down"))
    }

    /// Decodes a forwarded batch (all or nothing), admits each transaction
    /// (signature checks on this task, [`each_yielding`]) and wakes the
    /// core if any was new.
    async fn admit_forwarded(&self, request: pb::ForwardTransactionsRequest) -> Result<(), Status> {
        if request.transactions.len() > MAX_FORWARD_TXS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_FORWARD_TXS} transactions per batch, got {}",
                request.transactions.len()
            )));
        }
        let transactions = request
            .transactions
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                SignedTransfer::try_from(t).map_err(|e| {
                    Status::invalid_argument(format!("invalid transactions[{i}]: {e}"))
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let admissions = each_yielding(transactions, |tx| self.api.admit_forwarded(tx))
            .await
            .map_err(crate::api::internal)?;
        let admitted = admissions
            .iter()
            .any(|a| a.as_ref().is_ok_and(|a| a.is_new()));
        if admitted {
            // When the queue is full the wake-up is skipped: a waiting
            // leader still proposes at its idle interval.
            let _ = self
                .events
                .try_send(CoreEvent::Input(Input::TransactionsAvailable));
        }
        Ok(())
    }
}

/// The next message of a peer's stream: `None` when the peer ends it, an
/// error when it breaks or this validator stops.
async fn next_message<T>(
    stream: &mut Streaming<T>,
    stopping: &mut watch::Receiver<bool>,
) -> Result<Option<T>, Status> {
    tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => Err(Status::unavailable("validator is shutting down")),
        next = stream.message() => next,
    }
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<pb::CertifiedBlock, Status>> + Send>>;

#[tonic::async_trait]
impl pb::validator_server::Validator for ValidatorService {
    async fn stream(
        &self,
        request: Request<Streaming<pb::ConsensusMessage>>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        let remote = request.remote_addr();
        let mut messages = request.into_inner();
        let mut stopping = self.stopping.clone();
        while let Some(message) = next_message(&mut messages, &mut stopping).await? {
            if let Err(status) = self.deliver(message).await {
                // Debug only: anyone can open this stream and send garbage.
                tracing::debug!(?remote, error = status.message(), "dropping a peer stream");
                return Err(status);
            }
        }
        Ok(Response::new(pb::DeliverResponse {}))
    }

    async fn deliver(
        &self,
        request: Request<pb::ConsensusMessage>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        ValidatorService::deliver(self, request.into_inner()).await?;
        Ok(Response::new(pb::DeliverResponse {}))
    }

    async fn forward_stream(
        &self,
        request: Request<Streaming<pb::ForwardTransactionsRequest>>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        let remote = request.remote_addr();
        let mut batches = request.into_inner();
        let mut stopping = self.stopping.clone();
        while let Some(batch) = next_message(&mut batches, &mut stopping).await? {
            if let Err(status) = self.admit_forwarded(batch).await {
                tracing::debug!(
                    ?remote,
                    error = status.message(),
                    "dropping a forward stream"
                );
                return Err(status);
            }
        }
        Ok(Response::new(pb::DeliverResponse {}))
    }

    async fn forward_transactions(
        &self,
        request: Request<pb::ForwardTransactionsRequest>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        self.admit_forwarded(request.into_inner()).await?;
        Ok(Response::new(pb::DeliverResponse {}))
    }

    async fn fetch_block(
        &self,
        request: Request<pb::FetchBlockRequest>,
    ) -> Result<Response<pb::FetchBlockResponse>, Status> {
        let hash = hash_field(&request.into_inner().block_hash, "block_hash")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.events
            .send(CoreEvent::Block(hash, reply))
            .await
            .map_err(|_| Status::unavailable("validator is shutting down"))?;
        let block = match answer.await {
            Ok(Some(block)) => Some(block),
            Ok(None) => committed_block_by_hash(self.api.ledger.store().as_ref(), &hash)
                .map_err(crate::api::internal)?
                .map(|s| s.block),
            Err(_) => return Err(Status::unavailable("validator is shutting down")),
        };
        let block = block.ok_or_else(|| Status::not_found(format!("no block {hash}")))?;
        Ok(Response::new(pb::FetchBlockResponse {
            block: Some((&block).into()),
        }))
    }

    type SyncBlocksStream = BlockStream;

    async fn sync_blocks(
        &self,
        request: Request<pb::SyncBlocksRequest>,
    ) -> Result<Response<BlockStream>, Status> {
        let r = request.into_inner();
        if r.from_height == 0 || r.to_height < r.from_height {
            return Err(Status::invalid_argument(format!(
                "invalid range {}..={}: heights start at 1",
                r.from_height, r.to_height
            )));
        }
        let to = r
            .to_height
            .min(r.from_height.saturating_add(4 * MAX_SYNC_BLOCKS - 1));
        let store = self.api.ledger.store();
        let blocks = blocking(|| committed_range(store.as_ref(), r.from_height, to))
            .map_err(crate::api::internal)?;
        let items: Vec<Result<pb::CertifiedBlock, Status>> = if self.faulty.bloat_sync() {
            let genesis_hash = self.api.ledger.genesis().hash();
            bloated(&blocks, genesis_hash).into_iter().map(Ok).collect()
        } else {
            blocks.iter().map(|b| Ok(b.into())).collect()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn get_state_chunk(
        &self,
        request: Request<pb::StateChunkRequest>,
    ) -> Result<Response<pb::StateChunk>, Status> {
        let r = request.into_inner();
        let store = self.api.ledger.store();
        let mut chunk = blocking(|| state_chunk(store.as_ref(), &r))?;
        if self.faulty.forge_state() {
            forge(&mut chunk);
        }
        Ok(Response::new(chunk))
    }
}

/// A forging server's chunk ([`Faulty::forge_state`]): the first account
/// leaf's balance one higher.
fn forge(chunk: &mut pb::StateChunk) {
    let leaf = chunk.leaves.iter_mut().find(|l| !l.owner.is_empty());
    if let Some(leaf) = leaf {
        if let Some(mut account) = chatpay_proto::state::decode_account_leaf(&leaf.leaf) {
            account.balance = account.balance.wrapping_add(1);
            leaf.leaf = chatpay_proto::state::account_leaf(&account);
        }
    }
}

/// The state chunk `r` asks for, or why it cannot be served.
fn state_chunk(store: &dyn Store, r: &pb::StateChunkRequest) -> Result<pb::StateChunk, Status> {
    let from = match r.from_key.len() {
        0 => Hash::default(),
        _ => Hash::from_slice(&r.from_key).ok_or_else(|| {
            Status::invalid_argument(format!(
                "from_key is {} bytes; a tree key is 32",
                r.from_key.len()
            ))
        })?,
    };
    let limit = usize::try_from(r.limit).unwrap_or(usize::MAX);
    let chunk = state_sync::serve_chunk(store, r.height, &from, limit)
        .map_err(crate::api::internal)?
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "the state at height {} is not kept here, or not shown committed yet \
                 (0 asks for the newest)",
                r.height
            ))
        })?;
    Ok((&chunk).into())
}

/// A sync-response bloater's answer (the simulator's faulty validator):
/// the real blocks, each under a certificate whose signatures are broken,
/// then well-formed junk blocks of the largest transfers until the response
/// is 8 MiB past what a receiver reads ([`SYNC_RECEIVE_MAX_BYTES`]) or
/// holds the most blocks a response may.
fn bloated(blocks: &[SyncedBlock], genesis_hash: chatpay_proto::Hash) -> Vec<pb::CertifiedBlock> {
    let broken = chatpay_proto::Signature([1; 64]);
    let mut out: Vec<pb::CertifiedBlock> = blocks
        .iter()
        .map(|b| {
            let mut b = b.clone();
            for s in &mut b.block.justify.signatures {
                s.signature = broken;
            }
            b.certificate = None;
            pb::CertifiedBlock::from(&b)
        })
        .collect();
    let Some(last) = blocks.last() else {
        return out;
    };
    let junk = junk_block(last, genesis_hash);
    let size = prost::Message::encoded_len(&junk);
    let mut bytes: usize = out.iter().map(prost::Message::encoded_len).sum();
    let limit = SYNC_RECEIVE_MAX_BYTES + (8 << 20);
    while bytes <= limit && (out.len() as u64) < 4 * MAX_SYNC_BLOCKS {
        out.push(junk.clone());
        bytes += size;
    }
    out
}

/// A block after `last` of 1 000 transfers of 64 outputs and a full memo
/// each, signed by nobody (about 3 MiB encoded).
fn junk_block(last: &SyncedBlock, genesis_hash: chatpay_proto::Hash) -> pb::CertifiedBlock {
    use chatpay_proto::{MAX_MEMO_BYTES, MAX_OUTPUTS, Output, SignedTransfer, Transfer};
    let sender = chatpay_proto::SecretKey::from_slice(&[0x6b; 32])
        .expect("a valid scalar")
        .public_key()
        .clone();
    let outputs: Vec<Output> = (0..MAX_OUTPUTS)
        .map(|i| Output {
            recipient: sender.clone(),
            amount: i as u64 + 1,
        })
        .collect();
    let transactions: Vec<SignedTransfer> = (0..1_000u64)
        .map(|nonce| {
            let t = Transfer::new(
                genesis_hash,
                sender.clone(),
                nonce + 1,
                1,
                outputs.clone(),
                vec![0x6a; MAX_MEMO_BYTES],
            )
            .expect("within the transfer limits");
            SignedTransfer::new(t, chatpay_proto::Signature([2; 64]))
        })
        .collect();
    let mut block = last.block.clone();
    block.header.height += 1;
    block.header.tx_count = 1_000;
    block.transactions = transactions;
    pb::CertifiedBlock::from(&SyncedBlock {
        block,
        certificate: None,
    })
}
