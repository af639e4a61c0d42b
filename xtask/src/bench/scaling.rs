//! How a module's costs grow with its configuration: instructions per request for a request
//! matching one entry of a small and of a large generated configuration (sidecar profile, so
//! intentions see the client's identity), the configuration's compile time natively, and the
//! Envoy under test's start time and allocated memory.

use super::*;

/// One generated configuration's figures.
#[derive(Debug, Clone)]
pub(super) struct Scaled {
    pub(super) capability: &'static str,
    pub(super) what: &'static str,
    pub(super) entries: usize,
    pub(super) config_kib: f64,
    pub(super) instructions: f64,
    /// Median of a few native compiles (`filter_suite::validate_capability`), xtask's build.
    pub(super) compile_ms: f64,
    /// Envoy under test from start to ready (both VMs configured).
    pub(super) ready_ms: f64,
    pub(super) memory_mib: f64,
}

/// The sizes compared: each capability's small and large configuration.
const CASES: [(&str, &str, [usize; 2]); 3] = [
    ("intentions", "intentions", [10, 10_000]),
    ("ratelimit", "rate-limit rules", [1, 1_000]),
    ("canary", "canary services", [1, 1_000]),
];

/// A configuration of `capability` with `n` entries, the last being the one the bench request
/// matches (so a scan reaches it last).
pub(super) fn generated(capability: &str, n: usize) -> Json {
    let others = n.saturating_sub(1);
    match capability {
        "intentions" => {
            let mut list: Vec<Json> = (0..others)
                .map(|i| json!({"source": format!("ns{i}/svc{i}"), "action": "allow"}))
                .collect();
            list.push(json!({"source": "default/client", "permissions": [
                {"action": "allow", "http": {"path_prefix": "/api/", "methods": ["GET"]}}]}));
            json!({"trust_domain": "mesh.local", "destination": "bench",
                   "default_action": "deny", "intentions": list})
        }
        "ratelimit" => {
            let limit = json!({"requests": 1_000_000_000, "per": "1s"});
            let mut rules: Vec<Json> = (0..others)
                .map(|i| {
                    json!({"name": format!("r{i}"), "match": {"path_prefix": format!("/r{i}/")},
                           "limit": limit})
                })
                .collect();
            // A matcher on the one that matches too, so both sizes read the same request
            // parts and only the rule count differs.
            rules.push(json!({"name": "all", "match": {"path_prefix": "/"}, "limit": limit}));
            json!({"rules": rules, "max_keys": 1000})
        }
        _ => {
            let subsets = json!([{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]);
            let mut services: Vec<Json> = (0..others)
                .map(|i| json!({"host": format!("svc{i}.default.svc.cluster.local"), "subsets": subsets}))
                .collect();
            services.push(json!({"host": "127.0.0.1", "subsets": subsets}));
            json!({"services": services})
        }
    }
}

/// Median milliseconds of compiling `config` as `capability`'s configuration natively.
fn compile_ms(capability: &str, config: &[u8]) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        match filter_suite::validate_capability(capability, config) {
            Some(Ok(())) => {}
            Some(Err(e)) => bail!("the generated {capability} configuration is refused: {e}"),
            None => bail!("{capability} is not a capability"),
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times.get(times.len() / 2).copied().unwrap_or(0.0))
}

pub(super) fn run(rig: &Rig, _plugins: &Json) -> anyhow::Result<Vec<Scaled>> {
    println!("scaling: instructions, compile time and memory against configuration size");
    let mut out = Vec::new();
    for (capability, what, sizes) in CASES {
        if !module(capability).exists() {
            continue;
        }
        for n in sizes {
            let config = generated(capability, n).to_string();
            let compile_ms = compile_ms(capability, config.as_bytes())?;
            let c = Config::new(
                Profile::Sidecar,
                &format!("scale-{capability}-{n}"),
                &format!("{capability} with {n} {what}"),
                vec![wasm_filter(capability, &module(capability), &config)],
            )
            .instructions_only();
            // Natively first: start time, then memory after some traffic.
            let stack = rig.stack(&c, None)?;
            let ready_ms = stack.server_ready.as_secs_f64() * 1e3;
            let load = Command::new("h2load")
                .args(["--h1", "-c4", "-n", "2000", &stack.url()])
                .output()
                .context("running h2load")?;
            check_h2load(&load.stdout).with_context(|| c.id())?;
            let memory_mib = stack
                .server
                .stat("server.memory_allocated")?
                .map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
            drop(stack);
            let instructions = instructions_per_request(&c, rig, INSTRUCTION_REQUESTS)
                .with_context(|| format!("counting instructions of {}", c.id()))?;
            println!(
                "  {:<28} {:>9.0} instructions/request  compile {:>8.2} ms  ready {:>6.0} ms  {:>6.1} MiB",
                c.id(),
                instructions,
                compile_ms,
                ready_ms,
                memory_mib
            );
            out.push(Scaled {
                capability,
                what,
                entries: n,
                config_kib: config.len() as f64 / 1024.0,
                instructions,
                compile_ms,
                ready_ms,
                memory_mib,
            });
        }
    }
    Ok(out)
}
