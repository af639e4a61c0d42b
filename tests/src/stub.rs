//! Stub upstreams: each answers with its name, the request's method, path and every header as
//! JSON, with a status it can be told to return (`set_status`, or per request with the
//! `x-stub-status` header). Status 0 means no answer at all: the stub closes the connection,
//! which Envoy reports as an upstream reset (a local 503).
//!
//! Served by hyper on a tokio runtime of its own: every connection Envoy opens is served at
//! once, however many stay open (a fixed thread pool could leave a new connection waiting
//! behind idle keep-alive ones, which Envoy reports as a 504 after its route timeout).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

struct Shared {
    name: String,
    status: AtomicU16,
    hits: AtomicU64,
}

/// A running stub upstream on 127.0.0.1; stopped on drop (its listener and connections close
/// in the background right after).
pub struct Stub {
    port: u16,
    shared: Arc<Shared>,
    // Dropping the runtime closes the listener and every connection.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Stub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stub({} on {})", self.shared.name, self.port)
    }
}

impl Stub {
    /// Starts a stub called `name` on a free port.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("stub-{name}"))
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            status: AtomicU16::new(200),
            hits: AtomicU64::new(0),
        });
        runtime.spawn(accept(listener, shared.clone()));
        Ok(Self {
            port,
            shared,
            runtime: Some(runtime),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn name(&self) -> &str {
        &self.shared.name
    }
    /// Status for every later request that does not carry `x-stub-status` (0: reset).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }
    /// Requests answered (or reset) so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // Out of descriptors, say: wait for some to close instead of spinning.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Why the stub closed a connection instead of answering (status 0).
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset on request")
    }
}

impl std::error::Error for Reset {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn answer(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut status = shared.status.load(Ordering::SeqCst);
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "x-stub-status" {
            status = value.parse().unwrap_or(status);
        }
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value);
    }
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // Read the whole body so keep-alive connections stay usable.
    let body_bytes = req.into_body().collect().await?.to_bytes().len();
    let body = json!({
        "upstream": shared.name,
        "method": method,
        "path": path,
        "headers": headers,
        "body_bytes": body_bytes,
    })
    .to_string();
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if status == 0 {
        // hyper drops the connection when the service fails.
        return Err(Box::new(Reset));
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&shared.name) {
        h.insert("x-upstream", v);
    }
    Ok(resp)
}
