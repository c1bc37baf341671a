//! The wallet against a real 4-validator network (full validators over
//! gRPC on 127.0.0.1): receive from the faucet, pay, split a bill, pay a
//! request link, follow incoming payments once each, restore from the
//! phrase; and a validator that forges finality is not believed.

use chatpay_proto::{PublicKey, SecretKey};
use chatpay_tests::{FEE, LocalNetwork};
use chatpay_wallet::{KdfParams, PaymentRequest, Wallet, WalletError, WalletHome};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;

const FAST: KdfParams = KdfParams {
    m_kib: 256,
    t: 1,
    p: 1,
};
const CPY: u64 = 1_000_000;

async fn wallet(dir: &Path, urls: &[String]) -> (Arc<Wallet>, chatpay_wallet::RecoveryPhrase) {
    let (home, phrase) = WalletHome::create(dir, "pw", FAST).unwrap();
    let w = Wallet::connect(home.with_kdf(FAST), urls).await.unwrap();
    (Arc::new(w), phrase)
}

/// A wallet holding `net`'s faucet key, and its signer.
async fn faucet_of(
    net: &LocalNetwork,
    dir: &Path,
    urls: &[String],
) -> (Arc<Wallet>, chatpay_wallet::Signer) {
    let (w, _) = wallet(&dir.join("faucet"), urls).await;
    w.home().import_key("faucet", &net.faucet, "pw").unwrap();
    let faucet = w.signer("faucet", "pw").unwrap();
    (w, faucet)
}

/// Balance of `key` on validator `i` once it has committed `height`.
async fn balance_on(net: &LocalNetwork, i: usize, key: &PublicKey, height: u64) -> u64 {
    let store = net.store(i);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.committed_height().unwrap().unwrap_or(0) < height {
        assert!(
            tokio::time::Instant::now() < deadline,
            "validator {i} behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.account(key).unwrap().map_or(0, |a| a.balance)
}

async fn assert_balance(net: &LocalNetwork, key: &PublicKey, height: u64, expected: u64) {
    for i in 0..net.len() {
        assert_eq!(
            balance_on(net, i, key, height).await,
            expected,
            "validator {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_split_request_and_watch_on_a_real_network() {
    let net = LocalNetwork::start(4).await;
    let urls = net.urls();
    let dir = tempfile::tempdir().unwrap();
    let (faucet_wallet, faucet) = faucet_of(&net, dir.path(), &urls).await;
    let (alice_wallet, alice_phrase) = wallet(&dir.path().join("alice"), &urls).await;
    let (bob_wallet, _) = wallet(&dir.path().join("bob"), &urls).await;
    let alice = alice_wallet.signer("default", "pw").unwrap();
    let bob = bob_wallet.signer("default", "pw").unwrap();

    // Receive from the faucet.
    let p = faucet_wallet
        .pay(&faucet, &alice.address, 100 * CPY, "welcome")
        .await
        .unwrap();
    assert!(p.is_success());
    assert_balance(&net, alice.address.public_key(), p.height, 100 * CPY).await;

    // Alice pays Bob.
    let p = alice_wallet
        .pay(&alice, &bob.address, 10 * CPY, "lunch")
        .await
        .unwrap();
    assert!(p.is_success());
    assert_balance(&net, alice.address.public_key(), p.height, 90 * CPY - FEE).await;
    assert_balance(&net, bob.address.public_key(), p.height, 10 * CPY).await;
    let state = alice_wallet.account(&alice.address).await.unwrap();
    assert_eq!(state.nonce, 1);

    // Split a bill three ways in one transfer (one fee).
    let carol = alice_wallet
        .chain()
        .address(SecretKey::generate().public_key());
    let dave = alice_wallet
        .chain()
        .address(SecretKey::generate().public_key());
    let split = [
        (bob.address.clone(), CPY),
        (carol.clone(), CPY),
        (dave.clone(), CPY),
    ];
    let p = alice_wallet.pay_many(&alice, &split, "bill").await.unwrap();
    assert!(p.is_success());
    assert_eq!(p.amount, 3 * CPY);
    assert_balance(
        &net,
        alice.address.public_key(),
        p.height,
        87 * CPY - 2 * FEE,
    )
    .await;
    for who in [&carol, &dave] {
        assert_balance(&net, who.public_key(), p.height, CPY).await;
    }

    // Bob asks for 2.5 with a link; Alice pays the link.
    let request = PaymentRequest {
        amount: Some(2_500_000),
        memo: Some("pizza 🍕".into()),
        label: Some("Bob".into()),
        ..PaymentRequest::new(bob.address.clone(), bob_wallet.chain(), 600)
    };
    let link = request.to_link(bob_wallet.chain());
    let parsed = PaymentRequest::parse(&link, alice_wallet.chain()).unwrap();
    assert_eq!(parsed, request);
    let p = alice_wallet
        .pay_request(&alice, &parsed, None, false)
        .await
        .unwrap();
    assert!(p.is_success());
    assert_balance(&net, bob.address.public_key(), p.height, 13_500_000).await;

    // Bob's incoming payments: each exactly once, in order, verified; he
    // reads the memo encrypted for him.
    bob_wallet.read_memos_of(&bob);
    let mut incoming = bob_wallet.incoming(&bob.address, None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(30), incoming.next())
            .await
            .expect("an incoming payment")
            .expect("the stream goes on")
            .unwrap();
        seen.push(next);
    }
    let amounts: Vec<u64> = seen.iter().map(|p| p.amount).collect();
    assert_eq!(amounts, [10 * CPY, CPY, 2_500_000]);
    assert_eq!(seen[2].memo, "pizza 🍕");
    assert!(seen[2].memo_encrypted);
    assert!(seen.iter().all(|p| p.from == alice.address));
    // Nothing else arrives (no duplicates) within a few blocks.
    let extra = tokio::time::timeout(Duration::from_secs(2), incoming.next()).await;
    assert!(extra.is_err(), "unexpected: {extra:?}");
    drop(incoming);
    // Resumed after the second payment: only the third.
    let mut resumed = bob_wallet.incoming(&bob.address, Some(seen[1].cursor));
    let again = tokio::time::timeout(Duration::from_secs(30), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(again, seen[2]);

    // The phrase restores the same address.
    let restored =
        WalletHome::restore(&dir.path().join("alice2"), &alice_phrase, "new", FAST).unwrap();
    let restored = Wallet::connect(restored, &urls).await.unwrap();
    assert_eq!(restored.address("default").unwrap(), alice.address);

    // More than the balance: refused before anything is signed.
    let e = alice_wallet
        .pay(&alice, &bob.address, 1_000 * CPY, "")
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InsufficientFunds { .. }), "{e}");
    assert!(e.to_string().contains("balance 84.497"), "{e}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_from_one_account_all_commit() {
    let net = LocalNetwork::start(4).await;
    let urls = net.urls();
    let dir = tempfile::tempdir().unwrap();
    let (w, faucet) = faucet_of(&net, dir.path(), &urls).await;
    let to = w.chain().address(SecretKey::generate().public_key());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 1..=5u64 {
        let (w, faucet, to) = (w.clone(), faucet.clone(), to.clone());
        tasks.spawn(async move { w.pay(&faucet, &to, i, "").await });
    }
    let mut top = 0;
    while let Some(done) = tasks.join_next().await {
        let p = done.unwrap().unwrap();
        assert!(p.is_success());
        top = top.max(p.height);
    }
    assert_balance(&net, to.public_key(), top, 15).await;
    assert_eq!(w.account(&faucet.address).await.unwrap().nonce, 5);
    // Nothing is left pending once all are final.
    assert!(w.home().state("faucet").unwrap().pending.is_empty());
    net.shutdown().await;
}

/// A validator that lies: it takes transactions without passing them on and
/// answers GetTransaction with a committed record and a proof built from
/// real blocks and real certificates of the chain, just not including the
/// transaction. Everything else is proxied to an honest validator.
mod liar {
    use chatpay_proto::pb::{self, client_client::ClientClient, client_server::Client};
    use chatpay_proto::{MerkleProof, ReceiptCode, SignedTransfer, merkle_leaf};
    use std::pin::Pin;
    use tokio_stream::Stream;
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status};

    pub struct Liar {
        pub honest: ClientClient<Channel>,
        pub submitted: std::sync::Mutex<Vec<pb::SignedTransaction>>,
    }

    type Events = Pin<Box<dyn Stream<Item = Result<pb::AccountEvent, Status>> + Send>>;

    #[tonic::async_trait]
    impl Client for Liar {
        async fn submit_transaction(
            &self,
            r: Request<pb::SubmitTransactionRequest>,
        ) -> Result<Response<pb::SubmitTransactionResponse>, Status> {
            let tx = r.into_inner().transaction.unwrap();
            let id = SignedTransfer::try_from(tx.clone()).unwrap().tx_id();
            self.submitted.lock().unwrap().push(tx);
            Ok(Response::new(pb::SubmitTransactionResponse {
                tx_id: id.0.to_vec(),
                status: pb::AdmissionStatus::Admitted as i32,
            }))
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
            self.honest.clone().get_account(r.into_inner()).await
        }
        async fn get_transaction(
            &self,
            r: Request<pb::GetTransactionRequest>,
        ) -> Result<Response<pb::GetTransactionResponse>, Status> {
            let id = r.into_inner().tx_id;
            let tx = self
                .submitted
                .lock()
                .unwrap()
                .iter()
                .find(|t| {
                    SignedTransfer::try_from((*t).clone())
                        .unwrap()
                        .tx_id()
                        .0
                        .to_vec()
                        == id
                })
                .cloned()
                .ok_or_else(|| Status::not_found("unknown"))?;
            // A real, committed, certified block and its real commit proof,
            // taken from an honest answer about the faucet's funding block.
            let mut honest = self.honest.clone();
            let height = honest
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner()
                .committed_height
                .saturating_sub(3)
                .max(1);
            let block = honest
                .get_block(pb::GetBlockRequest { height })
                .await?
                .into_inner();
            let next = honest
                .get_block(pb::GetBlockRequest { height: height + 1 })
                .await?
                .into_inner();
            let parsed = SignedTransfer::try_from(tx.clone()).unwrap();
            let leaf = merkle_leaf(&parsed.tx_id(), ReceiptCode::Success);
            let proof = MerkleProof::build(&[leaf], 0).unwrap();
            Ok(Response::new(pb::GetTransactionResponse {
                status: Some(pb::get_transaction_response::Status::Committed(
                    pb::CommittedTransaction {
                        transaction: Some(tx),
                        tx_id: id,
                        height,
                        index: 0,
                        receipt: Some(pb::Receipt {
                            code: ReceiptCode::Success as i32,
                        }),
                    },
                )),
                proof: Some(pb::FinalityProof {
                    header: block.block.and_then(|b| b.header),
                    certificate: block.certificate,
                    commit_certificate: next.certificate,
                    commit_header: next.block.and_then(|b| b.header),
                    proof: Some((&proof).into()),
                    commit_path: vec![],
                }),
            }))
        }
        async fn list_transactions(
            &self,
            _: Request<pb::ListTransactionsRequest>,
        ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
            Err(Status::unimplemented("liar"))
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
        type SubscribePaymentsStream =
            Pin<Box<dyn Stream<Item = Result<pb::FoundPayment, Status>> + Send>>;
        async fn find_payment(
            &self,
            r: Request<pb::FindPaymentRequest>,
        ) -> Result<Response<pb::FindPaymentResponse>, Status> {
            self.honest.clone().find_payment(r.into_inner()).await
        }
        async fn subscribe_payments(
            &self,
            _: Request<pb::SubscribePaymentsRequest>,
        ) -> Result<Response<Self::SubscribePaymentsStream>, Status> {
            Err(Status::unimplemented("liar"))
        }
        type SubscribeAccountStream = Events;
        async fn subscribe_account(
            &self,
            _: Request<pb::SubscribeAccountRequest>,
        ) -> Result<Response<Events>, Status> {
            Err(Status::unimplemented("liar"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_forging_finality_is_not_believed() {
    use chatpay_proto::pb::client_client::ClientClient;
    let net = LocalNetwork::start(4).await;
    let honest = ClientClient::connect(net.urls()[0].clone()).await.unwrap();
    let liar = liar::Liar {
        honest,
        submitted: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(chatpay_proto::pb::client_server::ClientServer::new(liar))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // Let a few blocks commit so the liar has real certificates to reuse.
    let store = net.store(0);
    while store.committed_height().unwrap().unwrap_or(0) < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = WalletHome::create(&dir.path().join("w"), "pw", FAST).unwrap();
    let home = home.with_kdf(FAST);
    home.import_key("faucet", &net.faucet, "pw").unwrap();
    let w = Wallet::connect(home, &[liar_url])
        .await
        .unwrap()
        .with_finality_timeout(Duration::from_secs(3));
    let faucet = w.signer("faucet", "pw").unwrap();
    let to = w.chain().address(SecretKey::generate().public_key());
    let e = w.pay(&faucet, &to, CPY, "").await.unwrap_err();
    assert!(matches!(e, WalletError::Unverified(_)), "{e}");
    // Its made-up proof (one leaf in a block that holds none) fails on the
    // leaf count before the Merkle path is even checked.
    assert!(
        e.to_string().contains("the block holds 0 transactions"),
        "{e}"
    );
    // It is kept as pending (it may yet commit elsewhere), never reported paid.
    assert_eq!(w.home().state("faucet").unwrap().pending.len(), 1);
    server.abort();

    // The same wallet home on honest validators: the next payment first
    // resubmits the pending one unchanged (same tx id), then pays with the
    // next nonce; both commit, once each.
    let home = WalletHome::open(&dir.path().join("w")).unwrap();
    let w = Wallet::connect(home, &net.urls()).await.unwrap();
    let p = w.pay(&faucet, &to, 2 * CPY, "").await.unwrap();
    assert!(p.is_success());
    let key = faucet.address.public_key();
    net.wait_for_nonce(key, 2, Duration::from_secs(30)).await;
    assert_balance(&net, to.public_key(), p.height.max(net.height(0)), 3 * CPY).await;
    assert_eq!(w.account(&faucet.address).await.unwrap().nonce, 2);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_fails_over_when_validators_go_down() {
    let mut net = LocalNetwork::start(4).await;
    let dir = tempfile::tempdir().unwrap();
    // A dead address first in the list, then the four validators.
    let mut urls = vec!["http://127.0.0.1:1".to_string()];
    urls.extend(net.urls());
    let (home, _) = WalletHome::create(&dir.path().join("w"), "pw", FAST).unwrap();
    let home = home.with_kdf(FAST);
    home.import_key("faucet", &net.faucet, "pw").unwrap();
    let w = Wallet::connect(home, &urls).await.unwrap();
    let faucet = w.signer("faucet", "pw").unwrap();
    let to = w.chain().address(SecretKey::generate().public_key());
    let p = w.pay(&faucet, &to, CPY, "").await.unwrap();
    assert!(p.is_success());
    // Validators 0 then 1 stop (one at a time, so a quorum remains): each
    // payment still goes through whichever answers.
    net.stop(0).await;
    let p = w.pay(&faucet, &to, CPY, "").await.unwrap();
    assert!(p.is_success());
    net.restart(0).await;
    net.stop(1).await;
    let p = w.pay(&faucet, &to, CPY, "").await.unwrap();
    assert!(p.is_success());
    for i in [0, 2, 3] {
        assert_eq!(
            balance_on(&net, i, to.public_key(), p.height).await,
            3 * CPY
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_timed_out_stays_pending_and_can_be_retried_or_cancelled() {
    use chatpay_proto::pb;
    let mut net = LocalNetwork::start(4).await;
    let dir = tempfile::tempdir().unwrap();
    let urls = net.urls();
    let (home, _) = WalletHome::create(&dir.path().join("w"), "pw", FAST).unwrap();
    let home = home.with_kdf(FAST);
    home.import_key("faucet", &net.faucet, "pw").unwrap();
    let patient = Wallet::connect(home, &urls).await.unwrap();
    let faucet = patient.signer("faucet", "pw").unwrap();
    let to = patient.chain().address(SecretKey::generate().public_key());
    let open = || {
        WalletHome::open(&dir.path().join("w"))
            .unwrap()
            .with_kdf(FAST)
    };
    // A payment signed and recorded as pending, whose wait ended before it
    // was final (here: never submitted, as after a crash right after
    // signing): retry submits it unchanged and makes it final.
    let signed = chatpay_proto::Transfer::new(
        net.genesis.hash(),
        net.faucet.public_key().clone(),
        1,
        FEE,
        vec![chatpay_proto::Output {
            recipient: to.public_key().clone(),
            amount: CPY,
        }],
        vec![],
    )
    .unwrap()
    .sign(&net.faucet);
    let mut state = patient.home().state("faucet").unwrap();
    state.pending.push(chatpay_wallet::home::PendingTx {
        nonce: 1,
        tx_id: hex::encode(signed.tx_id().0),
        signed: hex::encode(prost::Message::encode_to_vec(&pb::SignedTransaction::from(
            &signed,
        ))),
    });
    patient.home().save_state("faucet", &state).unwrap();
    let pending = patient.pending("faucet").unwrap();
    assert_eq!(pending, vec![signed.clone()]);
    let done = patient.retry(&faucet).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].is_success());
    assert_eq!(done[0].tx_id, pending[0].tx_id());
    assert!(patient.pending("faucet").unwrap().is_empty());
    // Validators 0 and 3 can prove that state (a proof needs a committed
    // child of the block) before the others stop and the chain halts.
    net.wait_for(&[0, 3], done[0].height + 3, Duration::from_secs(30))
        .await;
    // Two of four down: nothing can be final. A payment waits; a cancel
    // takes its nonce with a higher fee, and the validators holding it
    // replace it, so the payment can no longer be ordered.
    net.stop(1).await;
    net.stop(2).await;
    // (Told only of the two that answer: asking the stopped ones costs a
    // connection timeout per call, which the fail-over test covers. It
    // gives up on finality at once: nothing can be final now.)
    let live = [urls[0].clone(), urls[3].clone()];
    let impatient = Wallet::connect(open(), &live)
        .await
        .unwrap()
        .with_finality_timeout(Duration::ZERO);
    let e = impatient.pay(&faucet, &to, CPY, "").await.unwrap_err();
    assert!(matches!(e, WalletError::Timeout { .. }), "{e}");
    let payment = impatient.pending("faucet").unwrap().remove(0);
    let e = impatient.cancel(&faucet).await.unwrap_err();
    assert!(matches!(e, WalletError::Timeout { .. }), "{e}");
    let cancel = impatient.pending("faucet").unwrap().remove(0);
    assert_eq!(cancel.transfer().nonce(), payment.transfer().nonce());
    assert!(cancel.transfer().fee() > payment.transfer().fee());
    let status = |id: chatpay_proto::TxId, node: usize| {
        let url = urls[node].clone();
        async move {
            let mut c = pb::client_client::ClientClient::connect(url).await.unwrap();
            c.get_transaction(pb::GetTransactionRequest {
                tx_id: id.0.to_vec(),
                include_proof: false,
            })
            .await
            .map(|r| r.into_inner().status)
        }
    };
    for node in [0, 3] {
        let held = status(cancel.tx_id(), node).await.unwrap();
        assert!(
            matches!(held, Some(pb::get_transaction_response::Status::Pending(_))),
            "validator {node}: {held:?}"
        );
        let gone = status(payment.tx_id(), node).await.unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound, "validator {node}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_payment_the_network_refuses_for_good_is_dropped() {
    use chatpay_proto::{Output, Transfer, pb};
    use prost::Message;
    let net = LocalNetwork::start(4).await;
    let dir = tempfile::tempdir().unwrap();
    let (w, faucet) = faucet_of(&net, dir.path(), &net.urls()).await;
    let to = w.chain().address(SecretKey::generate().public_key());
    // A pending transaction left by an earlier run that can never commit
    // (signed for another chain), holding nonce 1.
    let bad = Transfer::new(
        chatpay_proto::Hash([0xee; 32]),
        net.faucet.public_key().clone(),
        1,
        FEE,
        vec![Output {
            recipient: to.public_key().clone(),
            amount: 5,
        }],
        vec![],
    )
    .unwrap()
    .sign(&net.faucet);
    let mut state = w.home().state("faucet").unwrap();
    state.pending.push(chatpay_wallet::home::PendingTx {
        nonce: 1,
        tx_id: hex::encode(bad.tx_id().0),
        signed: hex::encode(pb::SignedTransaction::from(&bad).encode_to_vec()),
    });
    w.home().save_state("faucet", &state).unwrap();
    // The next payment drops it, reuses nonce 1, and commits.
    let p = w.pay(&faucet, &to, CPY, "").await.unwrap();
    assert!(p.is_success());
    assert_eq!(w.account(&faucet.address).await.unwrap().nonce, 1);
    assert!(w.home().state("faucet").unwrap().pending.is_empty());
    net.shutdown().await;
}

mod lying {
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
                        let e = state::HistoryEntry::of(
                            tx.transfer(),
                            tx.tx_id(),
                            &key,
                            t.height,
                            t.index,
                        );
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
        type SubscribePaymentsStream =
            Pin<Box<dyn Stream<Item = Result<pb::FoundPayment, Status>> + Send>>;
        async fn find_payment(
            &self,
            r: Request<pb::FindPaymentRequest>,
        ) -> Result<Response<pb::FindPaymentResponse>, Status> {
            self.honest.clone().find_payment(r.into_inner()).await
        }
        async fn subscribe_payments(
            &self,
            _: Request<pb::SubscribePaymentsRequest>,
        ) -> Result<Response<Self::SubscribePaymentsStream>, Status> {
            Err(Status::unimplemented("liar"))
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
            matches!(&item, Err(WalletError::Invalid(m)) if m.contains("cursor")),
            "{item:?}"
        );
        net.shutdown().await;
    }
}

/// The chat payments flow end to end on a real network: Alice posts a
/// request for 12.50 with a memo in a group chat, Bob pays the link, Alice's
/// app sees it paid through the reference (`SubscribePayments`, then
/// `FindPayment`) and reads the memo; Carol, the third member, and every
/// validator's stored block see only ciphertext. A second payment of the
/// link, an expired link and a link of another network are refused, and a
/// transfer signed for this network is refused by a second network with
/// the same chain id and the same funded key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_chat_request_is_paid_once_tracked_and_private() {
    use chatpay_proto::{Memo, pb};
    use chatpay_wallet::memo::{self, MemoText};
    let faucet_key = SecretKey::generate();
    let net = LocalNetwork::start_funding(4, Default::default(), faucet_key.clone(), 0).await;
    let urls = net.urls();
    let dir = tempfile::tempdir().unwrap();
    let (faucet_wallet, faucet) = faucet_of(&net, dir.path(), &urls).await;
    let (alice_wallet, _) = wallet(&dir.path().join("alice"), &urls).await;
    let (bob_wallet, _) = wallet(&dir.path().join("bob"), &urls).await;
    let (carol_wallet, _) = wallet(&dir.path().join("carol"), &urls).await;
    let alice = alice_wallet.signer("default", "pw").unwrap();
    let bob = bob_wallet.signer("default", "pw").unwrap();
    let carol = carol_wallet.signer("default", "pw").unwrap();
    let funding = faucet_wallet
        .pay(&faucet, &bob.address, 50 * CPY, "")
        .await
        .unwrap();
    assert!(funding.is_success());

    // Alice asks the group for 12.50 of the rent.
    let request = PaymentRequest {
        amount: Some(12_500_000),
        memo: Some("rent for March".into()),
        label: Some("Alice".into()),
        ..PaymentRequest::new(alice.address.clone(), alice_wallet.chain(), 600)
    };
    let link = request.to_link(alice_wallet.chain());
    alice_wallet.read_memos_of(&alice);
    let watching = tokio::spawn({
        let (w, r) = (alice_wallet.clone(), request.clone());
        async move { w.wait_request_paid(&r, Duration::from_secs(60)).await }
    });
    assert_eq!(
        alice_wallet.find_request_payment(&request).await.unwrap(),
        None
    );

    // Bob pays the link.
    let parsed = PaymentRequest::parse(&link, bob_wallet.chain()).unwrap();
    let paid = bob_wallet
        .pay_request(&bob, &parsed, None, false)
        .await
        .unwrap();
    assert!(paid.is_success());

    // Alice's app sees it paid, from the reference alone, and reads the memo.
    let seen = watching.await.unwrap().unwrap();
    assert_eq!(seen.payment.tx_id, paid.tx_id);
    assert_eq!(
        (seen.from.clone(), seen.amount),
        (bob.address.clone(), 12_500_000)
    );
    assert_eq!(seen.memo, "rent for March");
    assert!(seen.memo_encrypted);
    let found = alice_wallet.find_request_payment(&request).await.unwrap();
    assert_eq!(found.as_ref().map(|p| p.payment.tx_id), Some(paid.tx_id));

    // Carol, and every validator, see ciphertext only.
    for i in 0..net.len() {
        let store = net.store(i);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let record = loop {
            if let Some(r) = store.transaction(&paid.tx_id).unwrap() {
                break r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "validator {i} lacks it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let t = record.transaction.transfer();
        assert!(matches!(t.memo(), Memo::Encrypted(e) if e.len() == 67 + 2 * 48 + 80));
        let stored =
            prost::Message::encode_to_vec(&pb::SignedTransaction::from(&record.transaction));
        assert!(
            !stored.windows(4).any(|w| w == b"rent"),
            "plaintext stored on {i}"
        );
        assert_eq!(memo::read(t, Some(carol.key())), MemoText::Encrypted);
        assert_eq!(
            memo::read(t, Some(alice.key())),
            MemoText::Private("rent for March".into())
        );
    }

    // A second payment of the same link is refused.
    let again = bob_wallet.pay_request(&bob, &parsed, None, false).await;
    assert!(
        matches!(&again, Err(WalletError::Invalid(m)) if m.contains("already paid")),
        "{again:?}"
    );
    // An expired link, and a link of another network, are refused.
    let expired = PaymentRequest {
        expires_at: Some(chatpay_wallet::unix_now_secs() - 90),
        ..request.clone()
    };
    let e = bob_wallet
        .pay_request(&bob, &expired, None, false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let elsewhere = link.replace(
        &format!("net={}", &alice_wallet.chain().genesis_hash[..16]),
        "net=0123456789abcdef",
    );
    let e = PaymentRequest::parse(&elsewhere, bob_wallet.chain()).unwrap_err();
    assert!(e.to_string().contains("another network"), "{e}");

    // The faucet's funding transfer, replayed on a second network with the
    // same chain id whose genesis funds the same key, is refused there.
    let other = LocalNetwork::start_funding(4, Default::default(), faucet_key, 1).await;
    assert_eq!(other.genesis.chain_id, net.genesis.chain_id);
    assert_ne!(other.genesis.hash(), net.genesis.hash());
    let record = net.store(0).transaction(&funding.tx_id).unwrap().unwrap();
    let mut client =
        chatpay_proto::pb::client_client::ClientClient::connect(other.urls()[0].clone())
            .await
            .unwrap();
    let refused = client
        .submit_transaction(pb::SubmitTransactionRequest {
            transaction: Some((&record.transaction).into()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.metadata().get("chatpay-reason").unwrap(),
        "wrong_chain",
        "{refused:?}"
    );
    other.shutdown().await;
    net.shutdown().await;
}

/// A pending transfer that expired before it was ordered does not take
/// the ones after it down: its nonce is filled by a transfer to oneself,
/// the later pending transfer stays and commits, and the new payment takes
/// the nonce after it. Dropping them and reusing their nonces (the rule for
/// other refusals) could let a dropped one, still validly signed, commit
/// after a new payment took its nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pending_transfer_is_filled_and_the_ones_after_it_stay() {
    use chatpay_proto::{Output, Transfer, pb};
    let net = LocalNetwork::start(4).await;
    let urls = net.urls();
    let dir = tempfile::tempdir().unwrap();
    let (w, faucet) = faucet_of(&net, dir.path(), &urls).await;
    let to = w.chain().address(SecretKey::generate().public_key());
    let sign = |nonce: u64, expires_at_ms: u64| {
        let output = Output {
            recipient: to.public_key().clone(),
            amount: CPY,
        };
        Transfer::new(
            net.genesis.hash(),
            net.faucet.public_key().clone(),
            nonce,
            FEE,
            vec![output],
            vec![],
        )
        .unwrap()
        .with_expiry(expires_at_ms)
        .sign(&net.faucet)
    };
    // Signed and recorded as pending, never sent (as after a crash right
    // after signing): nonce 1 expired long ago, nonce 2 never expires.
    let (expired, later) = (sign(1, 1), sign(2, 0));
    let mut state = w.home().state("faucet").unwrap();
    for tx in [&expired, &later] {
        state.pending.push(chatpay_wallet::home::PendingTx {
            nonce: tx.transfer().nonce(),
            tx_id: hex::encode(tx.tx_id().0),
            signed: hex::encode(prost::Message::encode_to_vec(&pb::SignedTransaction::from(
                tx,
            ))),
        });
    }
    w.home().save_state("faucet", &state).unwrap();
    // Expiry is judged by the chain's time: once a block is committed,
    // every validator's is past the first transfer's.
    net.wait_for(&[0, 1, 2, 3], 2, Duration::from_secs(30))
        .await;
    let paid = w.pay(&faucet, &to, 2 * CPY, "after").await.unwrap();
    assert!(paid.is_success());
    let record = net.store(0).transaction(&paid.tx_id).unwrap().unwrap();
    assert_eq!(record.transaction.transfer().nonce(), 3);
    // The later transfer commits (the wallet resubmits it until final).
    let done = w.retry(&faucet).await.unwrap();
    assert!(done.iter().all(chatpay_wallet::Payment::is_success));
    net.wait_for_nonce(net.faucet.public_key(), 3, Duration::from_secs(30))
        .await;
    let store = net.store(0);
    assert!(store.transaction(&expired.tx_id()).unwrap().is_none());
    let second = store.transaction(&later.tx_id()).unwrap();
    assert_eq!(second.map(|r| r.receipt.is_success()), Some(true));
    assert!(w.pending("faucet").unwrap().is_empty());
    assert_eq!(
        balance_on(&net, 0, to.public_key(), paid.height).await,
        3 * CPY,
        "the later transfer and the new payment, each once"
    );
    net.shutdown().await;
}
