//! Istio's standard metrics and labels, encoded into stat names that Envoy's `stats_tags` turn
//! back into Prometheus labels.
//!
//! proxy-wasm metrics carry no labels, so a series is one stat name:
//! `istio_requests_total;reporter=destination;source_workload=web;...`. Each label segment is
//! `;<label>=<value>`, and one `stats_tags` regex per label captures the segment (removed from
//! the name) and its value (the tag). Values never contain `;` or `=` (they are percent-encoded
//! like every byte outside a small safe set), so no value can end its segment early and forge
//! another label. The last label has a closed vocabulary, so Envoy's default `$`-anchored tag
//! extractors (`_rq_200`) never match a client-chosen value.
//!
//! An unknown value is `unknown`; only `grpc_response_status` may be empty (requests that are
//! not gRPC), as Istio reports it.

use std::borrow::Cow;

/// The four Istio standard metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    RequestsTotal,
    RequestDuration,
    RequestBytes,
    ResponseBytes,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::RequestsTotal,
        Metric::RequestDuration,
        Metric::RequestBytes,
        Metric::ResponseBytes,
    ];

    /// The Prometheus name (what `/stats/prometheus` shows once the tags are extracted).
    pub const fn name(self) -> &'static str {
        match self {
            Metric::RequestsTotal => "istio_requests_total",
            Metric::RequestDuration => "istio_request_duration_milliseconds",
            Metric::RequestBytes => "istio_request_bytes",
            Metric::ResponseBytes => "istio_response_bytes",
        }
    }

    pub const fn is_histogram(self) -> bool {
        !matches!(self, Metric::RequestsTotal)
    }
}

/// Istio's label names, in the order they appear in the stat name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    Reporter,
    SourceWorkload,
    SourceWorkloadNamespace,
    SourcePrincipal,
    SourceApp,
    SourceVersion,
    SourceCanonicalService,
    SourceCanonicalRevision,
    SourceCluster,
    DestinationWorkload,
    DestinationWorkloadNamespace,
    DestinationPrincipal,
    DestinationApp,
    DestinationVersion,
    DestinationService,
    DestinationServiceName,
    DestinationServiceNamespace,
    DestinationCanonicalService,
    DestinationCanonicalRevision,
    DestinationCluster,
    RequestProtocol,
    ResponseCode,
    /// Empty for requests that are not gRPC, as in Istio.
    GrpcResponseStatus,
    ResponseFlags,
    /// Last on purpose: closed vocabulary (see the module docs).
    ConnectionSecurityPolicy,
}

/// Number of labels on every series.
pub const LABEL_COUNT: usize = 25;

impl Label {
    pub const ALL: [Label; LABEL_COUNT] = [
        Label::Reporter,
        Label::SourceWorkload,
        Label::SourceWorkloadNamespace,
        Label::SourcePrincipal,
        Label::SourceApp,
        Label::SourceVersion,
        Label::SourceCanonicalService,
        Label::SourceCanonicalRevision,
        Label::SourceCluster,
        Label::DestinationWorkload,
        Label::DestinationWorkloadNamespace,
        Label::DestinationPrincipal,
        Label::DestinationApp,
        Label::DestinationVersion,
        Label::DestinationService,
        Label::DestinationServiceName,
        Label::DestinationServiceNamespace,
        Label::DestinationCanonicalService,
        Label::DestinationCanonicalRevision,
        Label::DestinationCluster,
        Label::RequestProtocol,
        Label::ResponseCode,
        Label::GrpcResponseStatus,
        Label::ResponseFlags,
        Label::ConnectionSecurityPolicy,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Label::Reporter => "reporter",
            Label::SourceWorkload => "source_workload",
            Label::SourceWorkloadNamespace => "source_workload_namespace",
            Label::SourcePrincipal => "source_principal",
            Label::SourceApp => "source_app",
            Label::SourceVersion => "source_version",
            Label::SourceCanonicalService => "source_canonical_service",
            Label::SourceCanonicalRevision => "source_canonical_revision",
            Label::SourceCluster => "source_cluster",
            Label::DestinationWorkload => "destination_workload",
            Label::DestinationWorkloadNamespace => "destination_workload_namespace",
            Label::DestinationPrincipal => "destination_principal",
            Label::DestinationApp => "destination_app",
            Label::DestinationVersion => "destination_version",
            Label::DestinationService => "destination_service",
            Label::DestinationServiceName => "destination_service_name",
            Label::DestinationServiceNamespace => "destination_service_namespace",
            Label::DestinationCanonicalService => "destination_canonical_service",
            Label::DestinationCanonicalRevision => "destination_canonical_revision",
            Label::DestinationCluster => "destination_cluster",
            Label::RequestProtocol => "request_protocol",
            Label::ResponseCode => "response_code",
            Label::GrpcResponseStatus => "grpc_response_status",
            Label::ResponseFlags => "response_flags",
            Label::ConnectionSecurityPolicy => "connection_security_policy",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Istio's value for a label the reporter could not determine.
pub const UNKNOWN: &str = "unknown";
/// The value of every label (but `reporter`) on the overflow series.
pub const OTHER: &str = "other";
/// Raw bytes kept of one value; longer values are cut (after which they are still escaped).
pub const MAX_VALUE_BYTES: usize = 256;

/// Bytes that go into a value as they are (but a trailing `.`). Everything else becomes `%XX`,
/// `%` included, so the encoding is injective and never produces the `;` or `=` delimiters.
fn is_safe(b: u8) -> bool {
    SAFE.get(usize::from(b)).copied().unwrap_or(false)
}

/// [`is_safe`] by table: one load per byte of every label value a request sets.
// Evaluated at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const SAFE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'@' | b',');
        i += 1;
    }
    t
};

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase())
}

/// Appends the encoded form of `raw` (empty: `unknown`) to `out`. Runs of safe bytes are
/// copied whole: most values need no escape at all.
pub fn encode_value(raw: &[u8], out: &mut String) {
    if raw.is_empty() {
        out.push_str(UNKNOWN);
        return;
    }
    let mut rest = raw.get(..MAX_VALUE_BYTES).unwrap_or(raw);
    while !rest.is_empty() {
        let run = rest.iter().position(|&b| !is_safe(b)).unwrap_or(rest.len());
        let (mut safe, tail) = rest.split_at(run);
        // Envoy drops a trailing dot from tag values (`a.b.` shows as `a.b`), which would
        // merge two series into one label set: escape it.
        let mut escape = tail.first().copied();
        if tail.is_empty() {
            if let Some((b'.', head)) = safe.split_last() {
                (safe, escape) = (head, Some(b'.'));
            }
        }
        // Safe bytes are ASCII.
        out.push_str(std::str::from_utf8(safe).unwrap_or_default());
        if let Some(b) = escape {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
        rest = tail.get(1..).unwrap_or_default();
    }
}

/// One value per label, already encoded. A request's labels borrow the configuration's
/// fixed ones ([`LabelValues::borrowed`]) and own only what it sets itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelValues<'a> {
    values: [Cow<'a, str>; LABEL_COUNT],
}

impl Default for LabelValues<'_> {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| Cow::Borrowed(UNKNOWN)),
        }
    }
}

// === impl LabelValues ===

impl<'a> LabelValues<'a> {
    /// Stores `label`'s value, already encoded.
    fn put(&mut self, label: Label, value: Cow<'a, str>) {
        if let Some(slot) = self.values.get_mut(label.index()) {
            *slot = value;
        }
    }

    /// Sets `label` from raw bytes, encoding them.
    pub fn set(&mut self, label: Label, raw: &[u8]) {
        let mut v = String::with_capacity(raw.len().min(MAX_VALUE_BYTES));
        encode_value(raw, &mut v);
        self.put(label, Cow::Owned(v));
    }

    pub fn set_str(&mut self, label: Label, raw: &str) {
        self.set(label, raw.as_bytes());
    }

    /// Sets `label` from raw bytes that outlive these values: borrowed as they are when they
    /// need no encoding (a SPIFFE ID and its names nearly always), else encoded as by
    /// [`LabelValues::set`].
    pub fn set_borrowed(&mut self, label: Label, raw: &'a [u8]) {
        match std::str::from_utf8(raw) {
            Ok(text) => self.set_borrowed_str(label, text),
            // Not plain (safe bytes are ASCII): encoded.
            Err(_) => self.set(label, raw),
        }
    }

    /// [`LabelValues::set_borrowed`] for text already known to be UTF-8: no second check.
    pub fn set_borrowed_str(&mut self, label: Label, text: &'a str) {
        let raw = text.as_bytes();
        let plain = !raw.is_empty()
            && raw.len() <= MAX_VALUE_BYTES
            && raw.last() != Some(&b'.')
            && raw.iter().all(|b| is_safe(*b));
        if plain {
            self.put(label, Cow::Borrowed(text));
        } else {
            self.set(label, raw);
        }
    }

    /// Sets `label` to the decimal form of `n` (digits and `-` need no encoding), without
    /// `core::fmt`.
    pub fn set_number(&mut self, label: Label, n: i64) {
        // The codes nearly every request carries, without an allocation.
        let common = match n {
            0 => Some("0"),
            200 => Some("200"),
            204 => Some("204"),
            404 => Some("404"),
            503 => Some("503"),
            _ => None,
        };
        if let Some(text) = common {
            return self.put(label, Cow::Borrowed(text));
        }
        let mut v = String::with_capacity(21);
        if n < 0 {
            v.push('-');
        }
        crate::access_log::push_digits(&mut v, n.unsigned_abs(), 1);
        self.put(label, Cow::Owned(v));
    }

    /// The encoded value of `label`.
    pub fn get(&self, label: Label) -> &str {
        self.values.get(label.index()).map_or(UNKNOWN, |v| v)
    }

    /// A copy borrowing every value from `self`: no allocation.
    pub fn borrowed(&self) -> LabelValues<'_> {
        LabelValues {
            values: self.values.each_ref().map(|v| Cow::Borrowed(&**v)),
        }
    }

    /// Appends the values alone, each ended by `;`: as unique as [`LabelValues::series_key`]
    /// (the names and their order are fixed, values never contain `;`) at a third of its length.
    pub fn write_values(&self, out: &mut String) {
        for value in &self.values {
            out.push_str(value);
            out.push(';');
        }
    }

    /// The label part of a stat name: `;reporter=..;source_workload=..` in [`Label::ALL`] order.
    pub fn series_key(&self) -> String {
        let len = Label::ALL
            .iter()
            .zip(&self.values)
            .map(|(l, v)| l.name().len() + v.len() + 2)
            .sum();
        let mut key = String::with_capacity(len);
        for (label, value) in Label::ALL.iter().zip(&self.values) {
            key.push(';');
            key.push_str(label.name());
            key.push('=');
            key.push_str(value);
        }
        key
    }
}

impl LabelValues<'static> {
    /// The overflow series: every label `other` but the reporter.
    pub fn overflow(reporter: &str) -> Self {
        let mut v = Self {
            values: std::array::from_fn(|_| Cow::Borrowed(OTHER)),
        };
        v.set_str(Label::Reporter, reporter);
        v
    }
}

/// Values of closed vocabularies, set without encoding or allocation.
pub mod plain {
    pub const HTTP: &str = "http";
    pub const GRPC: &str = "grpc";
    pub const MUTUAL_TLS: &str = "mutual_tls";
    pub const NONE: &str = "none";
    pub const NO_FLAGS: &str = "-";
}

impl LabelValues<'_> {
    /// Sets one of the [`plain`] constants (safe, non-empty) without encoding or allocating.
    pub fn set_const(&mut self, label: Label, value: &'static str) {
        debug_assert!(!value.is_empty() && value.bytes().all(is_safe));
        self.put(label, Cow::Borrowed(value));
    }
}

impl LabelValues<'_> {
    /// Sets `label` to the empty value (Istio's `grpc_response_status` outside gRPC), which
    /// [`LabelValues::set`] would turn into `unknown`.
    pub fn set_empty(&mut self, label: Label) {
        self.put(label, Cow::Borrowed(""));
    }
}

/// Highest well-known gRPC status (`UNAUTHENTICATED`).
const MAX_KNOWN_GRPC_STATUS: u64 = 16;

/// The `grpc_response_status` of a gRPC request, as Envoy's `Grpc::Common::getGrpcStatus`
/// (which Istio uses) computes it: the `grpc-status` of the trailers, else of the headers
/// (a trailers-only answer), else the HTTP status mapped the way gRPC documents it. A value
/// that is not a well-known code is `-1` (Envoy's `InvalidCode`); `None` when nothing is known.
pub fn grpc_status(grpc_status: Option<&[u8]>, http_status: Option<i64>) -> Option<i64> {
    if let Some(raw) = grpc_status.filter(|v| !v.is_empty()) {
        let code = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|c| *c <= MAX_KNOWN_GRPC_STATUS)
            .and_then(|c| i64::try_from(c).ok());
        return Some(code.unwrap_or(-1));
    }
    http_status.map(|code| match code {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    })
}

/// The stat name of `metric` for the series `key` (from [`LabelValues::series_key`]).
pub fn stat_name(metric: Metric, key: &str) -> String {
    let mut name = String::with_capacity(metric.name().len() + key.len());
    name.push_str(metric.name());
    name.push_str(key);
    name
}

/// The `stats_tags` entry for `label`: group 1 (`;label=value`) is cut from the name, group 2
/// (`value`) becomes the tag. The `=` after the name keeps `source_workload` from matching
/// `source_workload_namespace`.
pub fn tag_regex(label: Label) -> String {
    format!("(;{}=([^;]*))", label.name())
}

/// Parses a stat name back into its metric name and (label, encoded value) pairs; what the
/// `stats_tags` regexes do, for tests and for hosts without tag extraction.
pub fn parse_stat_name(name: &str) -> (&str, Vec<(&str, &str)>) {
    let mut parts = name.split(';');
    let metric = parts.next().unwrap_or_default();
    let labels = parts
        .map(|seg| seg.split_once('=').unwrap_or((seg, "")))
        .collect();
    (metric, labels)
}

/// Reverses [`encode_value`] for display (`%3B` -> `;`); invalid escapes stay as they are.
pub fn decode_value(encoded: &str) -> Vec<u8> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
