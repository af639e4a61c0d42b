//! Runs the real Envoy from a bootstrap in `envoy-config/`, rewritten for the test: free
//! ports, stub upstreams, absolute file paths and per-test plugin configuration.

use crate::{free_port, install::envoy_bin, prometheus, repo_root, Stub};
use anyhow::{bail, Context};
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A static cluster `name` with one endpoint, 127.0.0.1:`port`, for a test's own upstream.
pub fn loopback_cluster(name: &str, port: u16) -> anyhow::Result<Value> {
    let text = format!(
        "{{name: {name}, type: STATIC, connect_timeout: 1s, load_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]}}}}"
    );
    serde_yaml::from_str(&text).with_context(|| format!("parsing {text}"))
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A change to the parsed bootstrap.
type Edit = Box<dyn FnOnce(&mut Value)>;

/// How to start an Envoy: see [`Envoy::builder`].
pub struct EnvoyBuilder {
    bootstrap: PathBuf,
    concurrency: usize,
    clusters: HashMap<String, u16>,
    plugin_configs: Vec<(String, String)>,
    edits: Vec<Edit>,
    extra_args: Vec<String>,
    /// A program Envoy runs under (`valgrind --tool=callgrind ...`), if any.
    wrapper: Vec<String>,
    log_level: String,
    as_suite: bool,
}

/// A running Envoy; killed on drop, its log printed if the test is failing.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin_port: u16,
    listeners: Vec<(String, u16)>,
    http: reqwest::blocking::Client,
}

fn key(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn get<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

fn set_port(address: Option<&mut Value>, port: u16) {
    if let Some(sa) = address.and_then(|a| a.get_mut("socket_address")) {
        if let Some(m) = sa.as_mapping_mut() {
            m.insert(key("port_value"), Value::from(port));
            m.insert(key("address"), key("127.0.0.1"));
        }
    }
}

/// The `typed_config` of the first HTTP connection manager in the bootstrap (after any
/// network filters before it, such as the peer stamp).
pub fn hcm_mut(doc: &mut Value) -> Option<&mut Value> {
    let listeners = get(doc, &["static_resources", "listeners"])?.as_sequence_mut()?;
    listeners.iter_mut().find_map(|l| {
        l.get_mut("filter_chains")?
            .as_sequence_mut()?
            .iter_mut()
            .find_map(|fc| {
                fc.get_mut("filters")?
                    .as_sequence_mut()?
                    .iter_mut()
                    .find(|f| {
                        f.get("name").and_then(Value::as_str)
                            == Some("envoy.filters.network.http_connection_manager")
                    })?
                    .get_mut("typed_config")
            })
    })
}

/// Clones listener 0 as `name`, giving its wasm plugin Envoy name `plugin_name` and
/// configuration `config`; every wasm plugin gets the empty `vm_id` (as Istio gives them), so
/// both plugins run in one VM and see one shared-data store. `None` when the bootstrap has no
/// listener with a wasm filter.
pub fn second_plugin_listener(
    doc: &mut Value,
    name: &str,
    plugin_name: &str,
    config: &serde_json::Value,
) -> Option<()> {
    let listeners = get(doc, &["static_resources", "listeners"])?.as_sequence_mut()?;
    let mut second = listeners.first()?.clone();
    second.as_mapping_mut()?.insert(key("name"), key(name));
    listeners.push(second);
    for (i, l) in listeners.iter_mut().enumerate() {
        let cfg = l
            .get_mut("filter_chains")?
            .as_sequence_mut()?
            .iter_mut()
            .flat_map(|fc| fc.get_mut("filters").and_then(Value::as_sequence_mut))
            .flatten()
            .filter_map(|f| {
                f.get_mut("typed_config")?
                    .get_mut("http_filters")?
                    .as_sequence_mut()
            })
            .flatten()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm"))?
            .get_mut("typed_config")?
            .get_mut("config")?
            .as_mapping_mut()?;
        if let Some(vm) = cfg.get_mut("vm_config").and_then(Value::as_mapping_mut) {
            vm.insert(key("vm_id"), key(""));
        }
        if i == 1 {
            cfg.insert(key("name"), key(plugin_name));
            let mut c = Mapping::new();
            c.insert(
                key("@type"),
                key("type.googleapis.com/google.protobuf.StringValue"),
            );
            c.insert(key("value"), key(&config.to_string()));
            cfg.insert(key("configuration"), Value::Mapping(c));
        }
    }
    Some(())
}

/// The `http_filters` list of the first HTTP connection manager in the bootstrap.
pub fn http_filters_mut(doc: &mut Value) -> Option<&mut Vec<Value>> {
    hcm_mut(doc)?.get_mut("http_filters")?.as_sequence_mut()
}

/// An `envoy.filters.http.wasm` filter entry loading `file` (V8) under `name`, which is also
/// its root id and VM id, with the plugin configuration `config`.
pub fn wasm_filter(name: &str, file: &Path, config: &str) -> Value {
    let map = |pairs: Vec<(&str, Value)>| {
        Value::Mapping(pairs.into_iter().map(|(k, v)| (key(k), v)).collect())
    };
    map(vec![
        ("name", key("envoy.filters.http.wasm")),
        (
            "typed_config",
            map(vec![
                (
                    "@type",
                    key("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"),
                ),
                (
                    "config",
                    map(vec![
                        ("name", key(name)),
                        ("root_id", key(name)),
                        (
                            "configuration",
                            map(vec![
                                (
                                    "@type",
                                    key("type.googleapis.com/google.protobuf.StringValue"),
                                ),
                                ("value", key(config)),
                            ]),
                        ),
                        (
                            "vm_config",
                            map(vec![
                                ("vm_id", key(name)),
                                ("runtime", key("envoy.wasm.runtime.v8")),
                                (
                                    "code",
                                    map(vec![(
                                        "local",
                                        map(vec![("filename", key(&file.display().to_string()))]),
                                    )]),
                                ),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ])
}

/// Applies `f` to every mapping in the tree.
fn walk_mappings(v: &mut Value, f: &mut dyn FnMut(&mut Mapping)) {
    match v {
        Value::Mapping(m) => {
            f(m);
            for (_, child) in m.iter_mut() {
                walk_mappings(child, f);
            }
        }
        Value::Sequence(s) => {
            for child in s {
                walk_mappings(child, f);
            }
        }
        _ => {}
    }
}

/// Capabilities the suite module can stand in for: the suite's own ordered list.
pub fn capabilities() -> impl Iterator<Item = &'static str> {
    filter_suite::CAPABILITIES.iter().map(|c| c.name)
}

/// Rewrites every Wasm filter of ours (`root_id` a capability) to load `suite.wasm` with its
/// configuration wrapped as `{"<capability>": <config>}`.
fn swap_in_suite(doc: &mut Value, root: &Path) {
    let suite = root.join("target/filters/suite.wasm").display().to_string();
    walk_mappings(doc, &mut |m| {
        let Some(cap) = m
            .get(key("root_id"))
            .and_then(Value::as_str)
            .filter(|r| capabilities().any(|c| c == *r))
            .map(str::to_owned)
        else {
            return;
        };
        let config = m
            .get(key("configuration"))
            .and_then(|c| c.get("value"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        // An empty configuration means the capability's defaults, as `{}` does.
        let config = if config.trim().is_empty() {
            "{}".to_owned()
        } else {
            config
        };
        let wrapped = format!("{{\"{cap}\": {config}}}");
        let mut cfg = Mapping::new();
        cfg.insert(
            key("@type"),
            key("type.googleapis.com/google.protobuf.StringValue"),
        );
        cfg.insert(key("value"), key(&wrapped));
        m.insert(key("configuration"), Value::Mapping(cfg));
        m.insert(key("root_id"), key("suite"));
        if let Some(Value::Mapping(vm)) = m.get_mut(key("vm_config")) {
            vm.remove(key("vm_id"));
            if let Some(f) = vm
                .get_mut(key("code"))
                .and_then(|c| c.get_mut("local"))
                .and_then(|l| l.get_mut("filename"))
            {
                *f = key(&suite);
            }
        }
    });
}

// === impl EnvoyBuilder ===

impl EnvoyBuilder {
    /// Envoy worker threads (default 2).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Points every endpoint of cluster `name` at `stub`.
    pub fn cluster(mut self, name: &str, stub: &Stub) -> Self {
        self.clusters.insert(name.to_owned(), stub.port());
        self
    }
    /// Points every endpoint of cluster `name` at 127.0.0.1:`port`.
    pub fn cluster_port(mut self, name: &str, port: u16) -> Self {
        self.clusters.insert(name.to_owned(), port);
        self
    }
    /// Replaces the plugin configuration of every Wasm filter whose `root_id` is `root_id`.
    pub fn plugin_config(mut self, root_id: &str, config: serde_json::Value) -> Self {
        self.plugin_configs
            .push((root_id.to_owned(), config.to_string()));
        self
    }
    /// Same, with the configuration as raw text (to test configs that are not JSON).
    pub fn plugin_config_raw(mut self, root_id: &str, config: &str) -> Self {
        self.plugin_configs
            .push((root_id.to_owned(), config.to_owned()));
        self
    }
    /// Any other change to the bootstrap, applied after the others.
    pub fn edit(mut self, f: impl FnOnce(&mut Value) + 'static) -> Self {
        self.edits.push(Box::new(f));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_owned());
        self
    }
    /// Runs the suite module in place of every single-capability module (also when the
    /// environment has `MESH_E2E_MODULE=suite`), to show both give the same answers.
    pub fn as_suite(mut self) -> Self {
        self.as_suite = true;
        self
    }
    /// Runs Envoy under `program` with `args` before Envoy's own (the pid stays Envoy's for
    /// tools such as valgrind that run the program in their own process).
    pub fn wrapper(mut self, program: &str, args: &[&str]) -> Self {
        self.wrapper = std::iter::once(program)
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        self
    }
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Renders the bootstrap, starts Envoy and waits until the admin `/ready` says LIVE.
    /// When Envoy refuses the configuration the error carries its log.
    pub fn start(mut self) -> anyhow::Result<Envoy> {
        let text = std::fs::read_to_string(repo_root().join(&self.bootstrap))
            .with_context(|| format!("reading {}", self.bootstrap.display()))?;
        let mut doc: Value = serde_yaml::from_str(&text)?;
        if let Some(Value::Sequence(cs)) = get(&mut doc, &["static_resources", "clusters"]) {
            for c in cs.iter_mut() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(port) = self.clusters.get(name).copied() else {
                    continue;
                };
                if let Some(Value::Sequence(eps)) = get(c, &["load_assignment", "endpoints"]) {
                    for ep in eps.iter_mut() {
                        if let Some(Value::Sequence(lbs)) = ep.get_mut("lb_endpoints") {
                            for lb in lbs.iter_mut() {
                                set_port(get(lb, &["endpoint", "address"]), port);
                            }
                        }
                    }
                }
            }
        }
        let root = repo_root();
        let configs = std::mem::take(&mut self.plugin_configs);
        walk_mappings(&mut doc, &mut |m| {
            // Relative file names resolve against the repository root.
            if let Some(Value::String(f)) = m.get_mut(key("filename")) {
                if Path::new(f.as_str()).is_relative() {
                    *f = root.join(&*f).display().to_string();
                }
            }
            let root_id = m
                .get(key("root_id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(root_id) = root_id {
                for (id, config) in &configs {
                    if *id == root_id {
                        let mut cfg = Mapping::new();
                        cfg.insert(
                            key("@type"),
                            key("type.googleapis.com/google.protobuf.StringValue"),
                        );
                        cfg.insert(key("value"), key(config));
                        m.insert(key("configuration"), Value::Mapping(cfg));
                    }
                }
            }
        });
        for e in std::mem::take(&mut self.edits) {
            e(&mut doc);
        }
        if self.as_suite || std::env::var("MESH_E2E_MODULE").is_ok_and(|m| m == "suite") {
            swap_in_suite(&mut doc, &root);
        }

        // A free port can be taken by another test between the check and Envoy's bind: then
        // Envoy exits (or another Envoy answers on the admin port), and a new set of ports is
        // tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_once(&mut doc) {
                Err(e) if attempt < 5 && is_port_race(&e) => continue,
                other => return other,
            }
        }
    }

    fn start_once(&self, doc: &mut Value) -> anyhow::Result<Envoy> {
        let admin_port = free_port()?;
        set_port(get(doc, &["admin", "address"]), admin_port);
        let mut listeners = Vec::new();
        if let Some(Value::Sequence(ls)) = get(doc, &["static_resources", "listeners"]) {
            for l in ls.iter_mut() {
                let name = l
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let port = free_port()?;
                set_port(l.get_mut("address"), port);
                listeners.push((name, port));
            }
        }
        let root = repo_root();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = root
            .join("target/e2e")
            .join(format!("envoy-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&*doc)?)?;
        let log = std::fs::File::create(dir.join("envoy.log"))?;
        let envoy = envoy_bin()?;
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&envoy);
                c
            }
            None => Command::new(&envoy),
        };
        let child = cmd
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--use-dynamic-base-id", "-l", &self.log_level])
            .args(["--disable-hot-restart", "--drain-time-s", "1"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(&root)
            .spawn()
            .context("starting envoy")?;
        let mut envoy = Envoy {
            child,
            dir,
            admin_port,
            listeners,
            http: crate::client(),
        };
        envoy.wait_ready()?;
        Ok(envoy)
    }
}

/// Whether Envoy failed to start because a port it was given was taken meanwhile.
fn is_port_race(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("Address already in use") || text.contains("cannot bind")
}

// === impl Envoy ===

impl Envoy {
    /// Starts describing an Envoy from `bootstrap`, a path relative to the repository root.
    pub fn builder(bootstrap: impl AsRef<Path>) -> EnvoyBuilder {
        EnvoyBuilder {
            bootstrap: bootstrap.as_ref().to_path_buf(),
            concurrency: 2,
            clusters: HashMap::new(),
            plugin_configs: Vec::new(),
            edits: Vec::new(),
            extra_args: Vec::new(),
            wrapper: Vec::new(),
            log_level: "info".to_owned(),
            as_suite: false,
        }
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "envoy exited during start-up ({status}); its log:\n{}",
                    self.log()
                );
            }
            // Another Envoy may hold the admin port we were given: ours then exits on its
            // bind, and /server_info names the other one's config.
            if let Ok(r) = self.http.get(self.admin_url("/ready")).send() {
                let ours = self.dir.join("envoy.yaml").display().to_string();
                let info = self.admin("/server_info").unwrap_or_default();
                if r.status().is_success() && info.contains(&ours) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("envoy not ready after 60s; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port of the first listener><path>`.
    pub fn url(&self, path: &str) -> String {
        let port = self.listeners.first().map_or(0, |(_, p)| *p);
        format!("http://127.0.0.1:{port}{path}")
    }
    /// Port of the listener called `name`.
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
    }
    pub fn port(&self) -> u16 {
        self.listeners.first().map_or(0, |(_, p)| *p)
    }
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The folder holding the rendered bootstrap and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// GETs an admin path and returns the body.
    pub fn admin(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.http.get(self.admin_url(path)).send()?.text()?)
    }

    /// Every counter and gauge from `/stats` (histogram lines are skipped).
    pub fn stats(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = self.admin("/stats")?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(": ")?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect())
    }

    /// One counter or gauge from `/stats`, if it exists.
    pub fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.stats()?.get(name).copied())
    }

    /// Parsed `/stats/prometheus`.
    pub fn prometheus(&self) -> anyhow::Result<Vec<prometheus::Sample>> {
        Ok(prometheus::parse(&self.admin("/stats/prometheus")?))
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Waits until `f` holds on the stats or the timeout passes (stats flush asynchronously).
    pub fn wait_for_stats(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&BTreeMap<String, u64>) -> bool,
    ) -> anyhow::Result<BTreeMap<String, u64>> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats()?;
            if f(&s) || Instant::now() > deadline {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- envoy log ({}) ----\n{}\n---- end of envoy log ----",
                self.dir.display(),
                self.log()
            );
        }
    }
}
