//! The canary configuration as written (serde, unknown fields denied) and its validation into
//! the compiled [`Canary`](crate::Canary).
//!
//! Defaults: `route_header` is `x-canary-subset`, `expose_subset` is off, no services (the
//! filter then only strips client-sent route headers). `rollback` defaults: `max_error_rate`
//! 0.05, `min_requests` 50, `window_s` 30.

use mesh_core::HttpMatchSpec;
use serde::Deserialize;

pub const DEFAULT_ROUTE_HEADER: &str = "x-canary-subset";
/// Largest weight accepted, so sums never overflow.
pub const MAX_WEIGHT: i64 = 1_000_000;
pub const MAX_SUBSET_NAME: usize = 63;
/// Longest rollback window, in seconds (a day).
pub const MAX_WINDOW_S: u64 = 86_400;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))
    )]
    #[serde(default)]
    pub route_header: Option<String>,
    /// Also sets `route_header: <subset>` on the response, for debugging.
    #[serde(default)]
    pub expose_subset: bool,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))
    )]
    /// Shared-state namespace of the rollback guards; default: one per plugin.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub host: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub subsets: Vec<SubsetSpec>,
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
    #[serde(default)]
    pub sticky: Option<StickySpec>,
    #[serde(default)]
    pub rollback: Option<RollbackSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SubsetSpec {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,63}$"))
    )]
    pub name: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 1_000_000)))]
    /// Signed so a negative weight is reported as such rather than as a type error.
    pub weight: i64,
}

/// Forces `subset` when the request matches: either `header` (with `value` for an exact
/// match, without it for presence) or a full `match` (path, methods, headers).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<HttpMatchSpec>,
    pub subset: String,
}

/// Exactly one of `header` or `cookie`; `max_age_s`, `secure` and `secret` go with `cookie`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StickySpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub max_age_s: Option<u64>,
    #[serde(default)]
    pub secure: bool,
    /// Key for the cookie's tag; the same on every proxy. Without it the tag uses a fixed key.
    #[serde(default)]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackSpec {
    pub subset: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 1.0)))]
    #[serde(default = "default_rate")]
    pub max_error_rate: f64,
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 86_400)))]
    #[serde(default = "default_window_s")]
    pub window_s: u64,
}

fn default_rate() -> f64 {
    0.05
}
fn default_min_requests() -> u64 {
    50
}
fn default_window_s() -> u64 {
    30
}

/// Whether `name` is a lowercase HTTP header name we may set (no pseudo-headers).
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// Whether `name` can name a subset: it travels in a header and in stat names.
pub fn valid_subset_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SUBSET_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
