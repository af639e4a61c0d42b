//! Stub upstreams: each answers with its name, the request's method, path and every header as
//! JSON, with a status it can be told to return (`set_status`, or per request with the
//! `x-stub-status` header).

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const WORKERS: usize = 16;

struct Shared {
    name: String,
    status: AtomicU16,
    hits: AtomicU64,
    stop: AtomicBool,
}

/// A running stub upstream on 127.0.0.1; stopped on drop.
pub struct Stub {
    port: u16,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Stub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stub({} on {})", self.shared.name, self.port)
    }
}

impl Stub {
    /// Starts a stub called `name` on a free port.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("stub: {e}"))?,
        );
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| anyhow::anyhow!("stub has no ip address"))?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            status: AtomicU16::new(200),
            hits: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let threads = (0..WORKERS)
            .map(|_| {
                let (server, shared) = (server.clone(), shared.clone());
                std::thread::spawn(move || serve(&server, &shared))
            })
            .collect();
        Ok(Self {
            port,
            shared,
            server,
            threads,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn name(&self) -> &str {
        &self.shared.name
    }
    /// Status for every later request that does not carry `x-stub-status`.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }
    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for _ in 0..WORKERS {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let mut req = match server.recv() {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut status = shared.status.load(Ordering::SeqCst);
        for h in req.headers() {
            let name = h.field.as_str().as_str().to_ascii_lowercase();
            let value = h.value.as_str().to_owned();
            if name == "x-stub-status" {
                status = value.parse().unwrap_or(status);
            }
            headers.entry(name).or_default().push(value);
        }
        // Drain the body so keep-alive connections stay usable.
        let mut sink = Vec::new();
        let _ = req.as_reader().read_to_end(&mut sink);
        let body = json!({
            "upstream": shared.name,
            "method": req.method().as_str(),
            "path": req.url(),
            "headers": headers,
            "body_bytes": sink.len(),
        })
        .to_string();
        shared.hits.fetch_add(1, Ordering::SeqCst);
        let content_type = tiny_http::Header::from_bytes("content-type", "application/json").ok();
        let upstream = tiny_http::Header::from_bytes("x-upstream", shared.name.as_bytes()).ok();
        let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
        for h in [content_type, upstream].into_iter().flatten() {
            resp.add_header(h);
        }
        let _ = req.respond(resp);
    }
}
