//! The rollout's decisions: a pure function of the figures observed and of the time, which the
//! caller passes in (time since the rollout started), so every path (advance, hold, roll back,
//! the no-data timeout) is unit-tested without sleeping.
//!
//! Rules, in order, for each observation:
//! - the in-proxy guard tripped since the rollout started: roll back at once;
//! - no data (source unreachable, no series): hold; roll back once nothing was read for
//!   `no_data_timeout`; never advance;
//! - before the step's interval has passed: wait (a progress line);
//! - at each evaluation (every `interval` from the step's start), on the step's window:
//!   fewer than `min_requests` requests: hold; an error rate above `max_error_rate` or a p99
//!   above `max_p99_ms`: roll back; no latency figure: hold; else advance (promote after the
//!   last step);
//! - a step held for `max_hold` rolls back: a rollout never waits forever.

use std::fmt;
use std::time::Duration;

/// Thresholds and pacing of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The canary's weight at each step, in percent, rising.
    pub steps: Vec<u32>,
    /// How long each step runs before it is judged, and between judgements of a held step.
    pub interval: Duration,
    /// Largest error rate (5xx / requests, 0..=1) that still advances.
    pub max_error_rate: f64,
    /// Largest p99 latency in ms that still advances.
    pub max_p99_ms: f64,
    /// Requests the canary must have served in a step's window before it is judged.
    pub min_requests: u64,
    /// Time without any figures after which the rollout rolls back.
    pub no_data_timeout: Duration,
    /// Time a step may be held (too little traffic, no data, no latency) before rolling back.
    pub max_hold: Duration,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("steps: {0}")]
    Steps(String),
    #[error("{0}: {1}")]
    Field(&'static str, &'static str),
}

// === impl Policy ===

impl Policy {
    /// Checks the policy; the engine only runs valid ones.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let steps = |s: &str| PolicyError::Steps(s.to_owned());
        if self.steps.is_empty() {
            return Err(steps("must name at least one weight"));
        }
        if self.steps.iter().any(|w| *w == 0 || *w > 100) {
            return Err(steps("each weight must be 1 to 100"));
        }
        if self.steps.windows(2).any(|p| p.first() >= p.get(1)) {
            return Err(steps("weights must rise from step to step"));
        }
        if self.interval.is_zero() {
            return Err(PolicyError::Field("interval", "must be above zero"));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(PolicyError::Field("max-error-rate", "must be 0 to 1"));
        }
        if !(self.max_p99_ms.is_finite() && self.max_p99_ms > 0.0) {
            return Err(PolicyError::Field("max-p99-ms", "must be above zero"));
        }
        if self.min_requests == 0 {
            return Err(PolicyError::Field("min-requests", "must be at least 1"));
        }
        if self.no_data_timeout.is_zero() {
            return Err(PolicyError::Field("no-data-timeout", "must be above zero"));
        }
        if self.max_hold < self.interval {
            return Err(PolicyError::Field(
                "max-hold",
                "must be at least the interval",
            ));
        }
        Ok(())
    }
}

/// What a metrics source saw for the canary.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Requests the canary served in the step's window.
    pub requests: f64,
    /// Of those, answered with a 5xx.
    pub errors: f64,
    /// p99 latency in the window, ms; `None` without samples.
    pub p99_ms: Option<f64>,
    /// Times the in-proxy guard tripped since the rollout started.
    pub guard_trips: f64,
}

// === impl Figures ===

impl Figures {
    /// 5xx / requests; 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }
}

/// One reading of a metrics source.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Seen(Figures),
    /// The source could not be read, or had no series for the canary: why.
    Missing(String),
}

/// Why a step is held.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldReason {
    NoData(String),
    LowTraffic,
    NoLatency,
}

/// Why a rollout rolls back.
#[derive(Debug, Clone, PartialEq)]
pub enum RollbackReason {
    Guard,
    ErrorRate,
    Latency,
    /// Nothing read for `no_data_timeout`; the last reason.
    NoData(String),
    /// Held for `max_hold`.
    HeldTooLong(HoldReason),
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not time to judge yet.
    Wait,
    Hold(HoldReason),
    /// Go to the next step, at this weight.
    Advance(u32),
    /// The last step passed: the canary takes all traffic.
    Promote,
    Rollback(RollbackReason),
}

// === impl Verdict ===

impl Verdict {
    /// Whether the rollout ends with this verdict.
    pub fn is_final(&self) -> bool {
        matches!(self, Verdict::Promote | Verdict::Rollback(_))
    }
}

/// One decision, with what it was based on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Index of the step judged.
    pub step: usize,
    /// The canary's weight during that step.
    pub weight: u32,
    pub verdict: Verdict,
    /// The figures judged (`None` when missing).
    pub figures: Option<Figures>,
    /// Time the step had run.
    pub in_step: Duration,
    /// Time since the last figures were read.
    pub without_data: Duration,
}

/// The decision state of one rollout.
#[derive(Debug, Clone)]
pub struct Engine {
    policy: Policy,
    step: usize,
    step_started: Duration,
    next_judgement: Duration,
    last_data: Duration,
    done: bool,
}

// === impl Engine ===

impl Engine {
    /// Starts at step 0, whose weight the caller applies at `now`.
    pub fn new(policy: Policy, now: Duration) -> Result<Self, PolicyError> {
        policy.validate()?;
        Ok(Self {
            next_judgement: now + policy.interval,
            policy,
            step: 0,
            step_started: now,
            last_data: now,
            done: false,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// Index of the current step.
    pub fn step(&self) -> usize {
        self.step
    }
    /// The canary's weight at the current step.
    pub fn weight(&self) -> u32 {
        self.policy.steps.get(self.step).copied().unwrap_or(0)
    }
    /// When the current step started.
    pub fn step_started(&self) -> Duration {
        self.step_started
    }
    /// When the current step is next judged.
    pub fn next_judgement(&self) -> Duration {
        self.next_judgement
    }
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds one observation made at `now`. An `Advance` moves to the next step, which
    /// starts at `now` (the caller applies its weight at once).
    pub fn observe(&mut self, now: Duration, obs: &Observation) -> Decision {
        let figures = match obs {
            Observation::Seen(f) => Some(*f),
            Observation::Missing(_) => None,
        };
        if figures.is_some() {
            self.last_data = now;
        }
        let verdict = if self.done {
            Verdict::Wait
        } else {
            self.verdict(now, obs)
        };
        let decision = Decision {
            step: self.step,
            weight: self.weight(),
            verdict,
            figures,
            in_step: now.saturating_sub(self.step_started),
            without_data: now.saturating_sub(self.last_data),
        };
        match &decision.verdict {
            Verdict::Advance(_) => {
                self.step += 1;
                self.step_started = now;
                self.next_judgement = now + self.policy.interval;
            }
            Verdict::Hold(_) => self.next_judgement = now + self.policy.interval,
            Verdict::Promote | Verdict::Rollback(_) => self.done = true,
            Verdict::Wait => {}
        }
        decision
    }

    fn verdict(&self, now: Duration, obs: &Observation) -> Verdict {
        let due = now >= self.next_judgement;
        let held_too_long = now.saturating_sub(self.step_started) >= self.policy.max_hold;
        let hold = |why: HoldReason| {
            if held_too_long {
                Verdict::Rollback(RollbackReason::HeldTooLong(why))
            } else {
                Verdict::Hold(why)
            }
        };
        let f = match obs {
            Observation::Missing(why) => {
                return if now.saturating_sub(self.last_data) >= self.policy.no_data_timeout {
                    Verdict::Rollback(RollbackReason::NoData(why.clone()))
                } else if due {
                    hold(HoldReason::NoData(why.clone()))
                } else {
                    Verdict::Wait
                };
            }
            Observation::Seen(f) => f,
        };
        if f.guard_trips > 0.0 {
            return Verdict::Rollback(RollbackReason::Guard);
        }
        if !due {
            return Verdict::Wait;
        }
        // A NaN count holds rather than passes.
        if f.requests.is_nan() || f.requests < self.policy.min_requests as f64 {
            return hold(HoldReason::LowTraffic);
        }
        if f.error_rate() > self.policy.max_error_rate {
            return Verdict::Rollback(RollbackReason::ErrorRate);
        }
        match f.p99_ms {
            Some(p) if p > self.policy.max_p99_ms => Verdict::Rollback(RollbackReason::Latency),
            Some(p) if p.is_finite() => match self.policy.steps.get(self.step + 1) {
                Some(w) => Verdict::Advance(*w),
                None => Verdict::Promote,
            },
            _ => hold(HoldReason::NoLatency),
        }
    }
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::NoData(why) => write!(f, "no data ({why})"),
            HoldReason::LowTraffic => f.write_str("too little traffic"),
            HoldReason::NoLatency => f.write_str("no latency samples"),
        }
    }
}

impl fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackReason::Guard => f.write_str("the in-proxy guard tripped"),
            RollbackReason::ErrorRate => f.write_str("error rate above the maximum"),
            RollbackReason::Latency => f.write_str("p99 latency above the maximum"),
            RollbackReason::NoData(why) => write!(f, "no data for too long ({why})"),
            RollbackReason::HeldTooLong(why) => write!(f, "held too long ({why})"),
        }
    }
}

#[cfg(test)]
mod tests;
