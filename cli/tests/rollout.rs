//! The `mfctl rollout` binary without a mesh: its arguments, exit codes and output routing
//! (`--output wasmplugin` documents on stdout, lines on stderr). The rollouts against a real
//! Envoy and Prometheus are in tests/tests/rollout.rs.

// Test code: helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

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

/// A loopback URL nothing listens on.
fn closed_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_wasmplugin_rollout_without_metrics_prints_the_resources_and_rolls_back() {
    let admin = closed_url();
    let (code, out, err) = mfctl(&[
        "rollout",
        "envoy-config/canary/istio/wasmplugin.yaml",
        "--output",
        "wasmplugin",
        "--service",
        "reviews",
        "--canary",
        "v2",
        "--steps",
        "10,100",
        "--interval",
        "1s",
        "--progress",
        "500ms",
        "--no-data-timeout",
        "2s",
        "--envoy-admin",
        &admin,
    ]);
    assert_eq!(code, 1, "{err}");
    // Two resources: the first step at 10 %, then the roll-back at 0 %.
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect();
    assert_eq!(docs.len(), 2, "{out}");
    let weights: Vec<Vec<i64>> = docs
        .iter()
        .map(|d| {
            assert_eq!(d["kind"], "WasmPlugin");
            d["spec"]["pluginConfig"]["services"][0]["subsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["weight"].as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(weights, [[90, 10], [100, 0]]);
    // Every line on stderr: the header, the step, holds without data, the roll-back.
    assert!(err.contains("guard counter watched"), "{err}");
    assert!(
        err.contains("step 1/2 (v2 10 %): v2 10 %, v1 90 % (resource printed)"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "no data for too long (envoy admin {admin}: unreachable (cannot connect))"
        )),
        "{err}"
    );
    assert!(err.contains("rolled back at step 1 (v2 10 %)"), "{err}");
    assert!(!out.contains("step "), "{out}");
}

#[test]
fn bad_arguments_exit_2_naming_the_option() {
    let admin = closed_url();
    let base = [
        "rollout",
        "envoy-config/canary/ecds/canary.yaml",
        "--service",
        "reviews",
        "--envoy-admin",
        &admin,
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        mfctl(&args)
    };
    let (code, _, err) = run(&["--canary", "v2", "--steps", "50,10"]);
    assert_eq!(
        (code, err.trim()),
        (2, "mfctl: steps: weights must rise from step to step")
    );
    let (code, _, err) = run(&["--canary", "v3"]);
    assert_eq!(code, 2);
    assert!(
        err.ends_with("service \"reviews\" has no subset \"v3\"\n"),
        "{err}"
    );
    let (code, _, err) = run(&["--canary", "v2", "--interval", "5 minutes"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown unit"), "{err}");
    // A source is required.
    let (code, _, err) = mfctl(&[
        "rollout",
        "envoy-config/canary/ecds/canary.yaml",
        "--service",
        "reviews",
        "--canary",
        "v2",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--prometheus"), "{err}");
    // Nothing was written.
    let (code, _, _) = mfctl(&["check", "envoy-config/canary/ecds/canary.yaml"]);
    assert_eq!(code, 0);
}
