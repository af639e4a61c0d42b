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

const CAPABILITIES: [&str; 4] = ["telemetry", "intentions", "ratelimit", "canary"];

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

/// `wrk` and `h2load` from Debian's packages, installed when missing (needs root).
fn ensure_tools() -> anyhow::Result<()> {
    ensure_debian_tools(&[("wrk", "wrk"), ("h2load", "nghttp2-client")])
}

struct Pinning {
    cpus: usize,
}

impl Pinning {
    fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { cpus }
    }
    fn pinned(&self) -> bool {
        self.cpus >= 2 && have("taskset")
    }
    /// Pins every thread of `pid` to CPU 0.
    fn pin_envoy(&self, pid: u32) -> anyhow::Result<()> {
        if self.pinned() {
            let out = Command::new("taskset")
                .args(["-a", "-p", "-c", "0", &pid.to_string()])
                .output()?;
            if !out.status.success() {
                bail!("taskset failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Ok(())
    }
    /// A load generator command on CPU 1.
    fn load(&self, tool: &str) -> Command {
        if self.pinned() {
            let mut c = Command::new("taskset");
            c.args(["-c", "1", tool]);
            c
        } else {
            Command::new(tool)
        }
    }
}

fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0))
}

/// User + system CPU ticks of `pid` from /proc.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

fn downstream_requests(envoy: &Envoy) -> anyhow::Result<u64> {
    envoy
        .stat("http.ingress.downstream_rq_total")?
        .context("http.ingress.downstream_rq_total missing")
}

fn wrk(pin: &Pinning, url: &str, secs: u64, connections: usize) -> anyhow::Result<f64> {
    let out = pin
        .load("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))
}

/// Open-loop latency at `rate` requests/s: percentiles in microseconds from h2load's
/// per-request log.
fn h2load(pin: &Pinning, url: &str, secs: u64, rate: f64, log: &Path) -> anyhow::Result<[f64; 3]> {
    let clients = 4.0_f64;
    let per_client = (rate / clients).ceil().max(1.0);
    let _ = std::fs::remove_file(log);
    let out = pin
        .load("h2load")
        .args(["--h1", "-t1", "-c4"])
        .arg(format!("--rps={per_client}"))
        .arg(format!("-D{secs}"))
        .arg(format!("--log-file={}", log.display()))
        .arg(url)
        .output()
        .context("running h2load")?;
    if !out.status.success() {
        bail!("h2load failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lat: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if lat.is_empty() {
        bail!("h2load logged no requests");
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).copied().unwrap_or(0.0)
    };
    Ok([pct(0.5), pct(0.9), pct(0.99)])
}

// === configurations ===

fn wasm_filter(name: &str, file: &Path, config: &str) -> Value {
    mesh_e2e::envoy::wasm_filter(name, file, config)
}

fn module(name: &str) -> PathBuf {
    root().join("target/filters").join(format!("{name}.wasm"))
}

fn configs(plugins: &Json, empty: &Path) -> anyhow::Result<Vec<Config>> {
    let cfg = |cap: &str| plugins.get(cap).map(Json::to_string).unwrap_or_default();
    let native: Vec<Value> = serde_yaml::from_str(&std::fs::read_to_string(
        root().join("envoy-config/bench/native-filters.yaml"),
    )?)?;
    let mut out = vec![
        Config {
            name: "no-filter".into(),
            what: "Envoy with only the router".into(),
            filters: vec![],
        },
        Config {
            name: "native".into(),
            what: "native local_ratelimit + rbac".into(),
            filters: native,
        },
        Config {
            name: "empty-wasm".into(),
            what: "a proxy-wasm filter that does nothing (the floor)".into(),
            filters: vec![wasm_filter("empty", empty, "")],
        },
        Config {
            name: "empty-wasm-trimmed".into(),
            what: "the empty filter exporting only the request-headers callback".into(),
            filters: vec![wasm_filter("empty", &empty_exporting(empty, 1)?, "")],
        },
    ];
    // The empty filter with a fixed amount of host work (its configuration), to price it.
    let priced: [(&str, &str, &str); 5] = [
        (
            "empty-wasm-10-calls",
            "the empty filter reading :path 10 times (cost of a host call)",
            "10",
        ),
        (
            "empty-wasm-map-read",
            "the empty filter reading the whole request header map once",
            "map",
        ),
        (
            "empty-wasm-5-props",
            "the empty filter reading 5 request attributes one by one",
            "props",
        ),
        (
            "empty-wasm-5-counters",
            "the empty filter incrementing a counter 5 times",
            "counter",
        ),
        (
            "empty-wasm-5-props-batched",
            "the empty filter reading the same 5 attributes in one CEL evaluation",
            "batch",
        ),
    ];
    for (name, what, config) in priced {
        out.push(Config {
            name: name.into(),
            what: what.into(),
            filters: vec![wasm_filter("empty", empty, config)],
        });
    }
    for cap in CAPABILITIES {
        if module(cap).exists() {
            out.push(Config {
                name: cap.into(),
                what: format!("our {cap} module alone"),
                filters: vec![wasm_filter(cap, &module(cap), &cfg(cap))],
            });
            out.push(floor(cap, &cfg(cap), empty)?);
        }
    }
    if CAPABILITIES.iter().all(|c| module(c).exists()) {
        out.push(Config {
            name: "four-modules".into(),
            what: "our four modules chained".into(),
            filters: CAPABILITIES
                .iter()
                .map(|c| wasm_filter(c, &module(c), &cfg(c)))
                .collect(),
        });
    }
    if module("suite").exists() {
        let suite =
            |config: &Json| vec![wasm_filter("suite", &module("suite"), &config.to_string())];
        out.push(Config {
            name: "suite".into(),
            what: "the suite module running all four".into(),
            filters: suite(plugins),
        });
        out.push(floor("suite", &plugins.to_string(), empty)?);
        // The same without the two per-request extras a deployment may not need: the JSON
        // access log line and the verdicts copied to Envoy filter state.
        let mut lean = plugins.clone();
        if let Some(all) = lean.as_object_mut() {
            all.insert("export_decisions".into(), Json::Bool(false));
            if let Some(t) = all.get_mut("telemetry").and_then(Json::as_object_mut) {
                t.insert("access_log".into(), json!({"enabled": false}));
            }
        }
        out.push(Config {
            name: "suite-lean".into(),
            what: "the suite without access log lines or filter-state verdicts".into(),
            filters: suite(&lean),
        });
    }
    Ok(out)
}

/// The empty filter replaying module `name`'s host calls for a bench request (recorded
/// natively with `config`), exporting the callbacks that module exports: its floor.
fn floor(name: &str, config: &str, empty: &Path) -> anyhow::Result<Config> {
    let replay = crate::floor::replay(name, config)?;
    let module = empty_exporting(empty, replay.callbacks)?;
    let calls = crate::floor::calls_in(&replay.script);
    Ok(Config {
        name: format!("{name}-floor"),
        what: format!(
            "the empty filter making {name}'s {calls} host calls with none of its logic (its floor)"
        ),
        filters: vec![wasm_filter("empty", &module, &replay.script)],
    })
}

/// The empty filter exporting only the callbacks `bits` names (as `sdk_shim::Callbacks`), as
/// `cargo xtask build` trims our modules.
fn empty_exporting(empty: &Path, bits: u8) -> anyhow::Result<PathBuf> {
    let module = empty.with_file_name(format!("empty-callbacks-{bits}.wasm"));
    crate::build::drop_unused_callbacks(empty, &module, Some(bits))?;
    Ok(module)
}

/// The number of host calls in the replay script inside a floor configuration's filter.
fn replay_calls(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) if s.starts_with("@request_headers") => Some(crate::floor::calls_in(s)),
        Value::Mapping(m) => m.values().find_map(replay_calls),
        Value::Sequence(s) => s.iter().find_map(replay_calls),
        _ => None,
    }
}

fn build_empty_fixture() -> anyhow::Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "--target",
        crate::build::WASM_TARGET,
        "-p",
        "bench-empty-filter",
    ]))?;
    let built = root()
        .join("target")
        .join(crate::build::WASM_TARGET)
        .join("release/bench_empty_filter.wasm");
    let dest = root().join("target/bench/empty.wasm");
    std::fs::create_dir_all(root().join("target/bench"))?;
    std::fs::copy(&built, &dest)?;
    Ok(dest)
}

/// One worker answering with a direct response behind `c`'s filters.
fn bench_envoy(c: &Config) -> EnvoyBuilder {
    let filters = c.filters.clone();
    Envoy::builder("envoy-config/bench/base.yaml")
        .concurrency(1)
        .log_level("warn")
        .edit(move |doc| {
            if let Some(chain) = mesh_e2e::envoy::http_filters_mut(doc) {
                for (i, f) in filters.into_iter().enumerate() {
                    chain.insert(i, f);
                }
            }
        })
}

/// The callgrind files of configuration `name` in `dir` (`<name>.out` and its dumps).
fn dumps(dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!("{name}.out");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix))
        {
            out.push(path);
        }
    }
    Ok(out)
}

/// Requests measured per configuration under callgrind (after as many again to warm up).
const INSTRUCTION_REQUESTS: u64 = 2000;

/// Envoy's instructions per request under callgrind, counted over `requests` requests sent
/// one at a time after a warm-up; the count starts and stops around the requests only.
fn instructions_per_request(c: &Config, requests: u64) -> anyhow::Result<f64> {
    let out_dir = root().join("target/bench/callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let out_file = out_dir.join(format!("{}.out", c.name));
    for path in dumps(&out_dir, &c.name)? {
        std::fs::remove_file(path)?;
    }
    let envoy = bench_envoy(c)
        .wrapper(
            "valgrind",
            &[
                "--tool=callgrind",
                "--instr-atstart=no",
                // V8 writes the code it compiles into memory it then runs.
                "--smc-check=all-non-file",
                &format!("--callgrind-out-file={}", out_file.display()),
            ],
        )
        .start()?;
    let url = envoy.url("/api/items");
    let pid = envoy.pid().to_string();
    let send = |n: u64| -> anyhow::Result<()> {
        let out = Command::new("h2load")
            .args(["--h1", "-c1", "-n", &n.to_string(), &url])
            .output()
            .context("running h2load")?;
        if !out.status.success() {
            bail!("h2load failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let control = |flag: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("callgrind_control")
            .args(flag)
            .arg(&pid)
            .output()
            .context("running callgrind_control")?;
        if !out.status.success() {
            bail!("callgrind_control {flag:?} failed");
        }
        Ok(())
    };
    send(requests)?;
    let r0 = downstream_requests(&envoy)?;
    control(&["-z"])?;
    control(&["-i", "on"])?;
    send(requests)?;
    // The admin reads below stay out of the count.
    control(&["-i", "off"])?;
    control(&["-d"])?;
    let r1 = downstream_requests(&envoy)?;
    drop(envoy);
    let mut total = None;
    for path in dumps(&out_dir, &c.name)? {
        let text = std::fs::read_to_string(&path)?;
        let totals = text
            .lines()
            .filter_map(|l| l.strip_prefix("totals:"))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .max();
        total = total.max(totals);
    }
    let total = total.context("callgrind wrote no totals")?;
    Ok(total as f64 / r1.saturating_sub(r0).max(1) as f64)
}

fn measure(
    c: &Config,
    s: &Settings,
    pin: &Pinning,
    clk_tck: f64,
    latency_rate: Option<f64>,
) -> anyhow::Result<Round> {
    let envoy = bench_envoy(c).start()?;
    pin.pin_envoy(envoy.pid())?;
    let url = envoy.url("/api/items");
    // Warm up: V8 tiers up hot functions; connections and pools get made.
    wrk(pin, &url, 1, s.connections)?;

    let (t0, r0) = (cpu_ticks(envoy.pid())?, downstream_requests(&envoy)?);
    let rps = wrk(pin, &url, s.secs, s.connections)?;
    let (t1, r1) = (cpu_ticks(envoy.pid())?, downstream_requests(&envoy)?);
    let reqs = r1.saturating_sub(r0).max(1) as f64;
    let cpu_us_per_req = (t1.saturating_sub(t0) as f64 / clk_tck) * 1e6 / reqs;

    let [p50_us, p90_us, p99_us] = match latency_rate {
        Some(rate) => h2load(pin, &url, s.secs, rate, &envoy.dir().join("h2load.log"))?,
        None => [0.0; 3],
    };
    let memory_mib = envoy
        .stat("server.memory_allocated")?
        .map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
    // A short pause lets the kernel reap the old Envoy before the next one binds.
    drop(envoy);
    std::thread::sleep(Duration::from_millis(100));
    Ok(Round {
        cpu_us_per_req,
        rps,
        p50_us,
        p90_us,
        p99_us,
        memory_mib,
    })
}

// === report ===

struct Report<'a> {
    configs: &'a [Config],
    results: &'a [Vec<Round>],
    /// Per configuration, when counted.
    instructions: &'a [Option<f64>],
    sizes: &'a [(String, f64)],
    settings: &'a Settings,
    rate: f64,
    pinned: bool,
    quick: bool,
}

/// Median, min and max of `f` over rounds.
fn stats(rounds: &[Round], f: impl Fn(&Round) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = rounds.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let med = match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0
        }
    };
    (
        med,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

impl Report<'_> {
    fn median(&self, name: &str, f: impl Fn(&Round) -> f64) -> Option<f64> {
        let i = self.configs.iter().position(|c| c.name == name)?;
        Some(stats(self.results.get(i)?, f).0)
    }

    fn json(&self) -> Json {
        let rows: Vec<Json> = self
            .configs
            .iter()
            .zip(self.results)
            .zip(self.instructions)
            .map(|((c, r), instructions)| {
                let m = |f: fn(&Round) -> f64| {
                    let (med, min, max) = stats(r, f);
                    json!({"median": med, "min": min, "max": max})
                };
                json!({
                    "name": c.name, "what": c.what,
                    "cpu_us_per_request": m(|r| r.cpu_us_per_req),
                    "saturation_rps": m(|r| r.rps),
                    "latency_p50_us": m(|r| r.p50_us),
                    "latency_p90_us": m(|r| r.p90_us),
                    "latency_p99_us": m(|r| r.p99_us),
                    "memory_allocated_mib": m(|r| r.memory_mib),
                    "instructions_per_request": instructions,
                    "rounds": r.len(),
                })
            })
            .collect();
        json!({
            "envoy": mesh_e2e::install::ENVOY_VERSION,
            "quick": self.quick,
            "rounds": self.settings.rounds,
            "seconds_per_run": self.settings.secs,
            "connections": self.settings.connections,
            "latency_rate_rps": self.rate,
            "pinned": self.pinned,
            "configs": rows,
            "module_sizes_kib": self.sizes.iter().map(|(n, k)| json!({"module": n, "kib": k})).collect::<Vec<_>>(),
            "ratios": self.ratios(),
            "wasm_vm_memory": self.vm_memory().iter().map(|(n, vms, added, per)| json!({
                "config": n, "vms": vms, "added_mib": added, "mib_per_vm": per,
            })).collect::<Vec<_>>(),
        })
    }

    /// Per configuration with Wasm filters: VMs, memory added over no filter, and per VM.
    /// Each Wasm filter of the bench has its own VM on the one worker and on the main thread.
    fn vm_memory(&self) -> Vec<(&str, usize, f64, f64)> {
        let Some(base) = self.median("no-filter", |r| r.memory_mib) else {
            return Vec::new();
        };
        self.configs
            .iter()
            .filter_map(|c| {
                let wasm = c
                    .filters
                    .iter()
                    .filter(|f| {
                        f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm")
                    })
                    .count();
                let vms = wasm * 2;
                let added = self.median(&c.name, |r| r.memory_mib)? - base;
                (vms > 0).then(|| (c.name.as_str(), vms, added, added / vms as f64))
            })
            .collect()
    }

    /// Added CPU over the no-filter baseline, relative to the empty filter's added CPU.
    fn ratios(&self) -> Json {
        let cpu = |n: &str| self.median(n, |r| r.cpu_us_per_req);
        let (Some(none), Some(empty)) = (cpu("no-filter"), cpu("empty-wasm")) else {
            return Json::Null;
        };
        let floor = (empty - none).max(f64::EPSILON);
        let mut out = serde_json::Map::new();
        for c in self.configs.iter().skip(1) {
            if let Some(v) = cpu(&c.name) {
                out.insert(
                    format!("{}_added_vs_empty", c.name),
                    json!((v - none) / floor),
                );
            }
        }
        let rps = |n: &str| self.median(n, |r| r.rps);
        if let (Some(base), Some(suite)) = (rps("no-filter"), rps("suite")) {
            out.insert("suite_throughput_vs_no_filter".into(), json!(suite / base));
        }
        Json::Object(out)
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# Benchmark report\n\n");
        md.push_str(&format!(
            "Envoy {} (V8), `--concurrency 1`{}; direct-response route; closed-loop `wrk -t1 -c{}` for {} s per run for CPU and saturation; open-loop `h2load --h1 -c4 --rps` at {:.0} req/s (half the no-filter saturation) for latency; {} round(s), configurations interleaved; medians with min..max.{}\n\n",
            mesh_e2e::install::ENVOY_VERSION,
            if self.pinned { ", pinned to CPU 0 with the load generator on CPU 1" } else { " (not pinned: fewer than 2 CPUs)" },
            self.settings.connections,
            self.settings.secs,
            self.rate,
            self.settings.rounds,
            if self.quick { " **Quick run: figures are indicative only.**" } else { "" },
        ));
        md.push_str("| configuration | Envoy CPU us/request | saturation req/s | p50 us | p90 us | p99 us | memory MiB |\n|---|---|---|---|---|---|---|\n");
        for (c, r) in self.configs.iter().zip(self.results) {
            let cell = |f: fn(&Round) -> f64, prec: usize| {
                let (m, lo, hi) = stats(r, f);
                format!("{m:.prec$} ({lo:.prec$}..{hi:.prec$})")
            };
            md.push_str(&format!(
                "| {} — {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.what,
                cell(|r| r.cpu_us_per_req, 2),
                cell(|r| r.rps, 0),
                cell(|r| r.p50_us, 0),
                cell(|r| r.p90_us, 0),
                cell(|r| r.p99_us, 0),
                cell(|r| r.memory_mib, 1),
            ));
        }
        md.push_str("\n## Ratios\n\nAdded CPU per request over no filter, divided by the empty filter's added CPU (target: each module <= 1.25, the suite <= 1.5):\n\n");
        if let Json::Object(m) = self.ratios() {
            for (k, v) in m {
                md.push_str(&format!("- `{k}`: {:.2}\n", v.as_f64().unwrap_or(0.0)));
            }
        }
        if self.instructions.iter().any(Option::is_some) {
            md.push_str(&format!("\n## Instructions per request\n\nEnvoy's instructions per request under callgrind ({INSTRUCTION_REQUESTS} requests one at a time after as many to warm up): a count that repeats to within a fraction of a percent, where CPU time moves with the machine's load. Added: over no filter; ratio: added over the empty filter's added.\n\n| configuration | instructions/request | added | ratio to empty |\n|---|---|---|---|\n"));
            let of = |name: &str| {
                let i = self.configs.iter().position(|c| c.name == name)?;
                self.instructions.get(i).copied().flatten()
            };
            let (base, empty) = (of("no-filter"), of("empty-wasm"));
            for (c, n) in self.configs.iter().zip(self.instructions) {
                let Some(n) = n else { continue };
                let added = base.map(|b| n - b);
                let ratio = match (added, base.zip(empty).map(|(b, e)| e - b)) {
                    (Some(a), Some(e)) if e > 0.0 => format!("{:.2}", a / e),
                    _ => "-".into(),
                };
                md.push_str(&format!(
                    "| {} | {:.0} | {} | {} |\n",
                    c.name,
                    n,
                    added.map_or("-".into(), |a| format!("{a:.0}")),
                    ratio
                ));
            }
        }
        self.floors_markdown(&mut md);
        md.push_str("\n## Module sizes\n\n| module | KiB |\n|---|---|\n");
        for (n, k) in self.sizes {
            md.push_str(&format!("| {n} | {k:.1} |\n"));
        }
        md.push_str("\n## Wasm VM memory\n\nEnvoy's `server.memory_allocated` after the runs, over `no-filter`'s: what the Wasm VMs hold, one per filter on the worker and one on the main thread.\n\n| configuration | VMs | added MiB | MiB per VM |\n|---|---|---|---|\n");
        for (n, vms, added, per) in self.vm_memory() {
            md.push_str(&format!("| {n} | {vms} | {added:.1} | {per:.2} |\n"));
        }
        md.push_str("\n![CPU per request](cpu.svg)\n");
        md
    }

    /// Each module beside its floor (`<module>-floor`): instructions and CPU added over no
    /// filter, and what the module's own code adds over the floor.
    fn floors_markdown(&self, md: &mut String) {
        let at = |name: &str| self.configs.iter().position(|c| c.name == name);
        let instr = |i: usize| self.instructions.get(i).copied().flatten();
        let cpu = |i: usize| {
            self.results
                .get(i)
                .map(|r| stats(r, |r| r.cpu_us_per_req).0)
        };
        let Some(base) = at("no-filter") else { return };
        let rows: Vec<String> = self
            .configs
            .iter()
            .filter_map(|c| {
                let module = c.name.strip_suffix("-floor")?;
                let (m, f) = (at(module)?, at(&c.name)?);
                let calls = c.filters.iter().find_map(replay_calls).unwrap_or(0);
                let instructions = match (instr(base), instr(m), instr(f)) {
                    (Some(b), Some(m), Some(f)) if f > b => format!(
                        "{:.0} | {:.0} | {:.2} | {:.0} ({:.0}%)",
                        f - b,
                        m - b,
                        (m - b) / (f - b),
                        m - f,
                        100.0 * (m - f) / (m - b).max(1.0)
                    ),
                    _ => "- | - | - | -".into(),
                };
                let us = match (cpu(base), cpu(m), cpu(f)) {
                    (Some(b), Some(m), Some(f)) => format!("{:.2} | {:.2}", f - b, m - b),
                    _ => "- | -".into(),
                };
                Some(format!("| {module} | {calls} | {instructions} | {us} |\n"))
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        md.push_str("\n## Floors\n\nEach module against its floor: the empty filter making the module's own host calls for this request (recorded by running the module natively against `FakeHost`, replayed in Envoy with none of its logic, exporting the same callbacks). The floor is what the host charges for the data the work needs; the rest is our code. Instructions and CPU are added over no filter.\n\n| module | host calls | floor instructions | module instructions | module / floor | own code | floor CPU us | module CPU us |\n|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            md.push_str(&r);
        }
    }

    fn chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let rows: Vec<(String, f64, f64, f64)> = self
            .configs
            .iter()
            .zip(self.results)
            .map(|(c, r)| {
                let (m, lo, hi) = stats(r, |r| r.cpu_us_per_req);
                (c.name.clone(), m, lo, hi)
            })
            .collect();
        let height = 60 + 36 * rows.len() as u32;
        let area = SVGBackend::new(path, (900, height)).into_drawing_area();
        area.fill(&WHITE)?;
        let max = rows.iter().map(|r| r.3).fold(1.0_f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                "Envoy CPU microseconds per request (median, min..max)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(130)
            .build_cartesian_2d(0.0..max, 0.0..rows.len() as f64)?;
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                labels.get(i).cloned().unwrap_or_default()
            })
            .x_desc("us per request")
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64;
            Rectangle::new([(0.0, y + 0.2), (r.1, y + 0.8)], BLUE.mix(0.6).filled())
        }))?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64 + 0.5;
            PathElement::new(vec![(r.2, y), (r.3, y)], BLACK.stroke_width(2))
        }))?;
        area.present()?;
        Ok(())
    }
}
