//! Failure behaviour against the real Envoy: the shipped bootstraps' `failure_policy` with a
//! module that traps (the `test-trap-filter` fixture swapped in for ours), and a static
//! bootstrap whose module cannot load or whose configuration does not validate.
// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use mesh_e2e::{client, module_path, repo_root, Envoy, Stub};
use serde_yaml::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The trap fixture built for wasm32-wasip1 (release) and copied to `target/fixtures/`.
fn trap_module() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"])
                .args(["-p", "test-trap-filter"])
                .status()
                .expect("running cargo");
            assert!(status.success(), "building the trap fixture failed");
            let dest = root.join("target/fixtures/trap.wasm");
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(
                root.join("target/wasm32-wasip1/release/test_trap_filter.wasm"),
                &dest,
            )
            .unwrap();
            dest
        })
        .clone()
}

/// Every Wasm filter of the bootstrap loads `module` with `config` instead of ours; its
/// `failure_policy` (and everything else) stays as shipped.
fn swap_module(doc: &mut Value, module: &str, config: &str) -> usize {
    let mut swapped = 0;
    match doc {
        Value::Mapping(m) => {
            if m.get("root_id").is_some() && m.get("vm_config").is_some() {
                if let Some(f) = m
                    .get_mut("vm_config")
                    .and_then(|v| v.get_mut("code"))
                    .and_then(|c| c.get_mut("local"))
                    .and_then(|l| l.get_mut("filename"))
                {
                    *f = Value::String(module.to_owned());
                }
                if let Some(v) = m.get_mut("configuration").and_then(|c| c.get_mut("value")) {
                    *v = Value::String(config.to_owned());
                }
                swapped += 1;
            }
            for (_, child) in m.iter_mut() {
                swapped += swap_module(child, module, config);
            }
        }
        Value::Sequence(s) => {
            for child in s {
                swapped += swap_module(child, module, config);
            }
        }
        _ => {}
    }
    swapped
}

/// Starts a shipped bootstrap with the trap fixture in place of each module of ours.
fn with_trap(bootstrap: &str, clusters: &[&str], stub: &Stub, config: &'static str) -> Envoy {
    let module = trap_module().display().to_string();
    let mut b = Envoy::builder(bootstrap);
    for c in clusters {
        b = b.cluster(c, stub);
    }
    b.edit(move |doc| assert!(swap_module(doc, &module, config) > 0, "no wasm filter"))
        .start()
        .unwrap()
}

fn wasm_stats(envoy: &Envoy) -> String {
    envoy
        .stats()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("wasm"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped intentions example (`failure_policy: FAIL_CLOSED`, "a module that cannot run
/// rejects requests"): a module that traps answers 503 and the upstream is never reached, on
/// the trapping request and on every one after (the VM stays failed).
#[test]
fn authorization_fails_closed_with_503_when_its_module_traps() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = with_trap(
        "envoy-config/intentions/envoy.yaml",
        &["reviews"],
        &stub,
        "request",
    );
    let port = envoy
        .listener_port("plaintext")
        .expect("a plaintext listener");
    let http = client();
    for _ in 0..3 {
        let r = http
            .get(format!("http://127.0.0.1:{port}/api/x"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 503, "{}", wasm_stats(&envoy));
    }
    assert_eq!(
        stub.hits(),
        0,
        "a request passed a failed authorization module"
    );
    assert!(envoy.log().contains("wasm"), "{}", envoy.log());
}

/// The suite example also carries authorization: it fails closed the same way.
#[test]
fn the_suite_fails_closed_with_503_when_its_module_traps() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = with_trap(
        "envoy-config/suite/envoy.yaml",
        &["reviews_v1", "reviews_v2"],
        &stub,
        "request",
    );
    let http = client();
    for _ in 0..3 {
        let r = http.get(envoy.url("/api/x")).send().unwrap();
        assert_eq!(r.status(), 503, "{}", wasm_stats(&envoy));
    }
    assert_eq!(stub.hits(), 0);
}

/// The telemetry example (`failure_policy: FAIL_OPEN`, "telemetry must never cost a
/// request"): with a module that traps, requests pass to the upstream untouched once the VM
/// has failed; only the request it failed on is lost.
#[test]
fn telemetry_fails_open_when_its_module_traps() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = with_trap(
        "envoy-config/telemetry/envoy.yaml",
        &["stub"],
        &stub,
        "request",
    );
    let http = client();
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            http.get(envoy.url("/api/x"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    // The request whose callback trapped cannot be continued (503), at most one per worker's
    // VM; from then on that VM is bypassed and every request reaches the upstream.
    let failed = statuses.iter().filter(|s| **s == 503).count();
    assert!(failed <= 2, "{statuses:?}: {}", wasm_stats(&envoy));
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert_eq!(stub.hits(), (statuses.len() - failed) as u64);
}

/// Lines of Envoy's log at error level or above.
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("[error]") || l.contains("[critical]"))
        .collect()
}

/// A static bootstrap whose module is not Wasm does not start: Envoy's `[critical][main]` line
/// (one) names the plugin, the `[wasm]` lines before it say why.
#[test]
fn a_module_that_cannot_load_stops_a_static_bootstrap() {
    let stub = Stub::start("reviews").unwrap();
    let not_wasm = repo_root().join("Cargo.toml").display().to_string();
    let err = Envoy::builder("envoy-config/telemetry/envoy.yaml")
        .cluster("stub", &stub)
        .edit(move |doc| assert!(swap_module(doc, &not_wasm, "") > 0))
        .start()
        .err()
        .expect("Envoy started with a module that is not Wasm");
    let text = format!("{err:#}");
    let errors = error_lines(&text);
    assert!(
        errors
            .iter()
            .any(|l| l.contains("Failed to load Wasm code")),
        "{errors:#?}"
    );
    // The line that stops the server names the plugin: the one to read.
    let fatal: Vec<&&str> = errors
        .iter()
        .filter(|l| l.contains("[critical][main]"))
        .collect();
    assert_eq!(fatal.len(), 1, "{errors:#?}");
    assert!(
        fatal[0].contains("Unable to create Wasm plugin telemetry"),
        "{}",
        fatal[0]
    );
}

/// A static bootstrap whose plugin configuration does not validate does not start; the
/// module's one line names the field and the reason.
#[test]
fn a_config_that_does_not_validate_stops_a_static_bootstrap() {
    let stub = Stub::start("reviews").unwrap();
    let module = module_path("ratelimit").unwrap().display().to_string();
    let err = Envoy::builder("envoy-config/ratelimit/envoy.yaml")
        .cluster("upstream", &stub)
        .edit(move |doc| {
            assert!(
                swap_module(
                    doc,
                    &module,
                    r#"{"rules": [{"name": "api", "limit": {"requests": 0, "per": "1s"}}]}"#
                ) > 0
            )
        })
        .start()
        .err()
        .expect("Envoy started with an invalid configuration");
    let text = format!("{err:#}");
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("invalid configuration"))
        .collect();
    assert_eq!(ours.len(), 1, "{text}");
    assert!(
        ours[0].contains(
            "ratelimit: invalid configuration: rules[0].limit.requests: must be at least 1"
        ),
        "{}",
        ours[0]
    );
}

/// Local limits live in the Envoy process (proxy-wasm shared data): a restart starts every
/// bucket full again, so a client limited before it gets its burst again after it.
/// (docs/reliability.md: what a restart does to local and to global limits.)
#[test]
fn a_restart_refills_local_limits() {
    let stub = Stub::start("upstream").unwrap();
    let config =
        serde_json::json!({"rules": [{"name": "all", "limit": {"requests": 1, "per": "24h"}}]});
    let start = || {
        Envoy::builder("envoy-config/ratelimit/envoy.yaml")
            .cluster("upstream", &stub)
            .plugin_config("ratelimit", config.clone())
            .start()
            .unwrap()
    };
    let http = client();
    let statuses = |envoy: &Envoy| -> Vec<u16> {
        (0..3)
            .map(|_| http.get(envoy.url("/")).send().unwrap().status().as_u16())
            .collect()
    };
    let first = start();
    assert_eq!(statuses(&first), [200, 429, 429]);
    drop(first);
    let second = start();
    assert_eq!(
        statuses(&second),
        [200, 429, 429],
        "the bucket survived the restart"
    );
}
