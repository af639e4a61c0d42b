#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use super::*;

use crate::rollout::source::reviews_v2 as selector;

/// Envoy's `/stats/prometheus` shape for the canary (v2) and the stable (v1) subsets.
fn text(uptime: u64, ok: u64, failed: u64, v1: u64, buckets: &[(&str, u64)], trips: u64) -> String {
    let l = |v: &str, code: &str| {
        format!(
            "reporter=\"destination\",destination_service_name=\"reviews\",destination_version=\"{v}\",response_code=\"{code}\""
        )
    };
    let mut t = String::from("# TYPE istio_requests_total counter\n");
    t += &format!("istio_requests_total{{{}}} {ok}\n", l("v2", "200"));
    if failed > 0 {
        t += &format!("istio_requests_total{{{}}} {failed}\n", l("v2", "503"));
    }
    t += &format!("istio_requests_total{{{}}} {v1}\n", l("v1", "503"));
    t += "# TYPE istio_request_duration_milliseconds histogram\n";
    for (le, c) in buckets {
        t += &format!(
            "istio_request_duration_milliseconds_bucket{{{},le=\"{le}\"}} {c}\n",
            l("v2", "200")
        );
        // The stable subset's slow answers must not count.
        t += &format!(
            "istio_request_duration_milliseconds_bucket{{{},le=\"{le}\"}} 1000\n",
            l("v1", "200")
        );
    }
    t += &format!(
        "istio_request_duration_milliseconds_sum{{{}}} 12.5\n",
        l("v2", "200")
    );
    t += "# TYPE canary_reviews_v2_rollbacks counter\n";
    t += &format!("canary_reviews_v2_rollbacks{{}} {trips}\n");
    t += &format!("envoy_server_uptime{{}} {uptime}\n");
    t
}

fn snap(t: &str) -> Snapshot {
    Snapshot::of(&selector(), &parse(t))
}

#[test]
fn parses_envoys_text_with_escapes_and_special_values() {
    let s = parse(
        "# HELP x\n\nx{a=\"1\",b=\"q\\\"u,o}te\\\\\",c=\"l\\nf\"} 3\ny 4.5\nz{} +Inf\nw{le=\"+Inf\"} NaN\nbad{a=\"1\" 3\nbare{a} 1\n",
    );
    assert_eq!(s.len(), 4, "{s:?}");
    assert_eq!(s[0].name, "x");
    assert_eq!(s[0].label("a"), Some("1"));
    assert_eq!(s[0].label("b"), Some("q\"u,o}te\\"));
    assert_eq!(s[0].label("c"), Some("l\nf"));
    assert_eq!(s[0].value, 3.0);
    assert_eq!((s[1].name.as_str(), s[1].value), ("y", 4.5));
    assert!(s[2].labels.is_empty());
    assert_eq!(s[2].value, f64::INFINITY);
    assert_eq!(s[3].label("le"), Some("+Inf"));
    assert!(s[3].value.is_nan());
}

#[test]
fn differences_between_reads_count_only_the_canarys_series() {
    let a = snap(&text(
        10,
        100,
        0,
        50,
        &[("5", 90), ("10", 100), ("+Inf", 100)],
        0,
    ));
    let b = snap(&text(
        20,
        160,
        40,
        80,
        &[("5", 130), ("10", 195), ("+Inf", 200)],
        0,
    ));
    assert!(b.has_requests());
    assert!(!b.restarted_since(&a));
    let t = b.since(&a);
    // The 503 series is new: it counted from zero.
    assert_eq!(
        (t.requests, t.errors, t.guard, t.restarts),
        (100.0, 40.0, 0.0, 0)
    );
    // 100 durations: 40 under 5 ms, 55 in (5, 10], 5 above 10.
    assert_eq!(t.quantile(0.5), Some(5.0 + 5.0 * (50.0 - 40.0) / 55.0));
    // The 99th is in the +Inf bucket: the largest finite bound.
    assert_eq!(t.quantile(0.99), Some(10.0));
}

#[test]
fn a_counter_reset_counts_from_zero_never_negative() {
    let before = snap(&text(500, 1000, 10, 50, &[("5", 1000), ("+Inf", 1010)], 1));
    // Envoy restarted: uptime and counters went down.
    let after = snap(&text(3, 30, 2, 5, &[("5", 31), ("+Inf", 32)], 0));
    assert!(after.restarted_since(&before));
    let t = after.since(&before);
    assert_eq!(
        (t.requests, t.errors, t.guard, t.restarts),
        (32.0, 2.0, 0.0, 1)
    );
    assert_eq!(t.quantile(0.5), Some(5.0 * 16.0 / 31.0));
}

#[test]
fn a_restart_is_seen_from_a_counter_going_down_without_uptime() {
    let strip = |t: String| {
        t.lines()
            .filter(|l| !l.starts_with("envoy_server_uptime"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = snap(&strip(text(0, 1000, 0, 0, &[("+Inf", 1000)], 0)));
    let after = snap(&strip(text(0, 900, 0, 0, &[("+Inf", 900)], 0)));
    assert!(after.restarted_since(&before));
    assert_eq!(after.since(&before).requests, 900.0);
    // Uptime alone tells too, when the counters happen to have grown past their old values.
    let before = snap(&text(100, 10, 0, 0, &[("+Inf", 10)], 0));
    let after = snap(&text(2, 40, 0, 0, &[("+Inf", 40)], 0));
    assert_eq!(after.since(&before).requests, 40.0);
}

#[test]
fn guard_trips_are_counted_between_reads() {
    let a = snap(&text(10, 100, 0, 0, &[("+Inf", 100)], 0));
    let b = snap(&text(11, 100, 0, 0, &[("+Inf", 100)], 1));
    assert_eq!(b.since(&a).guard, 1.0);
}

#[test]
fn no_canary_series_is_told_apart_from_zero_requests() {
    let s = snap("istio_requests_total{destination_version=\"v1\"} 5\n");
    assert!(!s.has_requests());
}

#[test]
fn quantiles_of_cumulative_buckets() {
    assert_eq!(quantile(0.99, &[]), None);
    assert_eq!(quantile(0.99, &[(5.0, 0.0), (f64::INFINITY, 0.0)]), None);
    // All in the first bucket: interpolated from zero.
    assert_eq!(
        quantile(0.5, &[(10.0, 4.0), (f64::INFINITY, 4.0)]),
        Some(5.0)
    );
    assert_eq!(
        quantile(
            0.99,
            &[
                (0.5, 0.0),
                (1.0, 0.0),
                (250.0, 100.0),
                (500.0, 100.0),
                (f64::INFINITY, 100.0)
            ]
        ),
        Some(1.0 + 249.0 * 0.99)
    );
    // A dip (rounding in sums) is kept cumulative.
    assert_eq!(
        quantile(0.5, &[(10.0, 6.0), (20.0, 5.0), (f64::INFINITY, 10.0)]),
        Some(10.0 * 5.0 / 6.0)
    );
    assert_eq!(quantile(1.5, &[(10.0, 1.0)]), None);
}
