//! SPIFFE IDs in the two forms meshes use: Istio `spiffe://TD/ns/NS/sa/NAME` and Consul
//! `spiffe://TD/ns/NS/dc/DC/svc/NAME` (optionally with `/ap/PARTITION` before `/ns`).

use std::fmt;
use thiserror::Error;

/// Which mesh's layout the ID follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiffeKind {
    /// Istio: the name is a Kubernetes service account.
    Istio,
    /// Consul: the name is a service, in a datacenter (and maybe an admin partition).
    Consul {
        datacenter: String,
        partition: Option<String>,
    },
}

/// A parsed workload identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub name: String,
    pub kind: SpiffeKind,
}

/// Why a string is not a workload SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpiffeError {
    #[error("not a spiffe:// uri")]
    Scheme,
    #[error("invalid trust domain")]
    TrustDomain,
    #[error("invalid path segment")]
    Segment,
    #[error("path is neither ns/NS/sa/NAME nor ns/NS/dc/DC/svc/NAME")]
    Layout,
    #[error("longer than 2048 bytes")]
    TooLong,
}

/// A workload identity borrowed from the URI it was parsed from: what a request-path caller
/// reads without allocating. [`SpiffeRef::to_owned`] gives the [`SpiffeId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiffeRef<'a> {
    pub trust_domain: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Consul's datacenter and admin partition; `None` for Istio's layout.
    pub consul: Option<(&'a str, Option<&'a str>)>,
}

/// Byte classes by table: one load per byte on the request path.
const TRUST_DOMAIN: u8 = 1;
const SEGMENT: u8 = 2;
// Evaluated at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let common = c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'_');
        if common || c.is_ascii_lowercase() {
            t[b] |= TRUST_DOMAIN;
        }
        if common || c.is_ascii_alphabetic() {
            t[b] |= SEGMENT;
        }
        b += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// Whether `b` may appear in a trust domain.
fn trust_domain_byte(b: u8) -> bool {
    class(b) & TRUST_DOMAIN != 0
}

/// Whether `b` may appear in a path segment.
fn segment_byte(b: u8) -> bool {
    class(b) & SEGMENT != 0
}

// === impl SpiffeRef ===

impl<'a> SpiffeRef<'a> {
    /// Parses `uri` strictly: lowercase scheme and trust domain, no port, userinfo, query,
    /// fragment, percent-escapes, empty or dot segments. One pass over the bytes, segments
    /// kept on the stack: this runs on every request with a peer certificate.
    pub fn parse(uri: &'a str) -> Result<Self, SpiffeError> {
        if uri.len() > 2048 {
            return Err(SpiffeError::TooLong);
        }
        let rest = uri.strip_prefix("spiffe://").ok_or(SpiffeError::Scheme)?;
        let bytes = rest.as_bytes();
        let slash = bytes
            .iter()
            .position(|&b| b == b'/')
            .ok_or(SpiffeError::Layout)?;
        let td = rest.get(..slash).ok_or(SpiffeError::Layout)?;
        if td.is_empty() || td.len() > 255 || !td.bytes().all(trust_domain_byte) {
            return Err(SpiffeError::TrustDomain);
        }
        // At most eight segments (Consul with a partition); more is no layout we know.
        let mut segs = [""; 8];
        let mut n = 0;
        let mut start = slash + 1;
        loop {
            let len = bytes
                .get(start..)
                .unwrap_or_default()
                .iter()
                .position(|&b| !segment_byte(b))
                .unwrap_or(bytes.len().saturating_sub(start));
            let end = start + len;
            let seg = rest.get(start..end).unwrap_or_default();
            // A segment ends at a `/` or at the end; any other byte is not allowed in one.
            let next = bytes.get(end).copied();
            if seg.is_empty() || seg == "." || seg == ".." || !matches!(next, None | Some(b'/')) {
                return Err(SpiffeError::Segment);
            }
            *segs.get_mut(n).ok_or(SpiffeError::Layout)? = seg;
            n += 1;
            if next.is_none() {
                break;
            }
            start = end + 1;
        }
        let id = |namespace, name, consul| Self {
            trust_domain: td,
            namespace,
            name,
            consul,
        };
        match segs.get(..n).unwrap_or_default() {
            ["ns", ns, "sa", name] => Ok(id(ns, name, None)),
            ["ns", ns, "dc", dc, "svc", name] => Ok(id(ns, name, Some((*dc, None)))),
            ["ap", ap, "ns", ns, "dc", dc, "svc", name] => Ok(id(ns, name, Some((*dc, Some(*ap))))),
            _ => Err(SpiffeError::Layout),
        }
    }

    /// The owned identity.
    pub fn to_owned(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.trust_domain.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            kind: match self.consul {
                None => SpiffeKind::Istio,
                Some((dc, ap)) => SpiffeKind::Consul {
                    datacenter: dc.to_owned(),
                    partition: ap.map(str::to_owned),
                },
            },
        }
    }
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Parses `uri` as [`SpiffeRef::parse`] does, into owned parts.
    pub fn parse(uri: &str) -> Result<Self, SpiffeError> {
        SpiffeRef::parse(uri).map(|id| id.to_owned())
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (td, ns, name) = (&self.trust_domain, &self.namespace, &self.name);
        match &self.kind {
            SpiffeKind::Istio => write!(f, "spiffe://{td}/ns/{ns}/sa/{name}"),
            SpiffeKind::Consul {
                datacenter,
                partition: None,
            } => write!(f, "spiffe://{td}/ns/{ns}/dc/{datacenter}/svc/{name}"),
            SpiffeKind::Consul {
                datacenter,
                partition: Some(ap),
            } => write!(
                f,
                "spiffe://{td}/ap/{ap}/ns/{ns}/dc/{datacenter}/svc/{name}"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
