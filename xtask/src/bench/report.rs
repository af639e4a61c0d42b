//! The report: table, JSON and chart.

use super::*;

// === report ===

pub(super) struct Report<'a> {
    pub(super) configs: &'a [Config],
    pub(super) results: &'a [Vec<Round>],
    /// Per configuration, when counted.
    pub(super) instructions: &'a [Option<f64>],
    pub(super) sizes: &'a [(String, f64)],
    pub(super) settings: &'a Settings,
    pub(super) rate: f64,
    pub(super) pinned: bool,
    pub(super) quick: bool,
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

impl Report<'_> {
    pub(super) fn median(&self, name: &str, f: impl Fn(&Round) -> f64) -> Option<f64> {
        let i = self.configs.iter().position(|c| c.name == name)?;
        Some(stats(self.results.get(i)?, f).0)
    }

    pub(super) fn json(&self) -> Json {
        let rows: Vec<Json> = self
            .configs
            .iter()
            .zip(self.results)
            .zip(self.instructions)
            .map(|((c, r), instructions)| {
                let m = |f: fn(&Round) -> f64| {
                    let (med, min, max) = stats(r, f);
                    json!({"median": med, "min": min, "max": max})
                };
                json!({
                    "name": c.name, "what": c.what,
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
            "latency_rate_rps": self.rate,
            "pinned": self.pinned,
            "configs": rows,
            "module_sizes_kib": self.sizes.iter().map(|(n, k)| json!({"module": n, "kib": k})).collect::<Vec<_>>(),
            "ratios": self.ratios(),
            "wasm_vm_memory": self.vm_memory().iter().map(|(n, vms, added, per)| json!({
                "config": n, "vms": vms, "added_mib": added, "mib_per_vm": per,
            })).collect::<Vec<_>>(),
        })
    }

    /// Per configuration with Wasm filters: VMs, memory added over no filter, and per VM.
    /// Each Wasm filter of the bench has its own VM on the one worker and on the main thread.
    pub(super) fn vm_memory(&self) -> Vec<(&str, usize, f64, f64)> {
        let Some(base) = self.median("no-filter", |r| r.memory_mib) else {
            return Vec::new();
        };
        self.configs
            .iter()
            .filter_map(|c| {
                let wasm = c
                    .filters
                    .iter()
                    .filter(|f| {
                        f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm")
                    })
                    .count();
                let vms = wasm * 2;
                let added = self.median(&c.name, |r| r.memory_mib)? - base;
                (vms > 0).then(|| (c.name.as_str(), vms, added, added / vms as f64))
            })
            .collect()
    }

    /// Added CPU over the no-filter baseline, relative to the empty filter's added CPU.
    pub(super) fn ratios(&self) -> Json {
        let cpu = |n: &str| self.median(n, |r| r.cpu_us_per_req);
        let (Some(none), Some(empty)) = (cpu("no-filter"), cpu("empty-wasm")) else {
            return Json::Null;
        };
        let floor = (empty - none).max(f64::EPSILON);
        let mut out = serde_json::Map::new();
        for c in self.configs.iter().skip(1) {
            if let Some(v) = cpu(&c.name) {
                out.insert(
                    format!("{}_added_vs_empty", c.name),
                    json!((v - none) / floor),
                );
            }
        }
        let rps = |n: &str| self.median(n, |r| r.rps);
        if let (Some(base), Some(suite)) = (rps("no-filter"), rps("suite")) {
            out.insert("suite_throughput_vs_no_filter".into(), json!(suite / base));
        }
        Json::Object(out)
    }

    pub(super) fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# Benchmark report\n\n");
        md.push_str(&format!(
            "Envoy {} (V8), `--concurrency 1`{}; direct-response route; closed-loop `wrk -t1 -c{}` for {} s per run for CPU and saturation; open-loop `h2load --h1 -c4 --rps` at {:.0} req/s (half the no-filter saturation) for latency; {} round(s), configurations interleaved; medians with min..max.{}\n\n",
            mesh_e2e::install::ENVOY_VERSION,
            if self.pinned { ", pinned to CPU 0 with the load generator on CPU 1" } else { " (not pinned: fewer than 2 CPUs)" },
            self.settings.connections,
            self.settings.secs,
            self.rate,
            self.settings.rounds,
            if self.quick { " **Quick run: figures are indicative only.**" } else { "" },
        ));
        md.push_str("| configuration | Envoy CPU us/request | saturation req/s | p50 us | p90 us | p99 us | memory MiB |\n|---|---|---|---|---|---|---|\n");
        for (c, r) in self.configs.iter().zip(self.results) {
            let cell = |f: fn(&Round) -> f64, prec: usize| {
                let (m, lo, hi) = stats(r, f);
                format!("{m:.prec$} ({lo:.prec$}..{hi:.prec$})")
            };
            md.push_str(&format!(
                "| {} — {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                c.what,
                cell(|r| r.cpu_us_per_req, 2),
                cell(|r| r.rps, 0),
                cell(|r| r.p50_us, 0),
                cell(|r| r.p90_us, 0),
                cell(|r| r.p99_us, 0),
                cell(|r| r.memory_mib, 1),
            ));
        }
        md.push_str("\n## Ratios\n\nAdded CPU per request over no filter, divided by the empty filter's added CPU (target: each module <= 1.25, the suite <= 1.5):\n\n");
        if let Json::Object(m) = self.ratios() {
            for (k, v) in m {
                md.push_str(&format!("- `{k}`: {:.2}\n", v.as_f64().unwrap_or(0.0)));
            }
        }
        if self.instructions.iter().any(Option::is_some) {
            md.push_str(&format!("\n## Instructions per request\n\nEnvoy's instructions per request under callgrind ({INSTRUCTION_REQUESTS} requests one at a time after as many to warm up): a count that repeats to within a fraction of a percent, where CPU time moves with the machine's load. Added: over no filter; ratio: added over the empty filter's added.\n\n| configuration | instructions/request | added | ratio to empty |\n|---|---|---|---|\n"));
            let of = |name: &str| {
                let i = self.configs.iter().position(|c| c.name == name)?;
                self.instructions.get(i).copied().flatten()
            };
            let (base, empty) = (of("no-filter"), of("empty-wasm"));
            for (c, n) in self.configs.iter().zip(self.instructions) {
                let Some(n) = n else { continue };
                let added = base.map(|b| n - b);
                let ratio = match (added, base.zip(empty).map(|(b, e)| e - b)) {
                    (Some(a), Some(e)) if e > 0.0 => format!("{:.2}", a / e),
                    _ => "-".into(),
                };
                md.push_str(&format!(
                    "| {} | {:.0} | {} | {} |\n",
                    c.name,
                    n,
                    added.map_or("-".into(), |a| format!("{a:.0}")),
                    ratio
                ));
            }
        }
        self.floors_markdown(&mut md);
        md.push_str("\n## Module sizes\n\n| module | KiB |\n|---|---|\n");
        for (n, k) in self.sizes {
            md.push_str(&format!("| {n} | {k:.1} |\n"));
        }
        md.push_str("\n## Wasm VM memory\n\nEnvoy's `server.memory_allocated` after the runs, over `no-filter`'s: what the Wasm VMs hold, one per filter on the worker and one on the main thread.\n\n| configuration | VMs | added MiB | MiB per VM |\n|---|---|---|---|\n");
        for (n, vms, added, per) in self.vm_memory() {
            md.push_str(&format!("| {n} | {vms} | {added:.1} | {per:.2} |\n"));
        }
        md.push_str("\n![CPU per request](cpu.svg)\n");
        md
    }

    /// Each module beside its floor (`<module>-floor`): instructions and CPU added over no
    /// filter, and what the module's own code adds over the floor.
    pub(super) fn floors_markdown(&self, md: &mut String) {
        let at = |name: &str| self.configs.iter().position(|c| c.name == name);
        let instr = |i: usize| self.instructions.get(i).copied().flatten();
        let cpu = |i: usize| {
            self.results
                .get(i)
                .map(|r| stats(r, |r| r.cpu_us_per_req).0)
        };
        let Some(base) = at("no-filter") else { return };
        let rows: Vec<String> = self
            .configs
            .iter()
            .filter_map(|c| {
                let module = c.name.strip_suffix("-floor")?;
                let (m, f) = (at(module)?, at(&c.name)?);
                let calls = c.filters.iter().find_map(replay_calls).unwrap_or(0);
                let instructions = match (instr(base), instr(m), instr(f)) {
                    (Some(b), Some(m), Some(f)) if f > b => format!(
                        "{:.0} | {:.0} | {:.2} | {:.0} ({:.0}%)",
                        f - b,
                        m - b,
                        (m - b) / (f - b),
                        m - f,
                        100.0 * (m - f) / (m - b).max(1.0)
                    ),
                    _ => "- | - | - | -".into(),
                };
                let us = match (cpu(base), cpu(m), cpu(f)) {
                    (Some(b), Some(m), Some(f)) => format!("{:.2} | {:.2}", f - b, m - b),
                    _ => "- | -".into(),
                };
                Some(format!("| {module} | {calls} | {instructions} | {us} |\n"))
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        md.push_str("\n## Floors\n\nEach module against its floor: the empty filter making the module's own host calls for this request (recorded by running the module natively against `FakeHost`, replayed in Envoy with none of its logic, exporting the same callbacks). The floor is what the host charges for the data the work needs; the rest is our code. Instructions and CPU are added over no filter.\n\n| module | host calls | floor instructions | module instructions | module / floor | own code | floor CPU us | module CPU us |\n|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            md.push_str(&r);
        }
    }

    pub(super) fn chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let rows: Vec<(String, f64, f64, f64)> = self
            .configs
            .iter()
            .zip(self.results)
            .map(|(c, r)| {
                let (m, lo, hi) = stats(r, |r| r.cpu_us_per_req);
                (c.name.clone(), m, lo, hi)
            })
            .collect();
        let height = 60 + 36 * rows.len() as u32;
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
            .y_label_area_size(130)
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
}
