use thiserror::Error;

/// A host call that did not succeed, in domain terms rather than ABI status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostError {
    /// The key, header, property or metric does not exist.
    #[error("not found")]
    NotFound,
    /// A compare-and-swap write lost the race: the value changed since it was read.
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    /// The host refused an argument (bad name, unknown upstream, bad map type).
    #[error("bad argument")]
    BadArgument,
    /// The host could not serialize or parse a value.
    #[error("host could not serialize or parse the value")]
    Serialization,
    /// The host lacks this capability.
    #[error("unsupported by the host")]
    Unsupported,
    /// Any other failure the host reported.
    #[error("host failure")]
    Internal,
}
