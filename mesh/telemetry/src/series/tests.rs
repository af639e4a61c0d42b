use super::*;
use sdk_shim::testing::{FakeHost, FakeMetrics, FakeStore};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn registry() -> SeriesRegistry {
    SeriesRegistry::new(Namespace::from_identity(&[b"test"]))
}

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
    registry().seed(h);
    let mut reg = registry();
    assert!(matches!(reg.admit(h, ";a=1", 2), Admission::Admitted(_)));
    assert!(matches!(reg.admit(h, ";a=2", 2), Admission::Admitted(_)));
    assert_eq!(reg.admit(h, ";a=3", 2), Admission::Overflow);
    assert_eq!(reg.admit(h, ";a=4", 2), Admission::Overflow);
    // Known series keep working once full.
    assert!(matches!(reg.admit(h, ";a=1", 2), Admission::Series(_)));
    assert_eq!(store.get(registry().count_key()).unwrap(), b"2");
    assert_eq!(reg.len(), 2);
    assert!(metrics
        .names()
        .contains(&"istio_requests_total;a=1".to_owned()));
    assert!(!metrics.names().iter().any(|n| n.contains("a=3")));
}

#[test]
fn the_cap_holds_across_workers() {
    let (hosts, store, _) = workers(3);
    registry().seed(&hosts[0]);
    let mut regs: Vec<SeriesRegistry> = (0..3).map(|_| registry()).collect();
    let mut admitted = std::collections::HashSet::new();
    for i in 0..30 {
        let w = i % 3;
        let key = format!(";k={i}");
        if let Admission::Admitted(_) = regs[w].admit(&hosts[w], &key, 10) {
            admitted.insert(key);
        }
    }
    assert_eq!(admitted.len(), 10);
    assert_eq!(store.get(registry().count_key()).unwrap(), b"10");
    // Another worker sees a series admitted elsewhere without taking a slot.
    let first = admitted.iter().next().unwrap().clone();
    let other = (0..3)
        .find(|w| !regs[*w].local.contains_key(&first))
        .unwrap();
    assert!(matches!(
        regs[other].admit(&hosts[other], &first, 10),
        Admission::Series(_)
    ));
    assert_eq!(store.get(registry().count_key()).unwrap(), b"10");
}

#[test]
fn cas_conflicts_are_retried() {
    let (hosts, store, _) = workers(1);
    registry().seed(&hosts[0]);
    store.force_cas_conflicts(3);
    let mut reg = registry();
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
    store
        .shared_set(registry().count_key(), b"7", None)
        .unwrap();
    registry().seed(&hosts[0]);
    assert_eq!(store.get(registry().count_key()).unwrap(), b"7");
}

#[test]
fn labels_find_their_series_by_values_without_host_calls() {
    use crate::labels::Label;
    let (hosts, _store, _metrics) = workers(1);
    let h = &hosts[0];
    registry().seed(h);
    let mut reg = registry();
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

#[test]
fn plugins_keep_separate_budgets_and_ignore_the_old_layout() {
    let (hosts, store, _) = workers(1);
    let h = &hosts[0];
    // Layout 1 left a full budget behind.
    store
        .shared_set("mesh.telemetry.series_count", b"1000", None)
        .unwrap();
    let inbound = SeriesRegistry::new(Namespace::from_identity(&[b"inbound"]));
    let outbound = SeriesRegistry::new(Namespace::from_identity(&[b"outbound"]));
    let (mut inbound, mut outbound) = (inbound, outbound);
    inbound.seed(h);
    outbound.seed(h);
    assert!(matches!(
        inbound.admit(h, ";a=1", 1),
        Admission::Admitted(_)
    ));
    assert_eq!(inbound.admit(h, ";a=2", 1), Admission::Overflow);
    // The other plugin's budget is untouched by the first one's series.
    assert!(matches!(
        outbound.admit(h, ";a=2", 1),
        Admission::Admitted(_)
    ));
    assert_eq!(store.get(inbound.count_key()).unwrap(), b"1");
    assert_eq!(store.get(outbound.count_key()).unwrap(), b"1");
}
