use super::*;
use crate::request::RequestHead;
use sdk_shim::testing::FakeHost;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn spec(json: &str) -> HttpMatchSpec {
    crate::parse_json(json.as_bytes()).unwrap()
}

fn compile(json: &str) -> HttpMatch {
    spec(json).compile("match").unwrap()
}

fn head(host: &FakeHost) -> RequestHead {
    RequestHead::read(host, true).unwrap()
}

fn matches(m: &HttpMatch, host: &FakeHost) -> bool {
    let h = head(host);
    m.matches(&h.input(&h.path_lossy()))
}

#[test]
fn path_kinds() {
    let host = FakeHost::new().request("GET", "svc", "/api/v1?x=/admin");
    assert!(matches(&compile(r#"{"path_prefix":"/api/"}"#), &host));
    assert!(!matches(&compile(r#"{"path_prefix":"/admin"}"#), &host));
    assert!(matches(&compile(r#"{"path_exact":"/api/v1"}"#), &host));
    assert!(matches(&compile(r#"{"path_regex":"/api/v[0-9]+"}"#), &host));
    // Anchored: a partial regex match is no match.
    assert!(!matches(&compile(r#"{"path_regex":"/api"}"#), &host));
}

#[test]
fn methods_are_case_sensitive() {
    let m = compile(r#"{"methods":["GET","HEAD"]}"#);
    assert!(matches(&m, &FakeHost::new().request("GET", "s", "/")));
    assert!(!matches(&m, &FakeHost::new().request("get", "s", "/")));
    assert!(!matches(&m, &FakeHost::new().request("POST", "s", "/")));
}

#[test]
fn header_kinds_and_ignore_case() {
    let host = FakeHost::new()
        .request("GET", "s", "/")
        .request_header("x-env", "Production-EU");
    for (json, want) in [
        (r#"{"name":"x-env"}"#, true),
        (r#"{"name":"X-Env","present":true}"#, true),
        (r#"{"name":"x-env","exact":"Production-EU"}"#, true),
        (r#"{"name":"x-env","exact":"production-eu"}"#, false),
        (
            r#"{"name":"x-env","exact":"production-eu","ignore_case":true}"#,
            true,
        ),
        (r#"{"name":"x-env","prefix":"Prod"}"#, true),
        (
            r#"{"name":"x-env","prefix":"PROD","ignore_case":true}"#,
            true,
        ),
        (r#"{"name":"x-env","suffix":"-EU"}"#, true),
        (r#"{"name":"x-env","suffix":"Production-EU-long"}"#, false),
        (r#"{"name":"x-env","contains":"tion"}"#, true),
        (
            r#"{"name":"x-env","contains":"TION","ignore_case":true}"#,
            true,
        ),
        (r#"{"name":"x-env","regex":"Prod.*"}"#, true),
        (
            r#"{"name":"x-env","regex":"prod.*","ignore_case":true}"#,
            true,
        ),
        (r#"{"name":"x-env","regex":"Prod"}"#, false),
        (
            r#"{"name":"x-env","exact":"Production-EU","invert":true}"#,
            false,
        ),
        (r#"{"name":"x-missing","invert":true}"#, true),
        (r#"{"name":"x-missing"}"#, false),
    ] {
        let m = compile(&format!(r#"{{"headers":[{json}]}}"#));
        assert_eq!(matches(&m, &host), want, "{json}");
    }
}

#[test]
fn every_value_of_a_repeated_header_counts() {
    let host = FakeHost::new()
        .request("GET", "s", "/")
        .request_header("x-role", "user")
        .request_header("x-role", "admin");
    assert!(matches(
        &compile(r#"{"headers":[{"name":"x-role","exact":"admin"}]}"#),
        &host
    ));
    // Inverted: no value may match.
    assert!(!matches(
        &compile(r#"{"headers":[{"name":"x-role","exact":"admin","invert":true}]}"#),
        &host
    ));
}

#[test]
fn non_utf8_values_never_trap() {
    let host = FakeHost::new()
        .request("GET", "s", "/")
        .request_header("x-b", b"\xff\xfe admin");
    assert!(!matches(
        &compile(r#"{"headers":[{"name":"x-b","regex":".*"}]}"#),
        &host
    ));
    assert!(matches(
        &compile(r#"{"headers":[{"name":"x-b","suffix":"admin"}]}"#),
        &host
    ));
}

#[test]
fn headerless_read_uses_two_calls_and_no_map_read() {
    let host = FakeHost::new().request("GET", "s", "/x");
    let before = host.host_calls();
    let h = RequestHead::read(&host, false).unwrap();
    assert_eq!(host.host_calls() - before, 2);
    assert_eq!(&*h.method, b"GET");
    assert!(h.headers.is_empty());
}

#[test]
fn bad_specs_name_the_field() {
    let cases = [
        (r#"{"path_exact":"/a","path_prefix":"/b"}"#, "m"),
        (r#"{"path_prefix":"api"}"#, "m.path_prefix"),
        (r#"{"path_regex":"("}"#, "m.path_regex"),
        (r#"{"methods":["GET","B AD"]}"#, "m.methods[1]"),
        (r#"{"headers":[{"name":""}]}"#, "m.headers[0].name"),
        (
            r#"{"headers":[{"name":"a","exact":"x","prefix":"y"}]}"#,
            "m.headers[0]",
        ),
        (
            r#"{"headers":[{"name":"a","present":false}]}"#,
            "m.headers[0].present",
        ),
        (
            r#"{"headers":[{"name":"a","regex":"a{99999}"}]}"#,
            "m.headers[0].regex",
        ),
    ];
    for (json, field) in cases {
        let e = spec(json).compile("m").unwrap_err();
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(
            e.reason.chars().next().unwrap().is_lowercase() || e.reason.starts_with('"'),
            "{e}"
        );
    }
    let long = format!(r#"{{"path_regex":"{}"}}"#, "a".repeat(2000));
    assert!(spec(&long)
        .compile("m")
        .unwrap_err()
        .reason
        .contains("longer than"));
}

#[test]
fn a_regex_cannot_break_out_of_its_anchors() {
    // Unbalanced on their own, balanced once wrapped in `^(?:...)$`: accepted, they would
    // match unanchored (`/x/admin` by a pattern meant for `/public`).
    for pattern in [r"/public)|(?:.*", r"/public)|.*(?:", r"a)(b"] {
        let json = serde_json::json!({ "path_regex": pattern }).to_string();
        let e = spec(&json).compile("m").unwrap_err();
        assert_eq!(e.field, "m.path_regex", "{pattern}: {e}");
        let json = serde_json::json!({ "headers": [{"name": "x", "regex": pattern}] }).to_string();
        let e = spec(&json).compile("m").unwrap_err();
        assert_eq!(e.field, "m.headers[0].regex", "{pattern}: {e}");
    }
    // A `(?m)`-style flag inside the pattern does not unanchor either.
    let m = compile(r#"{"path_regex":"(?m)/a"}"#);
    let host = FakeHost::new().request("GET", "s", "/a/b");
    assert!(!matches(&m, &host));
}
