//! The configured telemetry (shared by every request of a worker) and the per-request part.

use crate::access_log::AccessRecord;
use crate::config::{Reporter, TelemetryConfig, WorkloadSpec};
use crate::flags;
use crate::histogram::nanos_to_millis;
use crate::labels::{grpc_status, plain, Label, LabelValues, UNKNOWN};
use crate::peer::{valid_value, PeerMetadata};
use crate::series::{Admission, SeriesIds, SeriesRegistry};
use crate::trace::{self, TraceOutcome};
use mesh_core::decision;
use mesh_core::SpiffeRef;
use sdk_shim::{
    ConfigHost, HeaderMap, HeaderValue, HostError, LogLevel, MetricId, MetricKind, Metrics,
    Namespace, Properties, PropertySet, StreamHost,
};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

/// Envoy attributes read by the filter.
pub mod attr {
    use sdk_shim::batch::FILTER_STATE;

    pub const RESPONSE_CODE: &[&str] = &["response", "code"];
    pub const RESPONSE_FLAGS: &[&str] = &["response", "flags"];
    pub const REQUEST_DURATION: &[&str] = &["request", "duration"];
    pub const REQUEST_TOTAL_SIZE: &[&str] = &["request", "total_size"];
    pub const RESPONSE_TOTAL_SIZE: &[&str] = &["response", "total_size"];
    pub const REQUEST_TIME: &[&str] = &["request", "time"];
    pub const MTLS: &[&str] = &sdk_shim::MTLS_PROPERTY;
    pub const PEER_URI_SAN: &[&str] = &sdk_shim::PEER_URI_SAN_PROPERTY;
    pub const LOCAL_URI_SAN: &[&str] = &["connection", "uri_san_local_certificate"];
    pub const UPSTREAM_PEER_URI_SAN: &[&str] = &["upstream", "uri_san_peer_certificate"];
    pub const UPSTREAM_LOCAL_URI_SAN: &[&str] = &["upstream", "uri_san_local_certificate"];
    /// The verdicts the other modules published in filter state, for the access line of a
    /// telemetry module running alone.
    pub const CANARY_VERDICT: &[&str] = &[FILTER_STATE, "wasm.mesh.canary"];
    pub const RATELIMIT_VERDICT: &[&str] = &[FILTER_STATE, "wasm.mesh.ratelimit"];
    pub const INTENTIONS_VERDICT: &[&str] = &[FILTER_STATE, "wasm.mesh.intentions"];
    /// What `on_log` reads on mTLS when it also wants the verdicts, in one host call where
    /// Envoy can (see [`sdk_shim::PropertySet`]): [`AT_LOG`], the local certificate's URI
    /// SAN (a label of the series), then the three verdicts; one element more costs Envoy
    /// less than a read of its own.
    pub const AT_LOG_MTLS_VERDICTS: &[&[&str]] = &[
        RESPONSE_CODE,
        RESPONSE_FLAGS,
        REQUEST_DURATION,
        REQUEST_TOTAL_SIZE,
        RESPONSE_TOTAL_SIZE,
        LOCAL_URI_SAN,
        CANARY_VERDICT,
        RATELIMIT_VERDICT,
        INTENTIONS_VERDICT,
    ];
    /// On mTLS, with the verdicts in memory (the suite) or no access line.
    pub const AT_LOG_MTLS: &[&[&str]] = AT_LOG_MTLS_VERDICTS.split_at(6).0;
    /// Otherwise.
    pub const AT_LOG: &[&[&str]] = AT_LOG_MTLS_VERDICTS.split_at(5).0;
    /// A peer without a URI SAN (no certificate, or one without a SAN): [`AT_LOG`], then
    /// `connection.mtls` (which of the two; the request read only the SAN), then the three
    /// verdicts.
    pub const AT_LOG_FLAG_VERDICTS: &[&[&str]] = &[
        RESPONSE_CODE,
        RESPONSE_FLAGS,
        REQUEST_DURATION,
        REQUEST_TOTAL_SIZE,
        RESPONSE_TOTAL_SIZE,
        MTLS,
        CANARY_VERDICT,
        RATELIMIT_VERDICT,
        INTENTIONS_VERDICT,
    ];
    /// The same without the verdicts.
    pub const AT_LOG_FLAG: &[&[&str]] = AT_LOG_FLAG_VERDICTS.split_at(6).0;
    /// Without mTLS, with the verdicts: [`AT_LOG`], then the three verdicts.
    pub const AT_LOG_VERDICTS: &[&[&str]] = &[
        RESPONSE_CODE,
        RESPONSE_FLAGS,
        REQUEST_DURATION,
        REQUEST_TOTAL_SIZE,
        RESPONSE_TOTAL_SIZE,
        CANARY_VERDICT,
        RATELIMIT_VERDICT,
        INTENTIONS_VERDICT,
    ];
}

/// Counters about the filter itself.
pub mod stat {
    /// Series admitted under the cap (summed over workers: the number of series).
    pub const SERIES_ADMITTED: &str = "telemetry.series_admitted";
    /// Requests recorded in the overflow series because the cap was reached.
    pub const SERIES_OVERFLOW: &str = "telemetry.series_overflow";
    pub const TRACE_STARTED: &str = "telemetry.trace_started";
    pub const TRACE_REPLACED: &str = "telemetry.trace_replaced";
    /// Peer metadata headers ignored: no mTLS, malformed, or contradicting the certificate.
    pub const PEER_METADATA_REJECTED: &str = "telemetry.peer_metadata_rejected";
}

/// This proxy's workload, resolved once per configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub service: String,
    pub service_host: String,
    pub revision: String,
    /// Istio's `app` and `version` labels and `CLUSTER_ID`: `None` reports `unknown`.
    pub app: Option<String>,
    pub version: Option<String>,
    pub cluster: Option<String>,
}

fn prop_string<P: Properties>(host: &P, path: &[&str]) -> Option<String> {
    let v = host.property(path).ok().flatten()?;
    String::from_utf8(v).ok().filter(|s| valid_value(s))
}

/// An Envoy integer attribute (64-bit little-endian).
pub fn prop_i64<P: Properties>(host: &P, path: &[&str]) -> Option<i64> {
    as_i64(host.property(path).ok().flatten().as_deref())
}

fn as_i64(v: Option<&[u8]>) -> Option<i64> {
    let bytes: [u8; 8] = v?.try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

fn prop_u64<P: Properties>(host: &P, path: &[&str]) -> Option<u64> {
    prop_i64(host, path).and_then(|v| u64::try_from(v).ok())
}

/// `set` with every path from `first` on optional.
fn optional_from(set: PropertySet, first: usize) -> PropertySet {
    (first..set.paths().len()).fold(set, PropertySet::optional)
}

fn prop_bytes<P: Properties>(host: &P, path: &[&str]) -> Option<Vec<u8>> {
    host.property(path).ok().flatten().filter(|v| !v.is_empty())
}

// === impl Workload ===

impl Workload {
    /// Fills what the config leaves out from the Envoy node (Istio's metadata), else defaults.
    pub fn resolve<P: Properties>(spec: &WorkloadSpec, host: &P) -> Self {
        let node = |key: &str| prop_string(host, &["xds", "node", "metadata", key]);
        let label = |key: &str| prop_string(host, &["xds", "node", "metadata", "LABELS", key]);
        let name = spec
            .name
            .clone()
            .or_else(|| node("WORKLOAD_NAME"))
            .or_else(|| prop_string(host, &["xds", "node", "cluster"]))
            .unwrap_or_else(|| UNKNOWN.to_owned());
        let namespace = spec
            .namespace
            .clone()
            .or_else(|| node("NAMESPACE"))
            .unwrap_or_else(|| UNKNOWN.to_owned());
        let service = spec
            .service
            .clone()
            .or_else(|| label("service.istio.io/canonical-name"))
            .or_else(|| label("app"))
            .unwrap_or_else(|| name.clone());
        let service_host = spec
            .service_host
            .clone()
            .unwrap_or_else(|| format!("{service}.{namespace}.svc.cluster.local"));
        let revision = spec
            .revision
            .clone()
            .or_else(|| label("service.istio.io/canonical-revision"))
            .or_else(|| label("version"))
            .unwrap_or_else(|| "latest".to_owned());
        // As Istio's stats filter: the node's labels and CLUSTER_ID, no other fallback.
        let app = spec.app.clone().or_else(|| label("app"));
        let version = spec.version.clone().or_else(|| label("version"));
        let cluster = spec.cluster.clone().or_else(|| node("CLUSTER_ID"));
        Self {
            name,
            namespace,
            service,
            service_host,
            revision,
            app,
            version,
            cluster,
        }
    }

    fn peer_metadata(&self) -> PeerMetadata {
        PeerMetadata {
            workload: self.name.clone(),
            namespace: self.namespace.clone(),
            service: Some(self.service.clone()),
            revision: Some(self.revision.clone()),
            app: self.app.clone(),
            version: self.version.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// The filter's own counters, defined at configuration (a failure there rejects it).
#[derive(Debug, Clone, Copy)]
struct OwnStats {
    series_admitted: MetricId,
    series_overflow: MetricId,
    trace_started: MetricId,
    trace_replaced: MetricId,
    peer_rejected: MetricId,
}

/// Everything built at configuration time, shared by the requests of one worker.
#[derive(Debug)]
pub struct Telemetry {
    pub config: TelemetryConfig,
    pub workload: Workload,
    /// Labels fixed by the reporter's own identity; requests fill in the rest.
    template: LabelValues<'static>,
    /// Our peer metadata header value, when the exchange is on.
    own_peer_value: Option<String>,
    stats: OwnStats,
    /// [`attr::AT_LOG`], [`attr::AT_LOG_MTLS`] and both with the verdicts
    /// ([`attr::AT_LOG_VERDICTS`], [`attr::AT_LOG_MTLS_VERDICTS`]), prepared for one read each.
    at_log: PropertySet,
    at_log_mtls: PropertySet,
    at_log_verdicts: PropertySet,
    at_log_mtls_verdicts: PropertySet,
    /// [`attr::AT_LOG_FLAG`] and [`attr::AT_LOG_FLAG_VERDICTS`].
    at_log_flag: PropertySet,
    at_log_flag_verdicts: PropertySet,
    /// The overflow series, defined when first needed (so it shows only once it is used).
    overflow: OnceLock<Option<SeriesIds>>,
    registry: Mutex<SeriesRegistry>,
}

fn counter<H: Metrics>(host: &H, name: &str) -> Result<MetricId, HostError> {
    host.define_metric(MetricKind::Counter, name)
}

/// A failed increment loses one count, never the request.
fn bump<H: Metrics>(host: &H, id: MetricId) {
    let _ = host.increment_metric(id, 1);
}

// === impl Telemetry ===

impl Telemetry {
    /// The capability's bind step: resolves the workload (reading the node once), defines the
    /// filter's own stats (failing if one cannot be) and seeds the shared series count.
    pub fn bind<H: ConfigHost>(host: &H, config: TelemetryConfig) -> Result<Self, HostError> {
        let workload = Workload::resolve(&config.workload, host);
        let reporter = config.reporter.as_str();
        let mut template = LabelValues::default();
        template.set_str(Label::Reporter, reporter);
        let (prefix, ns, svc_name, svc_host, svc_ns, canon, rev) = match config.reporter {
            Reporter::Destination => (
                Label::DestinationWorkload,
                Label::DestinationWorkloadNamespace,
                Some(Label::DestinationServiceName),
                Some(Label::DestinationService),
                Some(Label::DestinationServiceNamespace),
                Label::DestinationCanonicalService,
                Label::DestinationCanonicalRevision,
            ),
            Reporter::Source => (
                Label::SourceWorkload,
                Label::SourceWorkloadNamespace,
                None,
                None,
                None,
                Label::SourceCanonicalService,
                Label::SourceCanonicalRevision,
            ),
        };
        let (app, version, cluster) = match config.reporter {
            Reporter::Destination => (
                Label::DestinationApp,
                Label::DestinationVersion,
                Label::DestinationCluster,
            ),
            Reporter::Source => (Label::SourceApp, Label::SourceVersion, Label::SourceCluster),
        };
        template.set_str(prefix, &workload.name);
        template.set_str(ns, &workload.namespace);
        template.set_str(canon, &workload.service);
        template.set_str(rev, &workload.revision);
        for (label, value) in [
            (app, &workload.app),
            (version, &workload.version),
            (cluster, &workload.cluster),
        ] {
            if let Some(v) = value {
                template.set_str(label, v);
            }
        }
        // Istio leaves it empty outside gRPC; gRPC requests set it at `on_log`.
        template.set_empty(Label::GrpcResponseStatus);
        if let (Some(n), Some(h), Some(s)) = (svc_name, svc_host, svc_ns) {
            template.set_str(n, &workload.service);
            template.set_str(h, &workload.service_host);
            template.set_str(s, &workload.namespace);
        }
        if config.reporter == Reporter::Source {
            // Istio reports an unknown policy on the client side.
            template.set_str(Label::ConnectionSecurityPolicy, UNKNOWN);
        }
        let stats = OwnStats {
            series_admitted: counter(host, stat::SERIES_ADMITTED)?,
            series_overflow: counter(host, stat::SERIES_OVERFLOW)?,
            trace_started: counter(host, stat::TRACE_STARTED)?,
            trace_replaced: counter(host, stat::TRACE_REPLACED)?,
            peer_rejected: counter(host, stat::PEER_METADATA_REJECTED)?,
        };
        let registry = SeriesRegistry::new(Namespace::of_plugin(host, config.namespace.as_deref()));
        // Best effort, unlike the stats: a store failing here fails admissions later, which
        // then go to the overflow series.
        registry.seed(host);
        let own_peer_value = config
            .peer_header
            .as_ref()
            .map(|_| workload.peer_metadata().to_string());
        Ok(Self {
            config,
            workload,
            template,
            own_peer_value,
            stats,
            at_log: host.prepare_properties(PropertySet::new(attr::AT_LOG)),
            // A certificate without a URI SAN must not fail the whole read, nor a verdict no
            // module published.
            at_log_mtls: host.prepare_properties(
                PropertySet::new(attr::AT_LOG_MTLS).optional(attr::AT_LOG.len()),
            ),
            at_log_verdicts: host.prepare_properties(optional_from(
                PropertySet::new(attr::AT_LOG_VERDICTS),
                attr::AT_LOG.len(),
            )),
            at_log_mtls_verdicts: host.prepare_properties(optional_from(
                PropertySet::new(attr::AT_LOG_MTLS_VERDICTS),
                attr::AT_LOG.len(),
            )),
            at_log_flag: host.prepare_properties(PropertySet::new(attr::AT_LOG_FLAG)),
            at_log_flag_verdicts: host.prepare_properties(optional_from(
                PropertySet::new(attr::AT_LOG_FLAG_VERDICTS),
                attr::AT_LOG_FLAG.len(),
            )),
            overflow: OnceLock::new(),
            registry: Mutex::new(registry),
        })
    }

    /// Series this worker holds ids for.
    pub fn series_count(&self) -> usize {
        self.registry.lock().map_or(0, |r| r.len())
    }

    /// Records one finished request in the series of `labels`.
    fn record<H: StreamHost>(&self, host: &H, labels: &LabelValues<'_>, sample: &Sample) {
        let admission = match self.registry.lock() {
            Ok(mut reg) => reg.admit_labels(host, labels, self.config.max_series),
            Err(_) => Admission::Overflow,
        };
        let ids = match admission {
            Admission::Series(ids) => Some(ids),
            Admission::Admitted(ids) => {
                bump(host, self.stats.series_admitted);
                Some(ids)
            }
            Admission::Overflow => {
                bump(host, self.stats.series_overflow);
                *self.overflow.get_or_init(|| {
                    let key = LabelValues::overflow(self.config.reporter.as_str()).series_key();
                    SeriesIds::define(host, &key).ok()
                })
            }
        };
        if let Some(ids) = ids {
            let _ = host.increment_metric(ids.requests, 1);
            let _ = host.record_metric(ids.duration, sample.duration_ms);
            let _ = host.record_metric(ids.request_bytes, sample.request_bytes);
            let _ = host.record_metric(ids.response_bytes, sample.response_bytes);
        }
    }
}

/// The numbers recorded for one request.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    duration_ms: u64,
    request_bytes: u64,
    response_bytes: u64,
}

/// Verdicts of the suite's other filters on this request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub canary: Option<String>,
    pub ratelimit: Option<String>,
    pub intentions: Option<String>,
}

/// Largest request header map whose values telemetry keeps shared until `on_log` (a typical
/// mesh request's map is 1 to 2 KiB); above it each kept value is copied.
const KEEP_SHARED_MAP_BYTES: usize = 4096;

/// What telemetry keeps about one request between its callbacks.
#[derive(Debug)]
pub struct RequestTelemetry {
    shared: Arc<Telemetry>,
    /// Kept for `on_log`: shared with the pass's header map where it holds one.
    method: HeaderValue,
    path: HeaderValue,
    authority: HeaderValue,
    grpc: bool,
    trace: TraceOutcome,
    /// Peer metadata that passed the trust checks.
    peer: Option<PeerMetadata>,
    /// The peer certificate's URI SAN, read once when first needed, and downstream mTLS:
    /// known from a SAN, else `None` until read (with the log-time attributes).
    downstream: Option<(Option<bool>, Option<Vec<u8>>)>,
    /// `None`: read the decisions from the host at `on_log`; `Some`: handed over in memory.
    decisions: Option<Decisions>,
    /// The host clock when the request headers arrived, for the access log: in the suite the
    /// pass shares that clock read with rate limiting, where `request.time` would be another
    /// host call.
    start_nanos: Option<u64>,
}

/// `host[:port]` -> lowercase host without the root's trailing dot (IPv6 brackets kept).
fn authority_host(authority: &[u8]) -> Vec<u8> {
    let host = match authority.iter().rposition(|b| *b == b':') {
        Some(i) if !authority.get(i..).is_some_and(|t| t.contains(&b']')) => {
            authority.get(..i).unwrap_or(authority)
        }
        _ => authority,
    };
    host.strip_suffix(b".").unwrap_or(host).to_ascii_lowercase()
}

// === impl RequestTelemetry ===

impl RequestTelemetry {
    pub fn new(shared: Arc<Telemetry>) -> Self {
        Self {
            shared,
            method: HeaderValue::default(),
            path: HeaderValue::default(),
            authority: HeaderValue::default(),
            grpc: false,
            trace: TraceOutcome::Absent,
            peer: None,
            downstream: None,
            decisions: None,
            start_nanos: None,
        }
    }

    /// Records another filter's verdict in memory (the suite), so `on_log` makes no host call
    /// for decisions. `key` is one of [`mesh_core::decision`]'s keys.
    pub fn set_decision(&mut self, key: &str, value: &str) {
        let d = self.decisions.get_or_insert_with(Decisions::default);
        let slot = match key {
            decision::CANARY => &mut d.canary,
            decision::RATELIMIT => &mut d.ratelimit,
            decision::INTENTIONS => &mut d.intentions,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }

    /// Marks decisions as handed over in memory even if no filter decided anything.
    pub fn decisions_in_memory(&mut self) {
        self.decisions.get_or_insert_with(Decisions::default);
    }

    pub fn trace(&self) -> &TraceOutcome {
        &self.trace
    }

    pub fn peer(&self) -> Option<&PeerMetadata> {
        self.peer.as_ref()
    }

    /// The SAN read (a SAN means mTLS). A failed read counts as plaintext: telemetry never
    /// fails a request.
    fn downstream<H: StreamHost>(&mut self, host: &H) -> &mut (Option<bool>, Option<Vec<u8>>) {
        self.downstream.get_or_insert_with(|| {
            match host.peer_uri_san_with(|san| san.map(<[u8]>::to_vec)) {
                Ok(Some(san)) => (Some(true), Some(san)),
                Ok(None) => (None, None),
                Err(_) => (Some(false), None),
            }
        })
    }

    /// Downstream mTLS: from the SAN, else `connection.mtls` read now (unless the log-time
    /// read brought it).
    fn mtls<H: StreamHost>(&mut self, host: &H) -> bool {
        let known = &mut self.downstream(host).0;
        *known.get_or_insert_with(|| sdk_shim::read_mtls_flag(host).unwrap_or(false))
    }

    pub fn on_request_headers<H: StreamHost>(&mut self, host: &H) {
        let cfg = &self.shared.config;
        let get = |name: &str| host.header(HeaderMap::Request, name).ok().flatten();
        // Shared with the pass's map only while that map is small: kept until `on_log`.
        let keep = |name: &str| {
            host.header_value(HeaderMap::Request, name)
                .ok()
                .flatten()
                .unwrap_or_default()
                .kept(KEEP_SHARED_MAP_BYTES)
        };
        if cfg.access_log.is_some() {
            self.method = keep(":method");
            self.path = keep(":path");
            self.start_nanos = Some(host.now_nanos());
        }
        if cfg.access_log.is_some() || cfg.reporter == Reporter::Source {
            self.authority = keep(":authority");
        }
        self.grpc = host
            .header_with(HeaderMap::Request, "content-type", |ct| {
                ct.is_some_and(|ct| ct.starts_with(b"application/grpc"))
            })
            .unwrap_or(false);
        if cfg.trace.enabled {
            self.handle_trace(host);
        }
        let shared = Arc::clone(&self.shared);
        if let Some(header) = &shared.config.peer_header {
            match shared.config.reporter {
                Reporter::Destination => {
                    if let Some(raw) = get(header) {
                        let _ = host.remove_header(HeaderMap::Request, header);
                        // Trusted only from a peer with a URI SAN: no flag needed.
                        let peer = trusted_peer(&raw, self.downstream(host).1.as_deref());
                        self.peer = peer;
                        if self.peer.is_none() {
                            bump(host, shared.stats.peer_rejected);
                        }
                    }
                }
                Reporter::Source => {
                    if let Some(v) = &shared.own_peer_value {
                        let _ = host.set_header(HeaderMap::Request, header, v.as_bytes());
                    }
                }
            }
        }
    }

    fn handle_trace<H: StreamHost>(&mut self, host: &H) {
        let cfg = self.shared.config.trace;
        // Decided on the lent value; the header writes come after.
        let random = |b: &mut [u8]| host.fill_random(b).is_ok();
        self.trace = host
            .header_with(HeaderMap::Request, "traceparent", |incoming| {
                trace::decide(incoming, cfg.start_when_absent, cfg.sampled, random)
            })
            .unwrap_or_else(|_| trace::decide(None, cfg.start_when_absent, cfg.sampled, random));
        match &self.trace {
            TraceOutcome::Kept(_) | TraceOutcome::Absent => {}
            TraceOutcome::Replaced(tp) => {
                let _ = host.set_header(
                    HeaderMap::Request,
                    "traceparent",
                    tp.header_value().as_bytes(),
                );
                let _ = host.remove_header(HeaderMap::Request, "tracestate");
                bump(host, self.shared.stats.trace_replaced);
            }
            TraceOutcome::Started(tp) => {
                let _ = host.set_header(
                    HeaderMap::Request,
                    "traceparent",
                    tp.header_value().as_bytes(),
                );
                bump(host, self.shared.stats.trace_started);
            }
            TraceOutcome::Removed => {
                let _ = host.remove_header(HeaderMap::Request, "traceparent");
                let _ = host.remove_header(HeaderMap::Request, "tracestate");
            }
        }
    }

    pub fn on_response_headers<H: StreamHost>(&mut self, host: &H) {
        let shared = Arc::clone(&self.shared);
        let Some(header) = &shared.config.peer_header else {
            return;
        };
        match shared.config.reporter {
            // Tell the client's sidecar who answered, only over mTLS (no leak to outsiders).
            Reporter::Destination => {
                if let Some(v) = &shared.own_peer_value {
                    if self.mtls(host) {
                        let _ = host.set_header(HeaderMap::Response, header, v.as_bytes());
                    }
                }
            }
            Reporter::Source => {
                if let Ok(Some(raw)) = host.header(HeaderMap::Response, header) {
                    let _ = host.remove_header(HeaderMap::Response, header);
                    // A verified upstream certificate stands for the upstream's mTLS.
                    let san = prop_bytes(host, attr::UPSTREAM_PEER_URI_SAN);
                    self.peer = san.as_deref().and_then(|s| trusted_peer(&raw, Some(s)));
                    if self.peer.is_none() {
                        bump(host, shared.stats.peer_rejected);
                    }
                }
            }
        }
    }

    /// Records the metrics and writes the access-log line.
    pub fn on_log<H: StreamHost>(&mut self, host: &H) {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        // On mTLS the destination's principal comes in the same read; so does whether a peer
        // without a URI SAN presented a certificate, and the verdicts of the other modules
        // when the access line wants them from filter state.
        let (local_in_batch, flag_in_batch) = match cfg.reporter {
            Reporter::Destination => match self.downstream(host).0 {
                Some(mtls) => (mtls, false),
                None => (false, true),
            },
            Reporter::Source => (false, false),
        };
        let verdicts_in_batch =
            cfg.access_log.is_some() && self.decisions.is_none() && !host.verdicts_in_memory();
        let set = match (local_in_batch, flag_in_batch, verdicts_in_batch) {
            (true, _, true) => &shared.at_log_mtls_verdicts,
            (true, _, false) => &shared.at_log_mtls,
            (false, true, true) => &shared.at_log_flag_verdicts,
            (false, true, false) => &shared.at_log_flag,
            (false, false, true) => &shared.at_log_verdicts,
            (false, false, false) => &shared.at_log,
        };
        let read = host.properties(set);
        let mut values = read.iter();
        let code = as_i64(values.next().flatten());
        let mut next_u64 = || as_i64(values.next().flatten()).and_then(|v| u64::try_from(v).ok());
        let flag_bits = next_u64().unwrap_or(0);
        let duration_ns = next_u64();
        let request_bytes = next_u64();
        let response_bytes = next_u64();
        let mut local_san = local_in_batch
            .then(|| {
                values
                    .next()
                    .flatten()
                    .filter(|v| !v.is_empty())
                    .map(Cow::Borrowed)
            })
            .flatten();
        if flag_in_batch {
            let mtls = sdk_shim::mtls_flag(values.next().flatten());
            self.downstream(host).0 = Some(mtls);
            // A certificate without a URI SAN (rare): our own principal read alone.
            if mtls {
                local_san = prop_bytes(host, attr::LOCAL_URI_SAN).map(Cow::Owned);
            }
        }
        let batched = verdicts_in_batch.then(|| {
            let mut verdict = || values.next().flatten().map(|v| decision::text(v.to_vec()));
            Decisions {
                canary: verdict(),
                ratelimit: verdict(),
                intentions: verdict(),
            }
        });
        let response_flags = flags::short_string(flag_bits);

        // The upstream's principals (source reporter), which the labels may borrow: declared
        // before them.
        let upstream_sans: [Option<Vec<u8>>; 2];
        let mut labels = shared.template.borrowed();
        labels.set_const(
            Label::RequestProtocol,
            if self.grpc { plain::GRPC } else { plain::HTTP },
        );
        labels.set_number(Label::ResponseCode, code.unwrap_or(0));
        let mut grpc_code = None;
        if self.grpc {
            // Host calls for gRPC only: the trailers, then the headers (trailers-only answer).
            let read = |map| {
                host.header(map, "grpc-status")
                    .ok()
                    .flatten()
                    .filter(|v| !v.is_empty())
            };
            let raw = read(HeaderMap::ResponseTrailers).or_else(|| read(HeaderMap::Response));
            grpc_code = grpc_status(raw.as_deref(), code);
            if let Some(status) = grpc_code {
                labels.set_number(Label::GrpcResponseStatus, status);
            }
        }
        if flag_bits == 0 {
            labels.set_const(Label::ResponseFlags, plain::NO_FLAGS);
        } else {
            labels.set_str(Label::ResponseFlags, &response_flags);
        }
        let principal = match cfg.reporter {
            Reporter::Destination => {
                let mtls = self.mtls(host);
                // Without mTLS there is no peer certificate (nor a local one to name us by).
                let san = self
                    .downstream
                    .as_ref()
                    .and_then(|d| d.1.as_deref())
                    .filter(|_| mtls);
                let local = local_san.as_deref().filter(|_| mtls);
                destination_labels(&mut labels, self.peer.as_ref(), mtls, san, local)
            }
            Reporter::Source => {
                upstream_sans = [
                    prop_bytes(host, attr::UPSTREAM_LOCAL_URI_SAN),
                    prop_bytes(host, attr::UPSTREAM_PEER_URI_SAN),
                ];
                source_labels(
                    &mut labels,
                    self.peer.as_ref(),
                    &self.authority,
                    &upstream_sans,
                )
            }
        };
        let sample = Sample {
            duration_ms: duration_ns.map_or(0, nanos_to_millis),
            request_bytes: request_bytes.unwrap_or(0),
            response_bytes: response_bytes.unwrap_or(0),
        };
        shared.record(host, &labels, &sample);

        let Some(max_field_bytes) = cfg.access_log else {
            return;
        };
        // Without request headers (a stream reset early) Envoy still knows the start time.
        let time_nanos = self
            .start_nanos
            .or_else(|| prop_u64(host, attr::REQUEST_TIME));
        let (src_wl, src_ns) = (
            labels.get(Label::SourceWorkload),
            labels.get(Label::SourceWorkloadNamespace),
        );
        let line = |canary: Option<&str>, ratelimit: Option<&str>, intentions: Option<&str>| {
            let emit = |trace_id: Option<&str>| {
                let record = AccessRecord {
                    time_nanos,
                    reporter: cfg.reporter.as_str(),
                    method: &self.method,
                    path: &self.path,
                    authority: &self.authority,
                    protocol: labels.get(Label::RequestProtocol),
                    status: code,
                    grpc_status: grpc_code,
                    response_flags: &response_flags,
                    duration_ms: duration_ns.map(nanos_to_millis),
                    request_bytes,
                    response_bytes,
                    peer_principal: principal,
                    source_workload: src_wl,
                    source_namespace: src_ns,
                    trace_id,
                    canary,
                    ratelimit,
                    intentions,
                };
                // Configured, so wanted: no level check first (a host call per request); a host
                // whose level is above info drops the line.
                host.log(LogLevel::Info, &record.to_json(max_field_bytes));
            };
            // The trace id is written on the stack, not allocated.
            match self.trace.trace() {
                Some(t) => t.with_trace_id_hex(|id| emit(Some(id))),
                None => emit(None),
            }
        };
        match (&self.decisions, &batched) {
            (Some(d), _) | (None, Some(d)) => line(
                d.canary.as_deref(),
                d.ratelimit.as_deref(),
                d.intentions.as_deref(),
            ),
            // A pass holds them: lent from its memory, not copied.
            (None, None) => {
                let written = std::cell::Cell::new(false);
                let _ = decision::with(host, decision::CANARY, |c| {
                    decision::with(host, decision::RATELIMIT, |r| {
                        decision::with(host, decision::INTENTIONS, |i| {
                            line(c, r, i);
                            written.set(true);
                        })
                    })
                });
                if !written.get() {
                    // A host that failed after lending: the line without the verdicts.
                    line(None, None, None);
                }
            }
        }
    }
}

/// Fills the labels about the client and our own principal (`local_san`, read at log time
/// on mTLS), borrowing what needs no encoding; returns the peer principal.
fn destination_labels<'l>(
    labels: &mut LabelValues<'l>,
    peer: Option<&'l PeerMetadata>,
    mtls: bool,
    san: Option<&'l [u8]>,
    local_san: Option<&'l [u8]>,
) -> Option<&'l [u8]> {
    let text = san.and_then(|s| std::str::from_utf8(s).ok());
    set_principal(labels, Label::SourcePrincipal, san, text);
    fill_peer(
        labels,
        peer,
        text,
        [
            Label::SourceWorkload,
            Label::SourceWorkloadNamespace,
            Label::SourceCanonicalService,
            Label::SourceCanonicalRevision,
            Label::SourceApp,
            Label::SourceVersion,
            Label::SourceCluster,
        ],
    );
    if let Some(local) = local_san {
        labels.set_borrowed(Label::DestinationPrincipal, local);
    }
    let policy = if mtls { plain::MUTUAL_TLS } else { plain::NONE };
    labels.set_const(Label::ConnectionSecurityPolicy, policy);
    san
}

/// Fills the labels about the server from the upstream's `[local, peer]` URI SANs; returns
/// the upstream's principal.
fn source_labels<'l>(
    labels: &mut LabelValues<'l>,
    peer: Option<&'l PeerMetadata>,
    authority: &[u8],
    [local, san]: &'l [Option<Vec<u8>>; 2],
) -> Option<&'l [u8]> {
    if let Some(local) = local {
        labels.set_borrowed(Label::SourcePrincipal, local);
    }
    let text = san.as_deref().and_then(|s| std::str::from_utf8(s).ok());
    set_principal(labels, Label::DestinationPrincipal, san.as_deref(), text);
    fill_peer(
        labels,
        peer,
        text,
        [
            Label::DestinationWorkload,
            Label::DestinationWorkloadNamespace,
            Label::DestinationCanonicalService,
            Label::DestinationCanonicalRevision,
            Label::DestinationApp,
            Label::DestinationVersion,
            Label::DestinationCluster,
        ],
    );
    let host_name = authority_host(authority);
    if !host_name.is_empty() {
        labels.set(Label::DestinationService, &host_name);
        let mut parts = host_name.split(|b| *b == b'.');
        labels.set(
            Label::DestinationServiceName,
            parts.next().unwrap_or_default(),
        );
        let k8s = host_name.ends_with(b".svc.cluster.local") || host_name.ends_with(b".svc");
        match (k8s, parts.next(), peer) {
            (true, Some(ns), _) => labels.set(Label::DestinationServiceNamespace, ns),
            (_, _, Some(p)) => {
                labels.set_borrowed_str(Label::DestinationServiceNamespace, &p.namespace)
            }
            _ => {}
        }
    }
    san.as_deref()
}

/// Sets a principal from a peer's URI SAN, checked as UTF-8 once by the caller (`text`).
fn set_principal<'l>(
    labels: &mut LabelValues<'l>,
    label: Label,
    san: Option<&'l [u8]>,
    text: Option<&'l str>,
) {
    match (text, san) {
        (Some(t), _) => labels.set_borrowed_str(label, t),
        // Not UTF-8, so not plain: encoded, with no second UTF-8 check.
        (None, Some(s)) => labels.set(label, s),
        (None, None) => {}
    }
}

/// Workload, namespace, canonical service and revision, app, version and cluster of the other
/// side: trusted peer metadata first, else what the URI SAN says as a SPIFFE ID (workload and
/// namespace; parsed only then).
fn fill_peer<'l>(
    labels: &mut LabelValues<'l>,
    peer: Option<&'l PeerMetadata>,
    san: Option<&'l str>,
    [workload, namespace, service, revision, app, version, cluster]: [Label; 7],
) {
    if let Some(p) = peer {
        labels.set_borrowed_str(workload, &p.workload);
        labels.set_borrowed_str(namespace, &p.namespace);
        for (label, value) in [
            (service, &p.service),
            (revision, &p.revision),
            (app, &p.app),
            (version, &p.version),
            (cluster, &p.cluster),
        ] {
            if let Some(v) = value {
                labels.set_borrowed_str(label, v);
            }
        }
    } else if let Some(id) = san.and_then(|s| SpiffeRef::parse(s).ok()) {
        labels.set_borrowed_str(workload, id.name);
        labels.set_borrowed_str(namespace, id.namespace);
    }
}

/// Accepts peer metadata only with a peer certificate, and only if it does not contradict
/// the certificate's SPIFFE namespace.
fn trusted_peer(raw: &[u8], peer_san: Option<&[u8]>) -> Option<PeerMetadata> {
    let san = peer_san?;
    let meta = PeerMetadata::parse(raw).ok()?;
    let spiffe = std::str::from_utf8(san)
        .ok()
        .and_then(|s| SpiffeRef::parse(s).ok());
    match spiffe {
        Some(id) if id.namespace != meta.namespace => None,
        _ => Some(meta),
    }
}

#[cfg(test)]
mod tests;
