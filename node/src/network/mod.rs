//! The validator network: the `chatpay.v1.Validator` gRPC service and the
//! links to every other validator.
//!
//! ```text
//!  core output ─▶ per-peer bounded queue ─▶ long-lived Stream call (reconnect, backoff)
//!  peer Stream ─▶ size cap ─▶ decode (garbage ends the stream) ─▶ core input queue
//!                                           (signatures are checked by the core)
//! ```
//!
//! Sockets are behind a seam: [`Connector`] makes the channels to peers and
//! the server accepts any stream of connections, so the same node runs over
//! TCP in production and over simulated sockets in tests.

mod peers;
mod service;

pub use peers::{Peers, SyncError};
pub use service::ValidatorService;

use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Largest validator message either side encodes or decodes. A block is at
/// most `max_block_bytes` of transactions (config, capped below this).
pub const MAX_PEER_MESSAGE_BYTES: usize = 16 << 20;
/// Consensus messages queued per peer; when full, new ones are dropped
/// (round timeouts make consensus repeat what matters).
pub const PEER_QUEUE: usize = 1_024;
/// Batches of forwarded transactions queued per peer.
pub const FORWARD_QUEUE: usize = 64;
/// Most transactions in one forwarded batch (sent and accepted).
pub const MAX_FORWARD_TXS: usize = 1_024;
/// Time allowed for a fetch or forward call.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a whole sync response.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// First reconnect delay; doubles per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Makes channels to peers. A channel connects lazily and reconnects by
/// itself; callers only see failed calls.
pub trait Connector: Send + Sync + 'static {
    /// A channel to the validator at `addr` (`host:port`).
    fn channel(&self, addr: &str) -> Result<Channel, String>;
}

/// Plain TCP (HTTP/2 without TLS) connections.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
}

impl Default for TcpConnector {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl Connector for TcpConnector {
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid peer address {addr:?}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_lazy())
    }
}
