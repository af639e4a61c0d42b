//! One hostile request through the whole suite (telemetry, intentions, rate limit, canary).
//!
//! Properties: nothing panics whatever the request (raw path, method, authority, repeated
//! and non-UTF-8 headers, cookies, traceparent, peer identity); the only answers of its own
//! are the ones its configuration explains (400 for a refused path, 403 for a deny, 429 with
//! `retry-after` once the client's bucket is empty); and each request writes exactly one access
//! log line, which is JSON.

use crate::Input;
use filter_suite::SuiteRoot;
use mesh_intentions::normalize_path;
use sdk_shim::testing::FakeProxy;
use sdk_shim::{HeaderMap, HttpHeaders, LogLevel};

pub const SUITE_CONFIG: &str = r#"{
  "telemetry": {"reporter": "destination",
                "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"}},
  "intentions": {"trust_domain": "mesh.local", "destination": "reviews", "default_action": "allow",
                 "intentions": [{"source": "legacy/*", "action": "deny"},
                                {"source": "web", "permissions": [
                                   {"action": "deny", "http": {"path_prefix": "/admin"}},
                                   {"action": "allow", "http": {"path_prefix": "/"}}]}]},
  "ratelimit": {"rules": [{"name": "keyed", "key": {"header": "x-api-key"},
                           "limit": {"requests": 2, "per": "1h"}}], "max_keys": 64},
  "canary": {"services": [{"host": "reviews", "sticky": {"cookie": "canary"},
             "subsets": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]}]}
}"#;

pub fn suite_request(data: &[u8]) {
    let mut input = Input::new(data);
    let proxy = FakeProxy::new();
    let root: SuiteRoot = proxy
        .worker(SUITE_CONFIG.as_bytes(), 1)
        .unwrap_or_else(|logs| panic!("the fixed suite config is refused: {logs:?}"));
    let flags = input.byte();
    let repeats = usize::from(input.byte() % 4) + 1;
    let method = input.text();
    let authority = input.text();
    let path = input.field().to_vec();
    let mut headers = Vec::new();
    for _ in 0..input.byte() % 12 {
        let name = input.text().to_ascii_lowercase();
        headers.push((name, input.field().to_vec()));
    }
    let san = input.field().to_vec();
    let status = 100 + u16::from(input.byte()) * 2;

    for n in 0..repeats {
        let mut req = proxy
            .host()
            .request_header(":method", &method)
            .request_header(":authority", &authority)
            .request_header(":path", &path);
        for (k, v) in &headers {
            req = req.request_header(k, v);
        }
        if flags & 1 != 0 {
            req = req.property(&["connection", "mtls"], [1u8]);
        }
        if flags & 2 != 0 {
            req = req.property(&["connection", "uri_san_peer_certificate"], &san);
        }
        FakeProxy::exchange(&root, &req, status);
        if let Some(reply) = req.local_reply() {
            match reply.status {
                400 => assert!(
                    normalize_path(&path).is_err(),
                    "400 for a path that normalizes"
                ),
                403 => {}
                429 => {
                    assert!(
                        reply.header("retry-after").is_some(),
                        "429 without retry-after"
                    );
                    let keys = req
                        .header_values(HeaderMap::Request, "x-api-key")
                        .unwrap_or_default();
                    assert!(!keys.is_empty(), "a request without a key was limited");
                    // 2 per hour, one key per run, a fresh table: the first two pass.
                    assert!(n >= 2, "limited at request {n} of its key");
                }
                other => panic!("an answer the config does not explain: {other}"),
            }
        }
        let lines = req.logs_at(LogLevel::Info);
        let access: Vec<&String> = lines.iter().filter(|l| l.starts_with('{')).collect();
        assert_eq!(
            access.len(),
            1,
            "one access log line per request: {lines:?}"
        );
        let v: Result<serde_json::Value, _> = serde_json::from_str(access[0]);
        assert!(v.is_ok(), "access log line is not JSON: {}", access[0]);
    }
}
