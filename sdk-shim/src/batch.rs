//! Reading several properties with one host call: a [`PropertySet`] prepared once per
//! configuration, and the pieces a host needs to serve it as one expression.

/// Properties read together, in order, by [`crate::Properties::properties`]. Prepared once
/// per configuration with [`crate::Properties::prepare_properties`]; a host that cannot
/// batch leaves it unprepared and reads the paths one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertySet {
    paths: &'static [&'static [&'static str]],
    /// The host's handle for the prepared read (in Envoy, a CEL expression's token).
    handle: Option<u32>,
    /// The first path is a flag and the others are read only when it is true.
    gated: bool,
}

// === impl PropertySet ===

impl PropertySet {
    pub const fn new(paths: &'static [&'static [&'static str]]) -> Self {
        Self {
            paths,
            handle: None,
            gated: false,
        }
    }
    /// A set whose first path is a flag (`connection.mtls`) and whose other paths exist
    /// only when it is true: they are read only then, so one read serves both cases.
    pub const fn gated(paths: &'static [&'static [&'static str]]) -> Self {
        Self {
            paths,
            handle: None,
            gated: true,
        }
    }
    pub fn is_gated(&self) -> bool {
        self.gated
    }
    /// Whether the set holds `path`.
    pub fn contains(&self, path: &[&str]) -> bool {
        self.paths.contains(&path)
    }
    pub fn paths(&self) -> &'static [&'static [&'static str]] {
        self.paths
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

/// The CEL expression that reads `set`: its list, or for a gated set
/// `flag ? [flag, a, b] : [flag]`; `None` as for [`cel_list`].
pub fn cel_expr(set: &PropertySet) -> Option<String> {
    let list = cel_list(set.paths())?;
    match (set.gated, set.paths().first()) {
        (true, Some(flag)) => {
            let flag = flag.join(".");
            Some(format!("{flag} ? {list} : [{flag}]"))
        }
        _ => Some(list),
    }
}

/// Whether a flag's value reads as true (a CEL bool is one byte).
pub fn is_true(value: Option<&[u8]>) -> bool {
    value.is_some_and(|v| v.first().is_some_and(|b| *b != 0))
}

/// The values of `set` from its serialized list: every path's, or for a gated set whose
/// flag is false just the flag's (the others `None`).
pub fn decode_set(bytes: &[u8], set: &PropertySet) -> Option<Vec<Option<Vec<u8>>>> {
    let n = set.paths().len();
    if let Some(all) = decode_list(bytes, n) {
        return Some(all.into_iter().map(Some).collect());
    }
    if !set.gated {
        return None;
    }
    let flag = decode_list(bytes, 1)?.pop()?;
    if is_true(Some(&flag)) {
        return None;
    }
    let mut out = vec![Some(flag)];
    out.resize(n, None);
    Some(out)
}

/// A CEL list of the attribute paths, `[response.code, request.duration]`; `None` when a
/// segment is not a plain identifier (such a path cannot be written as a field selection).
pub fn cel_list(paths: &[&[&str]]) -> Option<String> {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if paths.is_empty()
        || !paths
            .iter()
            .all(|p| !p.is_empty() && p.iter().all(|s| ident(s)))
    {
        return None;
    }
    let items: Vec<String> = paths.iter().map(|p| p.join(".")).collect();
    Some(format!("[{}]", items.join(", ")))
}

/// The values of a list serialized as proxy-wasm pairs (count, then each pair's two lengths,
/// then each pair's bytes with a NUL after each half; a list element is the first half).
/// `None` unless it holds exactly `expected` well-formed elements.
pub fn decode_list(bytes: &[u8], expected: usize) -> Option<Vec<Vec<u8>>> {
    // The same encoding as a header map: checked and walked by its reader.
    let count = crate::headers::checked_count(bytes).filter(|c| *c == expected)?;
    let out: Vec<Vec<u8>> = crate::headers::Pairs::new(bytes, count)
        .map(|(element, _)| element.to_vec())
        .collect();
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests;
