//! Which service a request is for: `:authority` without its port, compared case-insensitively
//! with each service's `host`: exact (`reviews`), a suffix wildcard (`*.example.com`, which
//! matches `a.example.com` and `a.b.example.com` but not `example.com`), or `*` for any host.
//! An exact host wins over a wildcard, a longer suffix over a shorter one, `*` comes last.

use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// A service's `host` as compiled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Lowercase host name.
    Exact(String),
    /// Lowercase suffix including its leading dot: `.example.com`.
    Suffix(String),
    Any,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
}

// === impl HostPattern ===

impl HostPattern {
    /// Parses a configured `host`; the error is a reason.
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("must not be empty".into());
        }
        let lower = spec.to_ascii_lowercase();
        if lower == "*" {
            return Ok(Self::Any);
        }
        if let Some(suffix) = lower.strip_prefix("*.") {
            let suffix = suffix.strip_suffix('.').unwrap_or(suffix);
            return if valid_name(suffix) {
                Ok(Self::Suffix(format!(".{suffix}")))
            } else {
                Err(format!("{spec:?} is not a host name after \"*.\""))
            };
        }
        let s = lower.strip_suffix('.').unwrap_or(&lower);
        if s.contains(':') {
            return Err(format!("{spec:?} must not carry a port"));
        }
        if valid_name(s) {
            Ok(Self::Exact(s.to_owned()))
        } else {
            Err(format!(
                "{spec:?} is not a host name, \"*.suffix\" or \"*\""
            ))
        }
    }

    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            Self::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
            Self::Suffix(s) => {
                host.len() > s.len()
                    && host
                        .len()
                        .checked_sub(s.len())
                        .and_then(|start| host.get(start..))
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s.as_bytes()))
            }
            Self::Any => true,
        }
    }
}

/// The host part of an `:authority` value: port removed (`h:80`, `[::1]:80`), one trailing
/// dot removed. `None` when nothing is left.
pub fn authority_host(authority: &[u8]) -> Option<&[u8]> {
    let host = if authority.first() == Some(&b'[') {
        // IPv6 literal: keep the brackets, drop what follows the closing one.
        match authority.iter().position(|b| *b == b']') {
            Some(end) => authority.get(..=end)?,
            None => authority,
        }
    } else {
        match authority.iter().rposition(|b| *b == b':') {
            Some(colon)
                if authority
                    .get(colon + 1..)
                    .is_some_and(|port| port.iter().all(u8::is_ascii_digit)) =>
            {
                authority.get(..colon)?
            }
            _ => authority,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// Every service's pattern, indexed so that finding a request's service costs a few lookups
/// whatever the number of services: exact hosts by name, suffixes by each suffix the host has.
#[derive(Debug, Clone, Default)]
pub struct HostTable {
    /// Lowercase host -> the first service naming it.
    exact: FxHashMap<Vec<u8>, usize>,
    /// Lowercase suffix with its leading dot -> the first service naming it.
    suffixes: FxHashMap<Vec<u8>, usize>,
    any: Option<usize>,
}

// === impl HostTable ===

impl HostTable {
    pub fn new(patterns: impl IntoIterator<Item = HostPattern>) -> Self {
        let mut table = Self::default();
        for (i, p) in patterns.into_iter().enumerate() {
            match p {
                HostPattern::Exact(h) => {
                    table
                        .exact
                        .entry(h.to_ascii_lowercase().into_bytes())
                        .or_insert(i);
                }
                HostPattern::Suffix(s) => {
                    table
                        .suffixes
                        .entry(s.to_ascii_lowercase().into_bytes())
                        .or_insert(i);
                }
                HostPattern::Any => {
                    table.any.get_or_insert(i);
                }
            }
        }
        table
    }

    /// The service for an `:authority` value, if any.
    pub fn find(&self, authority: &[u8]) -> Option<usize> {
        self.find_counted(authority).0
    }

    /// [`Self::find`], with the number of lookups made (bounded by the dots in the host, not
    /// by the number of services). Exact beats any suffix, a longer suffix a shorter one
    /// (the leftmost dot first), `*` comes last.
    pub(crate) fn find_counted(&self, authority: &[u8]) -> (Option<usize>, usize) {
        let Some(host) = authority_host(authority) else {
            return (None, 0);
        };
        let host: Cow<'_, [u8]> = if host.iter().any(u8::is_ascii_uppercase) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let mut looked = 1;
        if let Some(i) = self.exact.get(host.as_ref()) {
            return (Some(*i), looked);
        }
        if !self.suffixes.is_empty() {
            // A suffix matches a strictly longer host, so never at position 0.
            let dots = host.iter().enumerate().skip(1).filter(|(_, b)| **b == b'.');
            for (pos, _) in dots {
                looked += 1;
                if let Some(i) = host.get(pos..).and_then(|tail| self.suffixes.get(tail)) {
                    return (Some(*i), looked);
                }
            }
        }
        (self.any, looked)
    }
}

#[cfg(test)]
mod tests;
