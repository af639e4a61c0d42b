//! The configurations the bench compares, the empty fixture that prices host calls, and the
//! processes around the Envoy under test.

use super::*;
use crate::floor::CallClass;
use mesh_e2e::rls_ok::RlsOk;

pub(super) fn wasm_filter(name: &str, file: &Path, config: &str) -> Value {
    mesh_e2e::envoy::wasm_filter(name, file, config)
}

pub(super) fn module(name: &str) -> PathBuf {
    root().join("target/filters").join(format!("{name}.wasm"))
}

/// The bench's rule with a `global` block: after the local bucket admits, a check with the
/// bench's always-OK service (a deadline long enough for a callgrind run).
pub(super) fn with_global(ratelimit: &Json) -> Json {
    let mut rl = ratelimit.clone();
    if let Some(rule) = rl
        .get_mut("rules")
        .and_then(Json::as_array_mut)
        .and_then(|r| r.first_mut())
        .and_then(Json::as_object_mut)
    {
        rule.insert(
            "global".into(),
            json!({"cluster": "rate_limit_service", "domain": "bench",
                   "timeout": "5s", "failure_mode": "deny"}),
        );
    }
    rl
}

/// Every configuration of `profile`; `attribution` adds the suite's floor split by host-call
/// class (instructions only).
pub(super) fn configs_of(
    profile: Profile,
    plugins: &Json,
    empty: &Path,
    attribution: bool,
) -> anyhow::Result<Vec<Config>> {
    let cfg = |cap: &str| plugins.get(cap).map(Json::to_string).unwrap_or_default();
    let natives: Value = serde_yaml::from_str(&std::fs::read_to_string(
        root().join("envoy-config/bench/native-filters.yaml"),
    )?)?;
    let native = natives
        .get(profile.name())
        .with_context(|| format!("native-filters.yaml has no {}", profile.name()))?;
    let native_filters: Vec<Value> = native
        .get("http_filters")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let direct = profile == Profile::Direct;
    let mut out = vec![
        Config::new(profile, "no-filter", "Envoy with only the router", vec![]),
        Config {
            routes: native.get("routes").cloned(),
            access_log: native.get("access_log").cloned(),
            ..Config::new(
                profile,
                "native",
                "native local_ratelimit + rbac (principal) + header-matched 90/10 routes + access log",
                native_filters,
            )
        },
        Config::new(
            profile,
            "empty-wasm",
            "a proxy-wasm filter that does nothing (the floor)",
            vec![wasm_filter("empty", empty, "")],
        ),
    ];
    // What a host call costs does not depend on the profile: priced once, in direct.
    if direct {
        out.push(Config::new(
            profile,
            "empty-wasm-trimmed",
            "the empty filter exporting only the request-headers callback",
            vec![wasm_filter("empty", &empty_exporting(empty, 1)?, "")],
        ));
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
            out.push(Config::new(
                profile,
                name,
                what,
                vec![wasm_filter("empty", empty, config)],
            ));
        }
    }
    for cap in capabilities() {
        if module(cap).exists() {
            out.push(Config::new(
                profile,
                cap,
                &format!("our {cap} module alone"),
                vec![wasm_filter(cap, &module(cap), &cfg(cap))],
            ));
            out.push(floor(profile, cap, &cfg(cap), empty)?);
        }
    }
    if let Some(rl) = plugins
        .get("ratelimit")
        .filter(|_| module("ratelimit").exists())
    {
        out.push(Config {
            global: true,
            ..Config::new(
                profile,
                "ratelimit-global",
                "ratelimit with its rule's global check (an always-OK rate limit service)",
                vec![wasm_filter(
                    "ratelimit",
                    &module("ratelimit"),
                    &with_global(rl).to_string(),
                )],
            )
        });
    }
    if capabilities().all(|c| module(c).exists()) {
        out.push(Config::new(
            profile,
            "four-modules",
            "our four modules chained",
            capabilities()
                .map(|c| wasm_filter(c, &module(c), &cfg(c)))
                .collect(),
        ));
    }
    if module("suite").exists() {
        let suite =
            |config: &Json| vec![wasm_filter("suite", &module("suite"), &config.to_string())];
        out.push(Config::new(
            profile,
            "suite",
            "the suite module running all four",
            suite(plugins),
        ));
        out.push(floor(profile, "suite", &plugins.to_string(), empty)?);
        // The same without the two per-request extras a deployment may not need: the JSON
        // access log line and the verdicts copied to Envoy filter state.
        let mut lean = plugins.clone();
        if let Some(all) = lean.as_object_mut() {
            all.insert("export_decisions".into(), Json::Bool(false));
            if let Some(t) = all.get_mut("telemetry").and_then(Json::as_object_mut) {
                t.insert("access_log".into(), json!({"enabled": false}));
            }
        }
        out.push(Config::new(
            profile,
            "suite-lean",
            "the suite without access log lines or filter-state verdicts",
            suite(&lean),
        ));
        let mut global = plugins.clone();
        if let (Some(all), Some(rl)) = (global.as_object_mut(), plugins.get("ratelimit")) {
            all.insert("ratelimit".into(), with_global(rl));
        }
        out.push(Config {
            global: true,
            ..Config::new(
                profile,
                "suite-global",
                "the suite with the rate limit rule's global check",
                suite(&global),
            )
        });
        if attribution {
            out.extend(floor_by_class(profile, &plugins.to_string(), empty)?);
        }
    }
    Ok(out)
}

/// The empty filter replaying module `name`'s host calls for `profile`'s request (recorded
/// natively with `config`), exporting the callbacks that module exports: its floor.
pub(super) fn floor(
    profile: Profile,
    name: &str,
    config: &str,
    empty: &Path,
) -> anyhow::Result<Config> {
    let replay = crate::floor::replay(name, config, profile.request())?;
    let module = empty_exporting(empty, replay.callbacks)?;
    let calls = crate::floor::calls_in(&replay.script);
    Ok(Config::new(
        profile,
        &format!("{name}-floor"),
        &format!(
            "the empty filter making {name}'s {calls} host calls with none of its logic (its floor)"
        ),
        vec![wasm_filter("empty", &module, &replay.script)],
    ))
}

/// The suite's floor built up one class of host call at a time: `suite-floor-0` exports the
/// suite's callbacks and makes no call, then each `suite-floor+<class>` adds that class's
/// calls to the one before (the last equals `suite-floor`, which is not repeated). The steps
/// between them are what each class costs.
pub(super) fn floor_by_class(
    profile: Profile,
    config: &str,
    empty: &Path,
) -> anyhow::Result<Vec<Config>> {
    let replay = crate::floor::replay("suite", config, profile.request())?;
    let module = empty_exporting(empty, replay.callbacks)?;
    let mut out = Vec::new();
    let mut classes: Vec<CallClass> = Vec::new();
    let mut last = crate::floor::subset(&replay.script, &classes);
    out.push(
        Config::new(
            profile,
            "suite-floor-0",
            "the empty filter exporting the suite's callbacks, no host call",
            vec![wasm_filter("empty", &module, &last)],
        )
        .instructions_only(),
    );
    let present: Vec<CallClass> = CallClass::ALL
        .into_iter()
        .filter(|c| {
            replay
                .script
                .lines()
                .any(|l| !l.starts_with('@') && CallClass::of(l) == *c)
        })
        .collect();
    for (i, class) in present.iter().enumerate() {
        classes.push(*class);
        // The full script is `suite-floor` itself.
        if i + 1 == present.len() {
            break;
        }
        last = crate::floor::subset(&replay.script, &classes);
        out.push(
            Config::new(
                profile,
                &format!("suite-floor+{}", class.slug()),
                &format!("the suite's floor up to {}", class.label()),
                vec![wasm_filter("empty", &module, &last)],
            )
            .instructions_only(),
        );
    }
    Ok(out)
}

/// The empty filter exporting only the callbacks `bits` names (as `sdk_shim::Callbacks`), as
/// `cargo xtask build` trims our modules.
pub(super) fn empty_exporting(empty: &Path, bits: u8) -> anyhow::Result<PathBuf> {
    let module = empty.with_file_name(format!("empty-callbacks-{bits}.wasm"));
    crate::build::drop_unused_callbacks(empty, &module, Some(bits))?;
    Ok(module)
}

/// The replay script inside a floor configuration's filter.
pub(super) fn replay_script(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) if s.starts_with("@request_headers") => Some(s),
        Value::Mapping(m) => m.values().find_map(replay_script),
        Value::Sequence(s) => s.iter().find_map(replay_script),
        _ => None,
    }
}

/// The number of host calls in the replay script inside a floor configuration's filter.
pub(super) fn replay_calls(v: &Value) -> Option<usize> {
    replay_script(v).map(crate::floor::calls_in)
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

// === the processes around the Envoy under test ===

/// Where the bootstraps name the repository's demo certificates; the bench swaps in its own.
const DEMO_CERTS: &str = "envoy-config/intentions/certs/";

/// What outlives one configuration's run: the pinning, the always-OK rate limit service and
/// (sidecar profile) the upstream and the certificates, all on the load CPU.
pub(super) struct Rig {
    pub(super) pin: Pinning,
    pub(super) rls: RlsOk,
    upstream: Option<Envoy>,
    certs: PathBuf,
}

impl Rig {
    pub(super) fn start(profiles: &[Profile]) -> anyhow::Result<Self> {
        let pin = Pinning::detect();
        let rls = RlsOk::start()?;
        for tid in RlsOk::thread_ids() {
            pin.pin_thread(tid, 1)?;
        }
        let certs = root().join("target/bench/certs");
        let upstream = if profiles.contains(&Profile::Sidecar) {
            write_certs(&certs)?;
            let up = Envoy::builder(Profile::Direct.bootstrap())
                .concurrency(1)
                .log_level("warn")
                .start()
                .context("starting the sidecar profile's upstream")?;
            pin.pin(up.pid(), 1)?;
            Some(up)
        } else {
            None
        };
        Ok(Self {
            pin,
            rls,
            upstream,
            certs,
        })
    }

    /// The Envoy under test for `c`: its profile's bootstrap with `c`'s filters before the
    /// router, its routes and access log, the cluster ports and the bench's certificates.
    pub(super) fn envoy(&self, c: &Config) -> anyhow::Result<EnvoyBuilder> {
        let filters = c.filters.clone();
        let routes = c.routes.clone();
        let access_log = c.access_log.clone();
        let mut b = Envoy::builder(c.profile.bootstrap())
            .concurrency(1)
            .log_level("warn")
            .cluster_port("rate_limit_service", self.rls.port());
        if c.profile == Profile::Sidecar {
            let up = self
                .upstream
                .as_ref()
                .context("the sidecar profile's upstream is not running")?
                .port();
            b = b
                .cluster_port("upstream", up)
                .cluster_port("upstream_v1", up)
                .cluster_port("upstream_v2", up);
        }
        let certs = self.certs.clone();
        Ok(b.edit(move |doc| {
            swap_certs(doc, &certs);
            let Some(hcm) = mesh_e2e::envoy::hcm_mut(doc) else {
                return;
            };
            if let Some(Value::Sequence(chain)) = hcm.get_mut("http_filters") {
                for (i, f) in filters.into_iter().enumerate() {
                    chain.insert(i, f);
                }
            }
            if let Some(routes) = routes {
                if let Some(r) = hcm
                    .get_mut("route_config")
                    .and_then(|r| r.get_mut("virtual_hosts"))
                    .and_then(|v| v.get_mut(0))
                    .and_then(|v| v.get_mut("routes"))
                {
                    *r = routes;
                }
            }
            if let (Some(log), Value::Mapping(m)) = (access_log, hcm) {
                m.insert(Value::from("access_log"), log);
            }
        }))
    }

    /// The client proxy of the sidecar profile, in front of `server`, on the load CPU.
    fn client(&self, server: &Envoy) -> anyhow::Result<Envoy> {
        let certs = self.certs.clone();
        let client = Envoy::builder("envoy-config/bench/client.yaml")
            .concurrency(1)
            .log_level("warn")
            .cluster_port("server", server.port())
            .edit(move |doc| {
                swap_certs(doc, &certs);
                let headers: Vec<Json> = crate::floor::MESH_HEADERS
                    .iter()
                    .map(|(k, v)| {
                        // `%` starts a command in Envoy's header values.
                        let v = v.replace('%', "%%");
                        json!({"header": {"key": k, "value": v},
                               "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
                    })
                    .collect();
                let Ok(headers) = serde_yaml::to_value(headers) else {
                    return;
                };
                if let Some(Value::Mapping(rc)) =
                    mesh_e2e::envoy::hcm_mut(doc).and_then(|h| h.get_mut("route_config"))
                {
                    rc.insert(Value::from("request_headers_to_add"), headers);
                }
            })
            .start()
            .context("starting the sidecar profile's client proxy")?;
        self.pin.pin(client.pid(), 1)?;
        Ok(client)
    }

    /// Starts `c`'s Envoy under test (under `wrapper` if given, e.g. valgrind) and, in the
    /// sidecar profile, its client proxy.
    pub(super) fn stack(&self, c: &Config, wrapper: Option<&[&str]>) -> anyhow::Result<Stack> {
        let mut b = self.envoy(c)?;
        if let Some((program, args)) = wrapper.and_then(|w| w.split_first()) {
            b = b.wrapper(program, args);
        }
        let t = Instant::now();
        let server = b.start()?;
        let server_ready = t.elapsed();
        let client = match c.profile {
            Profile::Direct => None,
            Profile::Sidecar => Some(self.client(&server)?),
        };
        Ok(Stack {
            server,
            client,
            server_ready,
        })
    }
}

/// One run's Envoy under test and what the load generator talks to.
pub(super) struct Stack {
    pub(super) server: Envoy,
    client: Option<Envoy>,
    /// From the start of the Envoy under test to its admin saying LIVE.
    pub(super) server_ready: Duration,
}

impl Stack {
    pub(super) fn url(&self) -> String {
        self.client
            .as_ref()
            .unwrap_or(&self.server)
            .url("/api/items")
    }
}

/// A CA, the server's certificate and the client's with its SPIFFE ID, made for this run.
fn write_certs(dir: &Path) -> anyhow::Result<()> {
    let ca = mesh_e2e::tls::Ca::new("bench mesh CA")?;
    ca.write_server_files_as(dir, Some(crate::floor::SERVER_SPIFFE_ID))?;
    let client = ca.workload(crate::floor::CLIENT_SPIFFE_ID)?;
    std::fs::write(dir.join("client.pem"), &client.cert_pem)?;
    std::fs::write(dir.join("client-key.pem"), &client.key_pem)?;
    Ok(())
}

/// Points every file under the demo certificates at the bench's (the demo `web` client is
/// the bench's `client`).
fn swap_certs(v: &mut Value, certs: &Path) {
    match v {
        Value::String(s) => {
            // The builder has made the names absolute by now.
            if let Some((_, file)) = s.split_once(DEMO_CERTS) {
                let file = file.replacen("web", "client", 1);
                *s = certs.join(file).display().to_string();
            }
        }
        Value::Mapping(m) => m.values_mut().for_each(|v| swap_certs(v, certs)),
        Value::Sequence(s) => s.iter_mut().for_each(|v| swap_certs(v, certs)),
        _ => {}
    }
}
