//! The suite proxy-wasm filter: every capability its config enables, in one filter pass.
//!
//! Configuration: `{"telemetry": .., "intentions": .., "ratelimit": .., "canary": ..}`, each
//! key optional and each value exactly that capability's own configuration. The capabilities
//! are one ordered list ([`CAPABILITIES`], written once in [`suite!`]): a request meets them in
//! that order, its response and log in the reverse one, so telemetry starts first and reports
//! last. A capability that answers the request itself (403, 400, 429) stops the ones after it.
//! Verdicts travel between capabilities in memory ([`sdk_shim::compose`]); they are also
//! written to Envoy filter state (`wasm.mesh.*`) as the single modules do, unless
//! `"export_decisions": false` saves those host calls. Stats and logs are those of the
//! single-capability modules.

use filter_canary::CanaryCapability;
use filter_intentions::Intentions;
use filter_ratelimit::RateLimit;
use filter_telemetry::TelemetryCapability;
use mesh_core::{Capability, CapabilityRoot, ConfigError};
use sdk_shim::compose::{PassHost, PassState};
use sdk_shim::{
    host_log, Action, Callbacks, ConfigHost, HttpFilter, LogLevel, RootFilter, StreamHost,
};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One capability as the suite, the bench, xtask and the e2e harness see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityInfo {
    /// Its key in the suite's configuration, its module's name (`<name>.wasm`) and its
    /// Envoy `root_id` in the shipped examples.
    pub name: &'static str,
    /// Where it publishes its verdict, if it has one.
    pub decision_key: Option<&'static str>,
}

/// One configured capability root, or none when its key is absent.
#[derive(Debug)]
struct Part<C: Capability>(Option<CapabilityRoot<C>>);

impl<C: Capability> Default for Part<C> {
    fn default() -> Self {
        Self(None)
    }
}

impl<C: Capability> Part<C> {
    /// Configures the capability from its part of the suite config; the capability logs its
    /// own error line (naming its field), so the suite only adds where it came from.
    fn configure<H: ConfigHost>(
        host: &H,
        spec: Option<Box<RawValue>>,
    ) -> Result<Self, ConfigError> {
        let Some(spec) = spec else {
            return Ok(Self(None));
        };
        let mut root = CapabilityRoot::<C>::default();
        if root.on_configure(host, spec.get().as_bytes()) {
            Ok(Self(Some(root)))
        } else {
            Err(ConfigError::new(
                C::NAME,
                "rejected by the capability (see the line above)",
            ))
        }
    }

    fn new_http(&self) -> Option<C::Filter> {
        self.0.as_ref().map(|root| C::filter(root.bound()))
    }

    /// Request headers this capability reads per request at most (0 when not configured).
    fn request_header_reads(&self) -> usize {
        self.0
            .as_ref()
            .and_then(CapabilityRoot::bound)
            .map_or(0, |b| C::request_header_reads(b))
    }

    /// This capability's decision key, and whether this pass decides it.
    fn decision(&self) -> Option<(&'static str, bool)> {
        C::DECISION_KEY.map(|k| (k, self.0.is_some()))
    }
}

/// Runs `f` on a capability's filter if it is configured; `Continue` otherwise.
fn each<F: HttpFilter>(f: &mut Option<F>, run: impl FnOnce(&mut F) -> Action) -> Action {
    f.as_mut().map_or(Action::Continue, run)
}

/// Calls `$method($args)` on the configured filters of `$self`, last field first.
macro_rules! reversed {
    ($self:ident, $method:ident($($arg:expr),*); ) => {};
    ($self:ident, $method:ident($($arg:expr),*); $first:ident $(, $rest:ident)*) => {
        reversed!($self, $method($($arg),*); $($rest),*);
        if let Some(f) = &mut $self.$first {
            // A response or log callback never stops the pass.
            let _ = f.$method($($arg),*);
        }
    };
}

/// Defines the suite from the ordered list of its capabilities: its configuration, its root,
/// its per-request filter and [`CAPABILITIES`]. Each field is named after the capability's
/// `NAME` (a unit test checks it), which is its key in the configuration.
macro_rules! suite {
    ($($field:ident: $cap:ty),+ $(,)?) => {
        /// The capabilities, in the order a request meets them.
        pub const CAPABILITIES: [CapabilityInfo; [$(stringify!($field)),+].len()] = [$(
            CapabilityInfo {
                name: <$cap as Capability>::NAME,
                decision_key: <$cap as Capability>::DECISION_KEY,
            }
        ),+];

        /// The suite configuration before each part is handed to its capability: each part
        /// stays the JSON text it was (no `serde_json::Value` round trip, which would ship a
        /// JSON tree and writer).
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SuiteSpec {
            $(
                #[serde(default)]
                $field: Option<Box<RawValue>>,
            )+
            /// Write verdicts to filter state too (default true).
            #[serde(default)]
            export_decisions: Option<bool>,
        }

        /// Parses and validates a suite configuration the way [`SuiteRoot`] does, without a
        /// host (for native tools such as the `mfctl` CLI): a capability's error is prefixed
        /// with its key (`ratelimit.rules[0].limit.per`).
        pub fn validate(config: &[u8]) -> Result<(), ConfigError> {
            let spec: SuiteSpec = mesh_core::parse_json(config)?;
            $(
                if let Some(part) = &spec.$field {
                    <$cap as Capability>::compile(part.get().as_bytes())
                        .map_err(|e| e.within(<$cap as Capability>::NAME))?;
                }
            )+
            Ok(())
        }

        /// Validates `config` as capability `name`'s own configuration; `None` for a name
        /// that is not one of [`CAPABILITIES`].
        pub fn validate_capability(name: &str, config: &[u8]) -> Option<Result<(), ConfigError>> {
            $(
                if name == <$cap as Capability>::NAME {
                    return Some(<$cap as Capability>::compile(config).map(|_| ()));
                }
            )+
            None
        }

        /// The root context: the configured capabilities.
        #[derive(Debug, Default)]
        pub struct SuiteRoot {
            export_decisions: bool,
            /// Every capability's decision key, and whether this pass decides it: computed
            /// once per configuration, so a request's pass state allocates nothing.
            decision_keys: Vec<(&'static str, bool)>,
            /// Whether the pass reads the request header map whole (cheaper from two reads).
            whole_map: bool,
            $($field: Part<$cap>,)+
        }

        impl SuiteRoot {
            fn configure<H: ConfigHost>(host: &H, config: &[u8]) -> Result<Self, ConfigError> {
                let spec: SuiteSpec = mesh_core::parse_json(config)?;
                let mut root = Self {
                    export_decisions: spec.export_decisions.unwrap_or(true),
                    decision_keys: Vec::new(),
                    whole_map: false,
                    $($field: Part::configure(host, spec.$field)?,)+
                };
                root.decision_keys = [$(root.$field.decision()),+].into_iter().flatten().collect();
                let reads = 0 $(+ root.$field.request_header_reads())+;
                root.whole_map = mesh_core::capability::whole_map_pays(reads);
                Ok(root)
            }
        }

        impl RootFilter for SuiteRoot {
            type Http = SuiteFilter;

            fn on_configure<H: ConfigHost>(&mut self, host: &H, config: &[u8]) -> bool {
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
                    $($field: self.$field.new_http(),)+
                    state: PassState::new(&self.decision_keys),
                    export_decisions: self.export_decisions,
                    whole_map: self.whole_map,
                    paused_at: None,
                    end_of_stream: false,
                }
            }
        }

        /// One request through every configured capability.
        #[derive(Debug)]
        pub struct SuiteFilter {
            $($field: Option<<$cap as Capability>::Filter>,)+
            state: PassState,
            export_decisions: bool,
            whole_map: bool,
            /// The capability (by position) that paused the request headers, waiting for a
            /// call it made; the ones after it run when it is done.
            paused_at: Option<usize>,
            end_of_stream: bool,
        }

        impl SuiteFilter {
            /// Runs the request headers through the capabilities from position `from` on.
            fn request_from<H: StreamHost>(&mut self, host: &H, from: usize) -> Action {
                let h = &PassHost::new(host, &self.state, self.export_decisions)
                    .with_whole_request_map(self.whole_map);
                let eos = self.end_of_stream;
                let mut at = 0;
                // A capability that answered the request itself, or waits for a call, stops
                // the ones after it (telemetry, first, only observes and never answers).
                $(
                    if at >= from
                        && each(&mut self.$field, |f| f.on_request_headers(h, eos)) == Action::Pause
                    {
                        self.paused_at = Some(at);
                        return Action::Pause;
                    }
                    at += 1;
                )+
                let _ = at;
                self.paused_at = None;
                Action::Continue
            }
        }

        impl HttpFilter for SuiteFilter {
            // What any of the capabilities uses.
            const CALLBACKS: Callbacks = Callbacks::NONE
                $(.union(<<$cap as Capability>::Filter as HttpFilter>::CALLBACKS))+;

            fn on_request_headers<H: StreamHost>(&mut self, host: &H, eos: bool) -> Action {
                self.end_of_stream = eos;
                self.request_from(host, 0)
            }

            /// The answer goes to the capability that paused the request; when it is done,
            /// the capabilities after it run, and the request resumes if they all continue.
            fn on_grpc_response<H: StreamHost>(
                &mut self,
                host: &H,
                token: u32,
                response: sdk_shim::GrpcResponse,
            ) -> Action {
                let Some(paused) = self.paused_at else {
                    return Action::Pause;
                };
                let mut at = 0;
                let mut answered = Action::Pause;
                {
                    let h = &PassHost::new(host, &self.state, self.export_decisions)
                        .with_whole_request_map(self.whole_map);
                    let mut response = Some(response);
                    $(
                        if at == paused {
                            if let (Some(f), Some(r)) = (&mut self.$field, response.take()) {
                                answered = f.on_grpc_response(h, token, r);
                            }
                        }
                        at += 1;
                    )+
                    let _ = at;
                }
                match answered {
                    Action::Continue => self.request_from(host, paused + 1),
                    Action::Pause => Action::Pause,
                }
            }

            fn on_response_headers<H: StreamHost>(&mut self, host: &H, eos: bool) -> Action {
                let h = &PassHost::new(host, &self.state, self.export_decisions);
                reversed!(self, on_response_headers(h, eos); $($field),+);
                Action::Continue
            }

            fn on_log<H: StreamHost>(&mut self, host: &H) {
                let h = &PassHost::new(host, &self.state, self.export_decisions);
                reversed!(self, on_log(h); $($field),+);
            }
        }
    };
}

suite! {
    telemetry: TelemetryCapability,
    intentions: Intentions,
    ratelimit: RateLimit,
    canary: CanaryCapability,
}

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(SuiteRoot);

#[cfg(test)]
mod tests;
