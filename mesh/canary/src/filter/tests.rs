use super::*;
use sdk_shim::testing::FakeHost;
use sdk_shim::RootFilter;
use std::cell::Cell;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const GUARDED: &str = r#"{"services": [{"host": "reviews",
    "subsets": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
    "rollback": {"subset": "v2", "max_error_rate": 0.2, "min_requests": 10, "window_s": 30}}]}"#;

/// A FakeHost whose stats store refuses every definition after the first `defines`.
fn stats_full_after(defines: usize) -> FakeHost {
    let defined = Cell::new(0);
    FakeHost::new().refusing_metrics(move |_| {
        let n = defined.get();
        defined.set(n + 1);
        n >= defines
    })
}

#[test]
fn a_stat_that_cannot_be_defined_refuses_the_configuration() {
    // Two subsets: 2 decisions, 2 overrides, 1 rollbacks; each one in turn fails.
    for defines in 0..5 {
        let host = stats_full_after(defines);
        let mut root = CanaryRoot::default();
        assert!(!root.on_configure(&host, GUARDED.as_bytes()), "{defines}");
        assert_eq!(
            host.logs_at(LogLevel::Error),
            ["canary: cannot set up metrics: bad argument"]
        );
        assert!(host.logs_at(LogLevel::Info).is_empty(), "not configured");
        assert!(root.bound().is_none());
        assert!(
            host.store().is_empty(),
            "no guard armed for a refused config"
        );
    }
    let host = stats_full_after(5);
    let mut root = CanaryRoot::default();
    assert!(root.on_configure(&host, GUARDED.as_bytes()));
    assert_eq!(host.store().len(), 1, "the guard is armed");
}

#[test]
fn a_configuration_logs_what_it_routes() {
    let host = FakeHost::new();
    let mut root = CanaryRoot::default();
    assert!(root.on_configure(&host, GUARDED.as_bytes()));
    assert_eq!(
        host.logs_at(LogLevel::Info),
        ["canary: configured 1 service(s), route header x-canary-subset"]
    );
    assert!(host.logs_at(LogLevel::Error).is_empty());
    assert_eq!(root.bound().map(|c| c.canary().services().len()), Some(1));
}

#[test]
fn an_unconfigured_root_lets_requests_through() {
    let root = CanaryRoot::default();
    let mut f = root.new_http();
    let host = FakeHost::new()
        .request("GET", "reviews", "/")
        .request_header("x-canary-subset", "v2");
    assert_eq!(f.on_request_headers(&host, true), Action::Continue);
    assert_eq!(f.on_response_headers(&host, true), Action::Continue);
    assert!(f.inner().decision().is_none());
    assert_eq!(host.property_value(&[DECISION]), None);
    assert_eq!(
        host.request_header_str("x-canary-subset").as_deref(),
        Some("v2"),
        "untouched"
    );
}

#[test]
fn the_config_constructors_give_the_roots_error_lines() {
    let host = FakeHost::new();
    let err = CanaryConfig::from_json(&host, br#"{"nope": 1}"#).unwrap_err();
    assert!(
        err.starts_with("canary: invalid configuration: nope: unknown field `nope`"),
        "{err}"
    );
    let stats_full = stats_full_after(0);
    let err = CanaryConfig::from_json(&stats_full, GUARDED.as_bytes()).unwrap_err();
    assert_eq!(err, "canary: cannot set up metrics: bad argument");
    let spec: CanarySpec = serde_json::from_str(GUARDED).unwrap();
    let config = CanaryConfig::from_spec(&host, &spec).unwrap();
    assert_eq!(config.canary().services().len(), 1);
    assert!(host.logs().is_empty(), "the caller logs");
    assert!(stats_full.logs().is_empty(), "the caller logs");
}
