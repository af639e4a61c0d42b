//! A builder-style fake host and a fake clock, for tests of any crate.
//!
//! `FakeHost` records what a filter did (headers set, local replies, logs, metrics) so tests
//! assert on behaviour. Its shared store and clock are handles that several fake hosts can
//! share, the way Envoy workers share one store. `FakeProxy` holds those shared handles, so a
//! test builds its workers and requests on one fake Envoy.

use crate::{
    Action, Clock, GrpcCall, GrpcCalls, HeaderMap, HostError, HttpFilter, HttpHeaders, LocalReply,
    Log, LogLevel, MetricId, MetricKind, Metrics, Properties, PropertySet, PropertyValues, Random,
    RootFilter, SharedStore, Versioned,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Where a fake clock starts: a recent instant (late 2023), so code that subtracts or formats
/// times meets realistic values.
const START_NANOS: u64 = 1_700_000_000_000_000_000;

/// A clock that moves only when told. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    pub fn at_nanos(nanos: u64) -> Self {
        Self(Arc::new(AtomicU64::new(nanos)))
    }
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
    pub fn set_nanos(&self, nanos: u64) {
        self.0.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct StoreInner {
    entries: HashMap<String, (Vec<u8>, u32)>,
    /// Writes to fail with a CAS mismatch next, as if another worker won each race.
    forced_conflicts: u32,
}

/// A shared store with CAS semantics like proxy-wasm's. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct FakeStore(Arc<Mutex<StoreInner>>);

impl FakeStore {
    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The next `n` CAS writes fail with [`HostError::CasMismatch`] and bump the entry's
    /// version, as a concurrent writer would.
    pub fn force_cas_conflicts(&self, n: u32) {
        self.lock().forced_conflicts = n;
    }
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().entries.get(key).map(|(v, _)| v.clone())
    }
}

impl SharedStore for FakeStore {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        Ok(self.lock().entries.get(key).map(|(value, cas)| Versioned {
            value: value.clone(),
            cas: *cas,
        }))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut inner = self.lock();
        let current = inner.entries.get(key).map_or(0, |(_, v)| *v);
        if cas.is_some() && inner.forced_conflicts > 0 {
            inner.forced_conflicts -= 1;
            let entry = inner
                .entries
                .entry(key.to_owned())
                .or_insert_with(|| (value.to_vec(), 0));
            entry.1 = entry.1.wrapping_add(1).max(1);
            return Err(HostError::CasMismatch);
        }
        // As in Envoy: a CAS of 0 writes unconditionally, and a missing key is always written.
        let exists = inner.entries.contains_key(key);
        if let Some(expected) = cas {
            if exists && expected != 0 && expected != current {
                return Err(HostError::CasMismatch);
            }
        }
        let next = current.wrapping_add(1).max(1);
        inner.entries.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

/// A metric as the fake host holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMetric {
    pub kind: MetricKind,
    pub name: String,
    /// Counter or gauge value; for a histogram, the number of samples.
    pub value: i64,
    pub samples: Vec<u64>,
}

/// Metrics kept by name. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct FakeMetrics(Arc<Mutex<Vec<FakeMetric>>>);

impl FakeMetrics {
    fn lock(&self) -> MutexGuard<'_, Vec<FakeMetric>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The value of the metric called `name`, if it was defined.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.lock().iter().find(|m| m.name == name).map(|m| m.value)
    }
    pub fn samples(&self, name: &str) -> Vec<u64> {
        self.lock()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.samples.clone())
            .unwrap_or_default()
    }
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().map(|m| m.name.clone()).collect()
    }
}

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SentReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Map = Vec<(String, Vec<u8>)>;

/// A gRPC call a filter started, as the fake host recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentGrpcCall {
    pub token: u32,
    pub service: String,
    pub service_name: String,
    pub method: String,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub message: Vec<u8>,
    pub timeout_ms: u32,
}

/// A fake proxy: build it with the request it should present, run a filter against it, then
/// inspect what the filter did.
#[derive(Debug)]
pub struct FakeHost {
    clock: FakeClock,
    store: FakeStore,
    metrics: FakeMetrics,
    properties: RefCell<HashMap<Vec<String>, Vec<u8>>>,
    maps: RefCell<[Map; 4]>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    replies: RefCell<Vec<SentReply>>,
    random_seed: Cell<u64>,
    /// Count of every host call, to check hot paths stay lean.
    host_calls: Cell<u64>,
    call_log: RefCell<Vec<String>>,
    fail_header_reads: Cell<bool>,
    /// Metric names whose definition fails (a host out of stats, a name it refuses).
    refuse_metric: RefCell<Option<MetricFilter>>,
    grpc_calls: RefCell<Vec<SentGrpcCall>>,
    /// What `grpc_call` fails with, if it fails.
    grpc_refusal: Cell<Option<HostError>>,
    resumes: Cell<u32>,
}

/// Which metric definitions a [`FakeHost`] refuses.
pub struct MetricFilter(Box<dyn Fn(&str) -> bool>);

impl std::fmt::Debug for MetricFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricFilter")
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

fn index(map: HeaderMap) -> usize {
    match map {
        HeaderMap::Request => 0,
        HeaderMap::Response => 1,
        HeaderMap::RequestTrailers => 2,
        HeaderMap::ResponseTrailers => 3,
    }
}

// === impl FakeHost: builder ===

impl FakeHost {
    pub fn new() -> Self {
        Self {
            clock: FakeClock::at_nanos(START_NANOS),
            store: FakeStore::default(),
            metrics: FakeMetrics::default(),
            properties: RefCell::new(HashMap::new()),
            maps: RefCell::new(Default::default()),
            logs: RefCell::new(Vec::new()),
            replies: RefCell::new(Vec::new()),
            random_seed: Cell::new(0x9e37_79b9_7f4a_7c15),
            host_calls: Cell::new(0),
            call_log: RefCell::new(Vec::new()),
            fail_header_reads: Cell::new(false),
            refuse_metric: RefCell::new(None),
            grpc_calls: RefCell::new(Vec::new()),
            grpc_refusal: Cell::new(None),
            resumes: Cell::new(0),
        }
    }

    /// Shares `clock` with this host (and whoever else holds it).
    pub fn with_clock(mut self, clock: &FakeClock) -> Self {
        self.clock = clock.clone();
        self
    }
    /// Shares `store` with this host, as Envoy workers share shared data.
    pub fn with_store(mut self, store: &FakeStore) -> Self {
        self.store = store.clone();
        self
    }
    pub fn with_metrics(mut self, metrics: &FakeMetrics) -> Self {
        self.metrics = metrics.clone();
        self
    }
    /// Appends a request header (call twice for a repeated header).
    pub fn request_header(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(HeaderMap::Request, name, value.as_ref());
        self
    }
    pub fn response_header(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(HeaderMap::Response, name, value.as_ref());
        self
    }
    /// Sets `:method`, `:path`, `:authority` and `:scheme` in one go.
    /// A request head; the connection is plaintext unless `connection.mtls` was set (in
    /// Envoy that flag exists on every connection).
    pub fn request(self, method: &str, authority: &str, path: &str) -> Self {
        self.properties
            .borrow_mut()
            .entry(vec!["connection".to_owned(), "mtls".to_owned()])
            .or_insert_with(|| vec![0]);
        self.request_header(":method", method)
            .request_header(":scheme", "http")
            .request_header(":authority", authority)
            .request_header(":path", path)
    }
    pub fn property(self, path: &[&str], value: impl AsRef<[u8]>) -> Self {
        self.set_prop(path, value.as_ref());
        self
    }
    pub fn random_seed(self, seed: u64) -> Self {
        self.random_seed.set(seed);
        self
    }
    /// Makes `define_metric` fail with `BadArgument` for every name `refuse` holds true (it may
    /// count: `refuse` is called once per definition, in order).
    pub fn refusing_metrics(self, refuse: impl Fn(&str) -> bool + 'static) -> Self {
        *self.refuse_metric.borrow_mut() = Some(MetricFilter(Box::new(refuse)));
        self
    }
    /// Makes every `grpc_call` fail with `error`, as Envoy refuses a call it cannot start.
    pub fn refusing_grpc_calls(self, error: HostError) -> Self {
        self.grpc_refusal.set(Some(error));
        self
    }
    /// Makes every header read fail, to prove a filter survives a broken host.
    pub fn failing_header_reads(self) -> Self {
        self.fail_header_reads.set(true);
        self
    }

    fn push(&self, map: HeaderMap, name: &str, value: &[u8]) {
        if let Some(m) = self.maps.borrow_mut().get_mut(index(map)) {
            m.push((name.to_ascii_lowercase(), value.to_vec()));
        }
    }
    fn set_prop(&self, path: &[&str], value: &[u8]) {
        let key = path.iter().map(|s| (*s).to_owned()).collect();
        self.properties.borrow_mut().insert(key, value.to_vec());
    }
    /// Counts a host call; `what` names it for [`FakeHost::host_call_log`].
    fn count(&self, what: impl FnOnce() -> String) {
        self.host_calls.set(self.host_calls.get() + 1);
        self.call_log.borrow_mut().push(what());
    }
    fn metric_name(&self, id: MetricId) -> String {
        self.metrics
            .lock()
            .get(id.0 as usize)
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
}

// === impl FakeHost: inspection ===

impl FakeHost {
    pub fn clock(&self) -> &FakeClock {
        &self.clock
    }
    pub fn store(&self) -> &FakeStore {
        &self.store
    }
    pub fn metrics(&self) -> &FakeMetrics {
        &self.metrics
    }
    /// Adds a response header after the request phase ran (as the upstream answers).
    pub fn upstream_responds(&self, status: u16, headers: &[(&str, &str)]) {
        self.push(
            HeaderMap::Response,
            ":status",
            status.to_string().as_bytes(),
        );
        for (k, v) in headers {
            self.push(HeaderMap::Response, k, v.as_bytes());
        }
    }
    pub fn set_property_now(&self, path: &[&str], value: impl AsRef<[u8]>) {
        self.set_prop(path, value.as_ref());
    }
    /// Every value of `name` in `map` as lossy strings.
    pub fn header_strings(&self, map: HeaderMap, name: &str) -> Vec<String> {
        self.maps
            .borrow()
            .get(index(map))
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The first value of a request header as a lossy string.
    pub fn request_header_str(&self, name: &str) -> Option<String> {
        self.header_strings(HeaderMap::Request, name)
            .into_iter()
            .next()
    }
    pub fn response_header_str(&self, name: &str) -> Option<String> {
        self.header_strings(HeaderMap::Response, name)
            .into_iter()
            .next()
    }
    pub fn local_reply(&self) -> Option<SentReply> {
        self.replies.borrow().last().cloned()
    }
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }
    pub fn logs_at(&self, level: LogLevel) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
    /// Number of host calls made so far.
    pub fn host_calls(&self) -> u64 {
        self.host_calls.get()
    }
    /// Every host call made so far, named with its main argument, in order.
    pub fn host_call_log(&self) -> Vec<String> {
        self.call_log.borrow().clone()
    }
    /// The gRPC calls started so far, in order.
    pub fn grpc_calls(&self) -> Vec<SentGrpcCall> {
        self.grpc_calls.borrow().clone()
    }
    /// How many times the paused request was resumed.
    pub fn resumes(&self) -> u32 {
        self.resumes.get()
    }
    /// As Envoy answers it: `["filter_state", "wasm.k"]` is what `set_property(["k"])` wrote.
    pub fn property_value(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key: Vec<String> = match path {
            [crate::batch::FILTER_STATE, key] if key.starts_with(crate::decision::PREFIX) => {
                vec![key.get(crate::decision::PREFIX.len()..)?.to_owned()]
            }
            _ => path.iter().map(|s| (*s).to_owned()).collect(),
        };
        self.properties.borrow().get(&key).cloned()
    }
}

// === impl FakeHost: capabilities ===

impl Log for FakeHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.count(|| "log".to_owned());
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
    /// Every level is enabled; the check is counted, as it is a host call in proxy-wasm.
    fn log_enabled(&self, _level: LogLevel) -> bool {
        self.count(|| "log_enabled".to_owned());
        true
    }
}

impl Clock for FakeHost {
    fn now_nanos(&self) -> u64 {
        self.count(|| "now_nanos".to_owned());
        self.clock.now_nanos()
    }
}

impl Random for FakeHost {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        self.count(|| "fill_random".to_owned());
        // splitmix64: deterministic per seed, so tests can repeat.
        for chunk in buf.chunks_mut(8) {
            let mut z = self.random_seed.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.random_seed.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            for (dst, src) in chunk.iter_mut().zip(bytes.iter()) {
                *dst = *src;
            }
        }
        Ok(())
    }
}

impl Properties for FakeHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.count(|| format!("property {}", path.join(".")));
        Ok(self.property_value(path))
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.count(|| format!("set_property {}", path.join(".")));
        self.set_prop(path, value);
        Ok(())
    }
    /// Like Envoy with CEL: a prepared set is one host call.
    fn prepare_properties(&self, set: PropertySet) -> PropertySet {
        set.prepared(0)
    }
    fn properties(&self, set: &PropertySet) -> PropertyValues {
        if set.handle().is_none() {
            return PropertyValues::each(crate::host::read_each(self, set));
        }
        // An optional path is logged with a `?` (the bench's replay reads it so).
        self.count(|| {
            let paths: Vec<String> = set
                .paths()
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let optional = if set.is_optional(i) { "?" } else { "" };
                    format!("{}{optional}", p.join("."))
                })
                .collect();
            format!("properties {}", paths.join(","))
        });
        // The values come as one serialized list, decoded like Envoy's; a path that is
        // missing and not optional (which would fail Envoy's list) reads as missing in the
        // same call.
        let values: Vec<Option<Vec<u8>>> =
            set.paths().iter().map(|p| self.property_value(p)).collect();
        if values
            .iter()
            .enumerate()
            .any(|(i, v)| v.is_none() && !set.is_optional(i))
        {
            return PropertyValues::each(values);
        }
        let pairs: Vec<(&[u8], &[u8])> = values
            .iter()
            .map(|v| (v.as_deref().unwrap_or_default(), &[][..]))
            .collect();
        let list = crate::HeaderSnapshot::from_pairs(&pairs).to_bytes();
        PropertyValues::decode(list, set).unwrap_or_else(|| PropertyValues::each(values))
    }
}

impl SharedStore for FakeHost {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        self.count(|| format!("shared_get {key}"));
        self.store.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.count(|| format!("shared_set {key}"));
        self.store.shared_set(key, value, cas)
    }
}

impl Metrics for FakeHost {
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.count(|| format!("define_metric {name}"));
        if self
            .refuse_metric
            .borrow()
            .as_ref()
            .is_some_and(|r| (r.0)(name))
        {
            return Err(HostError::BadArgument);
        }
        let mut m = self.metrics.lock();
        if let Some(pos) = m.iter().position(|x| x.name == name) {
            return u32::try_from(pos)
                .map(MetricId)
                .map_err(|_| HostError::Internal);
        }
        m.push(FakeMetric {
            kind,
            name: name.to_owned(),
            value: 0,
            samples: Vec::new(),
        });
        u32::try_from(m.len() - 1)
            .map(MetricId)
            .map_err(|_| HostError::Internal)
    }
    fn increment_metric(&self, id: MetricId, delta: i64) -> Result<(), HostError> {
        self.count(|| format!("increment_metric {}", self.metric_name(id)));
        let mut m = self.metrics.lock();
        let metric = m.get_mut(id.0 as usize).ok_or(HostError::NotFound)?;
        if metric.kind == MetricKind::Histogram {
            return Err(HostError::BadArgument);
        }
        metric.value += delta;
        Ok(())
    }
    fn record_metric(&self, id: MetricId, value: u64) -> Result<(), HostError> {
        self.count(|| format!("record_metric {}", self.metric_name(id)));
        let mut m = self.metrics.lock();
        let metric = m.get_mut(id.0 as usize).ok_or(HostError::NotFound)?;
        match metric.kind {
            MetricKind::Histogram => {
                metric.samples.push(value);
                metric.value += 1;
            }
            _ => metric.value = i64::try_from(value).unwrap_or(i64::MAX),
        }
        Ok(())
    }
}

impl HttpHeaders for FakeHost {
    fn header(&self, map: HeaderMap, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.count(|| format!("header {map:?} {name}"));
        if self.fail_header_reads.get() {
            return Err(HostError::Internal);
        }
        Ok(self.maps.borrow().get(index(map)).and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }))
    }
    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.count(|| format!("headers {map:?}"));
        if self.fail_header_reads.get() {
            return Err(HostError::Internal);
        }
        Ok(self
            .maps
            .borrow()
            .get(index(map))
            .cloned()
            .unwrap_or_default())
    }
    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.count(|| format!("set_header {map:?} {name}"));
        let mut maps = self.maps.borrow_mut();
        let m = maps.get_mut(index(map)).ok_or(HostError::BadArgument)?;
        m.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        m.push((name.to_ascii_lowercase(), value.to_vec()));
        Ok(())
    }
    fn add_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.count(|| format!("add_header {map:?} {name}"));
        self.push(map, name, value);
        Ok(())
    }
    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError> {
        self.count(|| format!("remove_header {map:?} {name}"));
        let mut maps = self.maps.borrow_mut();
        let m = maps.get_mut(index(map)).ok_or(HostError::BadArgument)?;
        m.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        Ok(())
    }
}

impl LocalReply for FakeHost {
    fn send_local_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.count(|| "send_local_reply".to_owned());
        self.replies.borrow_mut().push(SentReply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        });
        Ok(())
    }
}

impl GrpcCalls for FakeHost {
    fn grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        self.count(|| format!("grpc_call {}/{}", call.service_name, call.method));
        if let Some(e) = self.grpc_refusal.get() {
            return Err(e);
        }
        let mut calls = self.grpc_calls.borrow_mut();
        let token = u32::try_from(calls.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        calls.push(SentGrpcCall {
            token,
            service: call.service.to_owned(),
            service_name: call.service_name.to_owned(),
            method: call.method.to_owned(),
            metadata: call
                .metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
            message: call.message.to_vec(),
            timeout_ms: call.timeout_ms,
        });
        Ok(token)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.count(|| "resume_request".to_owned());
        self.resumes.set(self.resumes.get() + 1);
        Ok(())
    }
}

/// One fake Envoy: the shared data, clock and stats its workers share. Every host it builds
/// sees the same three, so roots and requests on different workers meet as they do in Envoy.
#[derive(Debug, Clone)]
pub struct FakeProxy {
    pub store: FakeStore,
    pub clock: FakeClock,
    pub metrics: FakeMetrics,
}

/// What one whole request through a filter returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The request-headers action.
    pub request: Action,
    /// The response-headers action; `None` when the request paused, so no upstream answered.
    pub response: Option<Action>,
}

impl Default for FakeProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeProxy {
    /// Empty shared data and stats; the clock starts where [`FakeHost::new`]'s does.
    pub fn new() -> Self {
        Self {
            store: FakeStore::default(),
            clock: FakeClock::at_nanos(START_NANOS),
            metrics: FakeMetrics::default(),
        }
    }

    /// A new host (a worker's view, or one request's) on this proxy's store, clock and stats.
    pub fn host(&self) -> FakeHost {
        FakeHost::new()
            .with_store(&self.store)
            .with_clock(&self.clock)
            .with_metrics(&self.metrics)
    }

    /// A `GET` request to `authority` and `path` on this proxy.
    pub fn get(&self, authority: &str, path: &str) -> FakeHost {
        self.host().request("GET", authority, path)
    }

    /// A worker's root configured with `config` on its own host: each worker is its own VM,
    /// so `seed` gives it its own randomness. `Err` carries that host's log lines, to show why
    /// the configuration was refused.
    pub fn worker<R: RootFilter + Default>(
        &self,
        config: &[u8],
        seed: u64,
    ) -> Result<R, Vec<String>> {
        let host = self.host().random_seed(seed);
        let mut root = R::default();
        if root.on_configure(&host, config) {
            Ok(root)
        } else {
            Err(host.logs().into_iter().map(|(_, line)| line).collect())
        }
    }

    /// One whole request through a new filter of `root`: request headers; when they continue,
    /// the upstream answers `status` (headers only, so they end the stream) and the response
    /// headers run; then the log, which Envoy calls either way.
    pub fn exchange<R: RootFilter>(root: &R, host: &FakeHost, status: u16) -> Exchange {
        let mut filter = root.new_http();
        let request = filter.on_request_headers(host, true);
        let response = (request == Action::Continue).then(|| {
            host.upstream_responds(status, &[]);
            filter.on_response_headers(host, true)
        });
        filter.on_log(host);
        Exchange { request, response }
    }
}

#[cfg(test)]
mod tests;
