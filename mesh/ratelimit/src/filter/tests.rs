use super::*;
use crate::table::{slot_of, TableKeys};
use mesh_core::hash::SipKey;
use sdk_shim::RootFilter;

/// The secret's key for a plugin whose host names no plugin (as FakeHost does).
fn secret_key() -> String {
    TableKeys::new(sdk_shim::Namespace::of_plugin(
        &sdk_shim::testing::FakeHost::new(),
        None,
    ))
    .secret()
}
use sdk_shim::testing::{FakeHost, FakeProxy};
use sdk_shim::LogLevel;

const CONFIG: &str = r#"{"rules":[{"name":"api","match":{"path_prefix":"/api/"},
    "key":{"header":"x-api-key"},"limit":{"requests":2,"per":"1h"}}],"max_keys":64}"#;

/// A proxy with `workers` root contexts sharing one store, clock and metrics.
struct Proxy {
    envoy: FakeProxy,
    roots: Vec<RateLimitRoot>,
}

impl Proxy {
    fn new(config: &str, workers: usize) -> Self {
        let envoy = FakeProxy::new();
        // Each worker is its own VM with its own randomness.
        let roots = (0..workers)
            .map(|w| envoy.worker(config.as_bytes(), w as u64 + 1).unwrap())
            .collect();
        Self { envoy, roots }
    }

    /// Runs a whole request on worker `w`; returns the filter's request action.
    fn run(&self, w: usize, host: &FakeHost) -> Action {
        let done = FakeProxy::exchange(&self.roots[w], host, 200);
        if done.request == Action::Continue {
            assert_eq!(done.response, Some(Action::Continue));
        }
        done.request
    }
}

fn decision(host: &FakeHost) -> Option<String> {
    host.property_value(&[DECISION_KEY])
        .map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn bad_configs_are_rejected_with_one_line_naming_the_field() {
    let cases = [
        (
            r#"{"rules":[{"name":"a","limit":{"requests":0,"per":"1s"}}]}"#,
            "rules[0].limit.requests: must be at least 1",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1y"}}]}"#,
            "rules[0].limit.per: invalid duration",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s","burst":0}}]}"#,
            "rules[0].limit.burst: must be at least 1",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s"}},{"name":"a","limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[1].name: duplicate rule name",
        ),
        (r#"{"max_keys":0}"#, "max_keys: must be at least 1"),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s"},"extra":1}]}"#,
            "rules[0].extra: unknown field `extra`",
        ),
        ("not json", "expected ident"),
    ];
    for (config, expected) in cases {
        let host = FakeHost::new();
        let mut root = RateLimitRoot::default();
        assert!(!root.on_configure(&host, config.as_bytes()), "{config}");
        let errors = host.logs_at(LogLevel::Error);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let prefix = "ratelimit: invalid configuration: ";
        assert!(errors[0].starts_with(prefix), "{}", errors[0]);
        assert!(errors[0].contains(expected), "{} !~ {expected}", errors[0]);
        assert!(!errors[0].ends_with('.'));
        assert!(root.bound().is_none());
        assert!(
            host.store().is_empty(),
            "nothing seeded for a rejected config"
        );
    }
}

#[test]
fn an_empty_config_limits_nothing() {
    let p = Proxy::new("", 1);
    let host = p.envoy.host().request("GET", "svc", "/api/x");
    assert_eq!(p.run(0, &host), Action::Continue);
    assert_eq!(decision(&host), None);
    assert!(host.local_reply().is_none());
}

#[test]
fn the_limited_request_gets_a_429_with_fields_and_problem_body() {
    let p = Proxy::new(CONFIG, 1);
    let req = || {
        p.envoy
            .host()
            .request("GET", "svc", "/api/x")
            .request_header("x-api-key", "k1")
    };
    for _ in 0..2 {
        let host = req();
        assert_eq!(p.run(0, &host), Action::Continue);
        assert_eq!(decision(&host).as_deref(), Some("allowed"));
        assert_eq!(
            host.response_header_str("ratelimit"),
            None,
            "off by default"
        );
    }
    let host = req();
    assert_eq!(p.run(0, &host), Action::Pause);
    assert_eq!(decision(&host).as_deref(), Some("limited:api"));
    let reply = host.local_reply().unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1800"));
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some(r#""api";q=2;w=3600"#)
    );
    assert_eq!(reply.header("ratelimit"), Some(r#""api";r=0;t=1800"#));
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    let body = String::from_utf8(reply.body).unwrap();
    assert!(body.contains(r#""violated-policies":["api"]"#), "{body}");
    // Other keys and unmatched paths are untouched.
    let other = p
        .envoy
        .host()
        .request("GET", "svc", "/api/x")
        .request_header("x-api-key", "k2");
    assert_eq!(p.run(0, &other), Action::Continue);
    let unmatched = p
        .envoy
        .host()
        .request("GET", "svc", "/health")
        .request_header("x-api-key", "k1");
    assert_eq!(p.run(0, &unmatched), Action::Continue);
    assert_eq!(decision(&unmatched), None);
    assert_eq!(p.envoy.metrics.value("ratelimit.api.allowed"), Some(3));
    assert_eq!(p.envoy.metrics.value("ratelimit.api.limited"), Some(1));
}

#[test]
fn allowed_responses_carry_the_fields_when_configured() {
    let p = Proxy::new(
        r#"{"headers_on_allowed":true,"rules":[{"name":"all","limit":{"requests":10,"per":"1m"}}]}"#,
        1,
    );
    let host = p.envoy.host().request("GET", "svc", "/");
    host.upstream_responds(200, &[("ratelimit-policy", "\"upstream\";q=5")]);
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Continue);
    f.on_response_headers(&host, false);
    assert_eq!(
        host.header_strings(sdk_shim::HeaderMap::Response, "ratelimit-policy"),
        ["\"upstream\";q=5", "\"all\";q=10;w=60"]
    );
    assert_eq!(
        host.response_header_str("ratelimit").as_deref(),
        Some("\"all\";r=9;t=6")
    );
}

#[test]
fn workers_share_one_limit() {
    let p = Proxy::new(CONFIG, 4);
    let mut admitted = 0;
    for i in 0..40 {
        p.envoy.store.force_cas_conflicts((i % 4) as u32);
        let host = p
            .envoy
            .host()
            .request("GET", "svc", "/api/x")
            .request_header("x-api-key", "same");
        if p.run(i % 4, &host) == Action::Continue {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 2);
    assert_eq!(
        p.envoy.store.len(),
        66,
        "seeded once: 64 slots, the marker and the secret"
    );
    // Only the first configuration (Envoy's main thread) seeds and draws the secret; the
    // others find both done.
    let p = Proxy::new(CONFIG, 0);
    let first = p.envoy.host().random_seed(1);
    assert!(RateLimitRoot::default().on_configure(&first, CONFIG.as_bytes()));
    assert_eq!(
        first.logs_at(LogLevel::Info),
        [
            "ratelimit: generated the bucket table's hash secret",
            "ratelimit: seeded 64 bucket slots (max_keys 64)"
        ]
    );
    let second = p.envoy.host().random_seed(2);
    assert!(RateLimitRoot::default().on_configure(&second, CONFIG.as_bytes()));
    assert!(second.logs_at(LogLevel::Info).is_empty());
}

#[test]
fn roots_sharing_a_store_share_the_secret_and_the_slots() {
    let p = Proxy::new(CONFIG, 2);
    let stored = p.envoy.store.get(&secret_key()).unwrap();
    let secret = SipKey::from_bytes(&stored.clone().try_into().unwrap());
    let [a, b] = [&p.roots[0], &p.roots[1]].map(|r| r.bound().unwrap().clone());
    for key in [b"alice".as_slice(), b"bob", b"", b"\xff\x00"] {
        let fa = a.header_fingerprint(0, key).unwrap();
        let fb = b.header_fingerprint(0, key).unwrap();
        assert_eq!(fa, fb);
        assert_eq!(slot_of(fa, 64), slot_of(fb, 64));
        let expected = crate::key::Fingerprint::for_rule(secret, "api")
            .byte(b'h')
            .bytes(key)
            .finish();
        assert_eq!(fa, expected, "both use the stored secret");
    }
    // A separate proxy (another Envoy, other randomness) draws its own secret.
    let other = Proxy::new(CONFIG, 0);
    let mut root = RateLimitRoot::default();
    assert!(root.on_configure(&other.envoy.host().random_seed(1000), CONFIG.as_bytes()));
    assert_ne!(other.envoy.store.get(&secret_key()).unwrap(), stored);
    let fo = root.bound().unwrap().header_fingerprint(0, b"alice");
    assert_ne!(fo, a.header_fingerprint(0, b"alice"));
}

#[test]
fn a_config_update_keeps_the_secret_so_buckets_survive() {
    let mut p = Proxy::new(CONFIG, 1);
    let secret = p.envoy.store.get(&secret_key()).unwrap();
    let req = |p: &Proxy| {
        let host = p
            .envoy
            .host()
            .request("GET", "svc", "/api/x")
            .request_header("x-api-key", "k1");
        p.run(0, &host)
    };
    assert_eq!(req(&p), Action::Continue);
    assert_eq!(req(&p), Action::Continue);
    assert_eq!(req(&p), Action::Pause);
    // Envoy hands the same root a new configuration (a wider match, same rule).
    let updated = CONFIG.replace("/api/", "/");
    let host = p.envoy.host().random_seed(77);
    assert!(p.roots[0].on_configure(&host, updated.as_bytes()));
    assert!(host.logs_at(LogLevel::Info).is_empty(), "nothing redrawn");
    assert_eq!(p.envoy.store.get(&secret_key()).unwrap(), secret);
    assert_eq!(req(&p), Action::Pause, "k1's bucket is still empty");
}

#[test]
fn hostile_requests_never_trap() {
    let p = Proxy::new(
        r#"{"rules":[
            {"name":"h","match":{"headers":[{"name":"x-t","regex":"a+"}]},"key":{"header":"x-api-key"},"limit":{"requests":1,"per":"1s"}},
            {"name":"a","key":{"source":"address"},"limit":{"requests":1000,"per":"1s"}},
            {"name":"p","key":{"source":"principal"},"limit":{"requests":1000,"per":"1s"}}]}"#,
        1,
    );
    let huge = vec![0xffu8; 256 * 1024];
    let hosts = [
        p.envoy.host(),
        p.envoy.host().request_header(":path", b"\xff\xfe"),
        p.envoy
            .host()
            .request("GET", "svc", "/")
            .request_header("x-t", b"\xff")
            .request_header("x-t", "aaa")
            .request_header("x-api-key", &huge)
            .request_header("x-api-key", "second"),
        p.envoy
            .host()
            .request("GET", "svc", "/")
            .property(&["filter_state", "mesh.peer_address"], b"\xff\xff")
            .property(&["connection", "uri_san_peer_certificate"], &huge),
        p.envoy
            .host()
            .request("GET", "svc", "/")
            .property(&["filter_state", "mesh.peer_address"], "[::1"),
        p.envoy
            .host()
            .request("GET", "svc", "/")
            .failing_header_reads(),
    ];
    for host in &hosts {
        let action = p.run(0, host);
        if action == Action::Pause {
            assert_eq!(host.local_reply().map(|r| r.status), Some(429));
        }
    }
}

#[test]
fn an_unconfigured_filter_lets_everything_through() {
    let mut f = RateLimitFilter::new(None);
    let host = FakeHost::new().request("GET", "svc", "/");
    assert_eq!(f.on_request_headers(&host, true), Action::Continue);
    assert_eq!(host.host_calls(), 0);
}

// === global checks ===

const GLOBAL: &str = r#"{"rules":[{"name":"api","key":{"header":"x-user"},
    "limit":{"requests":2,"per":"1h"},
    "global":{"cluster":"rls","domain":"mesh","timeout":"50ms"}}],"max_keys":64}"#;

fn over_limit(retry_s: i64) -> Vec<u8> {
    use crate::global::proto::*;
    use prost::Message;
    RateLimitResponse {
        overall_code: 2,
        statuses: vec![DescriptorStatus {
            code: 2,
            current_limit: Some(RateLimit {
                requests_per_unit: 100,
                unit: 3,
                name: String::new(),
            }),
            limit_remaining: 0,
            duration_until_reset: Some(Duration {
                seconds: retry_s,
                nanos: 0,
            }),
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

fn ok_with_headers() -> Vec<u8> {
    use crate::global::proto::*;
    use prost::Message;
    let h = |k: &str, v: &str| HeaderValue {
        key: k.to_owned(),
        value: v.to_owned(),
        raw_value: Vec::new(),
    };
    RateLimitResponse {
        overall_code: 1,
        request_headers_to_add: vec![h("x-quota-tier", "gold")],
        response_headers_to_add: vec![h("x-ratelimit-remaining", "99")],
        ..Default::default()
    }
    .encode_to_vec()
}

fn user(envoy: &FakeProxy, name: &str) -> FakeHost {
    envoy.get("svc", "/api/x").request_header("x-user", name)
}

#[test]
fn an_admitted_request_pauses_for_the_service_and_resumes_on_ok() {
    let p = Proxy::new(GLOBAL, 1);
    let host = user(&p.envoy, "alice");
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Pause);
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.service_name,
        "envoy.service.ratelimit.v3.RateLimitService"
    );
    assert_eq!(call.method, "ShouldRateLimit");
    assert_eq!(call.timeout_ms, 50);
    let req = {
        use prost::Message;
        crate::global::proto::RateLimitRequest::decode(call.message.as_slice()).unwrap()
    };
    assert_eq!(req.domain, "mesh");
    let entries: Vec<_> = req.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        entries,
        [
            ("generic_key".to_owned(), "api".to_owned()),
            ("x-user".to_owned(), "alice".to_owned())
        ]
    );
    assert_eq!(
        f.on_grpc_response(&host, call.token, Ok(ok_with_headers())),
        Action::Continue
    );
    assert_eq!(
        host.request_header_str("x-quota-tier").as_deref(),
        Some("gold")
    );
    host.upstream_responds(200, &[]);
    f.on_response_headers(&host, true);
    assert_eq!(
        host.response_header_str("x-ratelimit-remaining").as_deref(),
        Some("99")
    );
    assert_eq!(
        p.envoy.metrics.value("ratelimit.api.global_allowed"),
        Some(1)
    );
    assert_eq!(decision(&host).as_deref(), Some("allowed"));
}

#[test]
fn over_limit_answers_429_with_the_services_figures() {
    let p = Proxy::new(GLOBAL, 1);
    let host = user(&p.envoy, "bob");
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Pause);
    let token = host.grpc_calls()[0].token;
    assert_eq!(
        f.on_grpc_response(&host, token, Ok(over_limit(30))),
        Action::Pause
    );
    let reply = host.local_reply().unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("30"));
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some(r#""api";q=100;w=3600"#)
    );
    assert_eq!(reply.header("ratelimit"), Some(r#""api";r=0;t=30"#));
    assert_eq!(decision(&host).as_deref(), Some("limited:api"));
    assert_eq!(
        p.envoy.metrics.value("ratelimit.api.global_limited"),
        Some(1)
    );
    // A late duplicate answer changes nothing.
    assert_eq!(
        f.on_grpc_response(&host, token, Ok(ok_with_headers())),
        Action::Pause
    );
}

#[test]
fn a_request_the_local_bucket_refuses_makes_no_call() {
    let p = Proxy::new(GLOBAL, 1);
    let mut calls = 0;
    for i in 0..3 {
        let host = user(&p.envoy, "carol");
        let mut f = p.roots[0].new_http();
        let action = f.on_request_headers(&host, true);
        calls += host.grpc_calls().len();
        if i < 2 {
            assert_eq!(action, Action::Pause);
            let token = host.grpc_calls()[0].token;
            assert_eq!(
                f.on_grpc_response(&host, token, Ok(Vec::new())),
                Action::Continue
            );
        } else {
            assert_eq!(action, Action::Pause);
            assert_eq!(host.local_reply().unwrap().status, 429);
        }
    }
    assert_eq!(calls, 2, "the third request was refused locally");
}

#[test]
fn failures_follow_the_failure_mode_and_are_counted() {
    use sdk_shim::GrpcStatus;
    for (mode, want) in [("allow", Action::Continue), ("deny", Action::Pause)] {
        let config = GLOBAL.replace(
            r#""timeout":"50ms""#,
            &format!(r#""failure_mode":"{mode}""#),
        );
        let p = Proxy::new(&config, 1);
        for status in [GrpcStatus::UNAVAILABLE, GrpcStatus::DEADLINE_EXCEEDED] {
            let host = user(&p.envoy, "dave");
            let mut f = p.roots[0].new_http();
            assert_eq!(f.on_request_headers(&host, true), Action::Pause);
            let token = host.grpc_calls()[0].token;
            assert_eq!(
                f.on_grpc_response(&host, token, Err(status)),
                want,
                "{mode}"
            );
            if mode == "deny" {
                let reply = host.local_reply().unwrap();
                assert_eq!(reply.status, 503);
                assert_eq!(reply.header("retry-after"), Some("1"));
                assert!(String::from_utf8_lossy(&reply.body).contains("policy api"));
            } else {
                assert!(host.local_reply().is_none());
            }
        }
        assert_eq!(
            p.envoy.metrics.value("ratelimit.api.global_failures"),
            Some(2)
        );
        assert_eq!(
            p.envoy.metrics.value("ratelimit.api.global_timeouts"),
            Some(1)
        );
    }
}

#[test]
fn a_call_the_host_refuses_goes_to_the_failure_mode_without_pausing() {
    let config = GLOBAL.replace(r#""timeout":"50ms""#, r#""failure_mode":"deny""#);
    let p = Proxy::new(&config, 1);
    let host = user(&p.envoy, "erin").refusing_grpc_calls(sdk_shim::HostError::BadArgument);
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.local_reply().unwrap().status, 503);
    let warned = host.logs_at(LogLevel::Warn);
    assert!(
        warned.iter().any(|l| l.contains("could not start")),
        "{warned:?}"
    );

    let p = Proxy::new(GLOBAL, 1);
    let host = user(&p.envoy, "erin").refusing_grpc_calls(sdk_shim::HostError::Internal);
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Continue);
    assert_eq!(
        p.envoy.metrics.value("ratelimit.api.global_failures"),
        Some(1)
    );
}

#[test]
fn a_global_only_rule_and_shadow_mode() {
    let only = r#"{"rules":[{"name":"g","global":{"cluster":"rls","domain":"d"}}]}"#;
    let p = Proxy::new(only, 1);
    let host = p.envoy.get("svc", "/");
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Pause);
    let token = host.grpc_calls()[0].token;
    assert_eq!(
        f.on_grpc_response(&host, token, Ok(over_limit(1))),
        Action::Pause
    );
    assert_eq!(host.local_reply().unwrap().status, 429);

    let shadow = only.replace(r#"}}]}"#, r#"}}],"mode":"shadow"}"#);
    let p = Proxy::new(&shadow, 1);
    let host = p.envoy.get("svc", "/");
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Pause);
    let token = host.grpc_calls()[0].token;
    assert_eq!(
        f.on_grpc_response(&host, token, Ok(over_limit(1))),
        Action::Continue
    );
    assert!(host.local_reply().is_none());
    assert_eq!(p.envoy.metrics.value("ratelimit.g.shadow_limited"), Some(1));
    assert_eq!(p.envoy.metrics.value("ratelimit.g.global_limited"), Some(1));
}

#[test]
fn a_keyed_rule_without_its_key_sends_nothing() {
    let p = Proxy::new(GLOBAL, 1);
    let host = p.envoy.get("svc", "/api/x");
    let mut f = p.roots[0].new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Continue);
    assert!(host.grpc_calls().is_empty());
}
