//! One JSON access-log line per request.
//!
//! Client-controlled fields (method, path, authority) are cut to a configured number of bytes,
//! decoded as lossy UTF-8 and JSON-escaped, so a line is always one valid JSON object on one
//! line whatever the request carried.

use std::fmt::Write as _;

/// Everything one line reports. Borrowed: built at `on_log` from the request's own state.
#[derive(Debug, Clone, Default)]
pub struct AccessRecord<'a> {
    /// Request start, nanoseconds since the Unix epoch.
    pub time_nanos: Option<u64>,
    /// Our own name for the reporter: no byte to escape.
    pub reporter: &'a str,
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub authority: &'a [u8],
    /// `http` or `grpc`, as in the `request_protocol` label.
    pub protocol: &'a str,
    pub status: Option<i64>,
    /// gRPC requests only: the `grpc_response_status` label's code.
    pub grpc_status: Option<i64>,
    /// Envoy's short codes joined by `,` (or `-`): no byte to escape.
    pub response_flags: &'a str,
    pub duration_ms: Option<u64>,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    pub peer_principal: Option<&'a [u8]>,
    /// Label values, so already encoded to bytes that need no JSON escape.
    pub source_workload: &'a str,
    pub source_namespace: &'a str,
    /// Lowercase hex.
    pub trace_id: Option<&'a str>,
    /// Decisions of the suite's other filters, present only when they ran.
    pub canary: Option<&'a str>,
    pub ratelimit: Option<&'a str>,
    pub intentions: Option<&'a str>,
}

struct Line {
    out: String,
    max: usize,
}

/// `,"name":`, the text that starts every field but the first, made at compile time.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

impl Line {
    /// Starts a field; `key` is [`key!`]'s text.
    fn key(&mut self, key: &str) {
        self.out.push_str(key);
    }

    fn str(&mut self, key: &str, raw: &[u8]) {
        self.key(key);
        let cut = raw.get(..self.max).unwrap_or(raw);
        escape_into(&mesh_core::request::utf8_lossy(cut), &mut self.out);
    }

    /// A field already known to be UTF-8: no validation pass unless it must be cut.
    fn text(&mut self, key: &str, value: &str) {
        if value.len() > self.max {
            return self.str(key, value.as_bytes());
        }
        self.key(key);
        escape_into(value, &mut self.out);
    }

    /// A field whose text needs no escape by construction (our constants, label-encoded
    /// values, hex): written without the escape check. Debug builds still check it.
    fn plain(&mut self, key: &str, value: &str) {
        debug_assert!(!maybe_special(value.as_bytes()), "{value:?}");
        if value.len() > self.max {
            return self.str(key, value.as_bytes());
        }
        self.key(key);
        self.out.push('"');
        self.out.push_str(value);
        self.out.push('"');
    }

    fn opt_str(&mut self, key: &str, raw: Option<&[u8]>) {
        match raw {
            Some(v) => self.str(key, v),
            None => {
                self.key(key);
                self.out.push_str("null");
            }
        }
    }

    fn num(&mut self, key: &str, n: Option<u64>) {
        self.key(key);
        match n {
            Some(n) => push_digits(&mut self.out, n, 1),
            None => self.out.push_str("null"),
        }
    }

    fn signed(&mut self, key: &str, n: Option<i64>) {
        match n {
            Some(n) if n < 0 => {
                self.key(key);
                self.out.push('-');
                push_digits(&mut self.out, n.unsigned_abs(), 1);
            }
            _ => self.num(key, n.and_then(|n| u64::try_from(n).ok())),
        }
    }
}

/// Bytes that may need an escape: `"`, `\\`, controls, DEL and the lead byte of U+2028/9.
// Evaluated at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b == 0x7f || b == b'"' as usize || b == b'\\' as usize || b == 0xe2;
        b += 1;
    }
    t
};

/// Whether `bytes` may need an escape: a [`SPECIAL`] byte or any non-ASCII one. Looked at
/// eight bytes at a time (a value with none, nearly every one, is copied whole).
pub(crate) fn maybe_special(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte of `v` that is zero (exact while every byte is ASCII).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let (words, rest) = bytes.as_chunks::<8>();
    let word_special = |w: &[u8; 8]| {
        let x = u64::from_le_bytes(*w);
        let flagged = x
            | x.wrapping_sub(ONES * 0x20) & !x
            | zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | zero(x ^ (ONES * 0x7f));
        flagged & HIGH != 0
    };
    words.iter().any(word_special)
        || rest
            .iter()
            .any(|b| *b >= 0x80 || SPECIAL.get(usize::from(*b)).copied().unwrap_or(true))
}

/// Writes `s` as a JSON string literal. Runs of bytes that need no escape are copied whole:
/// the hot path of every access line.
pub fn escape_into(s: &str, out: &mut String) {
    out.push('"');
    if !maybe_special(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let bytes = s.as_bytes();
    let special = |b: &u8| SPECIAL.get(usize::from(*b)).copied().unwrap_or(true);
    let (mut start, mut i) = (0, 0);
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(special))
        .map(|off| i + off)
    {
        let b = bytes.get(at).copied().unwrap_or_default();
        // U+2028 and U+2029 (E2 80 A8/A9) end lines in some JavaScript parsers.
        let width = match b {
            b'"' | b'\\' | 0..=0x1f | 0x7f => 1,
            0xe2 if matches!(bytes.get(at + 1..at + 3), Some([0x80, 0xa8 | 0xa9])) => 3,
            _ => {
                i = at + 1;
                continue;
            }
        };
        // Escapes start at ASCII bytes or a 3-byte sequence: char boundaries.
        out.push_str(s.get(start..at).unwrap_or_default());
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let c = s.get(at..at + width).and_then(|t| t.chars().next());
                let _ = write!(out, "\\u{:04x}", c.map_or(0, u32::from));
            }
        }
        i = at + width;
        start = i;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

// === impl AccessRecord ===

impl AccessRecord<'_> {
    /// The JSON line; client-controlled strings keep at most `max_field_bytes` bytes.
    pub fn to_json(&self, max_field_bytes: usize) -> String {
        let mut l = Line {
            out: String::with_capacity(512),
            max: max_field_bytes,
        };
        l.out.push_str("{\"time\":");
        match self.time_nanos {
            Some(t) => {
                l.out.push('"');
                rfc3339_millis(t, &mut l.out);
                l.out.push('"');
            }
            None => l.out.push_str("null"),
        }
        l.plain(key!("reporter"), self.reporter);
        l.str(key!("method"), self.method);
        l.str(key!("path"), self.path);
        l.str(key!("authority"), self.authority);
        l.plain(key!("protocol"), self.protocol);
        l.signed(key!("status"), self.status);
        if self.grpc_status.is_some() {
            l.signed(key!("grpc_status"), self.grpc_status);
        }
        l.plain(key!("response_flags"), self.response_flags);
        l.num(key!("duration_ms"), self.duration_ms);
        l.num(key!("request_bytes"), self.request_bytes);
        l.num(key!("response_bytes"), self.response_bytes);
        l.opt_str(key!("peer_principal"), self.peer_principal);
        l.plain(key!("source_workload"), self.source_workload);
        l.plain(key!("source_namespace"), self.source_namespace);
        match self.trace_id {
            Some(t) => l.plain(key!("trace_id"), t),
            None => l.opt_str(key!("trace_id"), None),
        }
        for (key, value) in [
            (key!("canary"), self.canary),
            (key!("ratelimit"), self.ratelimit),
            (key!("intentions"), self.intentions),
        ] {
            if let Some(v) = value {
                l.text(key, v);
            }
        }
        l.out.push('}');
        l.out
    }
}

thread_local! {
    // The last second formatted on this worker and its text: most lines share it.
    static LAST_SECOND: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) for `nanos` since the Unix epoch.
pub fn rfc3339_millis(nanos: u64, out: &mut String) {
    let secs = nanos / 1_000_000_000;
    let cached = LAST_SECOND.try_with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return false;
        };
        if last.0 != secs {
            last.1.clear();
            second_prefix(secs, &mut last.1);
            last.0 = secs;
        }
        out.push_str(&last.1);
        true
    });
    if cached != Ok(true) {
        second_prefix(secs, out);
    }
    push_digits(out, (nanos / 1_000_000) % 1000, 3);
    out.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the Unix epoch.
fn second_prefix(secs: u64, out: &mut String) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let parts = [
        (y, 4, '-'),
        (m, 2, '-'),
        (d, 2, 'T'),
        (rem / 3600, 2, ':'),
        ((rem % 3600) / 60, 2, ':'),
        (rem % 60, 2, '.'),
    ];
    for (n, width, sep) in parts {
        push_digits(out, n, width);
        out.push(sep);
    }
}

/// Decimal digits of `n`, zero-padded to `width`, without `core::fmt` (the access line's
/// hot path).
pub(crate) fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let start = buf.len().saturating_sub(width);
    let mut at = buf.len();
    while n > 0 && at > 0 {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            // `n % 10` is a single digit.
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
    }
    let from = at.min(start).min(buf.len() - 1);
    // ASCII digits, pushed as chars: no UTF-8 check of the buffer.
    out.extend(
        buf.get(from..)
            .unwrap_or_default()
            .iter()
            .map(|&d| char::from(d)),
    );
}

/// Gregorian (year, month, day) of a day count since 1970-01-01, by 400-year eras.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
