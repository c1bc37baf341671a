//! The simulator itself: a seed fixes a run's schedule, and each broken
//! safety rule is caught within the CI batch (`make sim` runs the batch).

use chatpay_tests::sim::{self, Mutation, SimConfig};

/// Seeds of the CI batch (`make sim` runs 0..200).
const BATCH: u64 = 200;

#[test]
fn a_seed_replays_exactly_and_a_faulty_run_stays_safe() {
    // Seed 0: 4 validators, a Twins validator, crashes, splits and losses.
    let config = SimConfig::for_seed(0);
    let first = sim::run(&config);
    let second = sim::run(&config);
    for o in [&first, &second] {
        assert!(o.violations.is_empty(), "{:?}", o.violations);
        assert!(o.faults > 5, "{}", o.summary());
        assert!(o.committed > 10, "{}", o.summary());
        assert!(o.trace.len() > 100, "a trace of {} lines", o.trace.len());
    }
    assert!(!first.schedule.twins.is_empty());
    // The same schedule, and the same run to the millisecond: every fault,
    // every validator's every round and commit, in the same order.
    assert_eq!(first.schedule, second.schedule);
    if let Some(i) = (0..first.trace.len()).find(|i| first.trace.get(*i) != second.trace.get(*i)) {
        panic!(
            "the replay diverged at trace line {i}: {:?} then {:?}",
            first.trace[i],
            second.trace.get(i)
        );
    }
    assert_eq!(first.trace.len(), second.trace.len());
    assert_eq!(first.summary(), second.summary());
    // Another seed draws another schedule.
    let other = sim::run(&SimConfig::for_seed(1));
    assert_ne!(first.schedule, other.schedule);
}

/// Runs the CI batch with `mutation` until a run reports a violation.
fn caught(mutation: Mutation) -> (u64, String) {
    for seed in 0..BATCH {
        let mut config = SimConfig::for_seed(seed);
        config.mutation = Some(mutation);
        let o = sim::run(&config);
        if let Some(v) = o.violations.first() {
            return (seed, v.clone());
        }
    }
    panic!("mutation {mutation} was not caught by seeds 0..{BATCH}");
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

// Committing on a 1-chain and certificates of 2f votes are not caught by
// the batch yet (docs/testing.md, Mutations): the schedules rarely strand a
// certified block or split the validators evenly for long enough.
