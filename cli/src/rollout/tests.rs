#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn durations_parse_with_their_units_and_refuse_others() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert!(parse_duration("5 minutes")
        .unwrap_err()
        .contains("unknown unit"));
    assert!(parse_duration("m")
        .unwrap_err()
        .contains("expected a number"));
    assert!(parse_duration("99999999999999999999h").is_err());
    assert_eq!(human(Duration::from_millis(750)), "750ms");
    assert_eq!(human(Duration::from_secs(150)), "2m30s");
    assert_eq!(human(Duration::from_secs(120)), "2m");
}

#[test]
fn figures_lines_show_each_threshold() {
    let p = Policy {
        steps: vec![10, 100],
        interval: Duration::from_secs(30),
        max_error_rate: 0.01,
        max_p99_ms: 500.0,
        min_requests: 100,
        no_data_timeout: Duration::from_secs(60),
        max_hold: Duration::from_secs(150),
    };
    let f = Figures {
        requests: 212.0,
        errors: 3.0,
        p99_ms: Some(41.25),
        guard_trips: 0.0,
    };
    assert_eq!(
        figures_text(&f, &p),
        "212 requests, 3 errors (1.42 % > 1.00 %), p99 41.2 ms <= 500 ms, guard not tripped"
    );
    let f = Figures {
        requests: 12.5,
        errors: 0.0,
        p99_ms: None,
        guard_trips: 1.0,
    };
    assert_eq!(
        figures_text(&f, &p),
        "12.5 requests < 100, 0 errors (0.00 % <= 1.00 %), no p99, guard tripped 1 time(s)"
    );
}
