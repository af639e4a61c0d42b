//! Demo section for the ratelimit filter: requests admitted and limited per key, one exact
//! limit across Envoy workers, and what a limited client receives.

use super::DemoEnv;
use mesh_e2e::{client, Envoy, Stub};
use serde_json::json;
use std::sync::{Arc, Barrier};

const BOOTSTRAP: &str = "envoy-config/ratelimit/envoy.yaml";

/// Sends `n` requests with `x-api-key: key`; returns (admitted, limited).
fn send(url: &str, key: Option<&str>, n: usize) -> anyhow::Result<(usize, usize)> {
    let http = client();
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        let mut req = http.get(url);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        match req.send()?.status().as_u16() {
            429 => limited += 1,
            _ => ok += 1,
        }
    }
    Ok((ok, limited))
}

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("ratelimit: per-key limits shared by every Envoy worker");
    let stub = Stub::start("reviews")?;
    let config = json!({
        "headers_on_allowed": true,
        "max_keys": 10_000,
        "rules": [
            {"name": "per-key", "match": {"path_prefix": "/api/"}, "key": {"header": "x-api-key"},
             "limit": {"requests": 10, "per": "1m"}},
            {"name": "burst-demo", "match": {"path_prefix": "/burst"}, "key": {"header": "x-api-key"},
             "limit": {"requests": 100, "per": "1h"}},
            {"name": "per-peer", "match": {"path_prefix": "/peer"}, "key": {"source": "address"},
             "limit": {"requests": 5, "per": "1h"}}
        ]
    });
    println!(
        "  rule per-key: 10 requests per minute per x-api-key on /api/ (Envoy --concurrency 2)"
    );
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("upstream", &stub)
        .plugin_config("ratelimit", config)
        .concurrency(2)
        .start()?;
    let url = envoy.url("/api/reviews");
    println!(
        "  {:<12} {:>5} {:>9} {:>8}",
        "x-api-key", "sent", "admitted", "limited"
    );
    for (key, n) in [
        (Some("alice"), 25),
        (Some("bob"), 5),
        (Some("carol"), 15),
        (None, 12),
    ] {
        let (ok, limited) = send(&url, key, n)?;
        println!(
            "  {:<12} {:>5} {:>9} {:>8}",
            key.unwrap_or("(none)"),
            n,
            ok,
            limited
        );
    }
    println!("  (a request without the key is not limited by a keyed rule)");

    // One exact limit across workers: many connections at once on one key.
    let (threads, total) = (30, env.requests(300).max(150));
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, url) = (barrier.clone(), envoy.url("/burst"));
            let n = total / threads + usize::from(t < total % threads);
            std::thread::spawn(move || {
                barrier.wait();
                send(&url, Some("burst"), n)
            })
        })
        .collect();
    let mut admitted = 0;
    for h in handles {
        let (ok, _) = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        admitted += ok;
    }
    println!(
        "  burst: {total} concurrent requests over {threads} connections, limit 100 per hour: {admitted} admitted"
    );

    // Address keys are the TCP peer the listener stamps: a forged x-forwarded-for per request
    // mints no bucket, whatever the connection manager trusts.
    let http = client();
    let forged = (0..30)
        .filter(|i| {
            http.get(envoy.url("/peer"))
                .header("x-forwarded-for", format!("10.9.{i}.{i}"))
                .send()
                .is_ok_and(|r| r.status() == 200)
        })
        .count();
    println!(
        "  rule per-peer (5 per hour per client address): 30 requests, each with another forged x-forwarded-for: {forged} admitted"
    );

    let ok = http.get(&url).header("x-api-key", "dave").send()?;
    println!("\n  an admitted response carries:");
    for name in ["ratelimit-policy", "ratelimit"] {
        if let Some(v) = ok.headers().get(name) {
            println!("    {name}: {}", v.to_str().unwrap_or("?"));
        }
    }
    // A fresh key spends its allowance right now, so its next request is refused (an older
    // key may have earned a token back while the burst ran).
    let mut limited = http.get(&url).header("x-api-key", "erin").send()?;
    for _ in 0..20 {
        if limited.status() == 429 {
            break;
        }
        limited.bytes()?;
        limited = http.get(&url).header("x-api-key", "erin").send()?;
    }
    println!("  a limited client receives {}:", limited.status());
    for name in [
        "retry-after",
        "ratelimit-policy",
        "ratelimit",
        "content-type",
    ] {
        if let Some(v) = limited.headers().get(name) {
            println!("    {name}: {}", v.to_str().unwrap_or("?"));
        }
    }
    println!("    body: {}", limited.text()?);

    let stats = envoy.stats()?;
    println!("\n  Envoy stats (/stats):");
    for (k, v) in stats
        .iter()
        .filter(|(k, _)| k.starts_with("wasmcustom.ratelimit."))
    {
        if *v > 0 {
            println!("    {k}: {v}");
        }
    }
    println!("  upstream saw {} requests", stub.hits());
    Ok(())
}
