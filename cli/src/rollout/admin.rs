//! The Envoy admin source, for a setup without Prometheus: reads `/stats/prometheus` of one
//! or more Envoys and adds up the differences between consecutive reads, as Prometheus's
//! `increase` does. A counter that went down, or a server uptime that did, means the Envoy
//! restarted: its values then count from zero (the requests between the last read and the
//! restart are lost, none is counted twice or negative).

use super::engine::Figures;
use super::promql::{parse_float, short_error};
use super::source::{Selector, Source};
use std::collections::BTreeMap;
use std::time::Duration;

/// One sample line of the Prometheus text format: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

// === impl Sample ===

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every sample line; comments, blank and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let end = loop {
            // `key="value"` pairs separated by commas, up to `}`.
            let mut key = String::new();
            let (i, c) = loop {
                let (i, c) = chars.next()?;
                if c == '=' || c == '}' {
                    break (i, c);
                }
                key.push(c);
            };
            let key = key.trim().trim_start_matches(',').trim().to_owned();
            if c == '}' {
                if !key.is_empty() {
                    return None;
                }
                break i;
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key, value));
        };
        rest = body.get(end + 1..)?;
    }
    let value = parse_float(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// What a series counts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Requests {
        error: bool,
    },
    /// A duration histogram bucket with this upper bound.
    Bucket(f64),
    Guard,
}

/// The canary's series of one read of one Envoy, by their line identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    series: BTreeMap<String, (Kind, f64)>,
    uptime: Option<f64>,
}

const UPTIME: &str = "envoy_server_uptime";

// === impl Snapshot ===

impl Snapshot {
    /// The series of `samples` that `sel` is about.
    pub fn of(sel: &Selector, samples: &[Sample]) -> Self {
        let bucket = format!("{}_bucket", sel.duration);
        let mut snap = Self::default();
        for s in samples {
            if s.name == UPTIME {
                snap.uptime = Some(s.value);
                continue;
            }
            let kind = if s.name == sel.requests && sel.matches(|k| s.label(k)) {
                let error = s.label(&sel.code_label).is_some_and(Selector::is_error);
                Kind::Requests { error }
            } else if s.name == bucket && sel.matches(|k| s.label(k)) {
                match s.label("le").and_then(parse_float) {
                    Some(le) => Kind::Bucket(le),
                    None => continue,
                }
            } else if sel.guard.as_deref() == Some(s.name.as_str()) {
                Kind::Guard
            } else {
                continue;
            };
            let id = s
                .labels
                .iter()
                .fold(s.name.clone(), |acc, (k, v)| format!("{acc}\u{0}{k}={v}"));
            snap.series.insert(id, (kind, s.value));
        }
        snap
    }

    /// Whether this read has any request series of the canary.
    pub fn has_requests(&self) -> bool {
        self.series
            .values()
            .any(|(k, _)| matches!(k, Kind::Requests { .. }))
    }

    /// Whether the Envoy restarted between `prev` and `self`.
    pub fn restarted_since(&self, prev: &Snapshot) -> bool {
        let uptime_fell = matches!((prev.uptime, self.uptime), (Some(a), Some(b)) if b < a);
        uptime_fell
            || self
                .series
                .iter()
                .any(|(id, (_, v))| prev.series.get(id).is_some_and(|(_, before)| v < before))
    }

    /// What was counted between `prev` and `self` (after a restart: everything in `self`).
    pub fn since(&self, prev: &Snapshot) -> Tally {
        let restarted = self.restarted_since(prev);
        let mut t = Tally::default();
        for (id, (kind, v)) in &self.series {
            // A series absent before started from zero since.
            let before = match prev.series.get(id) {
                Some((_, b)) if !restarted => *b,
                _ => 0.0,
            };
            t.add(*kind, (v - before).max(0.0));
        }
        t.restarts = u64::from(restarted);
        t
    }
}

/// Counts added up over reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub requests: f64,
    pub errors: f64,
    /// Cumulative bucket counts by upper bound (as bits, so they order and compare).
    buckets: BTreeMap<u64, f64>,
    pub guard: f64,
    /// Restarts seen.
    pub restarts: u64,
}

/// Orders f64 upper bounds (all >= 0 or +Inf) by their bits, which preserves their order.
fn bound_key(le: f64) -> u64 {
    le.max(0.0).to_bits()
}

// === impl Tally ===

impl Tally {
    fn add(&mut self, kind: Kind, delta: f64) {
        match kind {
            Kind::Requests { error } => {
                self.requests += delta;
                if error {
                    self.errors += delta;
                }
            }
            Kind::Bucket(le) => *self.buckets.entry(bound_key(le)).or_insert(0.0) += delta,
            Kind::Guard => self.guard += delta,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (k, v) in &other.buckets {
            *self.buckets.entry(*k).or_insert(0.0) += v;
        }
        self.guard += other.guard;
        self.restarts += other.restarts;
    }

    /// The `q` quantile of the durations counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let buckets: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|(k, v)| (f64::from_bits(*k), *v))
            .collect();
        quantile(q, &buckets)
    }
}

/// The `q` quantile of a cumulative histogram `(upper bound, count)` sorted by bound, the way
/// Prometheus's `histogram_quantile` estimates it: linear within the bucket holding the rank;
/// in the `+Inf` bucket, the largest finite bound. `None` without samples.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().map(|(_, c)| *c)?;
    if total.is_nan() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (upper, count) in buckets {
        // Counts of a sum of reads can dip by rounding; keep them cumulative.
        let count = count.max(below);
        if count >= rank && count > below {
            if upper.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (upper - lower) * (rank - below) / (count - below));
        }
        lower = *upper;
        below = count;
    }
    Some(lower)
}

/// One Envoy admin endpoint and its last read.
#[derive(Debug)]
struct Endpoint {
    base: String,
    prev: Option<Snapshot>,
}

/// Figures read from Envoys' admin endpoints directly.
pub struct Admin {
    endpoints: Vec<Endpoint>,
    http: reqwest::blocking::Client,
    selector: Selector,
    step: Tally,
    since_start: Tally,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Admin({:?})", self.endpoints)
    }
}

// === impl Admin ===

impl Admin {
    pub fn new(bases: &[String], selector: Selector, timeout: Duration) -> Result<Self, String> {
        if bases.is_empty() {
            return Err("no admin endpoint given".into());
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            endpoints: bases
                .iter()
                .map(|b| Endpoint {
                    base: b.trim_end_matches('/').to_owned(),
                    prev: None,
                })
                .collect(),
            http,
            selector,
            step: Tally::default(),
            since_start: Tally::default(),
        })
    }

    /// Reads every endpoint; adds what each counted since its last read to `into` (the guard
    /// also to the rollout's total). Returns why some could not be read, if any, and whether
    /// any has request series of the canary.
    fn poll(&mut self, count_step: bool) -> (Vec<String>, bool) {
        let mut failed = Vec::new();
        let mut any_series = false;
        for ep in &mut self.endpoints {
            let url = format!("{}/stats/prometheus", ep.base);
            let text = self
                .http
                .get(&url)
                .send()
                .and_then(reqwest::blocking::Response::error_for_status)
                .and_then(reqwest::blocking::Response::text);
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    failed.push(format!("envoy admin {}: {}", ep.base, short_error(&e)));
                    continue;
                }
            };
            let snap = Snapshot::of(&self.selector, &parse(&text));
            any_series |= snap.has_requests();
            if let Some(prev) = &ep.prev {
                let t = snap.since(prev);
                self.since_start.guard += t.guard;
                self.since_start.restarts += t.restarts;
                if count_step {
                    self.step.merge(&t);
                }
            }
            ep.prev = Some(snap);
        }
        (failed, any_series)
    }
}

impl Source for Admin {
    fn describe(&self) -> String {
        let bases: Vec<&str> = self.endpoints.iter().map(|e| e.base.as_str()).collect();
        format!("envoy admin {}", bases.join(", "))
    }

    fn start_step(&mut self) {
        self.step = Tally::default();
        // Fresh baselines: what was counted before the step is not the step's.
        let _ = self.poll(false);
    }

    fn read(&mut self) -> Result<Figures, String> {
        let (failed, any_series) = self.poll(true);
        if !failed.is_empty() {
            return Err(failed.join("; "));
        }
        if !any_series {
            return Err("envoy has no series for the canary".into());
        }
        Ok(Figures {
            requests: self.step.requests,
            errors: self.step.errors,
            p99_ms: self.step.quantile(self.selector.quantile),
            guard_trips: self.since_start.guard,
        })
    }
}

#[cfg(test)]
mod tests;
