//! `cargo xtask test`: every tier, then a summary. Fails when any step fails.

use crate::build::{self, WASM_TARGET};
use crate::util::{cargo, crates_under, ensure_debian_tools, ensure_targets, root, run};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

struct Step {
    name: &'static str,
    ok: bool,
    secs: f64,
    detail: String,
}

fn step(
    steps: &mut Vec<Step>,
    only: &[String],
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<()>,
) {
    // `cargo xtask test wasm e2e` runs only the steps whose name contains a given word.
    if !only.is_empty() && !only.iter().any(|w| name.contains(w.as_str())) {
        return;
    }
    println!("\n==> {name}");
    let start = Instant::now();
    let res = f();
    let secs = start.elapsed().as_secs_f64();
    let (ok, detail) = match res {
        Ok(()) => (true, String::new()),
        Err(e) => {
            eprintln!("step {name:?} failed: {e:#}");
            (false, format!("{e:#}"))
        }
    };
    steps.push(Step {
        name,
        ok,
        secs,
        detail,
    });
}

pub fn test(only: &[String]) -> anyhow::Result<()> {
    // The global rate limit tests count in Debian's redis-server; the rollout tests read
    // the mesh's metrics from Debian's Prometheus.
    crate::util::ensure_debian_tools(&[
        ("redis-server", "redis-server"),
        ("prometheus", "prometheus"),
    ])?;
    let mut steps = Vec::new();
    step(&mut steps, only, "format (cargo fmt --check)", || {
        run(cargo().args(["fmt", "--all", "--", "--check"]))
    });
    step(&mut steps, only, "lint (clippy, native and wasm32)", clippy);
    step(&mut steps, only, "unit + glue tests (native)", || {
        run(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "mesh-e2e",
            "--exclude",
            "mesh-fuzz-targets",
        ]))
    });
    step(
        &mut steps,
        only,
        "fuzz corpora replayed on stable (fuzz/corpus)",
        || run(cargo().args(["test", "-p", "mesh-fuzz-targets"])),
    );
    step(
        &mut steps,
        only,
        "mesh crates on wasm32 (wasm-bindgen-test)",
        wasm_tests,
    );
    let built = {
        let mut ok = false;
        step(
            &mut steps,
            only,
            "build modules (wasm32-wasip1, release)",
            || build::build().map(|_| ok = true),
        );
        ok
    };
    step(&mut steps, only, "validate envoy-config bootstraps", || {
        if !built {
            bail!("modules did not build");
        }
        crate::validate::validate()
    });
    step(
        &mut steps,
        only,
        "end-to-end against the real Envoy",
        || {
            if !built {
                bail!("modules did not build");
            }
            e2e_tests()
        },
    );
    step(
        &mut steps,
        only,
        "end-to-end, suite module in place of each single module",
        || {
            if !built {
                bail!("modules did not build");
            }
            e2e_suite_tests()
        },
    );
    step(
        &mut steps,
        only,
        "soak, short (50,000 hostile and plain requests)",
        || {
            if !built {
                bail!("modules did not build");
            }
            crate::soak::run(50_000)
        },
    );
    step(
        &mut steps,
        only,
        "benchmark, quick (cargo xtask bench --quick)",
        || {
            if !built {
                bail!("modules did not build");
            }
            crate::bench::bench(&["--quick".to_owned()])
        },
    );

    println!("\n==================== summary ====================");
    for s in &steps {
        let first = s.detail.lines().next().unwrap_or("");
        println!(
            "  {:<6} {:<46} {:>7.1}s  {}",
            if s.ok { "ok" } else { "FAILED" },
            s.name,
            s.secs,
            first
        );
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    if failed > 0 {
        bail!("{failed} of {} steps failed", steps.len());
    }
    println!("all {} steps passed", steps.len());
    Ok(())
}

pub fn e2e_only() -> anyhow::Result<()> {
    build::build()?;
    e2e_tests()?;
    e2e_suite_tests()
}

fn e2e_tests() -> anyhow::Result<()> {
    let envoy = mesh_e2e::install::envoy_bin()?;
    // The delivery test pushes images to Debian's docker-registry on loopback and has skopeo
    // read the layouts (it would install both itself too; here they are installed up front).
    if let Err(e) =
        ensure_debian_tools(&[("docker-registry", "docker-registry"), ("skopeo", "skopeo")])
    {
        eprintln!("warning: cannot install docker-registry or skopeo ({e:#}): the delivery test says what it skips");
    }
    // The rollout test's Prometheus (also for `cargo xtask e2e`, which skips `test`'s install).
    ensure_debian_tools(&[("prometheus", "prometheus")])?;
    println!("{}", mesh_e2e::install::envoy_version(&envoy)?);
    run(cargo()
        .args(["test", "-p", "mesh-e2e", "--", "--test-threads=2"])
        .env("ENVOY_BIN", &envoy))
}

/// E2E test files, named after no capability, that the suite must pass too.
const SUITE_EXTRA_TESTS: [&str; 1] = ["global"];

/// The capability e2e tests again, with `suite.wasm` standing in for each single module:
/// the suite must give the same answers.
fn e2e_suite_tests() -> anyhow::Result<()> {
    let envoy = mesh_e2e::install::envoy_bin()?;
    let mut cmd = cargo();
    cmd.args(["test", "-p", "mesh-e2e"]);
    let mut any = false;
    for cap in mesh_e2e::envoy::capabilities() {
        if root()
            .join("tests/tests")
            .join(format!("{cap}.rs"))
            .exists()
        {
            cmd.args(["--test", cap]);
            any = true;
        }
    }
    if !any {
        bail!("no capability e2e tests found");
    }
    // Tests of one capability's features beyond its own file.
    for extra in SUITE_EXTRA_TESTS {
        cmd.args(["--test", extra]);
    }
    run(cmd
        .args(["--", "--test-threads=2"])
        .env("ENVOY_BIN", &envoy)
        .env("MESH_E2E_MODULE", "suite"))
}

fn clippy() -> anyhow::Result<()> {
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    ensure_targets(&[WASM_TARGET])?;
    let mut cmd = cargo();
    cmd.args(["clippy", "--target", WASM_TARGET]);
    for n in crates_under("filters")? {
        cmd.args(["-p", &format!("filter-{n}")]);
    }
    run(cmd.args(["--", "-D", "warnings"]))
}

/// The wasm-bindgen version in Cargo.lock, which the test runner must match exactly.
fn locked_wasm_bindgen() -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = "))
            {
                return Ok(v.trim_matches('"').to_owned());
            }
        }
    }
    bail!("wasm-bindgen is not in Cargo.lock")
}

/// Installs `wasm-bindgen-test-runner` matching Cargo.lock under `target/tools` if needed.
fn wasm_runner() -> anyhow::Result<PathBuf> {
    let version = locked_wasm_bindgen()?;
    let tools = root()
        .join("target/tools")
        .join(format!("wasm-bindgen-{version}"));
    let runner = tools.join("bin/wasm-bindgen-test-runner");
    if !runner.exists() {
        println!(
            "installing wasm-bindgen-cli {version} into {}",
            tools.display()
        );
        // Prefer the crate's own lockfile; a registry mirror may lack a locked version.
        let install = |locked: bool| {
            let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            c.args(["install", "--quiet", "wasm-bindgen-cli", "--version"])
                .arg(&version)
                .arg("--root")
                .arg(&tools);
            if locked {
                c.arg("--locked");
            }
            run(&mut c)
        };
        install(true)
            .or_else(|_| install(false))
            .context("installing wasm-bindgen-cli")?;
    }
    Ok(runner)
}

fn wasm_tests() -> anyhow::Result<()> {
    ensure_targets(&["wasm32-unknown-unknown"])?;
    let runner = wasm_runner()?;
    let mut cmd = cargo();
    cmd.args(["test", "--target", "wasm32-unknown-unknown"]);
    for n in crates_under("mesh")? {
        cmd.args(["-p", &format!("mesh-{n}")]);
    }
    run(cmd
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300"))
}
