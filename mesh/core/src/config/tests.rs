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

/// Found by the config fuzz targets: a key spelled with `\n` made a two-line error.
#[test]
fn an_error_is_one_line_whatever_the_key() {
    let e = parse_json::<Outer>(b"{\"a\\nb\\u001b\":1}").unwrap_err();
    let line = e.to_string();
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert!(line.contains("unknown field `a\\nb\\u{1b}`"), "{line}");
}

/// Found by the config fuzz targets: a cut-off config gave serde_json's `EOF while ...`.
#[test]
fn a_truncated_config_has_a_lowercase_reason() {
    let e = parse_json::<Outer>(br#"{"rules":[{"pe"#).unwrap_err();
    assert!(
        e.reason.starts_with("end of input while parsing"),
        "{}",
        e.reason
    );
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

// === field_at against serde_path_to_error ===

#[cfg(not(target_arch = "wasm32"))]
mod oracle {
    use super::super::parse_json;
    use proptest::prelude::*;
    use serde::de::DeserializeOwned;
    use serde::Deserialize;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        name: String,
        #[serde(default)]
        rules: Vec<Rule>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        tags: BTreeMap<String, u32>,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        name: String,
        #[serde(default, rename = "match")]
        matcher: Option<Match>,
        limit: Limit,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Match {
        #[serde(default)]
        methods: Vec<String>,
        #[serde(default)]
        headers: Vec<Header>,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Header {
        name: String,
        #[serde(default)]
        exact: Option<String>,
        #[serde(default)]
        invert: bool,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limit {
        requests: u64,
        per: String,
        #[serde(default)]
        burst: Option<u32>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Enforce,
        Shadow,
    }

    /// The path serde_path_to_error reports, `None` when the document is accepted.
    fn oracle<T: DeserializeOwned>(json: &str) -> Option<String> {
        let mut de = serde_json::Deserializer::from_str(json);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(e) => {
                let p = e.path().to_string();
                Some(if p == "." { String::new() } else { p })
            }
            Ok(_) => de.end().err().map(|_| String::new()),
        }
    }

    fn valid(rules: usize, headers: usize) -> Value {
        let rule = |i: usize| {
            json!({
                "name": format!("r{i} \"quoted\" \\ {{x}}"),
                "match": {
                    "methods": ["GET", "POST"],
                    "headers": (0..headers)
                        .map(|h| json!({"name": format!("h{h}"), "exact": "[v]", "invert": h % 2 == 0}))
                        .collect::<Vec<_>>(),
                },
                "limit": {"requests": 10 + i, "per": "1s", "burst": 2},
            })
        };
        json!({
            "name": "doc",
            "rules": (0..rules).map(rule).collect::<Vec<_>>(),
            "mode": "shadow",
            "tags": {"a": 1, "b,c": 2, "q\"k\u{e9}": 3},
        })
    }

    /// Every object member and array element, as the steps that reach it.
    fn places(v: &Value, at: &mut Vec<Vec<Value>>, here: Vec<Value>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let mut p = here.clone();
                    p.push(Value::String(k.clone()));
                    at.push(p.clone());
                    places(c, at, p);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let mut p = here.clone();
                    p.push(Value::from(i));
                    at.push(p.clone());
                    places(c, at, p);
                }
            }
            _ => {}
        }
    }

    fn slot<'a>(v: &'a mut Value, steps: &[Value]) -> &'a mut Value {
        steps.iter().fold(v, |v, s| match s {
            Value::String(k) => &mut v[k.as_str()],
            _ => &mut v[s.as_u64().unwrap() as usize],
        })
    }

    proptest! {
        #[test]
        fn paths_match_serde_path_to_error(
            rules in 0usize..4,
            headers in 0usize..3,
            pick in any::<prop::sample::Index>(),
            kind in 0usize..8,
            pretty in any::<bool>(),
        ) {
            let mut doc = valid(rules, headers);
            let mut at = Vec::new();
            places(&doc, &mut at, Vec::new());
            let steps = pick.get(&at).clone();
            let target = slot(&mut doc, &steps);
            match kind {
                0 => *target = json!("text"),
                1 => *target = json!(-7),
                2 => *target = json!(true),
                3 => *target = json!({"zz": 1}),
                4 => *target = json!([1, "x"]),
                5 => *target = Value::Null,
                6 => {
                    if let Value::Object(m) = target {
                        m.insert("unknown_key".into(), json!(1));
                    } else {
                        *target = json!({});
                    }
                }
                _ => {
                    if let Value::Object(m) = target {
                        m.remove("name");
                        m.remove("requests");
                    } else {
                        *target = json!(1.5);
                    }
                }
            }
            let text = if pretty {
                serde_json::to_string_pretty(&doc).unwrap()
            } else {
                doc.to_string()
            };
            let ours = parse_json::<Doc>(text.as_bytes()).err().map(|e| e.field);
            prop_assert_eq!(ours, oracle::<Doc>(&text), "{}", text);
        }
    }

    #[test]
    fn syntax_errors_and_trailing_bytes() {
        for text in [
            r#"{"rules":[{"name":"a","limit":{"requests":1,"per":"1s"}}]} x"#,
            "{\n  \"rules\": [\n    {\"name\": \"a\",\n     \"limit\": {\"requests\": 1, \"per\": 5}}\n  ]\n}",
            r#"{"rules":[{"name":"a","limit":{}}]}"#,
            r#"{"mode":"loud"}"#,
            r#"{"tags":{"a":-1}}"#,
            r#"{"tags":{"a\\b\/c\"d":"x"}}"#,
        ] {
            let ours = parse_json::<Doc>(text.as_bytes()).err().map(|e| e.field);
            assert_eq!(ours, oracle::<Doc>(text), "{text}");
            assert!(ours.is_some());
        }
    }
}

#[test]
fn a_top_level_schema_string_is_accepted_anywhere_among_the_members() {
    for json in [
        r#"{"$schema": "../schemas/x.schema.json"}"#,
        r#"{"$schema": "x", "rules": [{"per": 1}]}"#,
        r#"{"rules": [{"per": 1}], "$schema": "x"}"#,
        "{\n  \"rules\": [],\n  \"$schema\": \"a\\\"b\",\n  \"rules\": []\n}",
    ] {
        let r = parse_json::<Outer>(json.as_bytes());
        // The last one repeats `rules` after the schema key: serde's duplicate-field error
        // proves the members around it were kept.
        if json.matches("rules").count() == 2 {
            assert!(r.unwrap_err().reason.starts_with("duplicate field `rules`"));
        } else {
            r.unwrap();
        }
    }
}

#[test]
fn schema_keys_elsewhere_or_not_strings_stay_errors_with_their_positions() {
    let e = parse_json::<Outer>(br#"{"$schema": 3}"#).unwrap_err();
    assert_eq!(e.field, "$schema");
    assert!(
        e.reason.starts_with("unknown field `$schema`"),
        "{}",
        e.reason
    );
    let e = parse_json::<Outer>(br#"{"rules": [{"per": 1, "$schema": "x"}]}"#).unwrap_err();
    assert_eq!(e.field, "rules[0].$schema");
    // Blanking keeps the columns of what follows.
    let e = parse_json::<Outer>(br#"{"$schema": "x", "rules": [{"per": "1"}]}"#).unwrap_err();
    assert_eq!(e.field, "rules[0].per");
    assert!(e.reason.ends_with("column 38"), "{}", e.reason);
}
