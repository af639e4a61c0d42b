use super::*;
use crate::table::{slot_of, Entry, TableKeys, MAX_CAS_RETRIES};

/// The secret's key for a plugin whose host names no plugin (as FakeHost does).
fn secret_key() -> String {
    TableKeys::new(sdk_shim::Namespace::of_plugin(
        &sdk_shim::testing::FakeHost::new(),
        None,
    ))
    .secret()
}
use mesh_core::hash::SipKey;
use sdk_shim::testing::{FakeClock, FakeHost, FakeProxy, FakeStore};
use sdk_shim::SharedStore;
use std::cell::Cell;
use std::time::Duration;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// One "Envoy": a shared store, clock and metrics, and a limiter per worker.
struct Proxy {
    envoy: FakeProxy,
    limiter: Limiter,
    /// Random seed of the next worker, so workers never draw the same "random" bytes.
    next_seed: Cell<u64>,
}

impl Proxy {
    fn new(json: &str) -> Self {
        Self::on(FakeStore::default(), json)
    }

    /// A proxy whose shared data already holds `store`'s entries.
    fn on(store: FakeStore, json: &str) -> Self {
        let envoy = FakeProxy {
            store,
            ..FakeProxy::new()
        };
        let limiter = Limiter::new(&envoy.host(), Config::parse(json.as_bytes()).unwrap()).unwrap();
        Self {
            envoy,
            limiter,
            next_seed: Cell::new(1),
        }
    }

    /// Another worker: its own limiter (its own VM, its own randomness), same store, clock
    /// and metrics.
    fn worker(&self, json: &str) -> Limiter {
        let seed = self.next_seed.get();
        self.next_seed.set(seed + 1);
        let host = self.envoy.host().random_seed(seed);
        Limiter::new(&host, Config::parse(json.as_bytes()).unwrap()).unwrap()
    }

    fn secret(&self) -> SipKey {
        let stored = self.envoy.store.get(&secret_key()).unwrap();
        SipKey::from_bytes(&stored.try_into().unwrap())
    }

    fn get(&self, path: &str) -> FakeHost {
        self.envoy.get("svc", path)
    }

    fn stat(&self, rule: &str, stat: &str) -> i64 {
        self.envoy
            .metrics
            .value(&format!("ratelimit.{rule}.{stat}"))
            .unwrap_or_else(|| panic!("no metric {rule}.{stat}"))
    }
}

fn decide(l: &Limiter, host: &FakeHost) -> Decision {
    l.check(host).decision
}

const ONE_RULE_PER_KEY: &str = r#"{"rules":[{"name":"api","key":{"header":"x-api-key"},
    "limit":{"requests":3,"per":"1h"}}],"max_keys":100}"#;

#[test]
fn no_rules_decide_nothing_and_touch_nothing() {
    let p = Proxy::new("{}");
    let host = p.get("/");
    assert_eq!(decide(&p.limiter, &host), Decision::Unmatched);
    assert_eq!(host.host_calls(), 0);
    assert!(p.envoy.store.is_empty(), "no rules, no table");
}

#[test]
fn per_key_limits_are_separate() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let run = |key: &str| -> Vec<bool> {
        (0..5)
            .map(|_| {
                let h = p.get("/").request_header("x-api-key", key);
                decide(&p.limiter, &h) == Decision::Allowed
            })
            .collect()
    };
    assert_eq!(run("alice"), [true, true, true, false, false]);
    assert_eq!(run("bob"), [true, true, true, false, false]);
    assert_eq!(p.stat("api", "allowed"), 6);
    assert_eq!(p.stat("api", "limited"), 4);
    // After 20 minutes (one emission interval) alice gets exactly one more.
    p.envoy.clock.advance(Duration::from_secs(1200));
    assert_eq!(run("alice"), [true, false, false, false, false]);
}

#[test]
fn the_limited_verdict_carries_retry_after() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    for _ in 0..3 {
        decide(&p.limiter, &p.get("/").request_header("x-api-key", "k"));
    }
    p.envoy.clock.advance(Duration::from_secs(100));
    let d = decide(&p.limiter, &p.get("/").request_header("x-api-key", "k"));
    assert_eq!(
        d,
        Decision::Limited {
            rule: 0,
            retry_after_s: 1100,
            failure: false
        }
    );
    assert_eq!(d.label(p.limiter.config()).as_deref(), Some("limited:api"));
    let reply = p.limiter.limited_reply(0, 1100).unwrap();
    assert_eq!(reply.ratelimit, r#""api";r=0;t=1100"#);
}

#[test]
fn a_request_without_the_key_is_not_limited_by_that_rule() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    for _ in 0..10 {
        assert_eq!(decide(&p.limiter, &p.get("/")), Decision::Unmatched);
    }
    assert_eq!(p.stat("api", "allowed"), 0);
}

#[test]
fn repeated_key_headers_use_the_first_value() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    for _ in 0..3 {
        let h = p.get("/").request_header("x-api-key", "first");
        assert_eq!(decide(&p.limiter, &h), Decision::Allowed);
    }
    let h = p
        .get("/")
        .request_header("x-api-key", "first")
        .request_header("x-api-key", "second");
    assert!(matches!(decide(&p.limiter, &h), Decision::Limited { .. }));
    let h = p
        .get("/")
        .request_header("x-api-key", "second")
        .request_header("x-api-key", "first");
    assert_eq!(decide(&p.limiter, &h), Decision::Allowed);
}

#[test]
fn hostile_key_values_are_just_keys() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let huge = vec![b'k'; 1 << 20];
    let values: [&[u8]; 4] = [b"\xff\xfe\x00binary", b"", &huge, "ключ".as_bytes()];
    for v in values {
        for expect in [true, true, true, false] {
            let h = p.get("/").request_header("x-api-key", v);
            assert_eq!(decide(&p.limiter, &h) == Decision::Allowed, expect);
        }
    }
    assert_eq!(p.envoy.store.len(), 102, "the table never grows");
}

const PEER: [&str; 2] = ["filter_state", "mesh.peer_address"];

#[test]
fn address_keys_come_from_the_peer_stamp_never_from_client_headers() {
    let p = Proxy::new(
        r#"{"rules":[{"name":"ip","key":{"source":"address"},"limit":{"requests":2,"per":"1m"}}]}"#,
    );
    // What a client controls varies on every request; the stamped peer does not. Envoy's
    // `source.address`, which may come from x-forwarded-for, is ignored.
    let from = |peer: &str, i: u32| {
        p.get("/")
            .request_header("x-forwarded-for", format!("10.9.{i}.{i}"))
            .request_header("x-real-ip", format!("10.8.{i}.{i}"))
            .request_header("forwarded", format!("for=10.7.{i}.{i}"))
            .request_header("x-envoy-external-address", format!("10.6.{i}.{i}"))
            .property(&["source", "address"], format!("10.9.{i}.{i}:1000"))
            .property(&PEER, peer)
    };
    assert_eq!(decide(&p.limiter, &from("::1", 1)), Decision::Allowed);
    assert_eq!(decide(&p.limiter, &from("::1", 2)), Decision::Allowed);
    assert!(matches!(
        decide(&p.limiter, &from("::1", 3)),
        Decision::Limited { .. }
    ));
    // The port never splits a peer; IPv4-mapped IPv6 is the IPv4 peer.
    assert_eq!(
        decide(&p.limiter, &from("10.0.0.1:1", 4)),
        Decision::Allowed
    );
    assert_eq!(
        decide(&p.limiter, &from("[::ffff:10.0.0.1]:2", 5)),
        Decision::Allowed
    );
    assert!(matches!(
        decide(&p.limiter, &from("10.0.0.1", 6)),
        Decision::Limited { .. }
    ));
}

#[test]
fn without_the_peer_stamp_address_keys_share_one_bucket_and_warn_once() {
    let p = Proxy::new(
        r#"{"rules":[{"name":"ip","key":{"source":"address"},"limit":{"requests":2,"per":"1m"}}]}"#,
    );
    let from = |i: u32| {
        p.get("/")
            .request_header("x-forwarded-for", format!("10.9.{i}.{i}"))
            .property(&["source", "address"], format!("10.9.{i}.{i}:1000"))
    };
    let hosts: Vec<FakeHost> = (0..4).map(from).collect();
    let decisions: Vec<bool> = hosts
        .iter()
        .map(|h| decide(&p.limiter, h) == Decision::Allowed)
        .collect();
    assert_eq!(decisions, [true, true, false, false]);
    assert_eq!(p.stat("ip", "peer_unknown"), 4);
    let warnings = hosts
        .iter()
        .flat_map(|h| h.logs_at(LogLevel::Warn))
        .filter(|l| l.contains("carries no mesh.peer_address filter state"))
        .count();
    assert_eq!(warnings, 1);
}

#[test]
fn trusted_hops_take_the_client_the_trusted_proxies_recorded() {
    let p = Proxy::new(
        r#"{"rules":[{"name":"ip","key":{"source":"address","trusted_hops":1},"limit":{"requests":1,"per":"1m"}}]}"#,
    );
    // One trusted load balancer (10.0.0.9) in front; it appended the client it saw.
    let via_lb = |xff: &[&str]| {
        let mut h = p.get("/").property(&PEER, "10.0.0.9");
        for v in xff {
            h = h.request_header("x-forwarded-for", v);
        }
        h
    };
    assert_eq!(
        decide(&p.limiter, &via_lb(&["203.0.113.1"])),
        Decision::Allowed
    );
    // Whatever the client prepends, and whether Envoy appended the peer or not.
    for xff in [
        &["203.0.113.1"][..],
        &["6.6.6.6, 203.0.113.1"],
        &["6.6.6.6", "7.7.7.7,203.0.113.1"],
        &["6.6.6.6,203.0.113.1, 10.0.0.9"],
        &["1.1.1.1", "203.0.113.1", "10.0.0.9"],
    ] {
        assert!(
            matches!(decide(&p.limiter, &via_lb(xff)), Decision::Limited { .. }),
            "{xff:?}"
        );
    }
    assert_eq!(
        decide(&p.limiter, &via_lb(&["203.0.113.2"])),
        Decision::Allowed
    );
}

#[test]
fn client_behind_walks_x_forwarded_for_from_the_right() {
    use crate::key::client_behind;
    let v = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
    let peer = b"10.0.0.9".as_slice();
    assert_eq!(client_behind(peer, &v(&["1.1.1.1"]), 0), peer);
    assert_eq!(
        client_behind(peer, &v(&["1.1.1.1, 2.2.2.2"]), 1),
        b"2.2.2.2"
    );
    assert_eq!(
        client_behind(peer, &v(&["1.1.1.1, 2.2.2.2"]), 2),
        b"1.1.1.1"
    );
    // Too short a chain: its leftmost entry; no header at all: the peer.
    assert_eq!(
        client_behind(peer, &v(&["1.1.1.1, 2.2.2.2"]), 5),
        b"1.1.1.1"
    );
    assert_eq!(client_behind(peer, &[], 3), peer);
    // The peer appended by Envoy (use_remote_address: true) is skipped.
    assert_eq!(
        client_behind(peer, &v(&["2.2.2.2,10.0.0.9"]), 1),
        b"2.2.2.2"
    );
    // Huge and non-UTF-8 values are walked without trouble.
    let huge = format!("{},3.3.3.3", "9".repeat(60 * 1024));
    let mut odd = v(&[&huge]);
    odd.insert(0, b"\xff\xfe".to_vec());
    assert_eq!(client_behind(peer, &odd, 1), b"3.3.3.3");
    assert_eq!(client_behind(peer, &odd, 3), b"\xff\xfe");
}

#[test]
fn principal_keys_come_from_the_peer_certificate() {
    let p = Proxy::new(
        r#"{"rules":[{"name":"svc","key":{"source":"principal"},"limit":{"requests":1,"per":"1m"}}]}"#,
    );
    let web = |h: FakeHost| {
        h.property(&["connection", "mtls"], [1]).property(
            &["connection", "uri_san_peer_certificate"],
            "spiffe://cluster.local/ns/default/sa/web",
        )
    };
    // No certificate, or one without a URI SAN, names nobody.
    let plaintext = p.get("/").property(&["connection", "mtls"], [0]);
    assert_eq!(decide(&p.limiter, &plaintext), Decision::Unmatched);
    let no_san = p.get("/").property(&["connection", "mtls"], [1]);
    assert_eq!(decide(&p.limiter, &no_san), Decision::Unmatched);
    assert_eq!(decide(&p.limiter, &web(p.get("/"))), Decision::Allowed);
    assert!(matches!(
        decide(&p.limiter, &web(p.get("/"))),
        Decision::Limited { .. }
    ));
    // A header claiming an identity is not an identity.
    let forged = p.get("/").request_header(
        "x-forwarded-client-cert",
        "URI=spiffe://cluster.local/ns/default/sa/web",
    );
    assert_eq!(decide(&p.limiter, &forged), Decision::Unmatched);
    let not_spiffe = p
        .get("/")
        .property(&["connection", "mtls"], [1])
        .property(&["connection", "uri_san_peer_certificate"], "https://x");
    assert_eq!(decide(&p.limiter, &not_spiffe), Decision::Unmatched);
}

#[test]
fn rules_match_in_order_and_every_match_consumes() {
    let p = Proxy::new(
        r#"{"rules":[
            {"name":"writes","match":{"methods":["POST"]},"limit":{"requests":1,"per":"1h"}},
            {"name":"api","match":{"path_prefix":"/api/"},"limit":{"requests":3,"per":"1h"}},
            {"name":"free","match":{"headers":[{"name":"x-tier","exact":"free"}]},"limit":{"requests":100,"per":"1h"}}]}"#,
    );
    let post = || p.envoy.host().request("POST", "svc", "/api/x");
    assert_eq!(decide(&p.limiter, &post()), Decision::Allowed);
    // The second POST is refused by `writes` before `api` is consulted.
    assert_eq!(
        decide(&p.limiter, &post()),
        Decision::Limited {
            rule: 0,
            retry_after_s: 3600,
            failure: false
        }
    );
    assert_eq!(p.stat("api", "allowed"), 1);
    // GETs only meet `api`, which has 2 left.
    let get = || p.get("/api/y?q=1");
    assert_eq!(decide(&p.limiter, &get()), Decision::Allowed);
    assert_eq!(decide(&p.limiter, &get()), Decision::Allowed);
    assert!(matches!(
        decide(&p.limiter, &get()),
        Decision::Limited { rule: 1, .. }
    ));
    assert_eq!(decide(&p.limiter, &p.get("/other")), Decision::Unmatched);
    let free = p.get("/other").request_header("x-tier", "free");
    assert_eq!(decide(&p.limiter, &free), Decision::Allowed);
    assert_eq!(p.stat("free", "allowed"), 1);
}

#[test]
fn shadow_mode_counts_logs_and_lets_through() {
    let p = Proxy::new(
        r#"{"mode":"shadow","headers_on_allowed":true,"rules":[
            {"name":"a","limit":{"requests":1,"per":"1h"}},
            {"name":"b","limit":{"requests":2,"per":"1h"}}]}"#,
    );
    let host = p.get("/");
    assert_eq!(decide(&p.limiter, &host), Decision::Allowed);
    let host = p.get("/");
    let v = p.limiter.check(&host);
    assert_eq!(v.decision, Decision::ShadowLimited { rule: 0 });
    assert_eq!(
        v.decision.label(p.limiter.config()).as_deref(),
        Some("shadow_limited:a")
    );
    let (rl, _) = v.response_fields.unwrap();
    assert_eq!(rl, r#""a";r=0;t=3600, "b";r=0;t=3600"#);
    assert_eq!(host.logs_at(LogLevel::Info).len(), 1);
    assert_eq!(p.stat("a", "shadow_limited"), 1);
    assert_eq!(p.stat("b", "allowed"), 2, "later rules still consume");
    assert_eq!(p.stat("a", "limited"), 0);
}

#[test]
fn allowed_responses_can_carry_the_fields() {
    let p = Proxy::new(
        r#"{"headers_on_allowed":true,"rules":[
            {"name":"a","limit":{"requests":10,"per":"1s"}},
            {"name":"b","match":{"path_prefix":"/b"},"limit":{"requests":100,"per":"1h"}}]}"#,
    );
    let v = p.limiter.check(&p.get("/"));
    assert_eq!(
        v.response_fields,
        Some((r#""a";r=9;t=1"#.to_owned(), r#""a";q=10;w=1"#.to_owned()))
    );
    let v = p.limiter.check(&p.get("/b"));
    let (rl, policy) = v.response_fields.unwrap();
    assert_eq!(rl, r#""a";r=8;t=1, "b";r=99;t=36"#);
    assert_eq!(policy, r#""a";q=10;w=1, "b";q=100;w=3600"#);
    // Off by default.
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let v = p
        .limiter
        .check(&p.get("/").request_header("x-api-key", "k"));
    assert_eq!(v.response_fields, None);
}

#[test]
fn exhausted_cas_retries_deny_by_default_and_are_counted() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    p.envoy.store.force_cas_conflicts(MAX_CAS_RETRIES + 1);
    let host = p.get("/").request_header("x-api-key", "k");
    assert_eq!(
        decide(&p.limiter, &host),
        Decision::Limited {
            rule: 0,
            retry_after_s: 1,
            failure: true
        }
    );
    assert_eq!(p.stat("api", "failures"), 1);
    assert_eq!(p.stat("api", "cas_retries"), i64::from(MAX_CAS_RETRIES));
    assert_eq!(host.logs_at(LogLevel::Warn).len(), 1);
    // Nothing was consumed: the key still has its 3.
    for _ in 0..3 {
        let h = p.get("/").request_header("x-api-key", "k");
        assert_eq!(decide(&p.limiter, &h), Decision::Allowed);
    }
}

#[test]
fn failure_mode_allow_lets_through_and_counts() {
    let p = Proxy::new(
        r#"{"failure_mode":"allow","rules":[{"name":"a","limit":{"requests":1,"per":"1h"}}]}"#,
    );
    p.envoy.store.force_cas_conflicts(MAX_CAS_RETRIES + 1);
    assert_eq!(decide(&p.limiter, &p.get("/")), Decision::Unmatched);
    assert_eq!(p.stat("a", "failures"), 1);
}

#[test]
fn broken_header_reads_follow_the_failure_mode() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let host = p
        .get("/")
        .request_header("x-api-key", "k")
        .failing_header_reads();
    assert!(matches!(
        decide(&p.limiter, &host),
        Decision::Limited { failure: true, .. }
    ));
    assert_eq!(p.stat("api", "failures"), 1);
}

#[test]
fn cas_retries_are_counted() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    p.envoy.store.force_cas_conflicts(2);
    let host = p.get("/").request_header("x-api-key", "k");
    assert_eq!(decide(&p.limiter, &host), Decision::Allowed);
    assert_eq!(p.stat("api", "cas_retries"), 2);
}

#[test]
fn workers_sharing_the_store_share_one_limit() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let w2 = p.worker(ONE_RULE_PER_KEY);
    let w3 = p.worker(ONE_RULE_PER_KEY);
    let workers = [&p.limiter, &w2, &w3];
    let mut admitted = 0;
    for i in 0..30 {
        p.envoy.store.force_cas_conflicts(i % 3);
        let h = p.get("/").request_header("x-api-key", "shared");
        if decide(workers[i as usize % 3], &h) == Decision::Allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
}

#[test]
fn a_flood_of_keys_stays_in_the_table_and_the_hot_key_stays_limited() {
    let p = Proxy::new(
        r#"{"max_keys":50,"rules":[{"name":"k","key":{"header":"x-key"},"limit":{"requests":5,"per":"1h"}}]}"#,
    );
    let hot = || p.get("/").request_header("x-key", "hot");
    let admitted = (0..10)
        .filter(|_| decide(&p.limiter, &hot()) == Decision::Allowed)
        .count();
    assert_eq!(admitted, 5);
    for i in 0..5000 {
        let h = p.get("/").request_header("x-key", format!("user-{i}"));
        decide(&p.limiter, &h);
    }
    assert_eq!(
        p.envoy.store.len(),
        52,
        "50 slots, the marker and the secret, whatever the keys"
    );
    assert!(p.stat("k", "slot_collisions") > 0);
    assert!(matches!(
        decide(&p.limiter, &hot()),
        Decision::Limited { .. }
    ));
}

#[test]
fn every_worker_uses_the_secret_the_first_configuration_drew() {
    let store = FakeStore::default();
    let config = || Config::parse(ONE_RULE_PER_KEY.as_bytes()).unwrap();
    let first = FakeHost::new().with_store(&store).random_seed(11);
    let l1 = Limiter::new(&first, config()).unwrap();
    assert_eq!(
        first.logs_at(LogLevel::Info),
        [
            "ratelimit: generated the bucket table's hash secret",
            "ratelimit: seeded 100 bucket slots (max_keys 100)"
        ]
    );
    let stored = store.get(&secret_key()).unwrap();
    assert_eq!(stored.len(), 16);
    let second = FakeHost::new().with_store(&store).random_seed(22);
    let l2 = Limiter::new(&second, config()).unwrap();
    assert!(second.logs_at(LogLevel::Info).is_empty());
    assert_eq!(
        store.get(&secret_key()).unwrap(),
        stored,
        "never overwritten"
    );
    let secret = SipKey::from_bytes(&stored.try_into().unwrap());
    let expected = Fingerprint::for_rule(secret, "api")
        .byte(b'h')
        .bytes(b"k")
        .finish();
    assert_eq!(l1.header_fingerprint(0, b"k"), Some(expected));
    assert_eq!(l2.header_fingerprint(0, b"k"), Some(expected));
    assert_eq!(l1.header_fingerprint(1, b"k"), None);
}

#[test]
fn another_proxy_draws_another_secret() {
    let fp = |seed: u64| {
        let host = FakeHost::new().random_seed(seed);
        let config = Config::parse(ONE_RULE_PER_KEY.as_bytes()).unwrap();
        let limiter = Limiter::new(&host, config).unwrap();
        (0..8u8)
            .map(|i| limiter.header_fingerprint(0, &[i]).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(fp(5), fp(5), "the secret is all that varies");
    let (a, b) = (fp(5), fp(6));
    assert!(a.iter().zip(&b).all(|(x, y)| x != y), "{a:?} {b:?}");
}

#[test]
fn a_reconfiguration_keeps_the_secret_and_the_buckets() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let before = p.secret();
    for _ in 0..3 {
        let h = p.get("/").request_header("x-api-key", "k");
        assert_eq!(decide(&p.limiter, &h), Decision::Allowed);
    }
    // A config update: new limiter, new randomness, same rule (now with response fields).
    let updated = r#"{"headers_on_allowed":true,"rules":[{"name":"api","key":{"header":"x-api-key"},
        "limit":{"requests":3,"per":"1h"}}],"max_keys":100}"#;
    let host = p.envoy.host().random_seed(99);
    let limiter = Limiter::new(&host, Config::parse(updated.as_bytes()).unwrap()).unwrap();
    assert!(host.logs_at(LogLevel::Info).is_empty(), "nothing new drawn");
    assert_eq!(p.secret(), before);
    let h = p.get("/").request_header("x-api-key", "k");
    assert!(
        matches!(decide(&limiter, &h), Decision::Limited { .. }),
        "the bucket survived the update"
    );
    let h = p.get("/").request_header("x-api-key", "other");
    assert_eq!(decide(&limiter, &h), Decision::Allowed);
}

/// The attack a keyed fingerprint stops: keys chosen offline to share a victim's slot.
#[test]
fn keys_aimed_at_a_slot_without_the_secret_miss_it() {
    let json = r#"{"max_keys":1000,"rules":[{"name":"api","key":{"header":"x-api-key"},
        "limit":{"requests":3,"per":"1h"}}]}"#;
    // The attacker computes with a key they know (as anyone could with an unkeyed hash).
    let guessed = SipKey::new(7, 7);
    let slot = |k: &[u8]| {
        let fp = Fingerprint::for_rule(guessed, "api").byte(b'h').bytes(k);
        slot_of(fp.finish(), 1000)
    };
    let victim = b"victim".as_slice();
    let aimed: Vec<String> = (0..)
        .map(|i| format!("attacker-{i}"))
        .filter(|k| slot(k.as_bytes()) == slot(victim))
        .take(5)
        .collect();
    let run = |p: &Proxy| {
        for k in &aimed {
            for _ in 0..3 {
                decide(&p.limiter, &p.get("/").request_header("x-api-key", k));
            }
        }
        (0..3)
            .filter(|_| {
                let h = p.get("/").request_header("x-api-key", victim);
                decide(&p.limiter, &h) == Decision::Allowed
            })
            .count()
    };
    // Had the guess been the table's secret, the victim would get nothing.
    let known = FakeStore::default();
    known
        .shared_set(&secret_key(), &guessed.to_bytes(), None)
        .unwrap();
    let p = Proxy::on(known, json);
    assert_eq!(run(&p), 0);
    assert!(p.stat("api", "slot_collisions") >= 4);
    // With a secret the attacker does not know, the victim keeps its whole limit.
    let p = Proxy::new(json);
    assert_eq!(run(&p), 3);
    assert_eq!(p.stat("api", "slot_collisions"), 0);
}

#[test]
fn the_hot_path_is_a_handful_of_host_calls() {
    let p = Proxy::new(ONE_RULE_PER_KEY);
    let host = p.get("/").request_header("x-api-key", "k");
    decide(&p.limiter, &host);
    // clock, header, get, set, allowed counter: the secret is never read per request
    assert_eq!(host.host_calls(), 5);
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;
    use sdk_shim::Clock;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Workers interleaving on one store, with forced CAS conflicts and collisions in a
        /// tiny table, never admit more than burst + elapsed * rate for any key.
        #[test]
        fn never_more_than_burst_plus_rate_across_workers(
            requests in 1u32..20,
            per_s in 1u64..120,
            burst in 1u32..20,
            max_keys in 1u32..8,
            steps in prop::collection::vec(
                (0usize..3, 0u8..4, 0u64..3_000, 0u32..3), 1..150),
        ) {
            let json = format!(r#"{{"max_keys":{max_keys},"rules":[{{"name":"r","key":{{"header":"k"}},
                "limit":{{"requests":{requests},"per":"{per_s}s","burst":{burst}}}}}]}}"#);
            let p = Proxy::new(&json);
            let workers = [p.worker(&json), p.worker(&json), p.worker(&json)];
            let start = p.envoy.clock.now_nanos();
            let mut admitted = [0u64; 4];
            for (w, key, advance_ms, conflicts) in steps {
                p.envoy.clock.advance(Duration::from_millis(advance_ms));
                p.envoy.store.force_cas_conflicts(conflicts);
                let h = p.get("/").request_header("k", [b'a' + key]);
                if decide(&workers[w], &h) == Decision::Allowed {
                    admitted[usize::from(key)] += 1;
                }
                let elapsed = u128::from(p.envoy.clock.now_nanos() - start);
                for a in admitted {
                    let excess = u128::from(a.saturating_sub(u64::from(burst)));
                    prop_assert!(
                        excess * u128::from(per_s) * 1_000_000_000 <= elapsed * u128::from(requests),
                        "admitted {a} burst {burst} elapsed {elapsed}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_path_rule_limits_paths_that_are_not_utf8() {
    // A byte that makes the path invalid UTF-8 must not take the request out of a rule.
    let json = r#"{"rules":[{"name":"api","match":{"path_prefix":"/api"},
        "limit":{"requests":2,"per":"1h"}}]}"#;
    let p = Proxy::new(json);
    let req = || {
        p.envoy
            .host()
            .request_header(":method", "GET")
            .request_header(":path", b"/api/x\xff?q=\xfe")
    };
    assert_eq!(decide(&p.limiter, &req()), Decision::Allowed);
    assert_eq!(decide(&p.limiter, &req()), Decision::Allowed);
    assert!(matches!(
        decide(&p.limiter, &req()),
        Decision::Limited { rule: 0, .. }
    ));
}

/// A limiter configured as the plugin `name` (Envoy's `plugin_name`) on a shared store.
fn plugin(store: &FakeStore, clock: &FakeClock, name: &str, json: &str) -> Limiter {
    let host = FakeHost::new()
        .with_store(store)
        .with_clock(clock)
        .property(&sdk_shim::namespace::PLUGIN_NAME, name)
        .property(&sdk_shim::namespace::PLUGIN_ROOT_ID, "ratelimit");
    Limiter::new(&host, Config::parse(json.as_bytes()).unwrap()).unwrap()
}

fn run(l: &Limiter, store: &FakeStore, clock: &FakeClock, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let h = FakeHost::new()
                .with_store(store)
                .with_clock(clock)
                .request("GET", "svc", "/")
                .request_header("x-api-key", "k");
            decide(l, &h) == Decision::Allowed
        })
        .count()
}

#[test]
fn two_plugins_in_one_vm_keep_separate_tables_unless_they_name_one_namespace() {
    let store = FakeStore::default();
    let clock = FakeClock::at_nanos(1_700_000_000_000_000_000);
    let rule = |n: u32, ns: &str| {
        format!(
            r#"{{{ns}"rules":[{{"name":"api","key":{{"header":"x-api-key"}},"limit":{{"requests":{n},"per":"1h"}}}}]}}"#
        )
    };
    // Same rule name, same key, different limits: Istio's default.rl-a and default.rl-b.
    let a = plugin(&store, &clock, "default.rl-a", &rule(2, ""));
    let b = plugin(&store, &clock, "default.rl-b", &rule(5, ""));
    assert_eq!(run(&a, &store, &clock, 10), 2);
    assert_eq!(
        run(&b, &store, &clock, 10),
        5,
        "a's traffic spent none of b's tokens"
    );
    // A configured namespace is one budget whatever the plugin names.
    let shared = r#""namespace":"team","#;
    let c = plugin(&store, &clock, "default.rl-c", &rule(3, shared));
    let d = plugin(&store, &clock, "default.rl-d", &rule(3, shared));
    assert_eq!(run(&c, &store, &clock, 2) + run(&d, &store, &clock, 10), 3);
}

#[test]
fn state_of_another_layout_is_ignored_never_misread() {
    let store = FakeStore::default();
    let clock = FakeClock::at_nanos(1_700_000_000_000_000_000);
    // What the un-namespaced layout 1 left behind: a secret and every slot exhausted (TAT far
    // in the future), and a 16-byte value under this plugin's namespace with layout 1.
    let exhausted = Entry {
        fingerprint: 7,
        tat: u64::MAX / 2,
    }
    .encode();
    store
        .shared_set("mesh.ratelimit/secret", &[9u8; 16], None)
        .unwrap();
    store
        .shared_set("mesh.ratelimit/seeded", &64u64.to_le_bytes(), None)
        .unwrap();
    for slot in 0..64 {
        store
            .shared_set(&format!("mesh.ratelimit/{slot}"), &exhausted, None)
            .unwrap();
    }
    let host = FakeHost::new()
        .property(&sdk_shim::namespace::PLUGIN_NAME, "default.rl")
        .property(&sdk_shim::namespace::PLUGIN_ROOT_ID, "ratelimit");
    let ns = sdk_shim::Namespace::of_plugin(&host, None);
    store
        .shared_set(&ns.key("ratelimit.1/secret"), &[9u8; 16], None)
        .unwrap();
    let json = r#"{"rules":[{"name":"api","key":{"header":"x-api-key"},"limit":{"requests":4,"per":"1h"}}],"max_keys":64}"#;
    let l = plugin(&store, &clock, "default.rl", json);
    assert_ne!(l.keys().secret(), "mesh.ratelimit/secret");
    assert_ne!(
        store.get(&l.keys().secret()).unwrap(),
        vec![9u8; 16],
        "a secret of its own layout"
    );
    assert_eq!(
        run(&l, &store, &clock, 10),
        4,
        "old exhausted slots limit nothing"
    );
    // And the old entries are left as they were.
    assert_eq!(store.get("mesh.ratelimit/0").unwrap(), exhausted.to_vec());
}
