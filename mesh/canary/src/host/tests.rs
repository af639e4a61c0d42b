use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn table(hosts: &[&str]) -> HostTable {
    HostTable::new(hosts.iter().map(|h| HostPattern::parse(h).unwrap()))
}

#[test]
fn parses_patterns() {
    assert_eq!(
        HostPattern::parse("Reviews"),
        Ok(HostPattern::Exact("reviews".into()))
    );
    assert_eq!(
        HostPattern::parse("reviews.default.svc."),
        Ok(HostPattern::Exact("reviews.default.svc".into()))
    );
    assert_eq!(
        HostPattern::parse("*.Example.com"),
        Ok(HostPattern::Suffix(".example.com".into()))
    );
    assert_eq!(HostPattern::parse("*"), Ok(HostPattern::Any));
    assert_eq!(
        HostPattern::parse("127.0.0.1"),
        Ok(HostPattern::Exact("127.0.0.1".into()))
    );
}

#[test]
fn rejects_bad_patterns() {
    for bad in [
        "",
        "reviews:9080",
        "*.",
        "a b",
        "*.*.x",
        "a..b",
        ".x",
        "re*views",
        "ré",
        "*x",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(HostPattern::parse("").unwrap_err(), "must not be empty");
}

#[test]
fn strips_ports_and_trailing_dot() {
    assert_eq!(authority_host(b"reviews:9080"), Some(&b"reviews"[..]));
    assert_eq!(authority_host(b"reviews"), Some(&b"reviews"[..]));
    assert_eq!(authority_host(b"reviews.:80"), Some(&b"reviews"[..]));
    assert_eq!(authority_host(b"[::1]:80"), Some(&b"[::1]"[..]));
    assert_eq!(authority_host(b"[::1"), Some(&b"[::1"[..]));
    assert_eq!(authority_host(b"reviews:"), Some(&b"reviews"[..]));
    assert_eq!(authority_host(b"a:b"), Some(&b"a:b"[..]));
    assert_eq!(authority_host(b":80"), None);
    assert_eq!(authority_host(b""), None);
    assert_eq!(authority_host(b"."), None);
}

#[test]
fn matches_case_insensitively_without_port() {
    let t = table(&["reviews", "*.example.com", "*.b.example.com"]);
    assert_eq!(t.find(b"REVIEWS:9080"), Some(0));
    assert_eq!(t.find(b"Reviews."), Some(0));
    assert_eq!(t.find(b"ratings"), None);
    assert_eq!(t.find(b"a.example.com"), Some(1));
    assert_eq!(t.find(b"a.B.example.COM:443"), Some(2));
    assert_eq!(t.find(b"example.com"), None);
    assert_eq!(t.find(b"xexample.com"), None);
    assert_eq!(t.find(b"reviews2"), None);
}

#[test]
fn exact_beats_wildcards_and_any_comes_last() {
    let t = table(&["*", "*.example.com", "api.example.com"]);
    assert_eq!(t.find(b"api.example.com"), Some(2));
    assert_eq!(t.find(b"web.example.com"), Some(1));
    assert_eq!(t.find(b"other"), Some(0));
}

#[test]
fn odd_authorities_never_match_or_panic() {
    let t = table(&["reviews"]);
    for odd in [
        &b""[..],
        b":",
        b"[",
        b"]",
        b"\xff\xfe",
        b"reviews\xff",
        b"re views",
        b"[reviews]:80",
    ] {
        assert_eq!(t.find(odd), None, "{odd:?}");
    }
    let any = table(&["*"]);
    assert_eq!(any.find(b"\xff"), Some(0));
    assert_eq!(any.find(b""), None);
}

/// Found by the authority fuzz target: `reviews..` was accepted as `reviews.` (one trailing
/// dot stripped, an empty label left), a pattern that never matched the host it was built
/// from. A name with an empty label is refused.
#[test]
fn empty_labels_are_refused() {
    for spec in ["reviews..", "*.example..", "a..b", ".reviews"] {
        assert!(HostPattern::parse(spec).is_err(), "{spec}");
    }
    assert!(HostPattern::parse("reviews.").is_ok());
}

/// Service `k` of a large configuration: `*` first, every tenth a `*.t{k}.example` suffix,
/// the others exact `svc{k}.example`.
fn service(k: usize) -> HostPattern {
    match k {
        0 => HostPattern::Any,
        k if k % 10 == 1 => HostPattern::parse(&format!("*.t{k}.example")).unwrap(),
        k => HostPattern::parse(&format!("svc{k}.example")).unwrap(),
    }
}

/// What the scan before the index looked at: patterns in rank order up to the first match.
fn linear_looked(patterns: &[HostPattern], authority: &[u8]) -> usize {
    let host = authority_host(authority).unwrap();
    let rank = |p: &HostPattern| match p {
        HostPattern::Exact(_) => (0, 0),
        HostPattern::Suffix(s) => (1, usize::MAX - s.len()),
        HostPattern::Any => (2, 0),
    };
    let mut sorted: Vec<&HostPattern> = patterns.iter().collect();
    sorted.sort_by_key(|p| rank(p));
    sorted
        .iter()
        .position(|p| p.matches(host))
        .map_or(sorted.len(), |i| i + 1)
}

/// Finding a request's service looks at as many buckets with 1,000 services as with the one
/// it is for: one for the exact host, then (only when suffixes are configured) one per dot
/// of the host.
#[test]
fn host_lookup_cost_is_flat_in_the_number_of_services() {
    let all: Vec<HostPattern> = (0..1_000).map(service).collect();
    let large = HostTable::new(all.clone());
    for (authority, k, few, looked) in [
        (&b"svc998.example"[..], 998, 1, 1),
        (b"SVC998.example:80", 998, 1, 1),
        (b"a.b.t991.example", 991, 3, 3),
        // `*` alone has no suffix to try.
        (b"nowhere.example", 0, 1, 2),
    ] {
        let small = HostTable::new([service(k)]);
        assert_eq!(small.find_counted(authority), (Some(0), few));
        assert_eq!(large.find_counted(authority), (Some(k), looked));
        eprintln!(
            "{}: looked at {few} (1 service) and {looked} (1,000); the linear scan: 1 and {}",
            String::from_utf8_lossy(authority),
            linear_looked(&all, authority)
        );
    }
}
