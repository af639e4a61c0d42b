//! The plugin configuration: JSON shape, defaults and validation.
//!
//! ```json
//! { "reporter": "destination",
//!   "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"},
//!   "max_series": 1000,
//!   "peer_metadata": {"enabled": false, "header": "x-mesh-peer-metadata"},
//!   "trace": {"enabled": true, "start_when_absent": false, "sampled": false},
//!   "access_log": {"enabled": true, "max_field_bytes": 1024} }
//! ```
//! Every key is optional. Workload fields left out come from the Envoy node (Istio's
//! `WORKLOAD_NAME`, `NAMESPACE`, `CLUSTER_ID` and `LABELS` metadata) when it has them, else
//! `unknown`. `workload` also takes `service_host`, `revision`, `app`, `version`, `cluster`.

use mesh_core::{parse_json, ConfigError};
use serde::Deserialize;

/// Which side of the call this proxy reports for, as Istio's `reporter` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Reporter {
    /// The client's sidecar (outbound traffic).
    Source,
    /// The server's sidecar (inbound traffic).
    #[default]
    Destination,
}

impl Reporter {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// Workload name, e.g. `reviews-v1`.
    pub name: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    pub namespace: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// Service (and canonical service) name, e.g. `reviews`; default: the workload name.
    pub service: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// `destination_service` value; default `<service>.<namespace>.svc.cluster.local`.
    pub service_host: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// Canonical revision, e.g. `v1`; default: the node's `version` label, else `latest`.
    pub revision: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// `app` label value, e.g. `reviews`; default: the node's `app` label, else `unknown`.
    pub app: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// `version` label value, e.g. `v1`; default: the node's `version` label, else `unknown`.
    pub version: Option<String>,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,253}$"))
    )]
    /// Cluster (Istio's `CLUSTER_ID`), e.g. `Kubernetes`; default: the node's `CLUSTER_ID`
    /// metadata, else `unknown`.
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PeerMetadataSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_peer_header")]
    pub header: String,
}

fn default_peer_header() -> String {
    DEFAULT_PEER_HEADER.to_owned()
}

/// Header carrying [`crate::peer::PeerMetadata`] between sidecars.
pub const DEFAULT_PEER_HEADER: &str = "x-mesh-peer-metadata";

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// Check `traceparent`, replacing an invalid one.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Start a trace when the request has none.
    #[serde(default)]
    pub start_when_absent: bool,
    /// Set the `sampled` flag on traces this filter starts.
    #[serde(default)]
    pub sampled: bool,
}

impl Default for TraceSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            start_when_absent: false,
            sampled: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Bytes kept of each client-controlled field (path, authority, method).
    #[serde(default = "default_max_field_bytes")]
    pub max_field_bytes: u32,
}

impl Default for AccessLogSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_field_bytes: default_max_field_bytes(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_field_bytes() -> u32 {
    1024
}

/// Default cap on label combinations (series) per metric, across all workers.
pub const DEFAULT_MAX_SERIES: u32 = 1000;
/// Highest accepted cap: each series costs Envoy four stats and a shared-data entry.
pub const MAX_MAX_SERIES: u32 = 100_000;

/// The configuration as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    #[serde(default)]
    pub reporter: Reporter,
    #[serde(default)]
    pub workload: WorkloadSpec,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 100_000)))]
    pub max_series: Option<u32>,
    pub peer_metadata: Option<PeerMetadataSpec>,
    #[serde(default)]
    pub trace: TraceSpec,
    #[serde(default)]
    pub access_log: AccessLogSpec,
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))
    )]
    /// Shared-state namespace of the series budget; default: one per plugin.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Trace handling, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceConfig {
    pub enabled: bool,
    pub start_when_absent: bool,
    pub sampled: bool,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub reporter: Reporter,
    pub workload: WorkloadSpec,
    pub max_series: u32,
    /// The configured shared-state namespace, if any.
    pub namespace: Option<String>,
    /// Lowercase header name, when the peer metadata exchange is on.
    pub peer_header: Option<String>,
    pub trace: TraceConfig,
    /// `Some(max_field_bytes)` when access logging is on.
    pub access_log: Option<usize>,
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 128
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

// === impl TelemetryConfig ===

impl TelemetryConfig {
    /// Parses and validates the plugin configuration (empty: every default).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::compile(parse_json::<TelemetrySpec>(bytes)?)
    }

    pub fn compile(spec: TelemetrySpec) -> Result<Self, ConfigError> {
        let w = &spec.workload;
        for (field, value) in [
            ("name", &w.name),
            ("namespace", &w.namespace),
            ("service", &w.service),
            ("service_host", &w.service_host),
            ("revision", &w.revision),
            ("app", &w.app),
            ("version", &w.version),
            ("cluster", &w.cluster),
        ] {
            if let Some(v) = value {
                if !crate::peer::valid_value(v) {
                    return Err(ConfigError::new(
                        format!("workload.{field}"),
                        "must be 1 to 253 characters of [A-Za-z0-9._-]",
                    ));
                }
            }
        }
        let max_series = spec.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            return Err(ConfigError::new("max_series", "must be at least 1"));
        }
        if max_series > MAX_MAX_SERIES {
            return Err(ConfigError::new(
                "max_series",
                format!("must be at most {MAX_MAX_SERIES}"),
            ));
        }
        let peer_header = match spec.peer_metadata {
            Some(p) if p.enabled => {
                if !valid_header_name(&p.header) {
                    return Err(ConfigError::new(
                        "peer_metadata.header",
                        "must be a lowercase header name of [a-z0-9_-]",
                    ));
                }
                Some(p.header)
            }
            _ => None,
        };
        let access_log = if spec.access_log.enabled {
            let max = spec.access_log.max_field_bytes;
            if !(16..=65_536).contains(&max) {
                return Err(ConfigError::new(
                    "access_log.max_field_bytes",
                    "must be between 16 and 65536",
                ));
            }
            Some(max as usize)
        } else {
            None
        };
        if let Some(ns) = &spec.namespace {
            if !sdk_shim::namespace::valid_name(ns) {
                return Err(ConfigError::new(
                    "namespace",
                    "must be 1 to 64 characters from a-z, A-Z, 0-9, ., _ and -",
                ));
            }
        }
        Ok(Self {
            reporter: spec.reporter,
            workload: spec.workload,
            max_series,
            namespace: spec.namespace,
            peer_header,
            trace: TraceConfig {
                enabled: spec.trace.enabled,
                start_when_absent: spec.trace.start_when_absent,
                sampled: spec.trace.sampled,
            },
            access_log,
        })
    }
}

#[cfg(test)]
mod tests;
