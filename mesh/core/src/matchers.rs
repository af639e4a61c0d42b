//! Request matchers shared by every filter: path (exact, prefix, regex), methods and headers
//! (present, exact, prefix, suffix, contains, regex; ignore_case; invert).
//!
//! Regexes use `regex-lite`: no Unicode tables, no DFA, linear-time matching, small code. Measured
//! on wasm32-wasip1 release builds: a minimal module with the shim is 112 KiB; compiling and
//! matching one regex brings it to 186 KiB, so the engine costs about 75 KiB per module
//! (the full `regex` crate, measured the same way, brings it to 1,139 KiB).
//!
//! A header matcher looks at every value of a repeated header: it matches when any value
//! matches, and `invert` negates that whole answer, so an inverted matcher matches only when
//! no value matches. A value that is not UTF-8 never matches a regex. Regexes are anchored at
//! both ends, as in Envoy.

use crate::config::ConfigError;
use crate::request::MatchInput;
use regex_lite::{Regex, RegexBuilder};
use sdk_shim::HeaderSnapshot;
use serde::Deserialize;

/// Longest regex pattern accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled-program budget per regex, in bytes.
pub const MAX_REGEX_PROGRAM: usize = 256 * 1024;

/// Compiles an anchored regex within the size limits; errors are reasons for `field`.
pub fn compile_regex(pattern: &str, ignore_case: bool, field: &str) -> Result<Regex, ConfigError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(ConfigError::new(
            field,
            format!("regex longer than {MAX_REGEX_LEN} bytes"),
        ));
    }
    let build = |p: &str| {
        RegexBuilder::new(p)
            .case_insensitive(ignore_case)
            .size_limit(MAX_REGEX_PROGRAM)
            .nest_limit(64)
            .build()
            .map_err(|e| {
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or("invalid regex");
                ConfigError::new(
                    field,
                    format!("regex does not compile: {}", first.to_ascii_lowercase()),
                )
            })
    };
    // The pattern must stand alone: `a)|(b` is unbalanced, but balanced once wrapped, and
    // would then match outside the anchors.
    build(pattern)?;
    build(&format!("^(?:{pattern})$"))
}

/// A path condition as written in a config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpMatchSpec {
    #[serde(default)]
    pub path_exact: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub path_regex: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<HeaderMatchSpec>,
}

/// One header condition as written in a config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchSpec {
    pub name: String,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub ignore_case: bool,
    #[serde(default)]
    pub invert: bool,
}

/// A compiled path condition.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum ValueMatch {
    Present,
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Regex(Regex),
}

/// A compiled header condition.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    name: String,
    value: ValueMatch,
    ignore_case: bool,
    invert: bool,
}

/// A compiled request condition: every part given must match.
#[derive(Debug, Clone, Default)]
pub struct HttpMatch {
    path: Option<PathMatch>,
    methods: Vec<String>,
    headers: Vec<HeaderMatch>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

// === impl HttpMatchSpec ===

impl HttpMatchSpec {
    /// Validates and compiles; `field` is this spec's path in the config, for errors.
    pub fn compile(&self, field: &str) -> Result<HttpMatch, ConfigError> {
        let f = |name: &str| crate::config::join(field, name);
        let paths = [
            self.path_exact.is_some(),
            self.path_prefix.is_some(),
            self.path_regex.is_some(),
        ];
        if paths.iter().filter(|p| **p).count() > 1 {
            return Err(ConfigError::new(
                field,
                "at most one of path_exact, path_prefix and path_regex may be set",
            ));
        }
        let path = if let Some(p) = &self.path_exact {
            Some(PathMatch::Exact(check_path(p, &f("path_exact"))?))
        } else if let Some(p) = &self.path_prefix {
            Some(PathMatch::Prefix(check_path(p, &f("path_prefix"))?))
        } else if let Some(p) = &self.path_regex {
            Some(PathMatch::Regex(compile_regex(p, false, &f("path_regex"))?))
        } else {
            None
        };
        let mut methods = Vec::with_capacity(self.methods.len());
        for (i, m) in self.methods.iter().enumerate() {
            if !is_token(m) {
                return Err(ConfigError::new(
                    format!("{}[{i}]", f("methods")),
                    format!("{m:?} is not an http method token"),
                ));
            }
            methods.push(m.clone());
        }
        let headers = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| h.compile(&format!("{}[{i}]", f("headers"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpMatch {
            path,
            methods,
            headers,
        })
    }
}

fn check_path(p: &str, field: &str) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(field, "must start with /"));
    }
    Ok(p.to_owned())
}

// === impl HeaderMatchSpec ===

impl HeaderMatchSpec {
    pub fn compile(&self, field: &str) -> Result<HeaderMatch, ConfigError> {
        let f = |name: &str| crate::config::join(field, name);
        let name = self.name.to_ascii_lowercase();
        let pseudo = name.strip_prefix(':').is_some_and(is_token);
        if !(is_token(&name) || pseudo) {
            return Err(ConfigError::new(f("name"), "must be a header name"));
        }
        let set = [
            self.present.is_some(),
            self.exact.is_some(),
            self.prefix.is_some(),
            self.suffix.is_some(),
            self.contains.is_some(),
            self.regex.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set > 1 {
            return Err(ConfigError::new(
                field,
                "at most one of present, exact, prefix, suffix, contains and regex may be set",
            ));
        }
        if self.present == Some(false) {
            return Err(ConfigError::new(
                f("present"),
                "must be true; use invert to match an absent header",
            ));
        }
        let bytes = |s: &str| {
            if self.ignore_case {
                s.to_ascii_lowercase().into_bytes()
            } else {
                s.as_bytes().to_vec()
            }
        };
        let value = if let Some(v) = &self.exact {
            ValueMatch::Exact(bytes(v))
        } else if let Some(v) = &self.prefix {
            ValueMatch::Prefix(bytes(v))
        } else if let Some(v) = &self.suffix {
            ValueMatch::Suffix(bytes(v))
        } else if let Some(v) = &self.contains {
            ValueMatch::Contains(bytes(v))
        } else if let Some(v) = &self.regex {
            ValueMatch::Regex(compile_regex(v, self.ignore_case, &f("regex"))?)
        } else {
            ValueMatch::Present
        };
        Ok(HeaderMatch {
            name,
            value,
            ignore_case: self.ignore_case,
            invert: self.invert,
        })
    }
}

// === impl PathMatch ===

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

// === impl HeaderMatch ===

fn eq_bytes(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

impl HeaderMatch {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn value_matches(&self, v: &[u8]) -> bool {
        let ic = self.ignore_case;
        match &self.value {
            ValueMatch::Present => true,
            ValueMatch::Exact(e) => eq_bytes(v, e, ic),
            ValueMatch::Prefix(p) => v.get(..p.len()).is_some_and(|h| eq_bytes(h, p, ic)),
            ValueMatch::Suffix(s) => v
                .len()
                .checked_sub(s.len())
                .and_then(|start| v.get(start..))
                .is_some_and(|t| eq_bytes(t, s, ic)),
            ValueMatch::Contains(c) => {
                c.is_empty() || v.windows(c.len()).any(|w| eq_bytes(w, c, ic))
            }
            ValueMatch::Regex(r) => std::str::from_utf8(v).is_ok_and(|s| r.is_match(s)),
        }
    }

    /// Matches against every value of the header in `headers` (all pairs of the request).
    pub fn matches(&self, headers: &HeaderSnapshot) -> bool {
        let any = headers.values(&self.name).any(|v| self.value_matches(v));
        any != self.invert
    }
}

// === impl HttpMatch ===

impl HttpMatch {
    /// Whether matching needs the request's header pairs (a whole-map read).
    pub fn needs_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// The (lowercase) names of the headers this condition looks at.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(HeaderMatch::name)
    }

    pub fn is_empty(&self) -> bool {
        self.path.is_none() && self.methods.is_empty() && self.headers.is_empty()
    }

    /// The path condition, if any: callers index rules by exact path or prefix with it.
    pub fn path(&self) -> Option<&PathMatch> {
        self.path.as_ref()
    }

    pub fn matches(&self, input: &MatchInput<'_>) -> bool {
        if let Some(p) = &self.path {
            if !p.matches(input.path) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.as_bytes() == input.method) {
            return false;
        }
        self.headers.iter().all(|h| h.matches(input.headers))
    }
}

#[cfg(test)]
mod tests;
