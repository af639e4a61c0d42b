//! The telemetry proxy-wasm filter: thin glue that configures mesh-telemetry and runs it on each request.
//!
//! The suite filter reuses [`TelemetryRoot`] to configure, [`TelemetryFilter::new`] per request
//! (telemetry starts before the other capabilities and finishes after them), and hands the
//! other filters' verdicts over in memory with [`TelemetryFilter::request`] and
//! [`RequestTelemetry::set_decision`].

use mesh_telemetry::{RequestTelemetry, Telemetry, TelemetryConfig};
use sdk_shim::{host_log, Action, Callbacks, Host, HttpFilter, HttpHost, LogLevel, RootFilter};
use std::sync::Arc;

/// One plugin configuration: the validated config and the worker's series, shared by `Arc`.
#[derive(Debug, Default)]
pub struct TelemetryRoot {
    telemetry: Option<Arc<Telemetry>>,
}

impl TelemetryRoot {
    /// The configured telemetry, once `on_configure` accepted a configuration.
    pub fn shared(&self) -> Option<Arc<Telemetry>> {
        self.telemetry.clone()
    }

    /// Parses and validates `config`, logging one error line when it is rejected.
    pub fn compile<H: Host>(host: &H, config: &[u8]) -> Option<TelemetryConfig> {
        match TelemetryConfig::from_json(config) {
            Ok(c) => Some(c),
            Err(e) => {
                host_log!(
                    host,
                    LogLevel::Error,
                    "telemetry: invalid configuration: {e}"
                );
                None
            }
        }
    }
}

impl RootFilter for TelemetryRoot {
    type Http = TelemetryFilter;

    fn on_configure<H: Host>(&mut self, host: &H, config: &[u8]) -> bool {
        match Self::compile(host, config) {
            Some(c) => {
                self.telemetry = Some(Arc::new(Telemetry::configure(host, c)));
                true
            }
            None => false,
        }
    }

    fn new_http(&self) -> TelemetryFilter {
        TelemetryFilter {
            request: self.telemetry.clone().map(RequestTelemetry::new),
        }
    }
}

/// Telemetry for one request; does nothing when the root has no configuration.
#[derive(Debug)]
pub struct TelemetryFilter {
    request: Option<RequestTelemetry>,
}

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

    fn on_request_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some(r) = &mut self.request {
            r.on_request_headers(host);
        }
        Action::Continue
    }

    fn on_response_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some(r) = &mut self.request {
            r.on_response_headers(host);
        }
        Action::Continue
    }

    fn on_log<H: HttpHost>(&mut self, host: &H) {
        if let Some(r) = &mut self.request {
            r.on_log(host);
        }
    }
}

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(TelemetryRoot);
