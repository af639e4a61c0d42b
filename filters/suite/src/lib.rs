//! The suite proxy-wasm filter: every capability its config enables, in one filter pass.
//!
//! Configuration: `{"telemetry": .., "intentions": .., "ratelimit": .., "canary": ..}`, each
//! key optional and each value exactly that filter's own configuration. Per request the order
//! is telemetry (start), intentions, ratelimit, canary, then telemetry (finish) in `on_log`.
//! A capability that answers the request itself (403, 400, 429) stops the ones after it.
//! Verdicts travel between capabilities in memory ([`sdk_shim::compose`]); they are also
//! written to Envoy filter state (`wasm.mesh.*`) as the single modules do, unless
//! `"export_decisions": false` saves those host calls. Stats and logs are those of the
//! single-capability modules.

use filter_canary::CanaryRoot;
use filter_intentions::IntentionsRoot;
use filter_ratelimit::RateLimitRoot;
use filter_telemetry::TelemetryRoot;
use mesh_core::ConfigError;
use sdk_shim::compose::{PassHost, PassState};
use sdk_shim::{
    host_log, Action, Callbacks, Host, HttpCallResponse, HttpFilter, HttpHost, LogLevel, RootFilter,
};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The suite configuration before each part is handed to its capability: each part stays the
/// JSON text it was (no `serde_json::Value` round trip, which would ship a JSON tree and writer).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteSpec {
    #[serde(default)]
    telemetry: Option<Box<RawValue>>,
    #[serde(default)]
    intentions: Option<Box<RawValue>>,
    #[serde(default)]
    ratelimit: Option<Box<RawValue>>,
    #[serde(default)]
    canary: Option<Box<RawValue>>,
    /// Write verdicts to filter state too (default true).
    #[serde(default)]
    export_decisions: Option<bool>,
}

/// One configured capability root, or none when its key is absent.
#[derive(Debug, Default)]
struct Part<R>(Option<R>);

impl<R: RootFilter + Default> Part<R> {
    /// Configures the capability from its part of the suite config; the capability logs its
    /// own error line (naming its field), so the suite only adds where it came from.
    fn configure<H: Host>(
        host: &H,
        key: &str,
        spec: Option<Box<RawValue>>,
    ) -> Result<Self, ConfigError> {
        let Some(spec) = spec else {
            return Ok(Self(None));
        };
        let mut root = R::default();
        if root.on_configure(host, spec.get().as_bytes()) {
            Ok(Self(Some(root)))
        } else {
            Err(ConfigError::new(
                key,
                "rejected by the capability (see the line above)",
            ))
        }
    }

    fn new_http(&self) -> Option<R::Http> {
        self.0.as_ref().map(R::new_http)
    }
}

/// The root context: the configured capabilities.
#[derive(Debug, Default)]
pub struct SuiteRoot {
    export_decisions: bool,
    telemetry: Part<TelemetryRoot>,
    intentions: Part<IntentionsRoot>,
    ratelimit: Part<RateLimitRoot>,
    canary: Part<CanaryRoot>,
}

// === impl SuiteRoot ===

impl SuiteRoot {
    fn configure<H: Host>(host: &H, config: &[u8]) -> Result<Self, ConfigError> {
        let spec: SuiteSpec = mesh_core::parse_json(config)?;
        Ok(Self {
            export_decisions: spec.export_decisions.unwrap_or(true),
            telemetry: Part::configure(host, "telemetry", spec.telemetry)?,
            intentions: Part::configure(host, "intentions", spec.intentions)?,
            ratelimit: Part::configure(host, "ratelimit", spec.ratelimit)?,
            canary: Part::configure(host, "canary", spec.canary)?,
        })
    }
}

impl RootFilter for SuiteRoot {
    type Http = SuiteFilter;

    fn on_configure<H: Host>(&mut self, host: &H, config: &[u8]) -> bool {
        match Self::configure(host, config) {
            Ok(root) => {
                *self = root;
                true
            }
            Err(e) => {
                host_log!(host, LogLevel::Error, "suite: invalid configuration: {e}");
                false
            }
        }
    }

    fn new_http(&self) -> SuiteFilter {
        SuiteFilter {
            telemetry: self.telemetry.new_http(),
            intentions: self.intentions.new_http(),
            ratelimit: self.ratelimit.new_http(),
            canary: self.canary.new_http(),
            state: PassState::owning(
                self.canary.0.is_some(),
                self.ratelimit.0.is_some(),
                self.intentions.0.is_some(),
            ),
            export_decisions: self.export_decisions,
        }
    }

    fn on_tick<H: Host>(&mut self, host: &H) {
        let Self {
            export_decisions: _,
            telemetry,
            intentions,
            ratelimit,
            canary,
        } = self;
        if let Some(r) = &mut telemetry.0 {
            r.on_tick(host);
        }
        if let Some(r) = &mut intentions.0 {
            r.on_tick(host);
        }
        if let Some(r) = &mut ratelimit.0 {
            r.on_tick(host);
        }
        if let Some(r) = &mut canary.0 {
            r.on_tick(host);
        }
    }
}

/// One request through every configured capability.
#[derive(Debug)]
pub struct SuiteFilter {
    telemetry: Option<<TelemetryRoot as RootFilter>::Http>,
    intentions: Option<<IntentionsRoot as RootFilter>::Http>,
    ratelimit: Option<<RateLimitRoot as RootFilter>::Http>,
    canary: Option<<CanaryRoot as RootFilter>::Http>,
    state: PassState,
    export_decisions: bool,
}

/// Runs `f` on a capability's filter if it is configured; `Continue` otherwise.
fn each<F: HttpFilter>(f: &mut Option<F>, run: impl FnOnce(&mut F) -> Action) -> Action {
    f.as_mut().map_or(Action::Continue, run)
}

// === impl SuiteFilter ===

impl HttpFilter for SuiteFilter {
    // What any of the capabilities uses.
    const CALLBACKS: Callbacks = <<TelemetryRoot as RootFilter>::Http as HttpFilter>::CALLBACKS
        .union(<<IntentionsRoot as RootFilter>::Http as HttpFilter>::CALLBACKS)
        .union(<<RateLimitRoot as RootFilter>::Http as HttpFilter>::CALLBACKS)
        .union(<<CanaryRoot as RootFilter>::Http as HttpFilter>::CALLBACKS);

    fn on_request_headers<H: HttpHost>(&mut self, host: &H, eos: bool) -> Action {
        let h = &PassHost::new(host, &self.state, self.export_decisions);
        // Telemetry only observes; its answer never stops the request.
        each(&mut self.telemetry, |f| f.on_request_headers(h, eos));
        // A capability that answered the request itself stops the ones after it.
        if each(&mut self.intentions, |f| f.on_request_headers(h, eos)) == Action::Pause {
            return Action::Pause;
        }
        if each(&mut self.ratelimit, |f| f.on_request_headers(h, eos)) == Action::Pause {
            return Action::Pause;
        }
        each(&mut self.canary, |f| f.on_request_headers(h, eos))
    }

    fn on_response_headers<H: HttpHost>(&mut self, host: &H, eos: bool) -> Action {
        let h = &PassHost::new(host, &self.state, self.export_decisions);
        each(&mut self.canary, |f| f.on_response_headers(h, eos));
        each(&mut self.ratelimit, |f| f.on_response_headers(h, eos));
        each(&mut self.intentions, |f| f.on_response_headers(h, eos));
        each(&mut self.telemetry, |f| f.on_response_headers(h, eos));
        Action::Continue
    }

    fn on_log<H: HttpHost>(&mut self, host: &H) {
        let h = &PassHost::new(host, &self.state, self.export_decisions);
        if let Some(f) = &mut self.canary {
            f.on_log(h);
        }
        if let Some(f) = &mut self.ratelimit {
            f.on_log(h);
        }
        if let Some(f) = &mut self.intentions {
            f.on_log(h);
        }
        if let Some(f) = &mut self.telemetry {
            f.on_log(h);
        }
    }

    fn on_http_call_response<H: HttpHost>(&mut self, host: &H, response: HttpCallResponse) {
        let h = &PassHost::new(host, &self.state, self.export_decisions);
        if let Some(f) = &mut self.ratelimit {
            f.on_http_call_response(h, response.clone());
        }
        if let Some(f) = &mut self.canary {
            f.on_http_call_response(h, response);
        }
    }
}

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(SuiteRoot);

#[cfg(test)]
mod tests;
