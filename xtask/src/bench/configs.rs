//! The configurations the bench compares, and the empty fixture that prices host calls.

use super::*;

pub(super) fn wasm_filter(name: &str, file: &Path, config: &str) -> Value {
    mesh_e2e::envoy::wasm_filter(name, file, config)
}

pub(super) fn module(name: &str) -> PathBuf {
    root().join("target/filters").join(format!("{name}.wasm"))
}

pub(super) fn configs(plugins: &Json, empty: &Path) -> anyhow::Result<Vec<Config>> {
    let cfg = |cap: &str| plugins.get(cap).map(Json::to_string).unwrap_or_default();
    let native: Vec<Value> = serde_yaml::from_str(&std::fs::read_to_string(
        root().join("envoy-config/bench/native-filters.yaml"),
    )?)?;
    let mut out = vec![
        Config {
            name: "no-filter".into(),
            what: "Envoy with only the router".into(),
            filters: vec![],
        },
        Config {
            name: "native".into(),
            what: "native local_ratelimit + rbac".into(),
            filters: native,
        },
        Config {
            name: "empty-wasm".into(),
            what: "a proxy-wasm filter that does nothing (the floor)".into(),
            filters: vec![wasm_filter("empty", empty, "")],
        },
        Config {
            name: "empty-wasm-trimmed".into(),
            what: "the empty filter exporting only the request-headers callback".into(),
            filters: vec![wasm_filter("empty", &empty_exporting(empty, 1)?, "")],
        },
    ];
    // The empty filter with a fixed amount of host work (its configuration), to price it.
    let priced: [(&str, &str, &str); 5] = [
        (
            "empty-wasm-10-calls",
            "the empty filter reading :path 10 times (cost of a host call)",
            "10",
        ),
        (
            "empty-wasm-map-read",
            "the empty filter reading the whole request header map once",
            "map",
        ),
        (
            "empty-wasm-5-props",
            "the empty filter reading 5 request attributes one by one",
            "props",
        ),
        (
            "empty-wasm-5-counters",
            "the empty filter incrementing a counter 5 times",
            "counter",
        ),
        (
            "empty-wasm-5-props-batched",
            "the empty filter reading the same 5 attributes in one CEL evaluation",
            "batch",
        ),
    ];
    for (name, what, config) in priced {
        out.push(Config {
            name: name.into(),
            what: what.into(),
            filters: vec![wasm_filter("empty", empty, config)],
        });
    }
    for cap in capabilities() {
        if module(cap).exists() {
            out.push(Config {
                name: cap.into(),
                what: format!("our {cap} module alone"),
                filters: vec![wasm_filter(cap, &module(cap), &cfg(cap))],
            });
            out.push(floor(cap, &cfg(cap), empty)?);
        }
    }
    if capabilities().all(|c| module(c).exists()) {
        out.push(Config {
            name: "four-modules".into(),
            what: "our four modules chained".into(),
            filters: capabilities()
                .map(|c| wasm_filter(c, &module(c), &cfg(c)))
                .collect(),
        });
    }
    if module("suite").exists() {
        let suite =
            |config: &Json| vec![wasm_filter("suite", &module("suite"), &config.to_string())];
        out.push(Config {
            name: "suite".into(),
            what: "the suite module running all four".into(),
            filters: suite(plugins),
        });
        out.push(floor("suite", &plugins.to_string(), empty)?);
        // The same without the two per-request extras a deployment may not need: the JSON
        // access log line and the verdicts copied to Envoy filter state.
        let mut lean = plugins.clone();
        if let Some(all) = lean.as_object_mut() {
            all.insert("export_decisions".into(), Json::Bool(false));
            if let Some(t) = all.get_mut("telemetry").and_then(Json::as_object_mut) {
                t.insert("access_log".into(), json!({"enabled": false}));
            }
        }
        out.push(Config {
            name: "suite-lean".into(),
            what: "the suite without access log lines or filter-state verdicts".into(),
            filters: suite(&lean),
        });
    }
    Ok(out)
}

/// The empty filter replaying module `name`'s host calls for a bench request (recorded
/// natively with `config`), exporting the callbacks that module exports: its floor.
pub(super) fn floor(name: &str, config: &str, empty: &Path) -> anyhow::Result<Config> {
    let replay = crate::floor::replay(name, config)?;
    let module = empty_exporting(empty, replay.callbacks)?;
    let calls = crate::floor::calls_in(&replay.script);
    Ok(Config {
        name: format!("{name}-floor"),
        what: format!(
            "the empty filter making {name}'s {calls} host calls with none of its logic (its floor)"
        ),
        filters: vec![wasm_filter("empty", &module, &replay.script)],
    })
}

/// The empty filter exporting only the callbacks `bits` names (as `sdk_shim::Callbacks`), as
/// `cargo xtask build` trims our modules.
pub(super) fn empty_exporting(empty: &Path, bits: u8) -> anyhow::Result<PathBuf> {
    let module = empty.with_file_name(format!("empty-callbacks-{bits}.wasm"));
    crate::build::drop_unused_callbacks(empty, &module, Some(bits))?;
    Ok(module)
}

/// The number of host calls in the replay script inside a floor configuration's filter.
pub(super) fn replay_calls(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) if s.starts_with("@request_headers") => Some(crate::floor::calls_in(s)),
        Value::Mapping(m) => m.values().find_map(replay_calls),
        Value::Sequence(s) => s.iter().find_map(replay_calls),
        _ => None,
    }
}

pub(super) fn build_empty_fixture() -> anyhow::Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "--target",
        crate::build::WASM_TARGET,
        "-p",
        "bench-empty-filter",
    ]))?;
    let built = root()
        .join("target")
        .join(crate::build::WASM_TARGET)
        .join("release/bench_empty_filter.wasm");
    let dest = root().join("target/bench/empty.wasm");
    std::fs::create_dir_all(root().join("target/bench"))?;
    std::fs::copy(&built, &dest)?;
    Ok(dest)
}

/// One worker answering with a direct response behind `c`'s filters.
pub(super) fn bench_envoy(c: &Config) -> EnvoyBuilder {
    let filters = c.filters.clone();
    Envoy::builder("envoy-config/bench/base.yaml")
        .concurrency(1)
        .log_level("warn")
        .edit(move |doc| {
            if let Some(chain) = mesh_e2e::envoy::http_filters_mut(doc) {
                for (i, f) in filters.into_iter().enumerate() {
                    chain.insert(i, f);
                }
            }
        })
}
