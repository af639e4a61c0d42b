//! The capability contract: every capability is built the same four steps.
//!
//! 1. `Spec`: the configuration as written (serde, unknown fields rejected), owned by the
//!    capability's crate.
//! 2. [`Capability::compile`]: pure, parses and validates; every error names its field.
//! 3. [`Capability::bind`]: against the configuring host, once per configuration: defines the
//!    metrics (a metric that cannot be defined fails the configuration, in every capability),
//!    claims the plugin's shared-data [`sdk_shim::Namespace`], seeds shared state.
//! 4. [`Capability::filter`]: the per-request [`HttpFilter`], generic over the stream host.
//!
//! [`CapabilityRoot`] turns any capability into the proxy's root filter: one `on_configure`
//! for all of them, with one error line per failure (`<name>: invalid configuration: <field>:
//! <reason>` or `<name>: cannot set up <what>: <host error>`).

use crate::ConfigError;
use sdk_shim::compose::{PassHost, PassState};
use sdk_shim::{
    host_log, Action, Callbacks, ConfigHost, GrpcResponse, HostError, HttpFilter, LogLevel,
    RootFilter, StreamHost,
};
use std::fmt;
use std::sync::Arc;

/// One capability of the mesh (canary, rate limiting, intentions, telemetry).
pub trait Capability: 'static {
    /// Its name: the log prefix and its key in the suite's configuration.
    const NAME: &'static str;
    /// The key it publishes its verdict under ([`crate::decision`]), if it has one.
    const DECISION_KEY: Option<&'static str>;
    /// The validated configuration, host-independent.
    type Compiled;
    /// The configuration bound to a host, shared by every request of that configuration.
    type Bound: fmt::Debug + 'static;
    /// The per-request filter.
    type Filter: HttpFilter + 'static;

    /// Parses (unknown fields are errors) and validates `config`; empty means the defaults.
    fn compile(config: &[u8]) -> Result<Self::Compiled, ConfigError>;
    /// Sets the compiled configuration up against the configuring host.
    fn bind<H: ConfigHost>(host: &H, compiled: Self::Compiled) -> Result<Self::Bound, SetupError>;
    /// The filter for one request; `None` before any configuration (it must let requests
    /// through untouched then).
    fn filter(bound: Option<&Arc<Self::Bound>>) -> Self::Filter;
    /// How many request headers a request's filter reads at most in its request-headers
    /// callback, a whole-map read counting as two; asked once per configuration. From two
    /// on, the host reads the whole request map once and serves every read from it
    /// ([`PassHost::with_whole_request_map`]).
    fn request_header_reads(bound: &Self::Bound) -> usize;
}

/// Whether reading `reads` request headers costs less as one whole-map read: in Envoy a
/// header read that returns data costs about 10.5k instructions, the whole map of a mesh
/// request (about 20 headers) 16-20k.
pub fn whole_map_pays(reads: usize) -> bool {
    reads >= 2
}

/// A host failure while binding a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupError {
    /// What could not be set up, e.g. `metrics` or `the bucket table`.
    pub what: &'static str,
    pub error: HostError,
}

// === impl SetupError ===

impl SetupError {
    pub fn new(what: &'static str, error: HostError) -> Self {
        Self { what, error }
    }

    /// Maps a host error to a setup error for `what` (for `map_err`).
    pub fn of(what: &'static str) -> impl Fn(HostError) -> Self {
        move |error| Self { what, error }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot set up {}: {}", self.what, self.error)
    }
}

impl std::error::Error for SetupError {}

/// The proxy's root filter for capability `C`: holds the bound configuration.
pub struct CapabilityRoot<C: Capability> {
    bound: Option<Arc<C::Bound>>,
    /// Whether a request reads the request map whole: decided once per configuration (the
    /// count walks the rules or services, which must not happen per request).
    whole_map: bool,
}

// === impl CapabilityRoot ===

impl<C: Capability> CapabilityRoot<C> {
    /// The bound configuration, once configured.
    pub fn bound(&self) -> Option<&Arc<C::Bound>> {
        self.bound.as_ref()
    }

    /// Compiles and binds `config`; the error is the one line to log.
    pub fn configure<H: ConfigHost>(host: &H, config: &[u8]) -> Result<Arc<C::Bound>, String> {
        let compiled =
            C::compile(config).map_err(|e| format!("{}: invalid configuration: {e}", C::NAME))?;
        C::bind(host, compiled)
            .map(Arc::new)
            .map_err(|e| format!("{}: {e}", C::NAME))
    }
}

impl<C: Capability> Default for CapabilityRoot<C> {
    fn default() -> Self {
        Self {
            bound: None,
            whole_map: false,
        }
    }
}

impl<C: Capability> fmt::Debug for CapabilityRoot<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapabilityRoot")
            .field("capability", &C::NAME)
            .field("bound", &self.bound)
            .finish()
    }
}

impl<C: Capability> RootFilter for CapabilityRoot<C> {
    type Http = CapabilityFilter<C>;

    fn on_configure<H: ConfigHost>(&mut self, host: &H, config: &[u8]) -> bool {
        match Self::configure(host, config) {
            Ok(bound) => {
                self.whole_map = whole_map_pays(C::request_header_reads(&bound));
                self.bound = Some(bound);
                true
            }
            Err(line) => {
                host_log!(host, LogLevel::Error, "{line}");
                false
            }
        }
    }

    fn new_http(&self) -> CapabilityFilter<C> {
        CapabilityFilter {
            inner: C::filter(self.bound.as_ref()),
            whole_map: self.whole_map,
            state: PassState::default(),
        }
    }
}

/// A single-capability module's filter: the capability's own, with its request-header
/// callbacks given a [`PassHost`] that reads the request map whole when that is cheaper, and
/// connection properties once per request. Verdicts still go to the host as they are made.
pub struct CapabilityFilter<C: Capability> {
    inner: C::Filter,
    whole_map: bool,
    state: PassState,
}

// === impl CapabilityFilter ===

impl<C: Capability> CapabilityFilter<C> {
    /// The capability's own filter.
    pub fn inner(&self) -> &C::Filter {
        &self.inner
    }
}

impl<C: Capability> fmt::Debug for CapabilityFilter<C>
where
    C::Filter: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapabilityFilter")
            .field("inner", &self.inner)
            .field("whole_map", &self.whole_map)
            .finish()
    }
}

impl<C: Capability> HttpFilter for CapabilityFilter<C> {
    const CALLBACKS: Callbacks = <C::Filter as HttpFilter>::CALLBACKS;

    fn on_request_headers<H: StreamHost>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let h = PassHost::new(host, &self.state, true).with_whole_request_map(self.whole_map);
        self.inner.on_request_headers(&h, end_of_stream)
    }
    fn on_grpc_response<H: StreamHost>(
        &mut self,
        host: &H,
        token: u32,
        response: GrpcResponse,
    ) -> Action {
        let h = PassHost::new(host, &self.state, true).with_whole_request_map(self.whole_map);
        self.inner.on_grpc_response(&h, token, response)
    }
    fn on_response_headers<H: StreamHost>(&mut self, host: &H, end_of_stream: bool) -> Action {
        self.inner.on_response_headers(host, end_of_stream)
    }
    fn on_log<H: StreamHost>(&mut self, host: &H) {
        self.inner.on_log(host);
    }
}

#[cfg(test)]
mod tests;
