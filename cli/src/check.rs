//! `mfctl check`: every plugin configuration of ours in the given files, validated by the
//! filters' own code (`filter_suite::validate` / `validate_capability`, which run each
//! capability's `compile`: the same parser and checks as `on_configure` in the proxy).

use crate::find::{self, Discovery, PathHint};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// A configuration that was checked.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub file: String,
    pub document: usize,
    pub kind: &'static str,
    pub location: String,
    pub capability: &'static str,
    pub ok: bool,
}

/// One problem: an invalid configuration (`field`, `reason` from the filter) or input that
/// cannot be used (`unusable`).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: String,
    /// 0-based index of the document in the file (YAML `---` streams).
    pub document: Option<usize>,
    /// Where the configuration sits in the document (empty for a plain config file).
    pub location: String,
    pub capability: Option<&'static str>,
    /// Field path inside the plugin configuration (`rules[0].limit.per`).
    pub field: String,
    pub reason: String,
    pub unusable: bool,
}

/// Something left alone: a filter that is not ours, or a file with none of ours.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub file: String,
    pub document: Option<usize>,
    pub location: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checked: Vec<Checked>,
    pub errors: Vec<Problem>,
    pub skipped: Vec<Skipped>,
}

/// How a check treats what it cannot place.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Validate plain configs as this capability (or `suite`).
    pub capability: Option<&'static str>,
    /// A file holding nothing of ours is skipped instead of being unusable input.
    pub skip_unrecognized: bool,
}

// === impl Report ===

impl Report {
    /// 0 every config valid, 1 some invalid, 2 some input unusable.
    pub fn exit_code(&self) -> i32 {
        if self.errors.iter().any(|e| e.unusable) {
            2
        } else if self.errors.is_empty() {
            0
        } else {
            1
        }
    }

    fn unusable(&mut self, file: &str, document: Option<usize>, location: &str, reason: String) {
        self.errors.push(Problem {
            file: file.into(),
            document,
            location: location.into(),
            capability: None,
            field: String::new(),
            reason,
            unusable: true,
        });
    }

    /// The text form: one line per problem, then a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let mut line = e.file.clone();
            if let Some(d) = e.document {
                line.push_str(&format!(": document {d}"));
            }
            if !e.location.is_empty() {
                line.push_str(&format!(": {}", e.location));
            }
            if let Some(c) = e.capability {
                line.push_str(&format!(": {c}"));
            }
            if !e.field.is_empty() {
                line.push_str(&format!(": {}", e.field));
            }
            line.push_str(&format!(": {}", e.reason));
            if e.unusable {
                line.push_str(" (unusable input)");
            }
            out.push_str(&line);
            out.push('\n');
        }
        let files: std::collections::BTreeSet<&str> =
            self.checked.iter().map(|c| c.file.as_str()).collect();
        out.push_str(&format!(
            "{} configuration(s) checked in {} file(s): {} error(s), {} skipped\n",
            self.checked.len(),
            files.len(),
            self.errors.len(),
            self.skipped.len()
        ));
        out
    }
}

/// Validates one plugin configuration as `capability`.
pub fn validate(capability: &str, config: &[u8]) -> Result<(), mesh_core::ConfigError> {
    if capability == "suite" {
        return filter_suite::validate(config);
    }
    filter_suite::validate_capability(capability, config).unwrap_or_else(|| {
        Err(mesh_core::ConfigError::new(
            "",
            format!("unknown capability {capability:?}"),
        ))
    })
}

/// Checks every file into one report.
pub fn check_files(files: &[impl AsRef<Path>], opts: Options) -> Report {
    let schemas = crate::schema::all();
    let mut report = Report::default();
    for f in files {
        let path = f.as_ref();
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => check_bytes(&name, path, &bytes, opts, &schemas, &mut report),
            Err(e) => report.unusable(&name, None, "", format!("cannot read: {e}")),
        }
    }
    report.ok = report.errors.is_empty();
    report
}

/// Checks one file's content, shown as `name` (its path gives the extension and hints).
pub fn check_content(name: &str, path: &Path, bytes: &[u8], opts: Options) -> Report {
    let mut report = Report::default();
    check_bytes(name, path, bytes, opts, &crate::schema::all(), &mut report);
    report.ok = report.errors.is_empty();
    report
}

/// The documents of a file: one JSON value, or every YAML document (empty ones dropped).
pub fn documents(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Value)>, String> {
    let json = path.extension().is_some_and(|e| e == "json");
    if json {
        return serde_json::from_slice(bytes)
            .map(|v| vec![(0, v)])
            .map_err(|e| format!("not JSON: {e}"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let y = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| format!("document {i}: not YAML: {e}"))?;
        if y.is_null() {
            continue;
        }
        let v = serde_json::to_value(&y)
            .map_err(|e| format!("document {i}: not representable as JSON: {e}"))?;
        out.push((i, v));
    }
    Ok(out)
}

fn check_bytes(
    name: &str,
    path: &Path,
    bytes: &[u8],
    opts: Options,
    schemas: &[(&'static str, Value)],
    report: &mut Report,
) {
    let stem = path.file_stem().and_then(|s| s.to_str());
    let dir = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|s| s.to_str());
    let hint = PathHint { stem, dir };
    let docs = match documents(path, bytes) {
        Ok(d) => d,
        Err(reason) => {
            // A JSON plugin config that does not parse: the filter's parser says where.
            let cap = opts
                .capability
                .or_else(|| find::plain(&Value::Null, hint, schemas).ok());
            match cap {
                Some(c) if path.extension().is_some_and(|e| e == "json") => {
                    run(report, place(name, 0, "plain", "", c), bytes, true);
                }
                _ => report.unusable(name, None, "", reason),
            }
            return;
        }
    };
    let before = report.checked.len();
    let mut skipped_here = false;
    for (index, doc) in &docs {
        match find::discover(doc) {
            Some(d) => {
                skipped_here |= !d.skipped.is_empty();
                record(report, name, *index, d);
            }
            None => {
                let cap = match opts.capability {
                    Some(c) => Ok(c),
                    None => find::plain(doc, hint, schemas),
                };
                match cap {
                    Ok(c) => {
                        // A JSON file goes to the filter byte for byte; YAML as its JSON.
                        let raw = docs.len() == 1 && path.extension().is_some_and(|e| e == "json");
                        let text;
                        let config = if raw {
                            bytes
                        } else {
                            text = doc.to_string();
                            text.as_bytes()
                        };
                        run(report, place(name, *index, "plain", "", c), config, raw);
                    }
                    Err(many) if !many.is_empty() => report.unusable(
                        name,
                        Some(*index),
                        "",
                        format!(
                            "cannot tell which filter this configuration is for ({}): add \"$schema\" or use --as",
                            many.join(", ")
                        ),
                    ),
                    Err(_) => {}
                }
            }
        }
    }
    let found_any = report.checked.len() > before || report.errors.iter().any(|e| e.file == name);
    if !found_any {
        let reason = if skipped_here {
            "no mesh filter configuration (only other filters)"
        } else {
            "no mesh filter configuration found"
        };
        if opts.skip_unrecognized || skipped_here {
            report.skipped.push(Skipped {
                file: name.into(),
                document: None,
                location: String::new(),
                reason: reason.into(),
            });
        } else {
            report.unusable(name, None, "", reason.into());
        }
    }
}

fn record(report: &mut Report, name: &str, index: usize, d: Discovery) {
    for n in d.skipped {
        report.skipped.push(Skipped {
            file: name.into(),
            document: Some(index),
            location: n.location,
            reason: n.reason,
        });
    }
    for n in d.unusable {
        report.unusable(name, Some(index), &n.location, n.reason);
    }
    for f in d.found {
        let at = place(name, index, d.kind, &f.location, f.capability);
        run(report, at, f.config.as_bytes(), f.raw);
    }
}

/// Validates `config` for the place `at` describes, recording the verdict.
fn run(report: &mut Report, at: Checked, config: &[u8], raw: bool) {
    let verdict = validate(at.capability, config);
    if let Err(mut e) = verdict {
        if !raw {
            // serde's position is in the JSON made from YAML, which the user never saw.
            if let Some(i) = e.reason.rfind(" at line ") {
                e.reason.truncate(i);
            }
        }
        report.errors.push(Problem {
            file: at.file.clone(),
            document: Some(at.document),
            location: at.location.clone(),
            capability: Some(at.capability),
            field: e.field,
            reason: e.reason,
            unusable: false,
        });
        report.checked.push(Checked { ok: false, ..at });
    } else {
        report.checked.push(Checked { ok: true, ..at });
    }
}

fn place(
    file: &str,
    document: usize,
    kind: &'static str,
    location: &str,
    capability: &'static str,
) -> Checked {
    Checked {
        file: file.into(),
        document,
        kind,
        location: location.into(),
        capability,
        ok: false,
    }
}
