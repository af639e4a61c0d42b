//! `cargo xtask bench [--quick]`: what each configuration costs Envoy per request.
//!
//! Envoy runs with `--concurrency 1` pinned to CPU 0, the load generator on CPU 1. Each
//! configuration answers with a direct response. Per configuration and round: Envoy CPU
//! microseconds per request (process CPU time over Envoy's own request counter, closed-loop
//! `wrk` at saturation), saturation requests/s, latency percentiles at half the no-filter
//! saturation (`h2load --rps`, per-request log), and Envoy's allocated memory. Configurations
//! are interleaved round-robin; the report shows medians and min..max.

use crate::util::{cargo, ensure_debian_tools, have, kib, root, run};
use anyhow::{bail, Context};
use mesh_e2e::envoy::EnvoyBuilder;
use mesh_e2e::Envoy;
use serde_json::{json, Value as Json};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod callgrind;
mod configs;
mod load;
mod report;

use callgrind::*;
use configs::*;
use load::*;
use report::*;

/// The capabilities, in the suite's order (its one list).
fn capabilities() -> impl Iterator<Item = &'static str> {
    filter_suite::CAPABILITIES.iter().map(|c| c.name)
}

struct Config {
    name: String,
    what: String,
    filters: Vec<Value>,
}

#[derive(Default, Clone)]
struct Round {
    cpu_us_per_req: f64,
    rps: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    memory_mib: f64,
}

struct Settings {
    rounds: usize,
    secs: u64,
    connections: usize,
}

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let rounds_arg = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok());
    let s = if quick {
        Settings {
            rounds: 1,
            secs: 1,
            connections: 8,
        }
    } else {
        Settings {
            rounds: 5,
            secs: 5,
            connections: 16,
        }
    };
    let s = Settings {
        rounds: rounds_arg.unwrap_or(s.rounds),
        ..s
    };
    ensure_tools()?;
    let modules = crate::build::build()?;
    let empty = build_empty_fixture()?;
    let plugins: Json = serde_json::from_str(&std::fs::read_to_string(
        root().join("envoy-config/bench/plugins.json"),
    )?)?;
    let mut configs = configs(&plugins, &empty)?;
    // `--variant suite=path/to/other.wasm`: that module beside ours, with our module's
    // configuration, to compare two builds in one interleaved run.
    for (i, a) in args.iter().enumerate() {
        if a != "--variant" {
            continue;
        }
        let spec = args.get(i + 1).context("--variant needs NAME=PATH")?;
        let (name, path) = spec.split_once('=').context("--variant needs NAME=PATH")?;
        let config = match name {
            "suite" => plugins.to_string(),
            cap => plugins.get(cap).map(Json::to_string).unwrap_or_default(),
        };
        configs.push(Config {
            name: format!("{name}-variant"),
            what: format!("{name} built as {path}"),
            filters: vec![wasm_filter(name, Path::new(path), &config)],
        });
    }
    // `--only a,b`: just those configurations (the no-filter baseline is always kept).
    if let Some(only) = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
    {
        let keep: Vec<&str> = only.split(',').collect();
        configs.retain(|c| c.name == "no-filter" || keep.contains(&c.name.as_str()));
    }
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let pin = Pinning::detect();
    let clk_tck = clock_ticks()?;

    println!("calibrating: saturation of Envoy with no filter");
    let base = configs.first().context("no configurations to measure")?;
    let sat = measure(base, &s, &pin, clk_tck, None)?;
    let rate = (sat.rps * 0.5).max(100.0);
    println!("  {:.0} req/s; latency runs at {:.0} req/s", sat.rps, rate);

    let mut results: Vec<Vec<Round>> = vec![Vec::new(); configs.len()];
    for round in 0..s.rounds {
        for (i, c) in configs.iter().enumerate() {
            let r = measure(c, &s, &pin, clk_tck, Some(rate))
                .with_context(|| format!("measuring {}", c.name))?;
            println!(
                "  round {}/{} {:<22} {:>7.2} us/req {:>9.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us",
                round + 1,
                s.rounds,
                c.name,
                r.cpu_us_per_req,
                r.rps,
                r.p50_us,
                r.p99_us
            );
            if let Some(v) = results.get_mut(i) {
                v.push(r);
            }
        }
    }
    // Instruction counts under callgrind: repeatable where CPU time swings with the machine.
    let count_instructions = args.iter().any(|a| a == "--instructions") || !quick;
    let mut instructions: Vec<Option<f64>> = vec![None; configs.len()];
    if count_instructions {
        ensure_debian_tools(&[("valgrind", "valgrind")])?;
        println!("counting instructions per request under callgrind");
        for (c, slot) in configs.iter().zip(instructions.iter_mut()) {
            let n = instructions_per_request(c, INSTRUCTION_REQUESTS)
                .with_context(|| format!("counting instructions of {}", c.name))?;
            println!("  {:<28} {:>9.0} instructions/request", c.name, n);
            *slot = Some(n);
        }
    }
    let sizes: Vec<(String, f64)> = modules
        .iter()
        .map(|p| {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            (name.unwrap_or_default(), kib(p))
        })
        .collect();
    let report = Report {
        configs: &configs,
        results: &results,
        instructions: &instructions,
        sizes: &sizes,
        settings: &s,
        rate,
        pinned: pin.pinned(),
        quick,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    report.chart(&out.join("cpu.svg"))?;
    println!(
        "\nwrote {}, {} and {}",
        out.join("report.md").display(),
        out.join("results.json").display(),
        out.join("cpu.svg").display()
    );
    Ok(())
}

// === load generators ===
