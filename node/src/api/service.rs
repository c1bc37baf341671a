//! Handlers of `chatpay.v1.Client`.

use super::subscribe::subscribe;
use super::{ApiState, cache};
use crate::execution::state_tree;
use crate::mempool::{Admission, AdmitError};
use crate::storage::{HistoryEntry, Store, StoreError, TxPosition, TxRecord};
use chatpay_proto::{
    Account, AccountProof, Address, BlockHeader, CommitProof, Hash, MAX_COMMIT_PATH, MerkleProof,
    PublicKey, QuorumCertificate, SignedTransfer, TxId, merkle_leaf, pb, state,
};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// Largest request the API decodes: a batch of [`MAX_SUBMIT_BATCH`] maximal
/// transactions (~3.2 KiB each) fits.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Most transactions in one `SubmitTransactions` call.
pub const MAX_SUBMIT_BATCH: usize = 256;
/// Default and maximum page size of `ListTransactions`.
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;
/// Attempts to read an account at a stable height before giving up.
const CONSISTENT_READ_ATTEMPTS: usize = 8;

/// The `chatpay.v1.Client` service.
#[derive(Clone)]
pub struct ClientApi {
    state: Arc<ApiState>,
    stopping: watch::Receiver<bool>,
    leaves: Arc<cache::Leaves>,
    blocks: Arc<cache::ByHeight<pb::GetBlockResponse>>,
    subscriptions: Arc<cache::Subscriptions>,
}

impl ClientApi {
    /// A service over `state`; `stopping` turns true when the node shuts down.
    pub fn new(state: Arc<ApiState>, stopping: watch::Receiver<bool>) -> Self {
        Self {
            state,
            stopping,
            leaves: Arc::new(cache::ByHeight::new(cache::LEAF_BLOCKS)),
            blocks: Arc::new(cache::ByHeight::new(cache::BLOCK_ANSWERS)),
            subscriptions: Arc::new(cache::Subscriptions::default()),
        }
    }

    /// The tonic server, with the request size limit applied.
    pub fn into_server(self) -> pb::client_server::ClientServer<Self> {
        pb::client_server::ClientServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    fn address(&self, s: &str) -> Result<PublicKey, Status> {
        if s.is_empty() {
            return Err(Status::invalid_argument("missing field 'address'"));
        }
        let hrp = &self.state.ledger.genesis().hrp;
        Address::parse(s, hrp)
            .map(Address::into_public_key)
            .map_err(|e| Status::invalid_argument(format!("invalid field 'address': {e}")))
    }

    fn committed(&self, record: TxRecord) -> pb::CommittedTransaction {
        pb::CommittedTransaction {
            tx_id: record.transaction.tx_id().0.to_vec(),
            transaction: Some((&record.transaction).into()),
            height: record.height,
            index: record.index,
            receipt: Some((&record.receipt).into()),
        }
    }

    /// The final committed transfers carrying `reference` at or after
    /// `from`, at most `limit`, oldest first ([`Found`]).
    fn found_payments(
        &self,
        reference: &Hash,
        from: TxPosition,
        limit: usize,
    ) -> Result<Found, Status> {
        let store = self.state.ledger.store();
        let first_full = store.first_full_height().map_err(internal)?;
        let from = if first_full > 1 {
            from.max((first_full, 0))
        } else {
            from
        };
        let rows = store
            .payments_with_reference(reference, from, limit + 1)
            .map_err(internal)?;
        let mut found = Found {
            payments: Vec::with_capacity(rows.len().min(limit)),
            more: rows.len() > limit,
            pending: false,
            next: from,
        };
        for ((height, index), id) in rows.iter().take(limit) {
            // Gone: its block was forgotten since the index was read.
            if let Some(record) = store.transaction(id).map_err(internal)? {
                let proof = self.proof(&record)?;
                if proof.commit_certificate.is_none() {
                    found.more = false;
                    found.pending = true;
                    return Ok(found);
                }
                found.payments.push(pb::FoundPayment {
                    transaction: Some(self.committed(record)),
                    proof: Some(proof),
                });
            }
            found.next = (*height, index.saturating_add(1));
        }
        Ok(found)
    }

    fn proof(&self, record: &TxRecord) -> Result<pb::FinalityProof, Status> {
        let store = self.state.ledger.store();
        let block = store
            .block(record.height)
            .map_err(internal)?
            .ok_or_else(|| internal_msg("committed transaction without its block"))?;
        let leaves = self.leaves.get_or_try(record.height, || {
            block
                .tx_ids
                .iter()
                .map(|id| {
                    let rec = store
                        .transaction(id)
                        .map_err(internal)?
                        .ok_or_else(|| internal_msg("block lists an unknown transaction"))?;
                    Ok(merkle_leaf(id, rec.receipt.code))
                })
                .collect::<Result<Vec<_>, Status>>()
        })?;
        let proof = MerkleProof::build(&leaves, record.index as usize)
            .ok_or_else(|| internal_msg("transaction index outside its block"))?;
        let (commit_path, commit) = self.commit_pair(&block.header)?;
        Ok(pb::FinalityProof {
            header: Some((&block.header).into()),
            certificate: block.certificate.as_ref().map(Into::into),
            commit_certificate: commit.as_ref().map(|(_, qc)| qc.into()),
            commit_header: commit.as_ref().map(|(h, _)| h.into()),
            proof: Some((&proof).into()),
            commit_path: commit_path.iter().map(Into::into).collect(),
        })
    }

    /// A committed block with its transactions and receipts, read from the
    /// store (`GetBlock` keeps the last few in [`cache::BLOCK_ANSWERS`]).
    fn read_block(&self, height: u64) -> Result<pb::GetBlockResponse, Status> {
        let store = self.state.ledger.store();
        let first_full = store.first_full_height().map_err(internal)?;
        if height > 0 && height < first_full {
            return Err(not_kept("blocks", first_full));
        }
        let block = store.block(height).map_err(internal)?.ok_or_else(|| {
            let committed = store.committed_height().ok().flatten().unwrap_or(0);
            Status::not_found(format!(
                "no block at height {height}; committed height is {committed}"
            ))
        })?;
        let mut transactions = Vec::with_capacity(block.tx_ids.len());
        let mut receipts = Vec::with_capacity(block.tx_ids.len());
        for id in &block.tx_ids {
            let record = store
                .transaction(id)
                .map_err(internal)?
                .ok_or_else(|| internal_msg("block lists an unknown transaction"))?;
            transactions.push((&record.transaction).into());
            receipts.push((&record.receipt).into());
        }
        Ok(pb::GetBlockResponse {
            block: Some(pb::Block {
                header: Some((&block.header).into()),
                transactions,
                justify: None,
            }),
            receipts,
            certificate: block.certificate.as_ref().map(Into::into),
        })
    }

    /// `key`'s account at the newest committed height that has a commit
    /// proof, with its proof.
    fn proven_account(&self, key: &PublicKey) -> Result<(Account, AccountProof), Status> {
        let store = self.state.ledger.store();
        let commit = self.newest_commit_proof()?;
        let height = commit.header.height;
        let (leaf, state) = state_tree::prove(store.as_ref(), height, &state::account_key(key))
            .map_err(internal)?;
        let account = match leaf {
            Some(leaf) => state::decode_account_leaf(&leaf).ok_or_else(|| {
                internal_msg("the state tree holds an account leaf of another layout")
            })?,
            None => Account::default(),
        };
        Ok((account, AccountProof { state, commit }))
    }

    /// The newest block a client can be shown committed, with the proof.
    fn newest_commit_proof(&self) -> Result<CommitProof, Status> {
        crate::state_sync::newest_commit_proof(self.state.ledger.store().as_ref())
            .map_err(internal)?
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "no block of the last {MAX_COMMIT_PATH} can be shown committed yet; retry"
                ))
            })
    }

    /// The committed headers after `header` up to the first block D whose
    /// committed child C is of round D.round + 1, and C with its QC (ADR
    /// 0003). `None` while no such pair is committed yet.
    #[allow(clippy::type_complexity)]
    fn commit_pair(
        &self,
        header: &BlockHeader,
    ) -> Result<(Vec<BlockHeader>, Option<(BlockHeader, QuorumCertificate)>), Status> {
        let store = self.state.ledger.store();
        let mut path = Vec::new();
        let mut parent = header.clone();
        for height in header.height + 1..=header.height + 1 + MAX_COMMIT_PATH as u64 {
            let Some(child) = store.block(height).map_err(internal)? else {
                break;
            };
            if child.header.round == parent.round + 1 {
                if let Some(qc) = child.certificate {
                    return Ok((path, Some((child.header, qc))));
                }
            }
            path.push(child.header.clone());
            parent = child.header;
        }
        Ok((Vec::new(), None))
    }
}

/// Whether a page of `key`'s history (`entries`, newest first, asked for
/// `limit`) stops short of the account's first entry because this store
/// does not keep the entries before it (it joined from a state snapshot,
/// or forgets old blocks).
fn history_cut(
    store: &dyn Store,
    key: &PublicKey,
    entries: &[HistoryEntry],
    limit: usize,
) -> Result<bool, StoreError> {
    if entries.len() == limit || store.first_full_height()? <= 1 {
        return Ok(false);
    }
    match entries.last() {
        Some(oldest) => Ok(oldest.number > 1),
        None => history_missing(store, key),
    }
}

/// Whether `key` has history entries this store no longer keeps: its
/// oldest kept entry is not its first, or it keeps none of an account
/// that has some.
pub(super) fn history_missing(store: &dyn Store, key: &PublicKey) -> Result<bool, StoreError> {
    if store.first_full_height()? <= 1 {
        return Ok(false);
    }
    match store.history_from(key, (0, 0), 1)?.first() {
        Some(first_kept) => Ok(first_kept.number > 1),
        None => Ok(store.account(key)?.is_some_and(|a| a.history_count > 0)),
    }
}

/// The refusal of what lies below `first_full`, the first height this
/// validator keeps whole.
pub(super) fn not_kept(what: &str, first_full: u64) -> Status {
    Status::failed_precondition(format!(
        "this validator keeps no {what} below height {first_full} (it joined from a state \
         snapshot or forgets old blocks); ask another validator"
    ))
}

/// A limit of this validator reached: `RESOURCE_EXHAUSTED` with a reason.
fn limited(reason: &str) -> Status {
    let mut status = Status::resource_exhausted(reason.to_owned());
    status.metadata_mut().insert(
        "chatpay-reason",
        tonic::metadata::MetadataValue::from_static("too_many_subscriptions"),
    );
    status
}

/// A storage failure: the node logs it; the client sees INTERNAL.
pub(crate) fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "storage failure while serving a client request");
    Status::internal("storage failure")
}

fn internal_msg(msg: &str) -> Status {
    tracing::error!(msg, "inconsistent storage while serving a client request");
    Status::internal(msg.to_owned())
}

/// One page of the final transfers carrying a reference.
struct Found {
    /// Oldest first.
    payments: Vec<pb::FoundPayment>,
    /// More rows follow `next`.
    more: bool,
    /// It stopped at a committed transfer not provable yet (`next`).
    pending: bool,
    /// Where the next page starts: after the last row looked at.
    next: TxPosition,
}

/// Most payments one `FindPayment` answer carries.
pub const MAX_FOUND_PAYMENTS: u32 = 16;

fn reference(bytes: &[u8]) -> Result<Hash, Status> {
    Hash::from_slice(bytes).ok_or_else(|| {
        Status::invalid_argument(format!(
            "invalid field 'reference': must be 32 bytes, got {}",
            bytes.len()
        ))
    })
}

/// The stream of `SubscribePayments`: the final transfers carrying
/// `reference` from `from_height` on, each once. The store is read at the
/// start, after a committed block that carries the reference (looked for
/// in the block in memory), at every commit while one found is not
/// provable yet (a later block certifies it), and after missed commits;
/// an idle subscription costs a scan of each block's transfers, no read.
fn payments_stream(
    api: ClientApi,
    reference: Hash,
    from_height: u64,
    slot: cache::SubscriptionSlot,
) -> PaymentStream {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut commits = api.state.ledger.subscribe();
    let mut stopping = api.stopping.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let run = async {
            use tokio::sync::broadcast::error::RecvError;
            let mut cursor = (from_height, 0u32);
            let mut read = true;
            loop {
                let mut waiting = false;
                while read {
                    let limit = MAX_FOUND_PAYMENTS as usize;
                    let found = api.found_payments(&reference, cursor, limit)?;
                    cursor = found.next;
                    read = found.more;
                    waiting = found.pending;
                    for payment in found.payments {
                        if tx.send(Ok(payment)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                read = match commits.recv().await {
                    Ok(block) => {
                        waiting
                            || block
                                .transactions
                                .iter()
                                .any(|t| t.transfer().reference() == Some(&reference))
                    }
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return Ok(()),
                };
            }
        };
        let result: Result<(), Status> = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => Err(Status::unavailable("node is shutting down; resubscribe elsewhere")),
            () = tx.closed() => Ok(()),
            r = run => r,
        };
        if let Err(status) = result {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn tx_id(bytes: &[u8]) -> Result<TxId, Status> {
    TxId::from_slice(bytes).ok_or_else(|| {
        Status::invalid_argument(format!(
            "invalid field 'tx_id': must be 32 bytes, got {}",
            bytes.len()
        ))
    })
}

fn admission_status(admission: Admission) -> pb::AdmissionStatus {
    match admission {
        Admission::Admitted => pb::AdmissionStatus::Admitted,
        Admission::Parked => pb::AdmissionStatus::Parked,
        Admission::AlreadyPending => pb::AdmissionStatus::AlreadyPending,
    }
}

/// The gRPC status for a refused transaction.
pub fn admit_status(e: &AdmitError) -> Status {
    let code = match e {
        AdmitError::AlreadyCommitted { .. } => Code::AlreadyExists,
        AdmitError::BadSignature(_) => Code::Unauthenticated,
        AdmitError::ZeroAmount { .. }
        | AdmitError::FeeTooLow { .. }
        | AdmitError::AmountOverflow => Code::InvalidArgument,
        AdmitError::WrongChain { .. }
        | AdmitError::Expired { .. }
        | AdmitError::UnknownSender
        | AdmitError::StaleNonce { .. }
        | AdmitError::NonceTooFarAhead { .. }
        | AdmitError::InsufficientFunds { .. } => Code::FailedPrecondition,
        AdmitError::NonceTaken { .. } => Code::Aborted,
        AdmitError::PoolFull { .. } | AdmitError::SenderFull { .. } => Code::ResourceExhausted,
    };
    let mut status = Status::new(code, format!("{}: {e}", e.reason()));
    status.metadata_mut().insert(
        "chatpay-reason",
        e.reason().parse().expect("reasons are ASCII"),
    );
    status
}

fn account_pb(address: String, account: &Account) -> pb::Account {
    pb::Account {
        address,
        balance: account.balance,
        nonce: account.nonce,
        history_count: account.history_count,
        history_hash: account.history_hash.0.to_vec(),
    }
}

fn encode_cursor((height, index): (u64, u32)) -> Vec<u8> {
    let mut out = height.to_be_bytes().to_vec();
    out.extend_from_slice(&index.to_be_bytes());
    out
}

fn decode_cursor(bytes: &[u8]) -> Result<Option<(u64, u32)>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let bad =
        || Status::invalid_argument("invalid field 'cursor': use next_cursor of a previous page");
    if bytes.len() != 12 {
        return Err(bad());
    }
    let height = u64::from_be_bytes(bytes[..8].try_into().map_err(|_| bad())?);
    let index = u32::from_be_bytes(bytes[8..].try_into().map_err(|_| bad())?);
    Ok(Some((height, index)))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AccountEvent, Status>> + Send>>;
type PaymentStream = Pin<Box<dyn Stream<Item = Result<pb::FoundPayment, Status>> + Send>>;

#[tonic::async_trait]
impl pb::client_server::Client for ClientApi {
    async fn submit_transaction(
        &self,
        request: Request<pb::SubmitTransactionRequest>,
    ) -> Result<Response<pb::SubmitTransactionResponse>, Status> {
        let wire = request
            .into_inner()
            .transaction
            .ok_or_else(|| Status::invalid_argument("missing field 'transaction'"))?;
        let tx =
            SignedTransfer::try_from(wire).map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let id = tx.tx_id();
        let admitted = self.state.admit(tx).map_err(internal)?;
        let status = match admitted {
            Ok(admission) => admission_status(admission),
            Err(e) => {
                tracing::debug!(tx_id = %id, reason = e.reason(), "transaction refused");
                return Err(admit_status(&e));
            }
        };
        Ok(Response::new(pb::SubmitTransactionResponse {
            tx_id: id.0.to_vec(),
            status: status as i32,
        }))
    }

    async fn submit_transactions(
        &self,
        request: Request<pb::SubmitTransactionsRequest>,
    ) -> Result<Response<pb::SubmitTransactionsResponse>, Status> {
        let wires = request.into_inner().transactions;
        if wires.len() > MAX_SUBMIT_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_SUBMIT_BATCH} transactions per call, got {}",
                wires.len()
            )));
        }
        let state = &self.state;
        let results = crate::node::each_yielding(wires, |wire| -> Result<_, StoreError> {
            let tx = match SignedTransfer::try_from(wire) {
                Ok(tx) => tx,
                Err(e) => {
                    return Ok(pb::SubmitResult {
                        code: Code::InvalidArgument as u32,
                        message: e.to_string(),
                        reason: "malformed".into(),
                        ..Default::default()
                    });
                }
            };
            let id = tx.tx_id();
            Ok(match state.admit(tx)? {
                Ok(admission) => pb::SubmitResult {
                    tx_id: id.0.to_vec(),
                    status: admission_status(admission) as i32,
                    ..Default::default()
                },
                Err(e) => {
                    tracing::debug!(tx_id = %id, reason = e.reason(), "transaction refused");
                    let status = admit_status(&e);
                    pb::SubmitResult {
                        tx_id: id.0.to_vec(),
                        status: pb::AdmissionStatus::Unspecified as i32,
                        code: status.code() as u32,
                        message: status.message().to_string(),
                        reason: e.reason().into(),
                    }
                }
            })
        })
        .await
        .map_err(internal)?;
        Ok(Response::new(pb::SubmitTransactionsResponse { results }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let req = request.into_inner();
        let key = self.address(&req.address)?;
        let address = req.address.to_lowercase();
        if req.include_proof {
            let (account, proof) = self.proven_account(&key)?;
            return Ok(Response::new(pb::GetAccountResponse {
                account: Some(account_pb(address, &account)),
                height: proof.commit.header.height,
                proof: Some((&proof).into()),
            }));
        }
        let store = self.state.ledger.store();
        // Read between two equal heights so the account is as of that height.
        for _ in 0..CONSISTENT_READ_ATTEMPTS {
            let before = store.committed_height().map_err(internal)?.unwrap_or(0);
            let account = store.account(&key).map_err(internal)?.unwrap_or_default();
            let after = store.committed_height().map_err(internal)?.unwrap_or(0);
            if before == after {
                return Ok(Response::new(pb::GetAccountResponse {
                    account: Some(account_pb(address, &account)),
                    height: after,
                    proof: None,
                }));
            }
        }
        Err(Status::unavailable(
            "the chain is moving too fast to read a stable account; retry",
        ))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let req = request.into_inner();
        let id = tx_id(&req.tx_id)?;
        let store = self.state.ledger.store();
        let first_full = store.first_full_height().map_err(internal)?;
        let record = store.transaction(&id).map_err(internal)?;
        // A row a crash left while old blocks were forgotten is not served.
        if let Some(record) = record.filter(|r| r.height >= first_full || first_full <= 1) {
            let proof = if req.include_proof {
                Some(self.proof(&record)?)
            } else {
                None
            };
            return Ok(Response::new(pb::GetTransactionResponse {
                status: Some(pb::get_transaction_response::Status::Committed(
                    self.committed(record),
                )),
                proof,
            }));
        }
        let pending = {
            let pool = self.state.mempool.lock().unwrap_or_else(|e| e.into_inner());
            pool.get(&id).map(pb::SignedTransaction::from)
        };
        match pending {
            Some(tx) => Ok(Response::new(pb::GetTransactionResponse {
                status: Some(pb::get_transaction_response::Status::Pending(tx)),
                proof: None,
            })),
            None if first_full > 1 => Err(Status::not_found(format!(
                "unknown transaction {id} (this validator keeps no transactions below height \
                 {first_full}; another may know it)"
            ))),
            None => Err(Status::not_found(format!("unknown transaction {id}"))),
        }
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let req = request.into_inner();
        let key = self.address(&req.address)?;
        let cursor = decode_cursor(&req.cursor)?;
        let limit = match req.limit {
            0 => DEFAULT_PAGE,
            n if n <= MAX_PAGE => n,
            n => {
                return Err(Status::invalid_argument(format!(
                    "invalid field 'limit': {n} is above {MAX_PAGE}"
                )));
            }
        };
        let store = self.state.ledger.store();
        let committed = store.committed_height().map_err(internal)?.unwrap_or(0);
        if req.at_height > committed {
            return Err(Status::unavailable(format!(
                "height {} is not committed here yet (committed height {committed}); ask again or elsewhere",
                req.at_height
            )));
        }
        let cursor = match (cursor, req.at_height) {
            (cursor, 0) => cursor,
            (None, h) => Some((h.saturating_add(1), 0)),
            (Some(c), h) => Some(c.min((h.saturating_add(1), 0))),
        };
        let entries = store
            .history_before(&key, cursor, limit as usize)
            .map_err(internal)?;
        let first_full = store.first_full_height().map_err(internal)?;
        // Rows a crash left while old blocks were forgotten are not served.
        let entries: Vec<HistoryEntry> = entries
            .into_iter()
            .filter(|e| e.position.0 >= first_full || first_full <= 1)
            .collect();
        if history_cut(store.as_ref(), &key, &entries, limit as usize).map_err(internal)? {
            return Err(not_kept("history", first_full));
        }
        let (history_count_before, history_hash_before) = entries
            .last()
            .map_or((0, Hash::default()), |e| (e.number - 1, e.hash_before));
        let mut transactions = Vec::with_capacity(entries.len());
        for entry in &entries {
            let record = store
                .transaction(&entry.tx_id)
                .map_err(internal)?
                .ok_or_else(|| internal_msg("history lists an unknown transaction"))?;
            transactions.push(self.committed(record));
        }
        let next_cursor = match entries.last() {
            Some(last) if entries.len() == limit as usize => encode_cursor(last.position),
            _ => Vec::new(),
        };
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions,
            next_cursor,
            history_count_before,
            history_hash_before: history_hash_before.0.to_vec(),
        }))
    }

    async fn get_block(
        &self,
        request: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::GetBlockResponse>, Status> {
        let height = request.into_inner().height;
        let answer = self.blocks.get_or_try(height, || self.read_block(height))?;
        Ok(Response::new(answer.as_ref().clone()))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let g = self.state.ledger.genesis();
        let committed_height = self
            .state
            .ledger
            .store()
            .committed_height()
            .map_err(internal)?
            .unwrap_or(0);
        Ok(Response::new(pb::GetStatusResponse {
            chain_id: g.chain_id.clone(),
            genesis_hash: g.hash().0.to_vec(),
            committed_height,
            validators: g
                .validators
                .iter()
                .map(|v| pb::ValidatorInfo {
                    public_key: v.public_key.as_bytes().to_vec(),
                    address: g.address(&v.public_key).to_string(),
                    network_address: v.network_address.clone(),
                })
                .collect(),
            node_version: env!("CARGO_PKG_VERSION").to_owned(),
            hrp: g.hrp.clone(),
            decimals: u32::from(g.decimals),
            symbol: g.symbol.clone(),
            fee_per_transfer: g.fee_per_transfer,
        }))
    }

    type SubscribeAccountStream = EventStream;
    type SubscribePaymentsStream = PaymentStream;

    async fn find_payment(
        &self,
        request: Request<pb::FindPaymentRequest>,
    ) -> Result<Response<pb::FindPaymentResponse>, Status> {
        let req = request.into_inner();
        let reference = reference(&req.reference)?;
        let limit = match req.limit {
            0 => MAX_FOUND_PAYMENTS,
            n if n <= MAX_FOUND_PAYMENTS => n,
            n => {
                return Err(Status::invalid_argument(format!(
                    "invalid field 'limit': {n} is above {MAX_FOUND_PAYMENTS}"
                )));
            }
        };
        let from = (req.from_height, req.from_index);
        let found = self.found_payments(&reference, from, limit as usize)?;
        let first_full_height = self
            .state
            .ledger
            .store()
            .first_full_height()
            .map_err(internal)?;
        Ok(Response::new(pb::FindPaymentResponse {
            payments: found.payments,
            more: found.more,
            first_full_height,
            pending: found.pending,
            next_height: found.next.0,
            next_index: found.next.1,
        }))
    }

    async fn subscribe_payments(
        &self,
        request: Request<pb::SubscribePaymentsRequest>,
    ) -> Result<Response<Self::SubscribePaymentsStream>, Status> {
        let slot = self
            .subscriptions
            .open(request.remote_addr())
            .map_err(|reason| limited(&reason))?;
        let req = request.into_inner();
        let reference = reference(&req.reference)?;
        Ok(Response::new(payments_stream(
            self.clone(),
            reference,
            req.from_height,
            slot,
        )))
    }

    async fn subscribe_account(
        &self,
        request: Request<pb::SubscribeAccountRequest>,
    ) -> Result<Response<Self::SubscribeAccountStream>, Status> {
        let slot = self
            .subscriptions
            .open(request.remote_addr())
            .map_err(|reason| limited(&reason))?;
        let req = request.into_inner();
        let key = self.address(&req.address)?;
        let store = self.state.ledger.store();
        let first_full = store.first_full_height().map_err(internal)?;
        if req.from_height < first_full
            && history_missing(store.as_ref(), &key).map_err(internal)?
        {
            return Err(not_kept("history", first_full));
        }
        let stream = subscribe(
            self.state.ledger.clone(),
            key,
            req.from_height,
            self.stopping.clone(),
            slot,
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
