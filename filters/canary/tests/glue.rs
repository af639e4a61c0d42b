//! The filter against sdk-shim's FakeHost: configuration, decisions, stats, the guard shared
//! by workers, and hostile requests.

use filter_canary::{CanaryConfig, CanaryFilter, CanaryRoot, DECISION};
use sdk_shim::testing::{Exchange, FakeHost, FakeProxy};
use sdk_shim::{Action, HeaderMap, HttpFilter, LogLevel, RootFilter};
use serde_json::json;

/// A worker's root configured with `config`; configuration draws no randomness, so every
/// worker may use the same seed. An assert, not `unwrap`: clippy allows `unwrap` only inside
/// `#[test]` functions, not in an integration test's helpers.
fn worker(proxy: &FakeProxy, config: &serde_json::Value) -> CanaryRoot {
    let configured = proxy.worker(config.to_string().as_bytes(), 1);
    assert!(
        configured.is_ok(),
        "refused: {:?}",
        configured.as_ref().err()
    );
    configured.unwrap_or_default()
}

/// Runs request and response phases; returns the route header the upstream would see.
fn exchange(root: &CanaryRoot, host: &FakeHost, status: u16) -> Option<String> {
    let done = FakeProxy::exchange(root, host, status);
    assert_eq!(
        done,
        Exchange {
            request: Action::Continue,
            response: Some(Action::Continue)
        }
    );
    // Only the request phase writes the route header, so it is still what the upstream saw.
    host.request_header_str("x-canary-subset")
}

fn config() -> serde_json::Value {
    json!({"services": [{"host": "reviews",
        "subsets": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
        "overrides": [{"header": "x-canary", "value": "always", "subset": "v2"}],
        "sticky": {"header": "x-user-id"},
        "rollback": {"subset": "v2", "max_error_rate": 0.2, "min_requests": 10, "window_s": 30}}]})
}

#[test]
fn bad_configs_are_refused_with_one_error_line() {
    let cases = [
        (
            json!({"services": [{"host": "reviews", "subsets": [{"name": "v1", "weight": 1}, {"name": "v2", "weight": -5}]}]}).to_string(),
            "canary: invalid configuration: services[0].subsets[1].weight: must be >= 0",
        ),
        ("{\"nope\": 1}".to_owned(), "canary: invalid configuration: nope: unknown field `nope`"),
        ("not json".to_owned(), "canary: invalid configuration: expected ident"),
    ];
    for (cfg, expected) in cases {
        let host = FakeHost::new();
        let mut root = CanaryRoot::default();
        assert!(!root.on_configure(&host, cfg.as_bytes()));
        let errors = host.logs_at(LogLevel::Error);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(expected), "{}", errors[0]);
    }
}

#[test]
fn empty_config_routes_nothing_and_strips_the_route_header() {
    let host = FakeHost::new();
    let mut root = CanaryRoot::default();
    assert!(root.on_configure(&host, b""));
    let req = FakeHost::new()
        .request("GET", "reviews", "/")
        .request_header("x-canary-subset", "v2");
    assert_eq!(exchange(&root, &req, 200), None);
    assert_eq!(req.property_value(&[DECISION]), None);
}

#[test]
fn decisions_are_published_and_counted_per_service_and_subset() {
    let proxy = FakeProxy::new();
    let root = worker(&proxy, &config());
    let mut seen = [0i64; 2];
    for i in 0..200 {
        let h = proxy
            .get("reviews:9080", "/")
            .request_header("x-user-id", format!("user-{i}"));
        let subset = exchange(&root, &h, 200).unwrap();
        assert_eq!(h.property_value(&[DECISION]).unwrap(), subset.as_bytes());
        seen[usize::from(subset == "v2")] += 1;
    }
    let forced = proxy
        .get("reviews", "/")
        .request_header("x-canary", "always");
    assert_eq!(exchange(&root, &forced, 200).as_deref(), Some("v2"));
    let m = &proxy.metrics;
    assert_eq!(m.value("canary.reviews.v1.decisions"), Some(seen[0]));
    assert_eq!(m.value("canary.reviews.v2.decisions"), Some(seen[1] + 1));
    assert_eq!(m.value("canary.reviews.v2.overrides"), Some(1));
    assert_eq!(m.value("canary.reviews.v1.overrides"), Some(0));
    assert_eq!(m.value("canary.reviews.v2.rollbacks"), Some(0));
    assert_eq!(m.value("canary.reviews.v1.rollbacks"), None);
    assert!(seen[1] > 5 && seen[1] < 45, "{seen:?}");
}

#[test]
fn the_guard_trips_once_across_workers_then_only_v1_is_used() {
    let proxy = FakeProxy::new();
    let cfg = config();
    let workers = [worker(&proxy, &cfg), worker(&proxy, &cfg)];
    // Force every request onto v2 through the override, answered 503.
    for i in 0..10 {
        let root = &workers[i % 2];
        let h = proxy
            .get("reviews", "/")
            .request_header("x-canary", "always");
        assert_eq!(exchange(root, &h, 503).as_deref(), Some("v2"));
        if i < 9 {
            assert_eq!(proxy.metrics.value("canary.reviews.v2.rollbacks"), Some(0));
        }
    }
    assert_eq!(proxy.metrics.value("canary.reviews.v2.rollbacks"), Some(1));
    // Weighted traffic now avoids v2 on both workers.
    for i in 0..300 {
        let root = &workers[i % 2];
        let h = proxy
            .get("reviews", "/")
            .request_header("x-user-id", format!("u{i}"));
        assert_eq!(exchange(root, &h, 200).as_deref(), Some("v1"));
    }
    assert_eq!(proxy.metrics.value("canary.reviews.v2.rollbacks"), Some(1));
}

#[test]
fn the_trip_is_logged_once_at_warn() {
    let proxy = FakeProxy::new();
    let cfg = config();
    let (a, b) = (worker(&proxy, &cfg), worker(&proxy, &cfg));
    let mut warns = Vec::new();
    for i in 0..30 {
        let root = if i % 2 == 0 { &a } else { &b };
        let h = proxy
            .get("reviews", "/")
            .request_header("x-canary", "always");
        exchange(root, &h, 500);
        warns.extend(h.logs_at(LogLevel::Warn));
    }
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].starts_with(
            "canary: rollback guard tripped for reviews subset v2: 10 of 10 responses failed"
        ),
        "{}",
        warns[0]
    );
}

#[test]
fn a_weight_change_keeps_a_tripped_guard_and_a_new_policy_re_arms_it() {
    let proxy = FakeProxy::new();
    let root = worker(&proxy, &config());
    for _ in 0..10 {
        exchange(
            &root,
            &proxy
                .get("reviews", "/")
                .request_header("x-canary", "always"),
            503,
        );
    }
    let stays_on_v1 = |root: &CanaryRoot| {
        (0..100).all(|i| {
            let h = proxy
                .get("reviews", "/")
                .request_header("x-user-id", format!("u{i}"));
            exchange(root, &h, 200).as_deref() == Some("v1")
        })
    };
    assert!(stays_on_v1(&root));
    // The guard is the host and its rollback policy: new weights keep it tripped.
    let mut weights = config();
    weights["services"][0]["subsets"][1]["weight"] = json!(20);
    let root = worker(&proxy, &weights);
    assert!(stays_on_v1(&root));
    let mut policy = weights.clone();
    policy["services"][0]["rollback"]["max_error_rate"] = json!(0.25);
    let root = worker(&proxy, &policy);
    assert!(!stays_on_v1(&root));
}

#[test]
fn the_sticky_cookie_is_set_on_the_response_then_honoured() {
    let proxy = FakeProxy::new();
    let root = worker(
        &proxy,
        &json!({"services": [{"host": "*.shop.example",
        "subsets": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
        "sticky": {"cookie": "canary", "max_age_s": 600}}]}),
    );
    let first = proxy.get("www.shop.example", "/");
    let subset = exchange(&root, &first, 200).unwrap();
    let set = first.response_header_str("set-cookie").unwrap();
    assert!(set.starts_with("canary="), "{set}");
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=600"),
        "{set}"
    );
    let pair = set.split(';').next().unwrap().to_owned();
    for seed in 0..30 {
        let h = proxy
            .get("WWW.shop.example:443", "/")
            .random_seed(seed)
            .request_header("cookie", &pair);
        assert_eq!(exchange(&root, &h, 200).unwrap(), subset);
        assert_eq!(h.response_header_str("set-cookie"), None);
    }
}

#[test]
fn exposes_the_subset_when_configured() {
    let proxy = FakeProxy::new();
    let root = worker(
        &proxy,
        &json!({"expose_subset": true,
        "services": [{"host": "reviews", "subsets": [{"name": "v2", "weight": 1}]}]}),
    );
    let h = proxy.get("reviews", "/");
    exchange(&root, &h, 200);
    assert_eq!(
        h.response_header_str("x-canary-subset").as_deref(),
        Some("v2")
    );
    let quiet = worker(&proxy, &config());
    let h = proxy.get("reviews", "/");
    exchange(&quiet, &h, 200);
    assert_eq!(h.response_header_str("x-canary-subset"), None);
}

#[test]
fn hostile_requests_never_trap_and_still_route() {
    let proxy = FakeProxy::new();
    let root = worker(
        &proxy,
        &json!({"services": [
        {"host": "reviews", "subsets": [{"name": "v1", "weight": 1}, {"name": "v2", "weight": 1}],
         "sticky": {"cookie": "canary"},
         "overrides": [{"header": "x-canary", "value": "always", "subset": "v2"}]},
        {"host": "ratings", "subsets": [{"name": "v1", "weight": 1}, {"name": "v2", "weight": 1}],
         "sticky": {"header": "x-user-id"}}]}),
    );
    let huge = "c".repeat(256 * 1024);
    let requests = [
        // Missing or odd :authority: no service, no route header.
        (
            FakeHost::new()
                .request_header(":path", "/")
                .request_header("x-canary-subset", "v2"),
            false,
        ),
        (proxy.get("", "/"), false),
        (proxy.get(":::", "/"), false),
        (
            proxy.host().request_header(":authority", b"\xff\xfe\xfd"),
            false,
        ),
        (
            proxy
                .host()
                .request_header(":authority", "reviews")
                .request_header(":authority", "ratings"),
            true,
        ),
        // Cookies: non-UTF-8, repeated headers, huge.
        (
            proxy
                .get("reviews", "/")
                .request_header("cookie", b"canary=\xff\xfe; x=\x00"),
            true,
        ),
        (
            proxy
                .get("reviews", "/")
                .request_header("cookie", "a=1")
                .request_header("cookie", "canary=zz")
                .request_header("cookie", "canary=1"),
            true,
        ),
        (
            proxy
                .get("reviews", "/")
                .request_header("cookie", format!("canary={huge}")),
            true,
        ),
        (
            proxy.get("reviews", "/").request_header("cookie", &huge),
            true,
        ),
        (
            proxy
                .get("reviews", "/")
                .request_header("x-canary", b"\xff"),
            true,
        ),
        // Sticky header: non-UTF-8 and huge.
        (
            proxy
                .get("ratings", "/")
                .request_header("x-user-id", b"\xc3\x28\xff"),
            true,
        ),
        (
            proxy.get("ratings", "/").request_header("x-user-id", &huge),
            true,
        ),
        (
            proxy
                .get("ratings", "/")
                .request_header("x-user-id", "a")
                .request_header("x-user-id", "b"),
            true,
        ),
    ];
    for (i, (h, routes)) in requests.iter().enumerate() {
        let routed = exchange(&root, h, 200);
        assert_eq!(routed.is_some(), *routes, "request {i}: {routed:?}");
        if let Some(s) = routed {
            assert!(s == "v1" || s == "v2", "request {i}: {s}");
        }
    }
    // A host whose header reads fail: no decision, no panic.
    let broken = proxy.get("reviews", "/").failing_header_reads();
    let mut f = root.new_http();
    assert_eq!(f.on_request_headers(&broken, true), Action::Continue);
    assert_eq!(f.on_response_headers(&broken, true), Action::Continue);
    assert!(f.inner().decision().is_none());
}

#[test]
fn the_suite_can_build_the_filter_from_the_shared_config() {
    let proxy = FakeProxy::new();
    let host = proxy.host();
    let spec = serde_json::from_value(config()).unwrap();
    let shared = CanaryConfig::from_spec(&host, &spec).unwrap();
    let mut f = CanaryFilter::new(shared.clone());
    let h = proxy
        .get("reviews", "/")
        .request_header("x-canary", "always");
    f.on_request_headers(&h, true);
    assert_eq!(
        f.decision().map(|d| shared.canary().subset_name(d)),
        Some("v2")
    );
    assert_eq!(
        h.header_strings(HeaderMap::Request, "x-canary-subset"),
        ["v2"]
    );
}
