//! Series (label combinations) with a global cap: each new series is admitted once across all
//! workers through the shared store, until `max_series` are; later ones go to the overflow
//! series.
//!
//! Shared data cannot be deleted, so only admitted series get an entry (at most the cap).
//! Two workers admitting the same new series at once may both count it: the cap can then be
//! reached a little early, never exceeded.
//!
//! The count and the markers live in the plugin's [`Namespace`] under [`LAYOUT`], so two
//! plugins of one VM (a suite's inbound and outbound instances) have separate budgets.

use crate::labels::{stat_name, LabelValues, Metric};
use rustc_hash::FxHashMap;
use sdk_shim::{HostError, MetricId, MetricKind, Metrics, Namespace, SharedStore};

/// The budget's layout inside the plugin's namespace; version 1 was the un-namespaced
/// `mesh.telemetry.series_count`.
pub const LAYOUT: &str = "telemetry.2/";
/// Key (after the layout) holding the number of admitted series (decimal).
pub const COUNT: &str = "series_count";
/// Key prefix (after the layout) marking one admitted series.
pub const SERIES: &str = "series/";
const CAS_ATTEMPTS: usize = 8;

/// The four metric ids of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesIds {
    pub requests: MetricId,
    pub duration: MetricId,
    pub request_bytes: MetricId,
    pub response_bytes: MetricId,
}

impl SeriesIds {
    /// Defines (or finds) the four metrics of series `key`.
    pub fn define<H: Metrics>(host: &H, key: &str) -> Result<Self, HostError> {
        let define = |m: Metric| {
            let kind = if m.is_histogram() {
                MetricKind::Histogram
            } else {
                MetricKind::Counter
            };
            host.define_metric(kind, &stat_name(m, key))
        };
        Ok(Self {
            requests: define(Metric::RequestsTotal)?,
            duration: define(Metric::RequestDuration)?,
            request_bytes: define(Metric::RequestBytes)?,
            response_bytes: define(Metric::ResponseBytes)?,
        })
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A series this worker or another one admitted before.
    Series(SeriesIds),
    /// A series admitted now, taking one slot of the cap.
    Admitted(SeriesIds),
    /// Over the cap (or the host failed): record in the overflow series.
    Overflow,
}

/// One worker's view: the series it already defined, and whether the cap was seen reached.
#[derive(Debug)]
pub struct SeriesRegistry {
    /// `<ns>telemetry.2/series_count`.
    count_key: String,
    /// `<ns>telemetry.2/series/`.
    marker_prefix: String,
    /// FxHash: keys run near 1 KiB and are hashed on every request; their number is capped
    /// by `max_series`, so colliding keys cost bounded work.
    local: FxHashMap<String, SeriesIds>,
    /// The same series keyed by their values only ([`LabelValues::write_values`]), which is
    /// what a request hashes: a third of the full key, written into `scratch` (no allocation).
    by_values: FxHashMap<Box<str>, SeriesIds>,
    scratch: String,
    full: bool,
}

fn parse_count(v: &[u8]) -> u32 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// === impl SeriesRegistry ===

impl SeriesRegistry {
    /// A registry for the plugin with namespace `ns`.
    pub fn new(ns: Namespace) -> Self {
        Self {
            count_key: ns.key(&format!("{LAYOUT}{COUNT}")),
            marker_prefix: ns.key(&format!("{LAYOUT}{SERIES}")),
            local: FxHashMap::default(),
            by_values: FxHashMap::default(),
            scratch: String::new(),
            full: false,
        }
    }

    /// The shared key of the series count.
    pub fn count_key(&self) -> &str {
        &self.count_key
    }

    /// Makes sure the shared counter exists before workers race on it with CAS (a missing key
    /// cannot be compare-and-swapped).
    pub fn seed<S: SharedStore>(&self, store: &S) {
        if let Ok(None) = store.shared_get(&self.count_key) {
            let _ = store.shared_set(&self.count_key, b"0", None);
        }
    }

    fn marker(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.marker_prefix.len() + key.len());
        k.push_str(&self.marker_prefix);
        k.push_str(key);
        k
    }

    /// Number of series this worker holds ids for.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }

    /// Finds or admits the series of `labels` under cap `max`; the full key is built only for
    /// a series this worker has not seen.
    pub fn admit_labels<H: Metrics + SharedStore>(
        &mut self,
        host: &H,
        labels: &LabelValues<'_>,
        max: u32,
    ) -> Admission {
        self.scratch.clear();
        labels.write_values(&mut self.scratch);
        if let Some(ids) = self.by_values.get(self.scratch.as_str()) {
            return Admission::Series(*ids);
        }
        let admission = self.admit(host, &labels.series_key(), max);
        if let Admission::Series(ids) | Admission::Admitted(ids) = admission {
            self.by_values.insert(self.scratch.as_str().into(), ids);
        }
        admission
    }

    /// Finds or admits series `key` under cap `max`.
    pub fn admit<H: Metrics + SharedStore>(&mut self, host: &H, key: &str, max: u32) -> Admission {
        if let Some(ids) = self.local.get(key) {
            return Admission::Series(*ids);
        }
        let marker = self.marker(key);
        // Admitted by another worker (or before a reconfiguration)?
        let known = matches!(host.shared_get(&marker), Ok(Some(_)));
        if !known && (self.full || !self.take_slot(host, max)) {
            return Admission::Overflow;
        }
        if !known {
            let _ = host.shared_set(&marker, b"1", None);
        }
        match SeriesIds::define(host, key) {
            Ok(ids) => {
                self.local.insert(key.to_owned(), ids);
                if known {
                    Admission::Series(ids)
                } else {
                    Admission::Admitted(ids)
                }
            }
            Err(_) => Admission::Overflow,
        }
    }

    /// Increments the shared series count if it is below `max`.
    fn take_slot<S: SharedStore>(&mut self, store: &S, max: u32) -> bool {
        for _ in 0..CAS_ATTEMPTS {
            let (count, cas) = match store.shared_get(&self.count_key) {
                Ok(Some(v)) => (parse_count(&v.value), Some(v.cas)),
                Ok(None) => (0, None),
                Err(_) => return false,
            };
            if count >= max {
                self.full = true;
                return false;
            }
            let next = (count + 1).to_string();
            match store.shared_set(&self.count_key, next.as_bytes(), cas) {
                Ok(()) => return true,
                Err(HostError::CasMismatch) => continue,
                Err(_) => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
