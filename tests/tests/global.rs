//! End-to-end tests of global rate limits (`envoy-config/ratelimit/envoy-global.yaml`): the
//! filter asks a real rate limit service, which counts in a real Redis the way
//! envoyproxy/ratelimit does, from two Envoy processes at once; the service down, slow, or
//! losing its Redis; and the filter's messages against Envoy's published protobuf types.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/rls.rs"]
mod fixture;

use envoy_types::pb::envoy::service::ratelimit::v3 as rls;
use fixture::{Config, Redis, Rls, Shape};
use mesh_e2e::{client, Envoy, Stub};
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const BOOTSTRAP: &str = "envoy-config/ratelimit/envoy-global.yaml";
const WAIT: Duration = Duration::from_secs(30);

fn envoy(stub: &Stub, rls_port: u16, config: Value) -> Envoy {
    Envoy::builder(BOOTSTRAP)
        .cluster("upstream", stub)
        .cluster_port("rate_limit_service", rls_port)
        .plugin_config("ratelimit", config)
        .concurrency(2)
        .start()
        .unwrap()
}

/// A rule `name` with a large local limit (so only the service decides) and a global block.
fn rule(name: &str, global: Value) -> Value {
    json!({"name": name, "limit": {"requests": 100_000, "per": "1h"}, "global": global})
}

/// envoyproxy/ratelimit's configuration: `requests` per hour for `generic_key: rule`, then,
/// with `key`, one counter per value of that entry.
fn limit(rule: &str, key: Option<&str>, requests: u64) -> Config {
    let quota = format!("rate_limit: {{unit: hour, requests_per_unit: {requests}}}");
    let yaml = match key {
        None => format!(
            "domain: mesh\ndescriptors:\n- key: generic_key\n  value: {rule}\n  {quota}\n"
        ),
        Some(k) => format!(
            "domain: mesh\ndescriptors:\n- key: generic_key\n  value: {rule}\n  descriptors:\n  - key: {k}\n    {quota}\n"
        ),
    };
    Config::parse(&yaml).unwrap()
}

fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

fn stat(stats: &BTreeMap<String, u64>, name: &str) -> u64 {
    stats
        .get(&format!("wasmcustom.{name}"))
        .copied()
        .unwrap_or(0)
}

#[test]
fn two_proxies_share_one_global_limit_of_100_per_hour() {
    let redis = Redis::start().unwrap();
    // The shipped envoyproxy/ratelimit configuration: 100 per hour per client address under
    // `per-client`.
    let shipped =
        mesh_e2e::repo_root().join("envoy-config/ratelimit/global/envoyproxy-ratelimit.yaml");
    let service = Rls::start(
        &redis.url(),
        Shape::EnvoyRatelimit,
        Config::from_file(&shipped).unwrap(),
    )
    .unwrap();
    let stub = Stub::start("upstream").unwrap();
    // The shipped rule, with a deadline no loaded machine reaches (so every call gets its
    // answer and none is let through by the failure mode) and a local limit above the global.
    let config = json!({"rules": [{"name": "per-client", "key": {"source": "address"},
        "limit": {"requests": 100_000, "per": "1h"},
        "global": {"cluster": "rate_limit_service", "domain": "mesh", "timeout": "60s",
                   "failure_mode": "deny"}}]});
    let proxies = [
        envoy(&stub, service.port(), config.clone()),
        envoy(&stub, service.port(), config),
    ];
    let per_proxy = 150;
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads * proxies.len()));
    let handles: Vec<_> = proxies
        .iter()
        .flat_map(|p| (0..threads).map(|_| p.url("/x")).collect::<Vec<_>>())
        .map(|url| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let http = client();
                barrier.wait();
                (0..per_proxy / threads + 1)
                    .map(|_| http.get(&url).send().unwrap())
                    .map(|r| {
                        let status = r.status().as_u16();
                        let policy = r
                            .headers()
                            .get("ratelimit-policy")
                            .map(|v| v.to_str().unwrap().to_owned());
                        (status, policy)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = answers.len();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(
        ok, 100,
        "two proxies together admit exactly the global limit"
    );
    assert_eq!(limited.len(), total - 100, "every other answer is the 429");
    // envoyproxy/ratelimit's shape carries the limit: the 429 states it.
    assert!(limited
        .iter()
        .all(|(_, p)| p.as_deref() == Some(r#""per-client";q=100;w=3600"#)));
    assert_eq!(service.calls(), total as u64, "one call per request");
    let (mut allowed, mut refused) = (0, 0);
    for p in &proxies {
        let s = p.stats().unwrap();
        allowed += stat(&s, "ratelimit.per-client.global_allowed");
        refused += stat(&s, "ratelimit.per-client.global_limited");
        assert_eq!(stat(&s, "ratelimit.per-client.global_failures"), 0);
    }
    assert_eq!((allowed, refused), (100, total as u64 - 100));
}

#[test]
fn limitador_answers_without_statuses_and_counts_per_key() {
    let redis = Redis::start().unwrap();
    let service = Rls::start(
        &redis.url(),
        Shape::Limitador,
        limit("per-user", Some("x-user"), 2),
    )
    .unwrap();
    let stub = Stub::start("upstream").unwrap();
    let config = json!({"rules": [{"name": "per-user", "key": {"header": "x-user"},
        "global": {"cluster": "rate_limit_service", "domain": "mesh", "timeout": "60s"}}]});
    let e = envoy(&stub, service.port(), config);
    let url = e.url("/x");
    let alice: Vec<_> = (0..3).map(|_| get(&url, &[("x-user", "alice")])).collect();
    let statuses: Vec<u16> = alice.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let refused = &alice[2];
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    // Limitador says nothing of the limit: the 429 invents no figures.
    assert!(refused.headers().get("retry-after").is_none());
    assert!(refused.headers().get("ratelimit-policy").is_none());
    assert_eq!(get(&url, &[("x-user", "bob")]).status(), 200);
    // No key, no descriptor: the rule does not apply and no call is made.
    let before = service.calls();
    assert_eq!(get(&url, &[]).status(), 200);
    assert_eq!(service.calls(), before);
}

#[test]
fn a_request_the_local_bucket_refuses_makes_no_call() {
    let redis = Redis::start().unwrap();
    let service = Rls::start(
        &redis.url(),
        Shape::EnvoyRatelimit,
        limit("front", None, 1000),
    )
    .unwrap();
    let stub = Stub::start("upstream").unwrap();
    let config = json!({"rules": [{"name": "front", "limit": {"requests": 2, "per": "24h"},
        "global": {"cluster": "rate_limit_service", "domain": "mesh", "timeout": "60s"}}]});
    let e = envoy(&stub, service.port(), config);
    let statuses: Vec<u16> = (0..5)
        .map(|_| get(&e.url("/x"), &[]).status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    assert_eq!(
        service.calls(),
        2,
        "the local 429s never reached the service"
    );
}

#[test]
fn a_request_body_waits_for_the_answer_too() {
    let redis = Redis::start().unwrap();
    let service = Rls::start(
        &redis.url(),
        Shape::EnvoyRatelimit,
        limit("writes", None, 1),
    )
    .unwrap();
    // The answer comes well after the body: a body frame must not carry the request past the
    // pending check. (Envoy's proxy-wasm host turns a paused request into
    // StopAllIterationAndWatermark, so the body waits with the headers.)
    service.set_delay(Duration::from_millis(500));
    let stub = Stub::start("upstream").unwrap();
    let config = json!({"rules": [rule("writes", json!({"cluster": "rate_limit_service",
        "domain": "mesh", "timeout": "60s", "failure_mode": "deny"}))]});
    for http2 in [false, true] {
        let e = envoy(&stub, service.port(), config.clone());
        let http = if http2 {
            reqwest::blocking::Client::builder()
                .no_proxy()
                .http2_prior_knowledge()
                .timeout(WAIT)
                .build()
                .unwrap()
        } else {
            client()
        };
        let before = stub.hits();
        let post = |body: &'static str| {
            http.post(e.url("/x"))
                .body(body)
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        let first = post("one");
        let second = post("two, with a body and trailers of no consequence");
        if !http2 {
            assert_eq!(first, 200, "the first write is within the limit");
        }
        assert_eq!(second, 429, "http2: {http2}");
        let reached = stub.hits() - before;
        assert_eq!(
            reached,
            u64::from(first == 200),
            "the refused write never reached the upstream"
        );
    }
}

#[test]
fn a_service_that_is_down_gets_the_failure_mode() {
    let stub = Stub::start("upstream").unwrap();
    // Nothing listens there: Envoy ends each call with UNAVAILABLE (14).
    let dead = mesh_e2e::free_port().unwrap();
    let global = |mode: &str| {
        json!({"cluster": "rate_limit_service", "domain": "mesh", "failure_mode": mode,
            "timeout": "5s"})
    };
    let mut open = rule("open", global("allow"));
    open["match"] = json!({"path_prefix": "/open"});
    let mut closed = rule("closed", global("deny"));
    closed["match"] = json!({"path_prefix": "/closed"});
    let e = envoy(&stub, dead, json!({"rules": [open, closed]}));
    for _ in 0..3 {
        assert_eq!(get(&e.url("/open"), &[]).status(), 200);
        let denied = get(&e.url("/closed"), &[]);
        assert_eq!(denied.status(), 503);
        assert_eq!(denied.headers()["retry-after"], "1");
        let body: Value = denied.json().unwrap();
        assert_eq!(body["status"], 503);
        assert!(body["detail"].as_str().unwrap().contains("policy closed"));
    }
    let s = e
        .wait_for_stats(WAIT, |s| {
            stat(s, "ratelimit.open.global_failures") == 3
                && stat(s, "ratelimit.closed.global_failures") == 3
        })
        .unwrap();
    assert_eq!(stat(&s, "ratelimit.open.global_failures"), 3);
    assert_eq!(stat(&s, "ratelimit.closed.global_failures"), 3);
    assert_eq!(stat(&s, "ratelimit.open.global_allowed"), 0);
    assert!(e
        .log()
        .contains("rate limit service failed: gRPC status 14 (unavailable)"));
}

#[test]
fn a_service_slower_than_the_timeout_takes_the_timeout_path() {
    let redis = Redis::start().unwrap();
    let service = Rls::start(
        &redis.url(),
        Shape::EnvoyRatelimit,
        limit("open", None, 1000),
    )
    .unwrap();
    // Far past the 50ms deadline, however slow this machine is.
    service.set_delay(Duration::from_secs(10));
    let stub = Stub::start("upstream").unwrap();
    let global = |mode: &str| {
        json!({"cluster": "rate_limit_service", "domain": "mesh", "failure_mode": mode,
            "timeout": "50ms"})
    };
    let mut open = rule("open", global("allow"));
    open["match"] = json!({"path_prefix": "/open"});
    let mut closed = rule("closed", global("deny"));
    closed["match"] = json!({"path_prefix": "/closed"});
    let e = envoy(&stub, service.port(), json!({"rules": [open, closed]}));
    assert_eq!(get(&e.url("/open"), &[]).status(), 200);
    assert_eq!(get(&e.url("/closed"), &[]).status(), 503);
    let s = e
        .wait_for_stats(WAIT, |s| {
            stat(s, "ratelimit.open.global_timeouts") == 1
                && stat(s, "ratelimit.closed.global_timeouts") == 1
        })
        .unwrap();
    for rule in ["open", "closed"] {
        assert_eq!(stat(&s, &format!("ratelimit.{rule}.global_timeouts")), 1);
        assert_eq!(stat(&s, &format!("ratelimit.{rule}.global_failures")), 1);
    }
}

#[test]
fn redis_restarted_mid_run_fails_open_then_counts_again_from_zero() {
    let mut redis = Redis::start().unwrap();
    let service = Rls::start(&redis.url(), Shape::EnvoyRatelimit, limit("r", None, 3)).unwrap();
    let stub = Stub::start("upstream").unwrap();
    let config = json!({"rules": [rule("r", json!({"cluster": "rate_limit_service",
        "domain": "mesh", "timeout": "60s", "failure_mode": "allow"}))]});
    let e = envoy(&stub, service.port(), config);
    let url = e.url("/x");
    assert_eq!(get(&url, &[]).status(), 200);
    assert_eq!(get(&url, &[]).status(), 200);

    // Redis gone: the service answers UNAVAILABLE, the filter fails open; nothing hangs (the
    // client's own timeout would fail the test).
    redis.stop();
    for _ in 0..3 {
        assert_eq!(get(&url, &[]).status(), 200);
    }
    let s = e
        .wait_for_stats(WAIT, |s| stat(s, "ratelimit.r.global_failures") >= 3)
        .unwrap();
    assert!(stat(&s, "ratelimit.r.global_failures") >= 3);

    // A new, empty Redis: once the service reconnects, counting starts over at zero.
    redis.restart().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let base = stat(&e.stats().unwrap(), "ratelimit.r.global_allowed");
    while stat(&e.stats().unwrap(), "ratelimit.r.global_allowed") == base {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never recovered"
        );
        assert_eq!(get(&url, &[]).status(), 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    // One hit counted since the restart: two more fit, then 429.
    let statuses: Vec<u16> = (0..3).map(|_| get(&url, &[]).status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 429]);
}

#[test]
fn the_envoy_gateway_patch_adds_a_cluster_envoy_accepts() {
    let root = mesh_e2e::repo_root();
    let patch: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            root.join("envoy-config/ratelimit/global/envoy-gateway-patch.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let p = &patch["spec"]["jsonPatches"][0];
    assert_eq!(
        p["type"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    assert_eq!(p["name"], "rate_limit_service");
    let cluster = p["operation"]["value"].clone();
    assert_eq!(cluster["name"], "rate_limit_service");
    // The shipped bootstrap with its static cluster replaced by the patch's.
    let mut boot: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join(BOOTSTRAP)).unwrap()).unwrap();
    let clusters = boot["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap();
    clusters.retain(|c| c["name"] != "rate_limit_service");
    clusters.push(cluster);
    let dir = root.join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("eg-patch-{}.yaml", std::process::id()));
    std::fs::write(&file, serde_yaml::to_string(&boot).unwrap()).unwrap();
    let out = std::process::Command::new(mesh_e2e::install::envoy_bin().unwrap())
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(&file)
        .current_dir(&root)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// === wire compatibility with Envoy's published types ===

#[test]
fn the_filters_messages_are_envoys_messages() {
    use envoy_types::pb::envoy::config::core::v3::{grpc_service, GrpcService};
    use mesh_ratelimit::global::proto;
    let config = br#"{"rules":[{"name":"api","key":{"header":"x-user"},
        "global":{"cluster":"rls","authority":"rls.mesh","domain":"mesh",
                  "entries":[{"key":"service","value":"reviews"}],"hits_addend":2}}]}"#;
    let rules = mesh_ratelimit::Config::parse(config).unwrap().rules;
    let global = rules[0].global.as_ref().unwrap();

    let service = GrpcService::decode(global.service.as_bytes()).unwrap();
    match service.target_specifier {
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(g)) => {
            assert_eq!(g.cluster_name, "rls");
            assert_eq!(g.authority, "rls.mesh");
        }
        other => panic!("{other:?}"),
    }

    let request = rls::RateLimitRequest::decode(global.request(Some("alice")).as_slice()).unwrap();
    assert_eq!(request.domain, "mesh");
    assert_eq!(request.hits_addend, 2);
    let entries: Vec<(String, String)> = request.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        entries,
        [
            ("service".to_owned(), "reviews".to_owned()),
            ("x-user".to_owned(), "alice".to_owned())
        ]
    );

    use rls::rate_limit_response::{rate_limit::Unit, Code, DescriptorStatus, RateLimit};
    let answer = rls::RateLimitResponse {
        overall_code: Code::OverLimit as i32,
        statuses: vec![DescriptorStatus {
            code: Code::OverLimit as i32,
            current_limit: Some(RateLimit {
                name: "n".to_owned(),
                requests_per_unit: 10,
                unit: Unit::Minute as i32,
            }),
            limit_remaining: 0,
            duration_until_reset: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 7,
                nanos: 0,
            }),
            quota: None,
        }],
        response_headers_to_add: vec![envoy_types::pb::envoy::config::core::v3::HeaderValue {
            key: "x-ratelimit-limit".to_owned(),
            value: "10".to_owned(),
            raw_value: Vec::new(),
        }],
        raw_body: b"ignored".to_vec(),
        ..Default::default()
    };
    let ours = proto::RateLimitResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
    assert_eq!(ours.overall_code, 2);
    let status = &ours.statuses[0];
    assert_eq!(status.current_limit.as_ref().unwrap().requests_per_unit, 10);
    assert_eq!(status.current_limit.as_ref().unwrap().unit, 2);
    assert_eq!(status.duration_until_reset.as_ref().unwrap().seconds, 7);
    assert_eq!(ours.response_headers_to_add[0].key, "x-ratelimit-limit");
    assert_eq!(
        mesh_ratelimit::global::answer(&answer.encode_to_vec()).unwrap(),
        mesh_ratelimit::global::Answer::OverLimit {
            retry_after_s: Some(7),
            policy: Some((10, 60)),
            remaining: Some(0),
            response_headers: vec![("x-ratelimit-limit".to_owned(), "10".to_owned())],
        }
    );
}
