//! The limiter's promise over any schedule proptest draws: request times, keys, CAS conflicts
//! and other workers' requests racing between a read and its compare-and-swap. Whatever the
//! interleaving, a key never gets more than `burst + span * requests / per` admissions within
//! any span of the schedule's times; with one key and at most `MAX_CAS_RETRIES` conflicts per
//! request, the admissions are exactly those of GCRA run request by request.
#![cfg(not(target_arch = "wasm32"))]
// Test code: helpers index the vectors they built and fail loudly on a broken fixture.
#![allow(clippy::indexing_slicing, clippy::expect_used, clippy::panic)]

use mesh_ratelimit::gcra::{Limit, Outcome};
use mesh_ratelimit::table::{self, Failure, TableKeys, MAX_CAS_RETRIES};
use proptest::prelude::*;
use sdk_shim::testing::FakeStore;
use sdk_shim::{HeaderSnapshot, HostError, Namespace, SharedStore, Versioned};
use std::cell::RefCell;

/// One request of the schedule.
#[derive(Debug, Clone)]
struct Event {
    /// Nanoseconds after the previous request.
    gap: u64,
    key: u64,
    /// CAS writes by other workers that leave the bucket as it was (they bump the version).
    conflicts: u32,
    /// Requests of other workers (by key) that complete between this one's read and write.
    racers: Vec<u64>,
}

/// Another worker's move, done before the next CAS write reaches the store.
#[derive(Debug, Clone, Copy)]
enum Race {
    Bump,
    Request(u64),
}

/// A store where other workers act between a read and a compare-and-swap.
struct Racing {
    inner: FakeStore,
    pending: RefCell<Vec<Race>>,
    /// (key fingerprint, admitted) of the racers' requests.
    racer_outcomes: RefCell<Vec<(u64, bool)>>,
    keys: TableKeys,
    limit: Limit,
    max_keys: u32,
    now: RefCell<u64>,
}

impl SharedStore for Racing {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        self.inner.shared_get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        if cas.is_some() {
            let next = self.pending.borrow_mut().pop();
            match next {
                Some(Race::Bump) => {
                    let current = self.inner.shared_get(key)?.map(|v| v.value);
                    self.inner
                        .shared_set(key, &current.unwrap_or_default(), None)?;
                }
                Some(Race::Request(fp)) => {
                    let now = *self.now.borrow();
                    let got = table::acquire(
                        &self.inner,
                        &self.keys,
                        &self.limit,
                        fp,
                        self.max_keys,
                        now,
                    );
                    let admitted = matches!(
                        got,
                        Ok(table::Acquired {
                            outcome: Outcome::Allow { .. },
                            ..
                        })
                    );
                    self.racer_outcomes.borrow_mut().push((fp, admitted));
                }
                None => {}
            }
        }
        self.inner.shared_set(key, value, cas)
    }
}

fn events(max_gap: u64, keys: u64) -> impl Strategy<Value = Vec<Event>> {
    let event = (
        0..=max_gap,
        1..=keys,
        prop_oneof![4 => Just(0u32), 1 => 0u32..20],
        prop::collection::vec(1..=keys, 0..3),
    )
        .prop_map(|(gap, key, conflicts, racers)| Event {
            gap,
            key,
            conflicts,
            racers,
        });
    prop::collection::vec(event, 1..120)
}

/// Runs the schedule; returns each key's admission times (racers included, at the time of the
/// request they raced) and how many requests failed on exhausted retries.
fn run(limit: Limit, max_keys: u32, schedule: &[Event]) -> (Vec<(u64, u64)>, usize) {
    let keys = TableKeys::new(Namespace::from_identity(&[b"props"]));
    let store = Racing {
        inner: FakeStore::default(),
        pending: RefCell::new(Vec::new()),
        racer_outcomes: RefCell::new(Vec::new()),
        keys,
        limit,
        max_keys,
        now: RefCell::new(0),
    };
    table::seed(&store.inner, &keys, max_keys).expect("seeding a fake store");
    let mut now = 1_000_000_000u64;
    let mut admitted = Vec::new();
    let mut exhausted = 0;
    for e in schedule {
        now += e.gap;
        *store.now.borrow_mut() = now;
        // Racers first (the stack pops from the end), then the bumps.
        let mut races: Vec<Race> = (0..e.conflicts).map(|_| Race::Bump).collect();
        races.extend(e.racers.iter().rev().map(|k| Race::Request(*k)));
        *store.pending.borrow_mut() = races;
        match table::acquire(&store, &keys, &limit, e.key, max_keys, now) {
            Ok(a) => {
                for (fp, ok) in store.racer_outcomes.borrow_mut().drain(..) {
                    if ok {
                        admitted.push((fp, now));
                    }
                }
                if matches!(a.outcome, Outcome::Allow { .. }) {
                    admitted.push((e.key, now));
                }
            }
            Err(Failure::CasExhausted { .. }) => {
                for (fp, ok) in store.racer_outcomes.borrow_mut().drain(..) {
                    if ok {
                        admitted.push((fp, now));
                    }
                }
                exhausted += 1;
            }
            Err(other) => panic!("a healthy store failed: {other:?}"),
        }
        // Racers a denial left unplayed (it wrote nothing) still make their requests.
        let left: Vec<Race> = store.pending.borrow_mut().drain(..).collect();
        for race in left {
            if let Race::Request(fp) = race {
                let got = table::acquire(&store.inner, &keys, &limit, fp, max_keys, now);
                if matches!(got, Ok(ref a) if matches!(a.outcome, Outcome::Allow { .. })) {
                    admitted.push((fp, now));
                }
            }
        }
    }
    (admitted, exhausted)
}

/// The most admissions GCRA allows within `span` nanoseconds, from the configured numbers.
fn allowed(requests: u64, per: u64, burst: u64, span: u64) -> u128 {
    u128::from(burst) + u128::from(span) * u128::from(requests) / u128::from(per)
}

fn limits() -> impl Strategy<Value = (u64, u64, u64)> {
    (
        1u64..20,
        prop_oneof![
            Just(100_000_000u64),
            Just(1_000_000_000),
            Just(60_000_000_000)
        ],
        1u64..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_key_is_admitted_more_than_the_limit_allows(
        (requests, per, burst) in limits(),
        schedule in events(400_000_000, 4),
        max_keys in prop_oneof![Just(1u32), Just(2), Just(64)],
    ) {
        let limit = Limit::new(requests, per, burst).expect("a valid limit");
        let (admitted, _) = run(limit, max_keys, &schedule);
        for key in 1..=4u64 {
            let times: Vec<u64> = admitted.iter().filter(|(k, _)| *k == key).map(|(_, t)| *t).collect();
            for i in 0..times.len() {
                for j in i..times.len() {
                    let n = (j - i + 1) as u128;
                    let bound = allowed(requests, per, burst, times[j] - times[i]);
                    prop_assert!(n <= bound,
                        "key {} admitted {} in {} ns; {}/{} ns burst {} allows {}",
                        key, n, times[j] - times[i], requests, per, burst, bound);
                }
            }
        }
        // Keys sharing one slot share its bucket: then the bound holds for all of them together.
        if max_keys == 1 {
            let times: Vec<u64> = admitted.iter().map(|(_, t)| *t).collect();
            for i in 0..times.len() {
                let j = times.len() - 1;
                prop_assert!(((j - i + 1) as u128) <= allowed(requests, per, burst, times[j] - times[i]));
            }
        }
    }

    #[test]
    fn one_key_is_admitted_exactly_as_gcra_says(
        (requests, per, burst) in limits(),
        mut schedule in events(400_000_000, 1),
    ) {
        for e in &mut schedule {
            e.conflicts = e.conflicts.min(MAX_CAS_RETRIES - e.racers.len() as u32);
        }
        let limit = Limit::new(requests, per, burst).expect("a valid limit");
        let (admitted, exhausted) = run(limit, 1024, &schedule);
        prop_assert_eq!(exhausted, 0);
        // The reference: GCRA from its definition, racers before the request they raced.
        let interval = per.div_ceil(requests);
        let tolerance = burst * interval;
        let mut tat = 0u64;
        let mut now = 1_000_000_000u64;
        let mut expected = Vec::new();
        for e in &schedule {
            now += e.gap;
            for _ in 0..=e.racers.len() {
                let next = tat.max(now) + interval;
                if next - now <= tolerance {
                    tat = next;
                    expected.push(now);
                }
            }
        }
        let got: Vec<u64> = admitted.iter().map(|(_, t)| *t).collect();
        prop_assert_eq!(got, expected);
    }
}

// === rule selection: the index against the scan it replaced ===

use mesh_core::MatchInput;
use mesh_ratelimit::select::RuleIndex;
use mesh_ratelimit::Config;

const SEGMENTS: [&str; 5] = ["api", "a", "v1", "x", "ap"];

/// A path of 0 to 3 segments from a small alphabet, maybe with a trailing slash.
fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(0..SEGMENTS.len(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(s, slash)| {
            let mut p: String = s.iter().map(|i| format!("/{}", SEGMENTS[*i])).collect();
            if slash || p.is_empty() {
                p.push('/');
            }
            p
        })
}

/// A rule's `match`: none, an exact path, a prefix (cut anywhere, so `/ap` is a prefix of
/// `/api`), a regex, methods only or a header only; some with methods too.
fn matcher() -> impl Strategy<Value = Option<String>> {
    (0u8..7, path(), 1usize..8, any::<bool>()).prop_map(|(kind, p, cut, get)| {
        let methods = if get { r#","methods":["GET"]"# } else { "" };
        let cut = &p[..cut.min(p.len())];
        match kind {
            0 => None,
            1 => Some(format!(r#"{{"path_exact":"{p}"{methods}}}"#)),
            2 | 3 => Some(format!(r#"{{"path_prefix":"{cut}"{methods}}}"#)),
            4 => Some(format!(r#"{{"path_regex":"{cut}.*"{methods}}}"#)),
            5 => Some(r#"{"methods":["POST"]}"#.to_owned()),
            _ => Some(r#"{"headers":[{"name":"x-tenant","exact":"a"}]}"#.to_owned()),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over drawn rules and requests, the rules the limiter tries in order and that match are
    /// exactly those the scan over every rule found: the index leaves out only rules that
    /// cannot match, and keeps configuration order.
    #[test]
    fn indexed_rule_selection_is_the_linear_scan(
        matchers in prop::collection::vec(matcher(), 0..16),
        requests in prop::collection::vec((path(), any::<bool>(), any::<bool>()), 1..8),
    ) {
        let rules: Vec<String> = matchers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let m = m.as_ref().map(|m| format!(r#","match":{m}"#)).unwrap_or_default();
                format!(r#"{{"name":"r{i}"{m},"limit":{{"requests":1,"per":"1s"}}}}"#)
            })
            .collect();
        let json = format!(r#"{{"rules":[{}]}}"#, rules.join(","));
        let config = Config::parse(json.as_bytes());
        prop_assert!(config.is_ok(), "{json}: {:?}", config.as_ref().err());
        let config = config.unwrap_or_default();
        let index = RuleIndex::new(&config);
        for (path, get, tenant) in &requests {
            let headers = if *tenant { HeaderSnapshot::from_pairs(&[("x-tenant", "a")]) } else { HeaderSnapshot::EMPTY };
            let input = MatchInput {
                method: if *get { b"GET" } else { b"POST" },
                path,
                headers: &headers,
            };
            let matches = |i: &usize| config.rules[*i].matcher.as_ref().is_none_or(|m| m.matches(&input));
            let candidates = index.candidates(Some(path));
            prop_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "{:?}", candidates);
            let indexed: Vec<usize> = candidates.iter().copied().filter(matches).collect();
            let linear: Vec<usize> = (0..config.rules.len()).filter(matches).collect();
            prop_assert_eq!(indexed, linear, "{} {}", json, path);
            prop_assert_eq!(index.candidates(None).len(), config.rules.len());
        }
    }
}
