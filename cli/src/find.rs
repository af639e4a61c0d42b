//! Finds our plugin configurations inside a document, and which capability each is for.
//!
//! How a document is read:
//! - `kind: WasmPlugin` (Istio): `spec.pluginConfig`; `kind: TrafficExtension` (Istio):
//!   `spec.wasm.pluginConfig`; `kind: EnvoyExtensionPolicy` (Envoy Gateway):
//!   `spec.wasm[].config`; a Consul `service-defaults` config entry (`Kind: service-defaults`)
//!   or `kind: ServiceDefaults` resource: the `builtin/wasm` extensions'
//!   `Arguments.PluginConfig.Configuration` (keys in any case).
//! - Anything else is searched for Envoy Wasm HTTP filters (`@type` ending in
//!   `envoy.extensions.filters.http.wasm.v3.Wasm`): bootstraps, ECDS files (the
//!   `TypedExtensionConfig` resources and a listener's `default_config`), Istio EnvoyFilter
//!   patches. Their `config.configuration` is a `google.protobuf.StringValue`.
//! - A document that is none of these is a plain plugin configuration (see [`plain`]).
//!
//! Which capability a filter config is for: the module's file name (`code.local.filename`,
//! the last segment of a URL or OCI image, without `.wasm`, `:tag` or `@digest`) when it is
//! one of `canary`, `ratelimit`, `intentions`, `telemetry`, `suite`; else its root id
//! (`root_id`, Istio's `pluginName`, Envoy Gateway's `rootID`, Consul's `RootID`) when it is
//! one of those names. A filter matching neither is not ours and is skipped.

use serde_json::Value;

/// Our module names: the capabilities and the suite.
pub fn names() -> impl Iterator<Item = &'static str> {
    filter_suite::CAPABILITIES
        .iter()
        .map(|c| c.name)
        .chain(std::iter::once("suite"))
}

fn ours(name: &str) -> Option<&'static str> {
    names().find(|n| *n == name)
}

/// The module name in a file name, URL or OCI reference:
/// `oci://registry/mesh/canary:0.1.0` -> `canary`, `target/filters/suite.wasm` -> `suite`.
pub fn module_name(reference: &str) -> &str {
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let last = path.rsplit('/').next().unwrap_or(path);
    let last = last.split('@').next().unwrap_or(last);
    let last = last.split(':').next().unwrap_or(last);
    last.strip_suffix(".wasm").unwrap_or(last)
}

/// The capability of a filter from its module reference and root id (see the module docs).
pub fn capability_of(module: Option<&str>, root_id: Option<&str>) -> Option<&'static str> {
    module
        .and_then(|m| ours(module_name(m)))
        .or_else(|| root_id.and_then(ours))
}

/// One plugin configuration found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where in the document, e.g. `spec.pluginConfig`.
    pub location: String,
    pub capability: &'static str,
    /// The configuration as the filter receives it (JSON text).
    pub config: String,
    /// Whether `config` is the text as written (Envoy, Consul) rather than JSON made from
    /// YAML (Istio, Envoy Gateway).
    pub raw: bool,
}

/// A filter or resource that is not ours, or a part that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub location: String,
    pub reason: String,
}

/// What a document holds.
#[derive(Debug, Default)]
pub struct Discovery {
    /// What the document was read as: `istio`, `envoy-gateway`, `consul`, `envoy`, `plain`.
    pub kind: &'static str,
    pub found: Vec<Found>,
    /// Filters that are not ours.
    pub skipped: Vec<Note>,
    /// Parts of ours that cannot be read (exit code 2).
    pub unusable: Vec<Note>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// A member by case-insensitive name (Consul's keys come in either case).
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn at_ci<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| get_ci(v, k))
}

/// The JSON text a YAML or JSON value stands for; absent means the defaults (empty).
fn json_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

/// Reads one document (see the module docs). `None` when it is a plain plugin configuration.
pub fn discover(doc: &Value) -> Option<Discovery> {
    let kind = str_at(doc, &["kind"]).or_else(|| get_ci(doc, "kind").and_then(Value::as_str));
    let mut d = Discovery::default();
    match kind {
        Some("WasmPlugin") => {
            d.kind = "istio";
            let spec = doc.get("spec").unwrap_or(&Value::Null);
            istio_plugin(spec, "spec", &mut d);
        }
        Some("TrafficExtension") => {
            d.kind = "istio";
            match at(doc, &["spec", "wasm"]) {
                Some(wasm) => istio_plugin(wasm, "spec.wasm", &mut d),
                None => d.skipped.push(Note {
                    location: "spec".into(),
                    reason: "not a wasm extension".into(),
                }),
            }
        }
        Some("EnvoyExtensionPolicy") => {
            d.kind = "envoy-gateway";
            let wasm = at(doc, &["spec", "wasm"]).and_then(Value::as_array);
            for (i, w) in wasm.into_iter().flatten().enumerate() {
                let module = str_at(w, &["code", "http", "url"])
                    .or_else(|| str_at(w, &["code", "image", "url"]));
                let location = format!("spec.wasm[{i}].config");
                match capability_of(module, str_at(w, &["rootID"])) {
                    Some(capability) => d.found.push(Found {
                        location,
                        capability,
                        config: json_text(w.get("config")),
                        raw: false,
                    }),
                    None => d
                        .skipped
                        .push(not_ours(location, module, str_at(w, &["rootID"]))),
                }
            }
        }
        Some(k) if k.eq_ignore_ascii_case("service-defaults") || k == "ServiceDefaults" => {
            d.kind = "consul";
            consul(doc, &mut d);
        }
        _ => {
            let mut path = String::new();
            walk_envoy(doc, &mut path, &mut d);
            let envoy_like = [
                "static_resources",
                "dynamic_resources",
                "resources",
                "admin",
            ]
            .iter()
            .any(|k| doc.get(k).is_some());
            if d.found.is_empty() && d.skipped.is_empty() && d.unusable.is_empty() {
                if kind.is_some() || doc.get("apiVersion").is_some() {
                    d.kind = "kubernetes";
                } else if envoy_like {
                    d.kind = "envoy";
                } else {
                    return None;
                }
            } else {
                d.kind = "envoy";
            }
        }
    }
    Some(d)
}

fn not_ours(location: String, module: Option<&str>, root: Option<&str>) -> Note {
    Note {
        location,
        reason: format!(
            "not a mesh filter (module {}, root id {})",
            module.map_or("unknown", module_name),
            root.unwrap_or("unset")
        ),
    }
}

fn istio_plugin(spec: &Value, at_path: &str, d: &mut Discovery) {
    let module = str_at(spec, &["url"]);
    let root = str_at(spec, &["pluginName"]);
    let location = format!("{at_path}.pluginConfig");
    match capability_of(module, root) {
        Some(capability) => d.found.push(Found {
            location,
            capability,
            config: json_text(spec.get("pluginConfig")),
            raw: false,
        }),
        None => d.skipped.push(not_ours(location, module, root)),
    }
}

fn consul(doc: &Value, d: &mut Discovery) {
    // A config entry has `EnvoyExtensions` at the top; the Kubernetes resource under `spec`.
    let (base, prefix) = match get_ci(doc, "spec") {
        Some(spec) => (spec, "spec."),
        None => (doc, ""),
    };
    let Some(exts) = get_ci(base, "EnvoyExtensions").and_then(Value::as_array) else {
        return;
    };
    for (i, ext) in exts.iter().enumerate() {
        let here = format!("{prefix}EnvoyExtensions[{i}]");
        if get_ci(ext, "Name").and_then(Value::as_str) != Some("builtin/wasm") {
            continue;
        }
        let pc = at_ci(ext, &["Arguments", "PluginConfig"]).unwrap_or(&Value::Null);
        let module = at_ci(pc, &["VmConfig", "Code", "Local", "Filename"])
            .or_else(|| at_ci(pc, &["VmConfig", "Code", "Remote", "HttpURI", "URI"]))
            .and_then(Value::as_str);
        let root = get_ci(pc, "RootID").and_then(Value::as_str);
        let location = format!("{here}.Arguments.PluginConfig.Configuration");
        let Some(capability) = capability_of(module, root) else {
            d.skipped.push(not_ours(location, module, root));
            continue;
        };
        let (config, raw) = match get_ci(pc, "Configuration") {
            Some(Value::String(s)) => (s.clone(), true),
            other => (json_text(other), false),
        };
        d.found.push(Found {
            location,
            capability,
            config,
            raw,
        });
    }
}

const WASM_HTTP: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";

fn walk_envoy(v: &Value, path: &mut String, d: &mut Discovery) {
    match v {
        Value::Object(obj) => {
            let is_wasm = obj
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(WASM_HTTP));
            if is_wasm {
                envoy_wasm(v, path, d);
                return;
            }
            for (k, child) in obj {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk_envoy(child, path, d);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_envoy(child, path, d);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn envoy_wasm(v: &Value, path: &str, d: &mut Discovery) {
    let config = v.get("config").unwrap_or(&Value::Null);
    let module = str_at(config, &["vm_config", "code", "local", "filename"])
        .or_else(|| str_at(config, &["vm_config", "code", "remote", "http_uri", "uri"]));
    let root = str_at(config, &["root_id"]);
    let sep = if path.is_empty() { "" } else { "." };
    let location = format!("{path}{sep}config.configuration");
    let Some(capability) = capability_of(module, root) else {
        d.skipped.push(not_ours(location, module, root));
        return;
    };
    let text = match config.get("configuration") {
        None | Some(Value::Null) => String::new(),
        Some(any) => {
            let t = str_at(any, &["@type"]).unwrap_or("");
            match any.get("value") {
                _ if !t.ends_with("google.protobuf.StringValue") => {
                    d.unusable.push(Note {
                        location,
                        reason: format!(
                            "configuration of type {t:?}: only google.protobuf.StringValue is read"
                        ),
                    });
                    return;
                }
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    d.unusable.push(Note {
                        location,
                        reason: "configuration.value must be a string".into(),
                    });
                    return;
                }
            }
        }
    };
    d.found.push(Found {
        location: format!("{location}.value"),
        capability,
        config: text,
        raw: true,
    });
}

/// Where a file is: its name without extension and its folder's name.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathHint<'a> {
    pub stem: Option<&'a str>,
    pub dir: Option<&'a str>,
}

/// The capability a plain plugin configuration is for, from its content: the one named by
/// its `$schema` (`.../<name>.schema.json`); else the only one whose schema has every
/// top-level key (several: the one the file's folder or name names); else, when no schema
/// has them all, the one the file's name starts with (so a misspelt key is reported). `Err`
/// lists the candidates left (none: not a configuration of ours).
pub fn plain(
    doc: &Value,
    hint: PathHint<'_>,
    schemas: &[(&'static str, Value)],
) -> Result<&'static str, Vec<&'static str>> {
    if let Some(s) = doc
        .get(mesh_core::config::SCHEMA_KEY)
        .and_then(Value::as_str)
    {
        let file = s.rsplit('/').next().unwrap_or(s);
        // A `$schema` that is not one of ours (a JSON Schema's own meta-schema, another
        // tool's): not a configuration of ours.
        return file
            .strip_suffix(".schema.json")
            .and_then(ours)
            .ok_or_else(Vec::new);
    }
    let by_stem = |among: &[&'static str]| {
        hint.stem
            .and_then(|stem| among.iter().find(|n| stem.starts_with(**n)).copied())
    };
    let Some(obj) = doc.as_object() else {
        return by_stem(&names().collect::<Vec<_>>()).ok_or_else(Vec::new);
    };
    let candidates: Vec<&'static str> = schemas
        .iter()
        .filter(|(_, schema)| {
            let props = schema.get("properties").and_then(Value::as_object);
            obj.keys()
                .all(|k| props.is_some_and(|p| p.contains_key(k.as_str())))
        })
        .map(|(n, _)| *n)
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => by_stem(&names().collect::<Vec<_>>()).ok_or_else(Vec::new),
        many => hint
            .dir
            .and_then(|d| many.iter().find(|n| **n == d).copied())
            .or_else(|| by_stem(many))
            .ok_or_else(|| many.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_come_from_files_urls_and_images() {
        assert_eq!(module_name("target/filters/canary.wasm"), "canary");
        assert_eq!(
            module_name("oci://registry.example.com/mesh/ratelimit:0.1.0"),
            "ratelimit"
        );
        assert_eq!(module_name("oci://r.example/suite@sha256:abcd"), "suite");
        assert_eq!(
            module_name("https://x.example/f/telemetry.wasm?x=1"),
            "telemetry"
        );
        assert_eq!(
            capability_of(Some("x/filters:v1"), Some("intentions")),
            Some("intentions")
        );
        assert_eq!(capability_of(Some("x/other.wasm"), Some("other")), None);
        // The module decides over the root id.
        assert_eq!(
            capability_of(Some("a/suite.wasm"), Some("canary")),
            Some("suite")
        );
    }
}
