//! Demo section for the canary filter: a live 90/10 split through Envoy, then an override, a
//! sticky user, and the rollback guard taking a failing canary out of traffic.

use super::DemoEnv;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mesh_e2e::{client, repo_root, Envoy, Stub};
use std::collections::BTreeMap;

const BOOTSTRAP: &str = "envoy-config/canary/envoy.yaml";

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("canary: weighted split, override, sticky user, rollback guard");
    let config_path = repo_root().join("envoy-config/canary/plugin-config.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path)?)
            .with_context(|| format!("reading {}", config_path.display()))?;
    let (v1, v2) = (Stub::start("v1")?, Stub::start("v2")?);
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .plugin_config("canary", config)
        .concurrency(2)
        .start()?;
    println!(
        "  Envoy on port {} (2 workers), plugin config envoy-config/canary/plugin-config.json",
        envoy.port()
    );

    // 1. The split, live.
    let n = env.requests(2000);
    println!("\n  {n} requests for host `reviews`, weights v1=90 v2=10:");
    let seen = traffic(&envoy, n, &[])?;
    let (o1, o2) = (count(&seen, "v1"), count(&seen, "v2"));
    let total = (o1 + o2).max(1) as f64;
    println!(
        "  {:<8} {:>6} {:>9} {:>7}",
        "subset", "weight", "requests", "share"
    );
    for (name, weight, got) in [("v1", 90, o1), ("v2", 10, o2)] {
        println!(
            "  {name:<8} {weight:>6} {got:>9} {:>6.1}%",
            100.0 * got as f64 / total
        );
    }
    let (e1, e2) = (total * 0.9, total * 0.1);
    let chi2 = (o1 as f64 - e1).powi(2) / e1 + (o2 as f64 - e2).powi(2) / e2;
    println!(
        "  chi-square {chi2:.2} (1 degree of freedom; under 10.83 the split matches the weights at p = 0.001)"
    );

    // 2. Override and sticky user.
    let forced = traffic(&envoy, 20, &[("x-canary", "always")])?;
    println!(
        "\n  20 requests with `x-canary: always`:   {}",
        summary(&forced)
    );
    let alice = traffic(&envoy, 50, &[("x-user-id", "alice")])?;
    println!(
        "  50 requests with `x-user-id: alice`:  {}",
        summary(&alice)
    );

    // 3. The canary starts failing: the guard takes it out.
    v2.set_status(503);
    println!(
        "\n  v2 now answers 503; the guard trips once its window holds 50 v2 responses with over 5% failures"
    );
    let tripped = |e: &Envoy| -> anyhow::Result<bool> {
        Ok(e.stat("wasmcustom.canary.reviews.v2.rollbacks")?
            .unwrap_or(0)
            > 0)
    };
    let mut sent = 0;
    let bar = spinner("sending traffic until the guard trips")?;
    while !tripped(&envoy)? {
        anyhow::ensure!(
            sent < 20_000,
            "the guard did not trip after {sent} requests"
        );
        traffic_quiet(&envoy, 20)?;
        sent += 20;
        bar.set_position(sent as u64);
    }
    bar.finish_and_clear();
    println!(
        "  tripped after {sent} more requests (v2 answered {} in all)",
        v2.hits()
    );
    let after = traffic(&envoy, env.requests(500), &[])?;
    println!(
        "  after the trip:                       {}",
        summary(&after)
    );
    let stats = envoy.stats()?;
    println!("  Envoy /stats:");
    for (k, v) in stats
        .iter()
        .filter(|(k, _)| k.starts_with("wasmcustom.canary."))
    {
        println!("    {k}: {v}");
    }
    if let Some(line) = envoy
        .log()
        .lines()
        .find(|l| l.contains("rollback guard tripped"))
    {
        let msg = line.split("canary: ").last().unwrap_or(line);
        println!("  Envoy log (warn, once): canary: {msg}");
    }
    Ok(())
}

fn count(seen: &BTreeMap<String, u64>, name: &str) -> u64 {
    seen.get(name).copied().unwrap_or(0)
}

fn summary(seen: &BTreeMap<String, u64>) -> String {
    seen.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn spinner(msg: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template(
        "{spinner} {msg} ({pos} requests)",
    )?);
    bar.set_message(msg.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    Ok(bar)
}

/// Sends `n` requests over four connections with a progress bar; counts answers per
/// upstream (`x-upstream`), or per status when Envoy answered itself.
fn traffic(
    envoy: &Envoy,
    n: usize,
    headers: &[(&str, &str)],
) -> anyhow::Result<BTreeMap<String, u64>> {
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("  [{bar:40}] {pos}/{len} requests, {per_sec}")?
            .progress_chars("=> "),
    );
    let result = send(envoy, n, headers, Some(&bar));
    bar.finish_and_clear();
    result
}

fn traffic_quiet(envoy: &Envoy, n: usize) -> anyhow::Result<BTreeMap<String, u64>> {
    send(envoy, n, &[], None)
}

fn send(
    envoy: &Envoy,
    n: usize,
    headers: &[(&str, &str)],
    bar: Option<&ProgressBar>,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let threads = 4.min(n.max(1));
    let url = envoy.url("/reviews/1");
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, headers, bar) = (url.clone(), headers.clone(), bar.cloned());
            std::thread::spawn(move || -> anyhow::Result<BTreeMap<String, u64>> {
                let http = client();
                let mut seen = BTreeMap::new();
                for _ in (t..n).step_by(threads) {
                    let mut req = http.get(&url).header("host", "reviews");
                    for (k, v) in &headers {
                        req = req.header(k, v);
                    }
                    let r = req.send()?;
                    let key = r
                        .headers()
                        .get("x-upstream")
                        .and_then(|v| v.to_str().ok())
                        .map_or_else(|| format!("status {}", r.status().as_u16()), str::to_owned);
                    *seen.entry(key).or_insert(0) += 1;
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                }
                Ok(seen)
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for h in handles {
        let part = h
            .join()
            .map_err(|_| anyhow::anyhow!("a traffic thread panicked"))??;
        for (k, v) in part {
            *total.entry(k).or_insert(0) += v;
        }
    }
    Ok(total)
}
