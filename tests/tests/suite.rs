//! The suite module (`target/filters/suite.wasm`) in the real Envoy with every capability on:
//! one filter pass routes, limits, authorizes and reports, and its access log line carries
//! every capability's verdict.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use mesh_e2e::{client, Envoy, Stub};
use serde_json::{json, Value};
use std::time::Duration;

fn config(default_action: &str, requests: u32) -> Value {
    json!({
        "telemetry": {"reporter": "destination",
                      "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"}},
        "intentions": {"trust_domain": "mesh.local", "destination": "reviews",
                       "default_action": default_action,
                       "intentions": [{"source": "legacy/*", "action": "deny"}]},
        "ratelimit": {"rules": [{"name": "per-client", "key": {"header": "x-client"},
                                 "limit": {"requests": requests, "per": "1h"}}],
                      // Clients a and b share a slot with odds 1 in max_keys (the table's
                      // hash secret is new in every Envoy): 1 in 100 made this test flaky.
                      "max_keys": 100_000},
        "canary": {"services": [{"host": "reviews",
                   "subsets": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
                   "overrides": [{"header": "x-canary", "value": "always", "subset": "v2"}]}]}
    })
}

fn start(v1: &Stub, v2: &Stub, cfg: Value) -> Envoy {
    Envoy::builder("envoy-config/suite/envoy.yaml")
        .cluster("reviews_v1", v1)
        .cluster("reviews_v2", v2)
        .plugin_config("suite", cfg)
        .concurrency(2)
        .start()
        .unwrap()
}

/// GET /api for host `reviews` as client `who`; returns the status.
fn get_as(envoy: &Envoy, who: &str) -> u16 {
    let r = client()
        .get(envoy.url("/api"))
        .header("host", "reviews")
        .header("x-client", who)
        .send()
        .unwrap();
    r.status().as_u16()
}

/// Waits until telemetry has counted `n` requests answered `code` (stats flush async).
fn wait_counter(envoy: &Envoy, code: &str, n: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while counter(envoy, code) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    counter(envoy, code)
}

fn counter(envoy: &Envoy, code: &str) -> f64 {
    envoy
        .prometheus()
        .unwrap()
        .iter()
        .filter(|s| s.name == "istio_requests_total" && s.label("response_code") == Some(code))
        .map(|s| s.value)
        .sum()
}

#[test]
fn one_pass_routes_limits_and_reports() {
    let (v1, v2) = (Stub::start("v1").unwrap(), Stub::start("v2").unwrap());
    let envoy = start(&v1, &v2, config("allow", 3));
    let http = client();

    // Canary: the override forces v2, and a forged route header is replaced.
    let body: Value = http
        .get(envoy.url("/api"))
        .header("host", "reviews")
        .header("x-canary", "always")
        .header("x-canary-subset", "v1")
        .header("x-client", "a")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["upstream"], "v2");
    assert_eq!(body["headers"]["x-canary-subset"], json!(["v2"]));

    // Rate limit: client a has 3 per hour; the 4th is refused, client b is separate.
    assert_eq!([get_as(&envoy, "a"), get_as(&envoy, "a")], [200, 200]);
    let r = http
        .get(envoy.url("/api"))
        .header("host", "reviews")
        .header("x-client", "a")
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(get_as(&envoy, "b"), 200);

    // Telemetry saw all five requests, the local 429 included.
    assert_eq!(wait_counter(&envoy, "200", 4.0), 4.0);
    assert_eq!(counter(&envoy, "429"), 1.0);
    assert_eq!(v1.hits() + v2.hits(), 4);

    // The access log line of the limited request names every capability's verdict.
    let log = envoy.log();
    let line = log
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .find(|v| v["status"] == 429)
        .unwrap_or_else(|| panic!("no access log line for the 429:\n{log}"));
    assert_eq!(line["ratelimit"], "limited:per-client");
    assert_eq!(line["intentions"], "allow:default");
}

#[test]
fn a_denial_stops_the_pass_and_is_reported() {
    let (v1, v2) = (Stub::start("v1").unwrap(), Stub::start("v2").unwrap());
    let envoy = start(&v1, &v2, config("deny", 100));
    for _ in 0..3 {
        assert_eq!(get_as(&envoy, "a"), 403);
    }
    assert_eq!(v1.hits() + v2.hits(), 0);
    assert_eq!(wait_counter(&envoy, "403", 3.0), 3.0);
    // The rate limit never ran: denied requests consume nothing.
    let stats = envoy.stats().unwrap();
    let allowed = stats.get("wasmcustom.ratelimit.per-client.allowed");
    assert_eq!(allowed, Some(&0), "{stats:#?}");
}

#[test]
fn a_bad_capability_config_stops_envoy_with_the_field_named() {
    let mut cfg = config("allow", 3);
    cfg["ratelimit"]["rules"][0]["limit"]["requests"] = json!(0);
    let err = Envoy::builder("envoy-config/suite/envoy.yaml")
        .plugin_config("suite", cfg)
        .start()
        .err()
        .expect("envoy must refuse the configuration");
    let msg = format!("{err:#}");
    assert!(msg.contains("rules[0].limit.requests"), "{msg}");
    assert!(
        msg.contains("suite: invalid configuration: ratelimit"),
        "{msg}"
    );
}

#[test]
fn inbound_and_outbound_suites_in_one_vm_keep_separate_series_budgets() {
    let (v1, v2) = (Stub::start("v1").unwrap(), Stub::start("v2").unwrap());
    // One series each: inbound's requests answer 200, outbound's 404 (another host), so
    // their series differ; with one shared budget the second would overflow.
    let telemetry_only = |name: &str| {
        json!({"telemetry": {"reporter": "destination", "max_series": 1,
            "workload": {"name": name, "namespace": "default", "service": "reviews"}}})
    };
    let outbound = telemetry_only("reviews-v1");
    let envoy = Envoy::builder("envoy-config/suite/envoy.yaml")
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .plugin_config("suite", telemetry_only("reviews-v1"))
        .edit(move |y| {
            mesh_e2e::envoy::second_plugin_listener(
                y,
                "outbound",
                "default.mesh-suite-outbound",
                &outbound,
            )
            .unwrap();
        })
        .start()
        .unwrap();
    let http = client();
    let get = |port: u16, host: &str| {
        http.get(format!("http://127.0.0.1:{port}/"))
            .header("host", host)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let inbound_port = envoy.listener_port("ingress").unwrap();
    let outbound_port = envoy.listener_port("outbound").unwrap();
    assert_eq!(get(inbound_port, "reviews"), 200);
    assert_eq!(get(outbound_port, "elsewhere"), 404);
    let stats = envoy
        .wait_for_stats(Duration::from_secs(30), |s| {
            s.get("wasmcustom.telemetry.series_admitted") == Some(&2)
        })
        .unwrap();
    assert_eq!(stats["wasmcustom.telemetry.series_admitted"], 2);
    assert_eq!(stats["wasmcustom.telemetry.series_overflow"], 0);
}
