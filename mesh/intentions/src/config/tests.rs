use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn err(json: &str) -> ConfigError {
    IntentionsConfig::parse(json.as_bytes()).unwrap_err()
}

fn assert_err(json: &str, field: &str, reason_has: &str) {
    let e = err(json);
    assert_eq!(e.field, field, "{json}: {e}");
    assert!(e.reason.contains(reason_has), "{json}: {e}");
    assert!(!e.reason.ends_with('.'), "{e}");
    assert!(!e.reason.starts_with(char::is_uppercase), "{e}");
}

#[test]
fn empty_config_is_documented_defaults() {
    for json in ["", "  \n", "{}"] {
        let p = IntentionsConfig::parse(json.as_bytes()).unwrap();
        assert_eq!(p.trust_domain, "cluster.local");
        assert_eq!(p.default_action, Action::Deny);
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.destination, None);
        assert!(p.intentions().is_empty());
    }
}

#[test]
fn design_example_compiles() {
    let p = IntentionsConfig::parse(
        br#"{ "trust_domain": "mesh.local", "default_action": "deny", "destination": "reviews",
              "intentions": [
                {"source": "frontend", "action": "allow"},
                {"source": "legacy/*", "action": "deny"},
                {"source": "web", "permissions": [
                    {"action": "allow", "http": {"path_prefix": "/api/", "methods": ["GET", "HEAD"]}} ]} ] }"#,
    )
    .unwrap();
    assert_eq!(p.destination, Some(ServiceName::new("default", "reviews")));
    let names: Vec<(&str, u8)> = p
        .intentions()
        .iter()
        .map(|i| (i.name.as_str(), i.precedence))
        .collect();
    assert_eq!(
        names,
        [
            ("default.frontend", 9),
            ("default.web", 9),
            ("legacy.any", 8)
        ]
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    assert_err(r#"{"bogus":1}"#, "bogus", "unknown field");
    assert_err(
        r#"{"intentions":[{"source":"a","action":"allow","why":1}]}"#,
        "intentions[0].why",
        "unknown field",
    );
    assert_err(
        r#"{"intentions":[{"source":"a","permissions":[{"action":"allow","http":{"path":"/"}}]}]}"#,
        "intentions[0].permissions[0].http.path",
        "unknown field",
    );
    assert_err(
        r#"{"default_action":"permit"}"#,
        "default_action",
        "unknown variant",
    );
    assert_err(r#"{"mode":"dry-run"}"#, "mode", "unknown variant");
    assert_err(
        r#"{"intentions":[{"source":"a","action":"Allow"}]}"#,
        "intentions[0].action",
        "unknown variant",
    );
    assert_err(
        r#"{"intentions":[{"action":"allow"}]}"#,
        "intentions[0]",
        "missing field `source`",
    );
}

#[test]
fn bad_names_are_refused() {
    assert_err(
        r#"{"trust_domain":"Mesh.Local"}"#,
        "trust_domain",
        "lowercase",
    );
    assert_err(r#"{"trust_domain":""}"#, "trust_domain", "lowercase");
    assert_err(
        r#"{"destination":"team/*"}"#,
        "destination",
        "without wildcards",
    );
    assert_err(r#"{"destination":"a/b/c"}"#, "destination", "must be");
    assert_err(
        r#"{"intentions":[{"source":"*/web","action":"allow"}]}"#,
        "intentions[0].source",
        "wildcard namespace",
    );
    assert_err(
        r#"{"intentions":[{"source":"we b","action":"allow"}]}"#,
        "intentions[0].source",
        "not a valid name",
    );
    assert_err(
        r#"{"destination":"api","intentions":[{"source":"a","destination":"x/","action":"allow"}]}"#,
        "intentions[0].destination",
        "not a valid name",
    );
    assert_err(
        r#"{"intentions":[{"name":"has space","source":"a","action":"allow"}]}"#,
        "intentions[0].name",
        "letters, digits",
    );
}

#[test]
fn action_and_permissions_are_exclusive() {
    assert_err(
        r#"{"intentions":[{"source":"a","action":"allow","permissions":[{"action":"allow","http":{}}]}]}"#,
        "intentions[0]",
        "not both",
    );
    assert_err(
        r#"{"intentions":[{"source":"a"}]}"#,
        "intentions[0]",
        "is required",
    );
    assert_err(
        r#"{"intentions":[{"source":"a","permissions":[]}]}"#,
        "intentions[0].permissions",
        "must not be empty",
    );
}

#[test]
fn permissions_on_wildcard_destinations_are_refused() {
    for dst in ["*", "default/*"] {
        assert_err(
            &format!(
                r#"{{"destination":"api","intentions":[{{"source":"a","destination":"{dst}","permissions":[{{"action":"allow","http":{{}}}}]}}]}}"#
            ),
            "intentions[0].permissions",
            "wildcard destination",
        );
    }
}

#[test]
fn duplicate_pairs_are_refused_after_defaults() {
    assert_err(
        r#"{"destination":"api","intentions":[
            {"source":"web","action":"allow"},
            {"name":"again","source":"default/web","destination":"default/api","action":"deny"}]}"#,
        "intentions[1].source",
        "duplicate source/destination pair (also intentions[0])",
    );
    assert_err(
        r#"{"intentions":[{"source":"*","action":"allow"},{"name":"x","source":"*","action":"deny"}]}"#,
        "intentions[1].source",
        "duplicate source/destination pair",
    );
    // Same source, different destinations: fine.
    IntentionsConfig::parse(
        br#"{"destination":"api","intentions":[{"source":"web","action":"allow"},{"source":"web","destination":"*","action":"deny"}]}"#,
    )
    .unwrap();
}

#[test]
fn duplicate_names_are_refused() {
    assert_err(
        r#"{"intentions":[{"name":"n","source":"a","action":"allow"},{"name":"n","source":"b","action":"allow"}]}"#,
        "intentions[1].name",
        "duplicate intention name \"n\"",
    );
    // Derived names can collide ("a.b" / "c" and "a" / "b.c"): the error says what to do.
    assert_err(
        r#"{"intentions":[{"source":"a.b/c","action":"allow"},{"source":"a/b.c","action":"allow"}]}"#,
        "intentions[1].source",
        "set name",
    );
}

#[test]
fn destinations_need_the_top_level_destination() {
    assert_err(
        r#"{"intentions":[{"source":"a","destination":"api","action":"allow"}]}"#,
        "intentions[0].destination",
        "top-level destination",
    );
    let p = IntentionsConfig::parse(
        br#"{"intentions":[{"source":"a","action":"allow"},{"source":"b","destination":"*","action":"allow"}]}"#,
    )
    .unwrap();
    let levels: Vec<u8> = p.intentions().iter().map(|i| i.precedence).collect();
    assert_eq!(levels, [9, 3]);
}

#[test]
fn bad_matchers_are_refused() {
    let perm = |http: &str| {
        format!(
            r#"{{"intentions":[{{"source":"a","permissions":[{{"action":"deny","http":{http}}}]}}]}}"#
        )
    };
    let f = "intentions[0].permissions[0].http";
    assert_err(
        &perm(r#"{"path_regex":"(unclosed"}"#),
        &format!("{f}.path_regex"),
        "regex does not compile",
    );
    assert_err(
        &perm(&format!(r#"{{"path_regex":"{}"}}"#, "a".repeat(2000))),
        &format!("{f}.path_regex"),
        "regex longer than",
    );
    assert_err(
        &perm(r#"{"path_regex":"a{1000}{1000}"}"#),
        &format!("{f}.path_regex"),
        "regex",
    );
    assert_err(
        &perm(r#"{"methods":["get"]}"#),
        &format!("{f}.methods[0]"),
        "uppercase",
    );
    assert_err(
        &perm(r#"{"methods":["GET POST"]}"#),
        &format!("{f}.methods[0]"),
        "not an http method token",
    );
    assert_err(
        &perm(r#"{"path_prefix":"api"}"#),
        &format!("{f}.path_prefix"),
        "must start with /",
    );
    assert_err(
        &perm(r#"{"path_exact":"/a","path_prefix":"/b"}"#),
        f,
        "at most one",
    );
    assert_err(
        &perm(r#"{"headers":[{"name":"x","exact":"a","prefix":"b"}]}"#),
        &format!("{f}.headers[0]"),
        "at most one",
    );
    assert_err(
        &perm(r#"{"headers":[{"name":"x","regex":"("}]}"#),
        &format!("{f}.headers[0].regex"),
        "regex does not compile",
    );
    assert_err(
        &perm(r#"{"headers":[{"name":":path","prefix":"/admin"}]}"#),
        &format!("{f}.headers[0].name"),
        "normalized",
    );
    assert_err(
        &perm(r#"{"headers":[{"name":":Method","exact":"GET"}]}"#),
        &format!("{f}.headers[0].name"),
        "methods",
    );
}

#[test]
fn config_paths_must_be_normalized() {
    let perm = |http: &str| {
        format!(
            r#"{{"intentions":[{{"source":"a","permissions":[{{"action":"deny","http":{http}}}]}}]}}"#
        )
    };
    let f = "intentions[0].permissions[0].http";
    for (p, want) in [
        ("/admin/../x", "\"/x\""),
        ("//admin", "\"/admin\""),
        ("/%61dmin", "\"/admin\""),
        ("/a%3ab", "\"/a%3Ab\""),
        ("/admin?x", "\"/admin\""),
    ] {
        assert_err(
            &perm(&format!(r#"{{"path_prefix":"{p}"}}"#)),
            &format!("{f}.path_prefix"),
            want,
        );
    }
    assert_err(
        &perm(r#"{"path_exact":"/a;b"}"#),
        &format!("{f}.path_exact"),
        "could never match",
    );
    assert_err(
        &perm(r#"{"path_exact":"/a%2Fb"}"#),
        &format!("{f}.path_exact"),
        "could never match",
    );
    IntentionsConfig::parse(perm(r#"{"path_prefix":"/api/v1/"}"#).as_bytes()).unwrap();
    IntentionsConfig::parse(perm(r#"{"path_exact":"/caf%C3%A9"}"#).as_bytes()).unwrap();
}

#[test]
fn too_many_intentions_are_refused() {
    let one = r#"{"source":"*","destination":"*","action":"allow"}"#;
    let json = format!(
        r#"{{"intentions":[{}]}}"#,
        vec![one; MAX_INTENTIONS + 1].join(",")
    );
    assert_err(&json, "intentions", "at most");
}
