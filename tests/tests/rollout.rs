//! `mfctl rollout` end to end (the mesh: `mesh_e2e::rollout_mesh`): the canary filter over ECDS in front of two versions of
//! `reviews`, each behind its own "sidecar" (an Envoy internal listener with the telemetry
//! filter as the destination reporter, workload version v1 or v2, so `istio_requests_total`
//! and `istio_request_duration_milliseconds` carry `destination_version` as Istio's do), with
//! the shipped stats_tags; Prometheus (Debian's) scraping Envoy's `/stats/prometheus` every
//! second, or the rollout reading the admin endpoint itself; traffic flowing all along.
//! Each scenario runs the real rollout (its command-line arguments, in-process) with short
//! intervals and waits on its lines with deadlines; the rollout bounds itself (max hold,
//! no-data timeout). The lines (figures and reasons) are printed.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mesh_e2e::client;
use mesh_e2e::prometheus_server::PrometheusServer;
use mesh_e2e::rollout_mesh::{Canary, Mesh, Traffic};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// Test-only probes of the mesh.
trait Probe {
    fn upstreams(&self, n: usize) -> Vec<String>;
    fn all_go_to(&self, upstream: &str);
}

impl Probe for Mesh {
    /// Sends `n` requests; the upstreams that answered, in order.
    fn upstreams(&self, n: usize) -> Vec<String> {
        let http = client();
        (0..n)
            .map(|i| {
                let r = http
                    .get(self.envoy.url("/reviews/1"))
                    .header("host", "reviews")
                    .header("x-user-id", format!("probe-{i}"))
                    .send()
                    .unwrap();
                r.headers()
                    .get("x-upstream")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_else(|| format!("status {}", r.status()))
            })
            .collect()
    }

    /// Waits until `n` requests in a row all reach `upstream` (the split took effect), then
    /// checks that 100 more do too.
    fn all_go_to(&self, upstream: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.upstreams(20).iter().all(|u| u == upstream) {
            assert!(
                Instant::now() < deadline,
                "traffic never went all to {upstream}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let seen = self.upstreams(100);
        assert!(seen.iter().all(|u| u == upstream), "{seen:?}");
    }
}

/// What the rollout wrote, shared with the test while it runs.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    /// Waits until a line contains `what`.
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.text().lines().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < deadline,
                "no line with {what:?} after {DEADLINE:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A rollout running in a thread, from its command-line arguments.
struct Rollout {
    out: Output,
    err: Output,
    handle: std::thread::JoinHandle<u8>,
}

impl Rollout {
    /// `extra`: `--flag value` pairs replacing the defaults here, or flags without a value.
    fn start(mesh: &Mesh, source: &[String], extra: &[&str]) -> Self {
        let mut options: Vec<(String, Option<String>)> = [
            ("--steps", "10,50,100"),
            ("--interval", "3s"),
            ("--progress", "1s"),
            ("--max-error-rate", "0.05"),
            // A bucket bound of Envoy's histograms: a healthy answer under 500 ms can never make a
            // p99 above it, however few the samples.
            ("--max-p99-ms", "500"),
            ("--min-requests", "20"),
            ("--no-data-timeout", "6s"),
            ("--max-hold", "15s"),
            ("--scrape-interval", "1s"),
            ("--timeout", "2s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
        let mut rest = extra.iter().peekable();
        while let Some(flag) = rest.next() {
            let value = rest
                .next_if(|v| !v.starts_with("--"))
                .map(|v| v.to_string());
            options.retain(|(k, _)| k != flag);
            options.push((flag.to_string(), value));
        }
        let mut argv: Vec<String> = ["mfctl", "--service", "reviews", "--canary", "v2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(mesh.ecds.display().to_string());
        for (k, v) in options {
            argv.push(k);
            argv.extend(v);
        }
        argv.extend(source.iter().cloned());
        let args = mesh_cli::rollout::parse_args(&argv).unwrap();
        let (out, err) = (Output::default(), Output::default());
        let (mut o, mut e) = (out.clone(), err.clone());
        let handle = std::thread::spawn(move || mesh_cli::rollout::run(&args, &mut o, &mut e));
        Self { out, err, handle }
    }

    /// Waits for the end; prints every line; returns the exit code and the decision lines.
    fn finish(self, name: &str) -> (u8, Vec<String>) {
        let code = self.handle.join().unwrap();
        let out = self.out.text();
        println!(
            "---- rollout {name}: exit {code} ----\n{out}---- progress ----\n{}",
            self.err.text()
        );
        (code, out.lines().map(str::to_owned).collect())
    }
}

fn prometheus_for(mesh: &Mesh) -> PrometheusServer {
    let p = PrometheusServer::start(&[mesh.envoy.admin_port()], Duration::from_secs(1)).unwrap();
    // Istio's series with the version label reach Prometheus (the stats_tags at work).
    p.wait_for_series(
        r#"istio_requests_total{reporter="destination",destination_service_name="reviews",destination_version="v1"}"#,
        DEADLINE,
    )
    .unwrap();
    p
}

fn prometheus_args(p: &PrometheusServer) -> Vec<String> {
    vec!["--prometheus".into(), p.url("")]
}

fn admin_args(mesh: &Mesh) -> Vec<String> {
    vec!["--envoy-admin".into(), mesh.envoy.admin_url("")]
}

/// The figure after `label` in a decision line: `"212 requests"` -> 212 for `" requests"`.
fn figure(line: &str, label: &str) -> f64 {
    let before = &line[..line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line}"))];
    let num = before.rsplit([' ', '(']).next().unwrap();
    num.parse()
        .unwrap_or_else(|_| panic!("{num:?} before {label:?} in {line}"))
}

/// The first line containing `what`.
fn line_with<'a>(lines: &'a [String], what: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?}: {lines:#?}"))
}

/// The last line containing `what` (a step's verdict after any holds).
fn last_line_with<'a>(lines: &'a [String], what: &str) -> &'a str {
    lines
        .iter()
        .rev()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?}: {lines:#?}"))
}

/// Checks a healthy promotion's lines: each step advanced on enough requests, no errors.
fn assert_promoted(mesh: &Mesh, code: u8, lines: &[String]) {
    assert_eq!(code, mesh_cli::rollout::PROMOTED, "{lines:#?}");
    for (step, to) in [
        ("step 1/3 (v2 10 %)", "-> 50 %"),
        ("step 2/3 (v2 50 %)", "-> 100 %"),
    ] {
        let l = last_line_with(lines, &format!("{step} after"));
        assert!(l.contains(": advance: ") && l.ends_with(to), "{l}");
        assert!(figure(l, " requests") >= 20.0, "{l}");
        assert_eq!(figure(l, " errors"), 0.0, "{l}");
        assert!(figure(l, " ms <= 500 ms") <= 500.0, "{l}");
        assert!(l.contains("guard not tripped"), "{l}");
    }
    assert!(line_with(lines, "step 3/3 (v2 100 %) after").contains(": promote: "));
    assert!(lines
        .last()
        .unwrap()
        .starts_with("promoted: v2 100 %, v1 0 % written to"));
    assert_eq!(mesh.weights().unwrap(), (0, 100));
    mesh.all_go_to("reviews-v2");
}

#[test]
fn prometheus_a_healthy_canary_is_promoted_through_every_step() {
    let mesh = Mesh::start("promote", Canary::Healthy, None).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let prom = prometheus_for(&mesh);
    let (code, lines) = Rollout::start(&mesh, &prometheus_args(&prom), &[]).finish("promote");
    assert!(
        lines[0].contains("figures from prometheus http://127.0.0.1:"),
        "{}",
        lines[0]
    );
    assert_promoted(&mesh, code, &lines);
}

#[test]
fn prometheus_a_canary_failing_at_step_2_is_rolled_back_to_stable() {
    let mesh = Mesh::start("failing", Canary::Healthy, None).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let prom = prometheus_for(&mesh);
    let rollout = Rollout::start(&mesh, &prometheus_args(&prom), &[]);
    rollout
        .out
        .wait_for("step 2/3 (v2 50 %): v2 50 %, v1 50 % written");
    mesh.v2.set_status(503);
    let (code, lines) = rollout.finish("failing");
    assert_eq!(code, mesh_cli::rollout::ROLLED_BACK, "{lines:#?}");
    assert!(last_line_with(&lines, "step 1/3 (v2 10 %) after").contains(": advance: "));
    let l = line_with(&lines, "step 2/3 (v2 50 %) after");
    assert!(
        l.contains(": rollback: error rate above the maximum: "),
        "{l}"
    );
    assert!(figure(l, " requests") >= 20.0, "{l}");
    // Answers of the healthy start of the step are in the window too: well above 5 % still.
    assert!(l.contains(" % > 5.00 %)"), "{l}");
    assert!(lines
        .last()
        .unwrap()
        .starts_with("rolled back at step 2 (v2 50 %): v2 0 %, v1 100 % written"));
    assert_eq!(mesh.weights().unwrap(), (100, 0));
    mesh.all_go_to("reviews-v1");
}

#[test]
fn prometheus_a_slow_canary_is_rolled_back_on_its_p99() {
    let mesh = Mesh::start("slow", Canary::Slow, None).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let prom = prometheus_for(&mesh);
    // Slow answers make fewer of them: judged on 10.
    let (code, lines) =
        Rollout::start(&mesh, &prometheus_args(&prom), &["--min-requests", "10"]).finish("slow");
    assert_eq!(code, mesh_cli::rollout::ROLLED_BACK, "{lines:#?}");
    let l = last_line_with(&lines, "step 1/3 (v2 10 %) after");
    assert!(
        l.contains(": rollback: p99 latency above the maximum: "),
        "{l}"
    );
    // 600 ms answers land in Envoy's (500, 1000] bucket.
    assert!(figure(l, " ms > 500 ms") > 500.0, "{l}");
    assert_eq!(figure(l, " errors"), 0.0, "{l}");
    assert_eq!(mesh.weights().unwrap(), (100, 0));
    mesh.all_go_to("reviews-v1");
}

#[test]
fn prometheus_stopped_mid_way_holds_then_rolls_back() {
    let mesh = Mesh::start("stopped", Canary::Healthy, None).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let mut prom = prometheus_for(&mesh);
    let rollout = Rollout::start(&mesh, &prometheus_args(&prom), &[]);
    rollout
        .out
        .wait_for("step 2/3 (v2 50 %): v2 50 %, v1 50 % written");
    prom.stop();
    let stopped = Instant::now();
    let (code, lines) = rollout.finish("stopped");
    assert_eq!(code, mesh_cli::rollout::ROLLED_BACK, "{lines:#?}");
    let hold = line_with(&lines, "step 2/3 (v2 50 %) after");
    assert!(
        hold.contains(": hold: no data for ")
            && hold.contains("prometheus unreachable (cannot connect)"),
        "{hold}"
    );
    let l = lines.iter().rev().nth(1).unwrap();
    assert!(
        l.contains(": rollback: no data for too long (prometheus unreachable"),
        "{l}"
    );
    // Never advanced on missing data.
    assert!(!lines.iter().any(|l| l.contains("step 3/3")), "{lines:#?}");
    // It waited for the no-data timeout (6 s) before rolling back.
    assert!(
        stopped.elapsed() >= Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(mesh.weights().unwrap(), (100, 0));
    mesh.all_go_to("reviews-v1");
}

#[test]
fn admin_endpoint_a_healthy_canary_is_promoted() {
    let mesh = Mesh::start("admin-promote", Canary::Healthy, None).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let (code, lines) = Rollout::start(&mesh, &admin_args(&mesh), &[]).finish("admin-promote");
    assert!(
        lines[0].contains("figures from envoy admin http://127.0.0.1:"),
        "{}",
        lines[0]
    );
    assert_promoted(&mesh, code, &lines);
}

#[test]
fn admin_endpoint_a_tripped_guard_rolls_back() {
    // The in-proxy guard stops v2 once half of 20 answers fail; the rollout's own error
    // threshold is out of the way (100 %), so only the guard's counter can roll it back.
    let guard = json!({"subset": "v2", "max_error_rate": 0.5, "min_requests": 20, "window_s": 30});
    let mesh = Mesh::start("admin-guard", Canary::Healthy, Some(guard)).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let rollout = Rollout::start(&mesh, &admin_args(&mesh), &["--max-error-rate", "1"]);
    rollout
        .out
        .wait_for("step 2/3 (v2 50 %): v2 50 %, v1 50 % written");
    mesh.v2.set_status(503);
    let (code, lines) = rollout.finish("admin-guard");
    assert!(lines[0].ends_with("guard counter watched"), "{}", lines[0]);
    assert_eq!(code, mesh_cli::rollout::ROLLED_BACK, "{lines:#?}");
    let l = line_with(&lines, "step 2/3 (v2 50 %) after");
    assert!(
        l.contains(": rollback: the in-proxy guard tripped: "),
        "{l}"
    );
    assert!(l.contains("guard tripped 1 time(s)"), "{l}");
    assert_eq!(
        mesh.envoy
            .stat("wasmcustom.canary.reviews.v2.rollbacks")
            .unwrap(),
        Some(1)
    );
    assert_eq!(mesh.weights().unwrap(), (100, 0));
    mesh.v2.set_status(200);
    mesh.all_go_to("reviews-v1");
}

#[test]
fn dry_run_decides_and_writes_nothing() {
    let mesh = Mesh::start("dry-run", Canary::Healthy, None).unwrap();
    let _traffic = Traffic::start(&mesh.envoy);
    let before = std::fs::read(&mesh.ecds).unwrap();
    let (code, lines) = Rollout::start(&mesh, &admin_args(&mesh), &["--dry-run", "--steps", "100"])
        .finish("dry-run");
    // With the weight never written, v2 gets no traffic: held, then rolled back.
    assert_eq!(code, mesh_cli::rollout::ROLLED_BACK, "{lines:#?}");
    assert!(
        lines[1].starts_with("step 1/1 (v2 100 %): v2 100 %, v1 0 % (dry run: ")
            && lines[1].ends_with(" not written)"),
        "{}",
        lines[1]
    );
    assert!(line_with(&lines, "step 1/1 (v2 100 %) after").contains(": hold: "));
    assert!(lines.last().unwrap().contains("(dry run: "), "{lines:#?}");
    assert_eq!(std::fs::read(&mesh.ecds).unwrap(), before);
}
