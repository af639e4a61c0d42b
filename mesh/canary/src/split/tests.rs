use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

// Evenly spread tickets: ceil(k * 2^64 / n), so ticket k sits at exactly k/n of the range.
fn spread(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |k| (u128::from(k) << 64).div_ceil(u128::from(n)) as u64)
}

fn counts(split: &Split, n: u64) -> Vec<u64> {
    let mut c = vec![0; split.weights().len()];
    for t in spread(n) {
        c[split.pick(t)] += 1;
    }
    c
}

#[test]
fn rejects_zero_total() {
    assert!(Split::new(vec![0, 0]).is_none());
    assert!(Split::new(vec![]).is_none());
    assert!(Split::new(vec![u64::MAX, 1]).is_none());
}

#[test]
fn ranges_follow_configuration_order() {
    let s = Split::new(vec![90, 10]).unwrap();
    assert_eq!(s.pick(0), 0);
    assert_eq!(s.pick(u64::MAX), 1);
    assert_eq!(counts(&s, 1000), vec![900, 100]);
}

#[test]
fn zero_weight_subsets_get_nothing() {
    let s = Split::new(vec![0, 5, 0, 5, 0]).unwrap();
    assert_eq!(counts(&s, 1000), vec![0, 500, 0, 500, 0]);
    let only_last = Split::new(vec![0, 0, 1]).unwrap();
    assert_eq!(only_last.pick(0), 2);
    assert_eq!(only_last.pick(u64::MAX), 2);
}

#[test]
fn excluding_spreads_the_share_over_the_others() {
    let s = Split::new(vec![60, 30, 10]).unwrap();
    let mut c = [0u64; 3];
    for t in spread(900) {
        c[s.pick_excluding(t, 2).unwrap()] += 1;
    }
    assert_eq!(c, [600, 300, 0]);
    assert_eq!(Split::new(vec![7]).unwrap().pick_excluding(1, 0), None);
    // Every other subset weighs 0: spread evenly over them.
    let all_in = Split::new(vec![0, 0, 10]).unwrap();
    let mut c = [0u64; 3];
    for t in spread(100) {
        c[all_in.pick_excluding(t, 2).unwrap()] += 1;
    }
    assert_eq!(c, [50, 50, 0]);
}

#[test]
fn remix_is_not_the_identity() {
    assert_ne!(remix(0), 0);
    assert_ne!(remix(1), remix(2));
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn weights() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(0u64..1000, 1..6)
            .prop_filter("total > 0", |w| w.iter().sum::<u64>() > 0)
    }

    // Two weight vectors of the same length.
    fn pairs() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
        (2usize..6).prop_flat_map(|n| {
            let v = || {
                prop::collection::vec(0u64..1000, n)
                    .prop_filter("total > 0", |w| w.iter().sum::<u64>() > 0)
            };
            (v(), v())
        })
    }

    // Whether subset `i`'s share of `b` is at least its share of `a`, compared exactly.
    fn share_grows(a: &Split, b: &Split, i: usize) -> bool {
        u128::from(b.weights()[i]) * u128::from(a.total())
            >= u128::from(a.weights()[i]) * u128::from(b.total())
    }

    proptest! {
        // Evenly spread tickets split exactly by weight, up to one ticket per boundary.
        #[test]
        fn evenly_spread_tickets_split_by_weight(w in weights()) {
            let s = Split::new(w.clone()).unwrap();
            let total: u64 = w.iter().sum();
            let n = total * 37;
            let c = counts(&s, n);
            for (i, wi) in w.iter().enumerate() {
                let expected = wi * 37;
                prop_assert!(c[i].abs_diff(expected) <= 1, "subset {} got {} expected {}", i, c[i], expected);
            }
        }

        // Random tickets converge to the weights (within 5 standard deviations).
        #[test]
        fn random_tickets_converge(w in weights(), seed in any::<u64>()) {
            let s = Split::new(w.clone()).unwrap();
            let total = w.iter().sum::<u64>() as f64;
            let n = 20_000u64;
            let mut c = vec![0u64; w.len()];
            let mut t = seed;
            for _ in 0..n {
                t = remix(t);
                c[s.pick(t)] += 1;
            }
            for (i, wi) in w.iter().enumerate() {
                let p = *wi as f64 / total;
                let sd = (n as f64 * p * (1.0 - p)).sqrt();
                let diff = (c[i] as f64 - n as f64 * p).abs();
                prop_assert!(diff <= 5.0 * sd + 1.0, "subset {} got {} of {} for p={}", i, c[i], n, p);
            }
        }

        // Growing the last subset's share never moves a ticket out of it, whatever happens to
        // the other weights and the total.
        #[test]
        fn last_subset_growth_is_monotone((old, new) in pairs(), ticket in any::<u64>()) {
            let (a, b) = (Split::new(old.clone()).unwrap(), Split::new(new.clone()).unwrap());
            let last = old.len() - 1;
            prop_assume!(share_grows(&a, &b, last));
            if a.pick(ticket) == last {
                prop_assert_eq!(b.pick(ticket), last);
            }
        }

        // The classic rollout: the canary takes weight from the others, one step at a time;
        // every ticket that reached the canary stays there at every later step.
        #[test]
        fn canary_rollout_only_moves_users_in(
            start in prop::collection::vec(0u64..200, 2..5),
            steps in prop::collection::vec((0usize..4, 0u64..50), 1..10),
            ticket in any::<u64>(),
        ) {
            let mut w = start;
            let last = w.len() - 1;
            w[last] += 1;
            let mut in_canary = Split::new(w.clone()).unwrap().pick(ticket) == last;
            for (from, amount) in steps {
                let from = from % last;
                let moved = amount.min(w[from]);
                w[from] -= moved;
                w[last] += moved;
                let now = Split::new(w.clone()).unwrap().pick(ticket) == last;
                prop_assert!(now || !in_canary, "left the canary at weights {:?}", w);
                in_canary = now;
            }
        }

        // The same for the first subset, anchored at the bottom.
        #[test]
        fn first_subset_growth_is_monotone((old, new) in pairs(), ticket in any::<u64>()) {
            let (a, b) = (Split::new(old.clone()).unwrap(), Split::new(new.clone()).unwrap());
            prop_assume!(share_grows(&a, &b, 0));
            if a.pick(ticket) == 0 {
                prop_assert_eq!(b.pick(ticket), 0);
            }
        }

        // Scaling every weight moves nobody.
        #[test]
        fn scaling_weights_moves_nobody(w in weights(), k in 1u64..50, ticket in any::<u64>()) {
            let a = Split::new(w.clone()).unwrap();
            let b = Split::new(w.iter().map(|x| x * k).collect()).unwrap();
            prop_assert_eq!(a.pick(ticket), b.pick(ticket));
        }

        // A ticket never lands on a zero-weight subset.
        #[test]
        fn zero_weight_never_picked(w in weights(), ticket in any::<u64>(), excluded in 0usize..6) {
            let s = Split::new(w.clone()).unwrap();
            prop_assert!(w[s.pick(ticket)] > 0);
            let others_weigh = w.iter().enumerate().any(|(i, x)| i != excluded && *x > 0);
            match s.pick_excluding(ticket, excluded) {
                Some(i) => {
                    prop_assert_ne!(i, excluded);
                    prop_assert!(w[i] > 0 || !others_weigh);
                }
                None => prop_assert!(w.len() == 1 && excluded == 0),
            }
        }
    }
}
