//! Envoy instructions per request under callgrind.

use super::*;

/// The callgrind files of configuration `name` in `dir` (`<name>.out` and its dumps).
pub(super) fn dumps(dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!("{name}.out");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix))
        {
            out.push(path);
        }
    }
    Ok(out)
}

/// Requests measured per configuration under callgrind (after as many again to warm up).
pub(super) const INSTRUCTION_REQUESTS: u64 = 2000;

/// Envoy's instructions per request under callgrind, counted over `requests` requests sent
/// one at a time after a warm-up; the count starts and stops around the requests only. Only
/// the Envoy under test runs under valgrind (the sidecar profile's client proxy does not).
pub(super) fn instructions_per_request(
    c: &Config,
    rig: &Rig,
    requests: u64,
) -> anyhow::Result<f64> {
    match counted(c, rig, requests) {
        Ok((n, _)) => Ok(n),
        // Under valgrind on a loaded machine the sidecar chain's client proxy can time out a
        // request or two; one more count on a fresh stack, and a second failure is the answer.
        Err(e) if format!("{e:#}").contains("answers other than 2xx") => {
            println!("  {}: {e:#}; counting once more", c.id());
            Ok(counted(c, rig, requests)?.0)
        }
        Err(e) => Err(e),
    }
}

/// Instructions per request and the Envoy under test's `server.memory_allocated` (MiB)
/// after the run.
pub(super) fn counted(c: &Config, rig: &Rig, requests: u64) -> anyhow::Result<(f64, f64)> {
    let out_dir = root().join("target/bench/callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let id = c.id();
    let out_file = out_dir.join(format!("{id}.out"));
    for path in dumps(&out_dir, &id)? {
        std::fs::remove_file(path)?;
    }
    let out_arg = format!("--callgrind-out-file={}", out_file.display());
    let wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        // V8 writes the code it compiles into memory it then runs.
        "--smc-check=all-non-file",
        &out_arg,
    ];
    // Envoy under valgrind can take a minute to start on a loaded machine: one more try.
    let stack = match rig.stack(c, Some(&wrapper)) {
        Ok(s) => s,
        Err(e) if format!("{e:#}").contains("not ready") => {
            println!("  {id}: Envoy under valgrind was slow to start; trying once more");
            rig.stack(c, Some(&wrapper))?
        }
        Err(e) => return Err(e),
    };
    let envoy = &stack.server;
    let url = stack.url();
    let pid = envoy.pid().to_string();
    let send = |n: u64| -> anyhow::Result<()> {
        let out = Command::new("h2load")
            .args(["--h1", "-c1", "-n", &n.to_string(), &url])
            .output()
            .context("running h2load")?;
        if !out.status.success() {
            bail!("h2load failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        check_h2load(&out.stdout)
    };
    let control = |flag: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("callgrind_control")
            .args(flag)
            .arg(&pid)
            .output()
            .context("running callgrind_control")?;
        if !out.status.success() {
            bail!("callgrind_control {flag:?} failed");
        }
        Ok(())
    };
    let checks = rig.rls.calls();
    send(requests)?;
    let r0 = downstream_requests(envoy)?;
    control(&["-z"])?;
    control(&["-i", "on"])?;
    send(requests)?;
    // The admin reads below stay out of the count.
    control(&["-i", "off"])?;
    control(&["-d"])?;
    let r1 = downstream_requests(envoy)?;
    if c.global && rig.rls.calls() < checks + requests {
        bail!("{id}: the rate limit service was not asked for every request");
    }
    let memory_mib = envoy
        .stat("server.memory_allocated")?
        .map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
    drop(stack);
    let mut total = None;
    for path in dumps(&out_dir, &id)? {
        let text = std::fs::read_to_string(&path)?;
        let totals = text
            .lines()
            .filter_map(|l| l.strip_prefix("totals:"))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .max();
        total = total.max(totals);
    }
    let total = total.context("callgrind wrote no totals")?;
    Ok((
        total as f64 / r1.saturating_sub(r0).max(1) as f64,
        memory_mib,
    ))
}
