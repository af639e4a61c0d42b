use super::*;

#[test]
fn cas_write_fails_after_a_concurrent_write() {
    let store = FakeStore::default();
    let a = FakeHost::new().with_store(&store);
    let b = FakeHost::new().with_store(&store);
    a.shared_set("k", b"1", None).unwrap();
    let seen = a.shared_get("k").unwrap().unwrap();
    b.shared_set("k", b"2", Some(seen.cas)).unwrap();
    assert_eq!(
        a.shared_set("k", b"3", Some(seen.cas)),
        Err(HostError::CasMismatch)
    );
    assert_eq!(store.get("k").unwrap(), b"2");
}

#[test]
fn forced_conflicts_fail_exactly_n_writes() {
    let store = FakeStore::default();
    let h = FakeHost::new().with_store(&store);
    store.force_cas_conflicts(2);
    assert_eq!(
        h.shared_set("k", b"x", Some(0)),
        Err(HostError::CasMismatch)
    );
    let v = h.shared_get("k").unwrap().unwrap().cas;
    assert_eq!(
        h.shared_set("k", b"x", Some(v)),
        Err(HostError::CasMismatch)
    );
    let v = h.shared_get("k").unwrap().unwrap().cas;
    assert_eq!(h.shared_set("k", b"y", Some(v)), Ok(()));
}

#[test]
fn repeated_headers_keep_every_value() {
    let h = FakeHost::new()
        .request_header("x-a", "1")
        .request_header("X-A", b"\xff");
    assert_eq!(h.header(HeaderMap::Request, "x-a").unwrap().unwrap(), b"1");
    assert_eq!(
        h.header_values(HeaderMap::Request, "x-a").unwrap(),
        vec![b"1".to_vec(), b"\xff".to_vec()]
    );
}

#[test]
fn clock_is_shared_and_moves_only_when_told() {
    let clock = FakeClock::at_nanos(5);
    let h = FakeHost::new().with_clock(&clock);
    assert_eq!(h.now_nanos(), 5);
    clock.advance(Duration::from_nanos(10));
    assert_eq!(h.now_nanos(), 15);
}

#[test]
fn metrics_are_defined_once_by_name() {
    let h = FakeHost::new();
    let a = h.define_metric(MetricKind::Counter, "c").unwrap();
    let b = h.define_metric(MetricKind::Counter, "c").unwrap();
    assert_eq!(a, b);
    h.increment_metric(a, 2).unwrap();
    assert_eq!(h.metrics().value("c"), Some(2));
    let hist = h.define_metric(MetricKind::Histogram, "h").unwrap();
    h.record_metric(hist, 7).unwrap();
    assert_eq!(h.metrics().samples("h"), vec![7]);
}

#[test]
fn cas_on_a_missing_key_writes_as_envoy_does() {
    let h = FakeHost::new();
    assert_eq!(h.shared_set("new", b"1", Some(42)), Ok(()));
    let v = h.shared_get("new").unwrap().unwrap();
    assert_eq!(v.value, b"1");
    assert_eq!(
        h.shared_set("new", b"2", Some(v.cas + 1)),
        Err(HostError::CasMismatch)
    );
    assert_eq!(h.shared_set("new", b"3", Some(0)), Ok(()));
}
