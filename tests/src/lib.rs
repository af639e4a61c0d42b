//! End-to-end harness shared by the e2e tests, the demo and the benchmarks: the pinned Envoy,
//! stub upstreams, and readers for Envoy's admin endpoint.

pub mod envoy;
pub mod install;
pub mod oci;
pub mod prometheus;
pub mod prometheus_server;
pub mod rls_ok;
pub mod rollout_mesh;
pub mod stub;
pub mod tls;

pub use envoy::{Envoy, EnvoyBuilder};
pub use prometheus::Sample;
pub use stub::Stub;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

/// The workspace root (where `envoy-config/` and `target/` live).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// A TCP port free at the time of the call, on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The release module `target/filters/<name>.wasm`, which `cargo xtask build` makes.
pub fn module_path(name: &str) -> anyhow::Result<PathBuf> {
    let p = repo_root()
        .join("target/filters")
        .join(format!("{name}.wasm"));
    anyhow::ensure!(
        p.exists(),
        "{} is missing: run `cargo xtask build`",
        p.display()
    );
    Ok(p)
}

/// The most a GCRA bucket of `burst` holding `requests` per `per` can admit to requests whose
/// decisions all fall within `elapsed` of each other: the burst plus one per emission interval
/// that passed (`mesh-ratelimit`'s bound). Exactness tests assert this instead of assuming that
/// a burst finishes before a refill: a slow machine then admits more, and the bound says how many.
pub fn most_admitted(requests: u64, per: Duration, burst: u64, elapsed: Duration) -> u64 {
    let per_ns = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
    let interval = per_ns.div_ceil(requests.max(1)).max(1);
    let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    burst.saturating_add(elapsed_ns / interval)
}

/// A blocking HTTP client that ignores proxy settings from the environment.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|_| reqwest::blocking::Client::new())
}
