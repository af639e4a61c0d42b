//! The capability traits. Each is small so a host can offer only what it has.

use crate::{HeaderSnapshot, HeaderValue, HostError, PropertySet, PropertyValues};

/// Log levels, ordered from the most verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// Writes one line to the host's log.
pub trait Log {
    fn log(&self, level: LogLevel, message: &str);
    /// Whether a message at `level` would be written; lets callers skip formatting.
    fn log_enabled(&self, level: LogLevel) -> bool {
        let _ = level;
        true
    }
}

/// Wall-clock time from the host (never the guest's own clock).
pub trait Clock {
    /// Nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
}

/// Random bytes from the host's entropy source.
pub trait Random {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError>;
}

/// Host properties (Envoy attributes such as `source.address` or
/// `connection.uri_san_peer_certificate`) and per-request filter state.
pub trait Properties {
    /// `Ok(None)` when the property does not exist for this request.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// `f` of the property's value, lent without a copy where the host already holds it (a
    /// pass's connection properties and verdicts); otherwise as [`Properties::property`]
    /// reads it.
    fn property_with<T>(
        &self,
        path: &[&str],
        f: impl FnOnce(Option<&[u8]>) -> T,
    ) -> Result<T, HostError> {
        Ok(f(self.property(path)?.as_deref()))
    }
    /// Writes per-request state; in Envoy it lands in filter state under `wasm.<path>`.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Prepares `set` for [`Properties::properties`], at configuration time. A host that
    /// cannot read several properties at once returns it as it is.
    fn prepare_properties(&self, set: PropertySet) -> PropertySet {
        set
    }
    /// Every property of `set`, in order, `None` where missing or unreadable: one host call
    /// when the set is prepared and the host can, one per property otherwise.
    fn properties(&self, set: &PropertySet) -> PropertyValues {
        PropertyValues::each(read_each(self, set))
    }
    /// `f` of the downstream peer certificate's first URI SAN (`None`: no certificate, or
    /// one without a URI SAN), in one read: all an identity needs. Whether a peer without a
    /// SAN presented a certificate at all is [`MTLS_PROPERTY`], for the callers it matters to
    /// (a log line's reason, a metric label), who read it only then. A missing property is
    /// no SAN, any other failure is returned.
    fn peer_uri_san_with<T>(&self, f: impl FnOnce(Option<&[u8]>) -> T) -> Result<T, HostError> {
        let mut f = Some(f);
        let read = self.property_with(&PEER_URI_SAN_PROPERTY, |san| {
            f.take().map(|f| f(san.filter(|s| !s.is_empty())))
        });
        match read {
            Ok(Some(out)) => Ok(out),
            Err(HostError::NotFound) | Ok(None) => f.map(|f| f(None)).ok_or(HostError::Internal),
            Err(e) => Err(e),
        }
    }
    /// `f` of what the downstream connection says about the peer's certificate, in the
    /// fewest reads: see [`read_peer_certificate`].
    fn peer_certificate_with<T>(
        &self,
        f: impl FnOnce(PeerCertificate<'_>) -> T,
    ) -> Result<T, HostError> {
        read_peer_certificate(self, f)
    }
    /// Whether this host answers decision keys from memory (a pass of several filters): then
    /// reading a verdict costs no host call and is better not batched with host properties.
    fn verdicts_in_memory(&self) -> bool {
        false
    }
}

/// Envoy's attribute: whether the downstream connection is TLS with a peer certificate.
pub const MTLS_PROPERTY: [&str; 2] = ["connection", "mtls"];
/// Envoy's attribute: the first URI SAN of the downstream peer's certificate.
pub const PEER_URI_SAN_PROPERTY: [&str; 2] = ["connection", "uri_san_peer_certificate"];

/// The downstream peer's certificate, as the proxy describes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCertificate<'a> {
    /// Plaintext, or TLS without a client certificate.
    Absent,
    /// A client certificate without a URI SAN.
    NoUriSan,
    /// A client certificate and its first URI SAN.
    UriSan(&'a [u8]),
}

// === impl PeerCertificate ===

impl PeerCertificate<'_> {
    /// Whether the peer presented a certificate (Envoy's `connection.mtls`).
    pub fn mtls(&self) -> bool {
        !matches!(self, Self::Absent)
    }
    pub fn uri_san(&self) -> Option<&[u8]> {
        match self {
            Self::UriSan(san) => Some(san),
            _ => None,
        }
    }
}

/// Reads the peer's URI SAN, and `connection.mtls` only without one. Envoy takes both from
/// the same peer certificate, so a SAN means the flag is true, and a false flag means no
/// SAN: mTLS with a SPIFFE ID (a mesh's usual request) is one read. Filters that need only
/// an identity use [`Properties::peer_uri_san_with`], one read in every case. A missing
/// property is absence, any other failure is returned.
pub fn read_peer_certificate<P: Properties + ?Sized, T>(
    host: &P,
    f: impl FnOnce(PeerCertificate<'_>) -> T,
) -> Result<T, HostError> {
    let mut f = Some(f);
    let by_san = host.peer_uri_san_with(|san| {
        san.and_then(|san| f.take().map(|f| f(PeerCertificate::UriSan(san))))
    })?;
    if let Some(out) = by_san {
        return Ok(out);
    }
    let cert = if read_mtls_flag(host)? {
        PeerCertificate::NoUriSan
    } else {
        PeerCertificate::Absent
    };
    let f = f.ok_or(HostError::Internal)?;
    Ok(f(cert))
}

/// Whether `value` of [`MTLS_PROPERTY`] says a certificate came: only Envoy's one-byte true
/// does (as a property and as an element of a batched read alike).
pub fn mtls_flag(value: Option<&[u8]>) -> bool {
    value == Some(&[1][..])
}

/// [`MTLS_PROPERTY`] read alone; a missing property is plaintext, any other failure is
/// returned.
pub fn read_mtls_flag<P: Properties + ?Sized>(host: &P) -> Result<bool, HostError> {
    match host.property_with(&MTLS_PROPERTY, mtls_flag) {
        Err(HostError::NotFound) => Ok(false),
        other => other,
    }
}

/// Reads the properties of `set` one by one.
pub fn read_each<P: Properties + ?Sized>(host: &P, set: &PropertySet) -> Vec<Option<Vec<u8>>> {
    set.paths()
        .iter()
        .map(|p| host.property(p).ok().flatten())
        .collect()
}

/// A value read from the shared store with the version a later CAS write must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub cas: u32,
}

/// Key-value data shared by every worker of the proxy (proxy-wasm shared data).
///
/// Entries cannot be deleted, so callers bound their key space themselves.
pub trait SharedStore {
    /// `Ok(None)` when the key was never written.
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError>;
    /// Writes `value`; with `cas: Some(v)`, `v != 0`, the write fails with
    /// [`HostError::CasMismatch`] unless the entry is still at version `v`. As in Envoy, a
    /// `cas` of `None` or `Some(0)` writes unconditionally, so two workers that both saw a key
    /// missing both succeed (a CAS on a missing key writes too): seed keys before racing on
    /// them.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
}

/// Kinds of host metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Handle of a defined metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub u32);

/// Host metrics; define once at configuration time, then update by id on the hot path.
pub trait Metrics {
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError>;
    /// Adds `delta` to a counter or gauge.
    fn increment_metric(&self, id: MetricId, delta: i64) -> Result<(), HostError>;
    /// Sets a gauge or records one histogram sample.
    fn record_metric(&self, id: MetricId, value: u64) -> Result<(), HostError>;
}

/// What a configuration can use: the configuration-time host.
pub trait ConfigHost: Log + Clock + Random + Properties + SharedStore + Metrics {}
impl<T: Log + Clock + Random + Properties + SharedStore + Metrics> ConfigHost for T {}

/// Which header map of the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderMap {
    Request,
    Response,
    RequestTrailers,
    ResponseTrailers,
}

/// Header maps of the current request. Names are lowercase; values are raw bytes, since
/// clients may send anything.
pub trait HttpHeaders {
    /// The first value of `name`, with one host call and without reading the whole map.
    fn header(&self, map: HeaderMap, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// `f` of the first value of `name`, lent without a copy where the host already holds it
    /// (a pass that read the whole map); otherwise as [`HttpHeaders::header`] reads it.
    fn header_with<T>(
        &self,
        map: HeaderMap,
        name: &str,
        f: impl FnOnce(Option<&[u8]>) -> T,
    ) -> Result<T, HostError> {
        Ok(f(self.header(map, name)?.as_deref()))
    }
    /// The first value of `name` for a filter that keeps it: shared with the map where the
    /// host already holds the whole map (a pass), otherwise as [`HttpHeaders::header`] reads it.
    fn header_value(&self, map: HeaderMap, name: &str) -> Result<Option<HeaderValue>, HostError> {
        Ok(self.header(map, name)?.map(HeaderValue::Owned))
    }
    /// Every value of `name`, in order; reads the whole map, so use it only where a verdict
    /// depends on repeated headers.
    fn header_values(&self, map: HeaderMap, name: &str) -> Result<Vec<Vec<u8>>, HostError> {
        Ok(self
            .headers(map)?
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect())
    }
    /// The whole map as (name, value) pairs.
    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// The whole map with one host call, kept as the host serialized it: for a filter that
    /// reads several headers, cheaper than reading them one by one.
    fn header_map(&self, map: HeaderMap) -> Result<HeaderSnapshot, HostError> {
        Ok(HeaderSnapshot::from_pairs(&self.headers(map)?))
    }
    /// Replaces every value of `name` with `value`.
    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Appends one more value of `name`.
    fn add_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError>;
    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError>;
}

/// Answers the request from the proxy without reaching the upstream.
pub trait LocalReply {
    fn send_local_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
}

/// A gRPC status code other than OK, as the host reported how a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcStatus(pub u32);

// === impl GrpcStatus ===

impl GrpcStatus {
    pub const CANCELLED: Self = Self(1);
    pub const UNKNOWN: Self = Self(2);
    pub const DEADLINE_EXCEEDED: Self = Self(4);
    pub const INTERNAL: Self = Self(13);
    pub const UNAVAILABLE: Self = Self(14);

    /// The code's name from the gRPC spec, for logs.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 17] = [
            "ok",
            "cancelled",
            "unknown",
            "invalid_argument",
            "deadline_exceeded",
            "not_found",
            "already_exists",
            "permission_denied",
            "resource_exhausted",
            "failed_precondition",
            "aborted",
            "out_of_range",
            "unimplemented",
            "internal",
            "unavailable",
            "data_loss",
            "unauthenticated",
        ];
        usize::try_from(self.0)
            .ok()
            .and_then(|i| NAMES.get(i))
            .copied()
            .unwrap_or("unrecognized")
    }
}

/// How a gRPC call ended: the response message, or the status it failed with.
pub type GrpcResponse = Result<Vec<u8>, GrpcStatus>;

/// One unary gRPC call.
#[derive(Debug, Clone, Copy)]
pub struct GrpcCall<'a> {
    /// The upstream as a serialized `envoy.config.core.v3.GrpcService` (not a bare cluster
    /// name, which Envoy would have to guess at).
    pub service: &'a str,
    /// Fully qualified service, e.g. `envoy.service.ratelimit.v3.RateLimitService`.
    pub service_name: &'a str,
    pub method: &'a str,
    pub metadata: &'a [(&'a str, &'a [u8])],
    /// The serialized request message.
    pub message: &'a [u8],
    /// The call's deadline, at least 1 ms (Envoy reads 0 as none).
    pub timeout_ms: u32,
}

/// Calls out of the request: a unary gRPC call whose answer reaches the filter's
/// [`crate::HttpFilter::on_grpc_response`], and resuming the paused request afterwards.
pub trait GrpcCalls {
    /// Starts a call; `Ok` holds the token its answer carries.
    fn grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError>;
    /// Resumes a request paused in its request headers.
    fn resume_request(&self) -> Result<(), HostError>;
}

/// Everything a filter can use while it handles a request: the stream host.
pub trait StreamHost: ConfigHost + HttpHeaders + LocalReply + GrpcCalls {}
impl<T: ConfigHost + HttpHeaders + LocalReply + GrpcCalls> StreamHost for T {}

/// Logs through any [`Log`] host with `format!` syntax, skipping formatting when disabled.
#[macro_export]
macro_rules! host_log {
    ($host:expr, $level:expr, $($arg:tt)+) => {{
        let level = $level;
        if $crate::Log::log_enabled($host, level) {
            $crate::Log::log($host, level, &format!($($arg)+));
        }
    }};
}

#[cfg(test)]
mod tests;
