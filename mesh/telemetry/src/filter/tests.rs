//! The capability against sdk-shim's FakeHost: configuration handling, the request lifecycle
//! through the `RootFilter`/`HttpFilter` traits, workers sharing one cap, hostile requests.

use super::*;
use crate::telemetry::{attr, stat};
use mesh_core::decision;
use sdk_shim::testing::{FakeHost, FakeMetrics, FakeStore};
use sdk_shim::{HeaderMap, HttpHeaders, LogLevel, RootFilter};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn configured(json: &str, host: &FakeHost) -> TelemetryRoot {
    let mut root = TelemetryRoot::default();
    assert!(
        root.on_configure(host, json.as_bytes()),
        "{:?}",
        host.logs()
    );
    root
}

fn serve(root: &TelemetryRoot, host: &FakeHost, status: u16) {
    let mut f = root.new_http();
    assert_eq!(f.on_request_headers(host, true), Action::Continue);
    host.upstream_responds(status, &[]);
    assert_eq!(f.on_response_headers(host, true), Action::Continue);
    host.set_property_now(attr::RESPONSE_CODE, i64::from(status).to_le_bytes());
    f.on_log(host);
}

fn requests_total(metrics: &FakeMetrics, code: &str) -> i64 {
    metrics
        .names()
        .iter()
        .filter(|n| {
            n.starts_with("istio_requests_total;") && n.contains(&format!(";response_code={code};"))
        })
        .filter_map(|n| metrics.value(n))
        .sum()
}

#[test]
fn bad_configurations_are_rejected_with_one_error_line() {
    let cases = [
        (
            r#"{"max_series":0}"#,
            "telemetry: invalid configuration: max_series: must be at least 1",
        ),
        (
            r#"{"reporter":"gateway"}"#,
            "telemetry: invalid configuration: reporter: unknown variant `gateway`",
        ),
        (
            r#"{"workload":{"cluster":"a b"}}"#,
            "telemetry: invalid configuration: workload.cluster: must be 1 to 253 characters of [A-Za-z0-9._-]",
        ),
        (
            r#"{"trace":{"sampled":true,"bogus":1}}"#,
            "telemetry: invalid configuration: trace.bogus: unknown field `bogus`",
        ),
        ("{not json", "telemetry: invalid configuration: "),
        ("\u{0}\u{ff}", "telemetry: invalid configuration: "),
    ];
    for (json, expected) in cases {
        let host = FakeHost::new();
        let mut root = TelemetryRoot::default();
        assert!(!root.on_configure(&host, json.as_bytes()), "{json}");
        let errors = host.logs_at(LogLevel::Error);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(expected),
            "{} vs {expected}",
            errors[0]
        );
        assert!(!errors[0].ends_with('.'));
        assert!(root.bound().is_none());
    }
}

#[test]
fn empty_configuration_means_defaults() {
    let host = FakeHost::new();
    let root = configured("", &host);
    let t = root.bound().unwrap();
    assert_eq!(t.config.max_series, 1000);
    assert_eq!(t.workload.name, "unknown");
}

#[test]
fn an_unconfigured_root_lets_requests_through() {
    let root = TelemetryRoot::default();
    let host = FakeHost::new().request("GET", "a", "/");
    serve(&root, &host, 200);
    assert!(host.metrics().names().is_empty());
    assert!(host.logs().is_empty());
}

#[test]
fn requests_are_counted_per_code_and_logged() {
    let (metrics, store) = (FakeMetrics::default(), FakeStore::default());
    let worker = || FakeHost::new().with_metrics(&metrics).with_store(&store);
    let root = configured(
        r#"{"workload":{"name":"reviews-v1","namespace":"default"}}"#,
        &worker(),
    );
    let mut lines = 0;
    for (status, n) in [(200, 5), (404, 3), (503, 2)] {
        for _ in 0..n {
            let host = worker().request("GET", "reviews", "/r");
            serve(&root, &host, status);
            lines += host.logs_at(LogLevel::Info).len();
        }
    }
    assert_eq!(requests_total(&metrics, "200"), 5);
    assert_eq!(requests_total(&metrics, "404"), 3);
    assert_eq!(requests_total(&metrics, "503"), 2);
    assert_eq!(lines, 10);
    let durations: usize = metrics
        .names()
        .iter()
        .filter(|n| n.starts_with("istio_request_duration_milliseconds;"))
        .map(|n| metrics.samples(n).len())
        .sum();
    assert_eq!(durations, 10);
}

#[test]
fn workers_share_one_cardinality_cap() {
    let (metrics, store) = (FakeMetrics::default(), FakeStore::default());
    let worker = || FakeHost::new().with_metrics(&metrics).with_store(&store);
    // One root per worker, as Envoy configures one VM per worker thread.
    let roots = [
        configured(r#"{"max_series":3}"#, &worker()),
        configured(r#"{"max_series":3}"#, &worker()),
    ];
    for (i, status) in [200u16, 201, 202, 203, 204, 205, 200, 201]
        .into_iter()
        .enumerate()
    {
        serve(&roots[i % 2], &worker(), status);
    }
    let admitted: Vec<String> = metrics
        .names()
        .into_iter()
        .filter(|n| n.starts_with("istio_requests_total;") && !n.contains("response_code=other"))
        .collect();
    assert_eq!(admitted.len(), 3, "{admitted:#?}");
    assert_eq!(requests_total(&metrics, "other"), 3);
    assert_eq!(metrics.value(stat::SERIES_OVERFLOW), Some(3));
    assert_eq!(metrics.value(stat::SERIES_ADMITTED), Some(3));
}

#[test]
fn the_suite_can_drive_it_with_decisions_in_memory() {
    let host = FakeHost::new().request("GET", "reviews", "/");
    let root = configured("", &host);
    let mut f = TelemetryFilter::new(Arc::clone(root.bound().unwrap()));
    f.on_request_headers(&host, true);
    let r = f.request().unwrap();
    r.set_decision(decision::CANARY, "v2");
    r.set_decision(decision::INTENTIONS, "allow:web");
    f.on_log(&host);
    let line: serde_json::Value = serde_json::from_str(&host.logs_at(LogLevel::Info)[0]).unwrap();
    assert_eq!(line["canary"], "v2");
    assert_eq!(line["intentions"], "allow:web");
}

#[test]
fn hostile_requests_never_trap_and_are_counted() {
    let (metrics, store) = (FakeMetrics::default(), FakeStore::default());
    let worker = || FakeHost::new().with_metrics(&metrics).with_store(&store);
    let root = configured(
        r#"{"peer_metadata":{"enabled":true},"trace":{"start_when_absent":true}}"#,
        &worker(),
    );
    let huge = vec![0xffu8; 256 * 1024];
    let hosts = [
        worker()
            .request_header(":method", [0xc3, 0x28])
            .request_header(":path", &huge)
            .request_header(":authority", b"a\r\nb")
            .request_header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            )
            .request_header("x-mesh-peer-metadata", &huge),
        worker()
            .request_header("traceparent", &huge)
            .request_header("x-mesh-peer-metadata", "workload=a;workload=b;namespace=c")
            .property(attr::MTLS, [1])
            .property(attr::PEER_URI_SAN, &huge)
            .property(attr::RESPONSE_FLAGS, [0xff; 3])
            .property(&[decision::CANARY], &huge),
        worker().failing_header_reads(),
    ];
    for host in &hosts {
        serve(&root, host, 200);
        let lines = host.logs_at(LogLevel::Info);
        assert_eq!(lines.len(), 1);
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["status"], 200);
        assert_eq!(host.request_header_str("x-mesh-peer-metadata"), None);
    }
    assert_eq!(requests_total(&metrics, "200"), 3);
}

#[test]
fn grpc_status_is_read_from_the_trailers_at_log_time() {
    let root_host = FakeHost::new();
    let root = configured(
        r#"{"workload":{"app":"reviews","version":"v1"}}"#,
        &root_host,
    );
    let host = FakeHost::new()
        .with_metrics(root_host.metrics())
        .with_store(root_host.store())
        .request_header("content-type", "application/grpc");
    let mut f = root.new_http();
    f.on_request_headers(&host, false);
    host.upstream_responds(200, &[("content-type", "application/grpc")]);
    f.on_response_headers(&host, false);
    // Trailers arrive after the response headers; nothing reads them before the log.
    host.add_header(HeaderMap::ResponseTrailers, "grpc-status", b"4")
        .unwrap();
    host.set_property_now(attr::RESPONSE_CODE, 200i64.to_le_bytes());
    f.on_log(&host);
    let names = root_host.metrics().names();
    let series = names
        .iter()
        .find(|n| n.starts_with("istio_requests_total;"))
        .unwrap();
    for part in [
        ";destination_app=reviews;",
        ";destination_version=v1;",
        ";request_protocol=grpc;",
        ";grpc_response_status=4;",
    ] {
        assert!(series.contains(part), "{part} in {series}");
    }
}

/// A configuring host whose metric definitions fail for names starting with `refused`.
fn refusing_metrics(refused: &'static str) -> FakeHost {
    FakeHost::new().refusing_metrics(move |name| name.starts_with(refused))
}

#[test]
fn a_stat_that_cannot_be_defined_rejects_the_configuration() {
    for refused in [
        stat::SERIES_ADMITTED,
        stat::SERIES_OVERFLOW,
        stat::TRACE_STARTED,
        stat::TRACE_REPLACED,
        stat::PEER_METADATA_REJECTED,
    ] {
        let host = refusing_metrics(refused);
        let mut root = TelemetryRoot::default();
        assert!(!root.on_configure(&host, b""), "{refused}");
        assert_eq!(
            host.logs_at(LogLevel::Error),
            ["telemetry: cannot set up metrics: bad argument"],
            "{refused}"
        );
        assert!(root.bound().is_none());
    }
}

#[test]
fn series_metrics_are_not_defined_at_configuration() {
    // Series are defined per request, where a failure overflows instead of failing.
    let host = refusing_metrics("istio_");
    let mut root = TelemetryRoot::default();
    assert!(root.on_configure(&host, b""), "{:?}", host.logs());
    assert!(host.logs_at(LogLevel::Error).is_empty());
    assert!(root.bound().is_some());
}
