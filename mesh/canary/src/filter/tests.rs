use super::*;
use sdk_shim::testing::FakeHost;
use sdk_shim::{
    Clock, HostError, Log, Properties, Random, RootFilter, SharedStore, Timer, Versioned,
};
use std::cell::Cell;
use std::time::Duration;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const GUARDED: &str = r#"{"services": [{"host": "reviews",
    "subsets": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
    "rollback": {"subset": "v2", "max_error_rate": 0.2, "min_requests": 10, "window_s": 30}}]}"#;

/// A FakeHost whose stats store refuses every definition after the first `defines`.
struct StatsFull<'a> {
    host: &'a FakeHost,
    defines: Cell<usize>,
}

impl<'a> StatsFull<'a> {
    fn after(host: &'a FakeHost, defines: usize) -> Self {
        Self {
            host,
            defines: Cell::new(defines),
        }
    }
}

impl Log for StatsFull<'_> {
    fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, message);
    }
}

impl Clock for StatsFull<'_> {
    fn now_nanos(&self) -> u64 {
        self.host.now_nanos()
    }
}

impl Random for StatsFull<'_> {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        self.host.fill_random(buf)
    }
}

impl Properties for StatsFull<'_> {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.host.property(path)
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.host.set_property(path, value)
    }
}

impl SharedStore for StatsFull<'_> {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        self.host.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.host.shared_set(key, value, cas)
    }
}

impl Metrics for StatsFull<'_> {
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        let left = self.defines.get();
        if left == 0 {
            return Err(HostError::BadArgument);
        }
        self.defines.set(left - 1);
        self.host.define_metric(kind, name)
    }
    fn increment_metric(&self, id: MetricId, delta: i64) -> Result<(), HostError> {
        self.host.increment_metric(id, delta)
    }
    fn record_metric(&self, id: MetricId, value: u64) -> Result<(), HostError> {
        self.host.record_metric(id, value)
    }
    fn metric_value(&self, id: MetricId) -> Result<u64, HostError> {
        self.host.metric_value(id)
    }
}

impl Timer for StatsFull<'_> {
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.host.set_tick_period(period)
    }
}

#[test]
fn a_stat_that_cannot_be_defined_refuses_the_configuration() {
    // Two subsets: 2 decisions, 2 overrides, 1 rollbacks; each one in turn fails.
    for defines in 0..5 {
        let host = FakeHost::new();
        let mut root = CanaryRoot::default();
        assert!(
            !root.on_configure(&StatsFull::after(&host, defines), GUARDED.as_bytes()),
            "{defines}"
        );
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
    let host = FakeHost::new();
    let mut root = CanaryRoot::default();
    assert!(root.on_configure(&StatsFull::after(&host, 5), GUARDED.as_bytes()));
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
    assert!(f.decision().is_none());
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
    let err = CanaryConfig::from_json(&StatsFull::after(&host, 0), GUARDED.as_bytes()).unwrap_err();
    assert_eq!(err, "canary: cannot set up metrics: bad argument");
    let spec: CanarySpec = serde_json::from_str(GUARDED).unwrap();
    let config = CanaryConfig::from_spec(&host, &spec).unwrap();
    assert_eq!(config.canary().services().len(), 1);
    assert!(host.logs().is_empty(), "the caller logs");
}
