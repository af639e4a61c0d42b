//! Which service a request is for: `:authority` without its port, compared case-insensitively
//! with each service's `host`: exact (`reviews`), a suffix wildcard (`*.example.com`, which
//! matches `a.example.com` and `a.b.example.com` but not `example.com`), or `*` for any host.
//! An exact host wins over a wildcard, a longer suffix over a shorter one, `*` comes last.

/// A service's `host` as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    // Lower ranks are tried first.
    fn rank(&self) -> (u8, usize) {
        match self {
            Self::Exact(_) => (0, 0),
            Self::Suffix(s) => (1, usize::MAX - s.len()),
            Self::Any => (2, 0),
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

/// Every service's pattern, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct HostTable {
    // (pattern, service index), sorted by rank then configuration order.
    entries: Vec<(HostPattern, usize)>,
}

// === impl HostTable ===

impl HostTable {
    pub fn new(patterns: impl IntoIterator<Item = HostPattern>) -> Self {
        let mut entries: Vec<_> = patterns
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, i))
            .collect();
        entries.sort_by_key(|(p, i)| (p.rank(), *i));
        Self { entries }
    }

    /// The service for an `:authority` value, if any.
    pub fn find(&self, authority: &[u8]) -> Option<usize> {
        let host = authority_host(authority)?;
        self.entries
            .iter()
            .find(|(p, _)| p.matches(host))
            .map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests;
