//! The ratelimit configuration as written (serde) and its validated, compiled form.

use crate::gcra::Limit;
use crate::global::{Global, GlobalSpec};
use mesh_core::{parse_duration, parse_json, ConfigError, HttpMatch, HttpMatchSpec};
use rustc_hash::FxHashSet;
use serde::Deserialize;

/// Default size of the bucket table.
pub const DEFAULT_MAX_KEYS: u32 = 10_000;
/// Largest bucket table accepted: every slot is seeded at configuration time and costs Envoy
/// roughly 100 bytes of shared data.
pub const MAX_MAX_KEYS: u32 = 1_000_000;
/// Longest rule name; names appear in metric names and response headers.
pub const MAX_RULE_NAME: usize = 64;
/// Most proxies a client address may be taken from behind (`trusted_hops`).
pub const MAX_TRUSTED_HOPS: u8 = 16;
/// Largest `burst` and `requests`.
pub const MAX_REQUESTS: i64 = 1_000_000_000;

// === config as written ===

/// The plugin configuration as written; see the crate docs for the meaning of each field.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_000_000)))]
    #[serde(default)]
    pub max_keys: Option<i64>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub failure_mode: FailureMode,
    #[serde(default)]
    pub headers_on_allowed: bool,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))
    )]
    /// Shared-state namespace; default: one per plugin (its Envoy name and root id).
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))
    )]
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: Option<HttpMatchSpec>,
    #[serde(default)]
    pub key: Option<KeySpec>,
    /// The local bucket (this proxy alone); optional when `global` is set.
    #[serde(default)]
    pub limit: Option<LimitSpec>,
    /// A check with a rate limit service after the local bucket admits.
    #[serde(default)]
    pub global: Option<GlobalSpec>,
}

/// Exactly one of `header` and `source`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^:?[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))
    )]
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub source: Option<SourceSpec>,
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 16)))]
    /// With `source: address`: how many proxies in front of this one append the client to
    /// `x-forwarded-for` and are trusted to (0, the default: the TCP peer is the client).
    #[serde(default)]
    pub trusted_hops: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SourceSpec {
    /// The client's IP address: the TCP peer, or with `trusted_hops` the address the trusted
    /// proxies in front recorded in `x-forwarded-for`.
    Address,
    /// The SPIFFE ID in the peer certificate's first URI SAN.
    Principal,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_000_000_000)))]
    pub requests: i64,
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$")))]
    pub per: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_000_000_000)))]
    #[serde(default)]
    pub burst: Option<i64>,
}

/// `enforce` answers 429; `shadow` only counts and logs would-be limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// What happens when a bucket cannot be read or updated (host error, CAS retries exhausted):
/// `deny` (the default) answers 429, so a broken store never over-admits; `allow` lets the
/// request through. Either way the `failures` stat counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

// === compiled config ===

/// Where a rule's bucket key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// One bucket for the whole rule.
    Rule,
    /// The first value of this (lowercase) request header.
    Header(String),
    /// The client's address: the TCP peer as Envoy stamped it on the connection (never
    /// `source.address`, which Envoy may take from `x-forwarded-for`), or with
    /// `trusted_hops > 0` the entry that many trusted proxies back in `x-forwarded-for`.
    Address { trusted_hops: u8 },
    /// The peer's SPIFFE ID from its verified certificate.
    Principal,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `None`: the rule applies to every request.
    pub matcher: Option<HttpMatch>,
    pub key: KeySource,
    /// The local bucket; `None` for a rule only the rate limit service counts.
    pub limit: Option<Limit>,
    /// The local limit's `requests` and `per` as configured, for the `ratelimit-policy`
    /// field (0 without a local limit).
    pub requests: u64,
    pub window_s: u64,
    /// The pre-rendered `ratelimit-policy` item of the local limit (empty without one).
    pub policy_item: String,
    pub global: Option<Global>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub rules: Vec<Rule>,
    /// The configured shared-state namespace, if any.
    pub namespace: Option<String>,
    pub max_keys: u32,
    pub mode: Mode,
    pub failure_mode: FailureMode,
    pub headers_on_allowed: bool,
}

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            namespace: None,
            max_keys: DEFAULT_MAX_KEYS,
            mode: Mode::Enforce,
            failure_mode: FailureMode::Deny,
            headers_on_allowed: false,
        }
    }
}

impl Config {
    /// Parses and validates a JSON configuration; empty means the defaults (no rules).
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_json::<ConfigSpec>(bytes)?.compile()
    }

    /// Whether any rule's matcher reads request headers (a whole-map read).
    pub fn needs_headers(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.matcher.as_ref().is_some_and(HttpMatch::needs_headers))
    }

    /// Whether any rule has a matcher at all (then `:method` and `:path` are read).
    pub fn needs_head(&self) -> bool {
        self.rules.iter().any(|r| r.matcher.is_some())
    }
}

// === impl ConfigSpec ===

impl ConfigSpec {
    pub fn compile(&self) -> Result<Config, ConfigError> {
        let max_keys = match self.max_keys {
            None => DEFAULT_MAX_KEYS,
            Some(n) if n < 1 => return Err(ConfigError::new("max_keys", "must be at least 1")),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_MAX_KEYS)
                .ok_or_else(|| {
                    ConfigError::new("max_keys", format!("must be at most {MAX_MAX_KEYS}"))
                })?,
        };
        if let Some(ns) = &self.namespace {
            if !sdk_shim::namespace::valid_name(ns) {
                return Err(ConfigError::new(
                    "namespace",
                    "must be 1 to 64 characters from a-z, A-Z, 0-9, ., _ and -",
                ));
            }
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        let mut names: FxHashSet<&str> = FxHashSet::default();
        for (i, spec) in self.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            let rule = spec.compile(&field)?;
            if !names.insert(&spec.name) {
                return Err(ConfigError::new(
                    format!("{field}.name"),
                    format!("duplicate rule name {:?}", rule.name),
                ));
            }
            rules.push(rule);
        }
        Ok(Config {
            rules,
            max_keys,
            mode: self.mode,
            failure_mode: self.failure_mode,
            headers_on_allowed: self.headers_on_allowed,
            namespace: self.namespace.clone(),
        })
    }
}

fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RULE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_header_name(name: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    token(name) || name.strip_prefix(':').is_some_and(token)
}

// === impl RuleSpec ===

impl RuleSpec {
    fn compile(&self, field: &str) -> Result<Rule, ConfigError> {
        if !valid_rule_name(&self.name) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("must be 1 to {MAX_RULE_NAME} characters from a-z, A-Z, 0-9, _ and -"),
            ));
        }
        let matcher = self
            .matcher
            .as_ref()
            .map(|m| m.compile(&format!("{field}.match")))
            .transpose()?;
        let key = match &self.key {
            None => KeySource::Rule,
            Some(k) => k.compile(&format!("{field}.key"))?,
        };
        let global = self
            .global
            .as_ref()
            .map(|g| g.compile(&format!("{field}.global"), &key, &self.name))
            .transpose()?;
        let (limit, requests, window_s, policy_item) = match &self.limit {
            Some(l) => {
                let (limit, requests, window_s) = l.compile(&format!("{field}.limit"))?;
                let item = format!("\"{}\";q={requests};w={window_s}", self.name);
                (Some(limit), requests, window_s, item)
            }
            None if global.is_some() => (None, 0, 0, String::new()),
            None => {
                return Err(ConfigError::new(
                    format!("{field}.limit"),
                    "required unless the rule has a global block",
                ))
            }
        };
        Ok(Rule {
            name: self.name.clone(),
            matcher,
            key,
            limit,
            requests,
            window_s,
            policy_item,
            global,
        })
    }
}

// === impl KeySpec ===

impl KeySpec {
    fn compile(&self, field: &str) -> Result<KeySource, ConfigError> {
        let hops = match (self.trusted_hops, self.source) {
            (None, _) => 0,
            (Some(_), s) if s != Some(SourceSpec::Address) => {
                return Err(ConfigError::new(
                    format!("{field}.trusted_hops"),
                    "only applies to source address",
                ))
            }
            (Some(n), _) => u8::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_TRUSTED_HOPS)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{field}.trusted_hops"),
                        format!("must be between 0 and {MAX_TRUSTED_HOPS}"),
                    )
                })?,
        };
        match (&self.header, self.source) {
            (Some(h), None) => {
                let name = h.to_ascii_lowercase();
                if !valid_header_name(&name) {
                    return Err(ConfigError::new(
                        format!("{field}.header"),
                        "must be a header name",
                    ));
                }
                Ok(KeySource::Header(name))
            }
            (None, Some(SourceSpec::Address)) => Ok(KeySource::Address { trusted_hops: hops }),
            (None, Some(SourceSpec::Principal)) => Ok(KeySource::Principal),
            (Some(_), Some(_)) => Err(ConfigError::new(field, "set only one of header and source")),
            (None, None) => Err(ConfigError::new(
                field,
                "set one of header and source, or leave key out for one bucket per rule",
            )),
        }
    }
}

// === impl LimitSpec ===

impl LimitSpec {
    /// Returns the limit, `requests` and the window in whole seconds (rounded up).
    fn compile(&self, field: &str) -> Result<(Limit, u64, u64), ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        if self.requests < 1 {
            return Err(ConfigError::new(f("requests"), "must be at least 1"));
        }
        if self.requests > MAX_REQUESTS {
            return Err(ConfigError::new(
                f("requests"),
                format!("must be at most {MAX_REQUESTS}"),
            ));
        }
        let per = parse_duration(&self.per).map_err(|reason| ConfigError::new(f("per"), reason))?;
        let per_ns = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
        if per_ns == 0 {
            return Err(ConfigError::new(f("per"), "must be longer than zero"));
        }
        let burst = match self.burst {
            None => self.requests,
            Some(b) if b < 1 => return Err(ConfigError::new(f("burst"), "must be at least 1")),
            Some(b) if b > MAX_REQUESTS => {
                return Err(ConfigError::new(
                    f("burst"),
                    format!("must be at most {MAX_REQUESTS}"),
                ))
            }
            Some(b) => b,
        };
        // Both are in 1..=MAX_REQUESTS here.
        let requests = u64::try_from(self.requests).unwrap_or(1);
        let burst = u64::try_from(burst).unwrap_or(1);
        let limit = Limit::new(requests, per_ns, burst).ok_or_else(|| {
            ConfigError::new(
                field,
                "rate too high: at most one request per nanosecond, and burst times the interval must stay under 100 years",
            )
        })?;
        let window_s = per_ns.div_ceil(1_000_000_000).max(1);
        Ok((limit, requests, window_s))
    }
}

#[cfg(test)]
mod tests;
