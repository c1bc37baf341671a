//! Runs seeded simulations of whole clusters (see `chatpay_tests::sim`).
//!
//! ```text
//! chatpay-sim                      # the CI batch: regressions + seeds 0..200
//! chatpay-sim --seeds 5000         # a longer batch
//! chatpay-sim --seed 17            # replay one run, printing its trace
//! chatpay-sim --mutation vote-twice   # a broken rule: expect a violation
//! ```
//! Exits with 1 if any run broke an invariant (or, with `--mutation`, if none
//! did).

use chatpay_tests::sim::{self, Mutation, Outcome, SimConfig};
use clap::Parser;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Seeded simulation of chatpay clusters under faults")]
struct Args {
    /// Replay this one seed, printing its schedule and trace.
    #[arg(long, env = "SEED")]
    seed: Option<u64>,
    /// Seeds in the batch (from --first).
    #[arg(long, env = "SEEDS", default_value_t = 200)]
    seeds: u64,
    /// First seed of the batch.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Validators for --seed (the batch uses 7 for every fourth seed, else 4).
    #[arg(long)]
    validators: Option<usize>,
    /// Break a safety rule: vote-twice, skip-safety-fsync, one-chain-commit,
    /// weak-quorum. The batch then stops at the first violation and succeeds
    /// only if there is one.
    #[arg(long)]
    mutation: Option<Mutation>,
    /// File of seeds that once failed, run before the batch.
    #[arg(long, default_value = "tests/sim-regressions.txt")]
    regressions: String,
    /// Runs at once (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
}

fn regression_seeds(path: &str) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn print_outcome(o: &Outcome, schedule: bool) {
    println!("{}", o.summary());
    if schedule {
        println!("{}", o.schedule);
    }
    for v in o.violations.iter().skip(1) {
        println!("  also: {v}");
    }
}

/// Log timestamps in simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let ms = turmoil::sim_elapsed().map_or(0, |d| d.as_millis());
        write!(w, "{ms:>6}")
    }
}

fn main() {
    let args = Args::parse();
    // RUST_LOG=debug shows what the validators log, stamped with simulated
    // time (a trace must not depend on the machine).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(SimTime)
            .with_ansi(false)
            .init();
    }
    if let Some(seed) = args.seed {
        let mut config = SimConfig::for_seed(seed);
        config.verbose = true;
        config.mutation = args.mutation;
        if let Some(v) = args.validators {
            config.validators = v;
        }
        println!("seed {seed}, {} validators; schedule:", config.validators);
        let started = Instant::now();
        let o = sim::run(&config);
        print_outcome(&o, true);
        println!("{:.1} s of wall time", started.elapsed().as_secs_f64());
        let ok = o.violations.is_empty() == args.mutation.is_none();
        std::process::exit(i32::from(!ok));
    }

    let mut seeds = regression_seeds(&args.regressions);
    let regressions = seeds.len();
    seeds.extend(args.first..args.first + args.seeds);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let outcomes: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let started = Instant::now();
    println!(
        "{} regression seeds + seeds {}..{}, {jobs} at a time{}",
        regressions,
        args.first,
        args.first + args.seeds,
        args.mutation
            .map_or(String::new(), |m| format!(", mutation {m}"))
    );
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { return };
                    let mut config = SimConfig::for_seed(seed);
                    config.mutation = args.mutation;
                    let o = sim::run(&config);
                    print_outcome(&o, !o.violations.is_empty() || args.mutation.is_none());
                    if args.mutation.is_some() && !o.violations.is_empty() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    outcomes.lock().expect("outcomes").push(o);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("outcomes");
    let violations: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.violations.is_empty())
        .collect();
    let rounds: u64 = outcomes.iter().map(|o| o.rounds).sum();
    let faults: usize = outcomes.iter().map(|o| o.faults).sum();
    let simulated: u64 = outcomes.iter().map(|o| o.simulated_ms).sum();
    println!(
        "{} seeds, {rounds} rounds simulated, {faults} faults injected, {} violations ({:.0} s simulated in {:.0} s)",
        outcomes.len(),
        violations.len(),
        simulated as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    for o in &violations {
        println!(
            "  seed {} broke: {}  (replay: SEED={} make sim)",
            o.seed, o.violations[0], o.seed
        );
    }
    let ok = match args.mutation {
        None => violations.is_empty(),
        Some(m) => {
            if violations.is_empty() {
                println!("mutation {m} was NOT caught");
            } else {
                println!("mutation {m} caught");
            }
            !violations.is_empty()
        }
    };
    std::process::exit(i32::from(!ok));
}
