use super::*;
use sdk_shim::testing::{FakeHost, FakeMetrics, FakeStore};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn workers(n: usize) -> (Vec<FakeHost>, FakeStore, FakeMetrics) {
    let (store, metrics) = (FakeStore::default(), FakeMetrics::default());
    let hosts = (0..n)
        .map(|_| FakeHost::new().with_store(&store).with_metrics(&metrics))
        .collect();
    (hosts, store, metrics)
}

#[test]
fn admits_until_the_cap_then_overflows() {
    let (hosts, store, metrics) = workers(1);
    let h = &hosts[0];
    SeriesRegistry::seed(h);
    let mut reg = SeriesRegistry::default();
    assert!(matches!(reg.admit(h, ";a=1", 2), Admission::Admitted(_)));
    assert!(matches!(reg.admit(h, ";a=2", 2), Admission::Admitted(_)));
    assert_eq!(reg.admit(h, ";a=3", 2), Admission::Overflow);
    assert_eq!(reg.admit(h, ";a=4", 2), Admission::Overflow);
    // Known series keep working once full.
    assert!(matches!(reg.admit(h, ";a=1", 2), Admission::Series(_)));
    assert_eq!(store.get(COUNT_KEY).unwrap(), b"2");
    assert_eq!(reg.len(), 2);
    assert!(metrics
        .names()
        .contains(&"istio_requests_total;a=1".to_owned()));
    assert!(!metrics.names().iter().any(|n| n.contains("a=3")));
}

#[test]
fn the_cap_holds_across_workers() {
    let (hosts, store, _) = workers(3);
    SeriesRegistry::seed(&hosts[0]);
    let mut regs: Vec<SeriesRegistry> = (0..3).map(|_| SeriesRegistry::default()).collect();
    let mut admitted = std::collections::HashSet::new();
    for i in 0..30 {
        let w = i % 3;
        let key = format!(";k={i}");
        if let Admission::Admitted(_) = regs[w].admit(&hosts[w], &key, 10) {
            admitted.insert(key);
        }
    }
    assert_eq!(admitted.len(), 10);
    assert_eq!(store.get(COUNT_KEY).unwrap(), b"10");
    // Another worker sees a series admitted elsewhere without taking a slot.
    let first = admitted.iter().next().unwrap().clone();
    let other = (0..3)
        .find(|w| !regs[*w].local.contains_key(&first))
        .unwrap();
    assert!(matches!(
        regs[other].admit(&hosts[other], &first, 10),
        Admission::Series(_)
    ));
    assert_eq!(store.get(COUNT_KEY).unwrap(), b"10");
}

#[test]
fn cas_conflicts_are_retried() {
    let (hosts, store, _) = workers(1);
    SeriesRegistry::seed(&hosts[0]);
    store.force_cas_conflicts(3);
    let mut reg = SeriesRegistry::default();
    assert!(matches!(
        reg.admit(&hosts[0], ";x=1", 5),
        Admission::Admitted(_)
    ));
    store.force_cas_conflicts(100);
    assert_eq!(reg.admit(&hosts[0], ";x=2", 5), Admission::Overflow);
}

#[test]
fn seeding_keeps_an_existing_count() {
    let (hosts, store, _) = workers(1);
    store.shared_set(COUNT_KEY, b"7", None).unwrap();
    SeriesRegistry::seed(&hosts[0]);
    assert_eq!(store.get(COUNT_KEY).unwrap(), b"7");
}

#[test]
fn labels_find_their_series_by_values_without_host_calls() {
    use crate::labels::Label;
    let (hosts, _store, _metrics) = workers(1);
    let h = &hosts[0];
    SeriesRegistry::seed(h);
    let mut reg = SeriesRegistry::default();
    let mut ok = LabelValues::default();
    ok.set_str(Label::ResponseCode, "200");
    let mut failed = LabelValues::default();
    failed.set_str(Label::ResponseCode, "503");

    let Admission::Admitted(first) = reg.admit_labels(h, &ok, 10) else {
        panic!("a new series is admitted");
    };
    let Admission::Admitted(other) = reg.admit_labels(h, &failed, 10) else {
        panic!("another label set is another series");
    };
    assert_ne!(first, other);
    let before = h.host_calls();
    assert_eq!(reg.admit_labels(h, &ok, 10), Admission::Series(first));
    assert_eq!(h.host_calls(), before, "a known series costs no host call");
    // The full key names the same series.
    assert_eq!(reg.admit(h, &ok.series_key(), 10), Admission::Series(first));
    assert_eq!(reg.len(), 2);
}
