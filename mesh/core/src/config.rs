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

/// Writes `s` with control characters escaped (`\n`, `\u{1b}`): a field or reason may quote
/// a key the config spelled with escapes, and the error must stay one log line.
fn write_line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write_line(f, &self.field)?;
            f.write_str(": ")?;
        }
        write_line(f, &self.reason)
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
///
/// The field path of an error comes from where serde_json stopped (`field_at`), not from a
/// path-tracking deserializer: wrapping every visitor cost each module 15 to 90 KiB of code.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    // A top-level `"$schema": "<uri>"` names the JSON Schema for editors: blanked out with
    // spaces, so the rest keeps its positions (error paths) and unknown fields stay errors.
    let blanked = without_schema_key(bytes);
    let bytes = blanked.as_deref().unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|e| {
        let reason = clean_reason(&e.to_string());
        ConfigError::new(field_at(bytes, e.line(), e.column(), &reason), reason)
    })
}

/// The key a config may carry to name its JSON Schema (`envoy-config/schemas/`).
pub const SCHEMA_KEY: &str = "$schema";

/// `json` with its top-level `"$schema": "<string>"` member (and one comma) replaced by
/// spaces, or `None` when it has none (or is not an object this scan understands; serde then
/// reports the error).
fn without_schema_key(json: &[u8]) -> Option<Vec<u8>> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut prev_comma = None;
    loop {
        i = skip_ws(json, i);
        let member_start = i;
        if json.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(json, i)?;
        let key = json.get(i + 1..key_end - 1)?;
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, i + 1);
        let value_end = value_end(json, value_start)?;
        i = skip_ws(json, value_end);
        let comma = json.get(i) == Some(&b',');
        if key == SCHEMA_KEY.as_bytes() && json.get(value_start) == Some(&b'"') {
            let (from, to) = if comma {
                (member_start, i + 1)
            } else {
                (prev_comma.unwrap_or(member_start), value_end)
            };
            let mut out = json.to_vec();
            for b in out.get_mut(from..to)? {
                *b = b' ';
            }
            return Some(out);
        }
        if !comma {
            return None;
        }
        prev_comma = Some(i);
        i += 1;
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string starting at `start`.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        match json.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The index after the value starting at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = start;
            loop {
                match json.get(j)? {
                    b'"' => {
                        j = string_end(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = start;
            while json
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                j += 1;
            }
            Some(j)
        }
    }
}

// === impl field_at ===

/// Where the reader is inside one open object or array.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Key,
    Colon,
    Value,
    AfterValue,
}

struct Frame<'a> {
    /// `Some(key)` in an object; `None` in an array.
    key: Option<&'a [u8]>,
    /// In an array: the index of the element being read, once one started.
    index: Option<usize>,
    next_index: usize,
    state: State,
}

/// The field path (`rules[1].limit`) of the member being read when serde_json stopped at
/// `line`:`column` (1-based line; column counts the bytes consumed on that line). An error
/// about a whole object (a missing field) is reported after its closing brace, so the path
/// is that of the object. `reason` tells two cases a position alone cannot: a key just read
/// that names an enum's variant (not a field), and an element of the wrong type, reported
/// before its first byte.
fn field_at(json: &[u8], line: usize, column: usize, reason: &str) -> String {
    let at_variant = reason.starts_with("unknown variant");
    let before_element = reason.starts_with("invalid type");
    if line == 0 {
        return String::new();
    }
    let line_start = if line == 1 {
        Some(0)
    } else {
        json.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)
    };
    let end = line_start.map_or(json.len(), |s| s.saturating_add(column).min(json.len()));
    let json = json.get(..end).unwrap_or(json);

    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'{' | b'[' => {
                start_value(&mut stack);
                let key = (b == b'{').then_some(&[][..]);
                let state = if b == b'{' { State::Key } else { State::Value };
                stack.push(Frame {
                    key,
                    index: None,
                    next_index: 0,
                    state,
                });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b':' => {
                if let Some(f) = stack.last_mut() {
                    f.state = State::Value;
                }
                i += 1;
            }
            b',' => {
                if let Some(f) = stack.last_mut() {
                    if f.key.is_some() {
                        f.key = Some(&[]);
                        f.state = State::Key;
                    } else {
                        f.index = None;
                        f.state = State::Value;
                    }
                }
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while let Some(&c) = json.get(j) {
                    match c {
                        b'\\' => j += 2,
                        b'"' => break,
                        _ => j += 1,
                    }
                }
                let text = json.get(start..j.min(json.len())).unwrap_or_default();
                match stack.last_mut() {
                    Some(f) if f.state == State::Key => {
                        f.key = Some(text);
                        f.state = State::Colon;
                    }
                    _ => start_value(&mut stack),
                }
                i = j + 1;
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => {
                // A number, `true`, `false` or `null`.
                start_value(&mut stack);
                while json
                    .get(i)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    i += 1;
                }
            }
        }
    }

    let mut path = String::new();
    for f in &stack {
        match (f.key, f.index) {
            (Some(_), _) if at_variant && f.state == State::Colon => break,
            (Some(key), _) if !key.is_empty() => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key_text(key));
            }
            (None, Some(index)) => path.push_str(&format!("[{index}]")),
            // Stopped on the first byte of an element: the error is that element's.
            (None, None) if before_element && f.state == State::Value => {
                path.push_str(&format!("[{}]", f.next_index));
            }
            _ => break,
        }
    }
    path
}

/// A key as the config meant it: `\"`, `\\` and `\/` decoded (a `\u` escape stays as
/// written: rare in a key, and not worth a JSON string decoder in every module).
fn key_text(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match (b, bytes.as_slice().first()) {
            (b'\\', Some(&c @ (b'"' | b'\\' | b'/'))) => {
                out.push(c);
                bytes.next();
            }
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

/// A value starts in the innermost container: in an array it takes the next index.
fn start_value(stack: &mut [Frame<'_>]) {
    if let Some(f) = stack.last_mut() {
        if f.key.is_none() && f.state == State::Value {
            f.index = Some(f.next_index);
            f.next_index += 1;
        }
        f.state = State::AfterValue;
    }
}

// serde_json appends " at line L column C"; keep it (it helps) but no trailing period.
// serde_json's one capitalized message (`EOF while parsing a string`) is reworded: reasons
// are lowercase.
fn clean_reason(s: &str) -> String {
    let s = s.trim_end_matches('.');
    match s.strip_prefix("EOF ") {
        Some(rest) => format!("end of input {rest}"),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests;
