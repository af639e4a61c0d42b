//! Global limits: a rule's check with a rate limit service speaking Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` (envoyproxy/ratelimit,
//! Limitador), after the rule's local bucket admitted the request.
//!
//! ```json
//! "global": { "cluster": "ratelimit", "authority": "rls.example", "domain": "mesh",
//!             "entries": [{"key": "service", "value": "reviews"}], "descriptor_key": "user",
//!             "timeout": "20ms", "failure_mode": "allow", "hits_addend": 1 }
//! ```
//!
//! The request carries one descriptor: the constant `entries` (default one
//! `generic_key: <rule name>` entry), then, when the rule has a key, the key's value under
//! `descriptor_key` (default: the header's name, `remote_address` or `principal`). A value that
//! is not UTF-8 is sent with its invalid bytes replaced (protobuf strings are UTF-8).
//!
//! - `timeout` (default 20ms, 1ms..=60s): Envoy reads 0 as no deadline, so it is refused.
//! - `failure_mode` (default `allow`, as Envoy's own `ratelimit` filter): what a call that
//!   fails does (the service down, gRPC status 14; past the timeout, 4; any other non-OK
//!   status; an answer that does not decode). `deny` answers 503 with an
//!   `application/problem+json` body and `retry-after: 1`.
//! - An `OVER_LIMIT` answer gets the local limiter's 429, its fields taken from the first
//!   over-limit status (`duration_until_reset` for `retry-after`, `current_limit` for the
//!   policy) when the service sends statuses (envoyproxy/ratelimit does, Limitador does not).
//!   The service's `response_headers_to_add` go on the 429, or on the upstream's response
//!   when it admits; its `request_headers_to_add` replace those request headers before the
//!   request goes on.

use crate::config::{FailureMode, KeySource};
use mesh_core::{parse_duration, ConfigError};
use prost::Message;
use serde::Deserialize;

/// The gRPC service and method called.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// Default deadline of a call.
pub const DEFAULT_TIMEOUT_MS: u32 = 20;
/// Longest deadline accepted.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// Most constant entries in a descriptor.
pub const MAX_ENTRIES: usize = 8;
/// Most headers taken from one answer, and the longest value: a service is trusted with
/// headers, not with memory.
pub const MAX_SERVICE_HEADERS: usize = 16;
pub const MAX_SERVICE_HEADER_VALUE: usize = 4096;
/// Longest cluster name, authority, domain, entry key or value.
const MAX_NAME: usize = 100;

// === config as written ===

/// A rule's `global` block; see the module docs.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GlobalSpec {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    pub domain: String,
    #[serde(default)]
    pub entries: Vec<EntrySpec>,
    #[serde(default)]
    pub descriptor_key: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    #[serde(default)]
    pub hits_addend: Option<i64>,
}

/// A constant descriptor entry.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    pub key: String,
    pub value: String,
}

// === compiled ===

/// A validated `global` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The serialized `envoy.config.core.v3.GrpcService` naming the cluster (ASCII, so the
    /// host interface can take it as a string).
    pub service: String,
    pub domain: String,
    pub entries: Vec<(String, String)>,
    /// The descriptor key of the rule's key value, when the rule has a key.
    pub key_entry: Option<String>,
    pub timeout_ms: u32,
    pub failure_mode: FailureMode,
    /// 0: the service counts one hit.
    pub hits_addend: u32,
}

/// Printable ASCII without spaces: what cluster names, authorities and descriptor keys need,
/// and what keeps the serialized `GrpcService` ASCII.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(|b| b.is_ascii_graphic())
}

// === impl GlobalSpec ===

impl GlobalSpec {
    pub fn compile(&self, field: &str, key: &KeySource, rule: &str) -> Result<Global, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        let must = "must be 1 to 100 printable ASCII characters without spaces";
        if !printable(&self.cluster) {
            return Err(ConfigError::new(f("cluster"), must));
        }
        if let Some(a) = &self.authority {
            if !printable(a) {
                return Err(ConfigError::new(f("authority"), must));
            }
        }
        if !printable(&self.domain) {
            return Err(ConfigError::new(f("domain"), must));
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(ConfigError::new(
                f("entries"),
                format!("at most {MAX_ENTRIES} entries"),
            ));
        }
        let mut entries = Vec::with_capacity(self.entries.len().max(1));
        for (i, e) in self.entries.iter().enumerate() {
            if !printable(&e.key) {
                return Err(ConfigError::new(f(&format!("entries[{i}].key")), must));
            }
            if e.value.is_empty() || e.value.len() > MAX_NAME {
                return Err(ConfigError::new(
                    f(&format!("entries[{i}].value")),
                    "must be 1 to 100 bytes",
                ));
            }
            entries.push((e.key.clone(), e.value.clone()));
        }
        if entries.is_empty() {
            entries.push(("generic_key".to_owned(), rule.to_owned()));
        }
        let key_entry = match (key, &self.descriptor_key) {
            (KeySource::Rule, Some(_)) => {
                return Err(ConfigError::new(
                    f("descriptor_key"),
                    "the rule has no key to send",
                ))
            }
            (KeySource::Rule, None) => None,
            (_, Some(k)) if !printable(k) => {
                return Err(ConfigError::new(f("descriptor_key"), must));
            }
            (_, Some(k)) => Some(k.clone()),
            (KeySource::Header(h), None) => Some(h.clone()),
            (KeySource::Address { .. }, None) => Some("remote_address".to_owned()),
            (KeySource::Principal, None) => Some("principal".to_owned()),
        };
        let timeout_ms = match &self.timeout {
            None => DEFAULT_TIMEOUT_MS,
            Some(t) => {
                let d =
                    parse_duration(t).map_err(|reason| ConfigError::new(f("timeout"), reason))?;
                let ms = d.as_nanos().div_ceil(1_000_000);
                if ms == 0 {
                    return Err(ConfigError::new(
                        f("timeout"),
                        "must be at least 1ms (Envoy reads 0 as no deadline)",
                    ));
                }
                u32::try_from(ms)
                    .ok()
                    .filter(|ms| *ms <= MAX_TIMEOUT_MS)
                    .ok_or_else(|| ConfigError::new(f("timeout"), "must be at most 60s"))?
            }
        };
        let hits_addend = match self.hits_addend {
            None => 0,
            Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                ConfigError::new(f("hits_addend"), "must be between 1 and 4294967295")
            })?,
        };
        let service = proto::GrpcService {
            envoy_grpc: Some(proto::EnvoyGrpc {
                cluster_name: self.cluster.clone(),
                authority: self.authority.clone().unwrap_or_default(),
            }),
        }
        .encode_to_vec();
        // Printable names and lengths under 128 make every byte ASCII; checked all the same.
        let service = String::from_utf8(service)
            .ok()
            .filter(|s| s.is_ascii())
            .ok_or_else(|| ConfigError::new(f("cluster"), "cannot be sent to Envoy"))?;
        Ok(Global {
            service,
            domain: self.domain.clone(),
            entries,
            key_entry,
            timeout_ms,
            failure_mode: self.failure_mode.unwrap_or(FailureMode::Allow),
            hits_addend,
        })
    }
}

// === impl Global ===

impl Global {
    /// The serialized `RateLimitRequest` for one request whose key value is `value`.
    pub fn request(&self, value: Option<&str>) -> Vec<u8> {
        let mut entries: Vec<proto::Entry> = self
            .entries
            .iter()
            .map(|(key, value)| proto::Entry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        if let (Some(key), Some(value)) = (&self.key_entry, value) {
            entries.push(proto::Entry {
                key: key.clone(),
                value: value.to_owned(),
            });
        }
        proto::RateLimitRequest {
            domain: self.domain.clone(),
            descriptors: vec![proto::RateLimitDescriptor { entries }],
            hits_addend: self.hits_addend,
        }
        .encode_to_vec()
    }
}

/// What the service said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Admitted (`OK`, or `UNKNOWN` as Envoy reads it).
    Ok {
        request_headers: Vec<(String, String)>,
        response_headers: Vec<(String, String)>,
    },
    OverLimit {
        /// From the first over-limit status's `duration_until_reset`, in whole seconds.
        retry_after_s: Option<u64>,
        /// `requests_per_unit` and the unit in seconds, from its `current_limit`.
        policy: Option<(u64, u64)>,
        /// Requests left, from its `limit_remaining`.
        remaining: Option<u64>,
        response_headers: Vec<(String, String)>,
    },
}

/// A message that does not decode as a `RateLimitResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable;

const CODE_OVER_LIMIT: i32 = 2;

fn unit_seconds(unit: i32) -> Option<u64> {
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3_600),
        4 => Some(86_400),
        5 => Some(30 * 86_400),
        6 => Some(365 * 86_400),
        7 => Some(7 * 86_400),
        _ => None,
    }
}

/// Header names a service may set: lowercase tokens, never pseudo-headers, `host` or
/// hop-by-hop fields.
fn settable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
        && !matches!(
            name,
            "host"
                | "connection"
                | "keep-alive"
                | "te"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
        )
}

fn headers(values: Vec<proto::HeaderValue>) -> Vec<(String, String)> {
    values
        .into_iter()
        .filter_map(|h| {
            let key = h.key.to_ascii_lowercase();
            // A local reply takes text values: raw bytes that are not UTF-8 are dropped.
            let value = if h.value.is_empty() {
                String::from_utf8(h.raw_value).ok()?
            } else {
                h.value
            };
            let clean = value.len() <= MAX_SERVICE_HEADER_VALUE
                && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
            (settable(&key) && clean).then_some((key, value))
        })
        .take(MAX_SERVICE_HEADERS)
        .collect()
}

/// Reads a `RateLimitResponse`.
pub fn answer(message: &[u8]) -> Result<Answer, Undecodable> {
    let r = proto::RateLimitResponse::decode(message).map_err(|_| Undecodable)?;
    if r.overall_code != CODE_OVER_LIMIT {
        return Ok(Answer::Ok {
            request_headers: headers(r.request_headers_to_add),
            response_headers: headers(r.response_headers_to_add),
        });
    }
    let status = r.statuses.iter().find(|s| s.code == CODE_OVER_LIMIT);
    let retry_after_s = status
        .and_then(|s| s.duration_until_reset.as_ref())
        .map(|d| {
            let secs = u64::try_from(d.seconds).unwrap_or(0);
            secs + u64::from(d.nanos > 0)
        })
        .map(|s| s.max(1));
    let policy = status
        .and_then(|s| s.current_limit.as_ref())
        .and_then(|l| Some((u64::from(l.requests_per_unit), unit_seconds(l.unit)?)))
        .filter(|(q, _)| *q > 0);
    Ok(Answer::OverLimit {
        retry_after_s,
        policy,
        remaining: status.map(|s| u64::from(s.limit_remaining)),
        response_headers: headers(r.response_headers_to_add),
    })
}

/// The messages of Envoy's API that a global check sends and reads, with the field numbers of
/// `envoy/service/ratelimit/v3/rls.proto`, `envoy/config/core/v3/grpc_service.proto` and
/// `base.proto`; fields a filter never reads are left out (protobuf skips them).
pub mod proto {
    /// `envoy.config.core.v3.GrpcService`, `envoy_grpc` only.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GrpcService {
        #[prost(message, optional, tag = "1")]
        pub envoy_grpc: Option<EnvoyGrpc>,
    }

    /// `envoy.config.core.v3.GrpcService.EnvoyGrpc`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EnvoyGrpc {
        #[prost(string, tag = "1")]
        pub cluster_name: String,
        #[prost(string, tag = "2")]
        pub authority: String,
    }

    /// `envoy.service.ratelimit.v3.RateLimitRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitRequest {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<RateLimitDescriptor>,
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }

    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitDescriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
    }

    /// `RateLimitDescriptor.Entry`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitResponse {
        /// `Code`: 0 unknown, 1 ok, 2 over limit.
        #[prost(int32, tag = "1")]
        pub overall_code: i32,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<DescriptorStatus>,
        #[prost(message, repeated, tag = "3")]
        pub response_headers_to_add: Vec<HeaderValue>,
        #[prost(message, repeated, tag = "4")]
        pub request_headers_to_add: Vec<HeaderValue>,
    }

    /// `RateLimitResponse.DescriptorStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<Duration>,
    }

    /// `RateLimitResponse.RateLimit`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimit {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        /// `Unit`: 1 second, 2 minute, 3 hour, 4 day, 5 month, 6 year, 7 week.
        #[prost(int32, tag = "2")]
        pub unit: i32,
        #[prost(string, tag = "3")]
        pub name: String,
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

#[cfg(test)]
mod tests;
