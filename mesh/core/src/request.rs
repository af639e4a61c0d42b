//! The parts of a request that matchers look at, read from the host with few calls.

use sdk_shim::{HeaderMap, HostError, HttpHeaders, PropertySet};
use std::borrow::Cow;

/// The connection's identity properties, read together once per request by a pass: whether
/// the peer presented a certificate, and only then its and our URI SANs (intentions and rate
/// limiting need the peer's, telemetry both).
pub const CONNECTION: PropertySet = PropertySet::gated(&[
    &["connection", "mtls"],
    &["connection", "uri_san_peer_certificate"],
    &["connection", "uri_san_local_certificate"],
]);

/// What a matcher sees: method (case-sensitive bytes), a path already prepared by the caller
/// (query stripped, maybe normalized), and all header pairs when a matcher needs them.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub method: &'a [u8],
    pub path: &'a str,
    pub headers: &'a [(String, Vec<u8>)],
}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD. Same result as
/// `String::from_utf8_lossy`, but valid input (nearly every request) takes `str::from_utf8`'s
/// word-at-a-time check instead of the byte-at-a-time chunk scan.
pub fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The request head as read from the host.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: Vec<u8>,
    /// `:path` as sent, query included.
    pub path: Vec<u8>,
    /// Every header pair, only when read with `with_headers`.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    /// Reads `:method` and `:path`; with `with_headers`, reads the whole map once instead
    /// (one host call that also yields every value of repeated headers).
    pub fn read<H: HttpHeaders>(host: &H, with_headers: bool) -> Result<Self, HostError> {
        if with_headers {
            let headers = host.headers(HeaderMap::Request)?;
            let find = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let (method, path) = (find(":method"), find(":path"));
            Ok(Self {
                method,
                path,
                headers,
            })
        } else {
            Ok(Self {
                method: host
                    .header(HeaderMap::Request, ":method")?
                    .unwrap_or_default(),
                path: host
                    .header(HeaderMap::Request, ":path")?
                    .unwrap_or_default(),
                headers: Vec::new(),
            })
        }
    }

    /// The path without query or fragment, invalid UTF-8 replaced by U+FFFD: a stray byte
    /// must not take a request out of a prefix rule it belongs to.
    pub fn path_lossy(&self) -> Cow<'_, str> {
        let end = self
            .path
            .iter()
            .position(|b| *b == b'?' || *b == b'#')
            .unwrap_or(self.path.len());
        utf8_lossy(self.path.get(..end).unwrap_or_default())
    }

    pub fn input<'a>(&'a self, path: &'a str) -> MatchInput<'a> {
        MatchInput {
            method: &self.method,
            path,
            headers: &self.headers,
        }
    }
}

#[cfg(test)]
mod tests;
