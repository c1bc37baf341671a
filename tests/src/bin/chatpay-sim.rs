//! Runs seeded simulations of whole clusters (see `chatpay_tests::sim`).
//!
//! ```text
//! chatpay-sim                      # regressions + seeds 0..200 (make test: --seeds 100)
//! chatpay-sim --seeds 5000         # a longer batch
//! chatpay-sim --seed 17            # replay one run, printing its trace
//! chatpay-sim --mutation vote-twice   # a broken rule: expect a violation
//! ```
//! Exits with 1 if any run broke an invariant (or, with `--mutation`, if none
//! did).

use chatpay_tests::sim::{self, Mutation, Report, SimConfig};
use clap::Parser;
use std::sync::Mutex;
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
    /// Runs at once (default: the machine's cores), each in a process of
    /// its own.
    #[arg(long)]
    jobs: Option<usize>,
    /// With --seed: print only a one-line JSON report (how a batch runs
    /// each seed).
    #[arg(long, requires = "seed")]
    report: bool,
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

fn print_report(r: &Report, schedule: bool) {
    println!("{} ({:.1} s)", r.summary, r.wall_ms as f64 / 1000.0);
    if schedule && !r.schedule.is_empty() {
        println!("{}", r.schedule);
    }
    for v in r.violations.iter().skip(1) {
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
        config.verbose = !args.report;
        config.mutation = args.mutation;
        if let Some(v) = args.validators {
            config.validators = v;
        }
        if args.report {
            // One line for the batch that started this process.
            println!("{}", Report::of(&sim::run(&config)).to_json());
            return;
        }
        println!("seed {seed}, {} validators; schedule:", config.validators);
        let o = sim::run(&config);
        println!("{}", o.summary());
        println!("{}", o.schedule);
        for v in o.violations.iter().skip(1) {
            println!("  also: {v}");
        }
        println!("{:.1} s of wall time", o.wall_ms as f64 / 1000.0);
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
    let started = Instant::now();
    println!(
        "{} regression seeds + seeds {}..{}, {jobs} at a time{}",
        regressions,
        args.first,
        args.first + args.seeds,
        args.mutation
            .map_or(String::new(), |m| format!(", mutation {m}"))
    );
    let print = Mutex::new(());
    let exe = std::env::current_exe().expect("the path of this program");
    let stop_at_violation = args.mutation.is_some();
    let outcomes = sim::run_batch(&exe, &seeds, jobs, args.mutation, stop_at_violation, |r| {
        let _one_at_a_time = print.lock().expect("print");
        print_report(r, !r.violations.is_empty() || args.mutation.is_none());
    });
    let violations: Vec<&Report> = outcomes
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
