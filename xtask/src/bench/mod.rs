//! `cargo xtask bench [--quick] [--profile direct|sidecar] [--scaling]`: what each
//! configuration costs Envoy per request.
//!
//! Envoy under test runs with `--concurrency 1` pinned to CPU 0; everything else (load
//! generators, and in the sidecar profile the client proxy, the upstream and the rate limit
//! service) on CPU 1. Two profiles: `direct` answers with a direct response on plain HTTP;
//! `sidecar` terminates mTLS from a client proxy presenting a SPIFFE certificate, with a
//! mesh request's headers, and proxies to an upstream. Per configuration and round: Envoy CPU
//! microseconds per request (process CPU time over Envoy's own request counter, closed-loop
//! `wrk` at saturation), saturation requests/s, latency percentiles at half the profile's
//! no-filter saturation (`h2load --rps`, per-request log), and Envoy's allocated memory.
//! Configurations are interleaved round-robin; the report shows medians and min..max. Then
//! instructions per request under callgrind, the attribution of the suite's instructions
//! and (full run or `--scaling`) how costs grow with configuration size.

use crate::util::{cargo, ensure_debian_tools, have, kib, root, run};
use anyhow::{bail, Context};
use mesh_e2e::envoy::EnvoyBuilder;
use mesh_e2e::Envoy;
use serde_json::{json, Value as Json};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod callgrind;
mod configs;
mod load;
mod report;
mod scaling;

use callgrind::*;
use configs::*;
use load::*;
use report::*;

/// The capabilities, in the suite's order (its one list).
fn capabilities() -> impl Iterator<Item = &'static str> {
    filter_suite::CAPABILITIES.iter().map(|c| c.name)
}

/// How the Envoy under test is reached and what it does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Profile {
    /// Plain HTTP/1.1, a direct response.
    Direct,
    /// mTLS from a client proxy, mesh headers, proxied to an upstream over HTTP/1.1.
    Sidecar,
}

impl Profile {
    pub(super) const ALL: [Self; 2] = [Self::Direct, Self::Sidecar];

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Sidecar => "sidecar",
        }
    }

    fn bootstrap(self) -> &'static str {
        match self {
            Self::Direct => "envoy-config/bench/base.yaml",
            Self::Sidecar => "envoy-config/bench/sidecar.yaml",
        }
    }

    pub(super) fn request(self) -> crate::floor::Request {
        match self {
            Self::Direct => crate::floor::Request::Direct,
            Self::Sidecar => crate::floor::Request::Sidecar,
        }
    }
}

pub(super) struct Config {
    profile: Profile,
    name: String,
    what: String,
    filters: Vec<Value>,
    /// The native chain's routes, in place of the profile's one route.
    routes: Option<Value>,
    /// The native chain's access log.
    access_log: Option<Value>,
    /// Measured in the CPU and latency rounds too; otherwise instructions only.
    timed: bool,
    /// Its filters call the bench's rate limit service.
    global: bool,
}

impl Config {
    fn new(profile: Profile, name: &str, what: &str, filters: Vec<Value>) -> Self {
        Self {
            profile,
            name: name.to_owned(),
            what: what.to_owned(),
            filters,
            routes: None,
            access_log: None,
            timed: true,
            global: false,
        }
    }
    /// Unique over profiles: file names and `--only` (which also takes the bare name).
    pub(super) fn id(&self) -> String {
        format!("{}-{}", self.profile.name(), self.name)
    }
    fn instructions_only(mut self) -> Self {
        self.timed = false;
        self
    }
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

/// The sidecar configurations a quick run measures.
const QUICK_SIDECAR: &[&str] = &["no-filter", "native", "empty-wasm", "suite", "suite-global"];

fn arg_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let quick = args.iter().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            rounds: 1,
            secs: 1,
            connections: 8,
        }
    } else {
        Settings {
            rounds: 3,
            secs: 4,
            connections: 16,
        }
    };
    let s = Settings {
        rounds: arg_value(args, "--rounds")
            .and_then(|r| r.parse().ok())
            .unwrap_or(s.rounds),
        ..s
    };
    let profiles: Vec<Profile> = match arg_value(args, "--profile") {
        None => Profile::ALL.to_vec(),
        Some(p) => {
            let chosen: Vec<Profile> = Profile::ALL
                .into_iter()
                .filter(|x| p.split(',').any(|n| n == x.name()))
                .collect();
            if chosen.is_empty() {
                bail!("--profile {p}: the profiles are direct and sidecar");
            }
            chosen
        }
    };
    let only: Option<Vec<&str>> = arg_value(args, "--only").map(|o| o.split(',').collect());
    // Scaling is part of the full run, and on its own with `--scaling` (then nothing else
    // unless `--only` names configurations).
    let scaling_only = args.iter().any(|a| a == "--scaling");
    let scaling = scaling_only || (!quick && only.is_none());
    ensure_tools()?;
    let modules = crate::build::build()?;
    let empty = build_empty_fixture()?;
    let plugins: Json = serde_json::from_str(&std::fs::read_to_string(
        root().join("envoy-config/bench/plugins.json"),
    )?)?;
    let mut configs = Vec::new();
    for p in &profiles {
        configs.extend(configs_of(*p, &plugins, &empty, !quick)?);
    }
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
        for p in &profiles {
            configs.push(Config::new(
                *p,
                &format!("{name}-variant"),
                &format!("{name} built as {path}"),
                vec![wasm_filter(name, Path::new(path), &config)],
            ));
        }
    }
    // The quick run (CI) keeps the sidecar profile's headline configurations only.
    if quick && only.is_none() {
        configs
            .retain(|c| c.profile == Profile::Direct || QUICK_SIDECAR.contains(&c.name.as_str()));
    }
    // `--only a,b`: just those configurations (each profile's no-filter baseline is kept).
    if let Some(keep) = &only {
        configs.retain(|c| {
            c.name == "no-filter"
                || keep.contains(&c.name.as_str())
                || keep.contains(&c.id().as_str())
        });
    } else if scaling_only {
        configs.retain(|c| c.name == "no-filter");
    }
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let rig = Rig::start(&profiles)?;
    let clk_tck = clock_ticks()?;

    let mut rates = Vec::new();
    for p in &profiles {
        println!(
            "calibrating: saturation of the {} profile with no filter",
            p.name()
        );
        let base = configs
            .iter()
            .find(|c| c.profile == *p && c.name == "no-filter")
            .context("no no-filter configuration")?;
        let sat = measure(base, &s, &rig, clk_tck, None)?;
        let rate = (sat.rps * 0.5).max(100.0);
        println!("  {:.0} req/s; latency runs at {:.0} req/s", sat.rps, rate);
        rates.push((*p, rate));
    }
    let rate_of = |p: Profile| rates.iter().find(|r| r.0 == p).map_or(100.0, |r| r.1);

    let mut results: Vec<Vec<Round>> = vec![Vec::new(); configs.len()];
    for round in 0..s.rounds {
        for (i, c) in configs.iter().enumerate().filter(|(_, c)| c.timed) {
            let r = measure(c, &s, &rig, clk_tck, Some(rate_of(c.profile)))
                .with_context(|| format!("measuring {}", c.id()))?;
            println!(
                "  round {}/{} {:<30} {:>7.2} us/req {:>9.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us",
                round + 1,
                s.rounds,
                c.id(),
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
            let n = instructions_per_request(c, &rig, INSTRUCTION_REQUESTS)
                .with_context(|| format!("counting instructions of {}", c.id()))?;
            println!("  {:<36} {:>9.0} instructions/request", c.id(), n);
            *slot = Some(n);
        }
    }
    let scaled = if scaling {
        ensure_debian_tools(&[("valgrind", "valgrind")])?;
        scaling::run(&rig, &plugins)?
    } else {
        Vec::new()
    };
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
        rates: &rates,
        pinned: rig.pin.pinned(),
        quick,
        scaling: &scaled,
        elapsed: started.elapsed(),
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    report.chart(&out.join("cpu.svg"))?;
    report.attribution_chart(&out.join("attribution.svg"))?;
    println!(
        "\nwrote {}, {}, {} and {} in {:.1} min",
        out.join("report.md").display(),
        out.join("results.json").display(),
        out.join("cpu.svg").display(),
        out.join("attribution.svg").display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
