//! kill -9 of a validator right after it votes: restarted, it never signs a
//! conflicting vote for that round, and returns the same vote for the same
//! block.

use chatpay_node::consensus::messages::{Block, Vote};
use chatpay_node::consensus::safety::{SafetyError, SafetyRules};
use chatpay_node::storage::{RocksStore, Store};
use chatpay_proto::{BlockHeader, PublicKey, QuorumCertificate, SecretKey, sha256};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const CHILD_DIR_ENV: &str = "CHATPAY_VOTE_CRASH_DIR";
const CHILD_SALT_ENV: &str = "CHATPAY_VOTE_CRASH_SALT";

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n + 1;
    SecretKey::from_slice(&b).unwrap()
}

fn validators() -> Vec<PublicKey> {
    (0..4).map(|i| key(i).public_key().clone()).collect()
}

fn genesis_qc() -> QuorumCertificate {
    QuorumCertificate {
        block_hash: sha256(b"genesis"),
        round: 0,
        height: 0,
        signatures: vec![],
    }
}

/// A round-1 block extending genesis; different `salt`s give conflicting
/// blocks of the same round.
fn block(salt: u8) -> Block {
    let header = BlockHeader {
        genesis_hash: sha256(b"g"),
        height: 1,
        round: 1,
        parent_hash: genesis_qc().block_hash,
        proposer: 1,
        timestamp_ms: 0,
        tx_count: 0,
        tx_root: sha256(b""),
        state_root: sha256(&[salt]),
    };
    Block {
        header,
        transactions: vec![],
        justify: genesis_qc(),
    }
}

fn safety(dir: &Path) -> SafetyRules {
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir).unwrap());
    SafetyRules::new(
        key(0),
        0,
        validators(),
        sha256(b"genesis"),
        chatpay_proto::ChainBinding::genesis(sha256(b"genesis doc")),
        store,
    )
    .unwrap()
}

#[test]
#[ignore = "child process of kill_9_right_after_a_vote_never_double_votes"]
fn vote_child() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by the parent test");
    let salt: u8 = std::env::var(CHILD_SALT_ENV).unwrap().parse().unwrap();
    let vote = safety(Path::new(&dir)).vote(&block(salt), None).unwrap();
    // "Send" the vote, then wait to be killed.
    println!("voted {}", hex::encode(vote.signature.as_bytes()));
    loop {
        std::thread::park();
    }
}

/// This test binary, running only `vote_child` for block `salt` on `dir`.
fn child_command(exe: &Path, dir: &Path, salt: u8) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "vote_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_DIR_ENV, dir)
    .env(CHILD_SALT_ENV, salt.to_string());
    cmd
}

#[test]
fn kill_9_right_after_a_vote_never_double_votes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = child_command(&exe, dir.path(), 1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sent = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // libtest prints "test vote_child ... " before the child's own output.
        if let Some((_, sig)) = line.unwrap().split_once("voted ") {
            sent = Some(sig.trim().to_owned());
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL right after the vote left the process
    child.wait().unwrap();
    let sent = sent.expect("the child voted");

    // Restarted: a conflicting block of the same round is refused, also by a
    // second child process.
    let mut sr = safety(dir.path());
    assert!(matches!(
        sr.vote(&block(2), None),
        Err(SafetyError::RoundNotNew { round: 1, .. })
    ));
    let again: Vote = sr.vote(&block(1), None).unwrap();
    assert_eq!(
        hex::encode(again.signature.as_bytes()),
        sent,
        "the stored vote, not a new one"
    );
    drop(sr);
    let output = child_command(&exe, dir.path(), 3).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a conflicting vote must fail");
    assert!(
        !stdout.contains("voted "),
        "no conflicting vote was printed: {stdout}"
    );
}
