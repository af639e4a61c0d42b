//! Bucket keys: where they come from in a request, how they are normalized, and the 64-bit
//! fingerprint that places them in the slot table.
//!
//! - Header keys use the header's *first* value, read with one host call. A client that sends
//!   the header twice gains nothing it could not get by changing the value, and a component
//!   that owns the header (an auth filter setting an API key) must replace it, not append.
//!   Any bytes are accepted (non-UTF-8, empty, huge): they are hashed, never stored.
//! - Address keys use Envoy's `source.address` with the port stripped (`1.2.3.4:5` and
//!   `[::1]:5` both handled; IPv4-mapped IPv6 counts as the IPv4 address). The filter never
//!   reads `X-Forwarded-For`.
//! - Principal keys use the first URI SAN of the verified peer certificate
//!   (`connection.uri_san_peer_certificate`) when it is a `spiffe://` URI.
//!
//! A request without the input (header absent, no peer address, no client certificate or a
//! non-SPIFFE SAN) is not limited by that rule.

use std::net::IpAddr;

/// Envoy property holding the downstream peer address (`ip:port`, `[ip6]:port`, or a pipe).
pub const ADDRESS_PROPERTY: [&str; 2] = ["source", "address"];
/// Envoy property holding the first URI SAN of the verified peer certificate.
pub const PRINCIPAL_PROPERTY: [&str; 2] = ["connection", "uri_san_peer_certificate"];

/// Fingerprint of "no owner": seeded slots and never a real key's fingerprint.
pub const EMPTY_FINGERPRINT: u64 = 0;

/// A streaming 64-bit hash (FNV-1a with a final avalanche so every bit counts when taken
/// modulo the table size). The same on every worker and on 32-bit wasm.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(u64);

// === impl Fingerprint ===

impl Fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// Starts a fingerprint for a rule; the rule's name keeps rules apart in the shared table.
    pub fn for_rule(rule: &str) -> Self {
        Self(Self::OFFSET).bytes(rule.as_bytes()).byte(0xff)
    }

    pub fn byte(self, b: u8) -> Self {
        Self((self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME))
    }

    pub fn bytes(self, bs: &[u8]) -> Self {
        bs.iter().fold(self, |h, b| h.byte(*b))
    }

    /// The final value, never [`EMPTY_FINGERPRINT`].
    pub fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^= z >> 33;
        if z == EMPTY_FINGERPRINT {
            1
        } else {
            z
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

/// The principal key from the peer certificate's first URI SAN, if it is a SPIFFE ID.
pub fn principal(raw: &[u8]) -> Option<&[u8]> {
    (raw.len() > "spiffe://".len() && raw.starts_with(b"spiffe://")).then_some(raw)
}

#[cfg(test)]
mod tests;
