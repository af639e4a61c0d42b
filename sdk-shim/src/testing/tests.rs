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

/// A root that accepts only `ok` and keeps the first random word its worker drew; its filter
/// pauses a request carrying `x-stop` and logs each later callback.
#[derive(Default)]
struct Gate {
    drawn: u64,
}

struct GateFilter;

impl RootFilter for Gate {
    type Http = GateFilter;
    fn on_configure<H: crate::ConfigHost>(&mut self, host: &H, config: &[u8]) -> bool {
        let mut word = [0u8; 8];
        host.fill_random(&mut word).unwrap();
        self.drawn = u64::from_le_bytes(word);
        if config != b"ok" {
            host.log(LogLevel::Error, "gate: refused");
        }
        config == b"ok"
    }
    fn new_http(&self) -> GateFilter {
        GateFilter
    }
}

impl HttpFilter for GateFilter {
    fn on_request_headers<H: crate::StreamHost>(&mut self, host: &H, _: bool) -> Action {
        match host.header(HeaderMap::Request, "x-stop").unwrap() {
            Some(_) => Action::Pause,
            None => Action::Continue,
        }
    }
    fn on_response_headers<H: crate::StreamHost>(&mut self, host: &H, _: bool) -> Action {
        let status = host
            .header(HeaderMap::Response, ":status")
            .unwrap()
            .unwrap();
        let status = String::from_utf8(status).unwrap();
        host.log(LogLevel::Info, &format!("response {status}"));
        Action::Continue
    }
    fn on_log<H: crate::StreamHost>(&mut self, host: &H) {
        host.log(LogLevel::Info, "log");
    }
}

#[test]
fn a_fake_proxy_shares_its_store_clock_and_stats_with_every_host() {
    let proxy = FakeProxy::new();
    let (a, b) = (proxy.host(), proxy.get("svc", "/x"));
    assert_eq!(a.now_nanos(), FakeHost::new().now_nanos());
    proxy.clock.advance(Duration::from_secs(1));
    assert_eq!(b.now_nanos(), a.now_nanos());
    a.shared_set("k", b"1", None).unwrap();
    assert_eq!(b.shared_get("k").unwrap().unwrap().value, b"1");
    let id = a.define_metric(MetricKind::Counter, "c").unwrap();
    a.increment_metric(id, 1).unwrap();
    assert_eq!(proxy.metrics.value("c"), Some(1));
    assert_eq!(b.request_header_str(":method").as_deref(), Some("GET"));
    assert_eq!(b.request_header_str(":authority").as_deref(), Some("svc"));
    assert_eq!(b.request_header_str(":path").as_deref(), Some("/x"));
}

#[test]
fn fake_proxy_workers_draw_their_own_randomness_and_report_refusals() {
    let proxy = FakeProxy::default();
    let [one, again, two] = [1, 1, 2].map(|seed| proxy.worker::<Gate>(b"ok", seed).unwrap());
    assert_eq!(one.drawn, again.drawn);
    assert_ne!(one.drawn, two.drawn);
    assert_eq!(
        proxy.worker::<Gate>(b"no", 1).err(),
        Some(vec!["gate: refused".to_owned()])
    );
}

#[test]
fn an_exchange_answers_only_requests_that_continue_and_always_logs() {
    let proxy = FakeProxy::new();
    let root: Gate = proxy.worker(b"ok", 1).unwrap();
    let host = proxy.get("svc", "/");
    assert_eq!(
        FakeProxy::exchange(&root, &host, 503),
        Exchange {
            request: Action::Continue,
            response: Some(Action::Continue)
        }
    );
    assert_eq!(host.logs_at(LogLevel::Info), ["response 503", "log"]);
    let host = proxy.get("svc", "/").request_header("x-stop", "1");
    assert_eq!(
        FakeProxy::exchange(&root, &host, 503),
        Exchange {
            request: Action::Pause,
            response: None
        }
    );
    assert_eq!(host.response_header_str(":status"), None);
    assert_eq!(host.logs_at(LogLevel::Info), ["log"]);
}
