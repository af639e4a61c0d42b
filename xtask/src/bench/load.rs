//! Load generation and CPU accounting: wrk at saturation, h2load at a fixed rate, Envoy pinned.

use super::*;

/// `wrk` and `h2load` from Debian's packages, installed when missing (needs root).
pub(super) fn ensure_tools() -> anyhow::Result<()> {
    ensure_debian_tools(&[("wrk", "wrk"), ("h2load", "nghttp2-client")])
}

pub(super) struct Pinning {
    pub(super) cpus: usize,
}

impl Pinning {
    pub(super) fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { cpus }
    }
    pub(super) fn pinned(&self) -> bool {
        self.cpus >= 2 && have("taskset")
    }
    /// Pins every thread of `pid` to CPU `cpu` (0: the Envoy under test; 1: the load side).
    pub(super) fn pin(&self, pid: u32, cpu: u32) -> anyhow::Result<()> {
        self.taskset(&["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
    }
    /// Pins one thread (a kernel thread id) to CPU `cpu`.
    pub(super) fn pin_thread(&self, tid: u32, cpu: u32) -> anyhow::Result<()> {
        self.taskset(&["-p", "-c", &cpu.to_string(), &tid.to_string()])
    }
    fn taskset(&self, args: &[&str]) -> anyhow::Result<()> {
        if self.pinned() {
            let out = Command::new("taskset").args(args).output()?;
            if !out.status.success() {
                bail!("taskset failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Ok(())
    }
    /// A load generator command on CPU 1.
    pub(super) fn load(&self, tool: &str) -> Command {
        if self.pinned() {
            let mut c = Command::new("taskset");
            c.args(["-c", "1", tool]);
            c
        } else {
            Command::new(tool)
        }
    }
}

pub(super) fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0))
}

/// User + system CPU ticks of `pid` from /proc.
pub(super) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

pub(super) fn downstream_requests(envoy: &Envoy) -> anyhow::Result<u64> {
    envoy
        .stat("http.ingress.downstream_rq_total")?
        .context("http.ingress.downstream_rq_total missing")
}

pub(super) fn wrk(pin: &Pinning, url: &str, secs: u64, connections: usize) -> anyhow::Result<f64> {
    let out = pin
        .load("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Every answer must be the 200 the configuration is meant to give.
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        bail!("wrk got refusals ({}):\n{text}", line.trim());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))
}

/// Open-loop latency at `rate` requests/s: percentiles in microseconds from h2load's
/// per-request log.
pub(super) fn h2load(
    pin: &Pinning,
    url: &str,
    secs: u64,
    rate: f64,
    log: &Path,
) -> anyhow::Result<[f64; 3]> {
    let clients = 4.0_f64;
    let per_client = (rate / clients).ceil().max(1.0);
    let _ = std::fs::remove_file(log);
    let out = pin
        .load("h2load")
        .args(["--h1", "-t1", "-c4"])
        .arg(format!("--rps={per_client}"))
        .arg(format!("-D{secs}"))
        .arg(format!("--log-file={}", log.display()))
        .arg(url)
        .output()
        .context("running h2load")?;
    if !out.status.success() {
        bail!("h2load failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    check_h2load(&out.stdout)?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lat: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if lat.is_empty() {
        bail!("h2load logged no requests");
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).copied().unwrap_or(0.0)
    };
    Ok([pct(0.5), pct(0.9), pct(0.99)])
}

// === configurations ===

/// Fails unless every answer h2load got was a 2xx (its `status codes: N 2xx, N 3xx, ...`).
pub(super) fn check_h2load(stdout: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(stdout);
    let counts = text
        .lines()
        .find_map(|l| l.strip_prefix("status codes:"))
        .with_context(|| format!("no status codes in h2load's output:\n{text}"))?;
    let mut ok = 0;
    for part in counts.split(',') {
        let (n, class) = part.trim().split_once(' ').unwrap_or(("0", ""));
        let n: u64 = n.parse().unwrap_or(0);
        match class {
            "2xx" => ok = n,
            _ if n > 0 => bail!("h2load got answers other than 2xx: {}", counts.trim()),
            _ => {}
        }
    }
    if ok == 0 {
        bail!("h2load got no answer: {}", counts.trim());
    }
    Ok(())
}

pub(super) fn measure(
    c: &Config,
    s: &Settings,
    rig: &Rig,
    clk_tck: f64,
    latency_rate: Option<f64>,
) -> anyhow::Result<Round> {
    let stack = rig.stack(c, None)?;
    let envoy = &stack.server;
    rig.pin.pin(envoy.pid(), 0)?;
    let url = stack.url();
    let checks = rig.rls.calls();
    // Warm up: V8 tiers up hot functions; connections and pools get made.
    wrk(&rig.pin, &url, 1, s.connections)?;

    let (t0, r0) = (cpu_ticks(envoy.pid())?, downstream_requests(envoy)?);
    let rps = wrk(&rig.pin, &url, s.secs, s.connections)?;
    let (t1, r1) = (cpu_ticks(envoy.pid())?, downstream_requests(envoy)?);
    let reqs = r1.saturating_sub(r0).max(1) as f64;
    let cpu_us_per_req = (t1.saturating_sub(t0) as f64 / clk_tck) * 1e6 / reqs;

    let [p50_us, p90_us, p99_us] = match latency_rate {
        Some(rate) => h2load(
            &rig.pin,
            &url,
            s.secs,
            rate,
            &envoy.dir().join("h2load.log"),
        )?,
        None => [0.0; 3],
    };
    if c.global && rig.rls.calls() <= checks {
        bail!("{}: the rate limit service was never asked", c.id());
    }
    let memory_mib = envoy
        .stat("server.memory_allocated")?
        .map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
    // A short pause lets the kernel reap the old Envoys before the next ones bind.
    drop(stack);
    std::thread::sleep(Duration::from_millis(100));
    Ok(Round {
        cpu_us_per_req,
        rps,
        p50_us,
        p90_us,
        p99_us,
        memory_mib,
    })
}
