//! Demo step 1: plain Envoy routing real traffic to two stub services.

use super::DemoEnv;
use mesh_e2e::{client, Envoy, Stub};

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("Envoy routing to two stub services (no filter)");
    let (a, b) = (Stub::start("service-a")?, Stub::start("service-b")?);
    let envoy = Envoy::builder("envoy-config/harness/envoy.yaml")
        .cluster("stub_a", &a)
        .cluster("stub_b", &b)
        .start()?;
    let http = client();
    let n = env.requests(100);
    for i in 0..n {
        let path = if i % 4 == 0 { "/b/orders" } else { "/a/items" };
        http.get(envoy.url(path)).send()?.error_for_status()?;
    }
    println!("  sent {n} requests through Envoy on port {}", envoy.port());
    println!("  {:<10} {:>6}", "service-a", a.hits());
    println!("  {:<10} {:>6}", "service-b", b.hits());
    Ok(())
}
