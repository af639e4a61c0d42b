//! Reading several properties with one host call: a [`PropertySet`] prepared once per
//! configuration, and the pieces a host needs to serve it as one expression.

/// How the host's log line about a batched read that failed starts (once per VM).
pub const FAILED_LOG: &str = "a batched property read failed";

/// Properties read together, in order, by [`crate::Properties::properties`]. Prepared once
/// per configuration with [`crate::Properties::prepare_properties`]; a host that cannot
/// batch leaves it unprepared and reads the paths one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertySet {
    paths: &'static [&'static [&'static str]],
    /// Bit `i`: path `i` may be absent without failing the batched read.
    optional: u64,
    /// The host's handle for the prepared read (in Envoy, a CEL expression's token).
    handle: Option<u32>,
}

// === impl PropertySet ===

impl PropertySet {
    pub const fn new(paths: &'static [&'static [&'static str]]) -> Self {
        Self {
            paths,
            optional: 0,
            handle: None,
        }
    }
    /// Marks path `index` as one that may be absent (a certificate without a URI SAN): the
    /// batched read then gives it as missing instead of failing as a whole. It reads as
    /// missing when empty too, so only text attributes whose empty value means none qualify.
    #[must_use]
    pub const fn optional(mut self, index: usize) -> Self {
        if index < 64 {
            self.optional |= 1 << index;
        }
        self
    }
    pub fn paths(&self) -> &'static [&'static [&'static str]] {
        self.paths
    }
    pub fn is_optional(&self, index: usize) -> bool {
        optional_bit(self.optional, index)
    }
    pub fn handle(&self) -> Option<u32> {
        self.handle
    }
    #[must_use]
    pub fn prepared(mut self, handle: u32) -> Self {
        self.handle = Some(handle);
        self
    }
}

/// Whether bit `index` of an optional-paths mask is set (paths past 64 are never optional).
fn optional_bit(mask: u64, index: usize) -> bool {
    index < 64 && mask & (1 << index) != 0
}

/// The number of elements of a serialized list, checked, when it is `expected`.
fn list_count(bytes: &[u8], expected: usize) -> Option<usize> {
    // The same encoding as a header map: checked and walked by its reader.
    crate::headers::checked_count(bytes).filter(|c| *c == expected)
}

/// The values of a [`PropertySet`], in its order: borrowed from the host's one buffer when
/// the set was read with one call (no allocation per value), else each read's own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyValues {
    repr: Values,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Values {
    /// A checked serialized list of `count` elements; bit `i` of `optional` reads element
    /// `i` as missing when it is empty.
    Batch {
        bytes: Vec<u8>,
        count: usize,
        optional: u64,
    },
    Each(Vec<Option<Vec<u8>>>),
}

// === impl PropertyValues ===

impl PropertyValues {
    /// The values of `set` from its serialized list (an optional one's empty value as
    /// missing); `None` unless the list holds exactly one element per path.
    pub fn decode(bytes: Vec<u8>, set: &PropertySet) -> Option<Self> {
        let count = list_count(&bytes, set.paths().len())?;
        Some(Self {
            repr: Values::Batch {
                bytes,
                count,
                optional: set.optional,
            },
        })
    }

    /// Values read one by one.
    pub fn each(values: Vec<Option<Vec<u8>>>) -> Self {
        Self {
            repr: Values::Each(values),
        }
    }

    /// Each value in the set's order, `None` where missing or unreadable.
    pub fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> {
        match &self.repr {
            Values::Batch {
                bytes,
                count,
                optional,
            } => Iter::Batch {
                pairs: crate::headers::Pairs::new(bytes, *count),
                index: 0,
                optional: *optional,
            },
            Values::Each(v) => Iter::Each(v.iter()),
        }
    }

    /// The values as owned copies (tests, and callers that keep them all).
    pub fn to_vec(&self) -> Vec<Option<Vec<u8>>> {
        self.iter().map(|v| v.map(<[u8]>::to_vec)).collect()
    }
}

/// [`PropertyValues::iter`]: one match per element, no adapter chain (this runs at every
/// log-time read).
enum Iter<'a> {
    Batch {
        pairs: crate::headers::Pairs<'a>,
        index: usize,
        optional: u64,
    },
    Each(std::slice::Iter<'a, Option<Vec<u8>>>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Batch {
                pairs,
                index,
                optional,
            } => {
                let (v, _) = pairs.next()?;
                let missing = v.is_empty() && optional_bit(*optional, *index);
                *index += 1;
                Some((!missing).then_some(v))
            }
            Self::Each(values) => values.next().map(Option::as_deref),
        }
    }
}

/// The first segment of a path naming an object in the request's filter state by its whole
/// key (`["filter_state", "wasm.mesh.canary"]`): what another module wrote with
/// `set_property(["mesh.canary"])` is there under `wasm.mesh.canary`.
pub const FILTER_STATE: &str = "filter_state";

/// A CEL list of the set's attribute paths, `[response.code, request.duration]`, an optional
/// one as `(has(a.b) ? a.b : "")`, a filter-state object as `filter_state["k"]` (optional:
/// `("k" in filter_state ? filter_state["k"] : b"")`); `None` when a segment is not a plain
/// identifier or a key holds other than `[a-z0-9_.]` (such a path cannot be written here).
pub fn cel_list(set: &PropertySet) -> Option<String> {
    let paths = set.paths();
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let key = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    };
    let item = |i: usize, p: &[&str]| match p {
        [FILTER_STATE, k] if key(k) => Some(if set.is_optional(i) {
            format!("(\"{k}\" in {FILTER_STATE} ? {FILTER_STATE}[\"{k}\"] : b\"\")")
        } else {
            format!("{FILTER_STATE}[\"{k}\"]")
        }),
        _ if !p.is_empty() && p.iter().all(|s| ident(s)) => {
            let p = p.join(".");
            Some(if set.is_optional(i) {
                format!("(has({p}) ? {p} : \"\")")
            } else {
                p
            })
        }
        _ => None,
    };
    if paths.is_empty() {
        return None;
    }
    let items = paths
        .iter()
        .enumerate()
        .map(|(i, p)| item(i, p))
        .collect::<Option<Vec<String>>>()?;
    Some(format!("[{}]", items.join(", ")))
}

/// The values of a list serialized as proxy-wasm pairs (count, then each pair's two lengths,
/// then each pair's bytes with a NUL after each half; a list element is the first half).
/// `None` unless it holds exactly `expected` well-formed elements.
pub fn decode_list(bytes: &[u8], expected: usize) -> Option<Vec<Vec<u8>>> {
    let count = list_count(bytes, expected)?;
    let out: Vec<Vec<u8>> = crate::headers::Pairs::new(bytes, count)
        .map(|(element, _)| element.to_vec())
        .collect();
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests;
