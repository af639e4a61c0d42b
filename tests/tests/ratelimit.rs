//! End-to-end tests of the ratelimit filter in the real Envoy (`envoy-config/ratelimit/`):
//! exact limits across workers, separate keys, the 429 fields and body, bounded memory under
//! a flood of keys, the keyed slot table, shadow mode and config rejection.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mesh_e2e::envoy::{hcm_mut, second_plugin_listener};
use mesh_e2e::{client, most_admitted, Envoy, Stub};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "envoy-config/ratelimit/envoy.yaml";
const DAY: Duration = Duration::from_secs(86_400);

fn envoy(stub: &Stub, concurrency: usize, config: Value) -> Envoy {
    Envoy::builder(BOOTSTRAP)
        .cluster("upstream", stub)
        .plugin_config("ratelimit", config)
        .concurrency(concurrency)
        .start()
        .unwrap()
}

/// Adds routes answered by Envoy itself (no upstream) for paths under `/direct`, so floods
/// measure Envoy and the filter rather than the stub.
fn with_direct_route(y: &mut Yaml) {
    let route: Yaml = serde_yaml::from_str(
        "{match: {prefix: /direct}, direct_response: {status: 200, body: {inline_string: ok}}}",
    )
    .unwrap();
    let routes = hcm_mut(y).unwrap()["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence_mut()
        .unwrap();
    routes.insert(0, route);
}

/// Sends `total` GETs from `threads` threads, each with its own client (its own
/// connections), all released at once; returns the statuses.
fn concurrent(url: &str, threads: usize, total: usize, headers: &[(&str, &str)]) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            let url = url.to_owned();
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let n = total / threads + usize::from(t < total % threads);
            std::thread::spawn(move || {
                let http = client();
                barrier.wait();
                (0..n)
                    .map(|_| {
                        let mut req = http.get(&url);
                        for (k, v) in &headers {
                            req = req.header(k, v);
                        }
                        req.send().unwrap().status().as_u16()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// With 100,000 slots, distinct keys of a test share one with odds of about 1 in 100,000
/// per pair (the table's hash secret is new in every Envoy).
fn per_key_config(requests: u32, per: &str) -> Value {
    json!({"rules": [{"name": "per-key", "key": {"header": "x-api-key"},
        "limit": {"requests": requests, "per": per}}], "max_keys": 100_000})
}

/// Sends `total` requests with one key from `threads` clients at once against a rule of
/// `requests` per day (burst `requests`), and checks what the elapsed time allows: at least
/// the burst, at most the burst plus what refilled, every other request a 429, and the stats
/// agreeing. Returns the stats and how many were admitted.
fn burst_within_bound(
    envoy: &Envoy,
    threads: usize,
    total: usize,
    requests: u64,
) -> (std::collections::BTreeMap<String, u64>, usize) {
    let started = Instant::now();
    let statuses = concurrent(
        &envoy.url("/direct/x"),
        threads,
        total,
        &[("x-api-key", "one")],
    );
    let most = most_admitted(requests, DAY, requests, started.elapsed()) as usize;
    assert_eq!(statuses.len(), total);
    let admitted = count(&statuses, 200);
    assert!(
        (requests as usize..=most).contains(&admitted),
        "{admitted} admitted, at most {most}"
    );
    assert_eq!(count(&statuses, 429), total - admitted);
    let limited = (total - admitted) as u64;
    let stats = envoy
        .wait_for_stats(Duration::from_secs(30), |s| {
            s.get("wasmcustom.ratelimit.per-key.limited") == Some(&limited)
        })
        .unwrap();
    assert_eq!(
        stats["wasmcustom.ratelimit.per-key.allowed"],
        admitted as u64
    );
    assert_eq!(stats["wasmcustom.ratelimit.per-key.limited"], limited);
    assert_eq!(stats["wasmcustom.ratelimit.per-key.failures"], 0);
    (stats, admitted)
}

fn burst_admits_exactly_the_limit(concurrency: usize) {
    // Answered by Envoy itself, so only the filter decides what is admitted.
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", per_key_config(100, "24h"))
        .concurrency(concurrency)
        .edit(with_direct_route)
        .start()
        .unwrap();
    // 100 per day refills one every 864 s: a run slower than that rightly admits more.
    let (stats, admitted) = burst_within_bound(&envoy, 60, 300, 100);
    assert_eq!(stats["server.concurrency"], concurrency as u64);
    eprintln!(
        "concurrency {concurrency}: {admitted}/300 admitted, cas_retries {}",
        stats["wasmcustom.ratelimit.per-key.cas_retries"]
    );
    // The same counters in Prometheus form.
    let prom = envoy.prometheus().unwrap();
    let allowed = prom
        .iter()
        .find(|s| s.name.contains("ratelimit") && s.name.ends_with("allowed"))
        .unwrap();
    assert_eq!(allowed.value, admitted as f64, "{}", allowed.name);
}

#[test]
fn a_burst_of_300_admits_exactly_100_at_concurrency_2() {
    burst_admits_exactly_the_limit(2);
}

#[test]
fn a_burst_of_300_admits_exactly_100_at_concurrency_4() {
    burst_admits_exactly_the_limit(4);
}

#[test]
fn separate_keys_get_separate_limits() {
    let stub = Stub::start("v1").unwrap();
    let envoy = envoy(&stub, 4, per_key_config(5, "1h"));
    let http = client();
    for key in ["alice", "bob", "carol"] {
        let statuses: Vec<u16> = (0..8)
            .map(|_| {
                http.get(envoy.url("/"))
                    .header("x-api-key", key)
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            })
            .collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429], "{key}");
    }
    // No key, no limit from this rule (documented).
    for _ in 0..10 {
        assert_eq!(http.get(envoy.url("/")).send().unwrap().status(), 200);
    }
    // A repeated key header keys on its first value: alice is spent, dave is not.
    let repeated = |first: &str, second: &str| {
        http.get(envoy.url("/"))
            .header("x-api-key", first)
            .header("x-api-key", second)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(repeated("alice", "dave"), 429);
    assert_eq!(repeated("dave", "alice"), 200);
}

/// How a client tries to pass for someone else: the headers of its `i`-th request.
#[derive(Debug, Clone, Copy)]
enum Forgery {
    None,
    SameXff,
    VariedXff,
    RepeatedXff,
    CommaJoinedXff,
    OversizedXff,
    XRealIp,
    Forwarded,
    ExternalAddress,
}

const FORGERIES: [Forgery; 9] = [
    Forgery::None,
    Forgery::SameXff,
    Forgery::VariedXff,
    Forgery::RepeatedXff,
    Forgery::CommaJoinedXff,
    Forgery::OversizedXff,
    Forgery::XRealIp,
    Forgery::Forwarded,
    Forgery::ExternalAddress,
];

// === impl Forgery ===

impl Forgery {
    fn headers(self, i: usize) -> Vec<(&'static str, String)> {
        let ip = |a: usize| format!("10.9.{}.{}", a / 250, a % 250 + 1);
        match self {
            Forgery::None => vec![],
            Forgery::SameXff => vec![("x-forwarded-for", "10.1.1.1".into())],
            Forgery::VariedXff => vec![("x-forwarded-for", ip(i))],
            Forgery::RepeatedXff => vec![
                ("x-forwarded-for", ip(i)),
                ("x-forwarded-for", ip(i + 1000)),
            ],
            Forgery::CommaJoinedXff => {
                vec![(
                    "x-forwarded-for",
                    format!("{}, {},{}", ip(i), ip(i + 1), ip(i + 2)),
                )]
            }
            Forgery::OversizedXff => {
                let many: Vec<String> = (0..1500).map(|k| ip(i * 7 + k)).collect();
                vec![("x-forwarded-for", many.join(","))]
            }
            Forgery::XRealIp => vec![("x-real-ip", ip(i))],
            Forgery::Forwarded => vec![("forwarded", format!("for={};proto=http", ip(i)))],
            Forgery::ExternalAddress => vec![("x-envoy-external-address", ip(i))],
        }
    }
}

/// One rule per (protocol, forgery), keyed by address, 5 per day, told apart by path.
fn per_peer_config(rules: &[String]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({"name": r, "match": {"path_prefix": format!("/direct/{r}/")},
                "key": {"source": "address"}, "limit": {"requests": 5, "per": "24h"}})
        })
        .collect();
    json!({"rules": rules, "max_keys": 100_000})
}

/// `n` requests from `threads` clients bound to `from`, over HTTP/2 (prior knowledge) or
/// HTTP/1.1, all released at once; returns how many were admitted.
fn from_peer(url: &str, from: &str, h2: bool, forgery: Forgery, n: usize) -> usize {
    let threads = 6;
    let barrier = Arc::new(Barrier::new(threads));
    let from: std::net::IpAddr = from.parse().unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            let url = url.to_owned();
            std::thread::spawn(move || {
                let mut b = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .local_address(from)
                    .timeout(Duration::from_secs(30));
                if h2 {
                    b = b.http2_prior_knowledge();
                }
                let http = b.build().unwrap();
                barrier.wait();
                (t..n)
                    .step_by(threads)
                    .filter(|i| {
                        let mut req = http.get(&url);
                        for (k, v) in forgery.headers(*i) {
                            req = req.header(k, v);
                        }
                        let r = req.send().unwrap();
                        let version = r.version();
                        assert_eq!(version == reqwest::Version::HTTP_2, h2, "{version:?}");
                        r.status() == 200
                    })
                    .count()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn rule_name(h2: bool, f: Forgery) -> String {
    format!("{}-{f:?}", if h2 { "h2" } else { "h1" }).to_lowercase()
}

/// Two real peers (127.0.0.1 and 127.0.0.2) each send 30 requests per forgery, over HTTP/1.1
/// and HTTP/2: each admits exactly its own 5, whatever the headers say.
fn forged_client_addresses_never_mint_buckets(use_remote_address: Option<bool>) {
    let names: Vec<String> = [false, true]
        .iter()
        .flat_map(|h2| FORGERIES.iter().map(move |f| rule_name(*h2, *f)))
        .collect();
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", per_peer_config(&names))
        .concurrency(2)
        .edit(with_direct_route)
        .edit(move |y| {
            let hcm = hcm_mut(y).unwrap().as_mapping_mut().unwrap();
            match use_remote_address {
                None => hcm.remove("use_remote_address"),
                Some(v) => hcm.insert("use_remote_address".into(), v.into()),
            };
        })
        .start()
        .unwrap();
    let started = Instant::now();
    let mut table = Vec::new();
    for h2 in [false, true] {
        for f in FORGERIES {
            let url = envoy.url(&format!("/direct/{}/x", rule_name(h2, f)));
            let one = from_peer(&url, "127.0.0.1", h2, f, 30);
            let two = from_peer(&url, "127.0.0.2", h2, f, 30);
            // The bucket table hashes keys with a secret drawn per proxy, so two of this
            // test's 36 keys can land in one of its 100,000 slots (about one proxy in 160):
            // the later key then shares the earlier one's bucket, which only ever limits
            // early (counted here).
            let stat = format!("wasmcustom.ratelimit.{}.slot_collisions", rule_name(h2, f));
            let collisions = envoy.stats().unwrap()[&stat];
            table.push(format!(
                "{} {f:?}: {one} / {two} (slot collisions {collisions})",
                if h2 { "h2" } else { "h1" }
            ));
            // 5 per day: a run that takes hours would earn one back, nothing less; never
            // more than that, forged headers or not.
            let most = most_admitted(5, DAY, 5, started.elapsed()) as usize;
            let least = if collisions == 0 { 5 } else { 0 };
            assert!((least..=most).contains(&one), "{table:#?}");
            assert!((least..=most).contains(&two), "{table:#?}");
        }
    }
    eprintln!(
        "use_remote_address {use_remote_address:?}, admitted of 30 per peer:\n{}",
        table.join("\n")
    );
    let stats = envoy.stats().unwrap();
    for name in &names {
        assert_eq!(
            stats[&format!("wasmcustom.ratelimit.{name}.peer_unknown")],
            0
        );
    }
}

#[test]
fn forged_client_addresses_never_mint_buckets_under_the_default_connection_manager() {
    forged_client_addresses_never_mint_buckets(None);
}

#[test]
fn forged_client_addresses_never_mint_buckets_with_use_remote_address() {
    forged_client_addresses_never_mint_buckets(Some(true));
}

#[test]
fn without_the_peer_stamp_address_keys_share_one_bucket_and_say_why() {
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", per_peer_config(&["all".to_owned()]))
        .concurrency(2)
        .edit(with_direct_route)
        .edit(|y| {
            let chain = y["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                .as_sequence_mut()
                .unwrap();
            chain.retain(|f| f["name"] != "envoy.filters.network.set_filter_state");
            let hcm = hcm_mut(y).unwrap().as_mapping_mut().unwrap();
            hcm.remove("use_remote_address");
        })
        .start()
        .unwrap();
    let url = envoy.url("/direct/all/x");
    let started = Instant::now();
    let admitted = from_peer(&url, "127.0.0.1", false, Forgery::VariedXff, 30)
        + from_peer(&url, "127.0.0.2", false, Forgery::VariedXff, 30);
    let most = most_admitted(5, DAY, 5, started.elapsed()) as usize;
    assert!((5..=most).contains(&admitted), "{admitted}");
    let stats = envoy.stats().unwrap();
    assert_eq!(stats["wasmcustom.ratelimit.all.peer_unknown"], 60);
    let log = envoy.log();
    assert!(
        log.contains("carries no mesh.peer_address filter state"),
        "{log}"
    );
}

#[test]
fn the_istio_envoyfilter_stamps_the_peer_as_the_bootstrap_does() {
    let path =
        mesh_e2e::repo_root().join("envoy-config/ratelimit/istio-peer-stamp-envoyfilter.yaml");
    let doc: Yaml = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(doc["kind"], "EnvoyFilter");
    let patch = &doc["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "NETWORK_FILTER");
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.http_connection_manager"
    );
    let stamp = patch["patch"]["value"].clone();
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", per_peer_config(&["all".to_owned()]))
        .edit(with_direct_route)
        .edit(move |y| {
            // Istio sidecars: no use_remote_address, and the EnvoyFilter's stamp in place of ours.
            let chain = y["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                .as_sequence_mut()
                .unwrap();
            chain.retain(|f| f["name"] != "envoy.filters.network.set_filter_state");
            chain.insert(0, stamp);
            hcm_mut(y)
                .unwrap()
                .as_mapping_mut()
                .unwrap()
                .remove("use_remote_address");
        })
        .start()
        .unwrap();
    let url = envoy.url("/direct/all/x");
    let started = Instant::now();
    let one = from_peer(&url, "127.0.0.1", false, Forgery::VariedXff, 30);
    let two = from_peer(&url, "127.0.0.3", true, Forgery::VariedXff, 30);
    let most = most_admitted(5, DAY, 5, started.elapsed()) as usize;
    assert!((5..=most).contains(&one), "{one}");
    assert!((5..=most).contains(&two), "{two}");
    assert_eq!(
        envoy.stats().unwrap()["wasmcustom.ratelimit.all.peer_unknown"],
        0
    );
}

#[test]
fn trusted_hops_take_the_client_from_the_trusted_proxy_whatever_the_client_prepends() {
    // With use_remote_address Envoy appends the peer to x-forwarded-for, or for a loopback
    // peer (as here) its own host address, which the filter cannot tell from a client: the
    // README pairs trusted_hops with skip_xff_append then.
    for use_remote_address in [false, true] {
        let config = json!({"rules": [{"name": "lb", "key": {"source": "address", "trusted_hops": 1},
            "limit": {"requests": 2, "per": "24h"}}]});
        let envoy = Envoy::builder(BOOTSTRAP)
            .cluster_port("upstream", 9)
            .plugin_config("ratelimit", config)
            .edit(with_direct_route)
            .edit(move |y| {
                let hcm = hcm_mut(y).unwrap().as_mapping_mut().unwrap();
                hcm.insert("use_remote_address".into(), use_remote_address.into());
                hcm.insert("skip_xff_append".into(), use_remote_address.into());
            })
            .start()
            .unwrap();
        // This test is the trusted load balancer: the last entry is the client it saw.
        let http = client();
        let send = |xff: &str| {
            http.get(envoy.url("/direct/x"))
                .header("x-forwarded-for", xff)
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        let alice: Vec<u16> = (0..4)
            .map(|i| send(&format!("6.6.{i}.{i}, 203.0.113.7")))
            .collect();
        assert_eq!(
            alice,
            [200, 200, 429, 429],
            "use_remote_address {use_remote_address}"
        );
        assert_eq!(
            send("203.0.113.8"),
            200,
            "use_remote_address {use_remote_address}"
        );
    }
}

#[test]
fn limited_responses_carry_the_draft_fields_and_a_problem_body() {
    let stub = Stub::start("v1").unwrap();
    let config = json!({"headers_on_allowed": true, "rules": [{"name": "api",
        "match": {"path_prefix": "/api/"}, "key": {"header": "x-api-key"},
        "limit": {"requests": 2, "per": "1h"}}]});
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("upstream", &stub)
        .plugin_config("ratelimit", config)
        .edit(|y| {
            // Access log with the published verdict, to check the decision round trip.
            let log: Yaml = serde_yaml::from_str(
                r#"[{name: envoy.access_loggers.stdout, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog, log_format: {text_format_source: {inline_string: "RL path=%REQ(:PATH)% code=%RESPONSE_CODE% verdict=%FILTER_STATE(wasm.mesh.ratelimit:PLAIN)%\n"}}}}]"#,
            )
            .unwrap();
            hcm_mut(y).unwrap()["access_log"] = log;
        })
        .start()
        .unwrap();
    let http = client();
    let get = || {
        http.get(envoy.url("/api/items"))
            .header("x-api-key", "k")
            .send()
            .unwrap()
    };
    let first = get();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-policy"], r#""api";q=2;w=3600"#);
    assert_eq!(first.headers()["ratelimit"], r#""api";r=1;t=1800"#);
    let second = get();
    assert_eq!(second.headers()["ratelimit"], r#""api";r=0;t=3600"#);

    let limited = get();
    assert_eq!(limited.status(), 429);
    let h = limited.headers().clone();
    let retry_after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1795..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(h["ratelimit-policy"], r#""api";q=2;w=3600"#);
    assert_eq!(
        h["ratelimit"].to_str().unwrap(),
        format!(r#""api";r=0;t={retry_after}"#)
    );
    assert_eq!(h["content-type"], "application/problem+json");
    let body: Value = limited.json().unwrap();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"], json!(["api"]));
    assert_eq!(stub.hits(), 2, "the 429 never reached the upstream");

    // Unmatched paths are not limited and carry no fields.
    let other = http
        .get(envoy.url("/health"))
        .header("x-api-key", "k")
        .send()
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("ratelimit").is_none());

    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = envoy.log();
        if log.matches("RL path=").count() >= 4 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        log.contains("RL path=/api/items code=200 verdict=allowed"),
        "{log}"
    );
    assert!(
        log.contains("RL path=/api/items code=429 verdict=limited:api"),
        "{log}"
    );
    assert!(log.contains("RL path=/health code=200 verdict=-"), "{log}");
}

#[test]
fn shadow_mode_counts_but_lets_everything_through() {
    let stub = Stub::start("v1").unwrap();
    let config = json!({"mode": "shadow", "rules": [{"name": "dry",
        "limit": {"requests": 2, "per": "1h"}}]});
    let envoy = envoy(&stub, 2, config);
    let statuses = concurrent(&envoy.url("/"), 4, 10, &[]);
    assert_eq!(count(&statuses, 200), 10);
    let stats = envoy
        .wait_for_stats(Duration::from_secs(30), |s| {
            s.get("wasmcustom.ratelimit.dry.shadow_limited") == Some(&8)
        })
        .unwrap();
    assert_eq!(stats["wasmcustom.ratelimit.dry.allowed"], 2);
    assert_eq!(stats["wasmcustom.ratelimit.dry.shadow_limited"], 8);
    assert_eq!(stats["wasmcustom.ratelimit.dry.limited"], 0);
    assert!(envoy
        .log()
        .contains("ratelimit: shadow mode: request would be limited by rule dry"));
}

#[test]
fn bad_configs_stop_envoy_with_the_field_named() {
    let stub = Stub::start("v1").unwrap();
    let cases = [
        (
            json!({"rules": [{"name": "a", "limit": {"requests": 0, "per": "1s"}}]}),
            "rules[0].limit.requests: must be at least 1",
        ),
        (
            json!({"rules": [{"name": "a", "limit": {"requests": 1, "per": "soon"}}]}),
            "rules[0].limit.per: invalid duration",
        ),
        (json!({"max_keys": 0}), "max_keys: must be at least 1"),
        (
            json!({"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}, "keys": {}}]}),
            "rules[0].keys: unknown field `keys`",
        ),
    ];
    for (config, expected) in cases {
        let err = Envoy::builder(BOOTSTRAP)
            .cluster("upstream", &stub)
            .plugin_config("ratelimit", config)
            .start()
            .err()
            .expect("envoy accepted a bad config");
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("ratelimit: invalid configuration: {expected}")),
            "{text}"
        );
    }
}

/// Envoy's heap (tcmalloc) in bytes, from the admin endpoint.
fn memory_allocated(envoy: &Envoy) -> u64 {
    let m: Value = serde_json::from_str(&envoy.admin("/memory").unwrap()).unwrap();
    m["allocated"].as_str().unwrap().parse().unwrap()
}

/// Sends one request for each of `keys` distinct keys, from 8 threads.
fn flood(envoy: &Envoy, prefix: &str, keys: usize) -> usize {
    let threads = 8;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = envoy.url("/direct/flood");
            let prefix = prefix.to_owned();
            std::thread::spawn(move || {
                let http = client();
                (0..keys)
                    .skip(t)
                    .step_by(threads)
                    .filter(|i| {
                        http.get(&url)
                            .header("x-api-key", format!("{prefix}-{i}"))
                            .send()
                            .unwrap()
                            .status()
                            == 200
                    })
                    .count()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn hot(envoy: &Envoy, n: usize) -> usize {
    count(
        &concurrent(&envoy.url("/direct/hot"), 10, n, &[("x-api-key", "hot")]),
        200,
    )
}

fn start_flood_envoy(max_keys: u32, concurrency: usize) -> Envoy {
    // 100 per day: the hot key earns one request back every 864 s, far longer than a flood
    // takes on a loaded machine (with 100 per hour, a flood slower than 36 s gave one back).
    let config = json!({"rules": [{"name": "per-key", "key": {"header": "x-api-key"},
        "limit": {"requests": 100, "per": "24h"}}], "max_keys": max_keys});
    Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", config)
        .concurrency(concurrency)
        .edit(with_direct_route)
        .start()
        .unwrap()
}

fn flood_keeps_memory_flat_and_the_hot_key_exact(concurrency: usize) {
    let envoy = start_flood_envoy(1000, concurrency);
    let first_hot = Instant::now();
    let before_flood = hot(&envoy, 150);
    let most = most_admitted(100, DAY, 100, first_hot.elapsed()) as usize;
    assert!(
        (100..=most).contains(&before_flood),
        "the hot key before the flood: {before_flood}, at most {most}"
    );
    // Warm up connections, V8 and allocator caches, then measure.
    flood(&envoy, "warm", 5_000);
    let before = memory_allocated(&envoy);
    let started = Instant::now();
    let admitted = flood(&envoy, "flood", 100_000);
    let took = started.elapsed();
    let after = memory_allocated(&envoy);
    let after_flood = hot(&envoy, 50);
    // Whatever refilled since the first hot request, and nothing more.
    let refilled = most_admitted(100, DAY, 100, first_hot.elapsed()) as usize;
    let refilled = refilled.saturating_sub(before_flood);
    assert!(
        after_flood <= refilled,
        "the hot key after the flood: {after_flood} admitted, {refilled} refilled"
    );

    // What one slot costs, measured: the same Envoy with a 100x bigger table.
    let idle_small = memory_allocated(&start_flood_envoy(1000, concurrency));
    let idle_big = memory_allocated(&start_flood_envoy(100_000, concurrency));
    let per_slot = idle_big.saturating_sub(idle_small) as f64 / 99_000.0;
    let growth = after as i64 - before as i64;
    eprintln!(
        "concurrency {concurrency}: flood of 100000 keys in {took:?} ({admitted} admitted); memory_allocated {before} -> {after} \
         ({growth:+} bytes); one slot costs {per_slot:.0} bytes, so 100000 keys kept would be {:.1} MiB",
        per_slot * 100_000.0 / 1_048_576.0
    );
    assert!(
        per_slot > 40.0,
        "the control must see table memory: {per_slot}"
    );
    // Flat: less than 5% of what keeping the keys would take.
    assert!(
        (growth as f64) < per_slot * 100_000.0 * 0.05,
        "memory grew {growth} bytes"
    );
    let stats = envoy.stats().unwrap();
    eprintln!(
        "slot_collisions {}, cas_retries {}",
        stats["wasmcustom.ratelimit.per-key.slot_collisions"],
        stats["wasmcustom.ratelimit.per-key.cas_retries"]
    );
    assert!(stats["wasmcustom.ratelimit.per-key.slot_collisions"] > 0);
}

#[test]
fn a_flood_of_distinct_keys_keeps_memory_flat_and_the_hot_key_exact_at_concurrency_2() {
    flood_keeps_memory_flat_and_the_hot_key_exact(2);
}

#[test]
fn a_flood_of_distinct_keys_keeps_memory_flat_and_the_hot_key_exact_at_concurrency_4() {
    flood_keeps_memory_flat_and_the_hot_key_exact(4);
}

/// A CA, a server certificate for 127.0.0.1 and client certificates with SPIFFE URI SANs,
/// made with the openssl CLI in `dir`.
fn make_certs(dir: &std::path::Path, clients: &[(&str, &str)]) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI is needed for the mTLS test");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    openssl(&ca);
    let mut leaves = vec![(
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".to_owned(),
    )];
    for (name, uri) in clients {
        leaves.push((
            name,
            format!("subjectAltName=URI:{uri}\nextendedKeyUsage=clientAuth\n"),
        ));
    }
    for (name, ext) in leaves {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={name}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&req);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extf,
        ]);
    }
}

#[test]
fn principal_keys_come_from_the_verified_peer_certificate() {
    let stub = Stub::start("v1").unwrap();
    let dir = mesh_e2e::repo_root()
        .join("target/e2e")
        .join(format!("ratelimit-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(
        &dir,
        &[
            ("web", "spiffe://cluster.local/ns/default/sa/web"),
            ("api", "spiffe://cluster.local/ns/default/sa/api"),
        ],
    );
    let config = json!({"rules": [{"name": "per-workload", "key": {"source": "principal"},
        "limit": {"requests": 2, "per": "1h"}}]});
    let certs = dir.clone();
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("upstream", &stub)
        .plugin_config("ratelimit", config)
        .edit(move |y| {
            let path = |f: &str| certs.join(f).display().to_string();
            // Client certificates are optional but verified when presented.
            let tls = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": false,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": path("server.pem")},
                                          "private_key": {"filename": path("server.key")}}],
                    "validation_context": {"trusted_ca": {"filename": path("ca.pem")}}}}});
            y["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] =
                serde_yaml::to_value(tls).unwrap();
        })
        .start()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let https = |identity: Option<&str>| {
        let mut b = reqwest::blocking::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .add_root_certificate(ca.clone());
        if let Some(name) = identity {
            let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
            pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    let url = format!("https://127.0.0.1:{}/", envoy.port());
    let statuses = |client: &reqwest::blocking::Client, n: usize, forged: bool| -> Vec<u16> {
        (0..n)
            .map(|_| {
                let mut req = client.get(&url);
                if forged {
                    req = req.header(
                        "x-forwarded-client-cert",
                        "URI=spiffe://cluster.local/ns/default/sa/web",
                    );
                }
                req.send().unwrap().status().as_u16()
            })
            .collect()
    };
    assert_eq!(statuses(&https(Some("web")), 3, false), [200, 200, 429]);
    assert_eq!(statuses(&https(Some("api")), 3, false), [200, 200, 429]);
    // No certificate: no principal, so this rule does not limit it; a header is no identity.
    assert_eq!(statuses(&https(None), 4, true), [200, 200, 200, 200]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_istio_wasmplugin_example_is_accepted_by_the_filter() {
    let path = mesh_e2e::repo_root().join("envoy-config/ratelimit/istio/wasmplugin.yaml");
    let doc: Yaml = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(doc["kind"], "WasmPlugin");
    let spec = doc["spec"].as_mapping().unwrap();
    // Fields of Istio's WasmPlugin spec only.
    let known = [
        "selector",
        "targetRef",
        "targetRefs",
        "url",
        "sha256",
        "imagePullPolicy",
        "imagePullSecret",
        "pluginConfig",
        "pluginName",
        "phase",
        "priority",
        "vmConfig",
        "match",
        "type",
        "failStrategy",
    ];
    for k in spec.keys() {
        assert!(
            known.contains(&k.as_str().unwrap()),
            "unknown WasmPlugin field {k:?}"
        );
    }
    assert_eq!(doc["spec"]["pluginName"], "ratelimit");
    // Istio hands pluginConfig to the module as JSON: the real filter must accept it.
    let config: Value = serde_json::to_value(&doc["spec"]["pluginConfig"]).unwrap();
    let stub = Stub::start("v1").unwrap();
    let envoy = envoy(&stub, 2, config);
    let r = client()
        .post(envoy.url("/api/x"))
        .header("x-api-key", "k")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // No client certificate here, so the principal rule does not apply.
    assert_eq!(
        r.headers()["ratelimit"],
        r#""api-per-key";r=199;t=1, "total";r=1999;t=1"#
    );
}

#[test]
fn heavy_contention_on_one_bucket_stays_exact_at_concurrency_4() {
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", per_key_config(3000, "24h"))
        .concurrency(4)
        .edit(with_direct_route)
        .start()
        .unwrap();
    // 3000 per day refills one every 28.8 s; with 3000 per hour (1.2 s) a burst on a loaded
    // 2-core machine rightly admitted 3001. The bound is what the elapsed time allows.
    let (stats, admitted) = burst_within_bound(&envoy, 64, 5000, 3000);
    eprintln!(
        "contention: {admitted}/5000 admitted over 64 connections, cas_retries {}",
        stats["wasmcustom.ratelimit.per-key.cas_retries"]
    );
}

#[test]
fn the_hash_secret_is_drawn_once_on_the_main_thread_before_the_workers() {
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", per_key_config(3, "1h"))
        .concurrency(4)
        .edit(with_direct_route)
        .start()
        .unwrap();
    // Every worker keys the table with the same secret: one key, one limit.
    let statuses = concurrent(&envoy.url("/direct/x"), 8, 40, &[("x-api-key", "one")]);
    assert_eq!(count(&statuses, 200), 3, "{statuses:?}");
    let log = envoy.log();
    let drawn = "ratelimit: generated the bucket table's hash secret";
    assert_eq!(log.matches(drawn).count(), 1, "{log}");
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {log}"))
    };
    assert!(at(drawn) < at("starting workers"), "{log}");
    assert_eq!(
        log.matches("ratelimit: seeded 100000 bucket slots").count(),
        1
    );
}

/// The previous module's unkeyed fingerprint (FNV-1a and a final mix), which anyone could
/// compute offline.
fn unkeyed_fingerprint(rule: &str, key: &[u8]) -> u64 {
    let fnv = |h: u64, bytes: &[u8]| {
        bytes.iter().fold(h, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let h = fnv(0xcbf2_9ce4_8422_2325, rule.as_bytes());
    let mut z = fnv(fnv(h, &[0xff, b'h']), key);
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (z ^ (z >> 33)).max(1)
}

#[test]
fn keys_aimed_offline_at_a_victims_slot_no_longer_limit_it_early() {
    // The value the previous module's unit tests pinned: this is the hash it used.
    assert_eq!(
        unkeyed_fingerprint("api", b"key-1"),
        14_908_386_014_606_783_729
    );
    let max_keys = 100_000u64;
    let slot = |k: &[u8]| unkeyed_fingerprint("per-key", k) % max_keys;
    let victim = "victim";
    let aimed: Vec<String> = (0..)
        .map(|i| format!("attacker-{i}"))
        .filter(|k| slot(k.as_bytes()) == slot(victim.as_bytes()))
        .take(10)
        .collect();
    let config = json!({"rules": [{"name": "per-key", "key": {"header": "x-api-key"},
        "limit": {"requests": 5, "per": "1h"}}], "max_keys": max_keys});
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", config)
        .concurrency(2)
        .edit(with_direct_route)
        .start()
        .unwrap();
    let http = client();
    let send = |key: &str| {
        http.get(envoy.url("/direct/x"))
            .header("x-api-key", key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // Each aimed key spends its own bucket (with the unkeyed hash they would all have
    // drained, then shared, the victim's one slot).
    for k in &aimed {
        let statuses: Vec<u16> = (0..6).map(|_| send(k)).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "{k}");
    }
    let victim_statuses: Vec<u16> = (0..6).map(|_| send(victim)).collect();
    assert_eq!(victim_statuses, [200, 200, 200, 200, 200, 429]);
    let stats = envoy.stats().unwrap();
    eprintln!(
        "{} keys aimed at the victim's unkeyed slot: victim kept its 5, slot_collisions {}",
        aimed.len(),
        stats["wasmcustom.ratelimit.per-key.slot_collisions"]
    );
}

/// Sends one raw HTTP/1.1 request line `GET <path>` and returns the status code.
fn raw_get(envoy: &Envoy, path: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let url = envoy.url("/");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(path);
    req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(&req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_path_rule_limits_paths_with_non_utf8_bytes() {
    // A path matcher must not be evaded by a byte that makes the path invalid UTF-8.
    let stub = Stub::start("up").unwrap();
    let config = json!({"rules": [{"name": "api", "match": {"path_prefix": "/api"},
        "limit": {"requests": 2, "per": "1h"}}]});
    let envoy = envoy(&stub, 1, config);
    let statuses: Vec<u16> = (0..5).map(|_| raw_get(&envoy, b"/api/x\xff")).collect();
    // Envoy may refuse the byte itself (400); what it lets through must be limited.
    let passed = statuses.iter().filter(|s| **s == 200).count();
    assert!(passed <= 2, "{statuses:?}");
}

#[test]
fn two_plugins_in_one_vm_limit_independently_on_the_same_rule_and_key() {
    let rule = |n: u32| {
        json!({"rules": [{"name": "api", "key": {"header": "x-api-key"},
            "limit": {"requests": n, "per": "24h"}}]})
    };
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster_port("upstream", 9)
        .plugin_config("ratelimit", rule(2))
        .edit(with_direct_route)
        .edit(move |y| {
            second_plugin_listener(y, "ingress-b", "default.ratelimit-b", &rule(5)).unwrap();
        })
        .start()
        .unwrap();
    let http = client();
    let send = |port: u16| {
        http.get(format!("http://127.0.0.1:{port}/direct/x"))
            .header("x-api-key", "same-key")
            .send()
            .unwrap()
            .status()
            == 200
    };
    let a = envoy.listener_port("ingress").unwrap();
    let b = envoy.listener_port("ingress-b").unwrap();
    // Interleaved, so a shared bucket would show at once.
    let mut admitted = (0, 0);
    for _ in 0..10 {
        admitted.0 += usize::from(send(a));
        admitted.1 += usize::from(send(b));
    }
    assert_eq!(admitted, (2, 5), "plugin a admits its 2, plugin b its 5");
    let log = envoy.log();
    assert_eq!(
        log.matches("ratelimit: generated the bucket table's hash secret")
            .count(),
        2,
        "each plugin draws its own secret: {log}"
    );
}
