//! The canary filter in the real Envoy (`--concurrency 2`) with stub upstreams `v1` and `v2`:
//! the weighted split, overrides, sticky users and cookies, the rollback guard, stats, and
//! configurations Envoy must refuse.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mesh_e2e::{client, Envoy, Stub};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const BOOTSTRAP: &str = "envoy-config/canary/envoy.yaml";

/// The shipped plugin configuration, to be varied per test.
fn shipped() -> Value {
    let text = std::fs::read_to_string(
        mesh_e2e::repo_root().join("envoy-config/canary/plugin-config.json"),
    )
    .unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    // The example names its JSON Schema for editors; the other copies need not.
    v.as_object_mut().unwrap().remove("$schema");
    v
}

fn start(v1: &Stub, v2: &Stub, config: Value) -> anyhow::Result<Envoy> {
    mesh_e2e::module_path("canary")?;
    Envoy::builder(BOOTSTRAP)
        .cluster("reviews_v1", v1)
        .cluster("reviews_v2", v2)
        .plugin_config("canary", config)
        .concurrency(2)
        .start()
}

fn stubs() -> (Stub, Stub) {
    (Stub::start("v1").unwrap(), Stub::start("v2").unwrap())
}

fn get(http: &Client, envoy: &Envoy, headers: &[(&str, &[u8])]) -> Response {
    let mut req = http.get(envoy.url("/reviews/1")).header("host", "reviews");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

fn upstream(r: &Response) -> String {
    r.headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends `n` plain requests over several connections (so both workers take part) and counts
/// the upstream that answered each.
fn spread(envoy: &Envoy, n: usize) -> BTreeMap<String, u64> {
    let threads = 4;
    let url = envoy.url("/reviews/1");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let http = client();
                let mut seen = BTreeMap::new();
                for _ in (t..n).step_by(threads) {
                    let r = http.get(&url).header("host", "reviews").send().unwrap();
                    assert_eq!(r.status(), 200);
                    *seen.entry(upstream(&r)).or_insert(0) += 1;
                }
                seen
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            *total.entry(k).or_insert(0) += v;
        }
    }
    total
}

fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).unwrap().unwrap_or(0)
}

#[test]
fn a_90_10_split_passes_a_chi_square_test() {
    let (v1, v2) = stubs();
    let envoy = start(&v1, &v2, shipped()).unwrap();
    let n = 2000u64;
    let seen = spread(&envoy, n as usize);
    let (o1, o2) = (
        seen.get("v1").copied().unwrap_or(0),
        seen.get("v2").copied().unwrap_or(0),
    );
    assert_eq!(o1 + o2, n, "{seen:?}");
    let (e1, e2) = (n as f64 * 0.9, n as f64 * 0.1);
    let chi2 = (o1 as f64 - e1).powi(2) / e1 + (o2 as f64 - e2).powi(2) / e2;
    // Critical value of chi-square with 1 degree of freedom at p = 1e-6: a fair split fails
    // once in a million runs, while an 85/15 split (chi2 about 55 here) still fails every run.
    assert!(chi2 < 23.928, "v1={o1} v2={o2} chi2={chi2:.2}");
    assert_eq!((v1.hits(), v2.hits()), (o1, o2));

    // The filter's stats, as /stats and /stats/prometheus show them.
    let stats = envoy
        .wait_for_stats(Duration::from_secs(30), |s| {
            s.get("wasmcustom.canary.reviews.v1.decisions")
                .copied()
                .unwrap_or(0)
                + s.get("wasmcustom.canary.reviews.v2.decisions")
                    .copied()
                    .unwrap_or(0)
                == n
        })
        .unwrap();
    assert_eq!(
        stats.get("wasmcustom.canary.reviews.v1.decisions"),
        Some(&o1)
    );
    assert_eq!(
        stats.get("wasmcustom.canary.reviews.v2.decisions"),
        Some(&o2)
    );
    assert_eq!(
        stats.get("wasmcustom.canary.reviews.v2.overrides"),
        Some(&0)
    );
    assert_eq!(
        stats.get("wasmcustom.canary.reviews.v2.rollbacks"),
        Some(&0)
    );
    let prom = envoy.prometheus().unwrap();
    let value = |name: &str| prom.iter().find(|s| s.name == name).map(|s| s.value);
    assert_eq!(value("canary_reviews_v2_decisions"), Some(o2 as f64));
    assert_eq!(value("canary_reviews_v1_decisions"), Some(o1 as f64));
}

#[test]
fn an_override_forces_v2_and_a_forged_route_header_is_replaced() {
    let (v1, v2) = stubs();
    let mut cfg = shipped();
    cfg["services"][0]["subsets"] =
        json!([{"name": "v1", "weight": 1}, {"name": "v2", "weight": 0}]);
    let envoy = start(&v1, &v2, cfg).unwrap();
    let http = client();
    for _ in 0..50 {
        let r = get(&http, &envoy, &[("x-canary", b"always")]);
        assert_eq!(upstream(&r), "v2");
        let body: Value = r.json().unwrap();
        assert_eq!(body["headers"]["x-canary-subset"], json!(["v2"]));
    }
    // The client's own route header never picks the route: v2 weighs 0.
    for _ in 0..50 {
        let r = get(&http, &envoy, &[("x-canary-subset", b"v2")]);
        assert_eq!(upstream(&r), "v1");
        let body: Value = r.json().unwrap();
        assert_eq!(body["headers"]["x-canary-subset"], json!(["v1"]));
    }
    assert_eq!((v1.hits(), v2.hits()), (50, 50));
    envoy
        .wait_for_stats(Duration::from_secs(30), |s| {
            s.get("wasmcustom.canary.reviews.v2.overrides") == Some(&50)
        })
        .unwrap();
    assert_eq!(stat(&envoy, "wasmcustom.canary.reviews.v2.overrides"), 50);
    assert_eq!(stat(&envoy, "wasmcustom.canary.reviews.v2.decisions"), 50);
    assert_eq!(stat(&envoy, "wasmcustom.canary.reviews.v1.decisions"), 50);
}

#[test]
fn one_user_always_lands_on_one_subset() {
    let (v1, v2) = stubs();
    let mut cfg = shipped();
    cfg["services"][0]["subsets"] =
        json!([{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]);
    let envoy = start(&v1, &v2, cfg).unwrap();
    let http = client();
    let first = upstream(&get(&http, &envoy, &[("x-user-id", b"alice")]));
    for _ in 0..199 {
        assert_eq!(
            upstream(&get(&http, &envoy, &[("x-user-id", b"alice")])),
            first
        );
    }
    // Different users spread over both subsets, each one stable.
    let mut subsets = BTreeMap::new();
    for u in 0..40 {
        let id = format!("user-{u}");
        let a = upstream(&get(&http, &envoy, &[("x-user-id", id.as_bytes())]));
        let b = upstream(&get(&http, &envoy, &[("x-user-id", id.as_bytes())]));
        assert_eq!(a, b, "{id}");
        *subsets.entry(a).or_insert(0) += 1;
    }
    assert_eq!(subsets.len(), 2, "{subsets:?}");
}

#[test]
fn the_cookie_is_set_then_honoured() {
    let (v1, v2) = stubs();
    let cfg = json!({"expose_subset": true, "services": [{"host": "reviews",
        "subsets": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
        "sticky": {"cookie": "canary", "max_age_s": 86400}}]});
    let envoy = start(&v1, &v2, cfg).unwrap();
    let http = client();
    let first = get(&http, &envoy, &[]);
    let set = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("canary="), "{set}");
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400"),
        "{set}"
    );
    let subset = upstream(&first);
    assert_eq!(first.headers()["x-canary-subset"], subset.as_str());
    let pair = set.split(';').next().unwrap().to_owned();
    for _ in 0..50 {
        let r = get(
            &http,
            &envoy,
            &[("cookie", format!("theme=dark; {pair}").as_bytes())],
        );
        assert_eq!(upstream(&r), subset);
        assert!(r.headers().get("set-cookie").is_none());
    }
    // A forged value is not honoured: a new cookie is issued.
    let r = get(&http, &envoy, &[("cookie", b"canary=v2")]);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("canary="));
}

#[test]
fn hostile_requests_still_route() {
    let (v1, v2) = stubs();
    let mut cfg = shipped();
    cfg["services"][0]["sticky"] = json!({"cookie": "canary"});
    cfg["expose_subset"] = json!(true);
    // The stub upstream only takes ASCII header values; the odd headers stop at Envoy (after
    // the filter saw them), so what reaches the stub proves the request was routed.
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .plugin_config("canary", cfg)
        .edit(|doc| {
            doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["route_config"]["virtual_hosts"][0]["request_headers_to_remove"] =
                serde_yaml::to_value(["cookie", "x-canary"]).unwrap();
        })
        .start()
        .unwrap();
    let http = client();
    let huge = format!("canary={}", "x".repeat(30_000));
    let cases: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("cookie", b"canary=\xff\xfe\xfd; a=\x80")],
        vec![
            ("cookie", b"a=1"),
            ("cookie", b"canary=garbage"),
            ("cookie", b"canary="),
        ],
        vec![("cookie", huge.as_bytes())],
        vec![("x-canary", b"\xff\xff")],
    ];
    for headers in &cases {
        let mut req = http.get(envoy.url("/")).header("host", "reviews");
        for (k, v) in headers {
            req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 200, "{headers:?}");
        let routed = upstream(&r);
        assert!(["v1", "v2"].contains(&routed.as_str()), "{headers:?}");
        assert_eq!(r.headers()["x-canary-subset"], routed.as_str());
        assert!(r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("canary="));
    }
    // Other hosts pass through to their own routes.
    let r = http
        .get(envoy.url("/"))
        .header("host", "ratings:9080")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn a_failing_canary_trips_the_guard_then_only_v1_serves() {
    guard_trips_when_v2_answers(503);
}

/// An upstream that drops the connection gets Envoy's local 503 (`UC`), which the guard
/// counts like a 5xx from the upstream.
#[test]
fn a_canary_that_resets_connections_trips_the_guard_too() {
    guard_trips_when_v2_answers(0);
}

/// `status` 0: v2 closes the connection instead of answering.
fn guard_trips_when_v2_answers(status: u16) {
    let (v1, v2) = stubs();
    v2.set_status(status);
    let mut cfg = shipped();
    cfg["services"][0]["subsets"] =
        json!([{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]);
    cfg["services"][0]["rollback"] =
        json!({"subset": "v2", "max_error_rate": 0.5, "min_requests": 20, "window_s": 86400});
    let envoy = start(&v1, &v2, cfg).unwrap();
    // Enough traffic for v2 to see 20 responses: the guard then trips.
    spread_until(&envoy, &v2, 20);
    let tripped_at = v2.hits();
    let after = spread(&envoy, 400);
    assert_eq!(after.get("v1"), Some(&400), "{after:?}");
    assert_eq!(v2.hits(), tripped_at, "v2 got traffic after the trip");
    // Requests in flight when it tripped may add a few responses beyond min_requests.
    assert!((20..=30).contains(&tripped_at), "{tripped_at}");
    let stats = envoy
        .wait_for_stats(Duration::from_secs(30), |s| {
            s.get("wasmcustom.canary.reviews.v2.rollbacks") == Some(&1)
        })
        .unwrap();
    assert_eq!(
        stats.get("wasmcustom.canary.reviews.v2.rollbacks"),
        Some(&1)
    );
    let log = envoy.log();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rollback guard tripped"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("[warning]"), "{}", warns[0]);
    assert!(warns[0].contains("for reviews subset v2"), "{}", warns[0]);
}

// Sends requests (any status) until `stub` answered `n` of them.
fn spread_until(envoy: &Envoy, stub: &Stub, n: u64) -> usize {
    let http = client();
    let mut sent = 0;
    while stub.hits() < n {
        let _ = http
            .get(envoy.url("/"))
            .header("host", "reviews")
            .send()
            .unwrap();
        sent += 1;
        assert!(sent < 5000, "stub {} never reached {n} hits", stub.name());
    }
    sent
}

#[test]
fn envoy_refuses_bad_configurations_naming_the_field() {
    let (v1, v2) = stubs();
    let mut negative = shipped();
    negative["services"][0]["subsets"][1]["weight"] = json!(-1);
    let mut unknown_subset = shipped();
    unknown_subset["services"][0]["overrides"][0]["subset"] = json!("v3");
    let mut rate = shipped();
    rate["services"][0]["rollback"]["max_error_rate"] = json!(1.5);
    let mut unknown_field = shipped();
    unknown_field["services"][0]["colour"] = json!("blue");
    let cases = [
        (negative, "services[0].subsets[1].weight: must be >= 0"),
        (
            unknown_subset,
            "services[0].overrides[0].subset: unknown subset \"v3\"",
        ),
        (
            rate,
            "services[0].rollback.max_error_rate: must be between 0 and 1",
        ),
        (unknown_field, "services[0].colour: unknown field `colour`"),
    ];
    for (cfg, field) in cases {
        let err = match start(&v1, &v2, cfg) {
            Ok(_) => panic!("envoy accepted a bad configuration ({field})"),
            Err(e) => format!("{e:#}"),
        };
        let line = err
            .lines()
            .find(|l| l.contains("canary: invalid configuration"))
            .unwrap_or_else(|| panic!("no error line for {field} in:\n{err}"));
        assert!(line.contains(field), "{line}");
    }
}

/// Documents of a YAML file (several in one file, separated by `---`).
fn yaml_docs(path: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(mesh_e2e::repo_root().join(path)).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect()
}

#[test]
fn the_shipped_configurations_agree_and_envoy_runs_them() {
    // The bootstrap's inline configuration, plugin-config.json and the WasmPlugin's.
    let bootstrap = &yaml_docs(BOOTSTRAP)[0];
    let wasm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"];
    assert_eq!(wasm["root_id"].as_str(), Some("canary"));
    let inline: Value =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(inline, shipped());
    let plugin = &yaml_docs("envoy-config/canary/istio/wasmplugin.yaml")[0];
    assert_eq!(plugin["kind"].as_str(), Some("WasmPlugin"));
    assert_eq!(plugin["spec"]["pluginName"].as_str(), Some("canary"));
    let istio_cfg: Value = serde_json::to_value(&plugin["spec"]["pluginConfig"]).unwrap();
    assert_eq!(istio_cfg, shipped());

    // The VirtualService routes each subset's header value to that subset, which the
    // DestinationRule defines.
    let docs = yaml_docs("envoy-config/canary/istio/virtualservice.yaml");
    let vs = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("VirtualService"))
        .unwrap();
    let dr = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DestinationRule"))
        .unwrap();
    let header = shipped()["route_header"].as_str().unwrap().to_owned();
    let mut routed = Vec::new();
    for route in vs["spec"]["http"].as_sequence().unwrap() {
        let dest = route["route"][0]["destination"]["subset"].as_str().unwrap();
        if let Some(m) = route["match"].as_sequence() {
            let value = m[0]["headers"][header.as_str()]["exact"].as_str().unwrap();
            assert_eq!(value, dest);
            routed.push(dest.to_owned());
        }
    }
    let subsets: Vec<String> = shipped()["services"][0]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    routed.sort();
    assert_eq!(routed, subsets);
    let defined: Vec<&str> = dr["spec"]["subsets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        subsets.iter().all(|s| defined.contains(&s.as_str())),
        "{defined:?}"
    );

    // The bootstrap as shipped (its inline configuration) runs and routes.
    let (v1, v2) = stubs();
    mesh_e2e::module_path("canary").unwrap();
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .start()
        .unwrap();
    let http = client();
    let r = get(&http, &envoy, &[("x-canary", b"always")]);
    assert_eq!(upstream(&r), "v2");
    let r = get(&http, &envoy, &[("x-user-id", b"bob")]);
    assert!(["v1", "v2"].contains(&upstream(&r).as_str()));
}

#[test]
fn a_repeated_forged_route_header_is_replaced_whole() {
    // Envoy's replace of a header value only touches its first occurrence: a client sending
    // the route header twice must not keep its second copy.
    let (v1, v2) = stubs();
    let mut cfg = shipped();
    cfg["services"][0]["subsets"] =
        json!([{"name": "v1", "weight": 1}, {"name": "v2", "weight": 0}]);
    let envoy = start(&v1, &v2, cfg).unwrap();
    let http = client();
    for _ in 0..20 {
        let r = get(
            &http,
            &envoy,
            &[("x-canary-subset", b"v2"), ("x-canary-subset", b"v2")],
        );
        assert_eq!(upstream(&r), "v1");
        let body: Value = r.json().unwrap();
        assert_eq!(body["headers"]["x-canary-subset"], json!(["v1"]));
    }
    assert_eq!(v2.hits(), 0);
}
