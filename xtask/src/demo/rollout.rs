//! Demo section for `mfctl rollout`: a healthy canary stepped 10 -> 50 -> 100 % and promoted,
//! then a canary answering 503 rolled back at its first step; figures read from Envoy's admin
//! endpoint (the mesh of the rollout e2e test: canary over ECDS, telemetry sidecars).

use super::DemoEnv;
use mesh_e2e::rollout_mesh::{Canary, Mesh, Traffic};

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("rollout: canary weights stepped from the mesh's metrics, promote and roll back");
    for (name, failing) in [("healthy v2", false), ("v2 answering 503", true)] {
        let mesh = Mesh::start("demo", Canary::Healthy, None)?;
        if failing {
            mesh.v2.set_status(503);
        }
        let _traffic = Traffic::start(&mesh.envoy);
        println!(
            "\n  {name}: mfctl rollout {} --service reviews --canary v2 --steps 10,50,100 \
             --interval 2s --min-requests 20 --max-error-rate 0.05 --max-p99-ms 500 \
             --envoy-admin {}",
            mesh.ecds.display(),
            mesh.envoy.admin_url("")
        );
        let ecds = mesh.ecds.display().to_string();
        let admin = mesh.envoy.admin_url("");
        let args = mesh_cli::rollout::parse_args([
            "mfctl",
            &ecds,
            "--service",
            "reviews",
            "--canary",
            "v2",
            "--steps",
            "10,50,100",
            "--interval",
            "2s",
            "--progress",
            "1s",
            "--min-requests",
            "20",
            "--max-error-rate",
            "0.05",
            "--max-p99-ms",
            "500",
            "--no-data-timeout",
            "10s",
            "--envoy-admin",
            &admin,
        ])?;
        // Decision lines and progress both to stdout, indented by the section.
        let mut out = indented(std::io::stdout());
        let mut progress = indented(std::io::stdout());
        let code = mesh_cli::rollout::run(&args, &mut out, &mut progress);
        let (v1, v2) = mesh.weights()?;
        println!("  exit code {code}; the ECDS file now says v1 {v1}, v2 {v2}");
        let expected = if failing {
            mesh_cli::rollout::ROLLED_BACK
        } else {
            mesh_cli::rollout::PROMOTED
        };
        anyhow::ensure!(
            code == expected,
            "{name}: exit code {code}, expected {expected}"
        );
    }
    Ok(())
}

/// Indents every line written by two spaces.
struct Indented<W> {
    inner: W,
    at_start: bool,
}

fn indented<W>(inner: W) -> Indented<W> {
    Indented {
        inner,
        at_start: true,
    }
}

impl<W: std::io::Write> std::io::Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if self.at_start {
                self.inner.write_all(b"  ")?;
            }
            self.inner.write_all(line)?;
            self.at_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
