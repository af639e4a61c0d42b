//! Peer metadata exchanged in a header between the two sidecars of a call, so each side can
//! name the other's workload. Trusted only when the connection is mutually authenticated.
//!
//! Format: `workload=NAME;namespace=NS[;service=SVC][;revision=REV][;app=APP][;version=VER]
//! [;cluster=CLUSTER]`, values of Kubernetes-name
//! characters (`[A-Za-z0-9._-]`, at most 253 bytes); unknown keys are ignored so later
//! versions can add some.

use std::fmt;

/// Longest header value read.
pub const MAX_HEADER_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 253;

/// What one sidecar tells the other about its workload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    pub workload: String,
    pub namespace: String,
    pub service: Option<String>,
    pub revision: Option<String>,
    /// The workload's `app` label (Istio's `source_app` / `destination_app`).
    pub app: Option<String>,
    /// The workload's `version` label.
    pub version: Option<String>,
    /// The workload's cluster (Istio's `CLUSTER_ID`).
    pub cluster: Option<String>,
}

/// Why a peer metadata header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMetadataError {
    TooLong,
    Malformed,
    DuplicateKey,
    BadValue,
    MissingWorkloadOrNamespace,
}

/// Whether `v` is a valid value (also used to check configured values before sending them).
pub fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE_BYTES
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// === impl PeerMetadata ===

impl PeerMetadata {
    pub fn parse(raw: &[u8]) -> Result<Self, PeerMetadataError> {
        if raw.len() > MAX_HEADER_BYTES {
            return Err(PeerMetadataError::TooLong);
        }
        let text = std::str::from_utf8(raw).map_err(|_| PeerMetadataError::Malformed)?;
        let mut slots: [Option<String>; 7] = Default::default();
        for pair in text.split(';') {
            let (key, value) = pair.split_once('=').ok_or(PeerMetadataError::Malformed)?;
            let slot = match key {
                "workload" => slots.get_mut(0),
                "namespace" => slots.get_mut(1),
                "service" => slots.get_mut(2),
                "revision" => slots.get_mut(3),
                "app" => slots.get_mut(4),
                "version" => slots.get_mut(5),
                "cluster" => slots.get_mut(6),
                _ => continue,
            };
            if !valid_value(value) {
                return Err(PeerMetadataError::BadValue);
            }
            match slot {
                Some(s @ None) => *s = Some(value.to_owned()),
                _ => return Err(PeerMetadataError::DuplicateKey),
            }
        }
        let [workload, namespace, service, revision, app, version, cluster] = slots;
        match (workload, namespace) {
            (Some(workload), Some(namespace)) => Ok(Self {
                workload,
                namespace,
                service,
                revision,
                app,
                version,
                cluster,
            }),
            _ => Err(PeerMetadataError::MissingWorkloadOrNamespace),
        }
    }
}

impl fmt::Display for PeerMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "workload={};namespace={}", self.workload, self.namespace)?;
        if let Some(s) = &self.service {
            write!(f, ";service={s}")?;
        }
        for (key, value) in [
            ("revision", &self.revision),
            ("app", &self.app),
            ("version", &self.version),
            ("cluster", &self.cluster),
        ] {
            if let Some(v) = value {
                write!(f, ";{key}={v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
