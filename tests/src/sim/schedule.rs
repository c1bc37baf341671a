//! Fault schedules drawn from a seed.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::fmt;

/// When the first fault may strike (ms of simulated time).
pub const WARMUP_MS: u64 = 1_000;

/// One fault, or its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No traffic between the two groups, either way.
    Split(Vec<usize>, Vec<usize>),
    /// Cut the validator leading the current round off from all others.
    IsolateLeader,
    /// Mute the validator leading the current round: it still hears the
    /// votes of the round before and certifies that block, but nobody learns
    /// of the certificate. The others time out and propose again at the same
    /// height, so a validator that committed on the certificate alone forks.
    MuteLeader,
    /// Split the current round's leader and the validators after it by
    /// index (the leaders of the next certified rounds), ⌊n/2⌋ in all, from
    /// the others, for 8 s longer than other faults. They
    /// certify a block among themselves (a quorum only if quorums are too
    /// small: 2 of 4, 3 of 6) while the others, unaware, time out and
    /// certify another at the same height.
    SplitAtLeaders,
    /// Traffic from `.0` to `.1` is dropped; the other way flows.
    OneWay(usize, usize),
    /// Everything `.0` sends is dropped; it still hears the others.
    Mute(usize),
    /// Messages between `.0` and every other validator take up to `.1` ms.
    Slow(usize, u64),
    /// Messages between `.0` and every other validator are held, then
    /// delivered at once (late and bunched) when the fault ends.
    Hold(usize),
    /// The links of `.0` drop whatever is in flight with probability `.1`
    /// per mille each millisecond.
    Lossy(usize, u32),
    /// The validator stops; it restarts from its store when the fault ends.
    Crash(usize),
    /// A power cut: the validator stops and loses its unsynced writes.
    PowerCut(usize),
    /// The validator stops and its operator runs `unsafe-reset`: its chain
    /// data is deleted, its safety record (and the TC of its last round)
    /// kept. When the fault ends it
    /// starts from genesis and catches up from its peers.
    Wipe(usize),
    /// As [`Fault::Wipe`], and when the fault ends the validator joins
    /// from a state snapshot of its peers (the state at the newest height
    /// they show committed, each chunk checked against that header's
    /// root), then follows blocks from there.
    WipeToSnapshot(usize),
    /// Validator `.0` is faulty: besides running, it signs proposals for
    /// its future rounds (up to 200 ahead) and sends them to everyone.
    FloodFutureProposals(usize),
    /// Validator `.0` is faulty: it times out carrying a certificate from
    /// another network whose validators use the same keys.
    ForeignCertificates(usize),
    /// A stranger (no validator key) sends votes of the current round
    /// claiming validators' indices, and fetches of unknown blocks.
    StrangerFlood,
    /// Validator `.0` is faulty: when it leads, it includes a payment of
    /// its batch where it is invalid (a sender's later transfer before its
    /// earlier one, or with a broken signature) and executes it as a
    /// failed receipt, which would spend the payment's tx id.
    Censor(usize),
    /// Validator `.0` is faulty: it answers sync requests with the real
    /// blocks under broken certificates, padded with well-formed junk
    /// blocks past what a receiver reads.
    BloatSync(usize),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Split(a, b) => write!(f, "split {a:?} | {b:?}"),
            Fault::IsolateLeader => write!(f, "isolate the leader"),
            Fault::MuteLeader => write!(f, "mute the leader"),
            Fault::SplitAtLeaders => write!(
                f,
                "split the leader and the next by index, n/2 in all, from the rest"
            ),
            Fault::OneWay(a, b) => write!(f, "one-way cut v{a} -> v{b}"),
            Fault::Mute(v) => write!(f, "mute v{v} (what it sends is dropped)"),
            Fault::Slow(v, ms) => write!(f, "slow links of v{v} (up to {ms} ms)"),
            Fault::Hold(v) => write!(f, "hold the traffic of v{v}"),
            Fault::Lossy(v, p) => write!(f, "lossy links of v{v} ({p}‰/ms)"),
            Fault::Crash(v) => write!(f, "crash v{v}"),
            Fault::PowerCut(v) => write!(f, "power cut of v{v} (unsynced writes lost)"),
            Fault::Wipe(v) => write!(f, "wipe v{v} (chain data deleted, safety record kept)"),
            Fault::WipeToSnapshot(v) => {
                write!(f, "wipe v{v}; it rejoins from a state snapshot")
            }
            Fault::FloodFutureProposals(v) => {
                write!(f, "v{v} floods proposals for its future rounds")
            }
            Fault::ForeignCertificates(v) => {
                write!(f, "v{v} sends certificates of another network")
            }
            Fault::StrangerFlood => write!(f, "a stranger floods forged votes and fetches"),
            Fault::Censor(v) => write!(f, "v{v} censors: includes payments where invalid"),
            Fault::BloatSync(v) => write!(f, "v{v} bloats its sync responses"),
        }
    }
}

/// A fault and when it starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// Start, ms of simulated time.
    pub at_ms: u64,
    /// End (the fault is undone), ms of simulated time.
    pub until_ms: u64,
    /// The fault.
    pub fault: Fault,
}

/// Everything that goes wrong in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Faults by start time.
    pub faults: Vec<Scheduled>,
    /// The validator run twice with one key (equivocating), if any, with
    /// the honest validators each copy talks to.
    pub twins: Vec<Twin>,
    /// When every fault is undone (the final heal).
    pub heal_ms: u64,
    /// Faults come one at a time (each starts after the last ended), so
    /// the validators make progress under each; otherwise they overlap.
    pub one_at_a_time: bool,
}

/// A validator run twice with the same key; each copy sees half the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// The validator index both copies sign as.
    pub validator: usize,
    /// Honest validators whose messages go to the second copy (the rest
    /// reach the first). Both copies send to every validator.
    pub second_half: Vec<usize>,
}

impl Schedule {
    /// Draws a schedule for `n` validators whose faults start between
    /// [`WARMUP_MS`] and `heal_ms`.
    /// Attacks added since come from their own stream derived from `seed`.
    pub fn draw(rng: &mut SmallRng, seed: u64, n: usize, heal_ms: u64) -> Self {
        let f = (n - 1) / 3;
        let mut twins = Vec::new();
        // A third of the runs have f Twins validators.
        if rng.random_ratio(1, 3) {
            let mut chosen: Vec<usize> = Vec::new();
            while chosen.len() < f {
                let v = rng.random_range(0..n);
                if !chosen.contains(&v) {
                    chosen.push(v);
                }
            }
            chosen.sort_unstable();
            for validator in chosen {
                let honest: Vec<usize> = (0..n).filter(|v| *v != validator).collect();
                let second_half = honest
                    .iter()
                    .copied()
                    .filter(|_| rng.random_bool(0.5))
                    .collect();
                twins.push(Twin {
                    validator,
                    second_half,
                });
            }
        }
        // In a third of the runs faults come one at a time: the chain keeps
        // committing under each, which is where a broken commit or quorum
        // rule shows. Overlapping faults mostly stop it.
        let one_at_a_time = rng.random_ratio(1, 3);
        // The validators that attack (with their keys) are the Twins ones,
        // or one drawn here: never more than f faulty validators at once.
        let faulty: Vec<usize> = if !twins.is_empty() {
            twins.iter().map(|t: &Twin| t.validator).collect()
        } else if f > 0 {
            vec![rng.random_range(0..n)]
        } else {
            Vec::new()
        };
        let mut faults = Vec::new();
        let mut at = WARMUP_MS + rng.random_range(0..500);
        // A quarter of the runs open with a long split at the leaders, alone,
        // while the chain is healthy: where quorums are too small, both
        // sides commit.
        let mut first = rng.random_ratio(1, 4).then_some(Fault::SplitAtLeaders);
        while at < heal_ms {
            let mut length = rng.random_range(200..3_000);
            let alone = first.is_some();
            let fault = first
                .take()
                .unwrap_or_else(|| Self::draw_fault(rng, n, &faulty));
            if fault == Fault::SplitAtLeaders {
                // Long enough for the side without the certificate to time
                // out of the rounds the other side leads (1 + 2 + 4 s of
                // backed-off timeouts for n/2 = 3) and certify and commit
                // a block of its own.
                length += 8_000;
            }
            let until = (at + length).min(heal_ms);
            faults.push(Scheduled {
                at_ms: at,
                until_ms: until,
                fault,
            });
            at = if one_at_a_time || alone { until } else { at } + rng.random_range(150..1_500);
        }
        if !faulty.is_empty() {
            Self::draw_validator_attacks(seed, n, &faulty, heal_ms, &mut faults);
        }
        let twinned: Vec<usize> = twins.iter().map(|t| t.validator).collect();
        Self::draw_snapshot_join(seed, n, &twinned, heal_ms, &mut faults);
        Self {
            faults,
            twins,
            heal_ms,
            one_at_a_time,
        }
    }

    /// Attacks of a faulty validator that run beside the other faults: a
    /// censoring leader, and a sync-response bloater over a window in which
    /// another validator is wiped and restarts, so that it catches up by
    /// height range while the bloater serves. They come from a stream of
    /// their own, so the schedules drawn before they existed stay as they
    /// were (the regression seeds keep their faults).
    fn draw_validator_attacks(
        seed: u64,
        n: usize,
        faulty: &[usize],
        heal_ms: u64,
        faults: &mut Vec<Scheduled>,
    ) {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xa77a_c4e5);
        let attacker = faulty[rng.random_range(0..faulty.len())];
        if rng.random_ratio(1, 2) {
            let at_ms = rng.random_range(WARMUP_MS..heal_ms / 2);
            let until_ms = (at_ms + rng.random_range(2_000..8_000)).min(heal_ms);
            faults.push(Scheduled {
                at_ms,
                until_ms,
                fault: Fault::Censor(attacker),
            });
        }
        let honest: Vec<usize> = (0..n).filter(|v| !faulty.contains(v)).collect();
        if rng.random_ratio(1, 2) {
            // Late enough for the chain to be more than a fetch deep
            // (`MAX_FETCH_DEPTH` blocks) when the wiped validator restarts.
            let at_ms = rng.random_range(heal_ms * 5 / 12..heal_ms * 2 / 3);
            let until_ms = (at_ms + 4_000).min(heal_ms);
            let victim = honest[rng.random_range(0..honest.len())];
            faults.push(Scheduled {
                at_ms,
                until_ms,
                fault: Fault::BloatSync(attacker),
            });
            faults.push(Scheduled {
                at_ms: at_ms + 200,
                until_ms: at_ms + 1_200,
                fault: Fault::Wipe(victim),
            });
        }
        faults.sort_by_key(|s| s.at_ms);
    }

    /// In half the runs, a validator (not a Twins one) is wiped in the
    /// middle third of the run and rejoins from a state snapshot, while
    /// the other faults go on. From a stream of its own, like the attacks.
    fn draw_snapshot_join(
        seed: u64,
        n: usize,
        twinned: &[usize],
        heal_ms: u64,
        faults: &mut Vec<Scheduled>,
    ) {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5a9_5707);
        let candidates: Vec<usize> = (0..n).filter(|v| !twinned.contains(v)).collect();
        if candidates.is_empty() || !rng.random_ratio(1, 2) {
            return;
        }
        let at_ms = rng.random_range(heal_ms / 3..heal_ms * 2 / 3);
        let victim = candidates[rng.random_range(0..candidates.len())];
        faults.push(Scheduled {
            at_ms,
            until_ms: (at_ms + rng.random_range(500..2_000)).min(heal_ms),
            fault: Fault::WipeToSnapshot(victim),
        });
        faults.sort_by_key(|s| s.at_ms);
    }

    /// One fault; attacks that need a validator's key come from `faulty`.
    fn draw_fault(rng: &mut SmallRng, n: usize, faulty: &[usize]) -> Fault {
        let v = rng.random_range(0..n);
        let attacker = (!faulty.is_empty()).then(|| faulty[rng.random_range(0..faulty.len())]);
        let other = (v + rng.random_range(1..n)) % n;
        match rng.random_range(0..17) {
            0 => {
                // A minority/majority split, or an even one.
                let size = rng.random_range(1..=n / 2);
                let mut all: Vec<usize> = (0..n).collect();
                let mut a = Vec::new();
                while a.len() < size {
                    let i = rng.random_range(0..all.len());
                    a.push(all.remove(i));
                }
                a.sort_unstable();
                Fault::Split(a, all)
            }
            1 => Fault::IsolateLeader,
            2 => Fault::OneWay(v, other),
            3 => Fault::Slow(v, rng.random_range(20..400)),
            4 => Fault::Hold(v),
            5 => Fault::Lossy(v, rng.random_range(5..100)),
            6 | 7 => Fault::Crash(v),
            8 => Fault::PowerCut(v),
            9 => Fault::Mute(v),
            10 => Fault::MuteLeader,
            11 => Fault::Wipe(v),
            12 | 13 => Fault::SplitAtLeaders,
            14 => attacker.map_or(Fault::StrangerFlood, Fault::FloodFutureProposals),
            15 => attacker.map_or(Fault::StrangerFlood, Fault::ForeignCertificates),
            _ => Fault::StrangerFlood,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.one_at_a_time {
            writeln!(f, "  faults one at a time")?;
        }
        for t in &self.twins {
            writeln!(
                f,
                "  twins: v{} runs twice; {:?} send to the second copy",
                t.validator, t.second_half
            )?;
        }
        for s in &self.faults {
            writeln!(
                f,
                "  {:>6} ms .. {:>6} ms  {}",
                s.at_ms, s.until_ms, s.fault
            )?;
        }
        write!(f, "  {:>6} ms  final heal", self.heal_ms)
    }
}
