//! `mfctl apply`: validates a new configuration and replaces an ECDS file atomically (a
//! temporary file in the same folder, fsync, rename, fsync of the folder), which is the move
//! Envoy's `watched_directory` reacts to. Nothing is written unless every configuration of
//! ours in the result is valid.

use crate::check::{self, Options, Report};
use crate::find;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The new configuration is invalid (exit code 1): the report says where.
    #[error("the new configuration is invalid; {} left unchanged", .0.display())]
    Invalid(PathBuf, Box<Report>),
    /// Input that cannot be used (exit code 2).
    #[error("{0}")]
    Unusable(String),
}

/// What `apply` did.
#[derive(Debug)]
pub struct Applied {
    pub report: Report,
    /// The ECDS file's new text.
    pub text: String,
    pub written: bool,
}

/// Writes `bytes` to `path` so that readers only ever see the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the folder is synced.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces the plugin configuration of the Wasm filter of ours in an ECDS document (the one
/// named `resource` when the file holds several), keeping its module and VM settings.
pub fn set_plugin_config(
    ecds: &mut Value,
    resource: Option<&str>,
    config_json: &str,
) -> Result<&'static str, String> {
    let resources = ecds
        .get_mut("resources")
        .and_then(Value::as_array_mut)
        .ok_or("the ECDS file has no resources list")?;
    let mut targets = Vec::new();
    for r in resources.iter_mut() {
        let name = r.get("name").and_then(Value::as_str).map(str::to_owned);
        if resource.is_some_and(|want| name.as_deref() != Some(want)) {
            continue;
        }
        let Some(wasm) = r.get_mut("typed_config") else {
            continue;
        };
        let config = wasm.get("config").unwrap_or(&Value::Null);
        let at = |p: &[&str]| {
            p.iter()
                .try_fold(config, |v, k| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let module = at(&["vm_config", "code", "local", "filename"])
            .or_else(|| at(&["vm_config", "code", "remote", "http_uri", "uri"]));
        let root = at(&["root_id"]);
        if let Some(cap) = find::capability_of(module.as_deref(), root.as_deref()) {
            targets.push((cap, wasm));
        }
    }
    let count = targets.len();
    let (cap, wasm) = match targets.pop() {
        Some(t) if count == 1 => t,
        Some(_) => {
            return Err(format!(
                "the ECDS file holds {count} mesh filters: name one with --resource"
            ))
        }
        None => {
            return Err(match resource {
                Some(r) => format!("no mesh filter resource named {r:?} in the ECDS file"),
                None => "no mesh filter resource in the ECDS file".into(),
            })
        }
    };
    let slot = wasm
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or("the resource's typed_config has no config")?;
    slot.insert(
        "configuration".into(),
        json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config_json}),
    );
    Ok(cap)
}

/// Validates and (unless `dry_run`) writes the ECDS file `target` from `input`: either a whole
/// ECDS document (it has `resources`) or a plugin configuration (JSON or YAML; `-` is stdin)
/// for the mesh filter resource in `target`.
pub fn apply(
    target: &Path,
    input: &Path,
    resource: Option<&str>,
    dry_run: bool,
) -> Result<Applied, ApplyError> {
    let unusable = ApplyError::Unusable;
    let bytes = if input.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .map_err(|e| unusable(format!("cannot read stdin: {e}")))?;
        b
    } else {
        std::fs::read(input)
            .map_err(|e| unusable(format!("{}: cannot read: {e}", input.display())))?
    };
    let docs = check::documents(input, &bytes)
        .map_err(|e| unusable(format!("{}: {e}", input.display())))?;
    let yaml_out = target.extension().is_none_or(|e| e != "json");
    let new_doc = match docs.as_slice() {
        [(_, doc)] if doc.get("resources").is_some() => doc.clone(),
        [(_, doc)] => {
            let text = std::fs::read(target)
                .map_err(|e| unusable(format!("{}: cannot read: {e}", target.display())))?;
            let mut ecds = check::documents(target, &text)
                .map_err(|e| unusable(format!("{}: {e}", target.display())))?
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .ok_or_else(|| unusable(format!("{}: empty", target.display())))?;
            // A JSON config goes in as written; a YAML one as its JSON.
            let config = if input.extension().is_some_and(|e| e == "json")
                || input.as_os_str() == "-" && bytes.first().is_some_and(|b| *b == b'{')
            {
                String::from_utf8_lossy(&bytes).trim().to_owned()
            } else {
                doc.to_string()
            };
            set_plugin_config(&mut ecds, resource, &config)
                .map_err(|e| unusable(format!("{}: {e}", target.display())))?;
            ecds
        }
        _ => {
            return Err(unusable(format!(
                "{}: expected one document",
                input.display()
            )))
        }
    };
    let text = if yaml_out {
        serde_yaml::to_string(&new_doc).map_err(|e| unusable(e.to_string()))?
    } else {
        let mut t = serde_json::to_string_pretty(&new_doc).map_err(|e| unusable(e.to_string()))?;
        t.push('\n');
        t
    };
    // Check the very text that will be written, as `check` reads it.
    let shown = target.display().to_string();
    let report = check::check_content(&shown, target, text.as_bytes(), Options::default());
    if report.exit_code() == 2 {
        let reasons: Vec<String> = report.errors.iter().map(|e| e.reason.clone()).collect();
        return Err(unusable(reasons.join("; ")));
    }
    if !report.ok {
        return Err(ApplyError::Invalid(target.to_path_buf(), Box::new(report)));
    }
    if !dry_run {
        write_atomic(target, text.as_bytes())
            .map_err(|e| unusable(format!("{}: cannot write: {e}", target.display())))?;
    }
    Ok(Applied {
        report,
        text,
        written: !dry_run,
    })
}
