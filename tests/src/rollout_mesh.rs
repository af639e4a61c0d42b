//! The mesh the rollout tests and the demo run `mfctl rollout` against: the shipped canary ECDS
//! bootstrap (its file copied per run) in front of two versions of `reviews`, each behind its
//! own "sidecar" (an Envoy internal listener with the telemetry filter as the destination
//! reporter, workload version v1 or v2, so `istio_requests_total` and
//! `istio_request_duration_milliseconds` carry `destination_version` as Istio's sidecars
//! report them), with the shipped stats_tags; and traffic through it.

use crate::envoy::wasm_filter;
use crate::{client, repo_root, Envoy, Stub};
use anyhow::Context;
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// How the canary version behaves.
#[derive(Clone, Copy, PartialEq)]
pub enum Canary {
    Healthy,
    /// Every v2 answer is delayed by 600 ms (Envoy's fault filter in its sidecar).
    Slow,
}

/// One scenario's mesh: stubs, the watched ECDS file and Envoy.
pub struct Mesh {
    pub v1: Stub,
    pub v2: Stub,
    /// The watched ECDS file holding the canary configuration.
    pub ecds: PathBuf,
    pub envoy: Envoy,
}

fn yaml(text: &str) -> anyhow::Result<Yaml> {
    serde_yaml::from_str(text).with_context(|| format!("parsing {text}"))
}

fn seq_mut<'a>(doc: &'a mut Yaml, path: &[&str]) -> Option<&'a mut Vec<Yaml>> {
    path.iter()
        .try_fold(doc, |v, k| v.get_mut(*k))?
        .as_sequence_mut()
}

/// A sidecar of version `version`: an internal listener reporting as the destination.
fn sidecar(version: &str, slow: bool) -> anyhow::Result<Yaml> {
    let telemetry = json!({"reporter": "destination", "workload": {
        "name": format!("reviews-{version}"), "namespace": "default",
        "service": "reviews", "app": "reviews", "version": version},
        "access_log": {"enabled": false}});
    let module = repo_root().join("target/filters/telemetry.wasm");
    let mut filters = vec![wasm_filter("telemetry", &module, &telemetry.to_string())];
    if slow {
        filters.push(yaml(
            r#"
name: envoy.filters.http.fault
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
  delay: {fixed_delay: 0.6s, percentage: {numerator: 100, denominator: HUNDRED}}
"#,
        )?);
    }
    filters.push(yaml(
        r#"
name: envoy.filters.http.router
typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
    )?);
    let mut l = yaml(&format!(
        r#"
name: reviews-{version}
internal_listener: {{}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: sidecar_{version}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{{match: {{prefix: "/"}}, route: {{cluster: stub_{version}}}}}]
"#
    ))?;
    let hcm = seq_mut(&mut l, &["filter_chains"])
        .and_then(|fc| fc.first_mut())
        .and_then(|fc| fc.get_mut("filters"))
        .and_then(Yaml::as_sequence_mut)
        .and_then(|f| f.first_mut())
        .and_then(|f| f.get_mut("typed_config"))
        .and_then(Yaml::as_mapping_mut)
        .context("the sidecar has no connection manager")?;
    hcm.insert("http_filters".into(), Yaml::Sequence(filters));
    Ok(l)
}

/// The canary configuration's subset weights (v1, v2) in the ECDS document `doc`.
pub fn weights_in(doc: &Value) -> Option<(i64, i64)> {
    let text = doc
        .pointer("/resources/0/typed_config/config/configuration/value")?
        .as_str()?;
    let cfg: Value = serde_json::from_str(text).ok()?;
    let w = |i: usize| {
        cfg.pointer(&format!("/services/0/subsets/{i}/weight"))
            .and_then(Value::as_i64)
    };
    Some((w(0)?, w(1)?))
}

// === impl Mesh ===

impl Mesh {
    /// The shipped canary ECDS bootstrap, its file copied for this run with the guard
    /// `rollback` (or none) and all traffic on v1, the subsets behind sidecars, the shipped
    /// stats_tags, histograms flushed every second.
    pub fn start(name: &str, canary: Canary, rollback: Option<Value>) -> anyhow::Result<Self> {
        crate::module_path("canary")?;
        crate::module_path("telemetry")?;
        let work = repo_root().join("target/e2e").join(format!(
            "rollout-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let watched = work.join("ecds");
        std::fs::create_dir_all(&watched)?;
        let ecds = watched.join("canary.yaml");
        let mut service = json!({"host": "reviews",
            "subsets": [{"name": "v1", "weight": 100}, {"name": "v2", "weight": 0}]});
        if let (Some(r), Some(m)) = (rollback, service.as_object_mut()) {
            m.insert("rollback".into(), r);
        }
        let shipped = repo_root().join("envoy-config/canary/ecds/canary.yaml");
        let mut doc: Value = serde_yaml::from_str(&std::fs::read_to_string(shipped)?)?;
        mesh_cli::apply::set_plugin_config(
            &mut doc,
            None,
            &json!({"services": [service]}).to_string(),
        )
        .map_err(anyhow::Error::msg)?;
        std::fs::write(&ecds, serde_yaml::to_string(&doc)?)?;

        let v1 = Stub::start("reviews-v1")?;
        let v2 = Stub::start("reviews-v2")?;
        let tags = yaml(&std::fs::read_to_string(
            repo_root().join("envoy-config/telemetry/stats-tags.yaml"),
        )?)?;
        let source = yaml(&format!(
            "{{path: {:?}, watched_directory: {{path: {:?}}}}}",
            ecds.display().to_string(),
            watched.display().to_string()
        ))?;
        let extensions = yaml(
            r#"[{name: envoy.bootstrap.internal_listener, typed_config: {"@type": type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener}}]"#,
        )?;
        let sidecars = [
            sidecar("v1", false)?,
            sidecar("v2", canary == Canary::Slow)?,
        ];
        let mut endpoints = Vec::new();
        let mut stubs = Vec::new();
        for (v, port) in [("v1", v1.port()), ("v2", v2.port())] {
            endpoints.push(yaml(&format!(
                "[{{lb_endpoints: [{{endpoint: {{address: {{envoy_internal_address: {{server_listener_name: reviews-{v}}}}}}}}}]}}]"
            ))?);
            stubs.push(crate::envoy::loopback_cluster(&format!("stub_{v}"), port)?);
        }
        let envoy = Envoy::builder("envoy-config/canary/envoy-ecds.yaml")
            .concurrency(1)
            .edit(move |doc| {
                let _ = edit_bootstrap(doc, source, tags, extensions, sidecars, endpoints, stubs);
            })
            .start()?;
        Ok(Self {
            v1,
            v2,
            ecds,
            envoy,
        })
    }

    /// The weights of v1 and v2 in the ECDS file.
    pub fn weights(&self) -> anyhow::Result<(i64, i64)> {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&self.ecds)?)?;
        weights_in(&doc).context("the ECDS file has no weights for reviews")
    }
}

/// Points the ECDS subscription at this run's file, adds the stats tags, the internal
/// listener extension, the sidecars and the stub clusters. `None` when the bootstrap is not
/// shaped as shipped (Envoy then refuses it, or the weights never apply, and the run fails).
fn edit_bootstrap(
    doc: &mut Yaml,
    source: Yaml,
    tags: Yaml,
    extensions: Yaml,
    sidecars: [Yaml; 2],
    endpoints: Vec<Yaml>,
    stubs: Vec<Yaml>,
) -> Option<()> {
    let hcm = crate::envoy::hcm_mut(doc)?;
    let canary = hcm
        .get_mut("http_filters")?
        .as_sequence_mut()?
        .first_mut()?;
    let src = canary
        .get_mut("config_discovery")?
        .get_mut("config_source")?
        .as_mapping_mut()?;
    src.insert("path_config_source".into(), source);
    let m = doc.as_mapping_mut()?;
    m.insert("stats_config".into(), tags);
    // Histograms reach /stats/prometheus at each flush.
    m.insert("stats_flush_interval".into(), "1s".into());
    m.insert("bootstrap_extensions".into(), extensions);
    seq_mut(doc, &["static_resources", "listeners"])?.extend(sidecars);
    let clusters = seq_mut(doc, &["static_resources", "clusters"])?;
    for (c, eps) in clusters.iter_mut().zip(endpoints) {
        let la = c.get_mut("load_assignment")?.as_mapping_mut()?;
        la.insert("endpoints".into(), eps);
    }
    clusters.extend(stubs);
    Some(())
}

/// Requests flowing through the front listener until dropped, each from a new user (so the
/// split follows the weights), about 150 a second.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// Three clients, so slow answers of one do not stall the others.
    pub fn start(envoy: &Envoy) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..3)
            .map(|t| {
                let url = envoy.url("/reviews/1");
                let s = stop.clone();
                std::thread::spawn(move || {
                    let http = client();
                    let mut i = 0u64;
                    while !s.load(Ordering::Relaxed) {
                        let _ = http
                            .get(&url)
                            .header("host", "reviews")
                            .header("x-user-id", format!("user-{t}-{i}"))
                            .send()
                            .and_then(|r| r.bytes());
                        i += 1;
                        std::thread::sleep(Duration::from_millis(15));
                    }
                })
            })
            .collect();
        Self { stop, handles }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
