use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn bins_have_two_significant_digits() {
    let b = |v| {
        let bin = Bin::of(v);
        (bin.lower(), bin.upper())
    };
    assert_eq!(b(0), (0.0, 0.0));
    assert_eq!(b(5), (5.0, 5.1));
    assert_eq!(b(87), (87.0, 88.0));
    assert_eq!(b(100), (100.0, 110.0));
    assert_eq!(b(1234), (1200.0, 1300.0));
    assert_eq!(Bin::of(u64::MAX).lower(), 18.0 * 1e18);
}

#[test]
fn buckets_count_bins_entirely_below_the_bound() {
    let mut h = EnvoyHistogram::default();
    for v in [0, 4, 5, 10, 99, 1000] {
        h.record(v);
    }
    // 0 -> le 0.5; 4 -> [4, 4.1) within 5; 5 -> [5, 5.1) not within 5; 10 -> [10, 11) within 25.
    let c = h.cumulative(&[0.5, 1.0, 5.0, 10.0, 25.0, 100.0, 1000.0, 2500.0]);
    assert_eq!(c, vec![1, 1, 2, 3, 4, 5, 5, 6]);
    assert_eq!(h.count(), 6);
}

#[test]
fn sum_adds_bin_midpoints() {
    let mut h = EnvoyHistogram::default();
    h.record(0);
    h.record(5);
    h.record(87);
    h.record(1234);
    let expect = 0.0 + 5.05 + 87.5 + 1250.0;
    assert!((h.sum() - expect).abs() < 1e-9, "{}", h.sum());
}

#[test]
fn duration_rounds_down_to_milliseconds() {
    assert_eq!(nanos_to_millis(999_999), 0);
    assert_eq!(nanos_to_millis(1_000_000), 1);
    assert_eq!(nanos_to_millis(2_500_000_000), 2500);
}

#[test]
fn bounds_are_sorted() {
    assert!(DEFAULT_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    assert!(SIZE_BUCKETS.windows(2).all(|w| w[0] < w[1]));
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sample_lies_in_its_bin(v in any::<u64>()) {
            let bin = Bin::of(v);
            let x = v as f64;
            prop_assert!(bin.lower() <= x * (1.0 + 1e-12));
            prop_assert!(v == 0 || x < bin.upper() * (1.0 + 1e-12));
        }

        #[test]
        fn cumulative_is_monotonic_and_sum_close(samples in proptest::collection::vec(0u64..10_000_000, 0..200)) {
            let mut h = EnvoyHistogram::default();
            for s in &samples {
                h.record(*s);
            }
            let c = h.cumulative(&DEFAULT_BUCKETS);
            prop_assert!(c.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(c.last().copied().unwrap_or(0) <= h.count());
            prop_assert_eq!(h.count(), samples.len() as u64);
            let exact: f64 = samples.iter().map(|s| *s as f64).sum();
            // Two significant digits: each midpoint is within 5% (+0.05 for one-digit values).
            prop_assert!((h.sum() - exact).abs() <= exact * 0.05 + 0.05 * samples.len() as f64 + 1e-6);
        }
    }
}
