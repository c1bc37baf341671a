//! The client gRPC API (`chatpay.v1.Client`), with gRPC health and server
//! reflection, so `grpcurl` and Kubernetes probes work with no extra files.
//!
//! ```text
//!  request ─▶ size limit (MAX_REQUEST_BYTES) ─▶ decode ─▶ validate every field
//!          ─▶ store / mempool ─▶ response, or a precise status + reason
//! ```
//! Every error carries a gRPC code and a message naming what is wrong; for
//! refused transactions the stable reason is also in the `chatpay-reason`
//! response metadata.

pub mod cache;
mod service;
mod subscribe;

pub(crate) use service::internal;
pub use service::{ClientApi, MAX_REQUEST_BYTES, MAX_SUBMIT_BATCH};

use crate::ledger::Ledger;
use crate::mempool::{Admission, AdmitError, Mempool};
use crate::storage::StoreError;
use chatpay_proto::{Account, SignedTransfer, pb};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::server::HealthReporter;

/// What the API serves from.
pub struct ApiState {
    /// The ledger (committed state and commit notifications).
    pub ledger: Arc<Ledger>,
    /// Pending transactions.
    pub mempool: Arc<Mutex<Mempool>>,
    /// Told of every transaction newly admitted from a client (the node
    /// forwards them to the other validators and wakes a waiting leader). Bounded: when full,
    /// the transaction stays in this validator's mempool only.
    pub admitted: Option<mpsc::Sender<SignedTransfer>>,
}

impl ApiState {
    /// State with no admission listener (a ledger served without consensus).
    pub fn new(ledger: Arc<Ledger>, mempool: Arc<Mutex<Mempool>>) -> Self {
        Self {
            ledger,
            mempool,
            admitted: None,
        }
    }

    /// Checks `tx` from a client against committed state and admits it to
    /// the mempool; a newly admitted one is passed to the admission listener
    /// (which forwards it to the other validators).
    /// Expiry is judged by the chain's time (the last committed block's
    /// timestamp), never by this validator's clock: an `expired` refusal
    /// then means that no later block can include the transfer, which a
    /// wallet relies on to sign its nonce again (f + 1 such answers
    /// include an honest one).
    pub fn admit(&self, tx: SignedTransfer) -> Result<Result<Admission, AdmitError>, StoreError> {
        self.admit_from(tx, true)
    }

    /// [`ApiState::admit`] for a transaction another validator forwarded:
    /// its origin forwards it to every validator, so it is not passed on
    /// again (passing it on sent each transaction to each validator up to
    /// n times).
    pub fn admit_forwarded(
        &self,
        tx: SignedTransfer,
    ) -> Result<Result<Admission, AdmitError>, StoreError> {
        self.admit_from(tx, false)
    }

    fn admit_from(
        &self,
        tx: SignedTransfer,
        pass_on: bool,
    ) -> Result<Result<Admission, AdmitError>, StoreError> {
        let store = self.ledger.store();
        let sender = store.account(tx.transfer().sender())?;
        // Only a transfer whose nonce the sender has used can be committed:
        // one read fewer for every fresh transfer.
        let used = |a: &Account| tx.transfer().nonce() <= a.nonce;
        let committed_at = match &sender {
            Some(a) if used(a) => store.transaction(&tx.tx_id())?.map(|r| r.height),
            _ => None,
        };
        // The signature is checked between two holds of the mempool, not
        // under it, so admissions (client calls, forwarded batches) check
        // signatures in parallel. The second hold checks every rule again.
        let signatures = {
            let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            match pool.check(&tx, sender, committed_at) {
                Ok(true) => pool.signatures().clone(),
                Ok(false) => return Ok(Ok(Admission::AlreadyPending)),
                Err(e) => return Ok(Err(e)),
            }
        };
        if let Err(e) = signatures.verify(&tx) {
            return Ok(Err(AdmitError::BadSignature(e)));
        }
        let listener = self.admitted.as_ref().filter(|_| pass_on);
        let forward = listener.map(|_| tx.clone());
        let admitted = self
            .mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(tx, sender, committed_at);
        let new = admitted.as_ref().is_ok_and(|a| a.is_new());
        if let (true, Some(listener), Some(tx)) = (new, listener, forward) {
            if listener.try_send(tx).is_err() {
                tracing::debug!("admission listener full; transaction stays local");
            }
        }
        Ok(admitted)
    }
}

/// Serves the client API, health and reflection on `listener` until
/// `shutdown` completes. Open subscriptions then end with UNAVAILABLE, so
/// shutdown does not wait on clients that never hang up.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (stopping_tx, stopping) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    router(state, stopping)
        .await
        .0
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// The client API with gRPC health (reporting it serving) and reflection,
/// and the health reporter (a validator reports NOT_SERVING while it catches
/// up or shuts down); a validator adds its peer service to the same server.
pub async fn router(
    state: Arc<ApiState>,
    stopping: watch::Receiver<bool>,
) -> (tonic::transport::server::Router, HealthReporter) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::client_server::ClientServer<ClientApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ClientApi::new(state, stopping).into_server());
    (router, health)
}

/// Sets the overall and client API health (`""` and `chatpay.v1.Client`).
pub async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health.set_service_status("chatpay.v1.Client", status).await;
}
