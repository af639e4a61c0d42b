//! Bucket keys: where they come from in a request, how they are normalized, and the keyed
//! 64-bit fingerprint that places them in the slot table.
//!
//! - Header keys use the header's *first* value, read with one host call. A client that sends
//!   the header twice gains nothing it could not get by changing the value, and a component
//!   that owns the header (an auth filter setting an API key) must replace it, not append.
//!   Any bytes are accepted (non-UTF-8, empty, huge): they are hashed, never stored.
//! - Address keys use the TCP peer that Envoy stamps on the connection as filter state
//!   [`PEER_STAMP`] (`envoy.filters.network.set_filter_state` with
//!   `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%`). Not `source.address`: Envoy 1.40 reports
//!   there the address it derived from `x-forwarded-for` (under `use_remote_address: false`,
//!   `xff_num_trusted_hops` or an original-IP detection extension), which any client can vary,
//!   and proxy-wasm offers no other attribute for the socket's peer. Without the stamp every
//!   request shares one bucket per rule, so no header mints a bucket. With `trusted_hops: N` the
//!   client is the entry N hops back along `x-forwarded-for` (see [`client_behind`]). Ports are
//!   stripped (`1.2.3.4:5`, `[::1]:5`); IPv4-mapped IPv6 counts as the IPv4 address.
//! - Principal keys use the first URI SAN of the verified peer certificate
//!   (`connection.uri_san_peer_certificate`) when it is a `spiffe://` URI.
//!
//! A request without the input (header absent, no peer address, no client certificate or a
//! non-SPIFFE SAN) is not limited by that rule.

use mesh_core::hash::{SipHasher13, SipKey};
use std::net::IpAddr;

/// Name of the connection filter state object holding the TCP peer's address, set by Envoy's
/// network `set_filter_state` filter (clients cannot set filter state).
pub const PEER_STAMP: &str = "mesh.peer_address";
/// The property path of [`PEER_STAMP`].
pub const PEER_PROPERTY: [&str; 2] = ["filter_state", PEER_STAMP];
/// The header trusted proxies append the client's address to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The descriptor value a global check sends for an address key on a connection without
/// the peer stamp: one shared value, as locally one shared bucket.
pub const UNSTAMPED_VALUE: &str = "unknown";

/// Fingerprint of "no owner": seeded slots and never a real key's fingerprint.
pub const EMPTY_FINGERPRINT: u64 = 0;

/// A key's 64-bit fingerprint: SipHash-1-3 under the table's secret [`SipKey`] (see
/// [`crate::table::load_or_create_secret`]), over the rule's name and the key's bytes.
///
/// Keyed so that clients cannot compute offline which of their keys land in someone else's
/// slot (an unkeyed hash let a client who picks key values aim them at a victim's busy slot
/// and have it limited early). The same on every worker, since they share the secret, and on
/// 32-bit wasm. Streams into a fixed state: no allocation, whatever the key's size.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(SipHasher13);

// === impl Fingerprint ===

impl Fingerprint {
    /// Starts a fingerprint for a rule; the rule's name keeps rules apart in the shared table.
    /// `Copy`: build it once per configuration, finish a copy per request.
    pub fn for_rule(secret: SipKey, rule: &str) -> Self {
        let mut h = SipHasher13::new(secret);
        h.write(rule.as_bytes());
        h.write_u8(0xff);
        Self(h)
    }

    pub fn byte(mut self, b: u8) -> Self {
        self.0.write_u8(b);
        self
    }

    pub fn bytes(mut self, bs: &[u8]) -> Self {
        self.0.write(bs);
        self
    }

    /// The final value, never [`EMPTY_FINGERPRINT`].
    pub fn finish(self) -> u64 {
        match self.0.finish() {
            EMPTY_FINGERPRINT => 1,
            z => z,
        }
    }
}

/// A peer address reduced to what identifies the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddress<'a> {
    Ip(IpAddr),
    /// Not an IP address (a pipe path, or something unexpected): used as written.
    Other(&'a [u8]),
}

// === impl PeerAddress ===

impl<'a> PeerAddress<'a> {
    /// Parses Envoy's `source.address`: `1.2.3.4:80`, `[::1]:80`, a bare IP, or anything
    /// else (kept whole). `None` for an empty value.
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        if raw.is_empty() {
            return None;
        }
        let Ok(s) = std::str::from_utf8(raw) else {
            return Some(Self::Other(raw));
        };
        let host = if let Some(rest) = s.strip_prefix('[') {
            rest.split_once(']').map_or(rest, |(h, _)| h)
        } else if s.bytes().filter(|b| *b == b':').count() == 1 {
            s.split_once(':').map_or(s, |(h, _)| h)
        } else {
            s
        };
        Some(match host.parse::<IpAddr>() {
            Ok(ip) => Self::Ip(ip.to_canonical()),
            Err(_) => Self::Other(raw),
        })
    }

    /// Feeds the address to a fingerprint: the IP's octets, or the raw bytes.
    pub fn hash_into(&self, fp: Fingerprint) -> Fingerprint {
        match self {
            Self::Ip(IpAddr::V4(v4)) => fp.byte(4).bytes(&v4.octets()),
            Self::Ip(IpAddr::V6(v6)) => fp.byte(6).bytes(&v6.octets()),
            Self::Other(raw) => fp.byte(0).bytes(raw),
        }
    }
}

impl std::fmt::Display for PeerAddress<'_> {
    /// The canonical IP (`10.0.0.1`, `2001:db8::1`), or the raw value, lossily.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Other(raw) => f.write_str(&String::from_utf8_lossy(raw)),
        }
    }
}

/// The client `hops` proxies back from `peer` along `x-forwarded-for` (every value of the
/// header, in order, each a comma-separated list): hop 0 is the peer itself, hop k the k-th
/// entry from the right. A trailing entry equal to the peer is the one Envoy appended under
/// `use_remote_address: true` and is skipped, so the answer is the same either way. A chain
/// shorter than `hops` gives its leftmost entry (the first trusted proxy's view).
pub fn client_behind<'a>(peer: &'a [u8], xff: &'a [Vec<u8>], hops: u8) -> &'a [u8] {
    if hops == 0 {
        return peer;
    }
    let peer_ip = PeerAddress::parse(peer);
    let mut entries = xff
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(|b| *b == b','))
        .map(|e| e.trim_ascii())
        .peekable();
    if let (Some(last), Some(ip)) = (entries.peek(), peer_ip) {
        if PeerAddress::parse(last) == Some(ip) {
            entries.next();
        }
    }
    let mut client = peer;
    for e in entries.take(usize::from(hops)) {
        client = e;
    }
    client
}

/// The principal key from the peer certificate's first URI SAN, if it is a SPIFFE ID.
pub fn principal(raw: &[u8]) -> Option<&[u8]> {
    (raw.len() > "spiffe://".len() && raw.starts_with(b"spiffe://")).then_some(raw)
}

#[cfg(test)]
mod tests;
