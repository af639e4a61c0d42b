//! `mfctl rollout`: steps a canary's weight up while the mesh's own metrics (Istio's
//! `istio_requests_total` and `istio_request_duration_milliseconds` of the canary subset, and
//! the canary filter's guard counter) stay healthy, promotes it at the end, and rolls back on
//! its own when they do not. The figures come from a Prometheus server or straight from
//! Envoys' admin endpoints; each weight goes into the ECDS file (validated, atomic rename) or
//! is printed as a WasmPlugin / EnvoyExtensionPolicy.
//!
//! The decisions are [`engine`]'s, a pure function of the figures and the time; this module
//! only reads, sleeps, writes and prints.

pub mod admin;
pub mod engine;
pub mod promql;
pub mod source;
pub mod target;

use engine::{Decision, Engine, Figures, HoldReason, Observation, Policy, Verdict};
use source::{Selector, Source};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use target::{Output, Target};

/// Exit code: promoted.
pub const PROMOTED: u8 = 0;
/// Exit code: rolled back.
pub const ROLLED_BACK: u8 = 1;
/// Exit code: unusable input, or a weight that could not be written.
pub const UNUSABLE: u8 = 2;

/// `mfctl rollout` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The ECDS file holding the canary (or suite) filter; with `--output wasmplugin` or
    /// `envoyextensionpolicy`, that resource's YAML, printed with each new weight.
    pub target: PathBuf,
    /// The service: the `host` of the canary configuration's service entry.
    #[arg(long)]
    pub service: String,
    /// The subset being rolled out.
    #[arg(long)]
    pub canary: String,
    /// The subset that takes the rest (default: the service's only other subset).
    #[arg(long)]
    pub stable: Option<String>,
    /// The canary's weight at each step, in percent.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100")]
    pub steps: Vec<u32>,
    /// Time each step runs before it is judged (`30s`, `5m`).
    #[arg(long, value_parser = parse_duration, default_value = "1m")]
    pub interval: Duration,
    /// Largest error rate (5xx / requests) that still advances, 0 to 1.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Largest p99 latency that still advances, in ms.
    #[arg(long, default_value_t = 500.0)]
    pub max_p99_ms: f64,
    /// Canary requests a step needs before it is judged (fewer: hold).
    #[arg(long, default_value_t = 100)]
    pub min_requests: u64,
    /// Roll back after this long without any figures (source unreachable).
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    pub no_data_timeout: Duration,
    /// Roll back when a step is held this long (default: five intervals).
    #[arg(long, value_parser = parse_duration)]
    pub max_hold: Option<Duration>,
    /// Time between progress lines while a step runs.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub progress: Duration,
    /// Prometheus server to query (`http://prometheus:9090`).
    #[arg(
        long,
        required_unless_present = "envoy_admin",
        conflicts_with = "envoy_admin"
    )]
    pub prometheus: Option<String>,
    /// Envoy admin endpoint(s) to read instead (`http://127.0.0.1:15000`); repeat for several.
    #[arg(long)]
    pub envoy_admin: Vec<String>,
    /// Prometheus's scrape interval: no query window is shorter than two of them.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub scrape_interval: Duration,
    /// Timeout of each metrics request.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// `reporter` label value of the series read (empty: any).
    #[arg(long, default_value = "destination")]
    pub reporter: String,
    /// Label naming the service in the metrics.
    #[arg(long, default_value = "destination_service_name")]
    pub service_label: String,
    /// Value of `--service-label` (default: the service's host).
    #[arg(long)]
    pub metrics_service: Option<String>,
    /// Label naming the subset's version in the metrics.
    #[arg(long, default_value = "destination_version")]
    pub version_label: String,
    /// Value of `--version-label` for the canary (default: the canary subset's name).
    #[arg(long)]
    pub canary_version: Option<String>,
    /// The resource to change when the target holds several canary filters.
    #[arg(long)]
    pub resource: Option<String>,
    /// What TARGET is and what a step does with it.
    #[arg(long, value_enum, default_value_t = Output::Ecds)]
    pub output: Output,
    /// Decide and print, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `mfctl rollout`'s arguments from an argument list whose first item is the program name,
/// for callers that run rollouts in-process (tests, the demo).
pub fn parse_args<I, T>(argv: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }
    <Wrapper as clap::Parser>::try_parse_from(argv).map(|w| w.args)
}

/// Parses `500ms`, `30s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit (500ms, 30s, 5m, 1h)"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too long"))
}

/// A duration as a person reads it: `750ms`, `30s`, `2m30s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

fn pct(rate: f64) -> String {
    format!("{:.2} %", rate * 100.0)
}

fn count(n: f64) -> String {
    if (n - n.round()).abs() < 0.05 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// The figures of a decision, each with the threshold it was held against.
pub fn figures_text(f: &Figures, p: &Policy) -> String {
    let rate = f.error_rate();
    let p99 = match f.p99_ms {
        Some(v) if v > p.max_p99_ms => format!("p99 {v:.1} ms > {} ms", p.max_p99_ms),
        Some(v) if v.is_finite() => format!("p99 {v:.1} ms <= {} ms", p.max_p99_ms),
        _ => "no p99".to_owned(),
    };
    let guard = if f.guard_trips > 0.0 {
        format!("guard tripped {} time(s)", count(f.guard_trips))
    } else {
        "guard not tripped".to_owned()
    };
    format!(
        "{} requests{}, {} errors ({} {} {}), {p99}, {guard}",
        count(f.requests),
        if f.requests < p.min_requests as f64 {
            format!(" < {}", p.min_requests)
        } else {
            String::new()
        },
        count(f.errors),
        pct(rate),
        if rate > p.max_error_rate { ">" } else { "<=" },
        pct(p.max_error_rate),
    )
}

/// A rollout being run.
struct Run<'a> {
    target: Target,
    canary: String,
    dry_run: bool,
    /// Decision lines (ECDS) or rendered resources (`--output wasmplugin`).
    out: &'a mut dyn Write,
    /// Progress lines, and the decision lines when resources go to `out`.
    err: &'a mut dyn Write,
}

impl Run<'_> {
    fn step_name(&self, engine: &Engine, step: usize) -> String {
        format!(
            "step {}/{} ({} {} %)",
            step + 1,
            engine.policy().steps.len(),
            self.canary,
            engine.policy().steps.get(step).copied().unwrap_or(0)
        )
    }

    /// Puts the canary at `weight`: writes the ECDS file or prints the resource.
    fn apply(&mut self, weight: u32) -> Result<String, String> {
        let text = self.target.render(weight)?;
        let split = format!(
            "{} {weight} %, {} {} %",
            self.canary,
            self.target.stable(),
            100u32.saturating_sub(weight)
        );
        let shown = self.target.path().display();
        if self.target.output() != Output::Ecds {
            let _ = writeln!(self.out, "---\n{}", text.trim_end());
            let _ = self.out.flush();
            Ok(format!("{split} (resource printed)"))
        } else if self.dry_run {
            Ok(format!("{split} (dry run: {shown} not written)"))
        } else {
            self.target.write(&text)?;
            Ok(format!("{split} written to {shown}"))
        }
    }

    fn line(&mut self, text: &str) {
        let w: &mut dyn Write = if self.target.output() == Output::Ecds {
            &mut *self.out
        } else {
            &mut *self.err
        };
        let _ = writeln!(w, "{text}");
        let _ = w.flush();
    }

    fn progress(&mut self, text: &str) {
        let _ = writeln!(self.err, "{text}");
        let _ = self.err.flush();
    }
}

/// The decision line of a judged step.
fn decision_line(name: &str, d: &Decision, p: &Policy, no_data_timeout: Duration) -> String {
    let figures = d
        .figures
        .as_ref()
        .map(|f| figures_text(f, p))
        .unwrap_or_default();
    let after = human(d.in_step);
    match &d.verdict {
        Verdict::Wait => format!("{name} after {after}: waiting: {figures}"),
        Verdict::Hold(HoldReason::NoData(why)) => format!(
            "{name} after {after}: hold: no data for {} of {} ({why})",
            human(d.without_data),
            human(no_data_timeout)
        ),
        Verdict::Hold(why) => format!(
            "{name} after {after}: hold: {why}: {figures}; held {after} of {}",
            human(p.max_hold)
        ),
        Verdict::Advance(w) => format!("{name} after {after}: advance: {figures} -> {w} %"),
        Verdict::Promote => format!("{name} after {after}: promote: {figures} -> 100 %"),
        Verdict::Rollback(why) if figures.is_empty() => {
            format!("{name} after {after}: rollback: {why} -> 0 %")
        }
        Verdict::Rollback(why) => {
            format!("{name} after {after}: rollback: {why}: {figures} -> 0 %")
        }
    }
}

/// Builds the policy from the arguments.
pub fn policy(args: &Args) -> Policy {
    Policy {
        steps: args.steps.clone(),
        interval: args.interval,
        max_error_rate: args.max_error_rate,
        max_p99_ms: args.max_p99_ms,
        min_requests: args.min_requests,
        no_data_timeout: args.no_data_timeout,
        max_hold: args.max_hold.unwrap_or(args.interval * 5),
    }
}

/// Runs a rollout: decision lines to `out`, progress lines to `err` (with `--output
/// wasmplugin` the resources go to `out` and every line to `err`). Returns the exit code.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let fail = |err: &mut dyn Write, e: String| {
        let _ = writeln!(err, "mfctl: {e}");
        UNUSABLE
    };
    let policy = policy(args);
    if let Err(e) = policy.validate() {
        return fail(err, e.to_string());
    }
    let target = match Target::load(
        &args.target,
        args.output,
        args.resource.as_deref(),
        &args.service,
        &args.canary,
        args.stable.as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => return fail(err, e),
    };
    let info = match target.service_info() {
        Ok(i) => i,
        Err(e) => return fail(err, e),
    };
    let mut selector = Selector::istio(
        Some(&args.reporter),
        &args.service_label,
        args.metrics_service.as_deref().unwrap_or(&args.service),
        &args.version_label,
        args.canary_version.as_deref().unwrap_or(&args.canary),
    );
    if info.guarded {
        selector.guard = Some(source::guard_metric(&info.stat_label, &args.canary));
    }
    let mut source: Box<dyn Source> = match &args.prometheus {
        Some(url) => {
            match promql::Prometheus::new(url, selector, args.scrape_interval, args.timeout) {
                Ok(s) => Box::new(s),
                Err(e) => return fail(err, e),
            }
        }
        None => match admin::Admin::new(&args.envoy_admin, selector, args.timeout) {
            Ok(s) => Box::new(s),
            Err(e) => return fail(err, e),
        },
    };
    let header = format!(
        "rollout {}: canary {} (now {} %), stable {}, steps {} %, judged every {}; advance while errors <= {}, p99 <= {} ms, >= {} requests a step; figures from {}{}",
        args.service,
        args.canary,
        info.weights.0,
        target.stable(),
        policy
            .steps
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        human(policy.interval),
        pct(policy.max_error_rate),
        policy.max_p99_ms,
        policy.min_requests,
        source.describe(),
        if info.guarded {
            ", guard counter watched"
        } else {
            ", no guard on the canary"
        },
    );
    let mut run = Run {
        canary: args.canary.clone(),
        target,
        dry_run: args.dry_run,
        out,
        err,
    };
    run.line(&header);
    drive(
        &mut run,
        policy,
        source.as_mut(),
        args.progress,
        args.no_data_timeout,
    )
}

/// The rollout loop: apply a weight, read and judge until the engine says it is over. Every
/// step ends (advance or roll back) within `max_hold` (no figures: `no_data_timeout`), so the
/// loop is bounded; a deadline from those bounds guards it anyway.
fn drive(
    run: &mut Run<'_>,
    policy: Policy,
    source: &mut dyn Source,
    progress: Duration,
    no_data_timeout: Duration,
) -> u8 {
    let longest = (policy.max_hold + policy.interval + no_data_timeout)
        .saturating_mul(u32::try_from(policy.steps.len()).unwrap_or(u32::MAX))
        + progress;
    let t0 = Instant::now();
    let mut engine = match Engine::new(policy, Duration::ZERO) {
        Ok(e) => e,
        Err(e) => {
            run.progress(&format!("mfctl: {e}"));
            return UNUSABLE;
        }
    };
    let first = engine.weight();
    match run.apply(first) {
        Ok(what) => {
            let name = run.step_name(&engine, 0);
            run.line(&format!("{name}: {what}"));
        }
        Err(e) => {
            run.progress(&format!("mfctl: {e}"));
            return UNUSABLE;
        }
    }
    source.start_step();
    loop {
        let now = t0.elapsed();
        let wake = engine.next_judgement().min(now + progress);
        std::thread::sleep(wake.saturating_sub(now).max(Duration::from_millis(1)));
        let obs = match source.read() {
            Ok(f) => Observation::Seen(f),
            Err(e) => Observation::Missing(e),
        };
        let now = t0.elapsed();
        let mut d = engine.observe(now, &obs);
        if now > longest && !d.verdict.is_final() {
            d.verdict = Verdict::Rollback(engine::RollbackReason::HeldTooLong(HoldReason::NoData(
                "the rollout outlived its longest possible run".into(),
            )));
        }
        let name = run.step_name(&engine, d.step);
        let line = decision_line(&name, &d, engine.policy(), no_data_timeout);
        match &d.verdict {
            Verdict::Wait => {
                let of = human(engine.policy().interval);
                let seen = match &obs {
                    Observation::Seen(f) => figures_text(f, engine.policy()),
                    Observation::Missing(why) => format!("no data ({why})"),
                };
                run.progress(&format!(
                    "  ... {name} {} of {of}: {seen}",
                    human(d.in_step)
                ));
            }
            Verdict::Hold(_) => run.line(&line),
            Verdict::Advance(w) => {
                run.line(&line);
                let w = *w;
                match run.apply(w) {
                    Ok(what) => {
                        let name = run.step_name(&engine, engine.step());
                        run.line(&format!("{name}: {what}"));
                        source.start_step();
                    }
                    Err(e) => {
                        run.progress(&format!("mfctl: {e}"));
                        return finish_rollback(run, &d, "the next weight could not be applied");
                    }
                }
            }
            Verdict::Promote => {
                run.line(&line);
                return match run.apply(100) {
                    Ok(what) => {
                        run.line(&format!("promoted: {what}"));
                        PROMOTED
                    }
                    Err(e) => {
                        run.progress(&format!("mfctl: cannot promote: {e}"));
                        UNUSABLE
                    }
                };
            }
            Verdict::Rollback(why) => {
                run.line(&line);
                let why = why.to_string();
                return finish_rollback(run, &d, &why);
            }
        }
    }
}

/// Puts the canary at 0 and says so.
fn finish_rollback(run: &mut Run<'_>, d: &Decision, why: &str) -> u8 {
    match run.apply(0) {
        Ok(what) => {
            run.line(&format!(
                "rolled back at step {} ({} {} %): {what}; {why}",
                d.step + 1,
                run.canary,
                d.weight
            ));
            ROLLED_BACK
        }
        Err(e) => {
            run.progress(&format!("mfctl: cannot roll back: {e}"));
            UNUSABLE
        }
    }
}

#[cfg(test)]
mod tests;
