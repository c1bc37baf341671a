//! The pacemaker: which round this validator is in, and how long to wait
//! before timing out of it. Clock-free: it returns durations; the async shell
//! owns the timers and reports `TimerFired(round)` back.
//!
//! - A QC of round r, or a TC of round r, moves the validator to round r + 1
//!   (never backwards).
//! - The round timeout is `base · 2^k`, capped at `max`, where k counts the
//!   rounds in a row that ended by timeout; a QC resets k to 0. This backs off
//!   while the network is slow or partitioned and snaps back once it heals.

use super::messages::TimeoutCertificate;

/// Largest exponent of the backoff (2^16 · base is far above any cap).
const MAX_BACKOFF_EXPONENT: u32 = 16;

/// Entering a new round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRound {
    /// The round entered.
    pub round: u64,
    /// How long to wait for it before timing out, in milliseconds.
    pub timeout_ms: u64,
}

/// Round state of one validator.
#[derive(Debug, Clone)]
pub struct Pacemaker {
    round: u64,
    base_timeout_ms: u64,
    max_timeout_ms: u64,
    consecutive_timeouts: u32,
    last_tc: Option<TimeoutCertificate>,
}

impl Pacemaker {
    /// Starts in round 1 (round 0 is genesis).
    ///
    /// # Panics
    /// If `base_timeout_ms` is 0 or above `max_timeout_ms` (config validation
    /// rules that out).
    pub fn new(base_timeout_ms: u64, max_timeout_ms: u64) -> Self {
        assert!(
            base_timeout_ms > 0 && base_timeout_ms <= max_timeout_ms,
            "timeouts must satisfy 0 < base ({base_timeout_ms}) <= max ({max_timeout_ms})"
        );
        Self {
            round: 1,
            base_timeout_ms,
            max_timeout_ms,
            consecutive_timeouts: 0,
            last_tc: None,
        }
    }

    /// The current round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The timeout of the current round, in milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        let exponent = self.consecutive_timeouts.min(MAX_BACKOFF_EXPONENT);
        self.base_timeout_ms
            .saturating_mul(1 << exponent)
            .min(self.max_timeout_ms)
    }

    /// How long after timing out of the current round to send the timeout
    /// again while the round goes on: the base timeout, however far the
    /// round's own timeout has backed off. Timeouts sent into a partition
    /// are lost; repeated at the base rate, they form a TC within about one
    /// base timeout of the heal, not one backed-off timeout (up to `max`)
    /// later. The round itself still lasts until a certificate ends it.
    pub fn repeat_ms(&self) -> u64 {
        self.base_timeout_ms
    }

    /// The TC that ended the previous round, if it ended by timeout (a leader
    /// includes it in its proposal).
    pub fn last_tc(&self) -> Option<&TimeoutCertificate> {
        self.last_tc.as_ref()
    }

    /// A QC of `qc_round` was seen; enters `qc_round + 1` if that is ahead.
    pub fn on_qc(&mut self, qc_round: u64) -> Option<NewRound> {
        if qc_round < self.round {
            return None;
        }
        self.round = qc_round.saturating_add(1);
        self.consecutive_timeouts = 0;
        self.last_tc = None;
        Some(self.entered())
    }

    /// A TC was formed or received; enters `tc.round + 1` if that is ahead.
    pub fn on_tc(&mut self, tc: TimeoutCertificate) -> Option<NewRound> {
        if tc.round < self.round {
            return None;
        }
        self.round = tc.round.saturating_add(1);
        self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
        self.last_tc = Some(tc);
        Some(self.entered())
    }

    /// Whether a timer set for `round` should make this validator time out.
    pub fn is_current(&self, round: u64) -> bool {
        round == self.round
    }

    fn entered(&self) -> NewRound {
        NewRound {
            round: self.round,
            timeout_ms: self.timeout_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tc(round: u64) -> TimeoutCertificate {
        TimeoutCertificate {
            round,
            signatures: vec![],
        }
    }

    #[test]
    fn rounds_advance_on_certificates_only_forward() {
        let mut p = Pacemaker::new(1_000, 60_000);
        assert_eq!(p.round(), 1);
        assert_eq!(
            p.on_qc(1),
            Some(NewRound {
                round: 2,
                timeout_ms: 1_000
            })
        );
        assert_eq!(p.on_qc(1), None, "a stale QC");
        assert_eq!(
            p.on_qc(5).map(|n| n.round),
            Some(6),
            "catching up jumps rounds"
        );
        assert_eq!(p.on_tc(tc(3)), None, "a stale TC");
        assert_eq!(p.on_tc(tc(6)).map(|n| n.round), Some(7));
        assert_eq!(p.last_tc().map(|t| t.round), Some(6));
        assert!(p.is_current(7) && !p.is_current(6));
    }

    #[test]
    fn timeouts_back_off_exponentially_and_reset_on_progress() {
        let mut p = Pacemaker::new(1_000, 10_000);
        let waits: Vec<u64> = (1..=6)
            .map(|r| p.on_tc(tc(r)).unwrap().timeout_ms)
            .collect();
        assert_eq!(waits, vec![2_000, 4_000, 8_000, 10_000, 10_000, 10_000]);
        assert_eq!(
            p.repeat_ms(),
            1_000,
            "a timed-out round repeats at the base rate"
        );
        assert_eq!(p.on_qc(7).unwrap().timeout_ms, 1_000);
        assert!(p.last_tc().is_none());
        // Many timeouts in a row do not overflow.
        let mut p = Pacemaker::new(u64::MAX / 2, u64::MAX);
        for r in 1..100 {
            p.on_tc(tc(r));
        }
        assert_eq!(p.timeout_ms(), u64::MAX);
    }
}
