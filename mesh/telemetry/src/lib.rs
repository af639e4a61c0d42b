//! Mesh telemetry, independent of proxy-wasm: Istio's standard metrics and labels encoded for Envoy stats tags, bounded series, W3C trace context, peer metadata and JSON access-log records.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod config;
pub mod filter;
pub mod flags;
pub mod histogram;
pub mod labels;
pub mod peer;
pub mod series;
pub mod telemetry;
pub mod trace;

pub use config::{Reporter, TelemetryConfig};
pub use filter::{TelemetryCapability, TelemetryFilter, TelemetryRoot};
pub use telemetry::{Decisions, RequestTelemetry, Telemetry, Workload};
