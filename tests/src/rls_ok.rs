//! A rate limit service that answers every `ShouldRateLimit` call with `OK`: the far end of a
//! global check for the benchmarks, which price the check itself, not a counting backend
//! (the e2e tests' counting service with Redis is `tests/support/rls.rs`).
//!
//! gRPC over hyper's HTTP/2 server, the one answer encoded by hand (a `RateLimitResponse`
//! whose `overall_code`, field 1, is `OK` = 1), so the harness library needs no protobuf or
//! tonic stack.

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The method path Envoy's and our filter's checks call.
pub const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// The gRPC message of an `OK` answer: 5-byte frame header (uncompressed, length 2) and the
/// protobuf `overall_code: OK`.
const OK_MESSAGE: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];

/// A running always-OK service on 127.0.0.1; stopped on drop.
pub struct RlsOk {
    port: u16,
    calls: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for RlsOk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RlsOk(on {})", self.port)
    }
}

// === impl RlsOk ===

impl RlsOk {
    /// Starts the service on a free port; its threads are named `rls-ok` (a caller may pin
    /// them, see [`RlsOk::thread_ids`]).
    pub fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rls-ok")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let calls = Arc::new(AtomicU64::new(0));
        runtime.spawn(accept(listener, calls.clone()));
        Ok(Self {
            port,
            calls,
            runtime: Some(runtime),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ShouldRateLimit` calls answered so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The kernel thread ids of this process's `rls-ok` threads (from /proc), to pin them.
    pub fn thread_ids() -> Vec<u32> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim_end().starts_with("rls-ok"))
            })
            .filter_map(|t| t.file_name().to_str()?.parse().ok())
            .collect()
    }
}

impl Drop for RlsOk {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, calls: Arc<AtomicU64>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let calls = calls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, calls.clone()));
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn answer(req: Request<Incoming>, calls: Arc<AtomicU64>) -> Result<Response<Grpc>, BoxError> {
    let known = req.uri().path() == SHOULD_RATE_LIMIT;
    // The request message is read whole (and not decoded: every answer is OK).
    req.into_body().collect().await?;
    let mut resp = Response::new(Grpc::new(known));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    if known {
        calls.fetch_add(1, Ordering::SeqCst);
    }
    Ok(resp)
}

/// An answer's body: the `OK` message, then the trailers with the gRPC status (12,
/// UNIMPLEMENTED, and no message for any other method).
pub struct Grpc {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Grpc {
    fn new(known: bool) -> Self {
        let mut trailers = HeaderMap::new();
        let status = if known { "0" } else { "12" };
        trailers.insert("grpc-status", HeaderValue::from_static(status));
        Self {
            message: known.then(|| Bytes::from_static(OK_MESSAGE)),
            trailers: Some(trailers),
        }
    }
}

impl Body for Grpc {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(m) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(m))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.message.as_ref().map_or(0, |m| m.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(port: u16, path: &str) -> (u16, Vec<u8>) {
        let client = reqwest::blocking::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let resp = client
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/grpc")
            .body(vec![0, 0, 0, 0, 0])
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
    }

    #[test]
    fn every_should_rate_limit_call_is_answered_ok_and_counted() {
        let rls = RlsOk::start().unwrap();
        assert_eq!(
            post(rls.port(), SHOULD_RATE_LIMIT),
            (200, OK_MESSAGE.to_vec())
        );
        assert_eq!(post(rls.port(), SHOULD_RATE_LIMIT).1, OK_MESSAGE);
        assert_eq!(rls.calls(), 2);
        // Another method gets no message and is not counted.
        assert_eq!(post(rls.port(), "/other.Service/Method"), (200, Vec::new()));
        assert_eq!(rls.calls(), 2);
        assert!(!RlsOk::thread_ids().is_empty());
    }
}
