#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn policy() -> Policy {
    Policy {
        steps: vec![5, 25, 100],
        interval: s(10),
        max_error_rate: 0.05,
        max_p99_ms: 200.0,
        min_requests: 100,
        no_data_timeout: s(30),
        max_hold: s(60),
    }
}

fn healthy() -> Observation {
    seen(500.0, 5.0, Some(40.0))
}

fn seen(requests: f64, errors: f64, p99: Option<f64>) -> Observation {
    Observation::Seen(Figures {
        requests,
        errors,
        p99_ms: p99,
        guard_trips: 0.0,
    })
}

fn missing() -> Observation {
    Observation::Missing("connection refused".into())
}

#[test]
fn healthy_figures_advance_through_every_step_and_promote() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    assert_eq!(e.weight(), 5);
    // Before the interval: only progress.
    assert_eq!(e.observe(s(9), &healthy()).verdict, Verdict::Wait);
    let d = e.observe(s(10), &healthy());
    assert_eq!(d.verdict, Verdict::Advance(25));
    assert_eq!((d.step, d.weight), (0, 5));
    assert_eq!(e.weight(), 25);
    assert_eq!(e.step_started(), s(10));
    // The next step is judged a full interval after it started.
    assert_eq!(e.observe(s(19), &healthy()).verdict, Verdict::Wait);
    assert_eq!(e.observe(s(20), &healthy()).verdict, Verdict::Advance(100));
    let d = e.observe(s(30), &healthy());
    assert_eq!(d.verdict, Verdict::Promote);
    assert_eq!(d.weight, 100);
    assert!(e.is_done());
    assert_eq!(e.observe(s(40), &healthy()).verdict, Verdict::Wait);
}

#[test]
fn thresholds_are_maxima_an_equal_figure_passes() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    // 5.0% errors and p99 200 ms exactly: at the maxima, not above.
    let d = e.observe(s(10), &seen(100.0, 5.0, Some(200.0)));
    assert_eq!(d.verdict, Verdict::Advance(25));
}

#[test]
fn an_error_rate_above_the_maximum_rolls_back() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    e.observe(s(10), &healthy());
    let d = e.observe(s(20), &seen(200.0, 11.0, Some(40.0)));
    assert_eq!(d.verdict, Verdict::Rollback(RollbackReason::ErrorRate));
    assert_eq!((d.step, d.weight), (1, 25));
    assert!(e.is_done());
}

#[test]
fn a_p99_above_the_maximum_rolls_back() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    let d = e.observe(s(10), &seen(500.0, 0.0, Some(200.5)));
    assert_eq!(d.verdict, Verdict::Rollback(RollbackReason::Latency));
    let mut e = Engine::new(policy(), s(0)).unwrap();
    let d = e.observe(s(10), &seen(500.0, 0.0, Some(f64::INFINITY)));
    assert_eq!(d.verdict, Verdict::Rollback(RollbackReason::Latency));
}

#[test]
fn a_tripped_guard_rolls_back_at_once_even_before_the_interval() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    let obs = Observation::Seen(Figures {
        guard_trips: 1.0,
        ..Figures::default()
    });
    let d = e.observe(s(1), &obs);
    assert_eq!(d.verdict, Verdict::Rollback(RollbackReason::Guard));
}

#[test]
fn too_little_traffic_holds_then_advances_when_enough_arrived() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    let d = e.observe(s(10), &seen(99.0, 0.0, Some(10.0)));
    assert_eq!(d.verdict, Verdict::Hold(HoldReason::LowTraffic));
    // Errors in a small sample are not judged: still a hold.
    assert_eq!(
        e.observe(s(20), &seen(50.0, 50.0, Some(10.0))).verdict,
        Verdict::Hold(HoldReason::LowTraffic)
    );
    // Between judgements of a held step: only progress.
    assert_eq!(e.observe(s(25), &healthy()).verdict, Verdict::Wait);
    assert_eq!(e.observe(s(30), &healthy()).verdict, Verdict::Advance(25));
}

#[test]
fn a_step_held_for_max_hold_rolls_back() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    for t in [10, 20, 30, 40, 50] {
        let d = e.observe(s(t), &seen(3.0, 0.0, Some(10.0)));
        assert_eq!(d.verdict, Verdict::Hold(HoldReason::LowTraffic), "{t}");
    }
    let d = e.observe(s(60), &seen(3.0, 0.0, Some(10.0)));
    assert_eq!(
        d.verdict,
        Verdict::Rollback(RollbackReason::HeldTooLong(HoldReason::LowTraffic))
    );
}

#[test]
fn missing_data_holds_never_advances_and_times_out() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    assert_eq!(e.observe(s(5), &missing()).verdict, Verdict::Wait);
    let d = e.observe(s(10), &missing());
    assert_eq!(
        d.verdict,
        Verdict::Hold(HoldReason::NoData("connection refused".into()))
    );
    assert_eq!(d.figures, None);
    assert_eq!(d.without_data, s(10));
    assert_eq!(e.observe(s(20), &missing()).verdict, d.verdict);
    // 30 s without figures: roll back, whether or not a judgement was due.
    let d = e.observe(s(30), &missing());
    assert_eq!(
        d.verdict,
        Verdict::Rollback(RollbackReason::NoData("connection refused".into()))
    );
}

#[test]
fn data_coming_back_resets_the_no_data_clock() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    e.observe(s(10), &healthy()); // advance to 25 %, the step starts at 10
    assert_eq!(e.observe(s(15), &missing()).verdict, Verdict::Wait);
    // 29 s after the last figures, a judgement due: a hold, not a rollback.
    let d = e.observe(s(39), &missing());
    assert!(matches!(d.verdict, Verdict::Hold(HoldReason::NoData(_))));
    let d = e.observe(s(49), &healthy());
    assert_eq!(d.verdict, Verdict::Advance(100));
    assert_eq!(d.without_data, s(0));
    // The clock restarts from the figures at 49.
    assert!(!e.observe(s(78), &missing()).verdict.is_final());
    assert!(e.observe(s(79), &missing()).verdict.is_final());
}

#[test]
fn a_missing_latency_figure_holds() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    let d = e.observe(s(10), &seen(500.0, 0.0, None));
    assert_eq!(d.verdict, Verdict::Hold(HoldReason::NoLatency));
    let d = e.observe(s(20), &seen(500.0, 0.0, Some(f64::NAN)));
    assert_eq!(d.verdict, Verdict::Hold(HoldReason::NoLatency));
}

#[test]
fn a_nan_request_count_holds() {
    let mut e = Engine::new(policy(), s(0)).unwrap();
    let d = e.observe(s(10), &seen(f64::NAN, 0.0, Some(1.0)));
    assert_eq!(d.verdict, Verdict::Hold(HoldReason::LowTraffic));
}

#[test]
fn a_single_step_of_100_promotes() {
    let p = Policy {
        steps: vec![100],
        ..policy()
    };
    let mut e = Engine::new(p, s(0)).unwrap();
    assert_eq!(e.observe(s(10), &healthy()).verdict, Verdict::Promote);
}

#[test]
fn invalid_policies_are_refused_with_the_field() {
    let bad = |f: fn(&mut Policy)| {
        let mut p = policy();
        f(&mut p);
        Engine::new(p, s(0)).unwrap_err().to_string()
    };
    assert_eq!(
        bad(|p| p.steps.clear()),
        "steps: must name at least one weight"
    );
    assert_eq!(
        bad(|p| p.steps = vec![10, 10]),
        "steps: weights must rise from step to step"
    );
    assert_eq!(
        bad(|p| p.steps = vec![0, 10]),
        "steps: each weight must be 1 to 100"
    );
    assert_eq!(
        bad(|p| p.steps = vec![50, 101]),
        "steps: each weight must be 1 to 100"
    );
    assert_eq!(
        bad(|p| p.max_error_rate = 1.5),
        "max-error-rate: must be 0 to 1"
    );
    assert_eq!(
        bad(|p| p.max_p99_ms = 0.0),
        "max-p99-ms: must be above zero"
    );
    assert_eq!(
        bad(|p| p.min_requests = 0),
        "min-requests: must be at least 1"
    );
    assert_eq!(bad(|p| p.interval = s(0)), "interval: must be above zero");
    assert_eq!(
        bad(|p| p.max_hold = s(5)),
        "max-hold: must be at least the interval"
    );
}
