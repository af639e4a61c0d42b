use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn parses_istio_form() {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/frontend").unwrap();
    assert_eq!(id.trust_domain, "cluster.local");
    assert_eq!(id.namespace, "default");
    assert_eq!(id.name, "frontend");
    assert_eq!(id.kind, SpiffeKind::Istio);
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/frontend"
    );
}

#[test]
fn parses_consul_forms() {
    let id = SpiffeId::parse("spiffe://abc.consul/ns/team/dc/dc1/svc/web").unwrap();
    assert_eq!((id.namespace.as_str(), id.name.as_str()), ("team", "web"));
    assert_eq!(
        id.kind,
        SpiffeKind::Consul {
            datacenter: "dc1".into(),
            partition: None
        }
    );
    let ap = SpiffeId::parse("spiffe://abc.consul/ap/p1/ns/team/dc/dc1/svc/web").unwrap();
    assert_eq!(
        ap.to_string(),
        "spiffe://abc.consul/ap/p1/ns/team/dc/dc1/svc/web"
    );
}

#[test]
fn rejects_lookalikes() {
    for bad in [
        "",
        "http://td/ns/a/sa/b",
        "SPIFFE://td/ns/a/sa/b",
        "spiffe://TD/ns/a/sa/b",
        "spiffe://td:443/ns/a/sa/b",
        "spiffe://user@td/ns/a/sa/b",
        "spiffe://td/ns/a/sa/b/",
        "spiffe://td/ns/a/sa/b?x=1",
        "spiffe://td/ns/a/sa/b#f",
        "spiffe://td/ns//sa/b",
        "spiffe://td/ns/../sa/b",
        "spiffe://td/ns/a%2Fb/sa/c",
        "spiffe://td/ns/a/sa",
        "spiffe://td/ns/a/svc/b",
        "spiffe://td",
        "spiffe:///ns/a/sa/b",
        "spiffe://td/ns/a/sa/b\u{0}",
        "spiffe://td/ns/a/sa/bé",
    ] {
        assert!(SpiffeId::parse(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(
        SpiffeId::parse(&"spiffe://a/".repeat(300)),
        Err(SpiffeError::TooLong)
    );
}

/// The byte classes written out again, not the parser's table: a table mistake must show.
fn td_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
}

fn seg_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

#[cfg(not(target_arch = "wasm32"))]
/// The parser before the one-pass rewrite, kept as the reference the rewrite must match.
fn reference_parse(uri: &str) -> Result<SpiffeId, SpiffeError> {
    if uri.len() > 2048 {
        return Err(SpiffeError::TooLong);
    }
    let rest = uri.strip_prefix("spiffe://").ok_or(SpiffeError::Scheme)?;
    let (td, path) = rest.split_once('/').ok_or(SpiffeError::Layout)?;
    if td.is_empty() || td.len() > 255 || !td.bytes().all(td_byte) {
        return Err(SpiffeError::TrustDomain);
    }
    let mut segs = Vec::new();
    for s in path.split('/') {
        if s.is_empty() || s == "." || s == ".." || !s.bytes().all(seg_byte) {
            return Err(SpiffeError::Segment);
        }
        if segs.len() == 8 {
            return Err(SpiffeError::Layout);
        }
        segs.push(s);
    }
    let id = |ns: &str, name: &str, kind| SpiffeId {
        trust_domain: td.to_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        kind,
    };
    match segs[..] {
        ["ns", ns, "sa", name] => Ok(id(ns, name, SpiffeKind::Istio)),
        ["ns", ns, "dc", dc, "svc", name] => Ok(id(
            ns,
            name,
            SpiffeKind::Consul {
                datacenter: dc.to_owned(),
                partition: None,
            },
        )),
        ["ap", ap, "ns", ns, "dc", dc, "svc", name] => Ok(id(
            ns,
            name,
            SpiffeKind::Consul {
                datacenter: dc.to_owned(),
                partition: Some(ap.to_owned()),
            },
        )),
        _ => Err(SpiffeError::Layout),
    }
}

#[test]
fn the_class_table_matches_the_byte_classes() {
    for b in 0..=255u8 {
        assert_eq!(
            (trust_domain_byte(b), segment_byte(b)),
            (td_byte(b), seg_byte(b)),
            "{b:#04x}"
        );
    }
}

#[test]
fn the_borrowed_form_names_the_same_parts() {
    let uri = "spiffe://abc.consul/ap/p1/ns/team/dc/dc1/svc/web";
    let r = SpiffeRef::parse(uri).unwrap();
    assert_eq!(
        (r.trust_domain, r.namespace, r.name, r.consul),
        ("abc.consul", "team", "web", Some(("dc1", Some("p1"))))
    );
    assert_eq!(r.to_owned(), SpiffeId::parse(uri).unwrap());
    assert_eq!(r.to_owned().to_string(), uri);
}

#[cfg(not(target_arch = "wasm32"))]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Built from the pieces that decide a layout (keywords, dots, separators, bytes just
    /// outside the classes), so most inputs reach the segment and layout checks.
    #[test]
    fn the_one_pass_parser_agrees_with_the_reference(
        td in "(td|a\\.b|T|x_y-1|)",
        segs in proptest::collection::vec("(ns|sa|dc|svc|ap|default|a|\\.|\\.\\.||%2F|é|a b|x\\?y|web-1_v\\.2)", 0..11),
        scheme in "(spiffe://|SPIFFE://|spiffe:/)",
    ) {
        let uri = format!("{scheme}{td}/{}", segs.join("/"));
        proptest::prop_assert_eq!(SpiffeId::parse(&uri), reference_parse(&uri), "{}", uri);
    }

    #[test]
    fn any_text_parses_as_the_reference_parses(uri in "spiffe://[a-z/.]{0,12}(/[ -~]{0,8}){0,9}") {
        proptest::prop_assert_eq!(SpiffeId::parse(&uri), reference_parse(&uri), "{}", uri);
    }
}
