//! The report: tables, JSON and charts.

use super::scaling::Scaled;
use super::*;
use crate::floor::CallClass;

// === report ===

pub(super) struct Report<'a> {
    pub(super) configs: &'a [Config],
    pub(super) results: &'a [Vec<Round>],
    /// Per configuration, when counted.
    pub(super) instructions: &'a [Option<f64>],
    pub(super) sizes: &'a [(String, f64)],
    pub(super) settings: &'a Settings,
    /// Each profile's open-loop latency rate.
    pub(super) rates: &'a [(Profile, f64)],
    pub(super) pinned: bool,
    pub(super) quick: bool,
    pub(super) scaling: &'a [Scaled],
    pub(super) elapsed: Duration,
}

/// Median, min and max of `f` over rounds.
pub(super) fn stats(rounds: &[Round], f: impl Fn(&Round) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = rounds.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let med = match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0
        }
    };
    (
        med,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

/// One stacked bar of the attribution chart: a profile's suite, segment by segment.
pub(super) struct Attribution {
    pub(super) profile: Profile,
    pub(super) segments: Vec<(String, f64)>,
}

fn k(n: f64) -> String {
    format!("{:.1}k", n / 1000.0)
}

impl Report<'_> {
    fn at(&self, p: Profile, name: &str) -> Option<usize> {
        self.configs
            .iter()
            .position(|c| c.profile == p && c.name == name)
    }
    pub(super) fn median(&self, p: Profile, name: &str, f: impl Fn(&Round) -> f64) -> Option<f64> {
        let r = self.results.get(self.at(p, name)?)?;
        (!r.is_empty()).then(|| stats(r, f).0)
    }
    fn instr(&self, p: Profile, name: &str) -> Option<f64> {
        self.instructions.get(self.at(p, name)?).copied().flatten()
    }
    fn profiles(&self) -> Vec<Profile> {
        Profile::ALL
            .into_iter()
            .filter(|p| self.configs.iter().any(|c| c.profile == *p))
            .collect()
    }
    fn rate(&self, p: Profile) -> f64 {
        self.rates.iter().find(|r| r.0 == p).map_or(0.0, |r| r.1)
    }

    pub(super) fn json(&self) -> Json {
        let rows: Vec<Json> = self
            .configs
            .iter()
            .zip(self.results)
            .zip(self.instructions)
            .map(|((c, r), instructions)| {
                let m = |f: fn(&Round) -> f64| {
                    if r.is_empty() {
                        return Json::Null;
                    }
                    let (med, min, max) = stats(r, f);
                    json!({"median": med, "min": min, "max": max})
                };
                json!({
                    "profile": c.profile.name(), "name": c.name, "what": c.what,
                    "cpu_us_per_request": m(|r| r.cpu_us_per_req),
                    "saturation_rps": m(|r| r.rps),
                    "latency_p50_us": m(|r| r.p50_us),
                    "latency_p90_us": m(|r| r.p90_us),
                    "latency_p99_us": m(|r| r.p99_us),
                    "memory_allocated_mib": m(|r| r.memory_mib),
                    "instructions_per_request": instructions,
                    "rounds": r.len(),
                })
            })
            .collect();
        json!({
            "envoy": mesh_e2e::install::ENVOY_VERSION,
            "quick": self.quick,
            "rounds": self.settings.rounds,
            "seconds_per_run": self.settings.secs,
            "connections": self.settings.connections,
            "latency_rate_rps": self.rates.iter().map(|(p, r)| json!({"profile": p.name(), "rps": r})).collect::<Vec<_>>(),
            "pinned": self.pinned,
            "minutes": self.elapsed.as_secs_f64() / 60.0,
            "configs": rows,
            "module_sizes_kib": self.sizes.iter().map(|(n, k)| json!({"module": n, "kib": k})).collect::<Vec<_>>(),
            "attribution": self.attribution().iter().map(|a| json!({
                "profile": a.profile.name(),
                "segments": a.segments.iter().map(|(l, v)| json!({"part": l, "instructions": v})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "scaling": self.scaling.iter().map(|s| json!({
                "capability": s.capability, "entries": s.entries, "config_kib": s.config_kib,
                "instructions_per_request": s.instructions, "compile_ms": s.compile_ms,
                "envoy_ready_ms": s.ready_ms, "memory_allocated_mib": s.memory_mib,
            })).collect::<Vec<_>>(),
            "wasm_vm_memory": self.vm_memory().iter().map(|(p, n, vms, added, per)| json!({
                "profile": p.name(), "config": n, "vms": vms, "added_mib": added, "mib_per_vm": per,
            })).collect::<Vec<_>>(),
        })
    }

    /// Per configuration with Wasm filters: VMs, memory added over no filter, and per VM.
    /// Each Wasm filter of the bench has its own VM on the one worker and on the main thread.
    pub(super) fn vm_memory(&self) -> Vec<(Profile, &str, usize, f64, f64)> {
        self.configs
            .iter()
            .filter_map(|c| {
                let base = self.median(c.profile, "no-filter", |r| r.memory_mib)?;
                let wasm = c
                    .filters
                    .iter()
                    .filter(|f| {
                        f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm")
                    })
                    .count();
                let vms = wasm * 2;
                let added = self.median(c.profile, &c.name, |r| r.memory_mib)? - base;
                (vms > 0).then(|| (c.profile, c.name.as_str(), vms, added, added / vms as f64))
            })
            .collect()
    }

    /// Where the suite's instructions per request go, per profile: Envoy with no filter, the
    /// empty filter's callbacks, each class of host call (the steps of the suite's floor built
    /// up class by class) and our own code (the suite over its floor).
    pub(super) fn attribution(&self) -> Vec<Attribution> {
        self.profiles()
            .into_iter()
            .filter_map(|p| {
                let none = self.instr(p, "no-filter")?;
                let zero = self.instr(p, "suite-floor-0")?;
                let floor = self.instr(p, "suite-floor")?;
                let suite = self.instr(p, "suite")?;
                let script = self
                    .at(p, "suite-floor")
                    .and_then(|i| self.configs.get(i))
                    .and_then(|c| c.filters.iter().find_map(replay_script))?;
                let present: Vec<CallClass> = CallClass::ALL
                    .into_iter()
                    .filter(|c| {
                        script
                            .lines()
                            .any(|l| !l.starts_with('@') && CallClass::of(l) == *c)
                    })
                    .collect();
                let mut segments = vec![
                    ("Envoy itself (no filter)".to_owned(), none),
                    ("empty filter's callbacks".to_owned(), zero - none),
                ];
                let mut before = zero;
                for (i, class) in present.iter().enumerate() {
                    let step = if i + 1 == present.len() {
                        floor
                    } else {
                        self.instr(p, &format!("suite-floor+{}", class.slug()))?
                    };
                    segments.push((class.label().to_owned(), step - before));
                    before = step;
                }
                segments.push(("our code (suite over its floor)".to_owned(), suite - floor));
                Some(Attribution {
                    profile: p,
                    segments,
                })
            })
            .collect()
    }

    pub(super) fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# Benchmark report\n\n");
        md.push_str(&format!(
            "Envoy {} (V8), `--concurrency 1`{}; closed-loop `wrk -t1 -c{}` for {} s per run for CPU and saturation; open-loop `h2load --h1 -c4 --rps` at half each profile's no-filter saturation for latency ({}); {} round(s), configurations interleaved; medians with min..max. The whole run took {:.1} minutes.{}\n\n",
            mesh_e2e::install::ENVOY_VERSION,
            if self.pinned { ", pinned to CPU 0 with everything else on CPU 1" } else { " (not pinned: fewer than 2 CPUs)" },
            self.settings.connections,
            self.settings.secs,
            self.rates.iter().map(|(p, r)| format!("{}: {r:.0} req/s", p.name())).collect::<Vec<_>>().join(", "),
            self.settings.rounds,
            self.elapsed.as_secs_f64() / 60.0,
            if self.quick { " **Quick run: figures are indicative only.**" } else { "" },
        ));
        md.push_str("Profiles: **direct**, plain HTTP/1.1 to a direct-response route; **sidecar**, a client proxy on the load CPU originating mTLS with a SPIFFE client certificate and a mesh request's headers to the Envoy under test, which verifies it and proxies to an upstream over HTTP/1.1 keep-alive. Only the Envoy under test is measured. Added: over the profile's no-filter figure, as a percentage of it; x empty: added instructions over the empty filter's.\n");
        for p in self.profiles() {
            self.profile_markdown(p, &mut md);
        }
        self.global_markdown(&mut md);
        self.attribution_markdown(&mut md);
        self.scaling_markdown(&mut md);
        md.push_str("\n## Module sizes\n\n| module | KiB |\n|---|---|\n");
        for (n, k) in self.sizes {
            md.push_str(&format!("| {n} | {k:.1} |\n"));
        }
        md.push_str("\n## Wasm VM memory\n\nEnvoy's `server.memory_allocated` after the runs, over the profile's `no-filter`: what the Wasm VMs hold, one per filter on the worker and one on the main thread.\n\n| profile | configuration | VMs | added MiB | MiB per VM |\n|---|---|---|---|---|\n");
        for (p, n, vms, added, per) in self.vm_memory() {
            md.push_str(&format!(
                "| {} | {n} | {vms} | {added:.1} | {per:.2} |\n",
                p.name()
            ));
        }
        md.push_str("\n![CPU per request](cpu.svg)\n");
        md
    }

    fn profile_markdown(&self, p: Profile, md: &mut String) {
        let cpu_none = self.median(p, "no-filter", |r| r.cpu_us_per_req);
        let (i_none, i_empty) = (self.instr(p, "no-filter"), self.instr(p, "empty-wasm"));
        md.push_str(&format!(
            "\n## {} profile\n\n| configuration | CPU us/req | added CPU | instructions/req | added instructions | x empty | saturation req/s | p50 / p99 us at {:.0} req/s | memory MiB |\n|---|---|---|---|---|---|---|---|---|\n",
            p.name(),
            self.rate(p)
        ));
        for ((c, r), n) in self.configs.iter().zip(self.results).zip(self.instructions) {
            if c.profile != p {
                continue;
            }
            let timed = !r.is_empty();
            let cell = |f: fn(&Round) -> f64, prec: usize| {
                if !timed {
                    return "-".to_owned();
                }
                let (m, lo, hi) = stats(r, f);
                if r.len() == 1 {
                    format!("{m:.prec$}")
                } else {
                    format!("{m:.prec$} ({lo:.prec$}..{hi:.prec$})")
                }
            };
            let cpu_added = match (timed, cpu_none) {
                (true, Some(b)) if c.name != "no-filter" => {
                    let v = stats(r, |r| r.cpu_us_per_req).0 - b;
                    format!("{v:.2} us ({:+.0}%)", 100.0 * v / b.max(f64::EPSILON))
                }
                _ => "-".into(),
            };
            let (instr, added, x) = match (n, i_none) {
                (Some(n), Some(b)) if c.name != "no-filter" => (
                    k(*n),
                    format!("{} ({:+.0}%)", k(n - b), 100.0 * (n - b) / b),
                    i_empty
                        .filter(|e| *e > b)
                        .map_or("-".into(), |e| format!("{:.2}", (n - b) / (e - b))),
                ),
                (Some(n), _) => (k(*n), "-".into(), "-".into()),
                _ => ("-".into(), "-".into(), "-".into()),
            };
            let latency = if timed {
                format!(
                    "{:.0} / {:.0}",
                    stats(r, |r| r.p50_us).0,
                    stats(r, |r| r.p99_us).0
                )
            } else {
                "-".into()
            };
            md.push_str(&format!(
                "| {} — {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.what,
                cell(|r| r.cpu_us_per_req, 2),
                cpu_added,
                instr,
                added,
                x,
                cell(|r| r.rps, 0),
                latency,
                cell(|r| r.memory_mib, 1),
            ));
        }
        self.floors_markdown(p, md);
    }

    /// Each module beside its floor (`<module>-floor`): instructions and CPU added over no
    /// filter, and what the module's own code adds over the floor.
    fn floors_markdown(&self, p: Profile, md: &mut String) {
        let cpu = |name: &str| self.median(p, name, |r| r.cpu_us_per_req);
        let rows: Vec<String> = self
            .configs
            .iter()
            .filter(|c| c.profile == p)
            .filter_map(|c| {
                let module = c.name.strip_suffix("-floor")?;
                self.at(p, module)?;
                let calls = c.filters.iter().find_map(replay_calls).unwrap_or(0);
                let instructions = match (
                    self.instr(p, "no-filter"),
                    self.instr(p, module),
                    self.instr(p, &c.name),
                ) {
                    (Some(b), Some(m), Some(f)) if f > b => format!(
                        "{} | {} | {:.2} | {} ({:.0}%)",
                        k(f - b),
                        k(m - b),
                        (m - b) / (f - b),
                        k(m - f),
                        100.0 * (m - f) / (m - b).max(1.0)
                    ),
                    _ => "- | - | - | -".into(),
                };
                let us = match (cpu("no-filter"), cpu(module), cpu(&c.name)) {
                    (Some(b), Some(m), Some(f)) => format!("{:.2} | {:.2}", f - b, m - b),
                    _ => "- | -".into(),
                };
                Some(format!("| {module} | {calls} | {instructions} | {us} |\n"))
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        md.push_str(&format!("\n### Floors ({})\n\nEach module against its floor: the empty filter making the module's own host calls for this profile's request (recorded by running the module natively against `FakeHost`, replayed in Envoy with none of its logic, exporting the same callbacks). Instructions and CPU are added over no filter.\n\n| module | host calls | floor instructions | module instructions | module / floor | own code | floor CPU us | module CPU us |\n|---|---|---|---|---|---|---|---|\n", p.name()));
        for r in rows {
            md.push_str(&r);
        }
    }

    /// The global check against the same rule without it: added instructions and latency.
    fn global_markdown(&self, md: &mut String) {
        let mut rows = Vec::new();
        for p in self.profiles() {
            for (local, global) in [("ratelimit", "ratelimit-global"), ("suite", "suite-global")] {
                if self.at(p, global).is_none() || self.at(p, local).is_none() {
                    continue;
                }
                let instr = match (self.instr(p, local), self.instr(p, global)) {
                    (Some(l), Some(g)) => format!("{} | {} | {}", k(l), k(g), k(g - l)),
                    _ => "- | - | -".into(),
                };
                let lat = |n: &str| {
                    Some((
                        self.median(p, n, |r| r.p50_us)?,
                        self.median(p, n, |r| r.p99_us)?,
                    ))
                };
                let latency = match (lat(local), lat(global)) {
                    (Some((l50, l99)), Some((g50, g99))) => format!(
                        "{l50:.0} / {l99:.0} | {g50:.0} / {g99:.0} | {:+.0} / {:+.0}",
                        g50 - l50,
                        g99 - l99
                    ),
                    _ => "- | - | -".into(),
                };
                let cpu = match (
                    self.median(p, local, |r| r.cpu_us_per_req),
                    self.median(p, global, |r| r.cpu_us_per_req),
                ) {
                    (Some(l), Some(g)) => format!("{:+.2}", g - l),
                    _ => "-".into(),
                };
                rows.push(format!(
                    "| {} | {global} vs {local} | {instr} | {cpu} | {latency} |\n",
                    p.name()
                ));
            }
        }
        if rows.is_empty() {
            return;
        }
        md.push_str("\n## Global rate-limit check\n\nThe rate limit rule with a `global` block (a `ShouldRateLimit` call to the bench's always-OK gRPC service on the load CPU, over one HTTP/2 connection) against the same rule checked locally only. Instructions are the Envoy under test's (the service's own work is not in them); latency is the open-loop p50 / p99 in microseconds.\n\n| profile | configurations | local instructions | global instructions | added | added CPU us | local p50 / p99 | global p50 / p99 | added p50 / p99 |\n|---|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            md.push_str(&r);
        }
    }

    fn attribution_markdown(&self, md: &mut String) {
        let all = self.attribution();
        if all.is_empty() {
            return;
        }
        md.push_str("\n## Where the suite's instructions go\n\nPer request, from the suite's floor built up one class of host call at a time (`suite-floor-0` exports the suite's callbacks and makes no call; each step adds one class of the recorded calls; the last is the whole floor): each class's step is what those calls cost in Envoy.\n\n![Attribution of the suite's instructions](attribution.svg)\n\n| part |");
        for a in &all {
            md.push_str(&format!(" {} |", a.profile.name()));
        }
        md.push_str("\n|---|");
        for _ in &all {
            md.push_str("---|");
        }
        md.push('\n');
        let mut labels: Vec<&str> = Vec::new();
        for a in &all {
            for (l, _) in &a.segments {
                if !labels.contains(&l.as_str()) {
                    labels.push(l);
                }
            }
        }
        for l in labels {
            md.push_str(&format!("| {l} |"));
            for a in &all {
                let v = a.segments.iter().find(|s| s.0 == l).map(|s| s.1);
                md.push_str(&format!(" {} |", v.map_or("-".into(), k)));
            }
            md.push('\n');
        }
        md.push_str("| **suite, total** |");
        for a in &all {
            md.push_str(&format!(" {} |", k(a.segments.iter().map(|s| s.1).sum())));
        }
        md.push('\n');
    }

    fn scaling_markdown(&self, md: &mut String) {
        if self.scaling.is_empty() {
            return;
        }
        md.push_str("\n## Scaling with configuration size\n\nEach module alone in the sidecar profile with a generated configuration whose last entry is the one the request matches: instructions per request (callgrind), the configuration's compile time natively (`filter_suite::validate_capability`, median of 5, in xtask's unoptimized build, so an upper bound of the module's), the Envoy under test's start-to-ready time (both VMs compile it) and its `server.memory_allocated` after 2,000 requests.\n\n| module | entries | config KiB | instructions/req | compile ms (native, debug) | Envoy ready ms | memory MiB |\n|---|---|---|---|---|---|---|\n");
        for s in self.scaling {
            md.push_str(&format!(
                "| {} | {} {} | {:.0} | {} | {:.2} | {:.0} | {:.1} |\n",
                s.capability,
                s.entries,
                s.what,
                s.config_kib,
                k(s.instructions),
                s.compile_ms,
                s.ready_ms,
                s.memory_mib
            ));
        }
    }

    pub(super) fn chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let rows: Vec<(String, f64, f64, f64)> = self
            .configs
            .iter()
            .zip(self.results)
            .filter(|(_, r)| !r.is_empty())
            .map(|(c, r)| {
                let (m, lo, hi) = stats(r, |r| r.cpu_us_per_req);
                (c.id(), m, lo, hi)
            })
            .collect();
        let height = 60 + 24 * rows.len() as u32;
        let area = SVGBackend::new(path, (900, height)).into_drawing_area();
        area.fill(&WHITE)?;
        let max = rows.iter().map(|r| r.3).fold(1.0_f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                "Envoy CPU microseconds per request (median, min..max)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(200)
            .build_cartesian_2d(0.0..max, 0.0..rows.len() as f64)?;
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                labels.get(i).cloned().unwrap_or_default()
            })
            .x_desc("us per request")
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64;
            Rectangle::new([(0.0, y + 0.2), (r.1, y + 0.8)], BLUE.mix(0.6).filled())
        }))?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64 + 0.5;
            PathElement::new(vec![(r.2, y), (r.3, y)], BLACK.stroke_width(2))
        }))?;
        area.present()?;
        Ok(())
    }

    /// The attribution as stacked bars, one per profile (nothing written without counts).
    pub(super) fn attribution_chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let all = self.attribution();
        if all.is_empty() {
            return Ok(());
        }
        let palette = [
            RGBColor(150, 150, 150),
            RGBColor(90, 90, 200),
            RGBColor(230, 120, 40),
            RGBColor(40, 160, 90),
            RGBColor(200, 60, 60),
            RGBColor(150, 80, 180),
            RGBColor(120, 190, 220),
            RGBColor(200, 180, 40),
            RGBColor(30, 30, 30),
        ];
        let max = all
            .iter()
            .map(|a| a.segments.iter().map(|s| s.1.max(0.0)).sum::<f64>())
            .fold(1.0_f64, f64::max)
            / 1000.0
            // Room on the right for the legend.
            * 1.6;
        let area = SVGBackend::new(path, (960, 180 + 90 * all.len() as u32)).into_drawing_area();
        area.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                "Where the suite's instructions per request go (thousands)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..max, -0.5..all.len() as f64 - 0.5)?;
        let names: Vec<&str> = all.iter().map(|a| a.profile.name()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(all.len())
            .y_label_formatter(&|y| {
                names
                    .get(y.floor() as usize)
                    .map_or(String::new(), |n| (*n).to_owned())
            })
            .x_desc("thousand instructions per request")
            .draw()?;
        // One series per part (the same part across profiles), so the legend names each once.
        let mut labels: Vec<String> = Vec::new();
        for a in &all {
            for (l, _) in &a.segments {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
        }
        for (li, label) in labels.iter().enumerate() {
            let color = palette.get(li % palette.len()).copied().unwrap_or(BLACK);
            let bars: Vec<Rectangle<(f64, f64)>> = all
                .iter()
                .enumerate()
                .filter_map(|(row, a)| {
                    let i = a.segments.iter().position(|s| &s.0 == label)?;
                    let start: f64 = a.segments.iter().take(i).map(|s| s.1.max(0.0)).sum();
                    let width = a.segments.get(i)?.1.max(0.0);
                    let y = row as f64;
                    Some(Rectangle::new(
                        [
                            (start / 1000.0, y + 0.2),
                            ((start + width) / 1000.0, y + 0.8),
                        ],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        area.present()?;
        Ok(())
    }
}
