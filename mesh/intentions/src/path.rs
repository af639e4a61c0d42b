//! Request path normalization that does not depend on the proxy's settings (rules in the
//! crate docs). Anything that servers could read in more than one way is refused.

use std::borrow::Cow;
use thiserror::Error;

/// Why a path cannot be matched safely; the request gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("path is not in origin form")]
    NotOriginForm,
    #[error("control byte, space or nul in path")]
    ControlByte,
    #[error("raw non-ascii byte in path")]
    NonAscii,
    #[error("backslash in path")]
    Backslash,
    #[error("path parameter (; or %3b) in path")]
    PathParameter,
    #[error("malformed percent-escape")]
    MalformedEscape,
    #[error("encoded slash or backslash")]
    EncodedSeparator,
    #[error("encoded control byte")]
    EncodedControl,
    #[error("double-encoded escape (%25 followed by two hex digits)")]
    DoubleEncoding,
    #[error("encoded bytes are not valid utf-8")]
    InvalidUtf8,
    #[error("repeated slashes together with .. segments")]
    AmbiguousDotSegments,
    #[error("dot segment with an encoded dot (%2e)")]
    EncodedDotSegment,
}

impl PathError {
    /// A short token for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOriginForm => "not_origin_form",
            Self::ControlByte => "control_byte",
            Self::NonAscii => "non_ascii",
            Self::Backslash => "backslash",
            Self::PathParameter => "path_parameter",
            Self::MalformedEscape => "malformed_escape",
            Self::EncodedSeparator => "encoded_separator",
            Self::EncodedControl => "encoded_control",
            Self::DoubleEncoding => "double_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::AmbiguousDotSegments => "ambiguous_dot_segments",
            Self::EncodedDotSegment => "encoded_dot_segment",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, byte: u8) {
    out.push('%');
    for nibble in [byte >> 4, byte & 0xF] {
        if let Some(h) = HEX_UPPER.get(usize::from(nibble)) {
            out.push(char::from(*h));
        }
    }
}

/// Normalizes a raw `:path` value for matching; a path already in normal form (nearly every
/// request's) is returned as it is, without a copy.
pub fn normalize_path(raw: &[u8]) -> Result<Cow<'_, str>, PathError> {
    let end = raw
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(raw.len());
    let path = raw.get(..end).unwrap_or_default();
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if already_normal(path) {
        // Printable ASCII, so valid UTF-8.
        return std::str::from_utf8(path)
            .map(Cow::Borrowed)
            .map_err(|_| PathError::NonAscii);
    }
    let decoded = decode(path)?;
    resolve(&decoded).map(Cow::Owned)
}

/// The common case, which `decode` and `resolve` would return unchanged: printable ASCII with
/// no escape, backslash or `;`, and no empty (but a trailing), `.` or `..` segment.
fn already_normal(path: &[u8]) -> bool {
    // One pass: the current segment's length, and whether it is dots only so far.
    let (mut len, mut dots) = (0usize, true);
    for &b in path.get(1..).unwrap_or_default() {
        if b == b'/' {
            if len == 0 || (dots && len <= 2) {
                return false;
            }
            (len, dots) = (0, true);
        } else if matches!(b, 0x21..=0x7e) && !matches!(b, b'%' | b'\\' | b';') {
            len += 1;
            dots &= b == b'.';
        } else {
            return false;
        }
    }
    // The last segment may be empty (a trailing slash), but not `.` or `..`.
    !(len > 0 && dots && len <= 2)
}

/// Steps 3 and 4: byte checks and escapes. The result is ASCII.
fn decode(path: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut non_ascii_escape = false;
    // Where the current segment starts in `out`, and whether one of its dots was escaped.
    let (mut segment, mut escaped_dot) = (0, false);
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        if b == b'/' {
            if escaped_dot && dots_only(out.get(segment..).unwrap_or_default()) {
                return Err(PathError::EncodedDotSegment);
            }
            (segment, escaped_dot) = (out.len() + 1, false);
        }
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    path.get(i + 1).copied().and_then(hex),
                    path.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::MalformedEscape);
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b';' => return Err(PathError::PathParameter),
                    0..=0x1F | 0x7F => return Err(PathError::EncodedControl),
                    _ if is_unreserved(byte) => {
                        escaped_dot |= byte == b'.';
                        out.push(char::from(byte));
                    }
                    _ => {
                        non_ascii_escape |= byte >= 0x80;
                        push_escape(&mut out, byte);
                    }
                }
                i += 3;
            }
            0..=0x20 | 0x7F => return Err(PathError::ControlByte),
            0x80.. => return Err(PathError::NonAscii),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    if escaped_dot && dots_only(out.get(segment..).unwrap_or_default()) {
        return Err(PathError::EncodedDotSegment);
    }
    if non_ascii_escape && !escapes_are_utf8(out.as_bytes()) {
        return Err(PathError::InvalidUtf8);
    }
    // Checked after decoding: `%25%32%46` decodes to `%252F` just as well.
    if out.match_indices("%25").any(|(i, _)| {
        let b = out.as_bytes();
        b.get(i + 3).copied().and_then(hex).is_some()
            && b.get(i + 4).copied().and_then(hex).is_some()
    }) {
        return Err(PathError::DoubleEncoding);
    }
    Ok(out)
}

/// `.` or `..`: a segment servers resolve, unless they resolve before decoding (and some
/// routers match the raw path), so an escaped one is read two ways.
fn dots_only(segment: &str) -> bool {
    matches!(segment, "." | "..")
}

/// Whether the bytes the remaining escapes stand for, with the rest, form valid UTF-8
/// (which excludes overlong forms and lone continuation bytes).
fn escapes_are_utf8(ascii: &[u8]) -> bool {
    let mut bytes = Vec::with_capacity(ascii.len());
    let mut i = 0;
    while let Some(&b) = ascii.get(i) {
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                ascii.get(i + 1).copied().and_then(hex),
                ascii.get(i + 2).copied().and_then(hex),
            ) {
                bytes.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        bytes.push(b);
        i += 1;
    }
    std::str::from_utf8(&bytes).is_ok()
}

/// Step 5: merge slashes, resolve dot segments. `path` starts with `/`.
fn resolve(path: &str) -> Result<String, PathError> {
    let rest = path.get(1..).unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let empty_inside = segments.iter().take(last).any(|s| s.is_empty());
    if empty_inside && segments.contains(&"..") {
        return Err(PathError::AmbiguousDotSegments);
    }
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for seg in &segments {
        match *seg {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let trailing = matches!(segments.last(), Some(&"" | &"." | &".."));
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
