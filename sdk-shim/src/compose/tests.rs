use super::*;
use crate::decision;
use std::time::Duration;

// Decision keys of three made-up capabilities (sdk-shim knows no capability).
const KEY_A: &str = "mesh.a";
const KEY_B: &str = "mesh.b";
const KEY_C: &str = "mesh.c";
use crate::testing::FakeHost;

#[test]
fn decisions_stay_in_memory_and_other_properties_reach_the_host() {
    let host = FakeHost::new().property(&["source", "address"], "10.0.0.1:5");
    let decisions = PassState::new(&[(KEY_A, true), (KEY_B, true), (KEY_C, true)]);
    let h = PassHost::new(&host, &decisions, false);
    decision::publish(&h, KEY_A, "v2").unwrap();
    assert_eq!(decision::read(&h, KEY_A).as_deref(), Some("v2"));
    assert_eq!(host.property_value(&[KEY_A]), None, "no host write");
    assert_eq!(
        h.property(&["source", "address"]).unwrap().unwrap(),
        b"10.0.0.1:5"
    );
    h.set_property(&["other"], b"x").unwrap();
    assert_eq!(host.property_value(&["other"]).unwrap(), b"x");
}

#[test]
fn write_through_also_reaches_the_host_but_reads_stay_in_memory() {
    let host = FakeHost::new();
    let decisions = PassState::new(&[(KEY_A, true), (KEY_B, true), (KEY_C, true)]);
    let h = PassHost::new(&host, &decisions, true);
    decision::publish(&h, KEY_B, "allowed").unwrap();
    assert_eq!(host.property_value(&[KEY_B]).unwrap(), b"allowed");
    let calls = host.host_calls();
    assert_eq!(decision::read(&h, KEY_B).as_deref(), Some("allowed"));
    assert_eq!(host.host_calls(), calls, "a read is served from memory");
}

#[test]
fn a_verdict_is_lent_from_memory_and_an_absent_one_is_none() {
    let host = FakeHost::new().property(&[KEY_C], [b'o', b'k', 0xff]);
    let decisions = PassState::new(&[(KEY_A, true), (KEY_B, true), (KEY_C, false)]);
    let h = PassHost::new(&host, &decisions, false);
    decision::publish(&h, KEY_A, "v2").unwrap();
    let calls = host.host_calls();
    let both = decision::with(&h, KEY_A, |a| {
        decision::with(&h, KEY_B, |b| (a.map(str::to_owned), b.map(str::to_owned)))
    });
    assert_eq!(both, Some(Some((Some("v2".to_owned()), None))));
    assert_eq!(host.host_calls(), calls, "lent from memory");
    // Another module's verdict comes from the host, non-UTF-8 bytes replaced.
    let c = decision::with(&h, KEY_C, |c| c.map(str::to_owned));
    assert_eq!(c, Some(Some("ok\u{fffd}".to_owned())));
    assert_eq!(
        decision::with(&host, "mesh.none", |v| v.is_none()),
        Some(true)
    );
}

#[test]
fn verdicts_of_capabilities_outside_the_pass_come_from_the_host() {
    // This pass runs `b` only; `a` ran in another module of the chain.
    let host = FakeHost::new().property(&[KEY_A], "v1");
    let decisions = PassState::new(&[(KEY_A, false), (KEY_B, true), (KEY_C, false)]);
    let h = PassHost::new(&host, &decisions, false);
    assert_eq!(decision::read(&h, KEY_A).as_deref(), Some("v1"));
    assert_eq!(decision::read(&h, KEY_B), None);
    let calls = host.host_calls();
    decision::publish(&h, KEY_B, "allowed").unwrap();
    assert_eq!(decision::read(&h, KEY_B).as_deref(), Some("allowed"));
    assert_eq!(host.host_calls(), calls);
}

#[test]
fn connection_properties_are_read_once_per_request() {
    let host = FakeHost::new()
        .property(&["connection", "mtls"], [1])
        .property(&["request", "path"], "/a");
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false);
    let before = host.host_calls();
    for _ in 0..3 {
        assert_eq!(h.property(&["connection", "mtls"]).unwrap().unwrap(), [1]);
        assert_eq!(h.property(&["source", "address"]).unwrap(), None);
    }
    assert_eq!(
        host.host_calls() - before,
        2,
        "one read each, absent ones included"
    );
    // Request properties are not cached: they change as the request goes on.
    h.property(&["request", "path"]).unwrap();
    h.property(&["request", "path"]).unwrap();
    assert_eq!(host.host_calls() - before, 4);
}

#[test]
fn a_header_is_read_once_per_callback_until_the_pass_writes_it() {
    let host = FakeHost::new().request("GET", "reviews", "/a");
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false);
    let before = host.host_calls();
    for _ in 0..3 {
        assert_eq!(
            h.header(HeaderMap::Request, ":path").unwrap().unwrap(),
            b"/a"
        );
        assert_eq!(h.header(HeaderMap::Request, "x-absent").unwrap(), None);
    }
    // Names are case-insensitive; the other map is another header.
    assert_eq!(
        h.header(HeaderMap::Request, ":PATH").unwrap().unwrap(),
        b"/a"
    );
    assert_eq!(host.host_calls() - before, 2);
    h.header(HeaderMap::Response, ":path").unwrap();
    assert_eq!(host.host_calls() - before, 3);

    // A write through the pass is seen by the next read.
    h.set_header(HeaderMap::Request, "x-absent", b"1").unwrap();
    assert_eq!(
        h.header(HeaderMap::Request, "x-absent").unwrap().unwrap(),
        b"1"
    );
    h.add_header(HeaderMap::Request, "x-absent", b"2").unwrap();
    h.header(HeaderMap::Request, "x-absent").unwrap();
    h.remove_header(HeaderMap::Request, "x-absent").unwrap();
    assert_eq!(h.header(HeaderMap::Request, "x-absent").unwrap(), None);
    assert_eq!(host.host_calls() - before, 3 + 2 * 3);

    // The next callback gets a new pass, which reads the host again.
    let next = PassHost::new(&host, &state, false);
    next.header(HeaderMap::Request, ":path").unwrap();
    assert_eq!(host.host_calls() - before, 10);
}

#[test]
fn the_clock_is_read_once_per_callback() {
    let host = FakeHost::new();
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false);
    let first = h.now_nanos();
    host.clock().advance(Duration::from_millis(5));
    assert_eq!(h.now_nanos(), first, "one instant for the whole callback");
    let next = PassHost::new(&host, &state, false);
    assert_eq!(next.now_nanos(), first + 5_000_000);
}

#[test]
fn a_header_name_too_long_to_cache_is_read_from_the_host_each_time() {
    let long = format!("x-{}", "a".repeat(InlineKey::MAX));
    let host = FakeHost::new()
        .request("GET", "reviews", "/a")
        .request_header(&long, "v");
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false);
    let before = host.host_calls();
    for _ in 0..2 {
        assert_eq!(h.header(HeaderMap::Request, &long).unwrap().unwrap(), b"v");
    }
    assert_eq!(host.host_calls() - before, 2);
    // A name of exactly the limit is cached.
    let edge = "b".repeat(InlineKey::MAX);
    h.header(HeaderMap::Request, &edge).unwrap();
    h.header(HeaderMap::Request, &edge).unwrap();
    assert_eq!(host.host_calls() - before, 3);
}

#[test]
fn property_paths_are_told_apart_by_their_segments() {
    let key = |p: &[&str]| InlineKey::path(p);
    let mtls = key(&["connection", "mtls"]).unwrap();
    assert_eq!(key(&["connection", "mtls"]), Some(mtls));
    for other in [
        &["connection", "mtl"][..],
        &["connection", "mtls", "x"],
        &["connectionmtls"],
        &["connection"],
    ] {
        assert_ne!(key(other), Some(mtls), "{other:?}");
    }
    // Segments are length-prefixed: no byte in one can make it pose as two.
    assert_ne!(key(&["connection", "a\0b"]), key(&["connection", "a", "b"]));
    assert_ne!(
        key(&["connection", "\u{1}ab"]),
        key(&["connection", "", "ab"])
    );
    let host = FakeHost::new()
        .property(&["connection", "a", "b"], "two")
        .property(&["connection", "a\0b"], "one");
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false);
    assert_eq!(
        h.property(&["connection", "a", "b"]).unwrap().unwrap(),
        b"two"
    );
    assert_eq!(
        h.property(&["connection", "a\0b"]).unwrap().unwrap(),
        b"one"
    );
}

#[test]
fn a_full_cache_stays_correct_and_reads_the_rest_from_the_host() {
    let names: Vec<String> = (0..HEADER_ENTRIES + 3).map(|i| format!("x-h{i}")).collect();
    let host = names
        .iter()
        .fold(FakeHost::new(), |h, n| h.request_header(n, n.as_str()));
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false);
    let before = host.host_calls();
    for _ in 0..2 {
        for n in &names {
            assert_eq!(
                h.header(HeaderMap::Request, n).unwrap().unwrap(),
                n.as_bytes()
            );
        }
    }
    // The first pass reads every header; the second only those beyond the cache.
    assert_eq!(host.host_calls() - before, (names.len() + 3) as u64);
}

#[test]
fn lent_reads_come_from_what_the_pass_holds_and_match_copied_ones() {
    let host = FakeHost::new()
        .request("GET", "reviews", "/a")
        .request_header("x-a", "1")
        .property(&["connection", "mtls"], [1]);
    let state = PassState::new(&[(KEY_A, true)]);
    let h = PassHost::new(&host, &state, false).with_whole_request_map(true);
    decision::publish(&h, KEY_A, "v1").unwrap();
    assert_eq!(h.header(HeaderMap::Request, "x-a").unwrap().unwrap(), b"1");
    let mtls = h.property(&["connection", "mtls"]).unwrap();
    let calls = host.host_calls();
    let lent = |v: Option<&[u8]>| v.map(<[u8]>::to_vec);
    assert_eq!(
        h.header_with(HeaderMap::Request, "x-a", lent).unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(
        h.header_with(HeaderMap::Request, "x-b", lent).unwrap(),
        None
    );
    assert_eq!(
        h.property_with(&["connection", "mtls"], lent).unwrap(),
        mtls
    );
    assert_eq!(
        h.property_with(&[KEY_A], lent).unwrap(),
        Some(b"v1".to_vec())
    );
    assert_eq!(host.host_calls(), calls, "all served from the pass");
}

#[test]
fn a_write_from_inside_a_lent_read_never_panics_and_is_seen_next() {
    let host = FakeHost::new()
        .request("GET", "reviews", "/a")
        .request_header("x-a", "old");
    let state = PassState::new(&[(KEY_A, true)]);
    let h = PassHost::new(&host, &state, false).with_whole_request_map(true);
    let seen = h
        .header_with(HeaderMap::Request, "x-a", |v| {
            let old = v.map(<[u8]>::to_vec);
            h.set_header(HeaderMap::Request, "x-a", b"new").unwrap();
            // A read nested in the writing callback sees the write too.
            assert_eq!(
                h.header(HeaderMap::Request, "x-a").unwrap().unwrap(),
                b"new"
            );
            old
        })
        .unwrap();
    assert_eq!(seen.as_deref(), Some(&b"old"[..]));
    assert_eq!(
        h.header(HeaderMap::Request, "x-a").unwrap().unwrap(),
        b"new"
    );
    // A verdict lent out cannot be replaced from inside its own read: an error, not a trap.
    decision::publish(&h, KEY_A, "v1").unwrap();
    let inner = h
        .property_with(&[KEY_A], |_| decision::publish(&h, KEY_A, "v2"))
        .unwrap();
    assert_eq!(inner, Err(HostError::Internal));
    assert_eq!(decision::read(&h, KEY_A).as_deref(), Some("v1"));
}

#[test]
fn a_kept_header_value_shares_the_whole_map_and_a_single_read_owns_its_copy() {
    let host = FakeHost::new()
        .request("GET", "svc", "/items")
        .request_header("x-a", "1")
        .request_header("x-a", "2");
    let state = PassState::default();
    let h = PassHost::new(&host, &state, false).with_whole_request_map(true);
    let before = host.host_calls();
    let path = h
        .header_value(HeaderMap::Request, ":path")
        .unwrap()
        .unwrap();
    let first = h.header_value(HeaderMap::Request, "X-A").unwrap().unwrap();
    assert!(matches!(path, HeaderValue::Shared(..)));
    assert_eq!((&*path, &*first), (&b"/items"[..], &b"1"[..]));
    assert_eq!(h.header_value(HeaderMap::Request, "missing").unwrap(), None);
    assert_eq!(
        host.host_calls() - before,
        1,
        "one map read serves every value"
    );

    let single = PassHost::new(&host, &state, false);
    let path = single
        .header_value(HeaderMap::Request, ":path")
        .unwrap()
        .unwrap();
    assert_eq!(path, HeaderValue::Owned(b"/items".to_vec()));
}

#[test]
fn verdicts_of_any_length_read_back_as_published() {
    let host = FakeHost::new();
    let decisions = PassState::new(&[(KEY_A, true), (KEY_B, true)]);
    let h = PassHost::new(&host, &decisions, false);
    let long = "x".repeat(Verdict::INLINE + 1);
    for value in ["", "v2", &"y".repeat(Verdict::INLINE), &long] {
        decision::publish(&h, KEY_A, value).unwrap();
        assert_eq!(decision::read(&h, KEY_A).as_deref(), Some(value));
        let lent = h
            .property_with(&[KEY_A], |v| v.map(<[u8]>::to_vec))
            .unwrap();
        assert_eq!(lent.as_deref(), Some(value.as_bytes()));
    }
}

#[test]
fn a_pass_holds_verdicts_only_when_one_of_its_filters_decides() {
    let host = FakeHost::new();
    let deciding = PassState::new(&[(KEY_A, false), (KEY_B, true)]);
    assert!(PassHost::new(&host, &deciding, false).verdicts_in_memory());
    let reading = PassState::new(&[(KEY_A, false), (KEY_B, false)]);
    assert!(!PassHost::new(&host, &reading, false).verdicts_in_memory());
    assert!(!host.verdicts_in_memory());
}
