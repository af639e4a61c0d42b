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

// === impl SpiffeId ===

impl SpiffeId {
    /// Parses `uri` strictly: lowercase scheme and trust domain, no port, userinfo, query,
    /// fragment, percent-escapes, empty or dot segments.
    pub fn parse(uri: &str) -> Result<Self, SpiffeError> {
        if uri.len() > 2048 {
            return Err(SpiffeError::TooLong);
        }
        let rest = uri.strip_prefix("spiffe://").ok_or(SpiffeError::Scheme)?;
        let (td, path) = rest.split_once('/').ok_or(SpiffeError::Layout)?;
        if td.is_empty()
            || td.len() > 255
            || !td.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
            })
        {
            return Err(SpiffeError::TrustDomain);
        }
        // At most eight segments (Consul with a partition); more is no layout we know. Kept
        // on the stack: this runs on every request with a peer certificate.
        let mut segs = [""; 8];
        let mut n = 0;
        for s in path.split('/') {
            let valid = !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !valid {
                return Err(SpiffeError::Segment);
            }
            *segs.get_mut(n).ok_or(SpiffeError::Layout)? = s;
            n += 1;
        }
        let segs = segs.get(..n).unwrap_or_default();
        let owned = |s: &&str| (*s).to_owned();
        match segs {
            ["ns", ns, "sa", name] => Ok(Self {
                trust_domain: td.to_owned(),
                namespace: owned(ns),
                name: owned(name),
                kind: SpiffeKind::Istio,
            }),
            ["ns", ns, "dc", dc, "svc", name] => Ok(Self {
                trust_domain: td.to_owned(),
                namespace: owned(ns),
                name: owned(name),
                kind: SpiffeKind::Consul {
                    datacenter: owned(dc),
                    partition: None,
                },
            }),
            ["ap", ap, "ns", ns, "dc", dc, "svc", name] => Ok(Self {
                trust_domain: td.to_owned(),
                namespace: owned(ns),
                name: owned(name),
                kind: SpiffeKind::Consul {
                    datacenter: owned(dc),
                    partition: Some(owned(ap)),
                },
            }),
            _ => Err(SpiffeError::Layout),
        }
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
