//! Prometheus label values and the JSON access log (mesh-telemetry).

use crate::Input;
use mesh_telemetry::access_log::AccessRecord;
use mesh_telemetry::labels::{
    decode_value, encode_value, parse_stat_name, stat_name, Label, LabelValues, Metric,
    MAX_VALUE_BYTES, UNKNOWN,
};

/// Label escaping: the encoding uses only tag-safe bytes (never the `;` and `=` that delimit
/// a stat name, never a trailing `.` Envoy would drop), decodes back to the (cut) raw bytes,
/// so two different values never share a series, and a whole series key parses back.
pub fn labels(data: &[u8]) {
    let mut input = Input::new(data);
    let a = input.field();
    let b = input.field();
    let enc = |raw: &[u8]| {
        let mut s = String::new();
        encode_value(raw, &mut s);
        s
    };
    let (ea, eb) = (enc(a), enc(b));
    for (raw, e) in [(a, &ea), (b, &eb)] {
        assert!(
            e.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~:/@,%".contains(&c)),
            "{e:?} has a byte outside the tag-safe set"
        );
        assert!(!e.ends_with('.'), "{e:?} ends with a dot");
        if raw.is_empty() {
            assert_eq!(e, UNKNOWN);
        } else {
            let cut = &raw[..raw.len().min(MAX_VALUE_BYTES)];
            assert_eq!(decode_value(e), cut, "does not round-trip");
        }
    }
    let cut = |r: &[u8]| r[..r.len().min(MAX_VALUE_BYTES)].to_vec();
    if !a.is_empty() && !b.is_empty() && cut(a) != cut(b) {
        assert_ne!(ea, eb, "two values share an encoding");
    }

    let mut values = LabelValues::default();
    values.set(Label::SourceWorkload, a);
    values.set(Label::RequestProtocol, b);
    let key = values.series_key();
    let name = stat_name(Metric::RequestsTotal, &key);
    let (metric, pairs) = parse_stat_name(&name);
    assert_eq!(metric, Metric::RequestsTotal.name());
    assert_eq!(pairs.len(), Label::ALL.len());
    for ((label, value), expected) in pairs.iter().zip(Label::ALL) {
        assert_eq!(*label, expected.name());
        assert_eq!(*value, values.get(expected));
    }
}

/// The access log: every line is one JSON object (no raw line break), whose string fields
/// are the request's bytes cut to the limit, invalid UTF-8 replaced.
pub fn access_log(data: &[u8]) {
    let mut input = Input::new(data);
    let max = usize::from(input.byte()) * 4;
    let time = input.u64();
    let method = input.field();
    let path = input.field();
    let authority = input.field();
    let principal = input.field();
    let status = i64::from(input.byte() as i8) * 7;
    let record = AccessRecord {
        time_nanos: (!time.is_multiple_of(3)).then_some(time),
        reporter: "destination",
        method,
        path,
        authority,
        protocol: "HTTP/1.1",
        status: Some(status),
        grpc_status: (status % 2 == 0).then_some(status / 2),
        response_flags: "-",
        duration_ms: Some(time >> 32),
        request_bytes: None,
        response_bytes: Some(time & 0xffff),
        peer_principal: (!principal.is_empty()).then_some(principal),
        source_workload: "web",
        source_namespace: "default",
        trace_id: None,
        canary: Some("v1"),
        ratelimit: None,
        intentions: Some("allow:web"),
    };
    let line = record.to_json(max);
    assert!(
        !line.contains('\n') && !line.contains('\r'),
        "a raw line break"
    );
    assert!(
        !line.contains('\u{2028}') && !line.contains('\u{2029}'),
        "a raw line separator"
    );
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let cut = |raw: &[u8]| String::from_utf8_lossy(&raw[..raw.len().min(max)]).into_owned();
    assert_eq!(v["method"], cut(method).as_str());
    assert_eq!(v["path"], cut(path).as_str());
    assert_eq!(v["authority"], cut(authority).as_str());
    assert_eq!(v["status"], status);
    if principal.is_empty() {
        assert!(v["peer_principal"].is_null());
    } else {
        assert_eq!(v["peer_principal"], cut(principal).as_str());
    }
    match record.time_nanos {
        None => assert!(v["time"].is_null()),
        Some(t) => {
            let s = v["time"].as_str().expect("time is a string");
            let b = s.as_bytes();
            assert_eq!(b.len(), 24, "{s}");
            for (i, c) in b.iter().enumerate() {
                let want = match i {
                    4 | 7 => Some(b'-'),
                    10 => Some(b'T'),
                    13 | 16 => Some(b':'),
                    19 => Some(b'.'),
                    23 => Some(b'Z'),
                    _ => None,
                };
                match want {
                    Some(w) => assert_eq!(*c, w, "{s}"),
                    None => assert!(c.is_ascii_digit(), "{s}"),
                }
            }
            let millis: u64 = s[20..23].parse().unwrap_or(9999);
            assert_eq!(millis, (t / 1_000_000) % 1000);
            let secs: u64 = s[17..19].parse().unwrap_or(99);
            assert_eq!(secs, (t / 1_000_000_000) % 60);
        }
    }
}
