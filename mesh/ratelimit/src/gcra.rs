//! GCRA (generic cell rate algorithm): a token bucket whose whole state is one number, the
//! theoretical arrival time (TAT), so one compare-and-swap updates it.
//!
//! With emission interval `T = per / requests` (rounded up, so the rate is never above the
//! configured one) and tolerance `burst * T`, a request at `now` is admitted when
//! `max(tat, now) + T - now <= burst * T`, and then `tat` becomes `max(tat, now) + T`. Over any
//! time span `d` this admits at most `burst + d / T` requests.

/// Largest tolerance accepted (100 years in nanoseconds), so `now + tolerance` never overflows.
pub const MAX_TOLERANCE_NS: u64 = 3_155_760_000_000_000_000;

/// A compiled limit, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    interval: u64,
    tolerance: u64,
    burst: u64,
}

/// What a bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted: store `new_tat`. `remaining` more requests would be admitted right now; the
    /// bucket is full again after `full_in_ns`.
    Allow {
        new_tat: u64,
        remaining: u64,
        full_in_ns: u64,
    },
    /// Refused: nothing to store; a request would be admitted after `retry_in_ns`.
    Deny { retry_in_ns: u64 },
}

// === impl Limit ===

impl Limit {
    /// `requests` per `per_ns` with bursts of `burst`; `None` when the rate is above one
    /// request per nanosecond or the tolerance exceeds [`MAX_TOLERANCE_NS`].
    pub fn new(requests: u64, per_ns: u64, burst: u64) -> Option<Self> {
        if requests == 0 || burst == 0 || requests > per_ns {
            return None;
        }
        let interval = per_ns.div_ceil(requests);
        let tolerance = burst
            .checked_mul(interval)
            .filter(|t| *t <= MAX_TOLERANCE_NS)?;
        Some(Self {
            interval,
            tolerance,
            burst,
        })
    }

    /// Emission interval `T` in nanoseconds.
    pub fn interval_ns(&self) -> u64 {
        self.interval
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Tolerance `burst * T` in nanoseconds: how far ahead of now the TAT may run.
    pub fn tolerance_ns(&self) -> u64 {
        self.tolerance
    }

    /// Decides one request at `now` against a bucket whose TAT is `tat` (0 = never used).
    pub fn check(&self, tat: u64, now: u64) -> Outcome {
        let new_tat = tat.max(now).saturating_add(self.interval);
        let ahead = new_tat.saturating_sub(now);
        if ahead > self.tolerance {
            Outcome::Deny {
                retry_in_ns: ahead - self.tolerance,
            }
        } else {
            Outcome::Allow {
                new_tat,
                remaining: (self.tolerance - ahead) / self.interval,
                full_in_ns: ahead,
            }
        }
    }
}

#[cfg(test)]
mod tests;
