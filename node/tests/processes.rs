//! Four `chatpay-node start` processes on 127.0.0.1, written by
//! `chatpay-node testnet`: transfers submitted to any validator commit;
//! kill -9 of one leaves the others committing and, restarted, it catches up
//! to the same blocks and state digests; with two killed nothing commits and
//! nothing forks, and the chain resumes when they return.

mod common;

use common::{Network, home_has_data};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_validators_survive_kill_9_and_catch_up() {
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    for nonce in 1..=6 {
        net.pay((nonce % 4) as usize, nonce).await;
    }
    net.wait_for_nonce(&[0, 1, 2, 3], 6).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;

    // kill -9 one: the other three keep committing.
    net.kill(3);
    assert!(home_has_data(&net.home(3)));
    let h = net.height(0).await;
    for nonce in 7..=9 {
        net.pay((nonce % 3) as usize, nonce).await;
    }
    net.wait_for_nonce(&[0, 1, 2], 9).await;
    net.wait_for_height(&[0, 1, 2], h + 4).await;

    // Restarted over its RocksDB, it catches up to the same chain.
    net.start(3);
    let top = net.height(0).await;
    net.wait_for_height(&[3], top + 2).await;
    assert_eq!(net.nonce(3).await, 9);
    net.assert_agreement(&[0, 1, 2, 3]).await;

    // kill -9 two: no quorum, nothing commits, nothing forks.
    net.kill(2);
    net.kill(3);
    // Votes 2 and 3 cast before dying can still certify a block or two
    // (how many depends on where each survivor's view stood at the kill), so
    // a first window of 4 s (round timeouts of 1 s, then 2 s) lets those
    // commit; during the next 4 s, with only two of four voting, nothing may
    // commit.
    let before = net.height(0).await.max(net.height(1).await);
    net.pay(0, 10).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let settled = [net.height(0).await, net.height(1).await];
    assert!(
        settled.iter().all(|h| *h <= before + 3),
        "survivors went from {before} to {settled:?} right after losing the quorum"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, h) in settled.iter().enumerate() {
        let after = net.height(i).await;
        assert_eq!(after, *h, "validator {i} committed without a quorum");
    }
    assert_eq!(net.nonce(0).await, 9);
    net.assert_agreement(&[0, 1]).await;

    // Both back: the chain resumes and the pending transfer commits.
    net.start(2);
    net.start(3);
    net.wait_for_nonce(&[0, 1, 2, 3], 10).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_transfer() {
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    // Transfers go to validator 3 only, as fast as it acknowledges them;
    // SIGTERM reaches it in the middle.
    let mut acknowledged = 0u64;
    let mut terminated = false;
    for nonce in 1..=60u64 {
        if nonce == 25 {
            net.signal(3, "TERM");
            terminated = true;
        }
        match net.try_pay(3, nonce).await {
            Ok(()) => acknowledged = nonce,
            Err(_) if terminated => break,
            Err(e) => panic!("refused before SIGTERM: {e}"),
        }
    }
    assert!(acknowledged >= 24, "acknowledged {acknowledged}");
    // It exits cleanly, within the bound.
    let mut child = net.children[3].take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}: {}", net.log(3));
    assert!(
        net.log(3).contains("handed pending transactions"),
        "{}",
        net.log(3)
    );
    // Every acknowledged transfer commits on the other three.
    net.wait_for_nonce(&[0, 1, 2], acknowledged).await;
}
