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
fn buckets_count_bins_starting_at_or_below_the_bound() {
    let mut h = EnvoyHistogram::default();
    for v in [0, 1, 4, 5, 6, 10, 99, 1000, 1016, 1100] {
        h.record(v);
    }
    // 5 is in le=5; 1016's bin [1000, 1100) starts at 1000 so it counts in le=1000 (as Envoy).
    let c = h.cumulative(&[0.5, 1.0, 5.0, 10.0, 25.0, 100.0, 1000.0, 2500.0]);
    assert_eq!(c, vec![1, 2, 4, 6, 6, 7, 9, 10]);
    assert_eq!(h.count(), 10);
}

#[test]
fn sum_adds_harmonic_means_of_bin_edges() {
    // Figures read from Envoy 1.40's /stats/prometheus for single samples.
    let single = |v| {
        let mut h = EnvoyHistogram::default();
        h.record(v);
        h.sum()
    };
    assert!((single(269) - 264.905_660_377_358_5).abs() < 1e-9);
    assert!((single(42) - 42.494_117_647_058_82).abs() < 1e-9);
    assert!((single(413) - 414.939_759_036_144_5).abs() < 1e-9);
    assert_eq!(single(0), 0.0);
    let mut h = EnvoyHistogram::default();
    for v in [4, 2, 41] {
        h.record(v);
    }
    assert!(
        (h.sum() - 47.592_139_107_468_72).abs() < 1e-9,
        "{}",
        h.sum()
    );
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
            // Two significant digits: each sample counts within 10% of itself (+0.1 for 1 digit).
            prop_assert!((h.sum() - exact).abs() <= exact * 0.1 + 0.1 * samples.len() as f64 + 1e-6);
        }
    }
}
