//! `cargo xtask fuzz [--minutes N] [--jobs J] [target...]`: every cargo-fuzz target (or the
//! named ones) for N minutes each (default 10), J at a time (default 1), under `nice -n 19`.
//!
//! Installs what it needs: the nightly toolchain (rustup) and cargo-fuzz (cargo install into
//! `target/tools/cargo-fuzz`). New corpus entries go to `target/fuzz/corpus/<target>` (the
//! committed seeds in `fuzz/corpus/<target>` are read, never written); a failing input lands in
//! `target/fuzz/artifacts/<target>/`, to be minimized and committed to `fuzz/corpus` as a
//! regression case once fixed. Executions per target go to `target/fuzz/report.json`.

use crate::util::{root, run};
use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// What one target's run gave.
#[derive(Debug, Clone, Default)]
struct Run {
    target: String,
    execs: u64,
    secs: u64,
    corpus: u64,
    crashed: Option<String>,
}

pub fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let mut minutes = 10f64;
    let mut jobs = 1usize;
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                minutes = it
                    .next()
                    .context("--minutes needs a number")?
                    .parse()
                    .context("--minutes")?
            }
            "--jobs" => {
                jobs = it
                    .next()
                    .context("--jobs needs a number")?
                    .parse()
                    .context("--jobs")?
            }
            t if !t.starts_with('-') => only.push(t.to_owned()),
            other => bail!("unknown fuzz option {other:?}"),
        }
    }
    let all = targets()?;
    let chosen: Vec<String> = if only.is_empty() {
        all.clone()
    } else {
        for t in &only {
            if !all.contains(t) {
                bail!("no fuzz target {t:?} (targets: {})", all.join(", "));
            }
        }
        only
    };
    let cargo_fuzz = ensure_tools()?;
    println!("building {} fuzz targets (nightly, release)", all.len());
    run(nightly(&cargo_fuzz).args(["build", "--release"]))?;

    let multi = MultiProgress::new();
    let queue = Arc::new(Mutex::new(chosen.clone().into_iter()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let secs = (minutes * 60.0).round().max(1.0) as u64;
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            let (queue, results, multi) = (queue.clone(), results.clone(), multi.clone());
            s.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(t) = next else { break };
                let r = run_one(&t, secs, &multi).unwrap_or_else(|e| Run {
                    target: t.clone(),
                    crashed: Some(format!("{e:#}")),
                    ..Run::default()
                });
                if let Ok(mut v) = results.lock() {
                    v.push(r);
                }
            });
        }
    });
    let mut results = results.lock().map(|v| v.clone()).unwrap_or_default();
    results.sort_by(|a, b| a.target.cmp(&b.target));
    report(&results)?;
    let failed: Vec<&Run> = results.iter().filter(|r| r.crashed.is_some()).collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} fuzz targets failed: {}",
            failed.len(),
            results.len(),
            failed
                .iter()
                .map(|r| r.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The targets: one `fuzz/fuzz_targets/<name>.rs` each.
fn targets() -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(root().join("fuzz/fuzz_targets"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "rs") {
            if let Some(stem) = p.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// `rustup run nightly <cargo-fuzz>` in `fuzz/`, without the stable cargo's environment.
fn nightly(cargo_fuzz: &PathBuf) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly"])
        .arg(cargo_fuzz)
        .current_dir(root().join("fuzz"))
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// The nightly toolchain and cargo-fuzz, installed when missing.
fn ensure_tools() -> anyhow::Result<PathBuf> {
    let list = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running rustup (needed for the nightly toolchain)")?;
    if !String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        println!("installing the nightly toolchain (cargo fuzz needs it)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let tools = root().join("target/tools/cargo-fuzz");
    let bin = tools.join("bin/cargo-fuzz");
    if !bin.exists() {
        println!("installing cargo-fuzz into {}", tools.display());
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        c.args(["install", "--quiet", "--locked", "cargo-fuzz", "--root"])
            .arg(&tools);
        run(&mut c).context("installing cargo-fuzz")?;
    }
    Ok(bin)
}

/// Runs one target for `secs` seconds, showing its executions as it goes.
fn run_one(target: &str, secs: u64, multi: &MultiProgress) -> anyhow::Result<Run> {
    let dir = root().join("target/fuzz");
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let bin = root()
        .join("fuzz/target")
        .join(TRIPLE)
        .join("release")
        .join(target);
    let bar = multi.add(ProgressBar::new(secs));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>18} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(target.to_owned());
    let mut child = Command::new("nice")
        .args(["-n", "19"])
        .arg(&bin)
        .arg(format!("-max_total_time={secs}"))
        .args(["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .arg(root().join("fuzz/corpus").join(target))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let log_path = dir.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)?;
    let mut r = Run {
        target: target.to_owned(),
        ..Run::default()
    };
    let mut tail = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            use std::io::Write as _;
            let _ = writeln!(log, "{line}");
            // `#123456 pulse  cov: 1 ft: 2 corp: 3/4b exec/s: 5 rss: 6Mb`
            if let Some(n) = line
                .strip_prefix('#')
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                r.execs = n;
                if let Some(c) = field_after(&line, "corp:") {
                    r.corpus = c
                        .split('/')
                        .next()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                }
                bar.set_message(format!("{} execs, corpus {}", r.execs, r.corpus));
            }
            if let Some(n) = field_after(&line, "stat::number_of_executed_units:") {
                r.execs = n.parse().unwrap_or(r.execs);
            }
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
    }
    bar.set_position(secs);
    let status = child.wait()?;
    r.secs = bar.elapsed().as_secs();
    if !status.success() {
        let artifact = std::fs::read_dir(&artifacts)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
        r.crashed = Some(format!(
            "{status}; input {}; log {}",
            artifact.map_or("none".into(), |p| p.display().to_string()),
            log_path.display()
        ));
        bar.abandon_with_message(format!("FAILED after {} execs", r.execs));
    } else {
        bar.finish_with_message(format!("{} execs, corpus {}", r.execs, r.corpus));
    }
    Ok(r)
}

fn field_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line.get(at..)?.split_whitespace().next()
}

/// Prints the table and writes `target/fuzz/report.json`.
fn report(results: &[Run]) -> anyhow::Result<()> {
    println!(
        "\n{:<20} {:>14} {:>8} {:>8}  result",
        "target", "executions", "seconds", "corpus"
    );
    let mut json = Vec::new();
    for r in results {
        println!(
            "{:<20} {:>14} {:>8} {:>8}  {}",
            r.target,
            r.execs,
            r.secs,
            r.corpus,
            r.crashed.as_deref().unwrap_or("ok")
        );
        json.push(serde_json::json!({
            "target": r.target, "executions": r.execs, "seconds": r.secs,
            "corpus": r.corpus, "failure": r.crashed,
        }));
    }
    let path = root().join("target/fuzz/report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("report: {}", path.display());
    Ok(())
}
