//! Demo section for the intentions filter: the shipped mTLS bootstrap (with its demo
//! certificates) in front of a `reviews` stub, called by `frontend`, `web` and
//! `legacy/billing`, by a client without a certificate and by one forging identity headers;
//! then the per-intention counters and one denial as Envoy logged it.

use super::DemoEnv;
use mesh_e2e::tls::{self, Proto, RawResponse};
use mesh_e2e::{client, Envoy, Stub};
use std::time::Duration;

const BOOTSTRAP: &str = "envoy-config/intentions/envoy.yaml";
const CERTS: &str = "envoy-config/intentions/certs";

fn pem(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = mesh_e2e::repo_root().join(CERTS).join(name);
    std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn who_answered(r: &RawResponse) -> String {
    match (r.status, r.echo()) {
        (_, Some(_)) => "reviews answered".to_owned(),
        (403, None) => "denied by the filter".to_owned(),
        (400, None) => "refused by the filter (path)".to_owned(),
        (0, None) => format!("no response ({})", r.reset.as_deref().unwrap_or("closed")),
        (s, None) => format!("{s} from envoy"),
    }
}

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("intentions: Consul-style authorization from the caller's mTLS identity");
    let stub = Stub::start("reviews")?;
    let envoy = Envoy::builder(BOOTSTRAP)
        .cluster("reviews", &stub)
        .edit(|doc| {
            if let Some(m) = doc.as_mapping_mut() {
                m.insert("stats_flush_interval".into(), "0.2s".into());
            }
        })
        .start()?;
    let port = envoy
        .listener_port("mtls")
        .ok_or_else(|| anyhow::anyhow!("no mtls listener"))?;
    let ca = pem("ca.pem")?;
    let as_id = |name: &str| -> anyhow::Result<_> {
        let (cert, key) = (
            pem(&format!("{name}.pem"))?,
            pem(&format!("{name}-key.pem"))?,
        );
        tls::client_config_from_pem(&ca, Some((&cert, &key)), Proto::H1)
    };
    let callers = [
        ("frontend", "default/frontend", as_id("frontend")?),
        ("web", "default/web", as_id("web")?),
        ("legacy", "legacy/billing", as_id("legacy")?),
    ];
    println!("  policy of reviews (envoy-config/intentions/envoy.yaml): frontend allowed; legacy/* denied;");
    println!("  web: /api/admin* denied, GET|HEAD /api/* allowed; anything else: default deny");
    println!(
        "  {:<9} {:<7} {:<22} {:>6}  outcome",
        "caller", "method", "path", "status"
    );
    let calls: [(usize, &str, &str); 9] = [
        (0, "GET", "/reviews/1"),
        (0, "DELETE", "/reviews/1"),
        (1, "GET", "/api/reviews"),
        (1, "GET", "/api/admin/users"),
        (1, "GET", "/api/%61dmin/users"),
        (1, "GET", "/api/public/../admin"),
        (1, "GET", "/api%2Fadmin"),
        (1, "POST", "/api/reviews"),
        (2, "GET", "/reviews/1"),
    ];
    let rounds = env.requests(10);
    for (i, method, path) in calls {
        let Some((name, _, cfg)) = callers.get(i) else {
            continue;
        };
        let mut last = RawResponse::default();
        for _ in 0..rounds {
            last = tls::h1(cfg, port, method.as_bytes(), path.as_bytes(), &[])?;
        }
        println!(
            "  {name:<9} {method:<7} {path:<22} {:>6}  {}",
            last.status,
            who_answered(&last)
        );
    }
    println!("  (each call sent {rounds}x over HTTP/1.1 with the caller's certificate)");

    // Without a certificate the mTLS listener refuses the handshake; the plaintext listener
    // runs the same filter, where every caller is anonymous, whatever it claims.
    let anon = tls::client_config_from_pem(&ca, None, Proto::H1)?;
    let r = tls::h1(&anon, port, b"GET", b"/reviews/1", &[]).unwrap_or_else(|e| RawResponse {
        reset: Some(format!("{e:#}")),
        ..RawResponse::default()
    });
    println!(
        "  {:<9} {:<7} {:<22} {:>6}  {}",
        "no cert",
        "GET",
        "/reviews/1",
        r.status,
        who_answered(&r)
    );
    let plain = envoy
        .listener_port("plaintext")
        .ok_or_else(|| anyhow::anyhow!("no plaintext listener"))?;
    let forged = client()
        .get(format!("http://127.0.0.1:{plain}/reviews/1"))
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://mesh.local/ns/default/sa/frontend",
        )
        .send()?;
    println!(
        "  {:<9} {:<7} {:<22} {:>6}  plaintext listener, forged x-forwarded-client-cert: ignored",
        "forger",
        "GET",
        "/reviews/1",
        forged.status().as_u16()
    );

    let stats = envoy.wait_for_stats(Duration::from_secs(3), |s| {
        s.get("wasmcustom.intentions.intention.default.frontend.allowed")
            .is_some_and(|v| *v as usize == rounds)
    })?;
    println!("\n  counters from /stats:");
    for (k, v) in stats
        .iter()
        .filter(|(k, v)| k.starts_with("wasmcustom.intentions.") && **v > 0)
    {
        println!("    {k:<58} {v:>5}");
    }
    println!("  upstream reviews served {} requests", stub.hits());
    if let Some(line) = envoy
        .log()
        .lines()
        .find(|l| l.contains("intentions: denied source=spiffe://mesh.local/ns/default/sa/web"))
    {
        let msg = line
            .find("intentions: denied")
            .and_then(|i| line.get(i..))
            .unwrap_or(line);
        println!("  a denial as Envoy logged it:\n    {msg}");
    }
    Ok(())
}
