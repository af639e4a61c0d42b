use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn err(json: &str) -> ConfigError {
    Config::parse(json.as_bytes()).expect_err(json)
}

fn rule(extra: &str) -> String {
    format!(r#"{{"rules":[{{"name":"api","limit":{{"requests":10,"per":"1s"}}{extra}}}]}}"#)
}

#[test]
fn empty_config_means_defaults() {
    for input in ["", "  \n", "{}"] {
        let c = Config::parse(input.as_bytes()).unwrap();
        assert!(c.rules.is_empty());
        assert_eq!(c.max_keys, DEFAULT_MAX_KEYS);
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.failure_mode, FailureMode::Deny);
        assert!(!c.headers_on_allowed);
    }
}

#[test]
fn design_example_compiles() {
    let c = Config::parse(
        br#"{ "rules": [ { "name": "api", "match": {"path_prefix": "/api", "methods": ["GET"]},
              "key": {"header": "X-Api-Key"},
              "limit": {"requests": 100, "per": "1s", "burst": 100} } ],
              "max_keys": 10000, "mode": "enforce" }"#,
    )
    .unwrap();
    let r = &c.rules[0];
    assert_eq!(r.name, "api");
    assert!(r.matcher.is_some());
    assert_eq!(r.key, KeySource::Header("x-api-key".into()));
    assert_eq!(r.limit.as_ref().unwrap().interval_ns(), 10_000_000);
    assert_eq!(r.limit.as_ref().unwrap().burst(), 100);
    assert_eq!(r.policy_item, r#""api";q=100;w=1"#);
    assert!(c.needs_head());
    assert!(!c.needs_headers());
}

#[test]
fn keys_and_defaults() {
    let c = Config::parse(
        br#"{"rules":[
            {"name":"a","key":{"source":"address"},"limit":{"requests":5,"per":"1m"}},
            {"name":"b","key":{"source":"principal"},"limit":{"requests":5,"per":"1h"}},
            {"name":"c","limit":{"requests":3,"per":"1500ms"}}],
           "mode":"shadow","failure_mode":"allow","headers_on_allowed":true,"max_keys":1}"#,
    )
    .unwrap();
    assert_eq!(c.rules[0].key, KeySource::Address { trusted_hops: 0 });
    assert_eq!(c.rules[1].key, KeySource::Principal);
    assert_eq!(c.rules[2].key, KeySource::Rule);
    // burst defaults to requests
    assert_eq!(c.rules[0].limit.as_ref().unwrap().burst(), 5);
    // sub-second windows round up in the advertised policy
    assert_eq!(c.rules[2].window_s, 2);
    assert_eq!(
        c.rules[2].limit.as_ref().unwrap().interval_ns(),
        500_000_000
    );
    assert_eq!(c.mode, Mode::Shadow);
    assert_eq!(c.failure_mode, FailureMode::Allow);
    assert!(c.headers_on_allowed);
    assert_eq!(c.max_keys, 1);
    assert!(!c.needs_head());
}

#[test]
fn header_matchers_need_the_whole_map() {
    let c = Config::parse(
        rule(r#","match":{"headers":[{"name":"x-tier","exact":"free"}]}"#).as_bytes(),
    )
    .unwrap();
    assert!(c.needs_headers());
}

#[test]
fn bad_values_are_named_with_their_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"rules":[{"name":"a","limit":{"requests":0,"per":"1s"}}]}"#,
            "rules[0].limit.requests",
            "must be at least 1",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":-5,"per":"1s"}}]}"#,
            "rules[0].limit.requests",
            "must be at least 1",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":2000000000,"per":"1s"}}]}"#,
            "rules[0].limit.requests",
            "must be at most",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"soon"}}]}"#,
            "rules[0].limit.per",
            "invalid duration",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"10"}}]}"#,
            "rules[0].limit.per",
            "invalid duration",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"0s"}}]}"#,
            "rules[0].limit.per",
            "must be longer than zero",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s","burst":0}}]}"#,
            "rules[0].limit.burst",
            "must be at least 1",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s","burst":-1}}]}"#,
            "rules[0].limit.burst",
            "must be at least 1",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":2000000,"per":"1ms"}}]}"#,
            "rules[0].limit",
            "rate too high",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"8760h","burst":1000000000}}]}"#,
            "rules[0].limit",
            "rate too high",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s"}},{"name":"a","limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[1].name",
            "duplicate rule name \"a\"",
        ),
        (
            r#"{"rules":[{"name":"a b","limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].name",
            "must be 1 to 64 characters",
        ),
        (
            r#"{"rules":[{"name":"","limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].name",
            "must be 1 to 64 characters",
        ),
        (r#"{"max_keys":0}"#, "max_keys", "must be at least 1"),
        (r#"{"max_keys":-3}"#, "max_keys", "must be at least 1"),
        (
            r#"{"max_keys":5000000}"#,
            "max_keys",
            "must be at most 1000000",
        ),
        (
            r#"{"rules":[{"name":"a","key":{},"limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].key",
            "set one of header and source",
        ),
        (
            r#"{"rules":[{"name":"a","key":{"header":"x","source":"address"},"limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].key",
            "set only one of header and source",
        ),
        (
            r#"{"rules":[{"name":"a","key":{"header":"bad header"},"limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].key.header",
            "must be a header name",
        ),
        (
            r#"{"rules":[{"name":"a","match":{"path_prefix":"api"},"limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].match.path_prefix",
            "must start with /",
        ),
    ];
    for (json, field, reason) in cases {
        let e = err(json);
        assert_eq!(e.field, *field, "{json}: {e}");
        assert!(e.reason.starts_with(reason), "{json}: {e}");
        assert!(!e.reason.ends_with('.'), "{e}");
        assert_eq!(
            e.reason.chars().next(),
            e.reason.chars().next().map(|c| c.to_ascii_lowercase())
        );
    }
}

#[test]
fn serde_errors_are_named_with_their_path() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s","brust":2}}]}"#,
            "rules[0].limit.brust",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"requests":1.5,"per":"1s"}}]}"#,
            "rules[0].limit.requests",
        ),
        (
            r#"{"rules":[{"name":"a","key":{"source":"ip"},"limit":{"requests":1,"per":"1s"}}]}"#,
            "rules[0].key.source",
        ),
        (
            r#"{"rules":[{"name":"a","limit":{"per":"1s"}}]}"#,
            "rules[0].limit",
        ),
        (r#"{"mode":"block"}"#, "mode"),
        (r#"{"failure_mode":"open"}"#, "failure_mode"),
        (r#"{"rulez":[]}"#, "rulez"),
    ];
    for (json, field) in cases {
        let e = err(json);
        assert_eq!(e.field, *field, "{json}: {e}");
        assert!(!e.reason.ends_with('.'), "{e}");
    }
}

#[test]
fn trusted_hops_apply_to_address_keys_only_and_are_bounded() {
    let rule = |key: &str| {
        Config::parse(
            format!(
                r#"{{"rules":[{{"name":"a","key":{key},"limit":{{"requests":1,"per":"1s"}}}}]}}"#
            )
            .as_bytes(),
        )
    };
    let c = rule(r#"{"source":"address","trusted_hops":2}"#).unwrap();
    assert_eq!(c.rules[0].key, KeySource::Address { trusted_hops: 2 });
    let err = |key: &str| rule(key).unwrap_err().to_string();
    assert_eq!(
        err(r#"{"header":"x-k","trusted_hops":1}"#),
        "rules[0].key.trusted_hops: only applies to source address"
    );
    assert_eq!(
        err(r#"{"source":"principal","trusted_hops":1}"#),
        "rules[0].key.trusted_hops: only applies to source address"
    );
    assert_eq!(
        err(r#"{"source":"address","trusted_hops":17}"#),
        "rules[0].key.trusted_hops: must be between 0 and 16"
    );
    assert_eq!(
        err(r#"{"source":"address","trusted_hops":-1}"#),
        "rules[0].key.trusted_hops: must be between 0 and 16"
    );
}

#[test]
fn a_configured_namespace_is_checked() {
    let c = Config::parse(br#"{"namespace":"team-a.v1"}"#).unwrap();
    assert_eq!(c.namespace.as_deref(), Some("team-a.v1"));
    assert_eq!(
        Config::parse(br#"{"namespace":"a/b"}"#)
            .unwrap_err()
            .to_string(),
        "namespace: must be 1 to 64 characters from a-z, A-Z, 0-9, ., _ and -"
    );
}
