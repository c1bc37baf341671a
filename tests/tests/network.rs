//! Four full validators in one process (gRPC server, peer streams,
//! consensus, in-memory ledger) on 127.0.0.1: they commit transfers
//! submitted to any of them, survive one crash, stop without forking with
//! two down, the stopped ones catch up when they return, and a peer sending
//! garbage is refused.

use chatpay_node::state_sync::{SyncConfig, SyncFrom};
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::{Output, Transfer, pb};
use chatpay_tests::{FEE, LocalNetwork};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn pay(net: &LocalNetwork, nonce: u64) -> pb::SignedTransaction {
    let out = Output {
        recipient: chatpay_proto::SecretKey::generate().public_key().clone(),
        amount: nonce,
    };
    let payer = &net.faucet;
    let tx = Transfer::new(
        net.genesis.hash(),
        payer.public_key().clone(),
        nonce,
        FEE,
        vec![out],
        vec![],
    )
    .unwrap()
    .sign(payer);
    (&tx).into()
}

async fn submit(net: &LocalNetwork, node: usize, nonce: u64) {
    let mut client = ClientClient::connect(net.urls()[node].clone())
        .await
        .unwrap();
    client
        .submit_transaction(pb::SubmitTransactionRequest {
            transaction: Some(pay(net, nonce)),
        })
        .await
        .unwrap();
}

fn nonce(net: &LocalNetwork, i: usize) -> u64 {
    net.nonce(i, net.faucet.public_key())
}

async fn wait_for_nonce(net: &LocalNetwork, n: u64) {
    net.wait_for_nonce(net.faucet.public_key(), n, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_to_any_validator_commit_and_a_crashed_one_catches_up() {
    let mut c = LocalNetwork::start(4).await;
    // Each transfer goes to a different validator; the one that leads next
    // proposes it only if forwarding brought it there.
    for nonce in 1..=8 {
        submit(&c, (nonce % 4) as usize, nonce).await;
    }
    wait_for_nonce(&c, 8).await;
    c.assert_agreement();

    // One down: the other three keep committing.
    c.stop(3).await;
    let h = c.height(0);
    for nonce in 9..=12 {
        submit(&c, (nonce % 3) as usize, nonce).await;
    }
    // Rounds whose leader, or next leader, is down end by timeout, so this
    // is slower than a healthy chain.
    c.wait_for(&[0, 1, 2], h + 10, WAIT).await;
    assert!((0..3).all(|i| nonce(&c, i) == 12));
    assert!(c.height(3) < h + 10);

    // Back: it catches up (by range sync: more than the fetch depth behind)
    // to the same blocks and state digest, and votes again.
    c.restart(3).await;
    let top = c.heights().into_iter().max().unwrap();
    c.wait_for(&[0, 1, 2, 3], top + 2, WAIT).await;
    c.assert_agreement();
    assert_eq!(nonce(&c, 3), 12);
    c.stop(2).await;
    let h = c.heights().into_iter().max().unwrap();
    c.wait_for(&[0, 1, 3], h + 3, WAIT).await;
    c.assert_agreement();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_validator_rejoins_from_a_snapshot_and_votes_again() {
    let mut c = LocalNetwork::start(4).await;
    for nonce in 1..=6 {
        submit(&c, (nonce % 4) as usize, nonce).await;
    }
    wait_for_nonce(&c, 6).await;
    let snapshot = SyncConfig {
        from: SyncFrom::Snapshot,
        snapshot_min_height: 1,
        retain_blocks: 0,
    };
    // Two of the three peers serve forged chunks (a balance raised by one
    // under the true header and proof): each attempt that meets one fails
    // its check and excludes it, and the honest one serves the snapshot.
    c.faulty(0).set_forge_state(true);
    c.faulty(1).set_forge_state(true);
    c.rejoin(3, snapshot).await;
    let top = c.heights()[..3].iter().copied().max().unwrap();
    c.wait_for(&[3], top + 2, WAIT).await;
    c.faulty(0).set_forge_state(false);
    c.faulty(1).set_forge_state(false);
    // It took the state of a height the others had committed, and kept
    // no block below it (a replay would have them all).
    let joined = c.store(3).first_full_height().unwrap() - 1;
    let now = c.heights()[..3].iter().copied().max().unwrap();
    assert!(
        joined > 1 && joined <= now,
        "joined at {joined}, others at {now}"
    );
    assert!(c.store(3).block(joined - 1).unwrap().is_none());
    assert_eq!(nonce(&c, 3), 6, "the state came with it");
    // History from before it joined is not there: it says so (a wallet
    // asks another validator) instead of serving a page cut short.
    let list = pb::ListTransactionsRequest {
        address: chatpay_proto::Address::new("cp", c.faucet.public_key().clone())
            .unwrap()
            .to_string(),
        limit: 100,
        ..Default::default()
    };
    let mut joined_client = ClientClient::connect(c.urls()[3].clone()).await.unwrap();
    let refused = joined_client
        .list_transactions(list.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert!(refused.message().contains("snapshot"), "{refused}");
    let mut other = ClientClient::connect(c.urls()[0].clone()).await.unwrap();
    let page = other.list_transactions(list).await.unwrap().into_inner();
    assert_eq!(page.transactions.len(), 6);
    // Payments through it commit everywhere, executed alike.
    for nonce in 7..=10 {
        submit(&c, 3, nonce).await;
    }
    wait_for_nonce(&c, 10).await;
    c.assert_agreement();
    // And it votes: with another one down, three of four still commit.
    c.stop(2).await;
    let h = c.heights().into_iter().max().unwrap();
    c.wait_for(&[0, 1, 3], h + 3, WAIT).await;
    c.assert_agreement();
    c.shutdown().await;
}

/// `n` validators, the last two stopped: a transfer submitted to the
/// others commits nothing for several round timeouts and nothing forks;
/// it commits everywhere once the two are back.
async fn two_stopped_of(n: usize) {
    let mut c = LocalNetwork::start(n).await;
    let all: Vec<usize> = (0..n).collect();
    c.wait_for(&all, 3, WAIT).await;
    let (live, stopped) = all.split_at(n - 2);
    for i in stopped {
        c.stop(*i).await;
    }
    let before = c.heights();
    submit(&c, 0, 1).await;
    // Several round timeouts (1 s, 2 s) pass without a quorum.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = c.heights();
    for i in live {
        // At most a block certified before the stop may still commit.
        assert!(
            after[*i] <= before[*i] + 1,
            "before {before:?} after {after:?}"
        );
    }
    assert!(live.iter().all(|i| nonce(&c, *i) == 0));
    c.assert_agreement();
    for i in stopped {
        c.restart(*i).await;
    }
    wait_for_nonce(&c, 1).await;
    c.assert_agreement();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_four_down_stops_without_forking_and_resumes() {
    two_stopped_of(4).await;
}

/// Six validators tolerate one fault (f = 1), so a quorum is five: with two
/// stopped, nothing commits. (The old quorum, 2f + 1 = 3, let the four
/// left commit on, and any two halves of three could commit apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_validators_with_two_stopped_commit_nothing() {
    two_stopped_of(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_refused_and_the_cluster_goes_on() {
    use pb::validator_client::ValidatorClient;
    let c = LocalNetwork::start(4).await;
    c.wait_for(&[0, 1, 2, 3], 2, WAIT).await;
    let mut peer = ValidatorClient::connect(c.urls()[0].clone()).await.unwrap();
    let refused = |r: Result<tonic::Response<pb::DeliverResponse>, tonic::Status>| {
        let s = r.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        s.message().to_string()
    };
    // An empty message, a short signature, a sender outside the set.
    let empty = pb::ConsensusMessage { message: None };
    assert!(refused(peer.deliver(empty.clone()).await).contains("message"));
    let vote = |sender, signature: Vec<u8>| pb::ConsensusMessage {
        message: Some(pb::consensus_message::Message::Vote(pb::Vote {
            block_hash: vec![1; 32],
            round: 1,
            height: 1,
            sender,
            signature,
        })),
    };
    assert!(refused(peer.deliver(vote(1, vec![1; 3])).await).contains("vote.signature"));
    assert!(refused(peer.deliver(vote(99, vec![1; 64])).await).contains("99"));
    // On the long-lived stream, the first bad message ends it.
    let messages = tokio_stream::iter(vec![vote(1, vec![1; 64]), empty]);
    refused(peer.stream(messages).await);
    // Oversized and malformed requests of the other calls.
    let many = pb::ForwardTransactionsRequest {
        sender: 1,
        transactions: vec![pay(&c, 1); 1_025],
    };
    let s = peer.forward_transactions(many).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let s = peer
        .fetch_block(pb::FetchBlockRequest {
            block_hash: vec![1; 5],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let s = peer
        .fetch_block(pb::FetchBlockRequest {
            block_hash: vec![1; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::NotFound);
    let s = peer
        .sync_blocks(pb::SyncBlocksRequest {
            from_height: 0,
            to_height: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    // On the forward stream, a good batch is admitted and the first
    // malformed one ends the stream.
    let mut malformed = pay(&c, 2);
    malformed.signature = vec![1; 3];
    let batches = tokio_stream::iter(vec![
        pb::ForwardTransactionsRequest {
            sender: 1,
            transactions: vec![pay(&c, 1)],
        },
        pb::ForwardTransactionsRequest {
            sender: 1,
            transactions: vec![malformed],
        },
    ]);
    assert!(refused(peer.forward_stream(batches).await).contains("transactions[0]"));
    // A well-formed vote with a bad signature reaches the core, which drops
    // it; the validator keeps serving and the chain keeps committing (the
    // forwarded transfer too, once validator 0 leads).
    peer.deliver(vote(1, vec![1; 64])).await.unwrap();
    wait_for_nonce(&c, 1).await;
    c.assert_agreement();
    c.shutdown().await;
}
