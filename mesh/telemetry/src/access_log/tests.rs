use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn parse(line: &str) -> serde_json::Value {
    assert!(!line.contains('\n'), "{line}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn record() -> AccessRecord<'static> {
    AccessRecord {
        time_nanos: Some(1_700_000_000_123_456_789),
        reporter: "destination",
        method: b"GET",
        path: b"/api?x=1",
        authority: b"reviews:9080",
        protocol: "http",
        status: Some(200),
        grpc_status: None,
        response_flags: "-",
        duration_ms: Some(12),
        request_bytes: Some(345),
        response_bytes: Some(678),
        peer_principal: Some(b"spiffe://cluster.local/ns/shop/sa/web"),
        source_workload: "web",
        source_namespace: "shop",
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        canary: Some("v2"),
        ratelimit: None,
        intentions: Some("allow:web"),
    }
}

#[test]
fn line_has_every_field() {
    let v = parse(&record().to_json(1024));
    assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api?x=1");
    assert_eq!(v["authority"], "reviews:9080");
    assert_eq!(v["status"], 200);
    assert_eq!(v["duration_ms"], 12);
    assert_eq!(v["request_bytes"], 345);
    assert_eq!(v["response_bytes"], 678);
    assert_eq!(v["peer_principal"], "spiffe://cluster.local/ns/shop/sa/web");
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["canary"], "v2");
    assert_eq!(v["intentions"], "allow:web");
    assert!(
        v.get("ratelimit").is_none(),
        "absent decisions are left out"
    );
}

#[test]
fn grpc_status_appears_for_grpc_requests_only() {
    assert!(parse(&record().to_json(1024)).get("grpc_status").is_none());
    let r = AccessRecord {
        protocol: "grpc",
        grpc_status: Some(14),
        ..record()
    };
    let v = parse(&r.to_json(1024));
    assert_eq!(
        (v["status"].as_i64(), v["grpc_status"].as_i64()),
        (Some(200), Some(14))
    );
}

#[test]
fn unknowns_are_null() {
    let r = AccessRecord {
        time_nanos: None,
        status: None,
        peer_principal: None,
        trace_id: None,
        ..record()
    };
    let v = parse(&r.to_json(1024));
    assert!(v["time"].is_null() && v["status"].is_null());
    assert!(v["peer_principal"].is_null() && v["trace_id"].is_null());
}

#[test]
fn hostile_values_stay_one_json_line() {
    let path: &[u8] = b"/a\"b\\c\nd\r\te\x00\x1f\x7f\xff\xfe\"}, \"status\": 1";
    let r = AccessRecord {
        path,
        method: b"G\nET",
        authority: "\u{2028}x".as_bytes(),
        ..record()
    };
    let v = parse(&r.to_json(1024));
    assert_eq!(v["status"], 200);
    let p = v["path"].as_str().unwrap();
    assert!(
        p.starts_with("/a\"b\\c\nd\r\te\u{0}\u{1f}\u{7f}\u{fffd}"),
        "{p:?}"
    );
    assert_eq!(v["method"], "G\nET");
}

#[test]
fn long_fields_are_cut() {
    let long = vec![b'a'; 100_000];
    let r = AccessRecord {
        path: &long,
        ..record()
    };
    let line = r.to_json(64);
    assert!(line.len() < 1024);
    assert_eq!(parse(&line)["path"].as_str().unwrap().len(), 64);
    // A cut in the middle of a UTF-8 sequence still gives valid JSON.
    let utf8 = "é".repeat(100);
    let r = AccessRecord {
        path: utf8.as_bytes(),
        ..record()
    };
    parse(&r.to_json(17));
}

#[test]
fn time_formatting() {
    let t = |n| {
        let mut s = String::new();
        rfc3339_millis(n, &mut s);
        s
    };
    assert_eq!(t(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(t(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(t(4_107_542_399_999_000_000), "2100-02-28T23:59:59.999Z");
    assert_eq!(t(1_709_251_199_000_000_000), "2024-02-29T23:59:59.000Z");
    // The same second again (its text is reused), then another and back.
    assert_eq!(t(1_709_251_199_042_000_000), "2024-02-29T23:59:59.042Z");
    assert_eq!(t(1_709_251_200_001_000_000), "2024-03-01T00:00:00.001Z");
    assert_eq!(t(1_709_251_199_999_999_999), "2024-02-29T23:59:59.999Z");
}

#[test]
fn escapes_quotes_controls_and_line_separators_and_copies_the_rest() {
    let mut out = String::new();
    escape_into("a\"b\\c\nd\u{1}\u{7f}é\u{2028}\u{2029}ü\u{2027}", &mut out);
    assert_eq!(
        out,
        "\"a\\\"b\\\\c\\nd\\u0001\\u007fé\\u2028\\u2029ü\u{2027}\""
    );
}

#[test]
fn one_special_byte_in_any_lane_is_seen() {
    let safe = [b'a'; 19];
    assert!(!maybe_special(&safe));
    for at in 0..safe.len() {
        for b in (0..=0xffu8).filter(|b| *b >= 0x80 || SPECIAL[usize::from(*b)]) {
            let mut s = safe;
            s[at] = b;
            assert!(maybe_special(&s), "byte {b:#x} at {at}");
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn digits_match_core_formatting(n in any::<u64>(), width in 1usize..21) {
            let mut out = String::new();
            push_digits(&mut out, n, width);
            prop_assert_eq!(out, format!("{n:0width$}"));
        }

        #[test]
        fn the_word_scan_flags_exactly_the_strings_a_byte_scan_flags(
            // Mostly safe bytes, with the values on each side of every boundary the scan tests.
            s in proptest::collection::vec(
                proptest::sample::select(vec![
                    b'a', b'a', b'a', b'a', b'a', b'a', 0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23,
                    0x5b, 0x5c, 0x5d, 0x7e, 0x7f, 0x80, 0xe2, 0xff,
                ]),
                0..40,
            ),
        ) {
            let by_byte = s.iter().any(|b| *b >= 0x80 || SPECIAL[usize::from(*b)]);
            prop_assert_eq!(maybe_special(&s), by_byte);
        }

        #[test]
        fn any_string_escapes_to_one_json_string_of_itself(s in any::<String>()) {
            let mut out = String::new();
            escape_into(&s, &mut out);
            let back: String = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back, s);
            prop_assert!(!out.bytes().any(|b| b < 0x20 || b == 0x7f));
            let separators = ['\u{2028}', '\u{2029}'];
            prop_assert!(!out.contains(separators), "{}", out);
        }
    }
}
