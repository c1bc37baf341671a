//! Talking to several validators: calls go to the preferred one and fail
//! over to the others when it is down, slow or behind. A validator is
//! preferred for the height it has *proven* (an account or finality proof
//! checked against the validator set), never for the height it claims; one
//! caught lying goes to the back of the list.

use crate::WalletError;
use chatpay_proto::pb;
use chatpay_proto::pb::client_client::ClientClient;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Time allowed for one call to one validator.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`NodeClient::call_many`] waits for the others once one
/// validator has answered (a validator that is down but still accepts
/// connections would hold every call for [`CALL_TIMEOUT`]).
pub const LATE_ANSWER: Duration = Duration::from_millis(150);
/// A validator whose proven height is more blocks than this behind the
/// highest height proven to the wallet answers with stale state.
pub const MAX_LAG: u64 = 5;

/// Raw gRPC client of one validator.
pub type RawClient = ClientClient<Channel>;

struct Node {
    url: String,
    client: RawClient,
}

/// What the wallet has seen of each validator.
#[derive(Debug, Default, Clone)]
struct Record {
    /// Highest height it proved.
    proven: Option<u64>,
    /// What it was caught lying about, if it was.
    lied: Option<String>,
    /// Why it is behind, until it proves a recent height again.
    behind: Option<String>,
    /// Its last call found it unavailable (or silent).
    down: bool,
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
    records: Mutex<Vec<Record>>,
    /// A height proven before this client existed (saved by the wallet).
    floor: std::sync::atomic::AtomicU64,
}

/// Whether a failed call says the validator is unusable (try another)
/// rather than answering about the request.
pub(crate) fn is_unavailable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
    )
}

/// Calls in flight, each with its validator's URL.
type Asks<T> = tokio::task::JoinSet<(String, Result<T, Status>)>;

/// Starts `f` on `node` in `asks`, with [`CALL_TIMEOUT`] (no answer by
/// then is an error answer).
fn spawn_call<T, F, Fut>(asks: &mut Asks<T>, node: &Node, f: &F)
where
    T: Send + 'static,
    F: Fn(RawClient) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
{
    let (call, url) = (f(node.client.clone()), node.url.clone());
    asks.spawn(async move {
        let r = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("no answer")),
        };
        (url, r)
    });
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
                    .map_err(|e| WalletError::Invalid(format!("invalid validator URL {u:?}: {e}")))?
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(CALL_TIMEOUT);
                Ok(Node {
                    url,
                    client: ClientClient::new(endpoint.connect_lazy()),
                })
            })
            .collect::<Result<Vec<_>, WalletError>>()?;
        Ok(Self {
            records: Mutex::new(vec![Record::default(); nodes.len()]),
            nodes,
            preferred: AtomicUsize::new(0),
            floor: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn index(&self, url: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.url == url)
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `url` proved `height`; the validator with the highest
    /// proven height (among those not caught lying) becomes preferred.
    pub fn proven(&self, url: &str, height: u64) {
        let Some(i) = self.index(url) else {
            return;
        };
        let mut records = self.records();
        let r = &mut records[i];
        r.proven = Some(r.proven.map_or(height, |h| h.max(height)));
        r.behind = None;
        let current = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        let best = |r: &Record| (r.lied.is_none() && !r.down).then_some(r.proven).flatten();
        if records[i].lied.is_none() && best(&records[current]) < Some(height) {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// The highest height any validator proved to this client (or to
    /// the wallet before it, [`NodeClient::set_floor`]).
    pub fn highest_proven(&self) -> u64 {
        let floor = self.floor.load(Ordering::Relaxed);
        self.records()
            .iter()
            .filter_map(|r| r.proven)
            .max()
            .map_or(floor, |h| h.max(floor))
    }

    /// A height proven to the wallet earlier (before a restart).
    pub fn set_floor(&self, height: u64) {
        self.floor.fetch_max(height, Ordering::Relaxed);
    }

    /// Notes that `url` was caught lying (`what`): it is asked last from
    /// now on, and no longer preferred.
    pub fn lied(&self, url: &str, what: &str) {
        let Some(i) = self.index(url) else {
            return;
        };
        let mut records = self.records();
        records[i].lied.get_or_insert_with(|| what.to_string());
        if self.preferred.load(Ordering::Relaxed) % self.nodes.len() == i {
            let next = (0..self.nodes.len())
                .filter(|&j| records[j].lied.is_none())
                .max_by_key(|&j| (records[j].proven, std::cmp::Reverse(j)));
            if let Some(next) = next {
                self.preferred.store(next, Ordering::Relaxed);
            }
        }
    }

    /// Notes that `url` answered with state older than already proven: it
    /// is asked after the others until it proves a recent height again.
    pub fn behind(&self, url: &str, what: &str) {
        if let Some(i) = self.index(url) {
            self.records()[i].behind = Some(what.to_string());
        }
    }

    /// The validators now behind, with how far.
    pub fn lagging(&self) -> Vec<(String, String)> {
        self.records()
            .iter()
            .zip(&self.nodes)
            .filter_map(|(r, n)| r.behind.clone().map(|w| (n.url.clone(), w)))
            .collect()
    }

    /// The validators caught lying, with what each lied about.
    pub fn liars(&self) -> Vec<(String, String)> {
        self.records()
            .iter()
            .zip(&self.nodes)
            .filter_map(|(r, n)| r.lied.clone().map(|w| (n.url.clone(), w)))
            .collect()
    }

    /// The validator URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// Notes whether the last call to `url` found it able to answer.
    fn answered(&self, url: &str, status: Option<&Status>) {
        if let Some(i) = self.index(url) {
            self.records()[i].down = status.is_some_and(is_unavailable);
        }
    }

    /// The preferred validator first, then the others in list order; the
    /// ones found down after them, then the ones behind, the ones caught
    /// lying last.
    fn order(&self) -> impl Iterator<Item = &Node> {
        let first = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        let rank: Vec<u8> = self
            .records()
            .iter()
            .map(|r| {
                u8::from(r.down) + 2 * u8::from(r.behind.is_some()) + 4 * u8::from(r.lied.is_some())
            })
            .collect();
        let mut order: Vec<usize> = (first..self.nodes.len()).chain(0..first).collect();
        order.sort_by_key(|&i| rank[i]); // stable: keeps the rotation within a rank
        order.into_iter().map(|i| &self.nodes[i])
    }

    /// Runs `f` on the preferred validator, then on the others while they
    /// are unavailable. `Ok(Err(status))` is a validator's answer (for
    /// example NOT_FOUND); `Err` means none could answer.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<Result<T, Status>, WalletError>
    where
        F: Fn(RawClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_named(f).await.map(|(_, answer)| answer)
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
            self.answered(&node.url, r.as_ref().err());
            if let Some(taken) = accept(&node.url, r) {
                return Some(taken);
            }
        }
        None
    }

    /// [`NodeClient::call`], also saying which validator answered.
    pub async fn call_named<T, F, Fut>(
        &self,
        f: F,
    ) -> Result<(String, Result<T, Status>), WalletError>
    where
        F: Fn(RawClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut tried = Vec::new();
        let mut last = String::new();
        for node in self.order() {
            let outcome = tokio::time::timeout(CALL_TIMEOUT, f(node.client.clone())).await;
            let silent = Status::deadline_exceeded("no answer");
            self.answered(
                &node.url,
                match &outcome {
                    Ok(r) => r.as_ref().err(),
                    Err(_) => Some(&silent),
                },
            );
            match outcome {
                Ok(Ok(response)) => return Ok((node.url.clone(), Ok(response.into_inner()))),
                Ok(Err(status)) if !is_unavailable(&status) => {
                    return Ok((node.url.clone(), Err(status)));
                }
                Ok(Err(status)) => last = format!("{}: {}", node.url, status.message()),
                Err(_) => last = format!("{}: no answer in {CALL_TIMEOUT:?}", node.url),
            }
            tried.push(node.url.clone());
        }
        Err(WalletError::Unreachable { tried, last })
    }

    /// Runs `f` on `count` validators at once, in preference order; one
    /// that is unavailable is replaced by the next. Returns each answer
    /// with its validator's URL (fewer than `count` when too few answer),
    /// as soon as one is `enough`, or [`LATE_ANSWER`] after the first
    /// answer, leaving the others to finish.
    pub async fn call_many<T, F, Fut>(
        &self,
        count: usize,
        f: F,
        mut enough: impl FnMut(&Result<T, Status>) -> bool,
    ) -> Vec<(String, Result<T, Status>)>
    where
        T: Send + 'static,
        F: Fn(RawClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
    {
        let mut spare: std::collections::VecDeque<&Node> = self.order().collect();
        let mut asks = tokio::task::JoinSet::new();
        let ask = |node: &Node, asks: &mut Asks<T>| spawn_call(asks, node, &f);
        for _ in 0..count {
            if let Some(node) = spare.pop_front() {
                ask(node, &mut asks);
            }
        }
        let mut answers = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, asks.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        asks.detach_all();
                        break;
                    }
                },
                None => asks.join_next().await,
            };
            let Some(done) = next else { break };
            let Ok((url, r)) = done else { continue };
            self.answered(&url, r.as_ref().err());
            if r.is_ok() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + LATE_ANSWER);
            }
            if matches!(&r, Err(s) if is_unavailable(s)) {
                if let Some(node) = spare.pop_front() {
                    ask(node, &mut asks);
                }
            }
            let stop = enough(&r);
            answers.push((url, r));
            if stop {
                // The others run on, unwatched (a submission still lands).
                asks.detach_all();
                break;
            }
        }
        answers
    }

    /// Runs `f` on every validator at once and returns every answer (no
    /// answer within [`CALL_TIMEOUT`] is an error answer): for questions
    /// where the wallet needs several validators to agree.
    pub async fn call_all<T, F, Fut>(&self, f: F) -> Vec<(String, Result<T, Status>)>
    where
        T: Send + 'static,
        F: Fn(RawClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
    {
        let mut asks = tokio::task::JoinSet::new();
        for node in &self.nodes {
            spawn_call(&mut asks, node, &f);
        }
        let mut answers = Vec::new();
        while let Some(done) = asks.join_next().await {
            if let Ok((url, r)) = done {
                self.answered(&url, r.as_ref().err());
                answers.push((url, r));
            }
        }
        answers
    }

    /// Every validator's status, asked concurrently. The heights they claim
    /// change no preference: only proven heights do
    /// ([`NodeClient::proven`]).
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
        all
    }
}
