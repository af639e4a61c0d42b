//! Filter lifecycle traits, generic over the host so the same filter runs in proxy-wasm and
//! natively against a fake.

use crate::{ConfigHost, GrpcResponse, StreamHost};

/// What the proxy does after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Stop iteration until the filter resumes the request (or sent a local reply).
    Pause,
}

/// One instance per plugin configuration (and per worker): parses the configuration and
/// makes a filter for each request.
pub trait RootFilter: 'static {
    type Http: HttpFilter + 'static;
    /// Parses and compiles `config`; `false` makes the proxy reject the configuration.
    fn on_configure<H: ConfigHost>(&mut self, host: &H, config: &[u8]) -> bool;
    /// The filter for one request. Always returns one: an unconfigured root is rejected
    /// earlier by the proxy, and a filter must decide what to do without configuration.
    fn new_http(&self) -> Self::Http;
}

/// The per-request callbacks a filter implements. `cargo xtask build` drops the module's
/// exports for the others, and the proxy skips a callback the module does not export instead
/// of entering the VM to do nothing (each entry costs about half a microsecond in Envoy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callbacks(u8);

// === impl Callbacks ===

impl Callbacks {
    pub const NONE: Self = Self(0);
    pub const REQUEST_HEADERS: Self = Self(1);
    pub const RESPONSE_HEADERS: Self = Self(2);
    pub const LOG: Self = Self(4);
    /// Answers of the filter's own gRPC calls.
    pub const GRPC_RESPONSE: Self = Self(8);
    pub const ALL: Self = Self(15);

    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// The byte `export_root_filter!` stores in the module's `mesh.callbacks` section.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The callbacks of a `mesh.callbacks` byte.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// Each forwarded callback with the proxy-wasm export that delivers it: the one table
    /// `cargo xtask build` trims a module's exports by.
    pub const EXPORTS: [(Self, &'static str); 5] = [
        (Self::REQUEST_HEADERS, "proxy_on_request_headers"),
        (Self::RESPONSE_HEADERS, "proxy_on_response_headers"),
        (Self::LOG, "proxy_on_log"),
        // A unary call ends in one of these two: a message, or a status.
        (Self::GRPC_RESPONSE, "proxy_on_grpc_receive"),
        (Self::GRPC_RESPONSE, "proxy_on_grpc_close"),
    ];

    /// Exports the adapter never forwards to a filter: the SDK defines them all, and the
    /// proxy enters the VM for each one it finds (a body callback per data frame).
    pub const NEVER_FORWARDED: [&'static str; 15] = [
        "proxy_on_http_call_response",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
        "proxy_on_done",
        "proxy_on_new_connection",
        "proxy_on_downstream_data",
        "proxy_on_downstream_connection_close",
        "proxy_on_upstream_data",
        "proxy_on_upstream_connection_close",
        "proxy_on_queue_ready",
        "proxy_on_foreign_function",
        // Streams only: Envoy delivers a unary call's answer without metadata callbacks.
        "proxy_on_grpc_receive_initial_metadata",
        "proxy_on_grpc_receive_trailing_metadata",
    ];

    /// The exports a module whose filter uses these callbacks does not need.
    pub fn unused_exports(self) -> Vec<&'static str> {
        let forwarded = Self::EXPORTS
            .iter()
            .filter(|(c, _)| !self.contains(*c))
            .map(|(_, name)| *name);
        Self::NEVER_FORWARDED
            .iter()
            .copied()
            .chain(forwarded)
            .collect()
    }
}

/// Per-request callbacks. Defaults continue and do nothing.
pub trait HttpFilter {
    /// The callbacks below this filter overrides; others may never be called. Keeping the
    /// default (all of them) is always correct, only slower.
    const CALLBACKS: Callbacks = Callbacks::ALL;
    fn on_request_headers<H: StreamHost>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let _ = (host, end_of_stream);
        Action::Continue
    }
    fn on_response_headers<H: StreamHost>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let _ = (host, end_of_stream);
        Action::Continue
    }
    /// The answer to a gRPC call this filter started (`token` from
    /// [`crate::GrpcCalls::grpc_call`]) while its request headers were paused. `Continue`
    /// resumes the request; `Pause` keeps it paused (more answers due, or a local reply sent).
    fn on_grpc_response<H: StreamHost>(
        &mut self,
        host: &H,
        token: u32,
        response: GrpcResponse,
    ) -> Action {
        let _ = (host, token, response);
        Action::Pause
    }
    /// Called once the request is complete, for logs and metrics.
    fn on_log<H: StreamHost>(&mut self, host: &H) {
        let _ = host;
    }
}
