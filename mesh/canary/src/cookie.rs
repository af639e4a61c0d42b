//! The sticky cookie: a random 64-bit ticket the proxy assigns once, with a tag so values the
//! proxy did not issue are recognised and re-assigned.
//!
//! Value: 32 lowercase hex digits, the ticket then `siphash24(k0, k1, ticket as 8 bytes LE)`.
//! Without a `secret` the key is fixed (it catches garbage and edited values); with a `secret`
//! shared by every proxy, forging a value needs the secret.

use crate::hash::siphash24;
use std::fmt::Write as _;

const DEFAULT_K0: u64 = 0x6d65_7368_2d63_6f6f; // "mesh-coo"
const DEFAULT_K1: u64 = 0x6b69_652d_7461_6721; // "kie-tag!"

/// Encodes and checks cookie values.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieCodec {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieCodec {
    // The keys may come from a secret: keep them out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieCodec")
    }
}

// === impl CookieCodec ===

impl CookieCodec {
    pub fn new(secret: Option<&str>) -> Self {
        match secret {
            None => Self {
                k0: DEFAULT_K0,
                k1: DEFAULT_K1,
            },
            Some(s) => {
                let mut input = Vec::with_capacity(s.len() + 1);
                input.extend_from_slice(s.as_bytes());
                input.push(0);
                let k0 = siphash24(DEFAULT_K0, DEFAULT_K1, &input);
                if let Some(last) = input.last_mut() {
                    *last = 1;
                }
                let k1 = siphash24(DEFAULT_K0, DEFAULT_K1, &input);
                Self { k0, k1 }
            }
        }
    }

    fn tag(&self, ticket: u64) -> u64 {
        siphash24(self.k0, self.k1, &ticket.to_le_bytes())
    }

    pub fn encode(&self, ticket: u64) -> String {
        let mut s = String::with_capacity(32);
        let _ = write!(s, "{ticket:016x}{:016x}", self.tag(ticket));
        s
    }

    /// The ticket in a cookie value this codec issued; `None` for anything else.
    pub fn decode(&self, value: &[u8]) -> Option<u64> {
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        if value.len() != 32 {
            return None;
        }
        let ticket = parse_hex(value.get(..16)?)?;
        let tag = parse_hex(value.get(16..)?)?;
        // Compare without an early exit.
        ((tag ^ self.tag(ticket)) == 0).then_some(ticket)
    }
}

// Exactly 16 lowercase hex digits.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(d))
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The values of cookie `name` in one `cookie` header value (`a=1; b=2`), in order. Names are
/// case-sensitive; pairs without `=` are skipped.
pub fn cookie_values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    header.split(|b| *b == b';').filter_map(move |pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (n, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (trim(n) == name).then(|| trim(v))
    })
}

/// The `set-cookie` value that issues `value`: `Path=/; HttpOnly; SameSite=Lax`, then
/// `Max-Age` and `Secure` when configured.
pub fn set_cookie(name: &str, value: &str, max_age_s: Option<u64>, secure: bool) -> String {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_s {
        let _ = write!(s, "; Max-Age={age}");
    }
    if secure {
        s.push_str("; Secure");
    }
    s
}

/// Whether `name` can be a cookie name (an RFC 6265 token).
pub fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
