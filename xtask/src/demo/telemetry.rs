//! Demo section for the telemetry filter: traffic answered 200, 404 and 503, then Istio's
//! standard metrics scraped from Envoy's `/stats/prometheus` as a table, one Prometheus line
//! and one access-log line.

use super::DemoEnv;
use mesh_e2e::{client, Envoy, Sample, Stub};
use serde_json::json;
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "envoy-config/telemetry/envoy.yaml";

fn of<'a>(samples: &'a [Sample], name: &'a str, code: &'a str) -> impl Iterator<Item = &'a Sample> {
    samples
        .iter()
        .filter(move |s| s.name == name && s.label("response_code") == Some(code))
}

fn value(samples: &[Sample], name: &str, code: &str) -> f64 {
    of(samples, name, code).map(|s| s.value).sum()
}

/// The smallest bucket bound holding at least `q` of the samples (what a dashboard's
/// `histogram_quantile` would round up to).
fn quantile_bound(samples: &[Sample], name: &str, code: &str, q: f64) -> String {
    let count = value(samples, &format!("{name}_count"), code);
    let mut buckets: Vec<(f64, f64)> = of(samples, &format!("{name}_bucket"), code)
        .filter_map(|s| Some((s.label("le")?.parse::<f64>().ok()?, s.value)))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
        .iter()
        .find(|(_, n)| *n >= q * count)
        .map_or_else(|| "+Inf".to_owned(), |(le, _)| format!("<= {le}"))
}

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("telemetry: Istio standard metrics from a plain Envoy");
    let stub = Stub::start("reviews")?;
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("stub", &stub)
        .plugin_config(
            "telemetry",
            json!({"reporter": "destination", "trace": {"start_when_absent": true}}),
        )
        .concurrency(2)
        .edit(|doc| {
            if let Some(m) = doc.as_mapping_mut() {
                m.insert("stats_flush_interval".into(), "0.2s".into());
            }
        })
        .start()?;
    let n = env.requests(300);
    println!("  sending {n} requests over 4 connections (stub answers by x-stub-status)");
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let envoy = &envoy;
                s.spawn(move || -> anyhow::Result<()> {
                    let http = client();
                    for i in (t..n).step_by(4) {
                        let status = match i % 10 {
                            0 => "503",
                            1 | 2 => "404",
                            _ => "200",
                        };
                        let r = http
                            .get(envoy.url(&format!("/reviews/{i}")))
                            .header("x-stub-status", status)
                            .send()?;
                        r.bytes()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;

    // Histograms show once Envoy has merged the workers' samples (a stats flush).
    let deadline = Instant::now() + Duration::from_secs(15);
    let samples = loop {
        let s = envoy.prometheus()?;
        let counted: f64 = s
            .iter()
            .filter(|x| x.name == "istio_request_duration_milliseconds_count")
            .map(|x| x.value)
            .sum();
        if counted >= n as f64 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    println!(
        "\n  {:<6} {:>9} {:>9} {:>10} {:>10} {:>11}",
        "code", "requests", "mean ms", "p95 ms", "mean in B", "mean out B"
    );
    for code in ["200", "404", "503"] {
        let count = value(&samples, "istio_request_duration_milliseconds_count", code);
        let mean = |name: &str| value(&samples, &format!("{name}_sum"), code) / count.max(1.0);
        println!(
            "  {:<6} {:>9} {:>9.1} {:>10} {:>10.0} {:>11.0}",
            code,
            value(&samples, "istio_requests_total", code),
            mean("istio_request_duration_milliseconds"),
            quantile_bound(&samples, "istio_request_duration_milliseconds", code, 0.95),
            mean("istio_request_bytes"),
            mean("istio_response_bytes"),
        );
    }
    if let Some(s) = samples
        .iter()
        .find(|s| s.name == "istio_requests_total" && s.label("response_code") == Some("503"))
    {
        let keys = [
            "reporter",
            "destination_workload",
            "destination_service",
            "source_workload",
            "response_code",
            "response_flags",
            "connection_security_policy",
        ];
        let labels: Vec<String> = keys
            .iter()
            .filter_map(|k| Some(format!("{k}=\"{}\"", s.label(k)?)))
            .collect();
        println!(
            "\n  istio_requests_total{{{},... ({} labels)}} {}",
            labels.join(","),
            s.labels.len(),
            s.value
        );
    }
    if let Some(line) = envoy
        .log()
        .lines()
        .rev()
        .find_map(|l| l.find("{\"time\"").and_then(|i| l.get(i..)))
    {
        println!("  access log: {line}");
    }
    let stat = |name: &str| envoy.stat(name).ok().flatten().unwrap_or(0);
    println!(
        "  traces started {}, series {} (cap 1000), overflowed requests {}",
        stat("wasmcustom.telemetry.trace_started"),
        stat("wasmcustom.telemetry.series_admitted"),
        stat("wasmcustom.telemetry.series_overflow"),
    );
    Ok(())
}
