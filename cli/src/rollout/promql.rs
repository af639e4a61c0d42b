//! The Prometheus source: PromQL over the HTTP API (`/api/v1/query`). Counter resets
//! (an Envoy restarted) are Prometheus's business: `increase` and `rate` handle them.

use super::engine::Figures;
use super::source::{Selector, Source};
use serde_json::Value;
use std::time::{Duration, Instant};

/// PromQL string literal for `v`.
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{a="x",b="y"}` with `extra` matchers (already written) appended.
fn matchers(sel: &Selector, extra: &[String]) -> String {
    let parts: Vec<String> = sel
        .matchers
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .chain(extra.iter().cloned())
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A PromQL range, in whole milliseconds, at least 1 ms.
fn range(window: Duration) -> String {
    format!("[{}ms]", window.as_millis().max(1))
}

/// The queries of one read.
#[derive(Debug, Clone, PartialEq)]
pub struct Queries {
    pub requests: String,
    pub errors: String,
    pub p99: String,
    pub guard: Option<String>,
}

/// The PromQL for the canary's figures over `window`, and for the guard's trips over
/// `guard_window`.
pub fn queries(sel: &Selector, window: Duration, guard_window: Duration) -> Queries {
    let w = range(window);
    let all = matchers(sel, &[]);
    let errors = matchers(sel, &[format!("{}=~\"5..\"", sel.code_label)]);
    Queries {
        requests: format!("sum(increase({}{all}{w}))", sel.requests),
        // No 5xx series at all is zero errors, not missing data.
        errors: format!("sum(increase({}{errors}{w})) or vector(0)", sel.requests),
        p99: format!(
            "histogram_quantile({}, sum by (le) (rate({}_bucket{all}{w})))",
            sel.quantile, sel.duration
        ),
        guard: sel
            .guard
            .as_ref()
            .map(|g| format!("sum(increase({g}{})) or vector(0)", range(guard_window))),
    }
}

/// The single value of an instant-vector answer: `Ok(None)` for an empty vector, `Ok(NaN)`
/// as Prometheus writes it.
pub fn single_value(answer: &Value) -> Result<Option<f64>, String> {
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        let why = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no status");
        return Err(format!("query failed: {why}"));
    }
    let result = answer
        .get("data")
        .and_then(|d| d.get("result"))
        .and_then(Value::as_array)
        .ok_or("answer has no data.result")?;
    let Some(first) = result.first() else {
        return Ok(None);
    };
    if result.len() > 1 {
        return Err(format!("{} series where one was expected", result.len()));
    }
    let text = first
        .get("value")
        .and_then(|v| v.get(1))
        .and_then(Value::as_str)
        .ok_or("sample has no value")?;
    parse_float(text)
        .map(Some)
        .ok_or_else(|| format!("value {text:?} is not a number"))
}

/// Prometheus's float spellings: decimal, `NaN`, `+Inf`, `-Inf`.
pub fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// Figures read from a Prometheus server.
pub struct Prometheus {
    base: String,
    http: reqwest::blocking::Client,
    selector: Selector,
    /// Shortest window: rates need two scrapes in it.
    min_window: Duration,
    started: Option<Instant>,
    step_started: Instant,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prometheus({})", self.base)
    }
}

// === impl Prometheus ===

impl Prometheus {
    /// `base` is the server's URL (`http://127.0.0.1:9090`); `scrape_interval` its scrape
    /// interval, so that no window is shorter than two scrapes.
    pub fn new(
        base: &str,
        selector: Selector,
        scrape_interval: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            selector,
            min_window: scrape_interval * 2,
            started: None,
            step_started: Instant::now(),
        })
    }

    fn query(&self, q: &str) -> Result<Option<f64>, String> {
        let url = format!("{}/api/v1/query", self.base);
        let resp = self
            .http
            .get(&url)
            .query(&[("query", q)])
            .send()
            .map_err(|e| format!("prometheus {}", short_error(&e)))?;
        let status = resp.status();
        let text = resp
            .text()
            .map_err(|e| format!("prometheus answered {status}: {}", short_error(&e)))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|_| format!("prometheus answered {status} without a JSON body"))?;
        single_value(&body).map_err(|e| format!("prometheus: {e}"))
    }
}

/// A reqwest error in a few words (its own text repeats the URL and nests causes).
pub fn short_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "unreachable (cannot connect)".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if let Some(s) = e.status() {
        format!("answered {s}")
    } else if e.is_decode() {
        "answer not understood".into()
    } else {
        let mut text = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            text = s.to_string();
            src = s.source();
        }
        text
    }
}

impl Source for Prometheus {
    fn describe(&self) -> String {
        format!("prometheus {}", self.base)
    }

    fn start_step(&mut self) {
        let now = Instant::now();
        self.started.get_or_insert(now);
        self.step_started = now;
    }

    fn read(&mut self) -> Result<Figures, String> {
        let now = Instant::now();
        let window = now.duration_since(self.step_started).max(self.min_window);
        // A trip just before the first scrape of the rollout counts too.
        let guard_window = now
            .duration_since(self.started.unwrap_or(now))
            .max(self.min_window)
            + self.min_window;
        let q = queries(&self.selector, window, guard_window);
        let requests = self
            .query(&q.requests)?
            .ok_or("prometheus has no series for the canary")?;
        // Both are extrapolated on their own: errors may come out a hair above requests.
        let errors = self.query(&q.errors)?.unwrap_or(0.0).min(requests);
        let p99_ms = self.query(&q.p99)?.filter(|p| p.is_finite() || *p > 0.0);
        let guard_trips = match &q.guard {
            Some(g) => self.query(g)?.unwrap_or(0.0),
            None => 0.0,
        };
        Ok(Figures {
            requests,
            errors,
            p99_ms,
            guard_trips,
        })
    }
}

#[cfg(test)]
mod tests;
