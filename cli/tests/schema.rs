//! The committed JSON Schemas are the generated ones, and schema and filter agree: every
//! shipped example and a corpus of invalid configs get the same verdict from the schema
//! (the `jsonschema` crate) and from the filter's own validator.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mesh_cli::{check, find, schema};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validators() -> Vec<(&'static str, jsonschema::Validator)> {
    schema::all()
        .into_iter()
        .map(|(n, s)| (n, jsonschema::validator_for(&s).unwrap()))
        .collect()
}

fn schema_ok(validators: &[(&'static str, jsonschema::Validator)], cap: &str, text: &str) -> bool {
    let v: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(text).unwrap()
    };
    validators
        .iter()
        .find(|(n, _)| *n == cap)
        .unwrap()
        .1
        .is_valid(&v)
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    let dir = root().join(schema::DIR);
    let mut stale = Vec::new();
    for (name, s) in schema::all() {
        let p = dir.join(schema::file_name(name));
        if std::fs::read_to_string(&p).ok() != Some(schema::render(&s)) {
            stale.push(p.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas (run `cargo xtask schemas`): {stale:?}"
    );
    // Every module has one, and nothing else is in the folder.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = find::names().map(schema::file_name).collect();
    want.sort();
    assert_eq!(files, want);
}

/// Every plugin configuration of ours in the shipped files, with its capability.
fn shipped() -> Vec<(String, &'static str, String)> {
    let schemas = schema::all();
    let mut out = Vec::new();
    let mut stack = vec![root().join("envoy-config")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if !p
                .extension()
                .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
            {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let name = p.display().to_string();
            for (i, doc) in check::documents(&p, &bytes).unwrap() {
                match find::discover(&doc) {
                    Some(d) => {
                        out.extend(d.found.into_iter().map(|f| {
                            (format!("{name}:{i}:{}", f.location), f.capability, f.config)
                        }))
                    }
                    None => {
                        let hint = find::PathHint {
                            stem: p.file_stem().and_then(|s| s.to_str()),
                            dir: p
                                .parent()
                                .and_then(Path::file_name)
                                .and_then(|s| s.to_str()),
                        };
                        if let Ok(cap) = find::plain(&doc, hint, &schemas) {
                            out.push((
                                name.clone(),
                                cap,
                                String::from_utf8(bytes.clone()).unwrap(),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_shipped_example_is_valid_for_both() {
    let validators = validators();
    let shipped = shipped();
    assert!(shipped.len() >= 15, "{}", shipped.len());
    for (at, cap, text) in &shipped {
        assert!(
            check::validate(cap, text.as_bytes()).is_ok(),
            "filter rejects {at}"
        );
        assert!(schema_ok(&validators, cap, text), "schema rejects {at}");
    }
    // The plain JSON examples name their schema.
    for f in [
        "canary/plugin-config.json",
        "intentions/config.example.json",
        "suite/plugin-config.json",
    ] {
        let v: Value =
            serde_json::from_slice(&std::fs::read(root().join("envoy-config").join(f)).unwrap())
                .unwrap();
        let s = v["$schema"].as_str().unwrap_or_default();
        assert!(s.ends_with(".schema.json"), "{f}: {s:?}");
        assert!(
            root()
                .join("envoy-config")
                .join(f)
                .parent()
                .unwrap()
                .join(s)
                .exists(),
            "{f}: {s}"
        );
    }
}

/// Invalid configs both must reject: shape, unknown fields, enums, ranges, name patterns.
const INVALID: &[(&str, &str)] = &[
    ("canary", r#"{"route_header": 5}"#),
    ("canary", r#"{"servics": []}"#),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "v1", "weight": -1}]}]}"#,
    ),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "v1", "weight": 1000001}]}]}"#,
    ),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "v 1", "weight": 1}]}]}"#,
    ),
    ("canary", r#"{"services": [{"host": "r", "subsets": []}]}"#),
    ("canary", r#"{"services": [{"host": "r"}]}"#),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}], "rollback": {"subset": "b", "max_error_rate": 1.5}}]}"#,
    ),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}], "rollback": {"subset": "b", "window_s": 0}}]}"#,
    ),
    ("canary", r#"{"namespace": "a/b"}"#),
    ("canary", r#"{"$schema": 1}"#),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 0, "per": "1s"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1 second"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a b", "limit": {"requests": 1, "per": "1s"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s", "burst": 0}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}, "key": {"header": "x y"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}, "key": {"source": "cookie"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}, "key": {"source": "address", "trusted_hops": 17}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}, "match": {"path_prefx": "/"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "global": {"domain": "d"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "global": {"cluster": "c", "domain": "d", "failure_mode": "maybe"}}]}"#,
    ),
    ("ratelimit", r#"{"max_keys": 0}"#),
    ("ratelimit", r#"{"mode": "dry-run"}"#),
    ("ratelimit", r#"{"rules": {}}"#),
    ("intentions", r#"{"default_action": "maybe"}"#),
    ("intentions", r#"{"trust_domain": "Mesh.Local"}"#),
    ("intentions", r#"{"intentions": [{"action": "allow"}]}"#),
    (
        "intentions",
        r#"{"intentions": [{"source": "web", "permissions": [{"action": "allow", "http": {"headers": [{"exact": "x"}]}}]}]}"#,
    ),
    ("intentions", r#"{"mode": "permissive"}"#),
    ("telemetry", r#"{"reporter": "both"}"#),
    ("telemetry", r#"{"max_series": 0}"#),
    ("telemetry", r#"{"max_series": -1}"#),
    ("telemetry", r#"{"workload": {"name": "a b"}}"#),
    ("telemetry", r#"{"trace": {"enabled": "yes"}}"#),
    ("telemetry", r#"{"access_log": {"format": "text"}}"#),
    ("suite", r#"{"tracing": {}}"#),
    ("suite", r#"{"export_decisions": "no"}"#),
    (
        "suite",
        r#"{"canary": {"services": [{"host": "r", "subsets": [{"name": "v1", "weight": -5}]}]}}"#,
    ),
    (
        "suite",
        r#"{"ratelimit": {"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s", "colour": 1}}]}}"#,
    ),
];

/// Invalid configs only the filter can see (they need the compiler): the schema accepts
/// them, `mfctl check` and the proxy reject them. Kept here so the docs stay true.
const FILTER_ONLY: &[(&str, &str)] = &[
    // `limit` is required unless the rule has a `global` block.
    ("ratelimit", r#"{"rules": [{"name": "a"}]}"#),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "match": {"path_regex": "(x"}, "limit": {"requests": 1, "per": "1s"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}}, {"name": "a", "limit": {"requests": 1, "per": "1s"}}]}"#,
    ),
    (
        "ratelimit",
        r#"{"rules": [{"name": "a", "limit": {"requests": 1, "per": "1s"}, "key": {"header": "x", "source": "address"}}]}"#,
    ),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "v1", "weight": 0}]}]}"#,
    ),
    (
        "canary",
        r#"{"services": [{"host": "r", "subsets": [{"name": "v1", "weight": 1}], "overrides": [{"header": "x", "subset": "v9"}]}]}"#,
    ),
    (
        "intentions",
        r#"{"intentions": [{"source": "web", "permissions": [{"action": "allow", "http": {"methods": ["get"]}}]}]}"#,
    ),
];

#[test]
fn invalid_configs_are_rejected_by_both() {
    let validators = validators();
    for (cap, text) in INVALID {
        assert!(
            check::validate(cap, text.as_bytes()).is_err(),
            "filter accepts {cap} {text}"
        );
        assert!(
            !schema_ok(&validators, cap, text),
            "schema accepts {cap} {text}"
        );
    }
    for (cap, text) in FILTER_ONLY {
        assert!(
            check::validate(cap, text.as_bytes()).is_err(),
            "filter accepts {cap} {text}"
        );
        assert!(
            schema_ok(&validators, cap, text),
            "schema now rejects {cap} {text}: move it to INVALID"
        );
    }
}

#[test]
fn every_config_may_name_its_schema() {
    let validators = validators();
    for name in find::names() {
        for text in [
            format!(r#"{{"$schema": "../schemas/{name}.schema.json"}}"#),
            format!("{{\n  \"$schema\": \"https://example.com/{name}.schema.json\"\n}}"),
        ] {
            assert!(
                check::validate(name, text.as_bytes()).is_ok(),
                "{name}: {text}"
            );
            assert!(schema_ok(&validators, name, &text), "{name}: {text}");
        }
    }
    // Inside the suite each part may name its own too.
    let text = r#"{"$schema": "suite.schema.json", "canary": {"$schema": "canary.schema.json"}}"#;
    assert!(check::validate("suite", text.as_bytes()).is_ok());
    assert!(schema_ok(&validators, "suite", text));
}
