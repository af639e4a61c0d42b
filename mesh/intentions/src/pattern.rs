//! Service names and the patterns intentions use for sources and destinations, with Consul's
//! precedence between them.

use std::fmt;

/// The namespace of a bare `NAME`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A concrete service: the filter's own destination or a peer's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

/// A concrete service borrowed from where it was read (a peer's SPIFFE ID): what a request
/// looks intentions up by without copying the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// A source or destination as an intention writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// `NAME` or `NS/NAME`.
    Exact(ServiceName),
    /// `NS/*`.
    Namespace(String),
    /// `*`.
    Any,
}

/// A name segment as SPIFFE IDs carry it: ASCII letters, digits, `-`, `.`, `_`; not `.` or `..`.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

fn segment(s: &str, what: &str) -> Result<String, String> {
    if valid_segment(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{what} {s:?} is not a valid name (letters, digits, '-', '.', '_')"
        ))
    }
}

// === impl ServiceName ===

impl ServiceName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn as_ref(&self) -> ServiceRef<'_> {
        ServiceRef {
            namespace: &self.namespace,
            name: &self.name,
        }
    }

    /// Parses `NAME` or `NS/NAME` (no wildcards).
    pub fn parse(s: &str) -> Result<Self, String> {
        match NamePattern::parse(s)? {
            NamePattern::Exact(n) => Ok(n),
            _ => Err("must be NAME or NS/NAME, without wildcards".to_owned()),
        }
    }
}

// === impl ServiceRef ===

impl<'a> ServiceRef<'a> {
    pub fn new(namespace: &'a str, name: &'a str) -> Self {
        Self { namespace, name }
    }

    pub fn to_owned(self) -> ServiceName {
        ServiceName::new(self.namespace, self.name)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

// === impl NamePattern ===

impl NamePattern {
    /// Parses `NAME`, `NS/NAME`, `NS/*` or `*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        match s.split_once('/') {
            None => Ok(Self::Exact(ServiceName::new(
                DEFAULT_NAMESPACE,
                segment(s, "name")?,
            ))),
            Some(("*", _)) => Err("a wildcard namespace needs a wildcard name: use *".to_owned()),
            Some((ns, "*")) => Ok(Self::Namespace(segment(ns, "namespace")?)),
            Some((ns, name)) => {
                if name.contains('/') {
                    return Err("must be NAME, NS/NAME, NS/* or *".to_owned());
                }
                Ok(Self::Exact(ServiceName::new(
                    segment(ns, "namespace")?,
                    segment(name, "name")?,
                )))
            }
        }
    }

    /// 2 for an exact name, 1 for a namespace wildcard, 0 for `*`.
    pub fn specificity(&self) -> u8 {
        match self {
            Self::Exact(_) => 2,
            Self::Namespace(_) => 1,
            Self::Any => 0,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        !matches!(self, Self::Exact(_))
    }

    pub fn matches(&self, service: ServiceRef<'_>) -> bool {
        match self {
            Self::Exact(s) => s.as_ref() == service,
            Self::Namespace(ns) => ns == service.namespace,
            Self::Any => true,
        }
    }

    /// A name usable in stat names: `NS.NAME`, `NS.any` or `any`.
    pub fn stat_name(&self) -> String {
        match self {
            Self::Exact(s) => format!("{}.{}", s.namespace, s.name),
            Self::Namespace(ns) => format!("{ns}.any"),
            Self::Any => "any".to_owned(),
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => s.fmt(f),
            Self::Namespace(ns) => write!(f, "{ns}/*"),
            Self::Any => f.write_str("*"),
        }
    }
}

/// Consul's precedence of a source/destination pair, 1 (`*` to `*`) to 9 (exact to exact):
/// the destination's specificity outranks the source's.
pub fn precedence(source: &NamePattern, destination: &NamePattern) -> u8 {
    3 * destination.specificity() + source.specificity() + 1
}

#[cfg(test)]
pub(crate) mod tests;
