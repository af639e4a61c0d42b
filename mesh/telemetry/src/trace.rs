//! W3C Trace Context `traceparent`: parse, validate, keep, replace or start.
//!
//! This filter is not a tracer: it keeps a valid incoming context as it is (and `tracestate`
//! with it), replaces an invalid one with a fresh trace (dropping `tracestate`, which belongs
//! to the context it replaces), and starts one when none came and the config asks for it.

use std::fmt;

/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceParentError {
    Length,
    Delimiter,
    /// Not lowercase hex.
    Hex,
    /// Version `ff` is forbidden.
    Version,
    ZeroTraceId,
    ZeroParentId,
}

/// The value of each lowercase hex digit, 0xff for every other byte.
// Evaluated at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

fn parse_hex<const N: usize>(s: &[u8]) -> Result<[u8; N], TraceParentError> {
    let mut out = [0u8; N];
    if s.len() != N * 2 {
        return Err(TraceParentError::Length);
    }
    let value = |b: &u8| HEX_VALUE.get(usize::from(*b)).copied().unwrap_or(0xff);
    // Any byte that is not a digit sets a high bit: one test per pair.
    let mut bad = 0;
    for (dst, [hi, lo]) in out.iter_mut().zip(s.as_chunks::<2>().0) {
        let (hi, lo) = (value(hi), value(lo));
        bad |= hi | lo;
        *dst = hi << 4 | lo;
    }
    if bad & 0xf0 != 0 {
        return Err(TraceParentError::Hex);
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The two lowercase hex digits of `b`.
fn hex_pair(b: u8) -> [u8; 2] {
    let digit = |nibble: u8| HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
    [digit(b >> 4), digit(b & 0x0f)]
}

/// `bytes` as lowercase hex into `out` by table lookup: the formatter's per-byte `{:02x}`
/// cost about 300 native instructions a byte on every logged request.
fn push_hex(out: &mut String, bytes: &[u8]) {
    // Eight bytes at a time through a buffer: one append per sixteen digits, not per digit.
    for chunk in bytes.chunks(8) {
        let mut buf = [0u8; 16];
        for (pair, b) in buf.as_chunks_mut::<2>().0.iter_mut().zip(chunk) {
            *pair = hex_pair(*b);
        }
        let digits = buf.get(..chunk.len() * 2).unwrap_or_default();
        out.push_str(std::str::from_utf8(digits).unwrap_or_default());
    }
}

// === impl TraceParent ===

impl TraceParent {
    /// Parses a header value by the W3C rules: version 00 is exactly 55 characters; a later
    /// version may be longer if a `-` follows the first 55; `ff`, uppercase hex and all-zero
    /// ids are invalid.
    pub fn parse(value: &[u8]) -> Result<Self, TraceParentError> {
        let head = value
            .get(..TRACEPARENT_LEN)
            .ok_or(TraceParentError::Length)?;
        let [version] = parse_hex::<1>(head.get(..2).unwrap_or_default())?;
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        match value.get(TRACEPARENT_LEN) {
            None => {}
            Some(b'-') if version > 0 => {}
            Some(_) => return Err(TraceParentError::Length),
        }
        if [2, 35, 52].iter().any(|&i| head.get(i) != Some(&b'-')) {
            return Err(TraceParentError::Delimiter);
        }
        let trace_id = parse_hex::<16>(head.get(3..35).unwrap_or_default())?;
        let parent_id = parse_hex::<8>(head.get(36..52).unwrap_or_default())?;
        let [flags] = parse_hex::<1>(head.get(53..55).unwrap_or_default())?;
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(Self {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new version-00 context from 24 random bytes; `None` when no randomness is available.
    pub fn generate(random: impl FnOnce(&mut [u8]) -> bool, sampled: bool) -> Option<Self> {
        let mut bytes = [0u8; 24];
        if !random(&mut bytes) {
            return None;
        }
        let (t, p) = bytes.split_at(16);
        let mut trace_id: [u8; 16] = t.try_into().ok()?;
        let mut parent_id: [u8; 8] = p.try_into().ok()?;
        // All-zero ids are invalid; one chance in 2^64 or more, but never emit one.
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        if parent_id == [0; 8] {
            parent_id[7] = 1;
        }
        Some(Self {
            version: 0,
            trace_id,
            parent_id,
            flags: if sampled { FLAG_SAMPLED } else { 0 },
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        self.with_trace_id_hex(str::to_owned)
    }

    /// `f` of [`TraceParent::trace_id_hex`], written on the stack.
    pub fn with_trace_id_hex<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        let mut buf = [0u8; 32];
        for (pair, b) in buf.as_chunks_mut::<2>().0.iter_mut().zip(&self.trace_id) {
            *pair = hex_pair(*b);
        }
        f(std::str::from_utf8(&buf).unwrap_or_default())
    }

    /// The version-00 header value (a later version is kept as received, never re-encoded).
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(TRACEPARENT_LEN);
        push_hex(&mut out, &[self.version]);
        out.push('-');
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.parent_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }
}

impl fmt::Display for TraceParent {
    /// The version-00 header value (a later version is kept as received, never re-encoded).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

/// What to do with the request's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceOutcome {
    /// Valid incoming context: leave `traceparent` and `tracestate` alone.
    Kept(TraceParent),
    /// Invalid incoming context: set this one, drop `tracestate`.
    Replaced(TraceParent),
    /// No incoming context: set this one.
    Started(TraceParent),
    /// Invalid and no randomness to replace it: remove `traceparent` and `tracestate`.
    Removed,
    /// None came and none is started.
    Absent,
}

impl TraceOutcome {
    pub fn trace(&self) -> Option<&TraceParent> {
        match self {
            Self::Kept(t) | Self::Replaced(t) | Self::Started(t) => Some(t),
            Self::Removed | Self::Absent => None,
        }
    }
}

/// Decides from the incoming header value (`None` when absent).
pub fn decide(
    incoming: Option<&[u8]>,
    start_when_absent: bool,
    sampled: bool,
    random: impl FnOnce(&mut [u8]) -> bool,
) -> TraceOutcome {
    match incoming.map(TraceParent::parse) {
        Some(Ok(tp)) => TraceOutcome::Kept(tp),
        Some(Err(_)) => TraceParent::generate(random, sampled)
            .map_or(TraceOutcome::Removed, TraceOutcome::Replaced),
        None if start_when_absent => TraceParent::generate(random, sampled)
            .map_or(TraceOutcome::Absent, TraceOutcome::Started),
        None => TraceOutcome::Absent,
    }
}

#[cfg(test)]
mod tests;
