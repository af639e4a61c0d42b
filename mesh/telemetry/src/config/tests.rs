use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn err(json: &str) -> ConfigError {
    TelemetryConfig::from_json(json.as_bytes()).unwrap_err()
}

#[test]
fn empty_config_means_defaults() {
    let c = TelemetryConfig::from_json(b"").unwrap();
    assert_eq!(c.reporter, Reporter::Destination);
    assert_eq!(c.max_series, DEFAULT_MAX_SERIES);
    assert_eq!(c.peer_header, None);
    assert_eq!(
        c.trace,
        TraceConfig {
            enabled: true,
            start_when_absent: false,
            sampled: false
        }
    );
    assert_eq!(c.access_log, Some(1024));
    assert_eq!(c.workload, WorkloadSpec::default());
}

#[test]
fn design_example_parses() {
    let c = TelemetryConfig::from_json(
        br#"{ "reporter": "destination", "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"} }"#,
    )
    .unwrap();
    assert_eq!(c.workload.name.as_deref(), Some("reviews-v1"));
    let c = TelemetryConfig::from_json(
        br#"{"reporter":"source","max_series":5,"peer_metadata":{"enabled":true},"trace":{"start_when_absent":true,"sampled":true},"access_log":{"enabled":false}}"#,
    )
    .unwrap();
    assert_eq!(c.reporter, Reporter::Source);
    assert_eq!(c.max_series, 5);
    assert_eq!(c.peer_header.as_deref(), Some(DEFAULT_PEER_HEADER));
    assert!(c.trace.start_when_absent && c.trace.sampled);
    assert_eq!(c.access_log, None);
}

#[test]
fn unknown_fields_name_their_path() {
    let e = err(r#"{"workload":{"nmae":"x"}}"#);
    assert_eq!(e.field, "workload.nmae");
    assert!(e.reason.starts_with("unknown field `nmae`"), "{e}");
    assert_eq!(err(r#"{"bogus":1}"#).field, "bogus");
    assert_eq!(err(r#"{"trace":{"start":true}}"#).field, "trace.start");
}

#[test]
fn unknown_reporter_is_rejected() {
    let e = err(r#"{"reporter":"waypoint"}"#);
    assert_eq!(e.field, "reporter");
    assert!(e.reason.contains("unknown variant `waypoint`"), "{e}");
}

#[test]
fn cardinality_cap_must_be_positive_and_bounded() {
    let e = err(r#"{"max_series":0}"#);
    assert_eq!(e.to_string(), "max_series: must be at least 1");
    assert_eq!(err(r#"{"max_series":100001}"#).field, "max_series");
    assert_eq!(err(r#"{"max_series":-1}"#).field, "max_series");
}

#[test]
fn bad_values_are_rejected() {
    assert_eq!(err(r#"{"workload":{"name":"a;b"}}"#).field, "workload.name");
    assert_eq!(
        err(r#"{"workload":{"namespace":""}}"#).field,
        "workload.namespace"
    );
    assert_eq!(
        err(r#"{"peer_metadata":{"enabled":true,"header":"X-Peer"}}"#).to_string(),
        "peer_metadata.header: must be a lowercase header name of [a-z0-9_-]"
    );
    assert_eq!(
        err(r#"{"access_log":{"max_field_bytes":1}}"#).field,
        "access_log.max_field_bytes"
    );
    assert!(!err(r#"{"max_series":0}"#).reason.ends_with('.'));
}

#[test]
fn disabled_peer_metadata_ignores_its_header() {
    let c =
        TelemetryConfig::from_json(br#"{"peer_metadata":{"enabled":false,"header":"X"}}"#).unwrap();
    assert_eq!(c.peer_header, None);
}

#[test]
fn app_version_and_cluster_are_checked_like_the_other_workload_fields() {
    let c = TelemetryConfig::from_json(
        br#"{"workload":{"app":"reviews","version":"v1","cluster":"Kubernetes"}}"#,
    )
    .unwrap();
    assert_eq!(
        (
            c.workload.app.as_deref(),
            c.workload.version.as_deref(),
            c.workload.cluster.as_deref()
        ),
        (Some("reviews"), Some("v1"), Some("Kubernetes"))
    );
    for field in ["app", "version", "cluster"] {
        let e = err(&format!(r#"{{"workload":{{"{field}":"a;b=c"}}}}"#));
        assert_eq!(
            e.to_string(),
            format!("workload.{field}: must be 1 to 253 characters of [A-Za-z0-9._-]")
        );
        assert_eq!(
            err(&format!(r#"{{"workload":{{"{field}":""}}}}"#)).field,
            format!("workload.{field}")
        );
        assert_eq!(
            err(&format!(r#"{{"workload":{{"{field}":7}}}}"#)).field,
            format!("workload.{field}")
        );
    }
    assert_eq!(err(r#"{"workload":{"apps":"x"}}"#).field, "workload.apps");
}
