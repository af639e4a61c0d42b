use super::*;
use serde::Deserialize;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inner {
    #[allow(dead_code)]
    per: u32,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outer {
    #[serde(default)]
    rules: Vec<Inner>,
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let e = parse_json::<Outer>(br#"{"rules":[{"per":1},{"per":2,"bogus":1}]}"#).unwrap_err();
    assert_eq!(e.field, "rules[1].bogus");
    assert!(
        e.reason.starts_with("unknown field `bogus`"),
        "{}",
        e.reason
    );
    assert!(!e.reason.ends_with('.'));
}

#[test]
fn wrong_type_names_the_field() {
    let e = parse_json::<Outer>(br#"{"rules":[{"per":"x"}]}"#).unwrap_err();
    assert_eq!(e.field, "rules[0].per");
    assert!(e.to_string().starts_with("rules[0].per: invalid type"));
}

#[test]
fn empty_config_means_defaults() {
    assert!(parse_json::<Outer>(b"").unwrap().rules.is_empty());
    assert!(parse_json::<Outer>(b"  \n").unwrap().rules.is_empty());
}

#[test]
fn trailing_garbage_and_bad_json_are_rejected() {
    assert!(parse_json::<Outer>(b"{} x").is_err());
    assert!(parse_json::<Outer>(b"{").is_err());
    assert!(parse_json::<Outer>(b"\xff").is_err());
}

#[test]
fn within_joins_paths() {
    let e = ConfigError::new("limit.per", "bad").within("rules[0]");
    assert_eq!(e.to_string(), "rules[0].limit.per: bad");
    assert_eq!(join("a", "[1]"), "a[1]");
    assert_eq!(join("", "b"), "b");
}
