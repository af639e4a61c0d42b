//! Demo section for the suite module: one filter pass with every capability on, driving mixed
//! traffic through `envoy-config/suite/envoy.yaml`, then what each capability decided.

use super::DemoEnv;
use mesh_e2e::{client, Envoy, Stub};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("suite: telemetry, intentions, rate limiting and canary in one filter pass");
    let n = env.requests(200);
    // Half the traffic is mallory's, well over the per-client limit; the others stay under.
    let limit = (n / 5).max(2);
    let (v1, v2) = (Stub::start("reviews-v1")?, Stub::start("reviews-v2")?);
    let config = json!({
        "telemetry": {"reporter": "destination",
                      "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"}},
        "intentions": {"trust_domain": "mesh.local", "destination": "reviews",
                       "default_action": "allow",
                       "intentions": [{"source": "legacy/*", "action": "deny"}]},
        "ratelimit": {"rules": [{"name": "per-client", "key": {"header": "x-client"},
                                 "limit": {"requests": limit, "per": "1m"}}],
                      "max_keys": 10_000},
        "canary": {"services": [{"host": "reviews",
                   "subsets": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 20}],
                   "sticky": {"header": "x-user-id"}}]}
    });
    let envoy = Envoy::builder("envoy-config/suite/envoy.yaml")
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .plugin_config("suite", config)
        .concurrency(2)
        .start()?;
    let http = client();
    let others = ["alice", "bob", "carol"];
    let mut by: BTreeMap<(String, u16), u32> = BTreeMap::new();
    for i in 0..n {
        // mallory sends far more than the others and runs into the per-client limit.
        let who = if i % 2 == 0 {
            "mallory"
        } else {
            others.get((i / 2) % 3).copied().unwrap_or("alice")
        };
        let r = http
            .get(envoy.url("/reviews/1"))
            .header("host", "reviews")
            .header("x-client", who)
            .header("x-user-id", format!("{who}-{}", i % 7))
            .send()?;
        *by.entry((who.to_owned(), r.status().as_u16())).or_default() += 1;
        r.bytes()?;
    }
    println!("  {n} requests through one suite filter (limit: {limit} per client per minute)");
    println!("  {:<10} {:>6} {:>6}", "client", "status", "count");
    for ((who, status), count) in &by {
        println!("  {who:<10} {status:>6} {count:>6}");
    }
    println!(
        "  canary split of admitted requests: v1 {} / v2 {}",
        v1.hits(),
        v2.hits()
    );

    // Telemetry counted every request, the local 429s included.
    let deadline = Instant::now() + Duration::from_secs(10);
    let per_code = loop {
        let mut per_code: BTreeMap<String, f64> = BTreeMap::new();
        for s in envoy.prometheus()? {
            if s.name == "istio_requests_total" {
                let code = s.label("response_code").unwrap_or("?").to_owned();
                *per_code.entry(code).or_default() += s.value;
            }
        }
        if per_code.values().sum::<f64>() >= n as f64 || Instant::now() > deadline {
            break per_code;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("  istio_requests_total by response_code: {per_code:?}");
    let log = envoy.log();
    if let Some(line) = log
        .lines()
        .filter_map(|l| l.find('{').map(|i| l.get(i..).unwrap_or("")))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .find(|v| v["status"] == 429)
    {
        println!("  one access log line (a limited request):\n    {line}");
    }
    Ok(())
}
