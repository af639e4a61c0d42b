//! `cargo xtask soak [--requests N]`: the suite and the four modules chained, each on its own
//! listener of one Envoy at `--concurrency 2`, under a mix of ordinary and hostile traffic
//! (default 1,000,000 requests), sampling Envoy's memory as it goes.
//!
//! Passes when:
//! - memory plateaus: the RSS at the end (median of the last 3 samples) is at most 2% + 2 MiB
//!   above the RSS half-way through (median of the 3 samples around the middle request);
//! - the Wasm VMs never fail: no VM is created after start (`wasm.envoy.wasm.runtime.v8.created`
//!   unchanged), every `wasm*` stat naming a failure or a reload stays 0, and Envoy logs no
//!   failed Wasm callback;
//! - every response is one the configuration explains, per request class: 400 where
//!   `normalize_path` refuses the path (intentions) or the codec refuses the request, 429 only
//!   for the rate-limited keys (the 100,000 distinct ones and the one non-UTF-8 key, which gets
//!   exactly its burst of 5 plus the refill its elapsed time allows), 200 otherwise, no answer
//!   for a client reset; the per-status tally is printed and written
//!   to `target/soak/report.json`, the memory chart to `target/soak/memory.svg`.
//!
//! The upstream is an Envoy direct response, so the soak measures the proxy and the modules,
//! not a stub. VM memory is not sampled separately: Envoy 1.40 exposes no per-VM memory stat;
//! the RSS includes every VM's heap and linear memory, and tcmalloc's allocated bytes are
//! sampled beside it.

use crate::util::root;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use mesh_e2e::envoy::wasm_filter;
use mesh_e2e::Envoy;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TELEMETRY: &str = r#"{"reporter": "destination", "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"}}"#;
const INTENTIONS: &str = r#"{"trust_domain": "mesh.local", "destination": "reviews", "default_action": "allow", "intentions": [{"source": "legacy/*", "action": "deny"}]}"#;
const RATELIMIT: &str = r#"{"rules": [{"name": "keyed", "match": {"path_prefix": "/rl/"}, "key": {"header": "x-api-key"}, "limit": {"requests": 5, "per": "1h"}}], "max_keys": 10000}"#;
const CANARY: &str = r#"{"services": [{"host": "*", "sticky": {"cookie": "canary"}, "subsets": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}]}"#;

/// Distinct rate-limit keys the traffic cycles through.
const KEYS: u64 = 100_000;
const THREADS: u64 = 4;

/// Paths from the published bypass classes (dot segments, encoded separators and dots,
/// parameters, backslashes, double encoding, overlong UTF-8, raw non-ASCII, NUL escapes).
const BYPASS: &[&[u8]] = &[
    b"/api/public/../admin",
    b"/api/public/%2e%2e/admin",
    b"/api/.%2E/admin",
    b"/api%2Fadmin",
    b"/api%5Cadmin",
    b"/api\\admin",
    b"/api;x=1/admin",
    b"/api/admin%3B",
    b"//api//admin",
    b"/api//public/../admin",
    b"/%252e%252e/admin",
    b"/%C0%AF/admin",
    b"/caf%C3%A9/menu",
    b"/%61pi/%61dmin",
    b"/api/%00/x",
    b"/api/\xff\xfe",
    b"/x/./y/",
    b"/../../etc/passwd",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Plain,
    PlainH2,
    Keys,
    KeysH2,
    NonUtf8,
    NonUtf8H2,
    BigHeader,
    Repeated,
    RepeatedH2,
    Cookies,
    Traceparent,
    Bypass,
    BadName,
    Reset,
}

impl Class {
    /// The mix, out of 100.
    const MIX: [(Class, u64); 14] = [
        (Class::Plain, 24),
        (Class::PlainH2, 8),
        (Class::Keys, 12),
        (Class::KeysH2, 8),
        (Class::NonUtf8, 5),
        (Class::NonUtf8H2, 3),
        (Class::BigHeader, 2),
        (Class::Repeated, 3),
        (Class::RepeatedH2, 2),
        (Class::Cookies, 6),
        (Class::Traceparent, 6),
        (Class::Bypass, 15),
        (Class::BadName, 2),
        (Class::Reset, 4),
    ];

    fn of(i: u64) -> Class {
        // Spread the classes over the sequence (a multiplicative hash of i), not in blocks.
        let mut slot = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 100;
        for (c, w) in Self::MIX {
            if slot < w {
                return c;
            }
            slot -= w;
        }
        Class::Plain
    }

    fn name(self) -> &'static str {
        match self {
            Class::Plain => "plain (h1)",
            Class::PlainH2 => "plain (h2)",
            Class::Keys => "100k rate-limit keys (h1)",
            Class::KeysH2 => "100k rate-limit keys (h2)",
            Class::NonUtf8 => "non-utf-8 values (h1)",
            Class::NonUtf8H2 => "non-utf-8 values (h2)",
            Class::BigHeader => "60 KiB header (h1)",
            Class::Repeated => "100 repeated headers (h1)",
            Class::RepeatedH2 => "100 repeated headers (h2)",
            Class::Cookies => "malformed cookies (h1)",
            Class::Traceparent => "malformed traceparent (h1)",
            Class::Bypass => "bypass paths (h1)",
            Class::BadName => "non-utf-8 header name (h1)",
            Class::Reset => "client reset mid-request (h1)",
        }
    }
}

/// What one request got: a status, or nothing (the client reset it).
type Answer = Option<u16>;

/// The answers the configuration explains for a request.
fn explained(class: Class, path: &[u8], got: Answer) -> bool {
    match class {
        Class::Reset => got.is_none(),
        Class::BadName => got == Some(400),
        // The non-UTF-8 requests carry one (non-UTF-8) key: limited after its burst too.
        Class::Keys | Class::KeysH2 | Class::NonUtf8 | Class::NonUtf8H2 => {
            matches!(got, Some(200 | 429))
        }
        Class::Bypass => {
            let refused = mesh_intentions::normalize_path(path).is_err();
            // Envoy's codec refuses some shapes itself (400) before any filter runs.
            if refused {
                got == Some(400)
            } else {
                matches!(got, Some(200 | 400))
            }
        }
        _ => got == Some(200),
    }
}

/// One sample of Envoy's memory.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    requests: u64,
    rss_kib: u64,
    allocated_kib: u64,
}

#[derive(Debug, Default)]
struct Tally {
    /// (listener, class, answer) -> count.
    counts: BTreeMap<(&'static str, Class, Answer), u64>,
    unexplained: Vec<String>,
}

pub fn soak(args: &[String]) -> anyhow::Result<()> {
    let mut requests = 1_000_000u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--requests" => {
                requests = it
                    .next()
                    .context("--requests needs a number")?
                    .replace('_', "")
                    .parse()
                    .context("--requests")?
            }
            other => bail!("unknown soak option {other:?}"),
        }
    }
    crate::build::build()?;
    run(requests)
}

fn bootstrap() -> anyhow::Result<Value> {
    let module = |n: &str| root().join(format!("target/filters/{n}.wasm"));
    let listener = |name: &str, filters: Vec<Value>| -> anyhow::Result<Value> {
        let mut filters = filters;
        for f in &mut filters {
            if let Some(Value::Mapping(c)) =
                f.get_mut("typed_config").and_then(|t| t.get_mut("config"))
            {
                c.insert("failure_policy".into(), "FAIL_CLOSED".into());
            }
        }
        let text = format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      codec_type: AUTO
      max_request_headers_kb: 96
      common_http_protocol_options: {{max_headers_count: 200}}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {{prefix: "/"}}
            direct_response: {{status: 200, body: {{inline_string: "ok"}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
        );
        let mut l: Value = serde_yaml::from_str(&text)?;
        if let Some(chain) = l
            .get_mut("filter_chains")
            .and_then(|c| c.get_mut(0))
            .and_then(|c| c.get_mut("filters"))
            .and_then(|f| f.get_mut(0))
            .and_then(|f| f.get_mut("typed_config"))
            .and_then(|t| t.get_mut("http_filters"))
            .and_then(Value::as_sequence_mut)
        {
            for (i, f) in filters.into_iter().enumerate() {
                chain.insert(i, f);
            }
        }
        Ok(l)
    };
    let suite_config = format!(
        r#"{{"telemetry": {TELEMETRY}, "intentions": {INTENTIONS}, "ratelimit": {RATELIMIT}, "canary": {CANARY}}}"#
    );
    let suite = listener(
        "suite",
        vec![wasm_filter("suite", &module("suite"), &suite_config)],
    )?;
    let chain = listener(
        "chain",
        vec![
            wasm_filter("telemetry", &module("telemetry"), TELEMETRY),
            wasm_filter("intentions", &module("intentions"), INTENTIONS),
            wasm_filter("ratelimit", &module("ratelimit"), RATELIMIT),
            wasm_filter("canary", &module("canary"), CANARY),
        ],
    )?;
    let mut doc: Value = serde_yaml::from_str(
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\nstatic_resources: {listeners: [], clusters: []}\n",
    )?;
    if let Some(ls) = doc
        .get_mut("static_resources")
        .and_then(|s| s.get_mut("listeners"))
        .and_then(Value::as_sequence_mut)
    {
        ls.push(suite);
        ls.push(chain);
    }
    Ok(doc)
}

/// A kept-alive HTTP/1.1 connection speaking raw bytes (clients send what they like).
struct H1 {
    port: u16,
    conn: Option<TcpStream>,
}

impl H1 {
    fn stream(&mut self) -> anyhow::Result<&mut TcpStream> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
        }
        self.conn.as_mut().context("no connection")
    }

    /// Sends `req` whole and reads one response: its status.
    fn send(&mut self, req: &[u8]) -> anyhow::Result<u16> {
        let res = self.exchange(req);
        if res.is_err() {
            self.conn = None;
        }
        res
    }

    fn exchange(&mut self, req: &[u8]) -> anyhow::Result<u16> {
        let s = self.stream()?;
        s.write_all(req)?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed before a response");
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        let head =
            String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status")?;
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let mut body = buf.len() - head_end;
        if let Some(len) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
            while body < len {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    bail!("connection closed inside a body");
                }
                body += n;
            }
        } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
            let mut rest = buf.get(head_end..).unwrap_or_default().to_vec();
            while find(&rest, b"0\r\n\r\n").is_none() {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    bail!("connection closed inside a chunked body");
                }
                rest.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        }
        if header("connection:").is_some_and(|v| v.contains("close")) {
            self.conn = None;
        }
        Ok(status)
    }

    /// Sends headers announcing a body, a part of it, and closes: a client reset.
    fn reset(&mut self, head: &[u8]) -> anyhow::Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.write_all(head)?;
        s.write_all(b"0123456789")?;
        // Linger 0 would send RST; a plain close mid-body is what Envoy sees as a reset too.
        drop(s);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request head of `class` number `i` (HTTP/1.1, raw), and its path.
fn h1_request(class: Class, i: u64) -> (Vec<u8>, Vec<u8>) {
    let mut path = b"/".to_vec();
    let mut extra: Vec<u8> = Vec::new();
    match class {
        Class::Keys => {
            path = format!("/rl/{i}").into_bytes();
            extra.extend(format!("x-api-key: k{}\r\n", i % KEYS).into_bytes());
        }
        Class::NonUtf8 => {
            extra.extend_from_slice(b"x-api-key: \xff\xfe\x80\r\nuser-agent: curl\xc3\x28\r\ncookie: canary=\xff\xff\r\n");
            path = b"/rl/bytes".to_vec();
        }
        Class::BigHeader => {
            extra.extend_from_slice(b"x-big: ");
            extra.extend(std::iter::repeat_n(b'a', 60 * 1024));
            extra.extend_from_slice(b"\r\n");
        }
        Class::Repeated => {
            for n in 0..100 {
                extra.extend(format!("x-repeat: value-{n}\r\n").into_bytes());
            }
            for n in 0..10 {
                extra.extend(format!("cookie: c{n}=v; canary=x{n}\r\n").into_bytes());
            }
        }
        Class::Cookies => {
            extra.extend(
                format!(
                    "cookie: canary=; canary=\"{i:x}\"; ;;=; canary=zzzz{i}\r\ncookie: =canary\r\n"
                )
                .into_bytes(),
            );
        }
        Class::Traceparent => {
            let tp = match i % 4 {
                0 => "00-zz".to_owned(),
                1 => format!("00-{:032x}-0000000000000000-01", i + 1),
                2 => "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
                _ => format!("00-{:032X}-00f067aa0ba902b7-01-", i + 1),
            };
            extra.extend(format!("traceparent: {tp}\r\ntracestate: a=b\r\n").into_bytes());
        }
        Class::Bypass => {
            let n = usize::try_from(i).unwrap_or(0) % BYPASS.len();
            path = BYPASS.get(n).copied().unwrap_or(b"/").to_vec();
        }
        Class::BadName => extra.extend_from_slice(b"x-\xff\xfename: v\r\n"),
        Class::Reset => extra.extend_from_slice(b"content-length: 1000\r\n"),
        _ => {}
    }
    let mut req = b"GET ".to_vec();
    if class == Class::Reset {
        req = b"POST ".to_vec();
    }
    req.extend_from_slice(&path);
    req.extend_from_slice(b" HTTP/1.1\r\nhost: reviews\r\n");
    req.extend_from_slice(&extra);
    req.extend_from_slice(b"\r\n");
    (req, path)
}

/// One HTTP/2 (prior knowledge) request of `class`.
fn h2_request(
    http: &reqwest::blocking::Client,
    port: u16,
    class: Class,
    i: u64,
) -> anyhow::Result<u16> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut headers = HeaderMap::new();
    let mut path = "/".to_owned();
    match class {
        Class::KeysH2 => {
            path = format!("/rl/{i}");
            headers.insert(
                "x-api-key",
                HeaderValue::from_str(&format!("k{}", i % KEYS))?,
            );
        }
        Class::NonUtf8H2 => {
            path = "/rl/bytes".to_owned();
            headers.insert("x-api-key", HeaderValue::from_bytes(b"\xff\xfe\x80")?);
            headers.insert("cookie", HeaderValue::from_bytes(b"canary=\xfe")?);
        }
        Class::RepeatedH2 => {
            for n in 0..100 {
                headers.append(
                    HeaderName::from_static("x-repeat"),
                    HeaderValue::from_str(&format!("value-{n}"))?,
                );
            }
        }
        _ => {}
    }
    let r = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .headers(headers)
        .send()?;
    Ok(r.status().as_u16())
}

fn memory(envoy: &Envoy) -> (u64, u64) {
    let rss = std::fs::read_to_string(format!("/proc/{}/status", envoy.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let allocated = envoy
        .admin("/memory")
        .ok()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("allocated").and_then(|a| {
                a.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or(a.as_u64())
            })
        })
        .unwrap_or(0)
        / 1024;
    (rss, allocated)
}

/// Stats that say a VM failed or was reloaded, with the number of VMs created.
fn vm_health(envoy: &Envoy) -> anyhow::Result<(u64, Vec<(String, u64)>)> {
    let stats = envoy.stats()?;
    let created = stats
        .get("wasm.envoy.wasm.runtime.v8.created")
        .copied()
        .unwrap_or(0);
    let bad = stats
        .into_iter()
        .filter(|(k, _)| {
            k.contains("wasm")
                && (k.contains("fail") || k.contains("reload") || k.contains("crash"))
        })
        .collect();
    Ok((created, bad))
}

pub fn run(requests: u64) -> anyhow::Result<()> {
    let dir = root().join("target/soak");
    std::fs::create_dir_all(&dir)?;
    let bootstrap_path = dir.join("bootstrap.yaml");
    std::fs::write(&bootstrap_path, serde_yaml::to_string(&bootstrap()?)?)?;
    let envoy = Envoy::builder("target/soak/bootstrap.yaml")
        .concurrency(2)
        .log_level("warn")
        .start()?;
    let ports = [
        (
            "suite",
            envoy.listener_port("suite").context("suite listener")?,
        ),
        (
            "chain",
            envoy.listener_port("chain").context("chain listener")?,
        ),
    ];
    let (created_at_start, _) = vm_health(&envoy)?;
    println!(
        "soak: {requests} requests over the suite and the chained modules ({ports:?}), Envoy --concurrency 2, pid {}",
        envoy.pid()
    );

    let done = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let bar = ProgressBar::new(requests);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} requests, {per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| -> anyhow::Result<()> {
        // The sampler: every 2 s, and once at the start.
        {
            let (done, samples, finished, bar) =
                (done.clone(), samples.clone(), finished.clone(), bar.clone());
            let envoy = &envoy;
            s.spawn(move || {
                while !finished.load(Ordering::SeqCst) {
                    let (rss_kib, allocated_kib) = memory(envoy);
                    let sample = Sample {
                        secs: start.elapsed().as_secs_f64(),
                        requests: done.load(Ordering::SeqCst),
                        rss_kib,
                        allocated_kib,
                    };
                    bar.set_message(format!("RSS {:.1} MiB", rss_kib as f64 / 1024.0));
                    if let Ok(mut v) = samples.lock() {
                        v.push(sample);
                    }
                    for _ in 0..20 {
                        if finished.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        }
        let mut workers = Vec::new();
        for t in 0..THREADS {
            let (done, tally, bar) = (done.clone(), tally.clone(), bar.clone());
            workers.push(s.spawn(move || -> anyhow::Result<()> {
                let mut h1: Vec<H1> = ports
                    .iter()
                    .map(|(_, p)| H1 {
                        port: *p,
                        conn: None,
                    })
                    .collect();
                let h2 = reqwest::blocking::Client::builder()
                    .http2_prior_knowledge()
                    .no_proxy()
                    .timeout(Duration::from_secs(60))
                    .build()?;
                let mut i = t;
                while i < requests {
                    let class = Class::of(i);
                    let which = usize::from((i / THREADS) % 2 == 1);
                    let (listener, port) = ports.get(which).copied().unwrap_or(("suite", 0));
                    let conn = h1.get_mut(which).context("a connection")?;
                    let (answer, path) = match class {
                        Class::PlainH2 | Class::KeysH2 | Class::NonUtf8H2 | Class::RepeatedH2 => {
                            (h2_request(&h2, port, class, i).ok(), Vec::new())
                        }
                        Class::Reset => {
                            let (req, path) = h1_request(class, i);
                            conn.reset(&req)?;
                            (None, path)
                        }
                        _ => {
                            let (req, path) = h1_request(class, i);
                            (conn.send(&req).ok(), path)
                        }
                    };
                    let ok = explained(class, &path, answer);
                    if let Ok(mut tl) = tally.lock() {
                        *tl.counts.entry((listener, class, answer)).or_default() += 1;
                        if !ok && tl.unexplained.len() < 20 {
                            tl.unexplained.push(format!(
                                "{listener} {} {:?}: {answer:?}",
                                class.name(),
                                String::from_utf8_lossy(&path)
                            ));
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    bar.inc(1);
                    i += THREADS;
                }
                Ok(())
            }));
        }
        let mut result = Ok(());
        for w in workers {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(anyhow::anyhow!("a client thread panicked")),
            }
        }
        finished.store(true, Ordering::SeqCst);
        result
    })?;
    bar.finish();
    let elapsed = start.elapsed().as_secs_f64();
    let (rss_kib, allocated_kib) = memory(&envoy);
    let mut samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    samples.push(Sample {
        secs: elapsed,
        requests,
        rss_kib,
        allocated_kib,
    });
    let (created_at_end, bad) = vm_health(&envoy)?;
    let log = envoy.log();
    let wasm_failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[wasm]") && (l.contains("failed") || l.contains("Uncaught")))
        .take(5)
        .collect();
    let tally = tally
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();

    // The plateau rule.
    let median = |xs: &mut Vec<u64>| {
        xs.sort_unstable();
        xs.get(xs.len() / 2).copied().unwrap_or(0)
    };
    let half = requests / 2;
    let mid = samples
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| s.requests.abs_diff(half))
        .map_or(0, |(i, _)| i);
    let mut around: Vec<u64> = samples
        .iter()
        .skip(mid.saturating_sub(1))
        .take(3)
        .map(|s| s.rss_kib)
        .collect();
    let mut last: Vec<u64> = samples.iter().rev().take(3).map(|s| s.rss_kib).collect();
    let (rss_mid, rss_end) = (median(&mut around), median(&mut last));
    let allowed_end = rss_mid + rss_mid / 50 + 2048;
    let plateau = rss_end <= allowed_end;

    // The report.
    println!("\nper-status tally (listener, class: answers):");
    let mut by: BTreeMap<(&str, Class), Vec<String>> = BTreeMap::new();
    for ((l, c, a), n) in &tally.counts {
        let a = a.map_or("reset".to_owned(), |s| s.to_string());
        by.entry((l, *c)).or_default().push(format!("{a}: {n}"));
    }
    for ((l, c), answers) in &by {
        println!("  {l:<6} {:<32} {}", c.name(), answers.join(", "));
    }
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    println!(
        "\n{requests} requests in {elapsed:.0} s ({:.0}/s); Envoy RSS {:.1} MiB at start, {:.1} MiB half-way, {:.1} MiB at the end (plateau limit {:.1}), peak {:.1}; tcmalloc allocated {:.1} MiB at the end; {} samples",
        requests as f64 / elapsed,
        samples.first().map_or(0.0, |s| s.rss_kib as f64 / 1024.0),
        rss_mid as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        allowed_end as f64 / 1024.0,
        peak as f64 / 1024.0,
        allocated_kib as f64 / 1024.0,
        samples.len()
    );
    println!(
        "VMs created at start {created_at_start}, at the end {created_at_end}; failure/reload stats: {bad:?}; failed wasm callbacks logged: {}",
        wasm_failures.len()
    );
    let report = serde_json::json!({
        "requests": requests, "seconds": elapsed,
        "rss_kib": {"start": samples.first().map(|s| s.rss_kib), "mid": rss_mid, "end": rss_end, "limit": allowed_end, "peak": peak},
        "allocated_kib_end": allocated_kib,
        "vms_created": {"start": created_at_start, "end": created_at_end},
        "failure_stats": bad.iter().map(|(k, v)| serde_json::json!({"stat": k, "value": v})).collect::<Vec<_>>(),
        "tally": tally.counts.iter().map(|((l, c, a), n)| serde_json::json!({"listener": l, "class": c.name(), "answer": a, "count": n})).collect::<Vec<_>>(),
        "unexplained": tally.unexplained,
        "samples": samples.iter().map(|s| serde_json::json!([s.secs, s.requests, s.rss_kib, s.allocated_kib])).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    chart(&samples, &dir.join("memory.svg"))?;
    println!(
        "report: {}, chart: {}",
        dir.join("report.json").display(),
        dir.join("memory.svg").display()
    );

    let mut failures = Vec::new();
    if !plateau {
        failures.push(format!(
            "memory did not plateau: {rss_end} KiB at the end > {allowed_end} KiB"
        ));
    }
    if created_at_end != created_at_start {
        failures.push(format!(
            "VMs were created during the soak: {created_at_start} -> {created_at_end}"
        ));
    }
    if bad.iter().any(|(_, v)| *v != 0) {
        failures.push(format!("wasm failure stats: {bad:?}"));
    }
    if !wasm_failures.is_empty() {
        failures.push(format!("failed wasm callbacks: {wasm_failures:?}"));
    }
    // The one non-UTF-8 key of each listener (its own plugin, its own table): 5 per hour, so
    // exactly its burst of 5 plus what the elapsed time refilled, once it was sent 5 times.
    for (listener, _) in ports {
        let count = |class: Class, answer: Answer| {
            tally
                .counts
                .get(&(listener, class, answer))
                .copied()
                .unwrap_or(0)
        };
        let admitted = count(Class::NonUtf8, Some(200)) + count(Class::NonUtf8H2, Some(200));
        let sent = admitted + count(Class::NonUtf8, Some(429)) + count(Class::NonUtf8H2, Some(429));
        let most = 5 + (elapsed * 5.0 / 3600.0).floor() as u64;
        if admitted > most || (sent >= 5 && admitted < 5) {
            failures.push(format!(
                "{listener}: the non-UTF-8 key was admitted {admitted} times of {sent}; the limit allows 5 to {most}"
            ));
        }
    }
    if !tally.unexplained.is_empty() {
        failures.push(format!(
            "answers the config does not explain: {:#?}",
            tally.unexplained
        ));
    }
    if !failures.is_empty() {
        bail!("soak failed:\n{}", failures.join("\n"));
    }
    println!("soak passed");
    Ok(())
}

fn chart(samples: &[Sample], path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let area = SVGBackend::new(path, (900, 420)).into_drawing_area();
    area.fill(&WHITE)?;
    let max_x = samples.iter().map(|s| s.secs).fold(1.0, f64::max);
    let max_y = samples
        .iter()
        .map(|s| s.rss_kib.max(s.allocated_kib) as f64 / 1024.0)
        .fold(1.0, f64::max)
        * 1.15;
    let mut c = ChartBuilder::on(&area)
        .caption("Envoy memory during the soak", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    c.configure_mesh().x_desc("seconds").y_desc("MiB").draw()?;
    c.draw_series(LineSeries::new(
        samples.iter().map(|s| (s.secs, s.rss_kib as f64 / 1024.0)),
        BLUE.stroke_width(2),
    ))?
    .label("RSS")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(
        samples
            .iter()
            .map(|s| (s.secs, s.allocated_kib as f64 / 1024.0)),
        RED.stroke_width(2),
    ))?
    .label("tcmalloc allocated")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    area.present()?;
    Ok(())
}
