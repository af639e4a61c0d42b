//! Response fields from draft-ietf-httpapi-ratelimit-headers (revision 11), in structured-field
//! syntax, and the `application/problem+json` body of a 429.
//!
//! - `ratelimit-policy`: a list of quota policy items, a string naming the rule with `q` (the
//!   configured `requests`) and `w` (the window `per`, in whole seconds, rounded up):
//!   `"api";q=100;w=3600`.
//! - `ratelimit`: a list of service limit items with `r` (requests available now) and `t`
//!   (seconds): `"api";r=57;t=1296`. On an allowed response `t` is when the bucket is full
//!   again; on a 429 `r` is 0 and `t` equals `retry-after`, the wait until one request fits.
//! - `retry-after`: delay-seconds, at least 1.
//!
//! Rule names are restricted to `[A-Za-z0-9_-]`, so they need no escaping in either syntax.

use crate::config::Rule;
use std::fmt::Write as _;

/// The problem type the draft registers for an exceeded quota.
pub const QUOTA_EXCEEDED_TYPE: &str =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// Whole seconds from nanoseconds, rounded up.
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// Appends one service limit item to a `ratelimit` field value.
pub fn push_service_limit(out: &mut String, rule: &Rule, remaining: u64, t_secs: u64) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    let _ = write!(out, "\"{}\";r={remaining};t={t_secs}", rule.name);
}

/// Appends one quota policy item to a `ratelimit-policy` field value.
pub fn push_policy(out: &mut String, rule: &Rule) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push_str(&rule.policy_item);
}

/// A refusal: a 429 (or, for a rate limit service that failed under `failure_mode: deny`,
/// a 503), its headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedReply {
    pub status: u16,
    /// Empty when unknown (a service that sends no statuses), then not sent.
    pub retry_after: String,
    /// Empty when unknown, then not sent.
    pub policy: String,
    /// Empty when unknown, then not sent.
    pub ratelimit: String,
    pub body: String,
    /// Headers the rate limit service asked for.
    pub extra: Vec<(String, String)>,
}

// === impl LimitedReply ===

impl LimitedReply {
    pub const STATUS: u16 = 429;
    /// A rate limit service that failed, with `failure_mode: deny`.
    pub const UNAVAILABLE_STATUS: u16 = 503;
    pub const CONTENT_TYPE: &'static str = "application/problem+json";

    /// The reply for a request refused by `rule`'s local bucket, which admits again in
    /// `retry_after_s`.
    pub fn new(rule: &Rule, retry_after_s: u64) -> Self {
        let retry_after_s = retry_after_s.max(1);
        let detail = format!(
            "quota of policy {} exceeded: {} requests per {}s; retry in {retry_after_s}s",
            rule.name, rule.requests, rule.window_s
        );
        Self::limited(rule, Some(retry_after_s), rule.policy_item.clone(), &detail)
    }

    /// The reply for a request the rate limit service refused under `rule`, with what the
    /// service said of the limit: the wait, `(requests, window_s)`, and nothing more when it
    /// sends no statuses.
    pub fn global(
        rule: &Rule,
        retry_after_s: Option<u64>,
        policy: Option<(u64, u64)>,
        extra: Vec<(String, String)>,
    ) -> Self {
        let retry_after_s = retry_after_s.map(|s| s.max(1));
        let mut detail = format!("quota of policy {} exceeded", rule.name);
        if let Some((q, w)) = policy {
            let _ = write!(detail, ": {q} requests per {w}s");
        }
        if let Some(s) = retry_after_s {
            let _ = write!(detail, "; retry in {s}s");
        }
        let item = policy.map_or_else(String::new, |(q, w)| {
            format!("\"{}\";q={q};w={w}", rule.name)
        });
        let mut reply = Self::limited(rule, retry_after_s, item, &detail);
        reply.extra = extra;
        reply
    }

    /// The 503 for a request whose rate limit service could not answer, under
    /// `failure_mode: deny`.
    pub fn unavailable(rule: &Rule) -> Self {
        let body = format!(
            "{{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\
             \"detail\":\"the rate limit service of policy {} did not answer\"}}",
            rule.name
        );
        Self {
            status: Self::UNAVAILABLE_STATUS,
            retry_after: "1".to_owned(),
            policy: String::new(),
            ratelimit: String::new(),
            body,
            extra: Vec::new(),
        }
    }

    fn limited(rule: &Rule, retry_after_s: Option<u64>, policy: String, detail: &str) -> Self {
        let mut ratelimit = String::new();
        if let Some(s) = retry_after_s {
            push_service_limit(&mut ratelimit, rule, 0, s);
        }
        let body = format!(
            "{{\"type\":\"{QUOTA_EXCEEDED_TYPE}\",\"title\":\"Too Many Requests\",\"status\":429,\
             \"detail\":\"{detail}\",\"violated-policies\":[\"{}\"]}}",
            rule.name,
        );
        Self {
            status: Self::STATUS,
            retry_after: retry_after_s.map_or_else(String::new, |s| s.to_string()),
            policy,
            ratelimit,
            body,
            extra: Vec::new(),
        }
    }

    /// Header pairs for a local reply; unknown fields are left out.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut out = vec![("content-type", Self::CONTENT_TYPE)];
        for (name, value) in [
            ("retry-after", &self.retry_after),
            ("ratelimit-policy", &self.policy),
            ("ratelimit", &self.ratelimit),
        ] {
            if !value.is_empty() {
                out.push((name, value.as_str()));
            }
        }
        out.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out
    }
}

#[cfg(test)]
mod tests;
