use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn p(s: &str) -> NamePattern {
    NamePattern::parse(s).unwrap()
}

#[test]
fn parses_the_four_forms() {
    assert_eq!(
        p("web"),
        NamePattern::Exact(ServiceName::new("default", "web"))
    );
    assert_eq!(
        p("team/web"),
        NamePattern::Exact(ServiceName::new("team", "web"))
    );
    assert_eq!(p("team/*"), NamePattern::Namespace("team".into()));
    assert_eq!(p("*"), NamePattern::Any);
    for s in ["web", "team/web", "team/*", "*"] {
        let shown = p(s).to_string();
        assert_eq!(p(&shown), p(s), "{s} round-trips through {shown}");
    }
    assert_eq!(p("web").to_string(), "default/web");
}

#[test]
fn refuses_malformed_names() {
    for bad in [
        "",
        "/",
        "/web",
        "team/",
        "*/web",
        "*/*",
        "a/b/c",
        "we b",
        "web*",
        "te*m/web",
        ".",
        "..",
        "team/..",
        "../web",
        "wéb",
        "a\u{0}b",
        "team/web/",
    ] {
        assert!(
            NamePattern::parse(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
    assert!(ServiceName::parse("team/*").is_err());
    assert!(ServiceName::parse("*").is_err());
    assert_eq!(
        ServiceName::parse("api").unwrap(),
        ServiceName::new("default", "api")
    );
}

#[test]
fn matching() {
    let svc = ServiceName::new("team", "web");
    assert!(p("team/web").matches(svc.as_ref()));
    assert!(
        !p("web").matches(svc.as_ref()),
        "bare names live in the default namespace"
    );
    assert!(p("team/*").matches(svc.as_ref()));
    assert!(!p("other/*").matches(svc.as_ref()));
    assert!(p("*").matches(svc.as_ref()));
    assert!(
        !p("team/Web").matches(svc.as_ref()),
        "names are case-sensitive"
    );
}

/// Consul's table, as (source, destination, level).
pub(crate) const TABLE: [(&str, &str, u8); 9] = [
    ("team/web", "team/api", 9),
    ("team/*", "team/api", 8),
    ("*", "team/api", 7),
    ("team/web", "team/*", 6),
    ("team/*", "team/*", 5),
    ("*", "team/*", 4),
    ("team/web", "*", 3),
    ("team/*", "*", 2),
    ("*", "*", 1),
];

#[test]
fn precedence_follows_consuls_table() {
    for (src, dst, level) in TABLE {
        assert_eq!(precedence(&p(src), &p(dst)), level, "{src} -> {dst}");
    }
}

#[test]
fn stat_names() {
    assert_eq!(p("web").stat_name(), "default.web");
    assert_eq!(p("team/*").stat_name(), "team.any");
    assert_eq!(p("*").stat_name(), "any");
}
