//! The parts of a request that matchers look at, read from the host with few calls.

pub use sdk_shim::utf8_lossy;
use sdk_shim::{HeaderMap, HeaderSnapshot, HeaderValue, HostError, HttpHeaders};
use std::borrow::Cow;

/// What a matcher sees: method (case-sensitive bytes), a path already prepared by the caller
/// (query stripped, maybe normalized), and the whole header map when a matcher needs it
/// (looked up in place: no allocation per header, every value of a repeated header kept).
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub method: &'a [u8],
    pub path: &'a str,
    pub headers: &'a HeaderSnapshot,
}

/// The empty header map, for inputs that carry none.
pub static NO_HEADERS: HeaderSnapshot = HeaderSnapshot::EMPTY;

/// The request head as read from the host.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Shared with the pass's map where it holds one: no copy per request.
    pub method: HeaderValue,
    /// `:path` as sent, query included.
    pub path: HeaderValue,
    /// The whole header map, only when read with `with_headers` (else empty).
    pub headers: HeaderSnapshot,
}

impl RequestHead {
    /// Reads `:method` and `:path`; with `with_headers`, reads the whole map once instead
    /// (one host call that also yields every value of repeated headers).
    pub fn read<H: HttpHeaders>(host: &H, with_headers: bool) -> Result<Self, HostError> {
        if with_headers {
            let headers = host.header_map(HeaderMap::Request)?;
            let find = |n: &str| headers.shared(n).unwrap_or_default();
            Ok(Self {
                method: find(":method"),
                path: find(":path"),
                headers,
            })
        } else {
            Ok(Self {
                method: host
                    .header_value(HeaderMap::Request, ":method")?
                    .unwrap_or_default(),
                path: host
                    .header_value(HeaderMap::Request, ":path")?
                    .unwrap_or_default(),
                headers: HeaderSnapshot::default(),
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
