//! Properties of sticky assignment through the whole filter (configuration, sticky header or
//! cookie, route header), over rollouts proptest draws: a user who reached the canary stays on
//! it while its share grows, a user of the stable subset stays there while that share grows,
//! and users spread over the subsets as the weights say.
#![cfg(not(target_arch = "wasm32"))]
// Test code: helpers index the vectors they built and fail loudly on a broken fixture.
#![allow(clippy::indexing_slicing, clippy::expect_used, clippy::panic)]

use mesh_canary::CanaryRoot;
use proptest::prelude::*;
use sdk_shim::testing::{FakeHost, FakeProxy};
use sdk_shim::HeaderMap;

const USERS: usize = 300;

fn config(weights: &[u64], sticky: &str) -> String {
    let subsets: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| format!(r#"{{"name": "v{i}", "weight": {w}}}"#))
        .collect();
    format!(
        r#"{{"services": [{{"host": "reviews", "sticky": {sticky}, "subsets": [{}]}}]}}"#,
        subsets.join(",")
    )
}

fn root(proxy: &FakeProxy, weights: &[u64], sticky: &str) -> CanaryRoot {
    let r = proxy.worker::<CanaryRoot>(config(weights, sticky).as_bytes(), 1);
    assert!(r.is_ok(), "refused {weights:?}: {:?}", r.as_ref().err());
    r.unwrap_or_default()
}

/// The subset index the route header names for one request.
fn routed(root: &CanaryRoot, req: &FakeHost) -> usize {
    FakeProxy::exchange(root, req, 200);
    let subset = req.request_header_str("x-canary-subset");
    subset
        .as_deref()
        .and_then(|s| s.strip_prefix('v'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn by_header(proxy: &FakeProxy, root: &CanaryRoot, user: usize) -> usize {
    routed(
        root,
        &proxy
            .get("reviews", "/")
            .request_header("x-user-id", format!("user-{user}")),
    )
}

/// Share of subset `i` in `b` is at least its share in `a`, compared exactly.
fn share_grows(a: &[u64], b: &[u64], i: usize) -> bool {
    let (ta, tb) = (a.iter().sum::<u64>(), b.iter().sum::<u64>());
    u128::from(b[i]) * u128::from(ta) >= u128::from(a[i]) * u128::from(tb)
}

/// A rollout: weights for 2-4 subsets, then steps that each move weight into the last one.
fn rollout() -> impl Strategy<Value = (Vec<u64>, Vec<(usize, u64)>)> {
    (
        prop::collection::vec(0u64..100, 2..5),
        prop::collection::vec((0usize..3, 1u64..40), 1..6),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Header-sticky users: once on the canary, on it at every later step of the rollout;
    /// and on the first (stable) subset at a step, on it at every earlier step whose stable
    /// share was larger (growth of the first share is monotone too, read backwards).
    #[test]
    fn sticky_users_never_leave_a_growing_subset((start, steps) in rollout()) {
        let proxy = FakeProxy::new();
        let last = start.len() - 1;
        let mut w = start;
        w[last] += 1;
        let mut history: Vec<(Vec<u64>, Vec<usize>)> = Vec::new();
        let r = root(&proxy, &w, r#"{"header": "x-user-id"}"#);
        history.push((w.clone(), (0..USERS).map(|u| by_header(&proxy, &r, u)).collect()));
        for (from, amount) in steps {
            let from = from % last;
            let moved = amount.min(w[from]);
            w[from] -= moved;
            w[last] += moved;
            let r = root(&proxy, &w, r#"{"header": "x-user-id"}"#);
            let now: Vec<usize> = (0..USERS).map(|u| by_header(&proxy, &r, u)).collect();
            for (earlier_w, earlier) in &history {
                prop_assert!(share_grows(earlier_w, &w, last));
                for u in 0..USERS {
                    if earlier[u] == last {
                        prop_assert_eq!(now[u], last, "user {} left the canary at {:?}", u, w);
                    }
                    if now[u] == 0 && share_grows(&w, earlier_w, 0) {
                        prop_assert_eq!(earlier[u], 0, "user {} was not on v0 at {:?}", u, earlier_w);
                    }
                }
            }
            for (u, s) in now.iter().enumerate() {
                prop_assert!(*s < w.len() && w[*s] > 0, "user {} on {} at {:?}", u, s, w);
            }
            history.push((w.clone(), now));
        }
    }

    /// Cookie-sticky users: the cookie issued on the first visit keeps them on the canary as
    /// its share grows, like a header would.
    #[test]
    fn cookie_users_stay_on_a_growing_canary(w0 in 1u64..60, grow in prop::collection::vec(1u64..30, 1..4)) {
        let proxy = FakeProxy::new();
        let sticky = r#"{"cookie": "canary"}"#;
        let mut w = vec![100u64, w0];
        let r = root(&proxy, &w, sticky);
        let mut cookies = Vec::new();
        let mut first = Vec::new();
        for _ in 0..120 {
            let req = proxy.get("reviews", "/");
            first.push(routed(&r, &req));
            let set = req.header_strings(HeaderMap::Response, "set-cookie");
            prop_assert_eq!(set.len(), 1, "no cookie issued");
            let pair = set[0].split(';').next().unwrap_or_default().to_owned();
            cookies.push(pair);
        }
        for g in grow {
            w[1] += g;
            let r = root(&proxy, &w, sticky);
            for (c, was) in cookies.iter().zip(&first) {
                let req = proxy.get("reviews", "/").request_header("cookie", c);
                let now = routed(&r, &req);
                if *was == 1 {
                    prop_assert_eq!(now, 1, "{} left the canary at {:?}", c, w);
                }
                prop_assert!(req.header_strings(HeaderMap::Response, "set-cookie").is_empty());
            }
        }
    }

    /// Distinct users spread over the subsets as the weights say: within 5 standard
    /// deviations of the binomial expectation, and never on a subset of weight 0.
    #[test]
    fn weighted_split_converges(w in prop::collection::vec(0u64..50, 2..5)) {
        prop_assume!(w.iter().sum::<u64>() > 0);
        let proxy = FakeProxy::new();
        let r = root(&proxy, &w, r#"{"header": "x-user-id"}"#);
        let n = 3000;
        let mut counts = vec![0u64; w.len()];
        for u in 0..n {
            let s = by_header(&proxy, &r, u);
            prop_assert!(s < w.len(), "unrouted user");
            counts[s] += 1;
        }
        let total = w.iter().sum::<u64>() as f64;
        for (i, c) in counts.iter().enumerate() {
            let p = w[i] as f64 / total;
            let expected = n as f64 * p;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            prop_assert!((*c as f64 - expected).abs() <= 5.0 * sd + 1.0,
                "subset {} got {} of {}, expected {:.0} (weights {:?})", i, c, n, expected, w);
            if w[i] == 0 {
                prop_assert_eq!(*c, 0);
            }
        }
    }
}

// === host lookup: the index against the scan it replaced ===

use mesh_canary::host::{authority_host, HostPattern, HostTable};

/// The lookup as it was before the index: patterns sorted exact first, then suffixes longest
/// first, then `*` (configuration order among equals), and the first that matches wins.
fn linear_find(patterns: &[HostPattern], authority: &[u8]) -> Option<usize> {
    let host = authority_host(authority)?;
    let rank = |p: &HostPattern| match p {
        HostPattern::Exact(_) => (0, 0),
        HostPattern::Suffix(s) => (1, usize::MAX - s.len()),
        HostPattern::Any => (2, 0),
    };
    let mut entries: Vec<(&HostPattern, usize)> = patterns.iter().zip(0..).collect();
    entries.sort_by_key(|(p, i)| (rank(p), *i));
    entries
        .iter()
        .find(|(p, _)| p.matches(host))
        .map(|(_, i)| *i)
}

const LABELS: [&str; 5] = ["a", "b", "Ex", "svc", "b-1"];

/// A host of 1 to 4 labels from a small alphabet, so that drawn patterns and requests meet.
fn host_name() -> impl Strategy<Value = String> {
    prop::collection::vec(0..LABELS.len(), 1..5)
        .prop_map(|ls| ls.iter().map(|l| LABELS[*l]).collect::<Vec<_>>().join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over drawn host patterns (exact, `*.suffix`, `*`, in any order and case, duplicates
    /// included) and drawn authorities (any case, ports, trailing dots, IPv6 literals, empty),
    /// the indexed table finds the service the linear scan found.
    #[test]
    fn indexed_host_lookup_is_the_linear_scan(
        patterns in prop::collection::vec((0u8..5, host_name()), 0..12),
        requests in prop::collection::vec(
            (host_name(), 0u8..6, any::<bool>()),
            1..10,
        ),
    ) {
        let patterns: Vec<HostPattern> = patterns
            .iter()
            .filter_map(|(kind, h)| {
                let spec = match kind {
                    0 | 1 => h.clone(),
                    2 | 3 => format!("*.{h}"),
                    _ => "*".to_owned(),
                };
                HostPattern::parse(&spec).ok()
            })
            .collect();
        let table = HostTable::new(patterns.clone());
        for (h, shape, upper) in &requests {
            let h = if *upper { h.to_ascii_uppercase() } else { h.clone() };
            let authority = match shape {
                0 => h,
                1 => format!("{h}:8080"),
                2 => format!("{h}."),
                3 => format!("x.{h}:80"),
                4 => "[::1]:443".to_owned(),
                _ => String::new(),
            };
            prop_assert_eq!(
                table.find(authority.as_bytes()),
                linear_find(&patterns, authority.as_bytes()),
                "{:?} {:?}", patterns, authority
            );
        }
    }
}
