//! The peer's identity, taken only from what the proxy says about the verified peer certificate.

use mesh_core::SpiffeRef;
use sdk_shim::{PeerCertificate, Properties};
use std::borrow::Cow;
use std::fmt;

use crate::pattern::ServiceRef;

/// Envoy's property: whether the downstream connection is TLS with a peer certificate.
pub const MTLS_PROPERTY: [&str; 2] = sdk_shim::MTLS_PROPERTY;
/// Envoy's property: the first URI SAN of the peer certificate.
pub const URI_SAN_PROPERTY: [&str; 2] = sdk_shim::PEER_URI_SAN_PROPERTY;

/// Why a peer has no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// No TLS, or TLS without a client certificate.
    NoCertificate,
    /// A certificate without a URI SAN (a SPIFFE ID in a DNS SAN does not count).
    NoUriSan,
    /// No URI SAN, and whether a certificate came at all not read: the decision needs no
    /// more, a log line asks ([`Peer::resolved`]).
    NoUriSanUnread,
    /// The first URI SAN is not a workload SPIFFE ID.
    NotSpiffe,
    /// A SPIFFE ID of another trust domain.
    ForeignTrustDomain,
    /// A Consul ID in an admin partition other than `default`.
    OtherPartition,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer<'a> {
    /// `uri` is the certificate's SPIFFE ID as sent (the strict parse accepted it, so it is
    /// already in canonical form); `namespace` and `name` are the service's names in it. All
    /// three borrow the host's read: no copy per request.
    Authenticated {
        uri: &'a str,
        namespace: &'a str,
        name: &'a str,
    },
    Anonymous(Anonymous),
}

// === impl Anonymous ===

impl Anonymous {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::NoUriSan => "no_uri_san",
            Self::NoUriSanUnread => "no_uri_san_or_no_certificate",
            Self::NotSpiffe => "not_spiffe",
            Self::ForeignTrustDomain => "foreign_trust_domain",
            Self::OtherPartition => "other_partition",
        }
    }
}

// === impl Peer ===

impl<'a> Peer<'a> {
    /// Decides the identity from what the proxy says about the peer's certificate.
    pub fn from_certificate(cert: PeerCertificate<'a>, trust_domain: &str) -> Self {
        let san = match cert {
            PeerCertificate::Absent => return Self::Anonymous(Anonymous::NoCertificate),
            PeerCertificate::NoUriSan => return Self::Anonymous(Anonymous::NoUriSan),
            PeerCertificate::UriSan(s) => s,
        };
        let Ok(san) = std::str::from_utf8(san) else {
            return Self::Anonymous(Anonymous::NotSpiffe);
        };
        Self::from_uri_san(san, trust_domain)
    }

    /// The identity from the peer certificate's first URI SAN alone (`None`: no certificate
    /// or none with a URI SAN; which of the two is left unread).
    pub fn from_peer_uri_san(san: Option<&'a [u8]>, trust_domain: &str) -> Self {
        match san {
            Some(san) => Self::from_certificate(PeerCertificate::UriSan(san), trust_domain),
            None => Self::Anonymous(Anonymous::NoUriSanUnread),
        }
    }

    /// This peer for a log line: one without a URI SAN named by whether it presented a
    /// certificate (`connection.mtls`, read only here); as it is when that cannot be read.
    pub fn resolved<P: Properties + ?Sized>(&self, host: &P) -> Cow<'_, Self> {
        if *self != Self::Anonymous(Anonymous::NoUriSanUnread) {
            return Cow::Borrowed(self);
        }
        let why = match sdk_shim::read_mtls_flag(host) {
            Ok(true) => Anonymous::NoUriSan,
            Ok(false) => Anonymous::NoCertificate,
            Err(_) => return Cow::Borrowed(self),
        };
        Cow::Owned(Self::Anonymous(why))
    }

    /// The identity a verified certificate's first URI SAN gives.
    pub fn from_uri_san(san: &'a str, trust_domain: &str) -> Self {
        let Ok(id) = SpiffeRef::parse(san) else {
            return Self::Anonymous(Anonymous::NotSpiffe);
        };
        if id.trust_domain != trust_domain {
            return Self::Anonymous(Anonymous::ForeignTrustDomain);
        }
        if let Some((_, Some(p))) = id.consul {
            if p != "default" {
                return Self::Anonymous(Anonymous::OtherPartition);
            }
        }
        Self::Authenticated {
            uri: san,
            namespace: id.namespace,
            name: id.name,
        }
    }

    pub fn service(&self) -> Option<ServiceRef<'a>> {
        match *self {
            Self::Authenticated {
                namespace, name, ..
            } => Some(ServiceRef::new(namespace, name)),
            Self::Anonymous(_) => None,
        }
    }
}

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authenticated { uri, .. } => f.write_str(uri),
            Self::Anonymous(why) => write!(f, "anonymous({})", why.as_str()),
        }
    }
}

#[cfg(test)]
mod tests;
