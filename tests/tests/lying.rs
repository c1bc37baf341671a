//! A validator that lies to a wallet about an account: a test double of
//! the client API that passes every call to an honest validator of a real
//! 4-validator network and changes one thing in the answers. The wallet
//! must refuse each lie, name the validator, and (given an honest one too)
//! go on with the truth.
//!
//! Each lie is one the proofs catch and nothing else does: the page lies
//! keep the entry count right, so only the history hash catches them; the
//! renumbered stream has no gap, so only the check of its entries against
//! the proven history catches it.

use chatpay_proto::pb::{self, client_client::ClientClient, client_server::Client};
use chatpay_proto::{Address, Hash, SecretKey, SignedTransfer, state};
use chatpay_tests::LocalNetwork;
use chatpay_wallet::{KdfParams, Wallet, WalletError, WalletHome};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const FAST: KdfParams = KdfParams {
    m_kib: 256,
    t: 1,
    p: 1,
};
const CPY: u64 = 1_000_000;

/// What the double changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// One more unit in every balance.
    Balance,
    /// One more in every nonce.
    Nonce,
    /// The first answer about each account, served again as current.
    StaleHeight,
    /// One entry left out of each history page (one more asked for, and
    /// the count before the page raised, so length and count add up).
    DropEntry,
    /// The newest entry of the page served again as a newer one (and the
    /// oldest left out, so the page keeps its length).
    AddEntry,
    /// Only the newest entry of each page, with the true count and running
    /// hash before it: every check but the page length passes.
    Truncate,
    /// The account stream leaves out its second entry.
    SkipEvent,
    /// The account stream leaves out its second entry and numbers the
    /// later ones down, leaving no gap.
    SkipRenumbered,
}

struct Liar {
    honest: ClientClient<Channel>,
    lie: Lie,
    first_answers: Mutex<std::collections::HashMap<String, pb::GetAccountResponse>>,
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::AccountEvent, Status>> + Send>>;

impl Liar {
    fn page(
        &self,
        address: &str,
        mut page: pb::ListTransactionsResponse,
    ) -> pb::ListTransactionsResponse {
        let txs = &mut page.transactions;
        match self.lie {
            Lie::Truncate if txs.len() >= 2 => {
                // The running hash up to the newest entry, chained as a
                // client would.
                let key = Address::parse(address, "cp").unwrap().into_public_key();
                let mut hash = Hash::from_slice(&page.history_hash_before).unwrap();
                for t in txs[1..].iter().rev() {
                    let tx = SignedTransfer::try_from(t.transaction.clone().unwrap()).unwrap();
                    let e =
                        state::HistoryEntry::of(tx.transfer(), tx.tx_id(), &key, t.height, t.index);
                    hash = state::chain_history(&hash, &e.unwrap());
                }
                page.history_count_before += txs.len() as u64 - 1;
                page.history_hash_before = hash.0.to_vec();
                txs.truncate(1);
            }
            Lie::DropEntry if txs.len() >= 3 => {
                txs.remove(1);
                page.history_count_before += 1;
            }
            Lie::AddEntry if !txs.is_empty() => {
                let mut copy = txs[0].clone();
                copy.index += 1;
                txs.insert(0, copy);
                txs.pop();
            }
            _ => {}
        }
        page
    }

    fn event(&self, mut event: pb::AccountEvent) -> Option<pb::AccountEvent> {
        let n = event.history_index;
        match self.lie {
            Lie::SkipEvent | Lie::SkipRenumbered if n == 2 => return None,
            Lie::SkipRenumbered if n > 2 => event.history_index -= 1,
            _ => {}
        }
        Some(event)
    }
}

#[tonic::async_trait]
impl Client for Liar {
    async fn submit_transaction(
        &self,
        r: Request<pb::SubmitTransactionRequest>,
    ) -> Result<Response<pb::SubmitTransactionResponse>, Status> {
        self.honest.clone().submit_transaction(r.into_inner()).await
    }
    async fn submit_transactions(
        &self,
        r: Request<pb::SubmitTransactionsRequest>,
    ) -> Result<Response<pb::SubmitTransactionsResponse>, Status> {
        self.honest
            .clone()
            .submit_transactions(r.into_inner())
            .await
    }
    async fn get_account(
        &self,
        r: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let request = r.into_inner();
        let address = request.address.clone();
        let mut answer = self.honest.clone().get_account(request).await?.into_inner();
        let account = answer.account.as_mut().expect("an account");
        match self.lie {
            Lie::Balance => account.balance += 1,
            Lie::Nonce => account.nonce += 1,
            Lie::StaleHeight => {
                let mut first = self.first_answers.lock().unwrap();
                answer = first.entry(address).or_insert(answer).clone();
            }
            _ => {}
        }
        Ok(Response::new(answer))
    }
    async fn get_transaction(
        &self,
        r: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        self.honest.clone().get_transaction(r.into_inner()).await
    }
    async fn list_transactions(
        &self,
        r: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let mut request = r.into_inner();
        let address = request.address.clone();
        if self.lie == Lie::DropEntry {
            // One entry more than asked, one left out: the page keeps its
            // length.
            request.limit = request.limit.max(1) + 1;
        }
        let page = self
            .honest
            .clone()
            .list_transactions(request)
            .await?
            .into_inner();
        Ok(Response::new(self.page(&address, page)))
    }
    async fn get_block(
        &self,
        r: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::GetBlockResponse>, Status> {
        self.honest.clone().get_block(r.into_inner()).await
    }
    async fn get_status(
        &self,
        r: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        self.honest.clone().get_status(r.into_inner()).await
    }
    type SubscribeAccountStream = Events;
    async fn subscribe_account(
        &self,
        r: Request<pb::SubscribeAccountRequest>,
    ) -> Result<Response<Events>, Status> {
        let honest = self
            .honest
            .clone()
            .subscribe_account(r.into_inner())
            .await?
            .into_inner();
        let lie = Liar {
            honest: self.honest.clone(),
            lie: self.lie,
            first_answers: Mutex::default(),
        };
        let events = honest.filter_map(move |e| match e {
            Ok(e) => lie.event(e).map(Ok),
            Err(s) => Some(Err(s)),
        });
        Ok(Response::new(Box::pin(events)))
    }
}

/// A lying double of validator 0 on 127.0.0.1; stops when dropped.
struct Double {
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Double {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn double(net: &LocalNetwork, lie: Lie) -> Double {
    let honest = ClientClient::connect(net.urls()[0].clone()).await.unwrap();
    let liar = Liar {
        honest,
        lie,
        first_answers: Mutex::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::client_server::ClientServer::new(liar))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Double { url, server }
}

async fn wallet(dir: &std::path::Path, urls: &[String]) -> Arc<Wallet> {
    let (home, _) = WalletHome::create(dir, "pw", FAST).unwrap();
    Arc::new(Wallet::connect(home.with_kdf(FAST), urls).await.unwrap())
}

fn lied_by(e: &WalletError, url: &str) -> bool {
    matches!(e, WalletError::Lied { node, .. } if node == url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_refuses_every_lie_about_an_account_and_names_the_liar() {
    let net = LocalNetwork::start(4).await;
    let honest = net.urls()[1].clone();
    let dir = tempfile::tempdir().unwrap();
    // Bob gets 5 payments from the faucet and pays 1 on: a history of 6.
    let payer = wallet(&dir.path().join("payer"), &net.urls()).await;
    payer
        .home()
        .import_key("faucet", &net.faucet, "pw")
        .unwrap();
    let faucet = payer.signer("faucet", "pw").unwrap();
    let bob_key = SecretKey::generate();
    let bob = payer.chain().address(bob_key.public_key());
    for i in 1..=5 {
        assert!(
            payer
                .pay(&faucet, &bob, i * CPY, "")
                .await
                .unwrap()
                .is_success()
        );
    }
    let bob_wallet = wallet(&dir.path().join("bob"), &net.urls()).await;
    bob_wallet.home().import_key("bob", &bob_key, "pw").unwrap();
    let bob_signer = bob_wallet.signer("bob", "pw").unwrap();
    let someone = payer.chain().address(SecretKey::generate().public_key());
    bob_wallet
        .pay(&bob_signer, &someone, CPY, "")
        .await
        .unwrap();
    // The last payment is proven once the block after it commits.
    let truth = loop {
        let a = payer.account(&bob).await.unwrap();
        if a.history_count == 6 {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // A wrong balance or nonce: the proof does not show it.
    for lie in [Lie::Balance, Lie::Nonce] {
        let liar = double(&net, lie).await;
        let alone = wallet(
            &dir.path().join(format!("{lie:?}")),
            std::slice::from_ref(&liar.url),
        )
        .await;
        let e = alone.account(&bob).await.unwrap_err();
        assert!(lied_by(&e, &liar.url), "{lie:?}: {e}");
        assert!(e.to_string().contains("does not show"), "{lie:?}: {e}");
        // Beside an honest validator: the truth, and the liar named.
        let both = wallet(
            &dir.path().join(format!("{lie:?}-both")),
            &[liar.url.clone(), honest.clone()],
        )
        .await;
        let got = both.account(&bob).await.unwrap();
        assert_eq!((got.balance, got.nonce), (truth.balance, truth.nonce));
        assert_eq!(both.nodes().liars()[0].0, liar.url);
    }

    // A history page with an entry removed or added, the count kept right.
    for lie in [Lie::DropEntry, Lie::AddEntry, Lie::Truncate] {
        let liar = double(&net, lie).await;
        let alone = wallet(
            &dir.path().join(format!("{lie:?}")),
            std::slice::from_ref(&liar.url),
        )
        .await;
        // Pages of 3, so that the page does not start at the first entry.
        let e = alone.history(&bob, 3).await.unwrap_err();
        assert!(lied_by(&e, &liar.url), "{lie:?}: {e}");
        let why = if lie == Lie::Truncate {
            "entries left out"
        } else {
            "history hash"
        };
        assert!(e.to_string().contains(why), "{lie:?}: {e}");
        let both = wallet(
            &dir.path().join(format!("{lie:?}-both")),
            &[liar.url.clone(), honest.clone()],
        )
        .await;
        let history = both.history(&bob, 3).await.unwrap();
        assert_eq!((history.total, history.entries.len()), (6, 3));
        assert!(history.entries[0].outgoing);
        assert_eq!(history.entries[2].amount, 4 * CPY);
        // (Pages go to the validator that proved the highest height, so
        // the double may not have been asked here.)
        assert!(both.nodes().liars().iter().all(|(url, _)| *url == liar.url));
    }

    // A stale height presented as current: the double serves its first
    // answer about each account again, once the wallet has seen a later
    // height proven.
    let liar = double(&net, Lie::StaleHeight).await;
    let alone = wallet(&dir.path().join("stale"), std::slice::from_ref(&liar.url)).await;
    let first = alone.account(&bob).await.unwrap();
    while net.height(1) < first.height + 12 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first question about another account gets a fresh answer, which
    // shows the wallet a later height.
    let fresh = alone.account(&someone).await.unwrap();
    assert!(fresh.height > first.height + 5);
    let e = alone.account(&bob).await.unwrap_err();
    assert!(
        matches!(&e, WalletError::Behind { node, what } if *node == liar.url && what.contains("already proven")),
        "{e}"
    );
    // Beside an honest validator: the current state, and the double asked
    // after the others.
    let both = wallet(
        &dir.path().join("stale-both"),
        &[liar.url.clone(), honest.clone()],
    )
    .await;
    both.account(&someone).await.unwrap();
    let now = both.account(&bob).await.unwrap();
    assert_eq!((now.balance, now.history_count), (truth.balance, 6));
    assert_eq!(both.nodes().lagging()[0].0, liar.url);

    // An account stream that skips a payment, with a gap or renumbered:
    // named, and every payment still reported, from the proofs.
    for lie in [Lie::SkipEvent, Lie::SkipRenumbered] {
        let liar = double(&net, lie).await;
        let w = wallet(
            &dir.path().join(format!("{lie:?}")),
            &[liar.url.clone(), honest.clone()],
        )
        .await;
        let carol_key = SecretKey::generate();
        let carol: Address = w.chain().address(carol_key.public_key());
        let mut incoming = w.incoming(&carol, None);
        let pays = {
            let (payer, faucet, carol) = (payer.clone(), faucet.clone(), carol.clone());
            tokio::spawn(async move {
                for i in 1..=3 {
                    payer.pay(&faucet, &carol, i, "").await.unwrap();
                }
            })
        };
        let (mut amounts, mut lies) = (Vec::new(), Vec::new());
        // The lie may be seen before the payments or after them (when the
        // proofs outrun the stream): read until both are in.
        while amounts.len() < 3 || lies.is_empty() {
            let item = tokio::time::timeout(Duration::from_secs(30), incoming.next())
                .await
                .unwrap_or_else(|_| panic!("{lie:?}: nothing for 30 s: {amounts:?} {lies:?}"))
                .unwrap_or_else(|| panic!("{lie:?}: the stream ended: {lies:?}"));
            match item {
                Ok(p) => amounts.push(p.amount),
                Err(e) => lies.push(e),
            }
        }
        pays.await.unwrap();
        assert_eq!(amounts, [1, 2, 3], "{lie:?}");
        assert!(
            lies.iter().any(|e| lied_by(e, &liar.url)),
            "{lie:?}: {lies:?}"
        );
    }
    // A cursor ahead of the account's proven history (another account's):
    // refused at once, not waited on.
    let w = wallet(&dir.path().join("cursor"), std::slice::from_ref(&honest)).await;
    let wrong = chatpay_wallet::Cursor {
        height: 1,
        index: 0,
        history_count: 99,
        history_hash: [0; 32],
    };
    let item = tokio::time::timeout(
        Duration::from_secs(30),
        w.incoming(&bob, Some(wrong)).next(),
    )
    .await
    .expect("an answer")
    .expect("an item");
    assert!(
        matches!(&item, Err(WalletError::BadRequest(m)) if m.contains("cursor")),
        "{item:?}"
    );
    net.shutdown().await;
}
