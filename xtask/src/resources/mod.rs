//! The mesh resources of every module, generated from one source so they cannot drift: this
//! file (where each module runs, its phase, its failure policy and why) and each module's
//! `envoy-config/<name>/plugin-config.json` (the suite composes the single modules' files).
//!
//! Layout, the same for every module in `envoy-config/<name>/`:
//! - `istio/wasmplugin.yaml`, `istio/trafficextension.yaml` (Istio, OCI image pinned by its
//!   manifest digest);
//! - `envoy-gateway/extension-policy-image.yaml` (OCI image) and
//!   `envoy-gateway/extension-policy-http.yaml` (HTTPS, pinned by the module's sha256);
//! - `consul/service-defaults-<service>.json` (`consul config write`; canary adds the
//!   `service-router` and `service-resolver` of the service it splits).
//!
//! Digests: `cargo xtask package` fills them in from `target/oci/<name>/`. Without a packaged
//! module the committed ones are kept, so `cargo xtask resources` after editing a
//! `plugin-config.json` changes nothing else. The drift test compares every committed byte
//! except the digests' values: a code change elsewhere makes the committed digests stale,
//! which is expected until the next release packaging, but never makes the structure drift.

pub mod schema;
#[cfg(test)]
mod tests;

use crate::util::root;
use anyhow::{ensure, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the images are published in the examples (replace with your registry).
pub const IMAGE_REPO: &str = "registry.example.com/mesh-filters";
/// Where the modules are served over HTTPS in the examples.
pub const HTTP_BASE: &str = "https://filters.example.com/mesh-filters";
/// The Consul service that serves the modules (an upstream of each proxy that fetches them).
pub const CONSUL_FILE_SERVICE: &str = "wasm-filters";
/// Placeholder for the Consul cluster's trust domain (`<cluster id>.consul`).
const CONSUL_TRUST_DOMAIN: &str = "00000000-0000-0000-0000-000000000000.consul";
/// No digest known yet (never packaged).
const NO_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The modules that get resources, in the order of `cargo xtask build`.
pub const MODULES: [&str; 5] = ["canary", "intentions", "ratelimit", "suite", "telemetry"];

/// The digests a module's resources pin, bare hex as Istio, Envoy Gateway and Consul take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// The compat image's manifest digest (Istio `sha256`, Envoy Gateway `image.sha256`).
    pub image: String,
    /// The module's sha256 (Envoy Gateway `http.sha256`, Consul `SHA256`).
    pub module: String,
}

impl Digests {
    pub fn from_packaged(p: &mesh_e2e::oci::Packaged) -> Self {
        let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
        Self {
            image: hex(&p.compat),
            module: hex(&p.module),
        }
    }
}

/// Which side of a call a plugin runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The called workload's inbound listener (`reviews`).
    Server,
    /// The caller's outbound listener (`productpage`), where the route is chosen.
    Client,
}

impl Side {
    fn app(self) -> &'static str {
        match self {
            Side::Server => "reviews",
            Side::Client => "productpage",
        }
    }
    fn istio_mode(self) -> &'static str {
        match self {
            Side::Server => "SERVER",
            Side::Client => "CLIENT",
        }
    }
    fn consul_listener(self) -> &'static str {
        match self {
            Side::Server => "inbound",
            Side::Client => "outbound",
        }
    }
}

/// One plugin of a module in a mesh.
#[derive(Debug, Clone)]
struct Plugin {
    /// Its resource name.
    resource: String,
    side: Side,
    config: Value,
    phase: &'static str,
    /// Why this phase.
    phase_why: &'static str,
    priority: Option<i32>,
    fail_open: bool,
    /// Why this failure policy.
    fail_why: &'static str,
}

/// A module and where it runs.
#[derive(Debug, Clone)]
struct Module {
    name: &'static str,
    /// Its Istio and Consul plugins.
    plugins: Vec<Plugin>,
    /// Its one Envoy Gateway plugin (the gateway is one side of every call).
    gateway: Plugin,
}

const FAIL_OPEN_SCOPE: &str = "covers a module that cannot be fetched or started, not a \
configuration the filter rejects: Envoy NACKs it, and over ECDS (how Istio delivers) a first \
load answers 500 to every request, failing open or not (a static bootstrap does not start; \
tests/tests/delivery.rs). So every configuration here is run through the filter's own \
validator.";

fn read_config(name: &str) -> anyhow::Result<Value> {
    let path = root()
        .join("envoy-config")
        .join(name)
        .join("plugin-config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    // `$schema` is for editors of the file; a mesh resource's pluginConfig goes without it.
    if let Some(m) = config.as_object_mut() {
        m.remove("$schema");
    }
    Ok(config)
}

fn single(
    name: &'static str,
    side: Side,
    phase: &'static str,
    phase_why: &'static str,
    priority: Option<i32>,
    fail_open: bool,
    fail_why: &'static str,
) -> anyhow::Result<Module> {
    let plugin = Plugin {
        resource: name.to_owned(),
        side,
        config: read_config(name)?,
        phase,
        phase_why,
        priority,
        fail_open,
        fail_why,
    };
    Ok(Module {
        name,
        plugins: vec![plugin.clone()],
        gateway: plugin,
    })
}

/// The one source: every module's placement, phase and failure policy, with the reasons.
fn module(name: &str) -> anyhow::Result<Module> {
    Ok(match name {
        "canary" => single(
            "canary",
            Side::Client,
            "STATS",
            "on the caller, before the router picks the route and after authentication and \
             authorization",
            None,
            true,
            "without the filter requests carry no subset header and the default route sends \
             them to the stable subset: routing degrades, nothing is refused",
        )?,
        "intentions" => single(
            "intentions",
            Side::Server,
            "AUTHZ",
            "an authorization: after Istio's mTLS authentication verified the peer \
             certificate the identity comes from",
            Some(10),
            false,
            "it authorizes: without it every caller would be let in unchecked",
        )?,
        "ratelimit" => single(
            "ratelimit",
            Side::Server,
            "STATS",
            "after authentication and authorization (denied requests spend no quota), before \
             Istio's stats filter (429s are counted in istio_requests_total)",
            Some(10),
            false,
            "it protects the service: without it a flood would reach the service unlimited",
        )?,
        "telemetry" => single(
            "telemetry",
            Side::Server,
            "STATS",
            "with Istio's own stats, after authorization, so every answer is observed",
            None,
            true,
            "telemetry must never cost a request: without it traffic flows unobserved",
        )?,
        "suite" => {
            let part = |n: &str| read_config(n);
            let mut outbound_telemetry = part("telemetry")?;
            if let Some(m) = outbound_telemetry.as_object_mut() {
                m.insert("reporter".to_owned(), Value::from("source"));
            }
            let inbound = serde_json::json!({
                "telemetry": part("telemetry")?,
                "intentions": part("intentions")?,
                "ratelimit": part("ratelimit")?,
            });
            let outbound = serde_json::json!({
                "telemetry": outbound_telemetry,
                "canary": part("canary")?,
            });
            let mut gateway = inbound.clone();
            if let Some(m) = gateway.as_object_mut() {
                m.insert("canary".to_owned(), part("canary")?);
            }
            let inbound = Plugin {
                resource: "mesh-suite-inbound".to_owned(),
                side: Side::Server,
                config: inbound,
                phase: "AUTHZ",
                phase_why: "it authorizes (intentions) and limits: after mTLS authentication, \
                            beside Istio's own authorization",
                priority: Some(10),
                fail_open: false,
                fail_why: "it authorizes and limits: without it every caller would be let in \
                           unchecked and unlimited",
            };
            let outbound = Plugin {
                resource: "mesh-suite-outbound".to_owned(),
                side: Side::Client,
                config: outbound,
                phase: "STATS",
                phase_why: "canary routing runs on the caller, before the router picks the \
                            route",
                priority: None,
                fail_open: true,
                fail_why: "canary routing and caller-side telemetry only: without them \
                           requests go to the stable subset, unobserved",
            };
            let gateway = Plugin {
                resource: "mesh-suite".to_owned(),
                config: gateway,
                ..inbound.clone()
            };
            Module {
                name: "suite",
                plugins: vec![inbound, outbound],
                gateway,
            }
        }
        other => anyhow::bail!("no resources are defined for module {other:?}"),
    })
}

/// The configuration a mesh hands the module: only the trust domain differs (Consul's is
/// its cluster's `<id>.consul`).
fn config_for_consul(name: &str, config: &Value) -> Value {
    let mut c = config.clone();
    let intentions = if name == "suite" {
        c.get_mut("intentions")
    } else if name == "intentions" {
        Some(&mut c)
    } else {
        None
    };
    if let Some(m) = intentions.and_then(Value::as_object_mut) {
        m.insert("trust_domain".to_owned(), Value::from(CONSUL_TRUST_DOMAIN));
    }
    c
}

// --- rendering ---------------------------------------------------------------------------

/// `v` with every object's keys sorted, as a YAML value (insertion-ordered), so the output
/// does not depend on serde_json's map order.
fn sorted(v: &Value) -> serde_yaml::Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_yaml::Mapping::new();
            for k in keys {
                if let Some(child) = m.get(k) {
                    out.insert(serde_yaml::Value::from(k.as_str()), sorted(child));
                }
            }
            serde_yaml::Value::Mapping(out)
        }
        Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(sorted).collect()),
        other => serde_yaml::to_value(other).unwrap_or(serde_yaml::Value::Null),
    }
}

/// `v` as block YAML, every line indented by `n` spaces.
fn yaml_block(v: &Value, n: usize) -> anyhow::Result<String> {
    let text = serde_yaml::to_string(&sorted(v))?;
    let pad = " ".repeat(n);
    Ok(text
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>())
}

/// Wraps `text` into `# ` comment lines of at most 96 columns, indented by `n`.
fn comment(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && pad.len() + 2 + line.len() + 1 + word.len() > 96 {
            out.push_str(&format!("{pad}# {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{pad}# {line}\n"));
    }
    out
}

fn image(name: &str) -> String {
    format!("{IMAGE_REPO}/{name}:{}", version())
}

fn http_url(name: &str) -> String {
    format!("{HTTP_BASE}/{}/{name}.wasm", version())
}

fn header(text: &str) -> String {
    format!(
        "# Generated by `cargo xtask resources` (digests by `cargo xtask package`) from \
         xtask/src/resources\n# and plugin-config.json: edit those, not this file.\n{}",
        comment(text, 0)
    )
}

fn istio_fail(p: &Plugin, n: usize) -> String {
    let (value, what) = if p.fail_open {
        ("FAIL_OPEN", "fail open")
    } else {
        ("FAIL_CLOSE", "fail closed")
    };
    format!(
        "{}{}{}failStrategy: {value}\n",
        comment(&format!("{what}: {}.", p.fail_why), n),
        comment(&format!("failStrategy {FAIL_OPEN_SCOPE}"), n),
        " ".repeat(n)
    )
}

fn wasm_plugin(m: &Module, d: &Digests, p: &Plugin) -> anyhow::Result<String> {
    let mut s = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: {}\n  \
         namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: {}\n",
        p.resource,
        p.side.app()
    );
    s += &comment(
        "The compat image (`cargo xtask package`), pinned by its manifest digest.",
        2,
    );
    s += &format!(
        "  url: oci://{}\n  sha256: {}\n  imagePullPolicy: IfNotPresent\n",
        image(m.name),
        d.image
    );
    s += &comment(
        "Istio sets no vm_id and delivers the filter over ECDS; the module keeps its state \
         per plugin instance.",
        2,
    );
    s += &format!("  pluginName: {}\n  type: HTTP\n", m.name);
    s += &comment(&format!("{}: {}.", p.phase, p.phase_why), 2);
    s += &format!("  phase: {}\n", p.phase);
    if let Some(pr) = p.priority {
        s += &format!("  priority: {pr}\n");
    }
    s += &format!("  match:\n  - mode: {}\n", p.side.istio_mode());
    s += &istio_fail(p, 2);
    s += "  pluginConfig:\n";
    s += &yaml_block(&p.config, 4)?;
    Ok(s)
}

fn traffic_extension(m: &Module, d: &Digests, p: &Plugin) -> anyhow::Result<String> {
    let mut s = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata:\n  name: \
         {}\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: {}\n",
        p.resource,
        p.side.app()
    );
    s += &comment(&format!("{}: {}.", p.phase, p.phase_why), 2);
    s += &format!("  phase: {}\n", p.phase);
    if let Some(pr) = p.priority {
        s += &format!("  priority: {pr}\n");
    }
    s += &format!("  match:\n  - mode: {}\n", p.side.istio_mode());
    s += &format!(
        "  wasm:\n    url: oci://{}\n    sha256: {}\n    imagePullPolicy: IfNotPresent\n    \
         pluginName: {}\n    type: HTTP\n",
        image(m.name),
        d.image,
        m.name
    );
    s += &istio_fail(p, 4);
    s += "    pluginConfig:\n";
    s += &yaml_block(&p.config, 6)?;
    Ok(s)
}

fn extension_policy(m: &Module, d: &Digests, http: bool) -> anyhow::Result<String> {
    let p = &m.gateway;
    let mut s = format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata:\n  \
         name: {}\n  namespace: default\nspec:\n",
        p.resource
    );
    s += &comment(
        "Every rule of the HTTPRoute `reviews` runs the filter; Envoy Gateway orders wasm \
         filters by its own filter order (there is no priority field).",
        2,
    );
    s += "  targetRefs:\n  - group: gateway.networking.k8s.io\n    kind: HTTPRoute\n    \
          name: reviews\n  wasm:\n";
    s += &format!("  - name: {}\n    rootID: {}\n    code:\n", m.name, m.name);
    if http {
        s += &comment(
            "Served over HTTPS (target/filters/<name>.wasm), pinned by the module's sha256.",
            6,
        );
        s += &format!(
            "      type: HTTP\n      http:\n        url: {}\n        sha256: {}\n",
            http_url(m.name),
            d.module
        );
    } else {
        s += &comment(
            "The compat image (`cargo xtask package`), pinned by its manifest digest.",
            6,
        );
        s += &format!(
            "      type: Image\n      image:\n        url: {}\n        sha256: {}\n      \
             pullPolicy: IfNotPresent\n",
            image(m.name),
            d.image
        );
    }
    let what = if p.fail_open {
        "fail open"
    } else {
        "fail closed"
    };
    s += &comment(&format!("{what}: {}.", p.fail_why), 4);
    s += &comment(&format!("failOpen {FAIL_OPEN_SCOPE}"), 4);
    s += &format!("    failOpen: {}\n", p.fail_open);
    s += "    config:\n";
    s += &yaml_block(&p.config, 6)?;
    Ok(s)
}

/// A JSON object with its keys in the order given (not serde_json's map order).
fn object(pairs: Vec<(&str, serde_yaml::Value)>) -> serde_yaml::Value {
    serde_yaml::Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (serde_yaml::Value::from(k), v))
            .collect(),
    )
}

fn text(s: &str) -> serde_yaml::Value {
    serde_yaml::Value::from(s)
}

fn json_file(v: &serde_yaml::Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

fn service_defaults(m: &Module, d: &Digests, p: &Plugin) -> anyhow::Result<String> {
    let config = config_for_consul(m.name, &p.config);
    let configuration = serde_json::to_string(&sorted(&config))?;
    let what = if p.fail_open {
        "Required false (fail open)"
    } else {
        "Required true (fail closed)"
    };
    let mut meta = vec![
        (
            "generated-by",
            text("cargo xtask resources from xtask/src/resources and plugin-config.json"),
        ),
        ("failure-policy", text(&format!("{what}: {}", p.fail_why))),
        (
            "placement",
            text(&format!(
                "{} listener of {}: {}",
                p.side.consul_listener(),
                p.side.app(),
                p.phase_why
            )),
        ),
        (
            "support",
            text(
                "Consul's supported Envoy versions stop below 1.40, which these modules are \
                 built and tested for",
            ),
        ),
    ];
    if config != p.config {
        meta.push((
            "trust-domain",
            text("replace the placeholder trust_domain with your cluster's (TrustDomain in /v1/connect/ca/roots)"),
        ));
    }
    let extension = object(vec![
        ("Name", text("builtin/wasm")),
        ("Required", serde_yaml::Value::from(!p.fail_open)),
        (
            "Arguments",
            object(vec![
                ("Protocol", text("http")),
                ("ListenerType", text(p.side.consul_listener())),
                (
                    "PluginConfig",
                    object(vec![
                        ("Name", text(m.name)),
                        ("RootID", text(m.name)),
                        ("Configuration", text(&configuration)),
                        (
                            "VmConfig",
                            object(vec![
                                ("Runtime", text("v8")),
                                (
                                    "Code",
                                    object(vec![(
                                        "Remote",
                                        object(vec![
                                            (
                                                "HttpURI",
                                                object(vec![
                                                    (
                                                        "Service",
                                                        object(vec![(
                                                            "Name",
                                                            text(CONSUL_FILE_SERVICE),
                                                        )]),
                                                    ),
                                                    (
                                                        "URI",
                                                        text(&format!(
                                                            "https://{CONSUL_FILE_SERVICE}/{}/{}.wasm",
                                                            version(),
                                                            m.name
                                                        )),
                                                    ),
                                                    ("Timeout", text("10s")),
                                                ]),
                                            ),
                                            ("SHA256", text(&d.module)),
                                        ]),
                                    )]),
                                ),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ]);
    json_file(&object(vec![
        ("Kind", text("service-defaults")),
        ("Name", text(p.side.app())),
        ("Meta", object(meta)),
        ("Protocol", text("http")),
        (
            "EnvoyExtensions",
            serde_yaml::Value::Sequence(vec![extension]),
        ),
    ]))
}

/// The subsets the canary configuration splits the first service into, the heaviest first.
fn canary_subsets(config: &Value) -> anyhow::Result<(String, String, Vec<String>)> {
    let header = config
        .get("route_header")
        .and_then(Value::as_str)
        .unwrap_or("x-canary-subset")
        .to_owned();
    let service = config
        .pointer("/services/0")
        .context("the canary configuration has no service")?;
    let host = service
        .get("host")
        .and_then(Value::as_str)
        .context("services[0].host")?
        .to_owned();
    let mut subsets: Vec<(i64, String)> = service
        .get("subsets")
        .and_then(Value::as_array)
        .context("services[0].subsets")?
        .iter()
        .filter_map(|s| {
            Some((
                s.get("weight").and_then(Value::as_i64).unwrap_or(0),
                s.get("name")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    subsets.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok((header, host, subsets.into_iter().map(|(_, n)| n).collect()))
}

fn service_router(config: &Value) -> anyhow::Result<String> {
    let (header, host, subsets) = canary_subsets(config)?;
    let routes = subsets
        .iter()
        .map(|s| {
            object(vec![
                (
                    "Match",
                    object(vec![(
                        "HTTP",
                        object(vec![(
                            "Header",
                            serde_yaml::Value::Sequence(vec![object(vec![
                                ("Name", text(&header)),
                                ("Exact", text(s)),
                            ])]),
                        )]),
                    )]),
                ),
                (
                    "Destination",
                    object(vec![("Service", text(&host)), ("ServiceSubset", text(s))]),
                ),
            ])
        })
        .collect();
    json_file(&object(vec![
        ("Kind", text("service-router")),
        ("Name", text(&host)),
        (
            "Meta",
            object(vec![(
                "why",
                text(&format!(
                    "routes on the {header} header the canary filter writes on the caller (it \
                     replaces any value a client sends); no header goes to the resolver's \
                     default subset"
                )),
            )]),
        ),
        ("Routes", serde_yaml::Value::Sequence(routes)),
    ]))
}

fn service_resolver(config: &Value) -> anyhow::Result<String> {
    let (_, host, subsets) = canary_subsets(config)?;
    let stable = subsets.first().context("no subsets")?.clone();
    let defs = subsets
        .iter()
        .map(|s| {
            (
                serde_yaml::Value::from(s.as_str()),
                object(vec![(
                    "Filter",
                    text(&format!("Service.Meta.version == {s}")),
                )]),
            )
        })
        .collect();
    json_file(&object(vec![
        ("Kind", text("service-resolver")),
        ("Name", text(&host)),
        (
            "Meta",
            object(vec![(
                "why",
                text("the canary's subsets by the instances' version metadata; requests without a decision go to the heaviest (stable) one"),
            )]),
        ),
        ("DefaultSubset", text(&stable)),
        ("Subsets", serde_yaml::Value::Mapping(defs)),
    ]))
}

/// Every file of module `name` (path relative to the repository root, contents).
pub fn render(name: &str, d: &Digests) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let m = module(name)?;
    for p in m.plugins.iter().chain([&m.gateway]) {
        validate_config(name, &p.config)
            .with_context(|| format!("{name}: the configuration of {}", p.resource))?;
        validate_config(name, &config_for_consul(name, &p.config))
            .with_context(|| format!("{name}: the Consul configuration of {}", p.resource))?;
    }
    let dir = PathBuf::from("envoy-config").join(name);
    let mut files = Vec::new();
    let sides = m
        .plugins
        .iter()
        .map(|p| format!("{} ({}, {})", p.resource, p.side.app(), p.side.istio_mode()))
        .collect::<Vec<_>>()
        .join(" and ");

    let mut wp = header(&format!(
        "The {name} module on Istio sidecars: {sides}. Apply with `kubectl apply -f`; check \
         with `istioctl proxy-config listeners <pod> -o json | grep {name}` and the pod's \
         Envoy log."
    ));
    let mut te = header(&format!(
        "The {name} module as Istio 1.30+ TrafficExtensions (WasmPlugin's successor): {sides}."
    ));
    for (i, p) in m.plugins.iter().enumerate() {
        if i > 0 {
            wp += "---\n";
            te += "---\n";
        }
        wp += &wasm_plugin(&m, d, p)?;
        te += &traffic_extension(&m, d, p)?;
    }
    if name == "telemetry" {
        wp += "---\n";
        wp += &telemetry_bootstrap_override()?;
    }
    files.push((dir.join("istio/wasmplugin.yaml"), wp));
    files.push((dir.join("istio/trafficextension.yaml"), te));

    for (file, http, how) in [
        ("extension-policy-image.yaml", false, "from the OCI image"),
        ("extension-policy-http.yaml", true, "over HTTPS"),
    ] {
        let mut s = header(&format!(
            "The {name} module on Envoy Gateway, fetched {how}. Check with `kubectl get \
             envoyextensionpolicy {} -o yaml` (status Accepted) and the gateway's Envoy log.",
            m.gateway.resource
        ));
        s += &extension_policy(&m, d, http)?;
        files.push((dir.join("envoy-gateway").join(file), s));
    }

    for p in &m.plugins {
        files.push((
            dir.join(format!("consul/service-defaults-{}.json", p.side.app())),
            service_defaults(&m, d, p)?,
        ));
    }
    if name == "canary" {
        let c = &m.plugins.first().context("canary has a plugin")?.config;
        let (_, host, _) = canary_subsets(c)?;
        files.push((
            dir.join(format!("consul/service-router-{host}.json")),
            service_router(c)?,
        ));
        files.push((
            dir.join(format!("consul/service-resolver-{host}.json")),
            service_resolver(c)?,
        ));
    }
    Ok(files)
}

/// The ConfigMap a telemetry sidecar's `sidecar.istio.io/bootstrapOverride` names: the stats
/// tags and byte buckets of `envoy-config/telemetry/envoy.yaml`.
fn telemetry_bootstrap_override() -> anyhow::Result<String> {
    let path = root().join("envoy-config/telemetry/envoy.yaml");
    let boot: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    let stats = boot
        .get("stats_config")
        .context("envoy-config/telemetry/envoy.yaml has no stats_config")?;
    let mut keep = serde_yaml::Mapping::new();
    for k in ["stats_tags", "histogram_bucket_settings"] {
        if let Some(v) = stats.get(k) {
            keep.insert(serde_yaml::Value::from(k), v.clone());
        }
    }
    let json = serde_json::to_string_pretty(&object(vec![(
        "stats_config",
        serde_yaml::Value::Mapping(keep),
    )]))?;
    let mut s = comment(
        "The telemetry sidecars need the stats tags of stats-tags.yaml in their bootstrap: \
         this ConfigMap, named by the pod annotation `sidecar.istio.io/bootstrapOverride: \
         telemetry-stats-tags`, and Istio must keep the custom stats (pod annotation \
         `proxy.istio.io/config: '{\"proxyStatsMatcher\": {\"inclusionPrefixes\": \
         [\"wasmcustom.\"]}}'`). Disable Istio's own metrics for these workloads (Telemetry \
         API) so the istio_* series are not reported twice.",
        0,
    );
    s += "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: telemetry-stats-tags\n  \
          namespace: default\ndata:\n  custom_bootstrap.json: |\n";
    for l in json.lines() {
        s += &format!("    {l}\n");
    }
    Ok(s)
}

/// Runs `config` through module `name`'s own root (compile and bind against a fake host), as
/// Envoy's `on_configure` would.
pub fn validate_config(name: &str, config: &Value) -> anyhow::Result<()> {
    use sdk_shim::RootFilter;
    fn run<R: RootFilter + Default>(bytes: &[u8]) -> anyhow::Result<()> {
        let host = sdk_shim::testing::FakeHost::new();
        let mut root = R::default();
        ensure!(
            root.on_configure(&host, bytes),
            "rejected by the filter: {:?}",
            host.logs()
        );
        Ok(())
    }
    let bytes = serde_json::to_vec(config)?;
    match name {
        "canary" => run::<filter_canary::CanaryRoot>(&bytes),
        "intentions" => run::<filter_intentions::IntentionsRoot>(&bytes),
        "ratelimit" => run::<filter_ratelimit::RateLimitRoot>(&bytes),
        "telemetry" => run::<filter_telemetry::TelemetryRoot>(&bytes),
        "suite" => run::<filter_suite::SuiteRoot>(&bytes),
        other => anyhow::bail!("no validator for module {other:?}"),
    }
}

/// The digests the committed resources of `name` pin (zeros when there are none yet).
pub fn committed_digests(name: &str) -> anyhow::Result<Digests> {
    let dir = root().join("envoy-config").join(name);
    let read = |rel: &str| -> anyhow::Result<Option<Value>> {
        let path = dir.join(rel);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        let first = text.split("\n---\n").next().unwrap_or("");
        Ok(Some(serde_yaml::from_str(first)?))
    };
    let image = read("istio/wasmplugin.yaml")?
        .and_then(|v| v.pointer("/spec/sha256")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| NO_DIGEST.to_owned());
    let module = read("envoy-gateway/extension-policy-http.yaml")?
        .and_then(|v| {
            v.pointer("/spec/wasm/0/code/http/sha256")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| NO_DIGEST.to_owned());
    Ok(Digests { image, module })
}

/// The digests of `target/oci/<name>/` when packaged, else the committed ones.
pub fn current_digests(name: &str) -> anyhow::Result<Digests> {
    let layout = root().join("target/oci").join(name);
    if layout.join("index.json").exists() {
        return Ok(Digests::from_packaged(&mesh_e2e::oci::read_layout(
            &layout,
        )?));
    }
    committed_digests(name)
}

/// Writes module `name`'s resources; returns the files written.
pub fn write(name: &str, d: &Digests) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, text) in render(name, d)? {
        let path = root().join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        check_file(&rel, &text)?;
        std::fs::write(&path, text)?;
        written.push(rel);
    }
    Ok(written)
}

/// Parses a rendered file against its mesh's schema (see [`schema`]).
pub fn check_file(rel: &Path, text: &str) -> anyhow::Result<()> {
    let ctx = || format!("{}", rel.display());
    if rel.extension().is_some_and(|e| e == "json") {
        let v: Value = serde_json::from_str(text).with_context(ctx)?;
        match v.get("Kind").and_then(Value::as_str) {
            Some("service-defaults") => schema::service_defaults(&v).map(|_| ()),
            Some("service-router") => schema::service_router(&v).map(|_| ()),
            Some("service-resolver") => schema::service_resolver(&v).map(|_| ()),
            other => anyhow::bail!("unknown Consul config entry kind {other:?}"),
        }
        .with_context(ctx)?;
        return Ok(());
    }
    for doc in text.split("\n---\n") {
        let v: Value = serde_yaml::from_str(doc).with_context(ctx)?;
        match v.get("kind").and_then(Value::as_str) {
            Some("WasmPlugin") => schema::wasm_plugin(&v).map(|_| ()),
            Some("TrafficExtension") => schema::traffic_extension(&v).map(|_| ()),
            Some("EnvoyExtensionPolicy") => schema::extension_policy(&v).map(|_| ()),
            Some("ConfigMap") => Ok(()),
            other => anyhow::bail!("unexpected kind {other:?}"),
        }
        .with_context(ctx)?;
    }
    Ok(())
}

/// `cargo xtask resources`: rewrites every module's resources, with the packaged digests
/// where `target/oci/<name>/` exists and the committed ones otherwise.
pub fn resources() -> anyhow::Result<()> {
    for name in MODULES {
        let d = current_digests(name)?;
        for f in write(name, &d)? {
            println!("  {}", f.display());
        }
    }
    Ok(())
}
