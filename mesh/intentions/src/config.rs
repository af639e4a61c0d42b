//! The configuration as users write it, and its validation into a [`Policy`].

use mesh_core::{parse_json, ConfigError, HttpMatchSpec};
use serde::Deserialize;
use std::collections::HashMap;

use crate::path::normalize_path;
use crate::pattern::{precedence, NamePattern, ServiceName};
use crate::policy::{Action, Intention, Mode, Permission, Policy, Rule, SourceIndex};

/// Most intentions one configuration may hold.
pub const MAX_INTENTIONS: usize = 10_000;
/// Longest intention name.
pub const MAX_NAME_LEN: usize = 64;

/// The filter's configuration (see the crate docs for the meaning of each field).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IntentionsConfig {
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[a-z0-9._-]{1,255}$")))]
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    #[serde(default = "default_action")]
    pub default_action: ActionSpec,
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub mode: ModeSpec,
    #[cfg_attr(feature = "schema", schemars(length(max = 10_000)))]
    #[serde(default)]
    pub intentions: Vec<IntentionSpec>,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActionSpec {
    Allow,
    Deny,
}

/// `enforce` (default) or `audit`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    #[default]
    Enforce,
    Audit,
}

/// One intention as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IntentionSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub source: String,
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub action: Option<ActionSpec>,
    #[serde(default)]
    pub permissions: Option<Vec<PermissionSpec>>,
}

/// One L7 permission as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PermissionSpec {
    pub action: ActionSpec,
    pub http: HttpMatchSpec,
}

fn default_trust_domain() -> String {
    "cluster.local".to_owned()
}

fn default_action() -> ActionSpec {
    ActionSpec::Deny
}

// === impl ActionSpec ===

impl From<ActionSpec> for Action {
    fn from(a: ActionSpec) -> Self {
        match a {
            ActionSpec::Allow => Action::Allow,
            ActionSpec::Deny => Action::Deny,
        }
    }
}

// === impl IntentionsConfig ===

impl IntentionsConfig {
    /// Parses JSON (empty = defaults) and compiles it.
    pub fn parse(bytes: &[u8]) -> Result<Policy, ConfigError> {
        parse_json::<IntentionsConfig>(bytes)?.compile()
    }

    /// Validates everything and keeps the intentions that apply to `destination`, sorted by
    /// precedence.
    pub fn compile(&self) -> Result<Policy, ConfigError> {
        let td = &self.trust_domain;
        if td.is_empty()
            || td.len() > 255
            || !td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(ConfigError::new(
                "trust_domain",
                "must be a non-empty lowercase name (letters, digits, '-', '.', '_')",
            ));
        }
        let destination = self
            .destination
            .as_deref()
            .map(ServiceName::parse)
            .transpose()
            .map_err(|e| ConfigError::new("destination", e))?;
        if self.intentions.len() > MAX_INTENTIONS {
            return Err(ConfigError::new(
                "intentions",
                format!("at most {MAX_INTENTIONS} intentions are allowed"),
            ));
        }

        let mut pairs: HashMap<(NamePattern, Option<NamePattern>), usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut kept = Vec::new();
        let mut ignored = 0;
        for (i, spec) in self.intentions.iter().enumerate() {
            let field = format!("intentions[{i}]");
            let intention = spec
                .compile(destination.as_ref())
                .map_err(|e| e.within(&field))?;
            let pair = (intention.source.clone(), intention.destination.clone());
            if let Some(other) = pairs.insert(pair, i) {
                return Err(ConfigError::new(
                    format!("{field}.source"),
                    format!("duplicate source/destination pair (also intentions[{other}])"),
                ));
            }
            if let Some(other) = names.insert(intention.name.clone(), i) {
                let (f, hint) = if spec.name.is_some() {
                    ("name", "")
                } else {
                    ("source", "; set name to tell them apart")
                };
                return Err(ConfigError::new(
                    format!("{field}.{f}"),
                    format!(
                        "duplicate intention name {:?} (also intentions[{other}]){hint}",
                        intention.name
                    ),
                ));
            }
            if applies(intention.destination.as_ref(), destination.as_ref()) {
                kept.push(intention);
            } else {
                ignored += 1;
            }
        }
        // Stable: config order is kept within one level.
        kept.sort_by_key(|i| std::cmp::Reverse(i.precedence));
        Ok(Policy {
            trust_domain: td.clone(),
            destination,
            default_action: self.default_action.into(),
            mode: match self.mode {
                ModeSpec::Enforce => Mode::Enforce,
                ModeSpec::Audit => Mode::Audit,
            },
            index: SourceIndex::new(&kept),
            intentions: kept,
            ignored,
        })
    }
}

/// Whether an intention for `dst` applies to this workload.
fn applies(dst: Option<&NamePattern>, this: Option<&ServiceName>) -> bool {
    match (dst, this) {
        (None, _) => true,
        (Some(p), Some(svc)) => p.matches(svc.as_ref()),
        (Some(p), None) => *p == NamePattern::Any,
    }
}

// === impl IntentionSpec ===

impl IntentionSpec {
    /// Compiles one intention; errors carry fields relative to it.
    fn compile(&self, this: Option<&ServiceName>) -> Result<Intention, ConfigError> {
        let source = NamePattern::parse(&self.source).map_err(|e| ConfigError::new("source", e))?;
        let destination = match (&self.destination, this) {
            (Some(d), _) => {
                let p = NamePattern::parse(d).map_err(|e| ConfigError::new("destination", e))?;
                if this.is_none() && p != NamePattern::Any {
                    return Err(ConfigError::new(
                        "destination",
                        "needs the top-level destination to be set (or use *)",
                    ));
                }
                Some(p)
            }
            (None, Some(svc)) => Some(NamePattern::Exact(svc.clone())),
            (None, None) => None,
        };
        let rule = match (&self.action, &self.permissions) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "",
                    "set either action or permissions, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "",
                    "one of action or permissions is required",
                ))
            }
            (Some(a), None) => Rule::L4((*a).into()),
            (None, Some(perms)) => {
                if perms.is_empty() {
                    return Err(ConfigError::new("permissions", "must not be empty"));
                }
                if destination.as_ref().is_some_and(NamePattern::is_wildcard) {
                    return Err(ConfigError::new(
                        "permissions",
                        "cannot be used with a wildcard destination",
                    ));
                }
                let compiled = perms
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        p.compile()
                            .map_err(|e| e.within(&format!("permissions[{j}]")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Rule::L7(compiled)
            }
        };
        let name = match &self.name {
            Some(n) => {
                if n.is_empty()
                    || n.len() > MAX_NAME_LEN
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(ConfigError::new(
                        "name",
                        format!("must be 1 to {MAX_NAME_LEN} letters, digits, '-', '.' or '_'"),
                    ));
                }
                n.clone()
            }
            None => match (&self.destination, &destination) {
                (Some(_), Some(d)) => format!("{}.to.{}", source.stat_name(), d.stat_name()),
                _ => source.stat_name(),
            },
        };
        let dst_for_level = destination
            .clone()
            .unwrap_or(NamePattern::Exact(ServiceName::new("", "")));
        Ok(Intention {
            precedence: precedence(&source, &dst_for_level),
            name,
            source,
            destination,
            rule,
        })
    }
}

// === impl PermissionSpec ===

impl PermissionSpec {
    fn compile(&self) -> Result<Permission, ConfigError> {
        let http = &self.http;
        for (k, m) in http.methods.iter().enumerate() {
            if m.bytes().any(|b| b.is_ascii_lowercase()) {
                return Err(ConfigError::new(
                    format!("http.methods[{k}]"),
                    format!("{m:?} must be uppercase; methods are case-sensitive"),
                ));
            }
        }
        for (k, h) in http.headers.iter().enumerate() {
            let name = h.name.to_ascii_lowercase();
            if name == ":path" || name == ":method" {
                return Err(ConfigError::new(
                    format!("http.headers[{k}].name"),
                    "use path_exact, path_prefix, path_regex or methods: they see the normalized request",
                ));
            }
        }
        for (field, value) in [
            ("path_exact", &http.path_exact),
            ("path_prefix", &http.path_prefix),
        ] {
            if let Some(p) = value {
                if p.starts_with('/') {
                    match normalize_path(p.as_bytes()) {
                        Ok(n) if n == *p => {}
                        Ok(n) => {
                            return Err(ConfigError::new(
                                format!("http.{field}"),
                                format!("must be a normalized path, here {n:?}; requests are matched after normalization"),
                            ))
                        }
                        Err(e) => {
                            return Err(ConfigError::new(
                                format!("http.{field}"),
                                format!("could never match a request: {e}"),
                            ))
                        }
                    }
                }
            }
        }
        Ok(Permission {
            action: self.action.into(),
            http: http.compile("http")?,
        })
    }
}

#[cfg(test)]
mod tests;
