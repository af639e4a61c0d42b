//! Which rules a request can match, found without visiting the others.
//!
//! Rules select on the path (exact, prefix or regex), methods and headers. A rule with an
//! exact path is filed under that path, one with a prefix in a byte trie of prefixes; every
//! other rule (no `match`, a regex path, or methods and headers only) is tried for every
//! request. The candidates come out in configuration order and each still goes through its
//! whole matcher, so what the index leaves out is only what could never match.

use crate::config::Config;
use mesh_core::{HttpMatch, PathMatch};
use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// The rules of a configuration by what their path condition needs.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    /// Exact path -> rules, in configuration order.
    exact: FxHashMap<String, Vec<usize>>,
    prefixes: Trie,
    /// Rules tried for every request, in configuration order.
    always: Vec<usize>,
    /// Every rule, for a request whose head could not be read (each matcher then reports it).
    all: Vec<usize>,
    needs_head: bool,
    needs_headers: bool,
}

/// A byte trie of path prefixes; node 0 is the root (the empty prefix).
#[derive(Debug, Clone)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// (next byte, node index), sorted by byte.
    children: Vec<(u8, usize)>,
    /// Rules whose prefix ends here, in configuration order.
    rules: Vec<usize>,
}

// === impl RuleIndex ===

impl RuleIndex {
    pub fn new(config: &Config) -> Self {
        let mut index = Self {
            needs_head: config.needs_head(),
            needs_headers: config.needs_headers(),
            all: (0..config.rules.len()).collect(),
            ..Self::default()
        };
        for (i, rule) in config.rules.iter().enumerate() {
            match rule.matcher.as_ref().and_then(HttpMatch::path) {
                Some(PathMatch::Exact(p)) => index.exact.entry(p.clone()).or_default().push(i),
                Some(PathMatch::Prefix(p)) => index.prefixes.insert(p.as_bytes(), i),
                Some(PathMatch::Regex(_)) | None => index.always.push(i),
            }
        }
        index
    }

    /// Whether any rule has a matcher (then `:method` and `:path` are read).
    pub fn needs_head(&self) -> bool {
        self.needs_head
    }

    /// Whether any rule's matcher reads headers.
    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }

    /// The rules to try, in configuration order: for `Some(path)` those that can match it,
    /// for `None` (the head could not be read) every rule.
    pub fn candidates(&self, path: Option<&str>) -> Cow<'_, [usize]> {
        self.candidates_counted(path).0
    }

    /// [`Self::candidates`], with the number of trie nodes walked (bounded by the path's
    /// length, whatever the number of rules).
    pub(crate) fn candidates_counted(&self, path: Option<&str>) -> (Cow<'_, [usize]>, usize) {
        let Some(path) = path else {
            return (Cow::Borrowed(&self.all), 0);
        };
        if self.exact.is_empty() && self.prefixes.is_empty() {
            return (Cow::Borrowed(&self.always), 0);
        }
        let mut out = self.always.clone();
        if let Some(rules) = self.exact.get(path) {
            out.extend_from_slice(rules);
        }
        let walked = self.prefixes.walk(path.as_bytes(), &mut out);
        out.sort_unstable();
        (Cow::Owned(out), walked)
    }
}

// === impl Trie ===

impl Default for Trie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    fn is_empty(&self) -> bool {
        self.nodes.len() <= 1 && self.nodes.first().is_none_or(|n| n.rules.is_empty())
    }

    fn insert(&mut self, prefix: &[u8], rule: usize) {
        let mut at = 0;
        for &b in prefix {
            let Some(node) = self.nodes.get(at) else {
                return;
            };
            at = match node.children.binary_search_by_key(&b, |(c, _)| *c) {
                Ok(k) => node.children.get(k).map_or(0, |(_, n)| *n),
                Err(k) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    if let Some(node) = self.nodes.get_mut(at) {
                        node.children.insert(k, (b, next));
                    }
                    next
                }
            };
        }
        if let Some(node) = self.nodes.get_mut(at) {
            node.rules.push(rule);
        }
    }

    /// Appends the rules of every prefix of `path`; returns the nodes visited.
    fn walk(&self, path: &[u8], out: &mut Vec<usize>) -> usize {
        let mut node = self.nodes.first();
        let mut bytes = path.iter();
        let mut walked = 0;
        while let Some(n) = node {
            walked += 1;
            out.extend_from_slice(&n.rules);
            node = bytes.next().and_then(|b| {
                let k = n.children.binary_search_by_key(b, |(c, _)| *c).ok()?;
                let (_, next) = n.children.get(k)?;
                self.nodes.get(*next)
            });
        }
        walked
    }
}

#[cfg(test)]
mod tests;
