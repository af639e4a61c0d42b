//! Consul precedence as a property: the level of a source/destination pair is the documented
//! nine-row table, the levels order the nine kinds of pair totally, and over any set of
//! intentions proptest draws, the decision for any peer is the one the table and "deny wins
//! ties" give, whatever the configuration order.
#![cfg(not(target_arch = "wasm32"))]
// Test code: helpers index the vectors they built and fail loudly on a broken fixture.
#![allow(clippy::indexing_slicing, clippy::expect_used, clippy::panic)]

use mesh_core::MatchInput;
use mesh_intentions::{precedence, Action, DecidedBy, IntentionsConfig, NamePattern, Peer, Policy};
use proptest::prelude::*;

/// The crate documentation's table: (source namespace, source name, destination namespace,
/// destination name) exact (`true`) or `*`, and the level.
const TABLE: [(bool, bool, bool, bool, u8); 9] = [
    (true, true, true, true, 9),
    (true, false, true, true, 8),
    (false, false, true, true, 7),
    (true, true, true, false, 6),
    (true, false, true, false, 5),
    (false, false, true, false, 4),
    (true, true, false, false, 3),
    (true, false, false, false, 2),
    (false, false, false, false, 1),
];

/// (namespace exact, name exact) of a pattern.
fn kind(p: &NamePattern) -> (bool, bool) {
    match p {
        NamePattern::Exact(_) => (true, true),
        NamePattern::Namespace(_) => (true, false),
        NamePattern::Any => (false, false),
    }
}

fn documented(src: &NamePattern, dst: &NamePattern) -> u8 {
    let ((sn, sm), (dn, dm)) = (kind(src), kind(dst));
    TABLE
        .iter()
        .find(|r| (r.0, r.1, r.2, r.3) == (sn, sm, dn, dm))
        .map_or(0, |r| r.4)
}

const SOURCES: [&str; 7] = [
    "web",
    "team/web",
    "team/*",
    "other/*",
    "*",
    "team/api2",
    "other/x",
];
const DESTINATIONS: [&str; 5] = ["team/api", "team/*", "*", "other/svc", "api"];
const PEERS: [Option<(&str, &str)>; 6] = [
    Some(("default", "web")),
    Some(("team", "web")),
    Some(("team", "api2")),
    Some(("other", "x")),
    Some(("default", "api")),
    None,
];

fn pattern(s: &str) -> NamePattern {
    NamePattern::parse(s).unwrap_or(NamePattern::Any)
}

/// The selection as it was before the index: a scan for the first intention (highest level
/// first) whose source matches, then every intention of that level whose source matches.
fn linear_candidates(policy: &Policy, peer: &Peer) -> Vec<usize> {
    let intentions = policy.intentions();
    let Some(svc) = peer.service() else {
        return Vec::new();
    };
    let Some(first) = intentions.iter().position(|i| i.source.matches(svc)) else {
        return Vec::new();
    };
    let level = intentions[first].precedence;
    intentions
        .iter()
        .enumerate()
        .skip(first)
        .take_while(|(_, i)| i.precedence == level)
        .filter(|(_, i)| i.source.matches(svc))
        .map(|(k, _)| k)
        .collect()
}

const NAMESPACES: [&str; 3] = ["default", "team", "other"];
const NAMES: [&str; 4] = ["web", "api2", "x", "y"];
/// Destinations for the index property; `""` leaves the intention's destination out.
const INDEX_DESTINATIONS: [&str; 6] = ["", "team/api", "team/*", "*", "other/svc", "api"];

/// A source drawn over exact names, namespace wildcards and `*`.
fn source(kind: u8, ns: usize, name: usize) -> String {
    match kind % 5 {
        0..=2 => format!("{}/{}", NAMESPACES[ns], NAMES[name]),
        3 => format!("{}/*", NAMESPACES[ns]),
        _ => "*".to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn precedence_is_the_documented_table(s in 0usize..SOURCES.len(), d in 0usize..DESTINATIONS.len()) {
        let (src, dst) = (pattern(SOURCES[s]), pattern(DESTINATIONS[d]));
        prop_assert_eq!(precedence(&src, &dst), documented(&src, &dst));
    }

    /// Any two intentions whose pairs are of different kinds have different levels, and a
    /// more specific destination always outranks whatever the sources are.
    #[test]
    fn precedence_orders_pair_kinds_totally(
        a in (0usize..SOURCES.len(), 0usize..DESTINATIONS.len()),
        b in (0usize..SOURCES.len(), 0usize..DESTINATIONS.len()),
    ) {
        let (sa, da) = (pattern(SOURCES[a.0]), pattern(DESTINATIONS[a.1]));
        let (sb, db) = (pattern(SOURCES[b.0]), pattern(DESTINATIONS[b.1]));
        let (la, lb) = (precedence(&sa, &da), precedence(&sb, &db));
        let same_kind = (kind(&sa), kind(&da)) == (kind(&sb), kind(&db));
        prop_assert_eq!(la == lb, same_kind);
        if da.specificity() > db.specificity() {
            prop_assert!(la > lb);
        }
        if da.specificity() == db.specificity() && sa.specificity() > sb.specificity() {
            prop_assert!(la > lb);
        }
    }

    /// The decision over drawn intentions, in drawn order, equals the reference: among the
    /// intentions that match the peer and this destination, those at the highest documented
    /// level decide, deny winning ties; none: the default action; an anonymous peer matches
    /// nothing.
    #[test]
    fn decisions_follow_the_table_and_deny_wins_ties(
        drawn in prop::collection::vec((0usize..SOURCES.len(), 0usize..DESTINATIONS.len(), any::<bool>()), 0..12),
        default_allow in any::<bool>(),
        peer in 0usize..PEERS.len(),
    ) {
        let mut seen = std::collections::HashSet::new();
        let rules: Vec<(usize, usize, bool)> =
            drawn.into_iter().filter(|(s, d, _)| seen.insert((*s, *d))).collect();
        let intentions: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, (s, d, allow))| {
                format!(
                    r#"{{"name":"i{i}","source":"{}","destination":"{}","action":"{}"}}"#,
                    SOURCES[*s], DESTINATIONS[*d], if *allow { "allow" } else { "deny" }
                )
            })
            .collect();
        let default = if default_allow { "allow" } else { "deny" };
        let json = format!(
            r#"{{"trust_domain":"mesh.local","destination":"team/api","default_action":"{default}","intentions":[{}]}}"#,
            intentions.join(",")
        );
        let policy = IntentionsConfig::parse(json.as_bytes());
        prop_assert!(policy.is_ok(), "{json}: {:?}", policy.as_ref().err());
        let policy = policy.unwrap_or_else(|_| unreachable!());

        let san = match PEERS[peer] {
            Some((ns, name)) => format!("spiffe://mesh.local/ns/{ns}/sa/{name}"),
            None => "not-spiffe".to_owned(),
        };
        let who = Peer::from_uri_san(&san, "mesh.local");
        let this = pattern("team/api");
        let mut best: Option<(u8, bool)> = None;
        for (s, d, allow) in &rules {
            let (src, dst) = (pattern(SOURCES[*s]), pattern(DESTINATIONS[*d]));
            let dst_matches = match &dst {
                NamePattern::Exact(svc) => this == NamePattern::Exact(svc.clone()),
                NamePattern::Namespace(ns) => ns == "team",
                NamePattern::Any => true,
            };
            let src_matches = who.service().is_some_and(|svc| src.matches(svc));
            if !(dst_matches && src_matches) {
                continue;
            }
            let level = documented(&src, &dst);
            best = match best {
                Some((l, a)) if l > level => Some((l, a)),
                Some((l, a)) if l == level => Some((l, a && *allow)),
                _ => Some((level, *allow)),
            };
        }
        let expected = match best {
            Some((_, true)) => Action::Allow,
            Some((_, false)) => Action::Deny,
            None if default_allow => Action::Allow,
            None => Action::Deny,
        };
        let input = MatchInput { method: b"GET", path: "/", headers: &mesh_core::request::NO_HEADERS };
        let decision = policy.select(&who).decide(&input);
        prop_assert_eq!(decision.action, expected, "{}", json);
        prop_assert_eq!(matches!(decision.by, DecidedBy::Default { .. }), best.is_none());
    }

    /// The indexed selection picks exactly the candidates, in exactly the order, that the old
    /// linear scan picked, over drawn configurations (exact, namespace and `*` sources, every
    /// kind of destination, L4 and L7) and peers; so the decisions are the same too.
    #[test]
    fn indexed_selection_is_the_linear_scan(
        drawn in prop::collection::vec(
            (any::<u8>(), 0..NAMESPACES.len(), 0..NAMES.len(), 0..INDEX_DESTINATIONS.len(), 0u8..3),
            0..40,
        ),
        with_destination in any::<bool>(),
        peers in prop::collection::vec(prop::option::of((0..NAMESPACES.len(), 0..NAMES.len())), 1..8),
    ) {
        let mut seen = std::collections::HashSet::new();
        let intentions: Vec<String> = drawn
            .iter()
            .enumerate()
            .filter_map(|(i, (kind, ns, name, d, rule))| {
                let src = source(*kind, *ns, *name);
                let dst = if with_destination { INDEX_DESTINATIONS[*d] } else { ["", "*"][*d % 2] };
                // Omitted and explicit `team/api` are one pair, which is refused twice.
                let pair_dst = if dst.is_empty() { "team/api" } else { dst };
                if !seen.insert((src.clone(), pair_dst)) {
                    return None;
                }
                let wildcard_dst = dst.ends_with('*');
                let effect = match rule {
                    0 => r#""action":"allow""#.to_owned(),
                    1 if !wildcard_dst => r#""permissions":[{"action":"deny","http":{"path_prefix":"/admin"}},{"action":"allow","http":{"methods":["GET"]}}]"#.to_owned(),
                    _ => r#""action":"deny""#.to_owned(),
                };
                let dst = if dst.is_empty() { String::new() } else { format!(r#","destination":"{dst}""#) };
                Some(format!(r#"{{"name":"i{i}","source":"{src}"{dst},{effect}}}"#))
            })
            .collect();
        let top = if with_destination { r#","destination":"team/api""# } else { "" };
        let json = format!(
            r#"{{"trust_domain":"mesh.local"{top},"intentions":[{}]}}"#,
            intentions.join(",")
        );
        let policy = IntentionsConfig::parse(json.as_bytes());
        prop_assert!(policy.is_ok(), "{json}: {:?}", policy.as_ref().err());
        let policy = policy.unwrap_or_else(|_| unreachable!());
        for p in &peers {
            let san = match p {
                Some((ns, name)) => {
                    format!("spiffe://mesh.local/ns/{}/sa/{}", NAMESPACES[*ns], NAMES[*name])
                }
                None => "not-spiffe".to_owned(),
            };
            let who = Peer::from_uri_san(&san, "mesh.local");
            let indexed: Vec<usize> = policy.select(&who).indices().collect();
            prop_assert_eq!(indexed, linear_candidates(&policy, &who), "{} {:?}", json, p);
        }
    }
}
