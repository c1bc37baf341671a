//! Talking to several validators: calls go to the preferred one and fail
//! over to the others when it is down, slow or behind.

use crate::WalletError;
use chatpay_proto::pb;
use chatpay_proto::pb::client_client::ClientClient;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Time allowed for one call to one validator.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A validator more blocks than this behind the highest one is not preferred.
pub const MAX_LAG: u64 = 5;

/// Raw gRPC client of one validator.
pub type RawClient = ClientClient<Channel>;

struct Node {
    url: String,
    client: RawClient,
}

/// What one validator reported.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// Its URL.
    pub url: String,
    /// Its status, or why it could not be had.
    pub status: Result<pb::GetStatusResponse, String>,
}

/// A client of a list of validators.
pub struct NodeClient {
    nodes: Vec<Node>,
    preferred: AtomicUsize,
}

/// Whether a failed call says the validator is unusable (try another)
/// rather than answering about the request.
fn is_unavailable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
    )
}

impl NodeClient {
    /// Clients of `urls` (`http://host:port` or `host:port`); connections
    /// are made on first use and remade after failures.
    pub fn new(urls: &[String]) -> Result<Self, WalletError> {
        if urls.is_empty() {
            return Err(WalletError::Unreachable {
                tried: vec![],
                last: "no validator address given (use --node)".into(),
            });
        }
        let nodes = urls
            .iter()
            .map(|u| {
                let url = if u.contains("://") {
                    u.clone()
                } else {
                    format!("http://{u}")
                };
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| WalletError::BadRequest(format!("validator URL {u:?}: {e}")))?
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(CALL_TIMEOUT);
                Ok(Node {
                    url,
                    client: ClientClient::new(endpoint.connect_lazy()),
                })
            })
            .collect::<Result<Vec<_>, WalletError>>()?;
        Ok(Self {
            nodes,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The validator URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    fn order(&self) -> impl Iterator<Item = &Node> {
        let first = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        self.nodes[first..].iter().chain(&self.nodes[..first])
    }

    /// Runs `f` on the preferred validator, then on the others while they
    /// are unavailable. `Ok(Err(status))` is a validator's answer (for
    /// example NOT_FOUND); `Err` means none could answer.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<Result<T, Status>, WalletError>
    where
        F: Fn(RawClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut tried = Vec::new();
        let mut last = String::new();
        for (i, node) in self.order().enumerate() {
            let outcome = tokio::time::timeout(CALL_TIMEOUT, f(node.client.clone())).await;
            match outcome {
                Ok(Ok(response)) => {
                    if i > 0 {
                        self.prefer(&node.url);
                    }
                    return Ok(Ok(response.into_inner()));
                }
                Ok(Err(status)) if !is_unavailable(&status) => return Ok(Err(status)),
                Ok(Err(status)) => last = format!("{}: {}", node.url, status.message()),
                Err(_) => last = format!("{}: no answer in {CALL_TIMEOUT:?}", node.url),
            }
            tried.push(node.url.clone());
        }
        Err(WalletError::Unreachable { tried, last })
    }

    /// Runs `f` on the validators in preference order until `accept` takes
    /// an answer (used to find one whose answer verifies); the others are
    /// not asked. `accept` sees the validator's URL with each answer.
    pub async fn call_until<T, R, F, Fut>(
        &self,
        f: F,
        mut accept: impl FnMut(&str, Result<T, Status>) -> Option<R>,
    ) -> Option<R>
    where
        F: Fn(RawClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        for node in self.order() {
            let r = match tokio::time::timeout(CALL_TIMEOUT, f(node.client.clone())).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(Status::deadline_exceeded("no answer")),
            };
            if let Some(taken) = accept(&node.url, r) {
                return Some(taken);
            }
        }
        None
    }

    fn prefer(&self, url: &str) {
        if let Some(i) = self.nodes.iter().position(|n| n.url == url) {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// Every validator's status, asked concurrently; the highest one that
    /// answers becomes preferred unless the preferred one is within
    /// [`MAX_LAG`] blocks of it.
    pub async fn statuses(&self) -> Vec<NodeStatus> {
        let mut asks = tokio::task::JoinSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let (mut c, url) = (n.client.clone(), n.url.clone());
            asks.spawn(async move {
                let r =
                    tokio::time::timeout(CALL_TIMEOUT, c.get_status(pb::GetStatusRequest {})).await;
                let status = match r {
                    Ok(Ok(s)) => Ok(s.into_inner()),
                    Ok(Err(s)) => Err(s.message().to_string()),
                    Err(_) => Err(format!("no answer in {CALL_TIMEOUT:?}")),
                };
                (i, NodeStatus { url, status })
            });
        }
        let mut all: Vec<Option<NodeStatus>> = (0..self.nodes.len()).map(|_| None).collect();
        while let Some(done) = asks.join_next().await {
            if let Ok((i, status)) = done {
                all[i] = Some(status);
            }
        }
        let all: Vec<NodeStatus> = all
            .into_iter()
            .zip(&self.nodes)
            .map(|(s, n)| {
                s.unwrap_or_else(|| NodeStatus {
                    url: n.url.clone(),
                    status: Err("status task failed".into()),
                })
            })
            .collect();
        let heights: Vec<Option<u64>> = all
            .iter()
            .map(|s| s.status.as_ref().ok().map(|s| s.committed_height))
            .collect();
        if let Some(top) = heights.iter().flatten().max() {
            let current = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
            let lagging = heights[current].is_none_or(|h| h + MAX_LAG < *top);
            if lagging {
                if let Some(best) = heights.iter().position(|h| *h == Some(*top)) {
                    self.preferred.store(best, Ordering::Relaxed);
                }
            }
        }
        all
    }
}
