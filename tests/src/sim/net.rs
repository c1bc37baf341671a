//! gRPC over turmoil's simulated TCP: the server side (a stream of accepted
//! connections for `chatpay_node::node::run`) and the client side (a
//! [`Connector`] whose channels dial simulated hosts).

use chatpay_node::network::Connector;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

/// The port every simulated validator serves gRPC on.
pub const PORT: u16 = 7000;

/// Accepted connections not yet taken by the server.
const ACCEPT_QUEUE: usize = 64;

/// A simulated TCP connection accepted by a validator's server.
pub struct SimIo(turmoil::net::TcpStream);

impl Connected for SimIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Binds [`PORT`] on the current simulated host and yields its connections.
pub async fn incoming() -> io::Result<ReceiverStream<io::Result<SimIo>>> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await.map(|(s, _)| SimIo(s));
            if tx.send(accepted).await.is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Dials simulated hosts. `redirect` sends the traffic meant for one
/// address to another (how a Twins validator's copies each get their half
/// of the network).
#[derive(Debug, Clone, Default)]
pub struct SimConnector {
    /// Address named in the genesis → address dialled instead.
    pub redirect: BTreeMap<String, String>,
}

impl SimConnector {
    /// A lazy channel to `addr` (`host:port`), dialled through the
    /// simulated network. Keepalive pings find connections that a partition
    /// stalled, so peers reconnect once it heals.
    pub fn dial(addr: &str) -> Result<Channel, String> {
        let target = addr.to_string();
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true);
        let connect = tower::service_fn(move |_: tonic::transport::Uri| {
            let target = target.clone();
            async move {
                let stream = turmoil::net::TcpStream::connect(target.as_str()).await?;
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        });
        Ok(endpoint.connect_with_connector_lazy(connect))
    }
}

impl Connector for SimConnector {
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        Self::dial(self.redirect.get(addr).map_or(addr, String::as_str))
    }
}
