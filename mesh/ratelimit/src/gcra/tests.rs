use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const S: u64 = 1_000_000_000;
const NOW: u64 = 1_700_000_000 * S;

fn limit(requests: u64, per_ns: u64, burst: u64) -> Limit {
    Limit::new(requests, per_ns, burst).unwrap()
}

/// Offers `n` requests at `now`, storing the TAT like the table does; returns admitted.
fn offer(l: &Limit, tat: &mut u64, now: u64, n: u64) -> u64 {
    let mut admitted = 0;
    for _ in 0..n {
        if let Outcome::Allow { new_tat, .. } = l.check(*tat, now) {
            *tat = new_tat;
            admitted += 1;
        }
    }
    admitted
}

#[test]
fn a_fresh_bucket_admits_exactly_the_burst() {
    let l = limit(100, 3600 * S, 100);
    let mut tat = 0;
    assert_eq!(offer(&l, &mut tat, NOW, 300), 100);
    assert_eq!(tat, NOW + 100 * 36 * S);
}

#[test]
fn remaining_and_full_in_count_down() {
    let l = limit(10, S, 10);
    let Outcome::Allow {
        new_tat,
        remaining,
        full_in_ns,
    } = l.check(0, NOW)
    else {
        panic!("denied")
    };
    assert_eq!((remaining, full_in_ns), (9, S / 10));
    let Outcome::Allow { remaining, .. } = l.check(new_tat, NOW) else {
        panic!("denied")
    };
    assert_eq!(remaining, 8);
}

#[test]
fn a_refused_request_learns_when_to_retry() {
    let l = limit(100, 3600 * S, 100);
    let mut tat = 0;
    offer(&l, &mut tat, NOW, 100);
    assert_eq!(
        l.check(tat, NOW),
        Outcome::Deny {
            retry_in_ns: 36 * S
        }
    );
    // Just before the next emission: still refused, 1ns to go.
    assert_eq!(
        l.check(tat, NOW + 36 * S - 1),
        Outcome::Deny { retry_in_ns: 1 }
    );
    assert!(matches!(
        l.check(tat, NOW + 36 * S),
        Outcome::Allow { remaining: 0, .. }
    ));
}

#[test]
fn burst_above_rate_and_below_rate() {
    // 1 per second with bursts of 5: 5 at once, then one per second.
    let l = limit(1, S, 5);
    let mut tat = 0;
    assert_eq!(offer(&l, &mut tat, NOW, 10), 5);
    assert_eq!(offer(&l, &mut tat, NOW + S, 10), 1);
    // 10 per second with burst 1: strictly spaced.
    let l = limit(10, S, 1);
    let mut tat = 0;
    assert_eq!(offer(&l, &mut tat, NOW, 3), 1);
    assert_eq!(offer(&l, &mut tat, NOW + S / 10, 3), 1);
}

#[test]
fn idle_time_refills_but_never_beyond_burst() {
    let l = limit(10, S, 3);
    let mut tat = 0;
    assert_eq!(offer(&l, &mut tat, NOW, 10), 3);
    assert_eq!(offer(&l, &mut tat, NOW + 3600 * S, 10), 3);
}

#[test]
fn clock_going_backwards_never_admits_more() {
    let l = limit(10, S, 3);
    let mut tat = 0;
    assert_eq!(offer(&l, &mut tat, NOW, 10), 3);
    assert_eq!(offer(&l, &mut tat, NOW - 60 * S, 10), 0);
}

#[test]
fn interval_rounds_up_and_bad_limits_are_refused() {
    assert_eq!(limit(3, S, 1).interval_ns(), 333_333_334);
    assert!(Limit::new(0, S, 1).is_none());
    assert!(Limit::new(1, S, 0).is_none());
    assert!(Limit::new(S + 1, S, 1).is_none());
    assert!(Limit::new(1, 3600 * S, 1_000_000_000).is_none());
    assert!(Limit::new(1, 1, 1).is_some());
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over any run of arrivals, admitted <= burst + elapsed * requests / per.
        #[test]
        fn never_more_than_burst_plus_rate(
            requests in 1u64..1000,
            per_ms in 1u64..100_000,
            burst in 1u64..500,
            steps in prop::collection::vec((0u64..2_000_000_000, 0u64..50), 1..60),
        ) {
            let per_ns = per_ms * 1_000_000;
            prop_assume!(requests <= per_ns);
            let l = limit(requests, per_ns, burst);
            let mut tat = 0;
            let mut now = NOW;
            let mut admitted = 0u64;
            for (advance, n) in steps {
                now += advance;
                admitted += offer(&l, &mut tat, now, n);
                let elapsed = u128::from(now - NOW);
                let excess = u128::from(admitted.saturating_sub(burst));
                prop_assert!(excess * u128::from(per_ns) <= elapsed * u128::from(requests),
                    "admitted {admitted} burst {burst} elapsed {elapsed}");
            }
        }

        /// After waiting the whole tolerance, a full burst is admitted again (no starvation).
        #[test]
        fn a_rested_bucket_admits_a_full_burst(
            requests in 1u64..1000, per_ms in 1u64..100_000, burst in 1u64..200, pre in 0u64..400,
        ) {
            let l = limit(requests, per_ms * 1_000_000, burst);
            let mut tat = 0;
            offer(&l, &mut tat, NOW, pre);
            let later = tat.max(NOW) ;
            prop_assert_eq!(offer(&l, &mut tat, later, burst + 5), burst);
        }
    }
}
