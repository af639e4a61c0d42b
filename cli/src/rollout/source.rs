//! Where the figures come from: which series are the canary's, and the trait both sources
//! (Prometheus, Envoy's admin endpoint) implement.

use super::engine::Figures;

/// The canary's series: Istio's standard metrics narrowed by exact label matchers, and the
/// canary filter's guard counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// `label="value"` matchers every series must have, e.g. `reporter="destination"`,
    /// `destination_service_name="reviews"`, `destination_version="v2"`.
    pub matchers: Vec<(String, String)>,
    /// `istio_requests_total`.
    pub requests: String,
    /// `istio_request_duration_milliseconds` (its `_bucket` series).
    pub duration: String,
    /// The label holding the status code (`response_code`); 5xx are errors.
    pub code_label: String,
    /// The guard's trip counter as Prometheus names it, e.g. `canary_reviews_v2_rollbacks`
    /// for the stat `wasmcustom.canary.reviews.v2.rollbacks`; `None` without a guard.
    pub guard: Option<String>,
    /// The quantile judged (0.99).
    pub quantile: f64,
}

// === impl Selector ===

impl Selector {
    /// Istio's metric names for the canary subset `version` of `service`.
    pub fn istio(
        reporter: Option<&str>,
        service_label: &str,
        service: &str,
        version_label: &str,
        version: &str,
    ) -> Self {
        let mut matchers = Vec::new();
        if let Some(r) = reporter.filter(|r| !r.is_empty()) {
            matchers.push(("reporter".to_owned(), r.to_owned()));
        }
        matchers.push((service_label.to_owned(), service.to_owned()));
        matchers.push((version_label.to_owned(), version.to_owned()));
        Self {
            matchers,
            requests: "istio_requests_total".into(),
            duration: "istio_request_duration_milliseconds".into(),
            code_label: "response_code".into(),
            guard: None,
            quantile: 0.99,
        }
    }

    /// Whether a series' labels match every matcher.
    pub fn matches<'a>(&self, mut label: impl FnMut(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .all(|(k, v)| label(k).is_some_and(|got| got == v))
    }

    /// Whether `code` is an error (5xx).
    pub fn is_error(code: &str) -> bool {
        code.len() == 3 && code.starts_with('5') && code.bytes().all(|b| b.is_ascii_digit())
    }
}

/// The Prometheus name Envoy gives a canary guard's stat: custom (`wasmcustom.`) stats lose
/// that prefix, and every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn guard_metric(stat_label: &str, subset: &str) -> String {
    format!("canary.{stat_label}.{subset}.rollbacks")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A metrics source. The window of a step's figures starts at [`Source::start_step`]; the
/// guard's trips count from the first call on.
pub trait Source {
    /// Where it reads, for the log lines.
    fn describe(&self) -> String;
    /// A new step's weight was just applied: its window starts now.
    fn start_step(&mut self);
    /// The figures since the step started; `Err` with a short reason when there are none
    /// (unreachable, no series for the canary, part of the endpoints unread).
    fn read(&mut self) -> Result<Figures, String>;
}

/// The selector the sources' unit tests read: Istio's labels for `reviews` v2, guarded.
#[cfg(test)]
pub(crate) fn reviews_v2() -> Selector {
    let mut s = Selector::istio(
        Some("destination"),
        "destination_service_name",
        "reviews",
        "destination_version",
        "v2",
    );
    s.guard = Some("canary_reviews_v2_rollbacks".into());
    s
}
