//! How filters hand their verdict on a request to other filters and to access logs.
//!
//! Each filter publishes a short string under its key with [`publish`] (the keys belong to
//! the capabilities: `mesh_core::decision`). In Envoy it lands in
//! the request's filter state as `wasm.<key>` (readable by another module through
//! [`read`], and by Envoy's access log as `%FILTER_STATE(wasm.<key>:PLAIN)%`). Inside the
//! suite module the same values travel in memory instead, with no host call.

use crate::{HostError, Properties};

/// What Envoy puts before a key a module writes to filter state.
pub const PREFIX: &str = "wasm.";

/// Publishes `value` under `key` for this request.
pub fn publish<H: Properties>(host: &H, key: &str, value: &str) -> Result<(), HostError> {
    host.set_property(&[key], value.as_bytes())
}

/// Reads what another filter published under `key` for this request.
pub fn read<H: Properties>(host: &H, key: &str) -> Option<String> {
    host.property(&[key]).ok().flatten().map(text)
}

/// `f` of what another filter published under `key` (`None`: absent or unreadable), lent
/// without a copy where the host holds it in memory (a pass). `None` only from a host that
/// failed after calling `f`.
pub fn with<H: Properties, T>(host: &H, key: &str, f: impl FnOnce(Option<&str>) -> T) -> Option<T> {
    let mut f = Some(f);
    let lent = host.property_with(&[key], |v| {
        let text = v.map(crate::utf8_lossy);
        f.take().map(|f| f(text.as_deref()))
    });
    match lent {
        Ok(Some(out)) => Some(out),
        _ => f.map(|f| f(None)),
    }
}

/// A published value as text (lossy where another module wrote bytes that are not UTF-8).
pub fn text(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
