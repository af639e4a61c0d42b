//! JSON Schemas of every capability's configuration and of the suite's, generated from the
//! mesh crates' config types (their `schema` feature), as committed under
//! `envoy-config/schemas/<name>.schema.json`.
//!
//! The schema checks the shape (types, required fields, unknown fields, enums, ranges and
//! name patterns); what needs the compiler (a regex that compiles, duplicate names, a total
//! weight above zero, subsets that exist) only the filter's validator (`mfctl check`) knows.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// The folder the schemas are committed in, relative to the repository root.
pub const DIR: &str = "envoy-config/schemas";

/// Every schema, in the suite's capability order, then the suite's: `(name, schema)`.
pub fn all() -> Vec<(&'static str, Value)> {
    let caps = capabilities();
    let suite = suite(&caps);
    let mut out = caps;
    out.push(("suite", suite));
    out
}

/// The file name of `name`'s schema.
pub fn file_name(name: &str) -> String {
    format!("{name}.schema.json")
}

/// The schema as committed: pretty JSON and a final newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

fn capabilities() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for cap in filter_suite::CAPABILITIES {
        let schema = match cap.name {
            "canary" => root::<mesh_canary::config::CanarySpec>(),
            "ratelimit" => root::<mesh_ratelimit::config::ConfigSpec>(),
            "intentions" => root::<mesh_intentions::config::IntentionsConfig>(),
            "telemetry" => root::<mesh_telemetry::config::TelemetrySpec>(),
            // A capability added to the suite without a schema fails the schema test.
            _ => continue,
        };
        out.push((cap.name, finish(cap.name, schema)));
    }
    out
}

fn root<T: JsonSchema>() -> Value {
    let generator = SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12());
    generator.into_root_schema_for::<T>().to_value()
}

/// Titles the schema and lets the config name its schema (`"$schema": "<uri>"`), which every
/// filter accepts at the top level (`mesh_core::config::SCHEMA_KEY`).
fn finish(name: &str, mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("$id".into(), json!(file_name(name)));
        obj.insert(
            "title".into(),
            json!(format!("{name}.wasm plugin configuration")),
        );
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            props.insert(
                mesh_core::config::SCHEMA_KEY.into(),
                json!({"type": "string", "description": "the JSON Schema this configuration follows (ignored by the filter)"}),
            );
        }
    }
    schema
}

/// The suite's schema: each capability's schema under `$defs/<name>` (its own `$defs`
/// nested and its references rewritten), so the file stands alone.
fn suite(caps: &[(&'static str, Value)]) -> Value {
    let mut defs = Map::new();
    let mut props = Map::new();
    props.insert(
        mesh_core::config::SCHEMA_KEY.into(),
        json!({"type": "string", "description": "the JSON Schema this configuration follows (ignored by the filter)"}),
    );
    for (name, schema) in caps {
        let mut s = schema.clone();
        rewrite_refs(&mut s, &format!("#/$defs/{name}/$defs/"));
        if let Some(obj) = s.as_object_mut() {
            obj.remove("$schema");
            obj.remove("$id");
        }
        defs.insert((*name).into(), s);
        props.insert((*name).into(), json!({"$ref": format!("#/$defs/{name}")}));
    }
    props.insert(
        "export_decisions".into(),
        json!({"type": ["boolean", "null"], "description": "write the verdicts to Envoy filter state too (default true)"}),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": file_name("suite"),
        "title": "suite.wasm plugin configuration",
        "description": "every capability in one filter pass: each key optional, each value that capability's own configuration",
        "type": "object",
        "properties": props,
        "additionalProperties": false,
        "$defs": defs,
    })
}

fn rewrite_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(obj) => {
            for (k, val) in obj.iter_mut() {
                if k == "$ref" {
                    if let Value::String(r) = val {
                        if let Some(rest) = r.strip_prefix("#/$defs/") {
                            *r = format!("{prefix}{rest}");
                        }
                    }
                } else {
                    rewrite_refs(val, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_refs(i, prefix)),
        _ => {}
    }
}
