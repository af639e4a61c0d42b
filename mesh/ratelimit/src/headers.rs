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

/// A 429 answer: headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedReply {
    pub retry_after: String,
    pub policy: String,
    pub ratelimit: String,
    pub body: String,
}

// === impl LimitedReply ===

impl LimitedReply {
    pub const STATUS: u16 = 429;
    pub const CONTENT_TYPE: &'static str = "application/problem+json";

    /// The reply for a request refused by `rule`, which admits again in `retry_after_s`.
    pub fn new(rule: &Rule, retry_after_s: u64) -> Self {
        let retry_after_s = retry_after_s.max(1);
        let mut ratelimit = String::new();
        push_service_limit(&mut ratelimit, rule, 0, retry_after_s);
        let body = format!(
            "{{\"type\":\"{QUOTA_EXCEEDED_TYPE}\",\"title\":\"Too Many Requests\",\"status\":429,\
             \"detail\":\"quota of policy {name} exceeded: {q} requests per {w}s; retry in {retry_after_s}s\",\
             \"violated-policies\":[\"{name}\"]}}",
            name = rule.name,
            q = rule.requests,
            w = rule.window_s,
        );
        Self {
            retry_after: retry_after_s.to_string(),
            policy: rule.policy_item.clone(),
            ratelimit,
            body,
        }
    }

    /// Header pairs for a local reply.
    pub fn headers(&self) -> [(&'static str, &str); 4] {
        [
            ("content-type", Self::CONTENT_TYPE),
            ("retry-after", &self.retry_after),
            ("ratelimit-policy", &self.policy),
            ("ratelimit", &self.ratelimit),
        ]
    }
}

#[cfg(test)]
mod tests;
