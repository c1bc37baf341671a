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

mod service;
mod subscribe;

pub use service::{ClientApi, MAX_REQUEST_BYTES};

use crate::ledger::Ledger;
use crate::mempool::Mempool;
use chatpay_proto::pb;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

/// What the API serves from.
pub struct ApiState {
    /// The ledger (committed state and commit notifications).
    pub ledger: Arc<Ledger>,
    /// Pending transactions.
    pub mempool: Arc<Mutex<Mempool>>,
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
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::client_server::ClientServer<ClientApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ClientApi::new(state, stopping).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
