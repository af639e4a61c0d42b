#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use serde_json::json;

use crate::rollout::source::reviews_v2 as selector;

#[test]
fn queries_name_the_canary_series_and_the_window() {
    let q = queries(
        &selector(),
        Duration::from_millis(30_500),
        Duration::from_secs(120),
    );
    let m = r#"reporter="destination",destination_service_name="reviews",destination_version="v2""#;
    assert_eq!(
        q.requests,
        format!("sum(increase(istio_requests_total{{{m}}}[30500ms]))")
    );
    assert_eq!(
        q.errors,
        format!(
            "sum(increase(istio_requests_total{{{m},response_code=~\"5..\"}}[30500ms])) or vector(0)"
        )
    );
    assert_eq!(
        q.p99,
        format!(
            "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{m}}}[30500ms])))"
        )
    );
    assert_eq!(
        q.guard.as_deref(),
        Some("sum(increase(canary_reviews_v2_rollbacks[120000ms])) or vector(0)")
    );
}

#[test]
fn label_values_are_quoted_so_they_cannot_end_the_matcher() {
    let s = Selector::istio(None, "app", "a\"b\\c\nd", "version", "v2");
    let q = queries(&s, Duration::from_secs(1), Duration::from_secs(1));
    assert_eq!(
        q.requests,
        r#"sum(increase(istio_requests_total{app="a\"b\\c\nd",version="v2"}[1000ms]))"#
    );
    assert!(q.guard.is_none());
    // No reporter matcher when none is asked for.
    assert!(!q.p99.contains("reporter"));
}

#[test]
fn single_values_of_answers() {
    let answer = |result: Value| json!({"status": "success", "data": {"resultType": "vector", "result": result}});
    assert_eq!(
        single_value(&answer(json!([{"metric": {}, "value": [1.0, "212.5"]}]))).unwrap(),
        Some(212.5)
    );
    assert_eq!(single_value(&answer(json!([]))).unwrap(), None);
    let nan = single_value(&answer(json!([{"metric": {}, "value": [1.0, "NaN"]}])))
        .unwrap()
        .unwrap();
    assert!(nan.is_nan());
    assert_eq!(
        single_value(&answer(json!([{"metric": {}, "value": [1.0, "+Inf"]}]))).unwrap(),
        Some(f64::INFINITY)
    );
    assert_eq!(
        single_value(&json!({"status": "error", "error": "parse error at char 3"})).unwrap_err(),
        "query failed: parse error at char 3"
    );
    assert_eq!(
        single_value(&answer(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]))).unwrap_err(),
        "2 series where one was expected"
    );
    assert_eq!(
        single_value(&answer(json!([{"value": [1, "many"]}]))).unwrap_err(),
        "value \"many\" is not a number"
    );
}

#[test]
fn guard_metric_names_follow_envoys_prometheus_naming() {
    assert_eq!(
        crate::rollout::source::guard_metric("reviews", "v2"),
        "canary_reviews_v2_rollbacks"
    );
    assert_eq!(
        crate::rollout::source::guard_metric("reviews_default", "canary-1"),
        "canary_reviews_default_canary_1_rollbacks"
    );
}
