//! Filter lifecycle traits, generic over the host so the same filter runs in proxy-wasm and
//! natively against a fake.

use crate::{Host, HttpHost};

/// What the proxy does after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Stop iteration until the filter resumes the request (or sent a local reply).
    Pause,
}

/// An answer to [`crate::OutboundCalls::http_call`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpCallResponse {
    pub token: u32,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// One instance per plugin configuration (and per worker): parses the configuration and
/// makes a filter for each request.
pub trait RootFilter: 'static {
    type Http: HttpFilter + 'static;
    /// Parses and compiles `config`; `false` makes the proxy reject the configuration.
    fn on_configure<H: Host>(&mut self, host: &H, config: &[u8]) -> bool;
    /// The filter for one request. Always returns one: an unconfigured root is rejected
    /// earlier by the proxy, and a filter must decide what to do without configuration.
    fn new_http(&self) -> Self::Http;
    fn on_tick<H: Host>(&mut self, host: &H) {
        let _ = host;
    }
}

/// Per-request callbacks. Defaults continue and do nothing.
pub trait HttpFilter {
    fn on_request_headers<H: HttpHost>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let _ = (host, end_of_stream);
        Action::Continue
    }
    fn on_response_headers<H: HttpHost>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let _ = (host, end_of_stream);
        Action::Continue
    }
    /// Called once the request is complete, for logs and metrics.
    fn on_log<H: HttpHost>(&mut self, host: &H) {
        let _ = host;
    }
    fn on_http_call_response<H: HttpHost>(&mut self, host: &H, response: HttpCallResponse) {
        let _ = (host, response);
    }
}
