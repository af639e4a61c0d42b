//! The one adapter over the proxy-wasm SDK: host calls in, domain errors out.
//!
//! It calls the SDK's `hostcalls` directly (never the context traits' helpers, which panic on
//! error) and registers a [`RootFilter`] with the SDK's dispatcher.

use crate::{
    Action, Clock, GrpcCall, GrpcCalls, GrpcResponse, GrpcStatus, HeaderMap, HeaderSnapshot,
    HostError, HttpFilter, HttpHeaders, LocalReply, Log, LogLevel, MetricId, MetricKind, Metrics,
    Properties, PropertySet, PropertyValues, Random, RootFilter, SharedStore, Versioned,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{self as pw, BufferType, MapType, MetricType, Status};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

#[doc(hidden)]
pub use proxy_wasm as __sdk;

// === impl HostError ===

impl From<Status> for HostError {
    fn from(status: Status) -> Self {
        match status {
            Status::NotFound | Status::Empty => HostError::NotFound,
            Status::CasMismatch => HostError::CasMismatch,
            Status::BadArgument => HostError::BadArgument,
            Status::SerializationFailure | Status::ParseFailure => HostError::Serialization,
            _ => HostError::Internal,
        }
    }
}

fn map_type(map: HeaderMap) -> MapType {
    match map {
        HeaderMap::Request => MapType::HttpRequestHeaders,
        HeaderMap::Response => MapType::HttpResponseHeaders,
        HeaderMap::RequestTrailers => MapType::HttpRequestTrailers,
        HeaderMap::ResponseTrailers => MapType::HttpResponseTrailers,
    }
}

/// The proxy-wasm host. Zero-sized: the SDK tracks which context is current.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyWasmHost;

// === impl ProxyWasmHost ===

impl Log for ProxyWasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => pw::LogLevel::Trace,
            LogLevel::Debug => pw::LogLevel::Debug,
            LogLevel::Info => pw::LogLevel::Info,
            LogLevel::Warn => pw::LogLevel::Warn,
            LogLevel::Error => pw::LogLevel::Error,
            LogLevel::Critical => pw::LogLevel::Critical,
        };
        // A log line that cannot be written has nowhere else to go.
        let _ = hostcalls::log(level, message);
    }

    fn log_enabled(&self, level: LogLevel) -> bool {
        let current = match hostcalls::get_log_level() {
            Ok(l) => l as u32,
            Err(_) => return true,
        };
        let wanted = match level {
            LogLevel::Trace => 0,
            LogLevel::Debug => 1,
            LogLevel::Info => 2,
            LogLevel::Warn => 3,
            LogLevel::Error => 4,
            LogLevel::Critical => 5,
        };
        wanted >= current
    }
}

impl Clock for ProxyWasmHost {
    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

thread_local! {
    // One per VM: a wasm VM runs on one worker thread.
    static ENTROPY: std::cell::RefCell<crate::entropy::EntropyPool> =
        std::cell::RefCell::new(crate::entropy::EntropyPool::default());
}

impl Random for ProxyWasmHost {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        // WASI `random_get`, served by the host, a block at a time.
        let direct = |b: &mut [u8]| getrandom::fill(b).map_err(|_| HostError::Unsupported);
        ENTROPY
            .try_with(|pool| match pool.try_borrow_mut() {
                Ok(mut pool) => pool.fill(buf, direct),
                Err(_) => direct(buf),
            })
            .unwrap_or_else(|_| direct(buf))
    }
}

/// Whether a batched read has failed in this VM yet.
static BATCH_FAILED: AtomicBool = AtomicBool::new(false);

impl Properties for ProxyWasmHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(hostcalls::get_property(path.to_vec())?)
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        Ok(hostcalls::set_property(path.to_vec(), Some(value))?)
    }

    /// Compiles the set into one CEL expression with Envoy's `expr_create` foreign function.
    /// An Envoy built without CEL refuses it, and the set is read one property at a time.
    fn prepare_properties(&self, set: PropertySet) -> PropertySet {
        let Some(expr) = crate::batch::cel_list(&set) else {
            return set;
        };
        let created = hostcalls::call_foreign_function("expr_create", Some(expr.as_bytes()));
        match created.map(|t| t.as_deref().map(<[u8; 4]>::try_from)) {
            Ok(Some(Ok(token))) => set.prepared(u32::from_le_bytes(token)),
            other => {
                let why = format!("{:?}", other.map(|t| t.map(|r| r.is_ok())));
                self.log(
                    LogLevel::Info,
                    &format!("properties {expr} are read one at a time: expr_create gave {why}"),
                );
                set
            }
        }
    }

    /// One `expr_evaluate` call. The list fails as a whole when one attribute is missing
    /// (a response that never came has no `response.code`); then each is read alone.
    fn properties(&self, set: &PropertySet) -> PropertyValues {
        if let Some(token) = set.handle() {
            let answer =
                hostcalls::call_foreign_function("expr_evaluate", Some(&token.to_le_bytes()));
            if let Ok(Some(bytes)) = answer {
                if let Some(values) = PropertyValues::decode(bytes, set) {
                    return values;
                }
            }
            // Expected now and then (an abandoned request has no `response.code`), but a set
            // that always fails costs a call per property: said once per VM, at info.
            if !BATCH_FAILED.swap(true, Ordering::Relaxed) {
                self.log(
                    LogLevel::Info,
                    &format!(
                        "{}: {} properties read one at a time (said once per vm)",
                        crate::batch::FAILED_LOG,
                        set.paths().len()
                    ),
                );
            }
        }
        PropertyValues::each(crate::host::read_each(self, set))
    }
}

impl SharedStore for ProxyWasmHost {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        match hostcalls::get_shared_data(key)? {
            (Some(value), Some(cas)) => Ok(Some(Versioned { value, cas })),
            (Some(value), None) => Ok(Some(Versioned { value, cas: 0 })),
            (None, _) => Ok(None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        Ok(hostcalls::set_shared_data(key, Some(value), cas)?)
    }
}

impl Metrics for ProxyWasmHost {
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        Ok(MetricId(hostcalls::define_metric(kind, name)?))
    }

    fn increment_metric(&self, id: MetricId, delta: i64) -> Result<(), HostError> {
        Ok(hostcalls::increment_metric(id.0, delta)?)
    }

    fn record_metric(&self, id: MetricId, value: u64) -> Result<(), HostError> {
        Ok(hostcalls::record_metric(id.0, value)?)
    }
}

impl HttpHeaders for ProxyWasmHost {
    fn header(&self, map: HeaderMap, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(abi::map_value(map_type(map), name)?)
    }

    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Ok(self.header_map(map)?.to_pairs())
    }

    fn header_map(&self, map: HeaderMap) -> Result<HeaderSnapshot, HostError> {
        HeaderSnapshot::parse(abi::map_pairs(map_type(map))?).ok_or(HostError::Serialization)
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        Ok(abi::replace(map_type(map), name, value)?)
    }

    fn add_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        Ok(abi::add(map_type(map), name, value)?)
    }

    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError> {
        Ok(abi::remove(map_type(map), name)?)
    }
}

impl LocalReply for ProxyWasmHost {
    fn send_local_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        Ok(hostcalls::send_http_response(
            u32::from(status),
            headers.to_vec(),
            Some(body),
        )?)
    }
}

/// ABI calls made directly: the SDK's wrappers for them panic on statuses the host can return
/// (continuing a stream the client already reset, a header map the current callback does not
/// have), and its map reader allocates a `String` per header.
#[allow(unsafe_code)]
mod abi {
    use proxy_wasm::types::{MapType, Status, StreamType};
    use std::ptr::null_mut;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_continue_stream(stream_type: StreamType) -> Status;
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
        fn proxy_get_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> Status;
        fn proxy_replace_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> Status;
        fn proxy_add_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> Status;
        fn proxy_remove_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
        ) -> Status;
    }

    pub fn continue_request() -> Status {
        // SAFETY: no pointers cross; the host validates the stream type.
        unsafe { proxy_continue_stream(StreamType::HttpRequest) }
    }

    /// Takes the buffer the host wrote through `proxy_on_memory_allocate` (the SDK's
    /// allocator hands out a `Vec`'s storage with capacity equal to the size asked for).
    ///
    /// SAFETY: `data` is null or came from that allocator with exactly `size` bytes.
    unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            Vec::new()
        } else {
            // SAFETY: see the function's contract.
            unsafe { Vec::from_raw_parts(data, size, size) }
        }
    }

    /// The serialized map; `Err` with the host's status.
    pub fn map_pairs(map: MapType) -> Result<Vec<u8>, Status> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: both out-pointers are valid; the host fills them on `Ok` only.
        match unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) } {
            // SAFETY: written by the host through the guest allocator.
            Status::Ok => Ok(unsafe { take(data, size) }),
            status => Err(status),
        }
    }

    /// The first value of `key`; `Ok(None)` when absent.
    pub fn map_value(map: MapType, key: &str) -> Result<Option<Vec<u8>>, Status> {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: `key` outlives the call; out-pointers as in `map_pairs`.
        let status = unsafe {
            proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut data, &mut size)
        };
        match status {
            // SAFETY: as in `map_pairs`.
            Status::Ok => Ok(Some(unsafe { take(data, size) })),
            Status::NotFound => Ok(None),
            status => Err(status),
        }
    }

    fn status(s: Status) -> Result<(), Status> {
        match s {
            Status::Ok => Ok(()),
            s => Err(s),
        }
    }

    pub fn replace(map: MapType, key: &str, value: &[u8]) -> Result<(), Status> {
        // SAFETY: both slices outlive the call; the host copies them.
        status(unsafe {
            proxy_replace_header_map_value(
                map,
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    pub fn add(map: MapType, key: &str, value: &[u8]) -> Result<(), Status> {
        // SAFETY: as in `replace`.
        status(unsafe {
            proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
        })
    }

    pub fn remove(map: MapType, key: &str) -> Result<(), Status> {
        // SAFETY: `key` outlives the call.
        status(unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) })
    }
}

impl GrpcCalls for ProxyWasmHost {
    /// The SDK's dispatch registers the token so the answer reaches this stream's context.
    /// It panics on statuses other than ok, parse and internal failure; Envoy returns those
    /// others only for a `service` that is not a `GrpcService` message naming an unknown
    /// cluster, or for unreadable guest memory, which a `GrpcService` built at configuration
    /// time rules out.
    fn grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        Ok(hostcalls::dispatch_grpc_call(
            call.service,
            call.service_name,
            call.method,
            call.metadata.to_vec(),
            Some(call.message),
            Duration::from_millis(u64::from(call.timeout_ms.max(1))),
        )?)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        match abi::continue_request() {
            Status::Ok => Ok(()),
            status => Err(status.into()),
        }
    }
}

// === registration with the SDK dispatcher ===

struct RootAdapter<R: RootFilter> {
    root: R,
}

struct HttpAdapter<F: HttpFilter> {
    filter: F,
}

fn action(a: Action) -> pw::Action {
    match a {
        Action::Continue => pw::Action::Continue,
        Action::Pause => pw::Action::Pause,
    }
}

impl<R: RootFilter> proxy_wasm::traits::Context for RootAdapter<R> {}

impl<R: RootFilter> proxy_wasm::traits::RootContext for RootAdapter<R> {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(c) => c.unwrap_or_default(),
            Err(_) => return false,
        };
        self.root.on_configure(&ProxyWasmHost, &config)
    }

    fn create_http_context(
        &self,
        _context_id: u32,
    ) -> Option<Box<dyn proxy_wasm::traits::HttpContext>> {
        Some(Box::new(HttpAdapter {
            filter: self.root.new_http(),
        }))
    }

    fn get_type(&self) -> Option<pw::ContextType> {
        Some(pw::ContextType::HttpContext)
    }
}

impl<F: HttpFilter> proxy_wasm::traits::Context for HttpAdapter<F> {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.grpc_answer(token_id, status_code, response_size);
    }
}

impl<F: HttpFilter> proxy_wasm::traits::HttpContext for HttpAdapter<F> {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> pw::Action {
        action(
            self.filter
                .on_request_headers(&ProxyWasmHost, end_of_stream),
        )
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> pw::Action {
        action(
            self.filter
                .on_response_headers(&ProxyWasmHost, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.filter.on_log(&ProxyWasmHost);
    }
}

impl<F: HttpFilter> HttpAdapter<F> {
    /// Reads a call's answer (status 0 with a message, else the failure) and resumes the
    /// request when the filter is done with it.
    fn grpc_answer(&mut self, token: u32, status: u32, size: usize) {
        let response: GrpcResponse = if status == 0 {
            match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size) {
                Ok(body) => Ok(body.unwrap_or_default()),
                Err(_) => Err(GrpcStatus::INTERNAL),
            }
        } else {
            Err(GrpcStatus(status))
        };
        if self
            .filter
            .on_grpc_response(&ProxyWasmHost, token, response)
            == Action::Continue
        {
            if let Err(e) = ProxyWasmHost.resume_request() {
                ProxyWasmHost.log(LogLevel::Debug, &format!("cannot resume the request: {e}"));
            }
        }
    }
}

fn new_root<R: RootFilter + Default>(_context_id: u32) -> Box<dyn proxy_wasm::traits::RootContext> {
    Box::new(RootAdapter { root: R::default() })
}

/// Registers root filter `R` with the SDK; called once from the module's entry point.
pub fn register<R: RootFilter + Default>() {
    proxy_wasm::set_log_level(pw::LogLevel::Trace);
    proxy_wasm::set_root_context(new_root::<R>);
}

/// Defines the module's entry point for root filter type `$root` (which implements
/// [`RootFilter`] and `Default`).
#[macro_export]
macro_rules! export_root_filter {
    ($root:ty) => {
        #[allow(unsafe_code)]
        mod __proxy_wasm_entry {
            #[allow(unused_imports)]
            use super::*;
            $crate::proxy::__sdk::main! {{
                $crate::proxy::register::<$root>();
            }}
            /// Read by `cargo xtask build` to drop the exports of callbacks the filter skips.
            #[unsafe(link_section = "mesh.callbacks")]
            #[used]
            static MESH_CALLBACKS: [u8; 1] =
                [<<$root as $crate::RootFilter>::Http as $crate::HttpFilter>::CALLBACKS.bits()];
        }
    };
}
