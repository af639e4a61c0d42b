use crate::Canary;
use mesh_core::ConfigError;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn err(json: &str) -> ConfigError {
    Canary::from_json(json.as_bytes()).unwrap_err()
}

fn svc(extra: &str) -> String {
    format!(
        r#"{{"services":[{{"host":"reviews","subsets":[{{"name":"v1","weight":90}},{{"name":"v2","weight":10}}]{extra}}}]}}"#
    )
}

#[test]
fn empty_config_means_defaults() {
    for empty in ["", "  \n", "{}"] {
        let c = Canary::from_json(empty.as_bytes()).unwrap();
        assert_eq!(c.route_header(), "x-canary-subset");
        assert!(!c.expose_subset());
        assert!(c.services().is_empty());
    }
}

#[test]
fn the_design_example_compiles() {
    let c = Canary::from_json(
        br#"{ "route_header": "x-canary-subset",
  "services": [ { "host": "reviews",
      "subsets": [ {"name": "v1", "weight": 90}, {"name": "v2", "weight": 10} ],
      "overrides": [ {"header": "x-canary", "value": "always", "subset": "v2"} ],
      "sticky": {"header": "x-user-id"},
      "rollback": {"subset": "v2", "max_error_rate": 0.05, "min_requests": 50, "window_s": 30} } ] }"#,
    )
    .unwrap();
    let s = &c.services()[0];
    assert_eq!(s.host(), "reviews");
    assert_eq!(s.subsets(), ["v1", "v2"]);
    assert_eq!(s.weights(), [90, 10]);
    let g = s.guard().unwrap();
    assert_eq!(g.subset(), 1);
    assert_eq!(g.policy().max_error_ppb, 50_000_000);
    assert_eq!(g.policy().min_requests, 50);
    assert_eq!(g.policy().window_nanos, 30_000_000_000);
    assert!(g.key().contains("/canary.2/guard."), "{}", g.key());
}

#[test]
fn rollback_defaults() {
    let c = Canary::from_json(svc(r#","rollback":{"subset":"v2"}"#).as_bytes()).unwrap();
    let p = c.services()[0].guard().unwrap().policy();
    assert_eq!(
        (p.max_error_ppb, p.min_requests, p.window_nanos),
        (50_000_000, 50, 30_000_000_000)
    );
}

#[test]
fn header_names_are_lowercased() {
    let c = Canary::from_json(br#"{"route_header":"X-Subset"}"#).unwrap();
    assert_eq!(c.route_header(), "x-subset");
}

#[test]
fn stat_labels_are_safe() {
    let c = Canary::from_json(
        br#"{"services":[
            {"host":"reviews.default.svc","subsets":[{"name":"v1","weight":1}]},
            {"host":"*.example.com","subsets":[{"name":"v1","weight":1}]},
            {"host":"*","subsets":[{"name":"v1","weight":1}]}]}"#,
    )
    .unwrap();
    let labels: Vec<&str> = c.services().iter().map(|s| s.stat_label()).collect();
    assert_eq!(
        labels,
        ["reviews_default_svc", "wildcard_example_com", "any"]
    );
}

// Each bad input with the field and reason it must be reported with.
#[test]
fn bad_configs_name_the_field_and_reason() {
    let cases: Vec<(String, &str, &str)> = vec![
        (r#"{"bogus":1}"#.into(), "bogus", "unknown field `bogus`"),
        (svc(r#","extra":1"#), "services[0].extra", "unknown field `extra`"),
        (r#"{"route_header":"bad header"}"#.into(), "route_header", "must be a header name"),
        (r#"{"route_header":":path"}"#.into(), "route_header", "must be a header name"),
        (
            r#"{"services":[{"host":"","subsets":[{"name":"v1","weight":1}]}]}"#.into(),
            "services[0].host",
            "must not be empty",
        ),
        (
            r#"{"services":[{"host":"a:80","subsets":[{"name":"v1","weight":1}]}]}"#.into(),
            "services[0].host",
            "\"a:80\" must not carry a port",
        ),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":1}]},{"host":"A","subsets":[{"name":"v1","weight":1}]}]}"#.into(),
            "services[1].host",
            "duplicate host \"A\"",
        ),
        (
            r#"{"services":[{"host":"*.example.com","subsets":[{"name":"v1","weight":1}]},{"host":"wildcard.example.com","subsets":[{"name":"v1","weight":1}]}]}"#.into(),
            "services[1].host",
            "its stats label \"wildcard_example_com\" is already that of services[0].host",
        ),
        (r#"{"services":[{"host":"a","subsets":[]}]}"#.into(), "services[0].subsets", "must not be empty"),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":1},{"name":"v1","weight":2}]}]}"#.into(),
            "services[0].subsets[1].name",
            "duplicate subset \"v1\"",
        ),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":1},{"name":"v2","weight":-1}]}]}"#.into(),
            "services[0].subsets[1].weight",
            "must be >= 0",
        ),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":1000001}]}]}"#.into(),
            "services[0].subsets[0].weight",
            "must be <= 1000000",
        ),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":0},{"name":"v2","weight":0}]}]}"#.into(),
            "services[0].subsets",
            "total weight must be > 0",
        ),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v 1","weight":1}]}]}"#.into(),
            "services[0].subsets[0].name",
            "must be 1 to 63 letters, digits, '-' or '_'",
        ),
        (
            svc(r#","overrides":[{"header":"x-canary","value":"always","subset":"v3"}]"#),
            "services[0].overrides[0].subset",
            "unknown subset \"v3\"",
        ),
        (
            svc(r#","overrides":[{"subset":"v2"}]"#),
            "services[0].overrides[0]",
            "exactly one of header and match must be set",
        ),
        (
            svc(r#","overrides":[{"header":"x","match":{"path_prefix":"/"},"subset":"v2"}]"#),
            "services[0].overrides[0]",
            "exactly one of header and match must be set",
        ),
        (
            svc(r#","overrides":[{"match":{},"subset":"v2"}]"#),
            "services[0].overrides[0].match",
            "must not be empty (it would match every request)",
        ),
        (
            svc(r#","overrides":[{"match":{"path_prefix":"beta"},"subset":"v2"}]"#),
            "services[0].overrides[0].match.path_prefix",
            "must start with /",
        ),
        (
            svc(r#","overrides":[{"header":"a b","subset":"v2"}]"#),
            "services[0].overrides[0].header",
            "must be a header name",
        ),
        (svc(r#","sticky":{}"#), "services[0].sticky", "exactly one of header and cookie must be set"),
        (
            svc(r#","sticky":{"header":"x-user","max_age_s":5}"#),
            "services[0].sticky.max_age_s",
            "only applies with cookie",
        ),
        (svc(r#","sticky":{"cookie":"a;b"}"#), "services[0].sticky.cookie", "must be a cookie name"),
        (svc(r#","sticky":{"cookie":"c","secret":""}"#), "services[0].sticky.secret", "must not be empty"),
        (svc(r#","rollback":{"subset":"v9"}"#), "services[0].rollback.subset", "unknown subset \"v9\""),
        (
            svc(r#","rollback":{"subset":"v2","max_error_rate":1.5}"#),
            "services[0].rollback.max_error_rate",
            "must be between 0 and 1",
        ),
        (
            svc(r#","rollback":{"subset":"v2","max_error_rate":-0.1}"#),
            "services[0].rollback.max_error_rate",
            "must be between 0 and 1",
        ),
        (
            svc(r#","rollback":{"subset":"v2","min_requests":0}"#),
            "services[0].rollback.min_requests",
            "must be >= 1",
        ),
        (
            svc(r#","rollback":{"subset":"v2","window_s":0}"#),
            "services[0].rollback.window_s",
            "must be between 1 and 86400",
        ),
        (
            r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":1}],"rollback":{"subset":"v1"}}]}"#.into(),
            "services[0].rollback.subset",
            "needs another subset to take its traffic",
        ),
    ];
    for (json, field, reason) in cases {
        let e = err(&json);
        assert_eq!(e.field, field, "{json}");
        assert!(e.reason.starts_with(reason), "{json}: {}", e.reason);
        assert!(!e.reason.ends_with('.'), "{}", e.reason);
    }
}

#[test]
fn wrong_types_name_the_field() {
    let e = err(r#"{"services":[{"host":"a","subsets":[{"name":"v1","weight":1.5}]}]}"#);
    assert_eq!(e.field, "services[0].subsets[0].weight");
    let e = err(r#"{"services":[{"host":"a"}]}"#);
    assert_eq!(e.field, "services[0]");
    assert!(
        e.reason.starts_with("missing field `subsets`"),
        "{}",
        e.reason
    );
}

#[test]
fn the_guard_key_survives_weight_changes_and_not_policy_changes() {
    let key = |weights: (u32, u32), rollback: &str| {
        let json = format!(
            r#"{{"services":[{{"host":"reviews","subsets":[{{"name":"v1","weight":{}}},{{"name":"v2","weight":{}}}],"sticky":{{"header":"x-user"}},"rollback":{rollback}}}]}}"#,
            weights.0, weights.1
        );
        let c = Canary::from_json(json.as_bytes()).unwrap();
        c.services()[0].guard().unwrap().key().to_owned()
    };
    let policy = r#"{"subset":"v2","max_error_rate":0.1}"#;
    assert_eq!(key((90, 10), policy), key((50, 50), policy));
    assert_eq!(key((90, 10), policy), key((0, 100), policy));
    assert_ne!(
        key((90, 10), policy),
        key((90, 10), r#"{"subset":"v2","max_error_rate":0.2}"#)
    );
    assert_ne!(
        key((90, 10), policy),
        key((90, 10), r#"{"subset":"v1","max_error_rate":0.1}"#)
    );
}
