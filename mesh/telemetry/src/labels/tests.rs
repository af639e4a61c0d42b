use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn enc(raw: &[u8]) -> String {
    let mut s = String::new();
    encode_value(raw, &mut s);
    s
}

/// What Envoy's tag extraction does with our `stats_tags`: every regex runs on the full name,
/// group 2 is the tag value, group 1 is cut from the name.
fn extract(name: &str) -> (String, Vec<(&'static str, String)>) {
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut tags = Vec::new();
    for label in Label::ALL {
        let re = regex_lite::Regex::new(&tag_regex(label)).unwrap();
        if let Some(c) = re.captures(name) {
            let g1 = c.get(1).unwrap();
            cut.push((g1.start(), g1.end()));
            tags.push((label.name(), c.get(2).unwrap().as_str().to_owned()));
        }
    }
    let mut rest = String::new();
    for (i, ch) in name.char_indices() {
        if !cut.iter().any(|(s, e)| (*s..*e).contains(&i)) {
            rest.push(ch);
        }
    }
    (rest, tags)
}

#[test]
fn safe_values_pass_through_and_empty_is_unknown() {
    assert_eq!(
        enc(b"spiffe://cluster.local/ns/default/sa/web"),
        "spiffe://cluster.local/ns/default/sa/web"
    );
    assert_eq!(
        enc(b"reviews.default.svc.cluster.local"),
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(enc(b"UF,URX"), "UF,URX");
    assert_eq!(enc(b""), "unknown");
}

#[test]
fn delimiters_and_hostile_bytes_are_escaped() {
    assert_eq!(enc(b"a;b=c"), "a%3Bb%3Dc");
    assert_eq!(enc(b"100%"), "100%25");
    assert_eq!(enc(b"a b\"\\\n"), "a%20b%22%5C%0A");
    assert_eq!(enc(&[0xff, 0x00, b'x']), "%FF%00x");
    assert_eq!(enc("é".as_bytes()), "%C3%A9");
}

#[test]
fn a_trailing_dot_is_escaped() {
    // Envoy would drop it from the tag value and merge `a.b.` with `a.b`.
    assert_eq!(enc(b"a..b."), "a..b%2E");
    assert_eq!(enc(b"."), "%2E");
    assert_eq!(enc(b".lead"), ".lead");
}

#[test]
fn long_values_are_cut() {
    let v = enc(&[b'a'; 10_000]);
    assert_eq!(v.len(), MAX_VALUE_BYTES);
    let v = enc(&[b';'; 10_000]);
    assert_eq!(v.len(), MAX_VALUE_BYTES * 3);
}

#[test]
fn a_value_cannot_forge_another_label() {
    let mut v = LabelValues::default();
    v.set_str(Label::Reporter, "destination");
    v.set(
        Label::SourceWorkload,
        b"evil;response_code=200;reporter=source",
    );
    v.set(Label::ResponseCode, b"503");
    let name = stat_name(Metric::RequestsTotal, &v.series_key());
    let (metric, labels) = parse_stat_name(&name);
    assert_eq!(metric, "istio_requests_total");
    assert_eq!(labels.len(), LABEL_COUNT);
    let names: Vec<_> = labels.iter().map(|(n, _)| *n).collect();
    let expected: Vec<_> = Label::ALL.iter().map(|l| l.name()).collect();
    assert_eq!(names, expected);
    let get = |n: &str| labels.iter().find(|(k, _)| *k == n).unwrap().1;
    assert_eq!(get("reporter"), "destination");
    assert_eq!(get("response_code"), "503");
    assert_eq!(
        decode_value(get("source_workload")),
        b"evil;response_code=200;reporter=source"
    );

    let (rest, tags) = extract(&format!("wasmcustom.{name}"));
    assert_eq!(rest, "wasmcustom.istio_requests_total");
    assert_eq!(tags.len(), LABEL_COUNT);
    assert!(tags.contains(&("response_code", "503".to_owned())));
    assert!(tags.contains(&("reporter", "destination".to_owned())));
}

#[test]
fn similar_label_names_do_not_capture_each_other() {
    let mut v = LabelValues::default();
    v.set_str(Label::SourceWorkload, "web");
    v.set_str(Label::SourceWorkloadNamespace, "shop");
    v.set_str(Label::DestinationService, "reviews.shop.svc.cluster.local");
    v.set_str(Label::DestinationServiceName, "reviews");
    v.set_str(Label::DestinationServiceNamespace, "shop");
    let (rest, tags) = extract(&stat_name(Metric::RequestDuration, &v.series_key()));
    assert_eq!(rest, "istio_request_duration_milliseconds");
    let get = |n: &str| tags.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    assert_eq!(get("source_workload"), "web");
    assert_eq!(get("source_workload_namespace"), "shop");
    assert_eq!(get("destination_service"), "reviews.shop.svc.cluster.local");
    assert_eq!(get("destination_service_name"), "reviews");
}

#[test]
fn name_never_ends_like_envoy_default_tags() {
    // Envoy's default extractors `_rq(_(\d{3}))$` and `_rq_(\d)xx$` must not see our names.
    let mut v = LabelValues::default();
    v.set_str(Label::SourceWorkload, "x_rq_200");
    v.set_str(Label::ResponseFlags, "a_rq_5xx");
    let name = stat_name(Metric::RequestsTotal, &v.series_key());
    for re in [r"_rq(_(\d{3}))$", r"_rq_(\d)xx$"] {
        assert!(!regex_lite::Regex::new(re).unwrap().is_match(&name), "{re}");
    }
    assert_eq!(Label::ALL.last(), Some(&Label::ConnectionSecurityPolicy));
}

#[test]
fn overflow_series_is_other_but_reporter() {
    let v = LabelValues::overflow("source");
    assert_eq!(v.get(Label::Reporter), "source");
    for l in Label::ALL.iter().skip(1) {
        assert_eq!(v.get(*l), OTHER);
    }
}

#[test]
fn shipped_stats_tags_match_the_encoding() {
    let yaml = include_str!("../../../../envoy-config/telemetry/stats-tags.yaml");
    for label in Label::ALL {
        let tag = format!("tag_name: {}", label.name());
        let re = format!("regex: '{}'", tag_regex(label));
        assert!(yaml.contains(&tag), "missing {tag}");
        assert!(yaml.contains(&re), "missing {re}");
    }
    assert_eq!(yaml.matches("\n- tag_name:").count(), LABEL_COUNT);
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// The byte-at-a-time encoding series names were first made with: a faster one must name
    /// every series the same, or a module upgrade would split each series in two.
    fn reference(raw: &[u8]) -> String {
        if raw.is_empty() {
            return UNKNOWN.to_owned();
        }
        let raw = raw.get(..MAX_VALUE_BYTES).unwrap_or(raw);
        let mut out = String::new();
        for (i, &b) in raw.iter().enumerate() {
            let safe = b.is_ascii_alphanumeric() || b"-._~:/@,".contains(&b);
            if safe && !(b == b'.' && i == raw.len() - 1) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn encoding_matches_the_reference(raw in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'.'), Just(b'a')], 0..300)) {
            let mut out = String::new();
            encode_value(&raw, &mut out);
            prop_assert_eq!(out, reference(&raw));
        }

        #[test]
        fn encoding_is_injective_and_never_forges(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), LABEL_COUNT)) {
            let mut v = LabelValues::default();
            for (label, raw) in Label::ALL.iter().zip(&values) {
                v.set(*label, raw);
            }
            let name = stat_name(Metric::RequestsTotal, &v.series_key());
            let (metric, labels) = parse_stat_name(&name);
            prop_assert_eq!(metric, "istio_requests_total");
            prop_assert_eq!(labels.len(), LABEL_COUNT);
            for ((label, raw), (name, enc)) in Label::ALL.iter().zip(&values).zip(&labels) {
                prop_assert_eq!(*name, label.name());
                let expect: &[u8] = if raw.is_empty() { b"unknown" } else { raw };
                prop_assert_eq!(decode_value(enc), expect);
            }
            let (rest, tags) = extract(&name);
            prop_assert_eq!(rest, "istio_requests_total");
            prop_assert_eq!(tags.len(), LABEL_COUNT);
        }
    }
}

#[test]
fn borrowed_labels_leave_the_template_alone() {
    let mut template = LabelValues::default();
    template.set_str(Label::DestinationWorkload, "reviews-v1");
    let mut req = template.borrowed();
    req.set_str(Label::ResponseCode, "200");
    req.set_const(Label::RequestProtocol, plain::GRPC);
    assert_eq!(req.get(Label::DestinationWorkload), "reviews-v1");
    assert_eq!(req.get(Label::ResponseCode), "200");
    assert_eq!(req.get(Label::RequestProtocol), "grpc");
    assert_eq!(template.get(Label::ResponseCode), UNKNOWN);
}

#[test]
fn an_empty_grpc_status_is_kept_empty_and_extracted() {
    let mut v = LabelValues::default();
    v.set_str(Label::Reporter, "destination");
    v.set_empty(Label::GrpcResponseStatus);
    let name = stat_name(Metric::RequestsTotal, &v.series_key());
    assert!(
        name.contains(";grpc_response_status=;response_flags="),
        "{name}"
    );
    let (rest, tags) = extract(&name);
    assert_eq!(rest, "istio_requests_total");
    assert!(tags.contains(&("grpc_response_status", String::new())));
    assert!(tags.contains(&("response_flags", UNKNOWN.to_owned())));
    // Set through the encoder, empty still means unknown: the two never collide.
    v.set(Label::GrpcResponseStatus, b"");
    assert_eq!(v.get(Label::GrpcResponseStatus), UNKNOWN);
}

#[test]
fn istio_label_set_is_complete() {
    let names: Vec<_> = Label::ALL.iter().map(|l| l.name()).collect();
    for istio in [
        "source_app",
        "source_version",
        "source_cluster",
        "destination_app",
        "destination_version",
        "destination_cluster",
        "grpc_response_status",
    ] {
        assert!(names.contains(&istio), "{istio}");
    }
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), LABEL_COUNT);
}

#[test]
fn a_number_label_reads_as_its_decimal_text() {
    // The borrowed common codes and their neighbours, formatted ones.
    for n in [
        0,
        1,
        7,
        199,
        200,
        201,
        204,
        404,
        429,
        503,
        -1,
        1_000_000_007,
        i64::MAX,
        i64::MIN,
    ] {
        let (mut fast, mut slow) = (LabelValues::default(), LabelValues::default());
        fast.set_number(Label::ResponseCode, n);
        slow.set_str(Label::ResponseCode, &n.to_string());
        assert_eq!(
            fast.get(Label::ResponseCode),
            slow.get(Label::ResponseCode),
            "{n}"
        );
    }
}

#[test]
fn the_safe_table_is_the_documented_set() {
    for b in 0..=u8::MAX {
        let documented = b.is_ascii_alphanumeric() || b"-._~:/@,".contains(&b);
        assert_eq!(is_safe(b), documented, "byte {b:#x}");
    }
}

/// A value that needs no encoding is borrowed as it is; any other is encoded exactly as
/// `set` encodes it.
#[test]
fn set_borrowed_borrows_only_what_needs_no_encoding() {
    let long = vec![b'a'; MAX_VALUE_BYTES + 1];
    let cases: [&[u8]; 7] = [
        b"spiffe://mesh.local/ns/default/sa/web",
        b"",
        b"a.b.",
        b"a;b=c",
        b"caf\xc3\xa9",
        b"\xff",
        &long,
    ];
    for raw in cases {
        let mut copied = LabelValues::default();
        copied.set(Label::SourcePrincipal, raw);
        // Both entry points: raw bytes, and text already checked as UTF-8.
        let mut results = vec![LabelValues::default()];
        results[0].set_borrowed(Label::SourcePrincipal, raw);
        if let Ok(text) = std::str::from_utf8(raw) {
            let mut from_text = LabelValues::default();
            from_text.set_borrowed_str(Label::SourcePrincipal, text);
            results.push(from_text);
        }
        for borrowed in &results {
            assert_eq!(*borrowed, copied, "{raw:?}");
            let value = borrowed.get(Label::SourcePrincipal);
            let is_borrowed = std::ptr::eq(value.as_ptr(), raw.as_ptr());
            assert_eq!(is_borrowed, value.as_bytes() == raw, "{raw:?}");
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod json_safe {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The access line writes label values without a JSON escape check: no value a
        /// request can set may need one.
        #[test]
        fn label_values_never_need_a_json_escape(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut values = LabelValues::default();
            values.set_borrowed(Label::SourceWorkload, &raw);
            values.set(Label::SourceWorkloadNamespace, &raw);
            for label in [Label::SourceWorkload, Label::SourceWorkloadNamespace] {
                let v = values.get(label);
                prop_assert!(!crate::access_log::maybe_special(v.as_bytes()), "{:?}", v);
            }
        }
    }
}
