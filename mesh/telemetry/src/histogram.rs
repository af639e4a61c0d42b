//! Histogram units and Envoy's bucketing.
//!
//! The filter records raw samples (milliseconds, bytes) and Envoy buckets them itself. Envoy
//! keeps samples in a log-linear histogram (circllhist): an integer sample lands in a bin of
//! two significant digits (`5` in `[5, 5.1)`, `87` in `[87, 88)`, `1234` in `[1200, 1300)`,
//! `0` in its own bin). What Envoy 1.40 shows, checked against the real Envoy:
//! - `_bucket{le}` counts the samples whose bin starts at or below `le` (so `5` counts in
//!   `le="5"`, and `1016` in `le="1000"`, since its bin starts at 1000);
//! - `_count` is exact;
//! - `_sum` adds, per sample, the harmonic mean `2ab/(a+b)` of its bin's edges `[a, b)`
//!   (`269` counts as `264.905...`).
//!
//! [`EnvoyHistogram`] reproduces that, so tests can predict what Envoy shows and hosts without
//! native histograms can bucket the same way.

use std::collections::BTreeMap;

/// Envoy's default bucket bounds (milliseconds), also Istio's for request duration.
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Bounds for the byte histograms, powers of ten up to 100 MB (the bootstrap's
/// `histogram_bucket_settings` sets them; Envoy's default bounds suit durations only).
pub const SIZE_BUCKETS: [f64; 9] = [
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
];

/// Whole milliseconds in `nanos`, rounded down as Istio does.
pub const fn nanos_to_millis(nanos: u64) -> u64 {
    nanos / 1_000_000
}

/// The bin of an integer sample: value `mantissa * 10^exp`, `mantissa` in `10..=99` (or 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bin {
    exp: i8,
    mantissa: u8,
}

impl Bin {
    pub fn of(sample: u64) -> Self {
        if sample == 0 {
            return Self {
                exp: 0,
                mantissa: 0,
            };
        }
        let (mut v, mut exp) = (sample, 0i8);
        while v >= 100 {
            v /= 10;
            exp += 1;
        }
        if v < 10 {
            v *= 10;
            exp -= 1;
        }
        Self {
            exp,
            mantissa: u8::try_from(v).unwrap_or(99),
        }
    }

    pub fn lower(self) -> f64 {
        f64::from(self.mantissa) * 10f64.powi(i32::from(self.exp))
    }

    pub fn width(self) -> f64 {
        if self.mantissa == 0 {
            0.0
        } else {
            10f64.powi(i32::from(self.exp))
        }
    }

    pub fn upper(self) -> f64 {
        self.lower() + self.width()
    }

    /// What one sample of this bin adds to `_sum`: the harmonic mean of the edges.
    pub fn representative(self) -> f64 {
        let (a, b) = (self.lower(), self.upper());
        if a + b == 0.0 {
            0.0
        } else {
            2.0 * a * b / (a + b)
        }
    }
}

/// Samples binned the way Envoy bins them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvoyHistogram {
    bins: BTreeMap<Bin, u64>,
    count: u64,
}

// === impl EnvoyHistogram ===

impl EnvoyHistogram {
    pub fn record(&mut self, sample: u64) {
        *self.bins.entry(Bin::of(sample)).or_insert(0) += 1;
        self.count += 1;
    }

    /// `_count`: exact.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `_sum`: each sample counts as its bin's [`Bin::representative`].
    pub fn sum(&self) -> f64 {
        self.bins
            .iter()
            .map(|(bin, n)| bin.representative() * (*n as f64))
            .sum()
    }

    /// `_bucket{le}` for each bound: samples whose bin starts at or below `le`.
    pub fn cumulative(&self, bounds: &[f64]) -> Vec<u64> {
        bounds
            .iter()
            .map(|le| {
                self.bins
                    .iter()
                    .filter(|(bin, _)| bin.lower() <= *le)
                    .map(|(_, n)| *n)
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
