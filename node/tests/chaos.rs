//! Real `chatpay-node` processes with RocksDB on disk, under a steady load
//! of transfers, killed (-9), paused (SIGSTOP) and restarted. Every
//! scenario ends with the same checks: the same block hash and state digest
//! on every validator at every height, every submitted transfer committed
//! exactly once, and no money made or lost.
//!
//! `CHAOS_CYCLES=N` sets the kill/restart cycles (default 20);
//! `CHAOS_SEED=S` repeats a run's choice of victims and pauses.

mod common;

use common::{Load, Network, Rng};
use std::time::Duration;

/// One scenario at a time: four validators per scenario already share two
/// cores. (nextest runs each test in its own process; `.config/nextest.toml`
/// puts these in a group of one.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_of_a_random_validator() {
    let _serial = SERIAL.lock().await;
    let cycles: u64 = std::env::var("CHAOS_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng::from_env();
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    let load = Load::start(&net, 30);
    for cycle in 0..cycles {
        let victim = rng.below(4) as usize;
        net.kill(victim);
        let live: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
        let h = net.height(live[0]).await;
        // The other three go on while it is down.
        net.wait_for_height(&live, h + 1).await;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
        net.start(victim);
        net.wait_for_height(&[victim], h).await;
        eprintln!("cycle {cycle}: killed and restarted validator {victim} at height {h}");
    }
    let sent = load.stop().await;
    let checked = net.settle_and_verify(&sent).await;
    eprintln!("{cycles} kill -9 cycles, {checked} transfers checked");
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_routed_around_and_catches_up() {
    let _serial = SERIAL.lock().await;
    let net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    let load = Load::start(&net, 30);
    // The next round's round-robin leader (it leads if that round follows
    // a timeout; otherwise leader reputation may name another), paused for
    // three base round timeouts.
    let leader = ((net.last_round(0).await + 1) % 4) as usize;
    net.signal(leader, "STOP");
    let live: Vec<usize> = (0..4).filter(|i| *i != leader).collect();
    let h = net.height(live[0]).await;
    net.wait_for_height(&live, h + 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    net.signal(leader, "CONT");
    let top = net.height(live[0]).await;
    net.wait_for_height(&[leader], top).await;
    let sent = load.stop().await;
    net.settle_and_verify(&sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_killed_mid_load_resume_from_disk() {
    let _serial = SERIAL.lock().await;
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    let load = Load::start(&net, 30);
    net.wait_for_height(&[0], 10).await;
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(net.height(i).await);
        }
        v
    };
    for i in 0..4 {
        net.kill(i);
    }
    for i in 0..4 {
        net.start(i);
    }
    // Nothing committed is lost, and the chain moves again.
    for (i, h) in before.iter().enumerate() {
        net.wait_for_height(&[i], h + 3).await;
    }
    let sent = load.stop().await;
    net.settle_and_verify(&sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_validator_catches_up_from_its_peers() {
    let _serial = SERIAL.lock().await;
    let mut net = Network::create().await;
    net.wait_for_height(&[0, 1, 2, 3], 2).await;
    let load = Load::start(&net, 30);
    net.wait_for_height(&[0], 30).await;
    net.kill(2);
    // Chain data deleted, keys and safety record kept.
    let status = std::process::Command::new(common::BIN)
        .args(["unsafe-reset", "--home"])
        .arg(net.home(2))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    net.start(2);
    let top = net.height(0).await;
    net.wait_for_height(&[2], top).await;
    let sent = load.stop().await;
    net.settle_and_verify(&sent).await;
}
