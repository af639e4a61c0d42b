//! The compiled, validated intentions of one destination and how a request is decided.

use mesh_core::{HttpMatch, MatchInput};
use rustc_hash::FxHashMap;
use sdk_shim::HeaderSnapshot;
use std::borrow::Cow;

use crate::identity::Peer;
use crate::pattern::{NamePattern, ServiceName, ServiceRef};

/// What an intention or permission does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// Enforce decisions, or only report them; the policy decides the same in both, the filter
/// ([`crate::filter`]) carries audit mode out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

/// One L7 permission: the first that matches decides.
#[derive(Debug, Clone)]
pub struct Permission {
    pub action: Action,
    pub http: HttpMatch,
}

/// An intention's effect.
#[derive(Debug, Clone)]
pub enum Rule {
    L4(Action),
    L7(Vec<Permission>),
}

/// One compiled intention that applies to this destination.
#[derive(Debug, Clone)]
pub struct Intention {
    pub name: String,
    pub source: NamePattern,
    /// `None`: this workload, when the configuration does not name it.
    pub destination: Option<NamePattern>,
    /// Consul precedence, 1 to 9.
    pub precedence: u8,
    pub rule: Rule,
}

/// Who decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// Intention `index` of [`Policy::intentions`]; `permission` for L7 intentions.
    Intention {
        index: usize,
        permission: Option<usize>,
    },
    /// `default_action`: no intention matched, or L7 intention `after` had no matching
    /// permission.
    Default { after: Option<usize> },
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub by: DecidedBy,
}

/// Validated intentions for one destination, ready to decide requests. Build it with
/// [`crate::IntentionsConfig::compile`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub trust_domain: String,
    pub destination: Option<ServiceName>,
    pub default_action: Action,
    pub mode: Mode,
    /// Intentions for this destination, highest precedence first (config order within one).
    pub(crate) intentions: Vec<Intention>,
    /// `intentions` by source, so that a peer finds its candidates without a scan.
    pub(crate) index: SourceIndex,
    /// How many valid intentions name other destinations.
    pub(crate) ignored: usize,
}

/// The intentions that decide a peer's requests: those at the highest matching precedence.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'p> {
    policy: &'p Policy,
    /// Indices of the candidates, each part in ascending order; all empty means
    /// `default_action`.
    parts: [&'p [usize]; 3],
}

/// Indices of [`Policy::intentions`] by precedence level (highest first) and, within a level,
/// by what the source names: one exact service, one namespace, or any peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceIndex {
    levels: Vec<Level>,
}

/// The intentions of one precedence level, each list in ascending index order. A level's
/// source specificity is fixed by Consul's formula, so in practice one bucket is used.
#[derive(Debug, Clone, Default)]
struct Level {
    /// By the source's namespace: its exact services and its `NS/*`. Nested, so a peer's
    /// names are looked up as borrowed, each hashed once.
    namespaces: FxHashMap<String, Namespace>,
    any: Vec<usize>,
}

/// One namespace's intentions within a level.
#[derive(Debug, Clone, Default)]
struct Namespace {
    exact: FxHashMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

/// The candidates of a selection in ascending index order: a merge of its sorted parts.
struct Merge<'p> {
    parts: [&'p [usize]; 3],
}

// === impl Action ===

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

// === impl Policy ===

impl Policy {
    pub fn intentions(&self) -> &[Intention] {
        &self.intentions
    }

    pub fn ignored(&self) -> usize {
        self.ignored
    }

    /// Finds the intentions that decide requests from `peer`. Anonymous peers match none.
    pub fn select<'p>(&'p self, peer: &'p Peer) -> Selection<'p> {
        self.select_counted(peer).0
    }

    /// [`Self::select`], with how many index buckets and candidates it looked at (the work
    /// that must not grow with the number of intentions).
    pub(crate) fn select_counted<'p>(&'p self, peer: &'p Peer) -> (Selection<'p>, usize) {
        let mut looked = 0;
        let mut parts: [&[usize]; 3] = [&[]; 3];
        if let Some(svc) = peer.service() {
            for level in &self.index.levels {
                looked += 3;
                let found = level.find(svc);
                if found.iter().any(|p| !p.is_empty()) {
                    parts = found;
                    break;
                }
            }
        }
        looked += parts.iter().map(|p| p.len()).sum::<usize>();
        (
            Selection {
                policy: self,
                parts,
            },
            looked,
        )
    }

    /// The name a decision goes by in stats, logs and published decisions.
    pub fn decider_name(&self, by: DecidedBy) -> &str {
        match by {
            DecidedBy::Intention { index, .. } => self
                .intentions
                .get(index)
                .map_or("unknown", |i| i.name.as_str()),
            DecidedBy::Default { .. } => "default",
        }
    }
}

// === impl Selection ===

impl<'p> Selection<'p> {
    /// The indices (into [`Policy::intentions`]) of the intentions that decide, in order.
    pub fn indices(&self) -> impl Iterator<Item = usize> + 'p {
        Merge { parts: self.parts }
    }

    fn candidates(&self) -> impl Iterator<Item = (usize, &'p Intention)> + 'p {
        let intentions = &self.policy.intentions;
        self.indices()
            .filter_map(move |i| intentions.get(i).map(|x| (i, x)))
    }

    /// Whether deciding needs the request's header pairs (some candidate matches headers).
    pub fn needs_headers(&self) -> bool {
        self.candidates().any(|(_, i)| match &i.rule {
            Rule::L4(_) => false,
            Rule::L7(perms) => perms.iter().any(|p| p.http.needs_headers()),
        })
    }

    /// Whether the decision depends on the request at all (an L7 candidate).
    pub fn is_l7(&self) -> bool {
        self.candidates()
            .any(|(_, i)| matches!(i.rule, Rule::L7(_)))
    }

    /// Decides the request; `input.path` must be normalized with [`crate::normalize_path`].
    /// Among candidates of equal precedence, a deny wins.
    pub fn decide(&self, input: &MatchInput<'_>) -> Decision {
        let default = self.policy.default_action;
        let mut allowed = None;
        for (index, intention) in self.candidates() {
            let decision = match &intention.rule {
                Rule::L4(action) => Decision {
                    action: *action,
                    by: DecidedBy::Intention {
                        index,
                        permission: None,
                    },
                },
                Rule::L7(perms) => first_permission(perms, input).map_or(
                    Decision {
                        action: default,
                        by: DecidedBy::Default { after: Some(index) },
                    },
                    |(p, action)| Decision {
                        action,
                        by: DecidedBy::Intention {
                            index,
                            permission: Some(p),
                        },
                    },
                ),
            };
            if decision.action == Action::Deny {
                return decision;
            }
            allowed.get_or_insert(decision);
        }
        allowed.unwrap_or(Decision {
            action: default,
            by: DecidedBy::Default { after: None },
        })
    }
}

// === impl SourceIndex ===

impl SourceIndex {
    /// Indexes intentions sorted by precedence, highest first.
    pub(crate) fn new(intentions: &[Intention]) -> Self {
        let mut levels: Vec<Level> = Vec::new();
        let mut current = None;
        for (i, intention) in intentions.iter().enumerate() {
            if current != Some(intention.precedence) {
                current = Some(intention.precedence);
                levels.push(Level::default());
            }
            let Some(level) = levels.last_mut() else {
                continue;
            };
            match &intention.source {
                NamePattern::Exact(svc) => level
                    .namespaces
                    .entry(svc.namespace.clone())
                    .or_default()
                    .exact
                    .entry(svc.name.clone())
                    .or_default()
                    .push(i),
                NamePattern::Namespace(ns) => level
                    .namespaces
                    .entry(ns.clone())
                    .or_default()
                    .wildcard
                    .push(i),
                NamePattern::Any => level.any.push(i),
            }
        }
        Self { levels }
    }
}

// === impl Level ===

impl Level {
    fn find(&self, svc: ServiceRef<'_>) -> [&[usize]; 3] {
        match self.namespaces.get(svc.namespace) {
            Some(ns) => [
                ns.exact.get(svc.name).map_or(&[], Vec::as_slice),
                &ns.wildcard,
                &self.any,
            ],
            None => [&[], &[], &self.any],
        }
    }
}

// === impl Merge ===

impl Iterator for Merge<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let part = self
            .parts
            .iter_mut()
            .filter(|p| !p.is_empty())
            .min_by_key(|p| p.first().copied())?;
        let (first, rest) = part.split_first()?;
        *part = rest;
        Some(*first)
    }
}

/// The first permission matching `input`. A deny is lenient where servers are, so that no
/// reading of the request an upstream might make slips past it:
/// - its methods also catch case variants (`delete` cannot slip past a deny on `DELETE`);
/// - it is also tried on the path without its trailing slash (`/secret/` vs `/secret`);
/// - its header matchers also see each comma-separated element of a header value, since
///   `x-tenant: guest, admin` means the same as two `x-tenant` lines to most servers.
fn first_permission(perms: &[Permission], input: &MatchInput<'_>) -> Option<(usize, Action)> {
    let upper;
    let mut deny_input = *input;
    if input.method.iter().any(u8::is_ascii_lowercase) {
        upper = input.method.to_ascii_uppercase();
        deny_input.method = &upper;
    }
    let trimmed = input.path.strip_suffix('/').filter(|t| !t.is_empty());
    let split = split_lists(perms, input.headers);
    perms.iter().enumerate().find_map(|(i, p)| {
        let matched = match p.action {
            Action::Allow => p.http.matches(input),
            Action::Deny => {
                let paths = std::iter::once(input.path).chain(trimmed);
                let headers = std::iter::once(input.headers).chain(split.as_ref());
                paths.into_iter().any(|path| {
                    headers.clone().any(|headers| {
                        p.http.matches(&MatchInput {
                            path,
                            headers,
                            ..deny_input
                        })
                    })
                })
            }
        };
        matched.then_some((i, p.action))
    })
}

/// The header pairs plus, for each header some deny permission looks at, one pair per
/// comma-separated element of a listed value and, for a value that is not UTF-8, its lossy
/// reading (a regex never matches raw non-UTF-8 bytes, so `curl\xff` would slip past a deny
/// on `curl.*`); `None` when no such header needs it. Only those headers: an extra pair
/// copies the header's name, so a long unrelated name with a value full of commas would
/// otherwise cost its length times the number of commas.
fn split_lists(perms: &[Permission], headers: &HeaderSnapshot) -> Option<HeaderSnapshot> {
    let denied = |name: &[u8]| {
        perms.iter().filter(|p| p.action == Action::Deny).any(|p| {
            p.http
                .header_names()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        })
    };
    let odd = |v: &[u8]| v.contains(&b',') || std::str::from_utf8(v).is_err();
    let listed = |(k, v): &(&[u8], &[u8])| odd(v) && denied(k);
    if !headers.pairs().any(|h| listed(&h)) {
        return None;
    }
    let mut out: Vec<(&[u8], Cow<'_, [u8]>)> = headers
        .pairs()
        .map(|(k, v)| (k, Cow::Borrowed(v)))
        .collect();
    for (k, v) in headers.pairs().filter(listed) {
        let lossy = String::from_utf8_lossy(v);
        let readings: &[&[u8]] = match &lossy {
            Cow::Borrowed(_) => &[v],
            Cow::Owned(l) => {
                out.push((k, Cow::Owned(l.as_bytes().to_vec())));
                &[v, l.as_bytes()]
            }
        };
        for value in readings.iter().filter(|r| r.contains(&b',')) {
            for part in value.split(|b| *b == b',') {
                out.push((k, Cow::Owned(part.trim_ascii().to_vec())));
            }
        }
    }
    Some(HeaderSnapshot::from_pairs(&out))
}

#[cfg(test)]
mod tests;
