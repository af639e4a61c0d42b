//! Running several filters in one proxy-wasm filter pass (the suite module).
//!
//! [`PassHost`] wraps a host for the filters of one pass and saves host calls two ways:
//! - what filters publish through [`crate::decision`] stays in memory, so they read each
//!   other's verdicts without host calls (with `write_through` the verdicts also reach the
//!   host: Envoy filter state, for `%FILTER_STATE(wasm.mesh.*)%` in access logs and for other
//!   modules, as the single-capability modules do);
//! - properties of the connection (`connection.*`, `source.*`), which cannot change during a
//!   request, are read from the host once per request however many filters ask;
//! - within one callback (a [`PassHost`] lives for one), a header read twice is read from the
//!   host once (a write to that header through the pass forgets it), and the clock is read
//!   once: the filters of a pass see one instant.
//!
//! Every other call goes straight to the wrapped host.

use crate::{
    Clock, GrpcCall, GrpcCalls, HeaderMap, HeaderSnapshot, HeaderValue, HostError, HttpHeaders,
    LocalReply, Log, LogLevel, MetricId, MetricKind, Metrics, Properties, PropertySet,
    PropertyValues, Random, SharedStore, Versioned,
};
use std::cell::{Cell, RefCell};

/// Most decision keys one pass knows.
pub const MAX_DECISION_KEYS: usize = 4;

/// What one pass keeps for a request: verdicts and connection properties.
#[derive(Debug, Default)]
pub struct PassState {
    /// The decision keys the pass's filters publish under ([`crate::decision`]), given by
    /// whoever composes the pass; sdk-shim knows none of them.
    keys: [Option<&'static str>; MAX_DECISION_KEYS],
    values: RefCell<[Option<Verdict>; MAX_DECISION_KEYS]>,
    /// Keys this pass decides itself. The others (a capability running in another module
    /// of the same filter chain) are read from the host.
    owned: [bool; MAX_DECISION_KEYS],
    /// Connection properties already read (`None`: absent).
    connection: RefCell<InlineCache<InlineKey, Option<Vec<u8>>, 4>>,
}

/// One published verdict. Verdicts are short labels (`allow:intention`, `v2:override`), so
/// they are kept in place: publishing one allocates nothing.
#[derive(Debug, Clone)]
enum Verdict {
    /// The inline buffer the caches' keys use.
    Inline(InlineKey),
    Heap(Vec<u8>),
}

// === impl Verdict ===

impl Verdict {
    /// Longest verdict kept in place.
    #[cfg(test)]
    const INLINE: usize = InlineKey::MAX;

    fn new(value: &[u8]) -> Self {
        InlineKey::with(|k| k.push(value)).map_or_else(|| Self::Heap(value.to_vec()), Self::Inline)
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(bytes) => bytes.as_bytes(),
            Self::Heap(v) => v,
        }
    }
}

/// Properties fixed for the life of a connection, safe to read once per request.
fn connection_scoped(path: &[&str]) -> bool {
    matches!(path.first(), Some(&"connection" | &"source"))
}

impl PassState {
    fn slot(&self, path: &[&str]) -> Option<usize> {
        match path {
            [key] => self.keys.iter().position(|k| k == &Some(*key)),
            _ => None,
        }
    }
    /// State for a pass whose filters publish under `keys`, each marked `true` when a filter
    /// of this pass decides it (beyond [`MAX_DECISION_KEYS`], keys are plain properties);
    /// `Default` knows none.
    pub fn new(keys: &[(&'static str, bool)]) -> Self {
        let mut state = Self::default();
        for ((slot, owned), (key, own)) in
            state.keys.iter_mut().zip(state.owned.iter_mut()).zip(keys)
        {
            *slot = Some(*key);
            *owned = *own;
        }
        state
    }
}

/// A cache key held inline, so caching a read allocates nothing: a lowercase header name,
/// or a property path with each segment preceded by its length (unambiguous without
/// scanning the segments for a separator).
#[derive(Debug, Clone, Copy)]
struct InlineKey {
    len: usize,
    bytes: [u8; InlineKey::MAX],
}

impl InlineKey {
    /// Longer keys (rare) are read without caching.
    const MAX: usize = 48;

    fn header(name: &str) -> Option<Self> {
        let mut key = Self::with(|key| key.push(name.as_bytes()))?;
        if let Some(used) = key.bytes.get_mut(..key.len) {
            used.make_ascii_lowercase();
        }
        Some(key)
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn path(path: &[&str]) -> Option<Self> {
        Self::with(|key| {
            path.iter().try_for_each(|segment| {
                key.push(&[u8::try_from(segment.len()).ok()?])?;
                key.push(segment.as_bytes())
            })
        })
    }

    fn with(fill: impl FnOnce(&mut Self) -> Option<()>) -> Option<Self> {
        let mut key = Self {
            len: 0,
            bytes: [0; Self::MAX],
        };
        fill(&mut key)?;
        Some(key)
    }

    fn push(&mut self, part: &[u8]) -> Option<()> {
        let end = self.len.checked_add(part.len())?;
        self.bytes.get_mut(self.len..end)?.copy_from_slice(part);
        self.len = end;
        Some(())
    }
}

// Only the used bytes count (the rest are zero anyway): a short compare on the hot path.
impl PartialEq for InlineKey {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for InlineKey {}

/// Up to `N` entries in place; when full, more values are simply not cached.
#[derive(Debug)]
struct InlineCache<K, V, const N: usize> {
    entries: [Option<(K, V)>; N],
}

impl<K, V, const N: usize> Default for InlineCache<K, V, N> {
    fn default() -> Self {
        Self {
            entries: std::array::from_fn(|_| None),
        }
    }
}

impl<K: PartialEq, V, const N: usize> InlineCache<K, V, N> {
    fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .iter()
            .flatten()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn put(&mut self, key: K, value: V) {
        if let Some(slot) = self.entries.iter_mut().find(|e| e.is_none()) {
            *slot = Some((key, value));
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.iter().all(Option::is_none)
    }

    fn forget(&mut self, key: &K) {
        for e in &mut self.entries {
            if e.as_ref().is_some_and(|(k, _)| k == key) {
                *e = None;
            }
        }
    }
}

/// The value cached under `key`; else `fetch`'s, cached under `key` (not cached without a
/// key). Errors are not cached: the next read asks the host again.
fn cached<K: PartialEq, V: Clone, const N: usize>(
    cache: &RefCell<InlineCache<K, V, N>>,
    key: Option<K>,
    fetch: impl FnOnce() -> Result<V, HostError>,
) -> Result<V, HostError> {
    let Some(key) = key else {
        return fetch();
    };
    if let Some(v) = cache.borrow().get(&key) {
        return Ok(v.clone());
    }
    let v = fetch()?;
    // Busy only while a lent value is being read (a `*_with` callback): then not cached.
    if let Ok(mut c) = cache.try_borrow_mut() {
        c.put(key, v.clone());
    }
    Ok(v)
}

/// Headers a pass caches within one callback (the suite reads five at most).
const HEADER_ENTRIES: usize = 8;

/// Header values by map and name (`None`: absent).
type HeaderCache = InlineCache<(HeaderMap, InlineKey), Option<Vec<u8>>, HEADER_ENTRIES>;

/// A host for the filters of one pass, for one callback; see the module docs.
#[derive(Debug)]
pub struct PassHost<'a, H> {
    host: &'a H,
    state: &'a PassState,
    /// Also publish each verdict to the host.
    write_through: bool,
    /// Headers read in this callback (`None`: absent).
    headers: RefCell<HeaderCache>,
    /// Read the whole request header map once and serve every request header read from it.
    whole_map: bool,
    /// That map, once read in this callback (dropped when the pass writes to it).
    request_map: RefCell<Option<HeaderSnapshot>>,
    /// A write happened while the map was lent to a callback: drop it before the next read.
    request_map_stale: Cell<bool>,
    now: Cell<Option<u64>>,
}

impl<'a, H> PassHost<'a, H> {
    /// A pass over `host` for one callback of the request whose state is `state`.
    pub fn new(host: &'a H, state: &'a PassState, write_through: bool) -> Self {
        Self {
            host,
            state,
            write_through,
            headers: RefCell::default(),
            whole_map: false,
            request_map: RefCell::new(None),
            request_map_stale: Cell::new(false),
            now: Cell::new(None),
        }
    }

    /// With `whole_map`, the first request header read takes the whole map in one host call
    /// and every later read in this callback is served from it: cheaper than single reads
    /// as soon as the pass reads two headers (about 10k instructions each in Envoy).
    #[must_use]
    pub fn with_whole_request_map(mut self, whole_map: bool) -> Self {
        self.whole_map = whole_map;
        self
    }

    /// Whether `path` is a decision key (kept in memory) rather than a host property.
    fn local(&self, path: &[&str]) -> Option<usize> {
        self.state.slot(path)
    }

    /// Forgets a header this pass writes, so the next read sees the host's value.
    fn forget(&self, map: HeaderMap, name: &str) {
        if map == HeaderMap::Request {
            match self.request_map.try_borrow_mut() {
                Ok(mut m) => drop(m.take()),
                // Lent to a `header_with` callback that writes: dropped before the next read.
                Err(_) => self.request_map_stale.set(true),
            }
        }
        // The cache is never lent out, so it is free here; empty (a pass that reads the
        // whole map), it needs no key. A name too long for a key was never cached.
        if let Ok(mut h) = self.headers.try_borrow_mut() {
            if !h.is_empty() {
                if let Some(key) = InlineKey::header(name) {
                    h.forget(&(map, key));
                }
            }
        }
    }
}

impl<H: Properties> Properties for PassHost<'_, H> {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        match self.local(path) {
            Some(i) if self.state.owned.get(i).copied().unwrap_or(false) => {
                let values = self.state.values.borrow();
                Ok(values
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|v| v.as_bytes().to_vec()))
            }
            Some(_) => self.host.property(path),
            None if connection_scoped(path) => {
                cached(&self.state.connection, InlineKey::path(path), || {
                    self.host.property(path)
                })
            }
            None => self.host.property(path),
        }
    }
    fn property_with<T>(
        &self,
        path: &[&str],
        f: impl FnOnce(Option<&[u8]>) -> T,
    ) -> Result<T, HostError> {
        match self.local(path) {
            Some(i) if self.state.owned.get(i).copied().unwrap_or(false) => {
                let values = self.state.values.borrow();
                Ok(f(values
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(Verdict::as_bytes)))
            }
            None if connection_scoped(path) => {
                let Some(key) = InlineKey::path(path) else {
                    return self.host.property_with(path, f);
                };
                if let Some(v) = self.state.connection.borrow().get(&key) {
                    return Ok(f(v.as_deref()));
                }
                let v = self.host.property(path)?;
                let out = f(v.as_deref());
                if let Ok(mut c) = self.state.connection.try_borrow_mut() {
                    c.put(key, v);
                }
                Ok(out)
            }
            _ => self.host.property_with(path, f),
        }
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        match self.local(path) {
            Some(i) => {
                // Busy only while a verdict is lent to a `property_with` callback.
                let mut values = self
                    .state
                    .values
                    .try_borrow_mut()
                    .map_err(|_| HostError::Internal)?;
                if let Some(slot) = values.get_mut(i) {
                    *slot = Some(Verdict::new(value));
                }
                drop(values);
                if self.write_through {
                    self.host.set_property(path, value)?;
                }
                Ok(())
            }
            None => self.host.set_property(path, value),
        }
    }
    fn prepare_properties(&self, set: PropertySet) -> PropertySet {
        self.host.prepare_properties(set)
    }
    /// When a filter of this pass decides one: a pass that decides none (the suite running
    /// telemetry alone) reads them from the host like a single module.
    fn verdicts_in_memory(&self) -> bool {
        self.state.owned.contains(&true)
    }
    /// The host's batched read, unless a path is a verdict this pass keeps. A connection
    /// property in the set is read in the batch even when cached: one more element costs the
    /// host less than a call of its own.
    fn properties(&self, set: &PropertySet) -> PropertyValues {
        if set.paths().iter().any(|p| self.local(p).is_some()) {
            PropertyValues::each(crate::host::read_each(self, set))
        } else {
            self.host.properties(set)
        }
    }
}

impl<H: Log> Log for PassHost<'_, H> {
    fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, message);
    }
    fn log_enabled(&self, level: LogLevel) -> bool {
        self.host.log_enabled(level)
    }
}

impl<H: Clock> Clock for PassHost<'_, H> {
    fn now_nanos(&self) -> u64 {
        if let Some(now) = self.now.get() {
            return now;
        }
        let now = self.host.now_nanos();
        self.now.set(Some(now));
        now
    }
}

impl<H: Random> Random for PassHost<'_, H> {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        self.host.fill_random(buf)
    }
}

impl<H: SharedStore> SharedStore for PassHost<'_, H> {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        self.host.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.host.shared_set(key, value, cas)
    }
}

impl<H: Metrics> Metrics for PassHost<'_, H> {
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.host.define_metric(kind, name)
    }
    fn increment_metric(&self, id: MetricId, delta: i64) -> Result<(), HostError> {
        self.host.increment_metric(id, delta)
    }
    fn record_metric(&self, id: MetricId, value: u64) -> Result<(), HostError> {
        self.host.record_metric(id, value)
    }
}

impl<H: HttpHeaders> PassHost<'_, H> {
    /// Runs `f` on the request map, read from the host on first use; `None` when this pass
    /// reads headers one by one (or `map` is another map).
    fn in_map<T>(
        &self,
        map: HeaderMap,
        f: impl FnOnce(&HeaderSnapshot) -> T,
    ) -> Option<Result<T, HostError>> {
        if !self.whole_map || map != HeaderMap::Request {
            return None;
        }
        if self.request_map_stale.get() {
            match self.request_map.try_borrow_mut() {
                Ok(mut m) => {
                    m.take();
                    self.request_map_stale.set(false);
                }
                // Still lent out (a read nested in the writing callback): the host has the
                // current value.
                Err(_) => return None,
            }
        }
        if self.request_map.borrow().is_none() {
            let snapshot = match self.host.header_map(map) {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            match self.request_map.try_borrow_mut() {
                Ok(mut m) => *m = Some(snapshot),
                Err(_) => return Some(Ok(f(&snapshot))),
            }
        }
        // Held while `f` runs: a write from inside it marks the map stale instead.
        let m = self.request_map.borrow();
        m.as_ref().map(|snapshot| Ok(f(snapshot)))
    }
}

impl<H: HttpHeaders> HttpHeaders for PassHost<'_, H> {
    fn header(&self, map: HeaderMap, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        if let Some(found) = self.in_map(map, |m| m.get(name).map(<[u8]>::to_vec)) {
            return found;
        }
        cached(
            &self.headers,
            InlineKey::header(name).map(|k| (map, k)),
            || self.host.header(map, name),
        )
    }
    fn header_with<T>(
        &self,
        map: HeaderMap,
        name: &str,
        f: impl FnOnce(Option<&[u8]>) -> T,
    ) -> Result<T, HostError> {
        let mut f = Some(f);
        if let Some(found) = self.in_map(map, |m| f.take().map(|f| f(m.get(name)))) {
            if let Some(out) = found? {
                return Ok(out);
            }
        }
        let v = self.header(map, name)?;
        f.map(|f| f(v.as_deref())).ok_or(HostError::Internal)
    }
    fn header_value(&self, map: HeaderMap, name: &str) -> Result<Option<HeaderValue>, HostError> {
        if let Some(found) = self.in_map(map, |m| m.shared(name)) {
            return found;
        }
        Ok(self.header(map, name)?.map(HeaderValue::Owned))
    }
    fn header_values(&self, map: HeaderMap, name: &str) -> Result<Vec<Vec<u8>>, HostError> {
        if let Some(found) = self.in_map(map, |m| m.values(name).map(<[u8]>::to_vec).collect()) {
            return found;
        }
        self.host.header_values(map, name)
    }
    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        if let Some(found) = self.in_map(map, HeaderSnapshot::to_pairs) {
            return found;
        }
        self.host.headers(map)
    }
    fn header_map(&self, map: HeaderMap) -> Result<HeaderSnapshot, HostError> {
        if let Some(found) = self.in_map(map, HeaderSnapshot::clone) {
            return found;
        }
        self.host.header_map(map)
    }
    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.forget(map, name);
        self.host.set_header(map, name, value)
    }
    fn add_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.forget(map, name);
        self.host.add_header(map, name, value)
    }
    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError> {
        self.forget(map, name);
        self.host.remove_header(map, name)
    }
}

impl<H: LocalReply> LocalReply for PassHost<'_, H> {
    fn send_local_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.host.send_local_reply(status, headers, body)
    }
}

impl<H: GrpcCalls> GrpcCalls for PassHost<'_, H> {
    fn grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        self.host.grpc_call(call)
    }
    fn resume_request(&self) -> Result<(), HostError> {
        self.host.resume_request()
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests;
