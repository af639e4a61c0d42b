//! A real global rate limit backend for the end-to-end tests (test-only, so the harness
//! library the xtask links stays free of it): Debian's `redis-server` on loopback, and a rate
//! limit service speaking Envoy's `RateLimitService` gRPC API (tonic, Envoy's published
//! types) that counts in that Redis the way envoyproxy/ratelimit does: its configuration
//! format (a domain and a tree of descriptors with `rate_limit`s), fixed windows per unit, one
//! `INCRBY` + `EXPIRE` pipeline per descriptor.
//!
//! It answers in envoyproxy/ratelimit's shape (a status per descriptor, with the current
//! limit, remaining and reset) or in Limitador's (the overall code only), counts the calls it
//! gets, and can be slowed down past a filter's timeout.

use anyhow::{bail, Context as _};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    self as response, DescriptorStatus,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use serde_yaml::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a fixture waits for its server to answer.
const READY: Duration = Duration::from_secs(30);

// === Redis ===

/// A `redis-server` of its own: a free loopback port, a private data dir, no persistence.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> anyhow::Result<Self> {
        let port = mesh_e2e::free_port()?;
        let dir = mesh_e2e::repo_root()
            .join("target/e2e/redis")
            .join(format!("{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut redis = Self {
            child: None,
            port,
            dir,
        };
        redis.spawn()?;
        Ok(redis)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (Debian package redis-server; `cargo xtask test` installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server on port {} did not answer PING", self.port)
    }

    fn ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf.get(..n) == Some(b"+PONG\r\n"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its counts are gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty server on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// === the rate limit service ===

/// How the service fills its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// envoyproxy/ratelimit: a status per descriptor with the limit, remaining and reset.
    EnvoyRatelimit,
    /// Limitador: the overall code only.
    Limitador,
}

/// A limit of the configuration: requests per unit, the unit in seconds and its proto enum.
#[derive(Debug, Clone, Copy)]
struct Quota {
    requests: u64,
    seconds: u64,
    unit: response::rate_limit::Unit,
}

/// envoyproxy/ratelimit's configuration: a domain and a tree of descriptors.
#[derive(Debug, Clone)]
pub struct Config {
    domain: String,
    descriptors: Vec<Value>,
}

impl Config {
    /// Parses envoyproxy/ratelimit's YAML configuration.
    pub fn parse(yaml: &str) -> anyhow::Result<Self> {
        let doc: Value = serde_yaml::from_str(yaml)?;
        Ok(Self {
            domain: doc["domain"].as_str().context("domain")?.to_owned(),
            descriptors: doc["descriptors"]
                .as_sequence()
                .context("descriptors")?
                .clone(),
        })
    }

    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        Self::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
    }

    /// The limit of a request's descriptor: each entry, in order, matches a node with its key
    /// and its value (or no value: any); the last node's `rate_limit` applies.
    fn quota(&self, domain: &str, entries: &[(String, String)]) -> Option<Quota> {
        if domain != self.domain || entries.is_empty() {
            return None;
        }
        let mut level = &self.descriptors;
        let mut node = None;
        for (key, value) in entries {
            let pick = |exact: bool| {
                level.iter().find(|d| {
                    d["key"].as_str() == Some(key.as_str())
                        && match d["value"].as_str() {
                            Some(v) => exact && v == value,
                            None => !exact,
                        }
                })
            };
            let found = pick(true).or_else(|| pick(false))?;
            node = Some(found);
            level = match found["descriptors"].as_sequence() {
                Some(next) => next,
                None => &EMPTY,
            };
        }
        let limit = &node?["rate_limit"];
        use response::rate_limit::Unit;
        let (seconds, unit) = match limit["unit"].as_str()? {
            "second" => (1, Unit::Second),
            "minute" => (60, Unit::Minute),
            "hour" => (3600, Unit::Hour),
            "day" => (86_400, Unit::Day),
            _ => return None,
        };
        Some(Quota {
            requests: limit["requests_per_unit"].as_u64()?,
            seconds,
            unit,
        })
    }
}

static EMPTY: Vec<Value> = Vec::new();

#[derive(Debug)]
struct Service {
    redis: redis::Client,
    config: Config,
    shape: Shape,
    calls: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

impl Service {
    /// Counts `hits` for one descriptor in its fixed window: the count after this request
    /// and the seconds until the window ends.
    async fn count(
        &self,
        domain: &str,
        entries: &[(String, String)],
        quota: Quota,
        hits: u64,
    ) -> redis::RedisResult<(u64, u64)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let window = now - now % quota.seconds;
        let mut key = domain.to_owned();
        for (k, v) in entries {
            key.push('_');
            key.push_str(k);
            key.push('_');
            key.push_str(v);
        }
        key.push_str(&format!("_{window}"));
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(hits)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(quota.seconds)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok((count, window + quota.seconds - now))
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let req = request.into_inner();
        let hits = u64::from(req.hits_addend.max(1));
        let mut over = false;
        let mut statuses = Vec::new();
        for d in &req.descriptors {
            let entries: Vec<(String, String)> = d
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            let Some(quota) = self.config.quota(&req.domain, &entries) else {
                statuses.push(DescriptorStatus {
                    code: response::Code::Ok as i32,
                    ..Default::default()
                });
                continue;
            };
            let (count, reset_s) = self
                .count(&req.domain, &entries, quota, hits)
                .await
                .map_err(|e| tonic::Status::unavailable(format!("redis: {e}")))?;
            let limited = count > quota.requests;
            over |= limited;
            statuses.push(DescriptorStatus {
                code: if limited {
                    response::Code::OverLimit
                } else {
                    response::Code::Ok
                } as i32,
                current_limit: Some(response::RateLimit {
                    name: String::new(),
                    requests_per_unit: u32::try_from(quota.requests).unwrap_or(u32::MAX),
                    unit: quota.unit as i32,
                }),
                limit_remaining: u32::try_from(quota.requests.saturating_sub(count))
                    .unwrap_or(u32::MAX),
                duration_until_reset: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: i64::try_from(reset_s).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                quota: None,
            });
        }
        let overall = if over {
            response::Code::OverLimit
        } else {
            response::Code::Ok
        };
        if self.shape == Shape::Limitador {
            statuses.clear();
        }
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
            ..Default::default()
        }))
    }
}

/// The running service. Stops when dropped.
#[derive(Debug)]
pub struct Rls {
    port: u16,
    calls: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Rls {
    /// Serves `config`, counted in the Redis at `redis_url`, on a free loopback port.
    pub fn start(redis_url: &str, shape: Shape, config: Config) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let calls = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let service = Service {
            redis: redis::Client::open(redis_url)?,
            config,
            shape,
            calls: Arc::clone(&calls),
            delay_ms: Arc::clone(&delay_ms),
        };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(RateLimitServiceServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            port,
            calls,
            delay_ms,
            shutdown: Some(tx),
            runtime: Some(runtime),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Calls answered or in progress so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers each call only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops serving; the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Rls {
    fn drop(&mut self) {
        self.stop();
    }
}
