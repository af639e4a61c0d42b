//! `cargo xtask demo`: a small local mesh with every filter, real traffic and a readable summary.

mod canary;
mod harness;
mod intentions;
mod ratelimit;
mod rollout;
mod suite;
mod telemetry;

use crate::build;

/// A demo section's entry point.
type Section = fn(&DemoEnv) -> anyhow::Result<()>;

/// What every demo section gets.
pub struct DemoEnv {
    /// `--quick`: less traffic, same steps.
    pub quick: bool,
}

impl DemoEnv {
    /// Prints a section heading.
    pub fn section(&self, title: &str) {
        println!("\n=== {title} ===");
    }
    /// `full` requests normally, a tenth of them with `--quick`.
    pub fn requests(&self, full: usize) -> usize {
        if self.quick {
            (full / 10).max(1)
        } else {
            full
        }
    }
}

pub fn demo(args: &[String]) -> anyhow::Result<()> {
    let env = DemoEnv {
        quick: args.iter().any(|a| a == "--quick"),
    };
    build::build()?;
    let envoy = mesh_e2e::install::envoy_bin()?;
    println!("{}", mesh_e2e::install::envoy_version(&envoy)?);
    let sections: [(&str, Section); 7] = [
        ("harness", harness::run),
        ("canary", canary::run),
        ("ratelimit", ratelimit::run),
        ("intentions", intentions::run),
        ("telemetry", telemetry::run),
        ("suite", suite::run),
        ("rollout", rollout::run),
    ];
    let mut failed = Vec::new();
    for (name, run) in sections {
        if let Err(e) = run(&env) {
            eprintln!("demo section {name} failed: {e:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("demo sections failed: {}", failed.join(", "));
    }
    println!("\ndemo finished");
    Ok(())
}
