//! A real Prometheus server (Debian's `prometheus` package, installed when missing as CI
//! runs as root) on 127.0.0.1 with its own data folder, scraping Envoys' `/stats/prometheus`.
//! Stopped on drop.

use crate::{free_port, repo_root};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running Prometheus.
pub struct PrometheusServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    http: reqwest::blocking::Client,
}

/// The `prometheus` binary, installed from Debian's packages when missing and root.
pub fn prometheus_bin() -> anyhow::Result<PathBuf> {
    crate::install::debian_tool("prometheus", "prometheus").context(
        "Debian's prometheus is not installed and could not be (apt-get install prometheus \
         needs root); `cargo xtask test` installs it",
    )
}

// === impl PrometheusServer ===

impl PrometheusServer {
    /// Starts Prometheus scraping `/stats/prometheus` of the Envoy admin ports `targets`
    /// every `scrape_interval`, and waits until it is ready.
    pub fn start(targets: &[u16], scrape_interval: Duration) -> anyhow::Result<Self> {
        let bin = prometheus_bin()?;
        let dir = repo_root().join("target/e2e").join(format!(
            "prometheus-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        let list: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let every = format!("{}ms", scrape_interval.as_millis().max(100));
        let config = format!(
            "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  evaluation_interval: {every}\n\
             scrape_configs:\n- job_name: envoy\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: [{}]\n",
            list.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&bin, &dir) {
                // The port was taken between the check and the bind: another one.
                Err(e) if attempt < 5 && format!("{e:#}").contains("address already in use") => {}
                other => return other,
            }
        }
    }

    fn start_once(bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let mut server = Self {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            http: crate::client(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = server.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    server.child = None;
                    bail!("prometheus exited ({status}): {}", server.log());
                }
            }
            if server
                .http
                .get(server.url("/-/ready"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready after 60s: {}", server.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's result list (`data.result`).
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let body: serde_json::Value = self
            .http
            .get(self.url("/api/v1/query"))
            .query(&[("query", promql)])
            .send()?
            .json()?;
        match body.pointer("/data/result").and_then(|r| r.as_array()) {
            Some(r) if body.get("status").and_then(|s| s.as_str()) == Some("success") => {
                Ok(r.clone())
            }
            _ => bail!("prometheus query {promql:?} failed: {body}"),
        }
    }

    /// Waits until `promql` has at least one series, or fails after `timeout`.
    pub fn wait_for_series(&self, promql: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.query(promql).is_ok_and(|r| !r.is_empty()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no series for {promql:?} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the server (its port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- prometheus log ({}) ----\n{}\n---- end ----",
                self.dir.display(),
                self.log()
            );
        }
    }
}
