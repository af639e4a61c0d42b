//! Configuration errors that name the field and the reason.

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration that does not parse or validate: `field` is a path such as
/// `rules[0].limit.per`; `reason` is lowercase without a trailing period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Puts `prefix` in front of the field path (`rules[0]` + `limit` = `rules[0].limit`).
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = join(prefix, &self.field);
        self
    }
}

/// Joins two field paths: `a` + `b` = `a.b`, `a` + `[0]` = `a[0]`.
pub fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_owned(),
        (_, true) => prefix.to_owned(),
        _ if field.starts_with('[') => format!("{prefix}{field}"),
        _ => format!("{prefix}.{field}"),
    }
}

/// Parses a JSON configuration into `T` (whose serde derives deny unknown fields); an empty
/// or all-whitespace configuration means `{}`, that is the documented defaults.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ConfigError::new(field, clean_reason(&e.into_inner().to_string()))
    })?;
    de.end()
        .map_err(|e| ConfigError::new("", clean_reason(&e.to_string())))?;
    Ok(value)
}

// serde_json appends " at line L column C"; keep it (it helps) but no trailing period.
fn clean_reason(s: &str) -> String {
    s.trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests;
