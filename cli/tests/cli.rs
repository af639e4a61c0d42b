//! The `mfctl` binary: every shipped file passes, the broken corpus fails with the expected
//! paths and exit codes, `apply` replaces an ECDS file only with a valid configuration.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel)
}

/// Runs mfctl in the repository root; returns the exit code, stdout and stderr.
fn mfctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfctl"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_report(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = mfctl(&all);
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}")),
    )
}

/// Every JSON and YAML file under `dir`, found at test time.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
        {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_file_passes_and_our_configs_in_each_format_are_found() {
    let mut files = Vec::new();
    files_under(&root().join("envoy-config"), &mut files);
    files.sort();
    let args: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    let mut all = vec!["--skip-unrecognized"];
    all.extend(args.iter().map(String::as_str));
    let (code, report) = json_report(&all);
    assert_eq!(code, 0, "{report:#}");
    let checked = report["checked"].as_array().unwrap();
    // Ours are found by content: every module, in plain configs, bootstraps and Istio.
    for name in ["canary", "ratelimit", "intentions", "telemetry", "suite"] {
        for kind in ["envoy", "istio"] {
            assert!(
                checked
                    .iter()
                    .any(|c| c["capability"] == name && c["kind"] == kind),
                "no {kind} config of {name} found: {report:#}"
            );
        }
    }
    assert!(checked.iter().any(|c| c["kind"] == "plain"));
    // A file whose content names one of our modules (as a string value, not in a comment)
    // is never skipped whole.
    for (f, arg) in files.iter().zip(&args) {
        let docs = mesh_cli::check::documents(f, &std::fs::read(f).unwrap()).unwrap();
        if docs.iter().any(|(_, d)| names_our_module(d)) {
            assert!(
                checked.iter().any(|c| c["file"] == arg.as_str()),
                "{arg} names a module of ours but nothing in it was checked"
            );
        }
    }
}

fn names_our_module(v: &Value) -> bool {
    match v {
        Value::String(s) => ["canary", "ratelimit", "intentions", "telemetry", "suite"]
            .iter()
            .any(|n| s.ends_with(&format!("/{n}.wasm")) || s.contains(&format!("/{n}:"))),
        Value::Array(a) => a.iter().any(names_our_module),
        Value::Object(o) => o.values().any(names_our_module),
        _ => false,
    }
}

#[test]
fn the_other_formats_are_read() {
    let (code, report) = json_report(
        &[
            "tests/corpus/valid/envoy-gateway.yaml",
            "tests/corpus/valid/consul.yaml",
            "tests/corpus/valid/traffic-extension.yaml",
            "tests/corpus/valid/ratelimit-plugin.yaml",
        ]
        .map(|p| Box::leak(format!("cli/{p}").into_boxed_str()) as &str),
    );
    assert_eq!(code, 0, "{report:#}");
    let found: Vec<(String, String, String)> = report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["capability"].as_str().unwrap().to_owned(),
                c["location"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("envoy-gateway", "ratelimit", "spec.wasm[0].config"),
        (
            "consul",
            "intentions",
            "EnvoyExtensions[0].Arguments.PluginConfig.Configuration",
        ),
        (
            "consul",
            "canary",
            "spec.EnvoyExtensions[0].Arguments.PluginConfig.Configuration",
        ),
        ("istio", "telemetry", "spec.wasm.pluginConfig"),
        ("plain", "ratelimit", ""),
    ];
    assert_eq!(
        found,
        want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
            .to_vec()
    );
    // Someone else's module beside ours is skipped, not checked.
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{report:#}");
    assert_eq!(skipped[0]["location"], "spec.wasm[1].config");
}

/// A broken file: name, exit code, document, location, field, start of the reason.
type Broken = (
    &'static str,
    i32,
    Option<u64>,
    &'static str,
    &'static str,
    &'static str,
);

#[test]
fn broken_files_fail_with_file_document_field_and_reason() {
    // (file, exit code, document, location, field, start of the reason)
    let cases: &[Broken] = &[
        (
            "bootstrap-bad-weight.yaml",
            1,
            Some(0),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config.configuration.value",
            "services[0].subsets[0].weight",
            "must be >= 0",
        ),
        (
            "ecds-bad-regex.yaml",
            1,
            Some(0),
            "resources[0].typed_config.config.configuration.value",
            "rules[0].match.path_regex",
            "regex does not compile",
        ),
        (
            "wasmplugins.yaml",
            1,
            Some(1),
            "spec.pluginConfig",
            "intentions[0].colour",
            "unknown field `colour`",
        ),
        (
            "envoy-gateway.yaml",
            1,
            Some(0),
            "spec.wasm[0].config",
            "ratelimit.rules[0].limit.per",
            "invalid duration \"10 seconds\"",
        ),
        (
            "consul.yaml",
            1,
            Some(0),
            "EnvoyExtensions[0].Arguments.PluginConfig.Configuration",
            "max_series",
            "must be at least 1",
        ),
        ("canary-plugin.json", 1, Some(0), "", "services[0].stiky", "unknown field `stiky`"),
        ("ratelimit-truncated.json", 1, Some(0), "", "rules", "end of input while parsing a list"),
        ("not-yaml.yaml", 2, None, "", "", "document 0: not YAML"),
        ("ambiguous.yaml", 2, Some(0), "", "", "cannot tell which filter"),
    ];
    for (file, code, document, location, field, reason) in cases {
        let path = format!("cli/tests/corpus/broken/{file}");
        let (got, report) = json_report(&[&path]);
        assert_eq!(got, *code, "{file}: {report:#}");
        let errors = report["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{file}: {report:#}");
        let e = &errors[0];
        assert_eq!(e["file"], path.as_str(), "{file}");
        assert_eq!(e["document"].as_u64(), *document, "{file}: {e}");
        assert_eq!(e["location"], *location, "{file}: {e}");
        assert_eq!(e["field"], *field, "{file}: {e}");
        assert!(
            e["reason"].as_str().unwrap().starts_with(reason),
            "{file}: {e}"
        );
        // The text form has the same facts on one line.
        let (text_code, text, _) = mfctl(&["check", &path]);
        assert_eq!(text_code, *code);
        let line = text.lines().next().unwrap();
        assert!(line.starts_with(&path), "{line}");
        assert!(line.contains(field) && line.contains(reason), "{line}");
        if let Some(d) = document {
            assert!(line.contains(&format!("document {d}")), "{line}");
        }
    }
    // All at once: the worst exit code wins, every error is listed.
    let mut files = Vec::new();
    files_under(&corpus("broken"), &mut files);
    let args: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let (code, report) = json_report(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2);
    assert_eq!(report["errors"].as_array().unwrap().len(), cases.len());
}

#[test]
fn unusable_input_exits_2() {
    let (code, report) = json_report(&["no/such/file.yaml"]);
    assert_eq!(code, 2);
    assert!(report["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("cannot read"));
    // A file with nothing of ours is unusable unless told to skip it.
    let stats = "envoy-config/telemetry/stats-tags.yaml";
    assert_eq!(json_report(&[stats]).0, 2);
    assert_eq!(json_report(&["--skip-unrecognized", stats]).0, 0);
    // --as names the filter of a plain config.
    let (code, _, err) = mfctl(&["check", "--as", "tracing", stats]);
    assert_eq!(code, 2, "{err}");
    let (code, report) = json_report(&[
        "--as",
        "ratelimit",
        "cli/tests/corpus/broken/ambiguous.yaml",
    ]);
    assert_eq!(code, 0, "{report:#}");
}

const ECDS: &str = r#"resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: mesh.canary
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: canary
      root_id: canary
      vm_config: {vm_id: canary, runtime: envoy.wasm.runtime.v8, code: {local: {filename: target/filters/canary.wasm}}}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{"services": [{"host": "reviews", "subsets": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}]}'
"#;

fn weights(ecds: &str) -> String {
    let v: serde_yaml::Value = serde_yaml::from_str(ecds).unwrap();
    let text = v["resources"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let c: Value = serde_json::from_str(&text).unwrap();
    c["services"][0]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["weight"].to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn apply_writes_a_valid_config_atomically_and_refuses_an_invalid_one() {
    let dir = std::env::temp_dir().join(format!("mfctl-apply-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ecds = dir.join("canary.yaml");
    std::fs::write(&ecds, ECDS).unwrap();
    let ecds_arg = ecds.display().to_string();
    let good = dir.join("new.json");
    std::fs::write(
        &good,
        r#"{"services": [{"host": "reviews", "subsets": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]}]}"#,
    )
    .unwrap();
    let (code, out, err) = mfctl(&["apply", &ecds_arg, &good.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(&ecds).unwrap();
    assert_eq!(weights(&written), "50/50");
    // The module and VM settings are kept; nothing but the file is left in the folder.
    assert!(written.contains("target/filters/canary.wasm"));
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["canary.yaml", "new.json"]);
    // The written file passes check.
    assert_eq!(mfctl(&["check", &ecds_arg]).0, 0);

    // YAML input, dry run: printed, not written.
    let yaml = dir.join("new.yaml");
    std::fs::write(
        &yaml,
        "services:\n- host: reviews\n  subsets: [{name: v1, weight: 0}, {name: v2, weight: 100}]\n",
    )
    .unwrap();
    let (code, out, _) = mfctl(&["apply", "--dry-run", &ecds_arg, &yaml.display().to_string()]);
    assert_eq!(code, 0);
    assert_eq!(weights(&out), "0/100");
    assert_eq!(weights(&std::fs::read_to_string(&ecds).unwrap()), "50/50");

    // Invalid: exit 1 with the field, the file untouched.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"services": [{"host": "reviews", "subsets": [{"name": "v1", "weight": 50}], "colour": 1}]}"#,
    )
    .unwrap();
    let before = std::fs::read(&ecds).unwrap();
    let (code, out, err) = mfctl(&["apply", &ecds_arg, &bad.display().to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("services[0].colour: unknown field"), "{out}");
    assert!(err.contains("left unchanged"), "{err}");
    assert_eq!(std::fs::read(&ecds).unwrap(), before);
    // A whole ECDS document replaces the file after the same check.
    let whole = dir.join("whole.yaml");
    std::fs::write(&whole, ECDS).unwrap();
    assert_eq!(
        mfctl(&["apply", &ecds_arg, &whole.display().to_string()]).0,
        0
    );
    assert_eq!(weights(&std::fs::read_to_string(&ecds).unwrap()), "90/10");
    // No mesh filter in the target: unusable.
    let other = dir.join("other.yaml");
    std::fs::write(&other, "resources: []\n").unwrap();
    assert_eq!(
        mfctl(&[
            "apply",
            &other.display().to_string(),
            &good.display().to_string()
        ])
        .0,
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
