//! The simulator itself: a seed replays exactly, and each broken safety
//! rule is caught within the CI batch (`make sim` runs the batch).

use chatpay_node::consensus::sync::{SYNC_RECEIVE_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES};
use chatpay_tests::sim::{self, Mutation, Report};
use std::path::Path;
use std::process::Command;

/// Seeds of the CI batch (`make sim` runs 0..200).
const BATCH: u64 = 200;

fn simulator() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chatpay-sim"))
}

/// What `SEED=seed make sim` prints, but the wall time.
fn replay(seed: u64) -> Vec<String> {
    let out = Command::new(simulator())
        .args(["--seed", &seed.to_string()])
        .output()
        .expect("the simulator runs");
    assert!(out.status.success(), "seed {seed}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("text")
        .lines()
        .filter(|l| !l.ends_with("of wall time"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_seed_replays_exactly_and_a_faulty_run_stays_safe() {
    // Seed 56: 4 validators, a Twins validator that also floods proposals
    // for its future rounds and sends certificates of another network, a
    // wipe, crashes and splits, as the batch runs it.
    let reports = sim::run_batch(simulator(), &[56, 57], 2, None, false, |_| {});
    let report = |seed| -> &Report { reports.iter().find(|r| r.seed == seed).unwrap() };
    let first = report(56);
    assert!(first.violations.is_empty(), "{:?}", first.violations);
    assert!(first.faults > 5, "{}", first.summary);
    assert!(first.rounds > 50, "{}", first.summary);
    assert!(first.schedule.contains("twins"), "{}", first.schedule);
    assert!(first.schedule.contains("wipe"), "{}", first.schedule);
    assert!(
        first.schedule.contains("floods proposals"),
        "{}",
        first.schedule
    );
    assert!(
        first.schedule.contains("another network"),
        "{}",
        first.schedule
    );
    // Another seed draws another schedule.
    assert_ne!(first.schedule, report(57).schedule);
    // The replay: the same schedule, and the same run to the millisecond
    // (every fault, every validator's every round and commit, in order),
    // twice, and the same outcome as in the batch.
    let once = replay(56);
    let again = replay(56);
    assert!(once.len() > 100, "a trace of {} lines", once.len());
    if let Some(i) = (0..once.len()).find(|i| once.get(*i) != again.get(*i)) {
        panic!(
            "the replay diverged at line {i}: {:?} then {:?}",
            once[i],
            again.get(i)
        );
    }
    assert_eq!(once.len(), again.len());
    assert!(once.contains(&first.summary), "{}", first.summary);
}

/// Runs the CI batch with `mutation` (two seeds at a time, as `make sim`)
/// until a run reports a violation; returns the lowest seed that did.
fn caught(mutation: Mutation) -> (u64, String) {
    let seeds: Vec<u64> = (0..BATCH).collect();
    let reports = sim::run_batch(simulator(), &seeds, 2, Some(mutation), true, |_| {});
    reports
        .iter()
        .filter_map(|r| r.violations.first().map(|v| (r.seed, v.clone())))
        .min()
        .unwrap_or_else(|| panic!("mutation {mutation} was not caught by seeds 0..{BATCH}"))
}

#[test]
fn voting_twice_in_a_round_is_caught() {
    let (seed, v) = caught(Mutation::VoteTwice);
    println!("vote-twice caught by seed {seed}: {v}");
}

#[test]
fn skipping_the_fsync_of_safety_data_is_caught() {
    let (seed, v) = caught(Mutation::SkipSafetyFsync);
    println!("skip-safety-fsync caught by seed {seed}: {v}");
}

#[test]
fn committing_on_a_one_chain_is_caught() {
    let (seed, v) = caught(Mutation::OneChainCommit);
    println!("one-chain-commit caught by seed {seed}: {v}");
}

#[test]
fn certificates_of_two_f_votes_are_caught() {
    let (seed, v) = caught(Mutation::WeakQuorum);
    println!("weak-quorum caught by seed {seed}: {v}");
}

#[test]
fn the_old_quorum_formula_is_caught() {
    let (seed, v) = caught(Mutation::OldQuorum);
    println!("old-quorum caught by seed {seed}: {v}");
}

#[test]
fn a_leader_burning_payments_with_invalid_transfers_is_caught() {
    // Validators that execute a transfer invalid at its position as a
    // failed receipt (the rule before invalid blocks) vote for a censoring
    // leader's block: the payment it holds commits as failed, its id spent.
    let seeds: Vec<u64> = (0..BATCH).collect();
    let mutation = Mutation::AcceptInvalidTransfers;
    let reports = sim::run_batch(simulator(), &seeds, 2, Some(mutation), true, |_| {});
    let burned = reports.iter().find(|r| {
        r.schedule.contains("censors")
            && r.violations
                .iter()
                .any(|v| v.contains("not the success its signer meant"))
    });
    let burned = burned.unwrap_or_else(|| panic!("{mutation} was not caught by seeds 0..{BATCH}"));
    println!(
        "{mutation} caught by seed {}: {:?}",
        burned.seed, burned.violations
    );
}

#[test]
fn a_leader_including_expired_transfers_is_caught() {
    // Validators that execute blocks as if transfers never expired vote
    // for a block holding one after its expiry (users sign one payment in
    // four to expire within seconds): the checker reads the expiry of
    // every committed transfer against its block's timestamp.
    let (seed, v) = caught(Mutation::IgnoreExpiry);
    assert!(v.contains("after its expiry"), "seed {seed}: {v}");
    println!("ignore-expiry caught by seed {seed}: {v}");
}

#[test]
fn a_sync_response_bloater_is_read_no_further_than_the_cap() {
    // Seed 16: validator 1 answers sync requests with the real blocks under
    // broken certificates, padded with junk blocks to 40 MiB, while
    // validator 2, wiped, catches up from genesis and asks it. The
    // receiver stops reading at its cap, finds no provable commit, asks
    // another validator, and catches up; with the cap removed the run
    // fails (a validator holds 43 MB of one response).
    let reports = sim::run_batch(simulator(), &[16], 1, None, false, |_| {});
    let r = &reports[0];
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.schedule.contains("bloats its sync"), "{}", r.schedule);
    let read = usize::try_from(r.sync_response_bytes).unwrap();
    assert!(
        read > SYNC_RESPONSE_MAX_BYTES && read <= SYNC_RECEIVE_MAX_BYTES,
        "read {read} bytes of one sync response: {}",
        r.summary
    );
}
