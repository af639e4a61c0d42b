use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn fixed(bytes: &mut [u8]) -> bool {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    true
}

#[test]
fn parses_a_valid_header() {
    let tp = TraceParent::parse(VALID.as_bytes()).unwrap();
    assert_eq!(tp.version, 0);
    assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp.with_trace_id_hex(str::to_owned), tp.trace_id_hex());
    assert_eq!(
        tp.parent_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert!(tp.sampled());
    assert_eq!(tp.to_string(), VALID);
}

#[test]
fn rejects_invalid_headers() {
    use TraceParentError::*;
    let cases: &[(&str, TraceParentError)] = &[
        ("", Length),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            Length,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            Length,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            Length,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            Hex,
        ),
        (
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Hex,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            Hex,
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Version,
        ),
        (
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Delimiter,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            Delimiter,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ZeroTraceId,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            ZeroParentId,
        ),
    ];
    for (input, err) in cases {
        assert_eq!(TraceParent::parse(input.as_bytes()), Err(*err), "{input:?}");
    }
    assert!(TraceParent::parse(&[0xff; 55]).is_err());
}

#[test]
fn a_hex_pair_parses_only_from_lowercase_digits() {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    for hi in 0..=u8::MAX {
        for lo in 0..=u8::MAX {
            let want = match (digit(hi), digit(lo)) {
                (Some(h), Some(l)) => Ok([h << 4 | l]),
                _ => Err(TraceParentError::Hex),
            };
            assert_eq!(parse_hex::<1>(&[hi, lo]), want, "{hi:#x} {lo:#x}");
        }
    }
}

#[test]
fn later_versions_may_carry_more_fields() {
    let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
    assert_eq!(TraceParent::parse(v1.as_bytes()).unwrap().version, 1);
    let v1_exact = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert!(TraceParent::parse(v1_exact.as_bytes()).is_ok());
}

#[test]
fn generated_contexts_are_valid() {
    let tp = TraceParent::generate(fixed, false).unwrap();
    assert_eq!(
        tp.to_string(),
        "00-0102030405060708090a0b0c0d0e0f10-1112131415161718-00"
    );
    assert_eq!(TraceParent::parse(tp.to_string().as_bytes()), Ok(tp));
    let zeros = TraceParent::generate(
        |b| {
            b.fill(0);
            true
        },
        true,
    )
    .unwrap();
    assert!(TraceParent::parse(zeros.to_string().as_bytes()).is_ok());
    assert!(zeros.sampled());
    assert!(TraceParent::generate(|_| false, true).is_none());
}

#[test]
fn decide_keeps_replaces_or_starts() {
    assert!(matches!(
        decide(Some(VALID.as_bytes()), true, false, fixed),
        TraceOutcome::Kept(_)
    ));
    let replaced = decide(Some(b"garbage"), false, false, fixed);
    assert!(matches!(replaced, TraceOutcome::Replaced(t) if t.flags == 0));
    assert!(matches!(decide(None, true, true, fixed), TraceOutcome::Started(t) if t.sampled()));
    assert_eq!(decide(None, false, false, fixed), TraceOutcome::Absent);
    assert_eq!(
        decide(Some(b"garbage"), true, false, |_| false),
        TraceOutcome::Removed
    );
    assert_eq!(decide(None, true, false, |_| false), TraceOutcome::Absent);
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = TraceParent::parse(&bytes);
        }

        #[test]
        fn format_then_parse_round_trips(t in any::<[u8; 16]>(), p in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(t != [0; 16] && p != [0; 8]);
            let tp = TraceParent { version: 0, trace_id: t, parent_id: p, flags };
            prop_assert_eq!(TraceParent::parse(tp.to_string().as_bytes()), Ok(tp));
        }
    }
}
