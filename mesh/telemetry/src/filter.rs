//! The telemetry capability in the proxy: its [`Capability`] steps and the per-request filter.
//!
//! The suite filter reuses [`TelemetryRoot`] to configure, [`TelemetryFilter`] per request
//! (telemetry starts before the other capabilities and finishes after them), and hands the
//! other filters' verdicts over in memory with [`TelemetryFilter::request`] and
//! [`RequestTelemetry::set_decision`].

use crate::{RequestTelemetry, Telemetry, TelemetryConfig};
use mesh_core::{Capability, CapabilityRoot, ConfigError, SetupError};
use sdk_shim::{Action, Callbacks, ConfigHost, HttpFilter, StreamHost};
use std::sync::Arc;

/// The telemetry capability.
#[derive(Debug)]
pub struct TelemetryCapability;

/// The proxy's root filter for telemetry: the validated config and the worker's series,
/// shared by `Arc`.
pub type TelemetryRoot = CapabilityRoot<TelemetryCapability>;

// === impl TelemetryCapability ===

impl Capability for TelemetryCapability {
    const NAME: &'static str = "telemetry";
    const DECISION_KEY: Option<&'static str> = None;
    type Compiled = TelemetryConfig;
    type Bound = Telemetry;
    type Filter = TelemetryFilter;

    fn compile(config: &[u8]) -> Result<TelemetryConfig, ConfigError> {
        TelemetryConfig::from_json(config)
    }

    /// Resolves the workload, defines the filter's own stats and seeds the series budget.
    fn bind<H: ConfigHost>(host: &H, config: TelemetryConfig) -> Result<Telemetry, SetupError> {
        Telemetry::bind(host, config).map_err(SetupError::of("metrics"))
    }
    /// `:method`, `:path`, `:authority`, `content-type` and `traceparent` on every request.
    fn request_header_reads(_: &Telemetry) -> usize {
        5
    }

    fn filter(bound: Option<&Arc<Telemetry>>) -> TelemetryFilter {
        TelemetryFilter {
            request: bound.cloned().map(RequestTelemetry::new),
        }
    }
}

/// Telemetry for one request; does nothing when the root has no configuration.
#[derive(Debug)]
pub struct TelemetryFilter {
    request: Option<RequestTelemetry>,
}

// === impl TelemetryFilter ===

impl TelemetryFilter {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            request: Some(RequestTelemetry::new(telemetry)),
        }
    }

    /// The per-request state, e.g. to hand over decisions in memory.
    pub fn request(&mut self) -> Option<&mut RequestTelemetry> {
        self.request.as_mut()
    }
}

impl HttpFilter for TelemetryFilter {
    const CALLBACKS: Callbacks = Callbacks::REQUEST_HEADERS
        .union(Callbacks::RESPONSE_HEADERS)
        .union(Callbacks::LOG);

    fn on_request_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some(r) = &mut self.request {
            r.on_request_headers(host);
        }
        Action::Continue
    }

    fn on_response_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some(r) = &mut self.request {
            r.on_response_headers(host);
        }
        Action::Continue
    }

    fn on_log<H: StreamHost>(&mut self, host: &H) {
        if let Some(r) = &mut self.request {
            r.on_log(host);
        }
    }
}

#[cfg(test)]
mod tests;
