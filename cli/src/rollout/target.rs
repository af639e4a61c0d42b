//! Where a rollout's weights go: the canary filter's configuration in an ECDS file (written
//! as `mfctl apply` writes: validated, temporary file, fsync, rename), or in an Istio
//! WasmPlugin / TrafficExtension or Envoy Gateway EnvoyExtensionPolicy that is printed for a
//! GitOps pipeline to commit. The configuration may be the canary filter's or the suite's
//! (its `canary` part).

use crate::check::{self, Options};
use crate::find;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// What the target file is, and so what a step does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// An ECDS file, rewritten atomically at each step.
    Ecds,
    /// An Istio WasmPlugin (or TrafficExtension), printed at each step.
    Wasmplugin,
    /// An Envoy Gateway EnvoyExtensionPolicy, printed at each step.
    #[value(name = "envoyextensionpolicy", alias = "extension-policy")]
    ExtensionPolicy,
}

/// The loaded target and which subsets a rollout moves weight between.
#[derive(Debug, Clone)]
pub struct Target {
    path: PathBuf,
    output: Output,
    resource: Option<String>,
    doc: Value,
    service: String,
    canary: String,
    stable: String,
}

/// What the canary filter's configuration says about the rolled-out service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    /// The label of the service in the filter's stat names (`reviews.default` ->
    /// `reviews_default`).
    pub stat_label: String,
    /// Whether the filter's rollback guard watches the canary subset.
    pub guarded: bool,
    /// Current weights of the canary and the stable subsets.
    pub weights: (i64, i64),
}

const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

fn is_canary_module(cap: Option<&str>) -> bool {
    matches!(cap, Some("canary" | "suite"))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

/// The canary part of a plugin configuration (the whole of it, or a suite's `canary`).
fn canary_part(config: &mut Value, suite: bool) -> Result<&mut Value, String> {
    if suite {
        config
            .get_mut("canary")
            .ok_or_else(|| "the suite's configuration has no canary part".to_owned())
    } else {
        Ok(config)
    }
}

// === impl Target ===

impl Target {
    /// Reads `path` and checks that it holds one canary configuration with `service`, whose
    /// subsets are `canary`, `stable` (default: the only other one) and others at weight 0.
    pub fn load(
        path: &Path,
        output: Output,
        resource: Option<&str>,
        service: &str,
        canary: &str,
        stable: Option<&str>,
    ) -> Result<Self, String> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
        let docs = check::documents(path, &bytes).map_err(|e| format!("{shown}: {e}"))?;
        let doc = match docs.as_slice() {
            [(_, d)] => d.clone(),
            _ => return Err(format!("{shown}: expected one document")),
        };
        let mut t = Self {
            path: path.to_path_buf(),
            output,
            resource: resource.map(str::to_owned),
            doc,
            service: service.to_owned(),
            canary: canary.to_owned(),
            stable: String::new(),
        };
        let names = t.with_service(&mut t.doc.clone(), |svc| {
            Ok(svc
                .get("subsets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| {
                            Some((
                                s.get("name")?.as_str()?.to_owned(),
                                s.get("weight")?.as_i64()?,
                            ))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default())
        })?;
        if !names.iter().any(|(n, _)| n == canary) {
            return Err(format!(
                "{shown}: service {service:?} has no subset {canary:?}"
            ));
        }
        let others: Vec<&(String, i64)> = names.iter().filter(|(n, _)| n != canary).collect();
        t.stable = match (stable, others.as_slice()) {
            (Some(s), _) if others.iter().any(|(n, _)| n == s) => s.to_owned(),
            (Some(s), _) => {
                return Err(format!("{shown}: service {service:?} has no subset {s:?}"))
            }
            (None, [(only, _)]) => only.clone(),
            (None, []) => {
                return Err(format!(
                    "{shown}: service {service:?} has no subset besides {canary:?}"
                ))
            }
            (None, _) => {
                return Err(format!(
                    "{shown}: service {service:?} has several other subsets: name the stable one with --stable"
                ))
            }
        };
        if let Some((n, w)) = others.iter().find(|(n, w)| *n != t.stable && *w != 0) {
            return Err(format!(
                "{shown}: subset {n:?} of {service:?} has weight {w}: a rollout moves weight between {canary:?} and {:?} only, set it to 0 first",
                t.stable
            ));
        }
        Ok(t)
    }

    pub fn stable(&self) -> &str {
        &self.stable
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn output(&self) -> Output {
        self.output
    }

    /// The service as the canary filter compiles it: its stat label, its guard, its weights.
    pub fn service_info(&self) -> Result<ServiceInfo, String> {
        let mut doc = self.doc.clone();
        let config = self.with_config(&mut doc, |c| Ok(c.clone()))?;
        let compiled = mesh_canary::Canary::from_json(config.to_string().as_bytes())
            .map_err(|e| format!("{}: canary: {e}", self.path.display()))?;
        let svc = compiled
            .services()
            .iter()
            .find(|s| s.host() == self.service)
            .ok_or_else(|| format!("no service {:?}", self.service))?;
        let index = |name: &str| svc.subsets().iter().position(|s| s == name);
        let weight = |name: &str| {
            index(name)
                .and_then(|i| svc.weights().get(i))
                .and_then(|w| i64::try_from(*w).ok())
                .unwrap_or(0)
        };
        Ok(ServiceInfo {
            stat_label: svc.stat_label().to_owned(),
            guarded: svc
                .guard()
                .is_some_and(|g| index(&self.canary) == Some(g.subset())),
            weights: (weight(&self.canary), weight(&self.stable)),
        })
    }

    /// Runs `f` on the canary configuration in `doc` (the canary filter's, or the suite's
    /// canary part), writing it back.
    fn with_config<T>(
        &self,
        doc: &mut Value,
        f: impl FnOnce(&mut Value) -> Result<T, String>,
    ) -> Result<T, String> {
        let shown = self.path.display();
        let kind = str_at(doc, &["kind"]).unwrap_or("").to_owned();
        match (self.output, kind.as_str()) {
            (Output::Ecds, _) => {
                let (slot, suite) = self.ecds_slot(doc)?;
                let text = slot.get("value").and_then(Value::as_str).ok_or_else(|| {
                    format!("{shown}: the canary filter's configuration is not a StringValue")
                })?;
                let mut config: Value = serde_json::from_str(text)
                    .map_err(|e| format!("{shown}: the canary configuration is not JSON: {e}"))?;
                let out = f(canary_part(&mut config, suite)?)?;
                *slot = json!({"@type": STRING_VALUE, "value": config.to_string()});
                Ok(out)
            }
            (Output::Wasmplugin, "WasmPlugin" | "TrafficExtension") => {
                let spec = doc
                    .get_mut("spec")
                    .ok_or_else(|| format!("{shown}: no spec"))?;
                let plugin = if kind == "WasmPlugin" {
                    spec
                } else {
                    spec.get_mut("wasm")
                        .ok_or_else(|| format!("{shown}: no spec.wasm"))?
                };
                let cap =
                    find::capability_of(str_at(plugin, &["url"]), str_at(plugin, &["pluginName"]));
                if !is_canary_module(cap) {
                    return Err(format!(
                        "{shown}: the {kind} is not the canary or suite module"
                    ));
                }
                let config = plugin
                    .get_mut("pluginConfig")
                    .ok_or_else(|| format!("{shown}: no pluginConfig"))?;
                f(canary_part(config, cap == Some("suite"))?)
            }
            (Output::ExtensionPolicy, "EnvoyExtensionPolicy") => {
                let wasm = doc
                    .get_mut("spec")
                    .and_then(|s| s.get_mut("wasm"))
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| format!("{shown}: no spec.wasm list"))?;
                let mut found: Vec<(&mut Value, bool)> = wasm
                    .iter_mut()
                    .filter(|w| {
                        self.resource
                            .as_deref()
                            .is_none_or(|r| str_at(w, &["name"]) == Some(r))
                    })
                    .filter_map(|w| {
                        let module = str_at(w, &["code", "http", "url"])
                            .or_else(|| str_at(w, &["code", "image", "url"]));
                        let cap = find::capability_of(module, str_at(w, &["rootID"]));
                        is_canary_module(cap).then_some((w, cap == Some("suite")))
                    })
                    .collect();
                let count = found.len();
                let (w, suite) = match found.pop() {
                    Some(one) if count == 1 => one,
                    Some(_) => {
                        return Err(format!(
                        "{shown}: {count} canary modules in spec.wasm: name one with --resource"
                    ))
                    }
                    None => return Err(format!("{shown}: no canary or suite module in spec.wasm")),
                };
                let config = w
                    .get_mut("config")
                    .ok_or_else(|| format!("{shown}: the canary module has no config"))?;
                f(canary_part(config, suite)?)
            }
            (Output::Wasmplugin, k) | (Output::ExtensionPolicy, k) => Err(format!(
                "{shown}: a {} is expected here, not {}",
                if self.output == Output::Wasmplugin {
                    "WasmPlugin"
                } else {
                    "EnvoyExtensionPolicy"
                },
                if k.is_empty() {
                    "a document without kind"
                } else {
                    k
                }
            )),
        }
    }

    /// The `configuration` of the one canary (or suite) filter in an ECDS document.
    fn ecds_slot<'a>(&self, doc: &'a mut Value) -> Result<(&'a mut Value, bool), String> {
        let shown = self.path.display();
        let resources = doc
            .get_mut("resources")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| format!("{shown}: not an ECDS file (no resources list)"))?;
        let mut found = Vec::new();
        for r in resources.iter_mut() {
            let name = str_at(r, &["name"]).map(str::to_owned);
            if self
                .resource
                .as_deref()
                .is_some_and(|want| name.as_deref() != Some(want))
            {
                continue;
            }
            let Some(config) = r.get_mut("typed_config").and_then(|t| t.get_mut("config")) else {
                continue;
            };
            let module = str_at(config, &["vm_config", "code", "local", "filename"])
                .or_else(|| str_at(config, &["vm_config", "code", "remote", "http_uri", "uri"]));
            let cap = find::capability_of(module, str_at(config, &["root_id"]));
            if is_canary_module(cap) {
                if let Some(slot) = config.get_mut("configuration") {
                    found.push((slot, cap == Some("suite")));
                }
            }
        }
        let count = found.len();
        match found.pop() {
            Some(one) if count == 1 => Ok(one),
            Some(_) => Err(format!(
                "{shown}: {count} canary filters: name one with --resource"
            )),
            None => Err(format!(
                "{shown}: no canary or suite filter with a configuration"
            )),
        }
    }

    /// Runs `f` on the rolled-out service's entry.
    fn with_service<T>(
        &self,
        doc: &mut Value,
        f: impl FnOnce(&mut Value) -> Result<T, String>,
    ) -> Result<T, String> {
        let service = self.service.clone();
        let shown = self.path.display().to_string();
        self.with_config(doc, move |config| {
            let svc = config
                .get_mut("services")
                .and_then(Value::as_array_mut)
                .and_then(|a| {
                    a.iter_mut()
                        .find(|s| s.get("host").and_then(Value::as_str) == Some(service.as_str()))
                })
                .ok_or_else(|| {
                    format!(
                        "{shown}: the canary configuration has no service with host {service:?}"
                    )
                })?;
            f(svc)
        })
    }

    /// The target's text with the canary at `weight` percent and the stable subset at the
    /// rest, checked the way `mfctl check` reads it.
    pub fn render(&self, weight: u32) -> Result<String, String> {
        let mut doc = self.doc.clone();
        let (canary, stable) = (self.canary.clone(), self.stable.clone());
        self.with_service(&mut doc, |svc| {
            let subsets = svc
                .get_mut("subsets")
                .and_then(Value::as_array_mut)
                .ok_or("the service has no subsets")?;
            for s in subsets.iter_mut() {
                let w = match s.get("name").and_then(Value::as_str) {
                    Some(n) if n == canary => weight,
                    Some(n) if n == stable => 100u32.saturating_sub(weight),
                    _ => continue,
                };
                if let Some(m) = s.as_object_mut() {
                    m.insert("weight".into(), Value::from(w));
                }
            }
            Ok(())
        })?;
        let json_out = self.path.extension().is_some_and(|e| e == "json");
        let text = if json_out {
            let mut t = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            t.push('\n');
            t
        } else {
            serde_yaml::to_string(&doc).map_err(|e| e.to_string())?
        };
        let shown = self.path.display().to_string();
        let report = check::check_content(&shown, &self.path, text.as_bytes(), Options::default());
        if !report.ok {
            let reasons: Vec<String> = report
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.reason))
                .collect();
            return Err(format!(
                "{shown}: the configuration at {weight} % is invalid: {}",
                reasons.join("; ")
            ));
        }
        Ok(text)
    }

    /// Replaces the ECDS file with `text` atomically.
    pub fn write(&self, text: &str) -> Result<(), String> {
        crate::apply::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests;
