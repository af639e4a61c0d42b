use super::*;
use sdk_shim::testing::{FakeClock, FakeHost, FakeStore};
use sdk_shim::Clock;
use std::time::Duration;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY: &str = "mesh.canary.guard.test";

fn policy(rate_ppb: u64, min: u64, window_s: u64) -> GuardPolicy {
    GuardPolicy {
        max_error_ppb: rate_ppb,
        min_requests: min,
        window_nanos: window_s * 1_000_000_000,
    }
}

fn record(host: &FakeHost) -> GuardRecord {
    GuardRecord::decode(&host.store().get(KEY).unwrap()).unwrap()
}

#[test]
fn record_round_trips_and_rejects_other_bytes() {
    let r = GuardRecord {
        tripped: true,
        armed_at: 1,
        window_start: 2,
        requests: u64::MAX,
        failures: 4,
    };
    assert_eq!(GuardRecord::decode(&r.encode()), Some(r));
    assert_eq!(GuardRecord::decode(b""), None);
    assert_eq!(GuardRecord::decode(&[0u8; 34]), None);
    assert_eq!(GuardRecord::decode(&[1u8; 35]), None);
}

#[test]
fn trips_exactly_when_the_rate_goes_above_the_threshold() {
    // 25% over at least 8 responses.
    let p = policy(250_000_000, 8, 30);
    let host = FakeHost::new();
    let now = || host.now_nanos();
    arm(&host, KEY, now()).unwrap();
    for _ in 0..6 {
        assert_eq!(
            observe(&host, KEY, &p, now(), false),
            Ok(Observation::Counted)
        );
    }
    for _ in 0..2 {
        assert_eq!(
            observe(&host, KEY, &p, now(), true),
            Ok(Observation::Counted)
        );
    }
    // 2 of 8 is 25%: at the threshold, not above.
    assert!(!is_tripped(&host, KEY));
    assert_eq!((record(&host).requests, record(&host).failures), (8, 2));
    // 3 of 9 is above.
    assert_eq!(
        observe(&host, KEY, &p, now(), true),
        Ok(Observation::Tripped)
    );
    assert!(is_tripped(&host, KEY));
    assert_eq!(
        observe(&host, KEY, &p, now(), false),
        Ok(Observation::AlreadyTripped)
    );
    assert_eq!(record(&host).requests, 9);
}

#[test]
fn waits_for_min_requests() {
    let p = policy(100_000_000, 5, 30);
    let host = FakeHost::new();
    arm(&host, KEY, host.now_nanos()).unwrap();
    for _ in 0..4 {
        assert_eq!(
            observe(&host, KEY, &p, host.now_nanos(), true),
            Ok(Observation::Counted)
        );
    }
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), true),
        Ok(Observation::Tripped)
    );
}

#[test]
fn a_new_window_starts_from_zero() {
    let p = policy(250_000_000, 4, 30);
    let clock = FakeClock::at_nanos(1_000_000_000_000);
    let host = FakeHost::new().with_clock(&clock);
    arm(&host, KEY, host.now_nanos()).unwrap();
    for _ in 0..3 {
        observe(&host, KEY, &p, host.now_nanos(), true).unwrap();
    }
    clock.advance(Duration::from_secs(29));
    assert_eq!(record(&host).requests, 3);
    // Still in the window: the 4th response trips.
    let mut probe = record(&host);
    probe = p.observe(probe, host.now_nanos(), false).0;
    assert!(probe.tripped);
    // One second later the window is over: counts restart.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), false),
        Ok(Observation::Counted)
    );
    let r = record(&host);
    assert_eq!(
        (r.requests, r.failures, r.window_start),
        (1, 0, host.now_nanos())
    );
}

#[test]
fn workers_sharing_a_store_count_exactly_and_trip_once() {
    let p = policy(500_000_000, 40, 60);
    let store = FakeStore::default();
    let clock = FakeClock::default();
    clock.set_nanos(5_000_000_000);
    let workers: Vec<FakeHost> = (0..3)
        .map(|_| FakeHost::new().with_store(&store).with_clock(&clock))
        .collect();
    for w in &workers {
        arm(w, KEY, w.now_nanos()).unwrap();
    }
    let mut trips = 0;
    for i in 0..60u64 {
        let w = &workers[(i % 3) as usize];
        // Another worker wins the first race of every third update.
        if i % 3 == 0 {
            store.force_cas_conflicts(1);
        }
        match observe(w, KEY, &p, w.now_nanos(), i % 4 != 0).unwrap() {
            Observation::Tripped => trips += 1,
            Observation::Counted | Observation::AlreadyTripped => {}
            Observation::Contended => panic!("gave up"),
        }
        if trips == 0 {
            let r = GuardRecord::decode(&store.get(KEY).unwrap()).unwrap();
            assert_eq!(r.requests, i + 1);
        }
    }
    assert_eq!(trips, 1);
    let r = GuardRecord::decode(&store.get(KEY).unwrap()).unwrap();
    assert_eq!(r.requests, 40, "trips at min_requests with 75% failures");
}

#[test]
fn gives_up_after_bounded_attempts() {
    let p = policy(0, 1, 1);
    let host = FakeHost::new();
    arm(&host, KEY, host.now_nanos()).unwrap();
    host.store().force_cas_conflicts(MAX_CAS_ATTEMPTS);
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), false),
        Ok(Observation::Contended)
    );
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), false),
        Ok(Observation::Counted)
    );
}

#[test]
fn counts_even_if_never_armed() {
    let p = policy(0, 2, 1);
    let host = FakeHost::new();
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), false),
        Ok(Observation::Counted)
    );
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), true),
        Ok(Observation::Tripped)
    );
}

#[test]
fn unreadable_records_are_replaced() {
    let p = policy(0, 10, 1);
    let host = FakeHost::new();
    host.store().shared_set(KEY, b"garbage", None).unwrap();
    assert!(!is_tripped(&host, KEY));
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), true),
        Ok(Observation::Counted)
    );
    assert_eq!(record(&host).failures, 1);
}

#[test]
fn arming_again_keeps_the_record_and_its_trip() {
    let p = policy(0, 1, 60);
    let clock = FakeClock::at_nanos(100_000_000_000);
    let host = FakeHost::new().with_clock(&clock);
    assert_eq!(arm(&host, KEY, host.now_nanos()), Ok(true));
    let armed_at = record(&host).armed_at;
    assert_eq!(
        observe(&host, KEY, &p, host.now_nanos(), true),
        Ok(Observation::Tripped)
    );
    // Another worker applying the same configuration a moment later keeps the trip, and so
    // does the same configuration applied again much later (a rebuilt listener, say).
    for later in [Duration::from_secs(2), Duration::from_secs(3600)] {
        clock.advance(later);
        assert_eq!(arm(&host, KEY, host.now_nanos()), Ok(false));
        assert!(is_tripped(&host, KEY));
        assert_eq!(record(&host).armed_at, armed_at);
    }
    // An unreadable record is replaced by a fresh one.
    host.shared_set(KEY, b"garbage", None).unwrap();
    assert_eq!(arm(&host, KEY, host.now_nanos()), Ok(true));
    assert!(!is_tripped(&host, KEY));
}

#[test]
fn key_names_the_plugin_layout_and_fingerprint() {
    let a = Namespace::from_identity(&[b"a"]);
    let b = Namespace::from_identity(&[b"b"]);
    assert_eq!(
        guard_key(&a, 0xab),
        format!("{}canary.2/guard.00000000000000ab", a.as_str())
    );
    assert_ne!(guard_key(&a, 0xab), guard_key(&b, 0xab));
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Against a plain model: the guard trips at the first response where the window holds
        // at least min_requests and failures * 1e9 > rate * requests, never earlier.
        #[test]
        fn trips_at_the_first_response_over_the_threshold(
            rate in 0u64..=1_000_000_000,
            min in 1u64..30,
            events in prop::collection::vec((any::<bool>(), 0u64..5), 1..200),
        ) {
            let p = policy(rate, min, 10);
            let clock = FakeClock::at_nanos(1_000_000_000);
            let host = FakeHost::new().with_clock(&clock);
            arm(&host, KEY, host.now_nanos()).unwrap();
            let (mut start, mut req, mut fail, mut tripped) = (None::<u64>, 0u64, 0u64, false);
            for (failure, secs) in events {
                clock.advance(Duration::from_secs(secs));
                let now = host.now_nanos();
                let got = observe(&host, KEY, &p, now, failure).unwrap();
                if tripped {
                    prop_assert_eq!(got, Observation::AlreadyTripped);
                    continue;
                }
                if start.is_none_or(|s| now >= s + 10_000_000_000) {
                    start = Some(now);
                    req = 0;
                    fail = 0;
                }
                req += 1;
                fail += u64::from(failure);
                let expect = req >= min && u128::from(fail) * 1_000_000_000 > u128::from(rate) * u128::from(req);
                prop_assert_eq!(got, if expect { Observation::Tripped } else { Observation::Counted });
                tripped = expect;
            }
        }
    }
}
