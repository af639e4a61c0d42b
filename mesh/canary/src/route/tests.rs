use super::*;
use crate::guard::GuardRecord;
use sdk_shim::testing::{FakeClock, FakeHost, FakeStore};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn canary(json: &str) -> Canary {
    Canary::from_json(json.as_bytes()).unwrap()
}

fn reviews(extra: &str, weights: (u32, u32)) -> Canary {
    canary(&format!(
        r#"{{"services":[{{"host":"reviews","subsets":[{{"name":"v1","weight":{}}},{{"name":"v2","weight":{}}}]{extra}}}]}}"#,
        weights.0, weights.1
    ))
}

fn get(authority: &str) -> FakeHost {
    FakeHost::new().request("GET", authority, "/")
}

// Routes one request and returns the subset name written to the route header.
fn routed(c: &Canary, host: &FakeHost) -> Option<String> {
    c.route(host)?;
    host.request_header_str("x-canary-subset")
}

#[test]
fn other_hosts_get_no_decision_and_lose_a_forged_route_header() {
    let c = reviews("", (90, 10));
    for h in [
        get("ratings").request_header("x-canary-subset", "v2"),
        FakeHost::new().request_header("x-canary-subset", "v2"),
        get("").request_header("x-canary-subset", "v2"),
        get("\u{7f}\u{1}:::").request_header("x-canary-subset", "v2"),
    ] {
        assert_eq!(c.route(&h), None);
        assert_eq!(h.request_header_str("x-canary-subset"), None);
    }
    let odd = FakeHost::new().request_header(":authority", b"\xff\xfe:80");
    assert_eq!(c.route(&odd), None);
}

#[test]
fn client_sent_route_header_is_replaced() {
    let c = reviews("", (100, 0));
    let h = get("Reviews:9080")
        .request_header("x-canary-subset", "v2")
        .request_header("x-canary-subset", "v3");
    let d = c.route(&h).unwrap();
    assert_eq!(d.reason, Reason::Weighted);
    assert_eq!(
        h.header_strings(HeaderMap::Request, "x-canary-subset"),
        ["v1"]
    );
}

#[test]
fn weighted_split_follows_the_weights() {
    let c = reviews("", (90, 10));
    let mut v2 = 0;
    for seed in 0..4000 {
        let h = get("reviews").random_seed(seed);
        if routed(&c, &h).as_deref() == Some("v2") {
            v2 += 1;
        }
    }
    // 400 expected; sd ~19.
    assert!((300..500).contains(&v2), "{v2}");
}

#[test]
fn zero_weight_subset_is_never_chosen() {
    let c = reviews("", (1, 0));
    for seed in 0..500 {
        assert_eq!(
            routed(&c, &get("reviews").random_seed(seed)).as_deref(),
            Some("v1")
        );
    }
}

#[test]
fn overrides_are_tried_in_order() {
    let c = canary(
        r#"{"services":[{"host":"reviews",
            "subsets":[{"name":"v1","weight":100},{"name":"v2","weight":0},{"name":"v3","weight":0}],
            "overrides":[
              {"header":"x-canary","value":"always","subset":"v2"},
              {"header":"x-canary","subset":"v3"},
              {"match":{"path_prefix":"/beta","methods":["GET"]},"subset":"v3"}]}]}"#,
    );
    let h = get("reviews").request_header("x-canary", "always");
    assert_eq!(routed(&c, &h).as_deref(), Some("v2"));
    assert_eq!(c.decide(&h).unwrap().reason, Reason::Override(0));
    // Any value of a repeated header can match.
    let h = get("reviews")
        .request_header("x-canary", "no")
        .request_header("x-canary", "always");
    assert_eq!(routed(&c, &h).as_deref(), Some("v2"));
    let h = get("reviews").request_header("x-canary", "whatever");
    assert_eq!(c.decide(&h).unwrap().reason, Reason::Override(1));
    let h = FakeHost::new().request("GET", "reviews", "/beta/x?q=1");
    assert_eq!(c.decide(&h).unwrap().reason, Reason::Override(2));
    let h = FakeHost::new().request("POST", "reviews", "/beta/x");
    assert_eq!(c.decide(&h).unwrap().reason, Reason::Weighted);
    let h = FakeHost::new()
        .request_header(":authority", "reviews")
        .request_header(":path", b"/\xff");
    assert_eq!(routed(&c, &h).as_deref(), Some("v1"));
}

#[test]
fn sticky_header_keeps_a_user_on_one_subset_everywhere() {
    let c = reviews(r#","sticky":{"header":"x-user-id"}"#, (50, 50));
    let other_proxy = reviews(r#","sticky":{"header":"x-user-id"}"#, (50, 50));
    let mut seen = [0u32; 2];
    for user in 0..200 {
        let id = format!("user-{user}");
        let first = routed(
            &c,
            &get("reviews")
                .random_seed(1)
                .request_header("x-user-id", &id),
        )
        .unwrap();
        for seed in 2..5 {
            let h = get("reviews")
                .random_seed(seed)
                .request_header("x-user-id", &id);
            assert_eq!(routed(&other_proxy, &h).unwrap(), first);
            assert_eq!(other_proxy.decide(&h).unwrap().reason, Reason::Sticky);
        }
        seen[usize::from(first == "v2")] += 1;
    }
    assert!(seen[0] > 60 && seen[1] > 60, "{seen:?}");
}

#[test]
fn sticky_users_only_move_into_a_growing_canary() {
    let at = |w: (u32, u32)| reviews(r#","sticky":{"header":"x-user-id"}"#, w);
    let steps = [
        at((99, 1)),
        at((90, 10)),
        at((50, 50)),
        at((10, 90)),
        at((0, 100)),
    ];
    for user in 0..300 {
        let id = format!("u{user}");
        let mut in_canary = false;
        for c in &steps {
            let now = routed(c, &get("reviews").request_header("x-user-id", &id)).unwrap() == "v2";
            assert!(now || !in_canary, "user {id} left the canary");
            in_canary = now;
        }
        assert!(in_canary);
    }
    // Back to 0: the canary loses everyone.
    let c = at((1, 0));
    assert_eq!(
        routed(&c, &get("reviews").request_header("x-user-id", "u1")).unwrap(),
        "v1"
    );
}

#[test]
fn odd_sticky_values_still_route() {
    let c = reviews(r#","sticky":{"header":"x-user-id"}"#, (50, 50));
    let huge = vec![b'x'; 64 * 1024];
    for v in [&b"\xff\xfe\x00"[..], &huge] {
        let a = routed(
            &c,
            &get("reviews").random_seed(1).request_header("x-user-id", v),
        )
        .unwrap();
        let b = routed(
            &c,
            &get("reviews").random_seed(9).request_header("x-user-id", v),
        )
        .unwrap();
        assert_eq!(a, b);
    }
    // An empty or missing key is not a user: random placement.
    let h = get("reviews").request_header("x-user-id", "");
    assert_eq!(c.decide(&h).unwrap().reason, Reason::Weighted);
    assert_eq!(c.decide(&get("reviews")).unwrap().reason, Reason::Weighted);
}

#[test]
fn cookie_is_issued_once_then_honoured() {
    let c = reviews(
        r#","sticky":{"cookie":"canary","max_age_s":3600}"#,
        (50, 50),
    );
    let first = get("reviews").random_seed(7);
    let d = c.route(&first).unwrap();
    let set = d.set_cookie.clone().unwrap();
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600"),
        "{set}"
    );
    assert_eq!(d.reason, Reason::Sticky);
    let pair = set.split(';').next().unwrap().to_owned();
    let subset = first.request_header_str("x-canary-subset").unwrap();
    c.respond(&first, &d);
    assert_eq!(
        first.header_strings(HeaderMap::Response, "set-cookie"),
        [set]
    );
    for seed in 0..20 {
        let again = get("reviews")
            .random_seed(seed)
            .request_header("cookie", format!("a=1; {pair}; b=2"));
        let d2 = c.route(&again).unwrap();
        assert_eq!(d2.set_cookie, None);
        assert_eq!(again.request_header_str("x-canary-subset").unwrap(), subset);
        c.respond(&again, &d2);
        assert!(again
            .header_strings(HeaderMap::Response, "set-cookie")
            .is_empty());
    }
}

#[test]
fn forged_garbage_and_hostile_cookies_are_reassigned() {
    let c = reviews(r#","sticky":{"cookie":"canary"}"#, (50, 50));
    let huge = format!("canary={}", "f".repeat(200_000));
    for bad in [
        "canary=v2".to_owned(),
        "canary=00000000000000000000000000000000".to_owned(),
        "canary=\u{0}".to_owned(),
        huge,
        "canary".to_owned(),
        ";;;=;".to_owned(),
    ] {
        let h = get("reviews").request_header("cookie", &bad);
        let d = c.route(&h).unwrap();
        assert!(d.set_cookie.is_some(), "{bad:.40}");
    }
    let h = get("reviews").request_header("cookie", b"canary=\xff\xfe\xfd");
    assert!(c.route(&h).unwrap().set_cookie.is_some());
}

#[test]
fn a_valid_cookie_in_a_repeated_cookie_header_counts() {
    let c = reviews(r#","sticky":{"cookie":"canary"}"#, (50, 50));
    let issued = c
        .decide(&get("reviews").random_seed(3))
        .unwrap()
        .set_cookie
        .unwrap();
    let pair = issued.split(';').next().unwrap().to_owned();
    let h = get("reviews")
        .request_header("cookie", "canary=garbage; x=1")
        .request_header("cookie", &pair);
    assert_eq!(c.decide(&h).unwrap().set_cookie, None);
}

#[test]
fn an_override_still_issues_the_cookie() {
    let c = reviews(
        r#","sticky":{"cookie":"canary"},"overrides":[{"header":"x-canary","value":"always","subset":"v2"}]"#,
        (100, 0),
    );
    let d = c
        .decide(&get("reviews").request_header("x-canary", "always"))
        .unwrap();
    assert_eq!(d.reason, Reason::Override(0));
    assert!(d.set_cookie.is_some());
}

#[test]
fn exposes_the_subset_only_when_asked() {
    let quiet = reviews("", (0, 1));
    let h = get("reviews");
    let d = quiet.route(&h).unwrap();
    quiet.respond(&h, &d);
    assert_eq!(h.response_header_str("x-canary-subset"), None);
    let loud = canary(
        r#"{"expose_subset":true,"route_header":"x-sub","services":[{"host":"*","subsets":[{"name":"v1","weight":1}]}]}"#,
    );
    let h = get("anything:1");
    h.upstream_responds(200, &[("x-sub", "forged")]);
    let d = loud.route(&h).unwrap();
    loud.respond(&h, &d);
    assert_eq!(h.header_strings(HeaderMap::Response, "x-sub"), ["v1"]);
}

#[test]
fn a_tripped_guard_sends_the_canary_share_elsewhere() {
    let guard = r#","sticky":{"header":"x-user-id"},"rollback":{"subset":"v2","max_error_rate":0.5,"min_requests":4,"window_s":60}"#;
    let store = FakeStore::default();
    let clock = FakeClock::at_nanos(1_000_000_000_000);
    let c = reviews(guard, (50, 50));
    let worker = |user: &str| {
        get("reviews")
            .with_store(&store)
            .with_clock(&clock)
            .request_header("x-user-id", user)
    };
    c.arm_guards(&worker("x"), clock.now_nanos()).unwrap();
    let users: Vec<String> = (0..100).map(|u| format!("u{u}")).collect();
    let before: Vec<String> = users
        .iter()
        .map(|u| routed(&c, &worker(u)).unwrap())
        .collect();
    let canary_user = &users[before.iter().position(|s| s == "v2").unwrap()];
    let stable_user = &users[before.iter().position(|s| s == "v1").unwrap()];

    // A v1 response is never counted.
    let h = worker(stable_user);
    let d = c.route(&h).unwrap();
    h.upstream_responds(503, &[]);
    assert_eq!(c.respond(&h, &d), None);

    // Four v2 failures trip it, exactly on the fourth.
    for i in 0..4 {
        let h = worker(canary_user);
        let d = c.route(&h).unwrap();
        h.upstream_responds(503, &[]);
        let expect = if i == 3 {
            Observation::Tripped
        } else {
            Observation::Counted
        };
        assert_eq!(c.respond(&h, &d), Some(expect));
    }

    // Another worker with its own copy of the configuration sees it through the store.
    let other = reviews(guard, (50, 50));
    for (u, was) in users.iter().zip(&before) {
        let h = worker(u);
        let d = other.route(&h).unwrap();
        let now = other.subset_name(&d).to_owned();
        assert_eq!(now, "v1", "{u}");
        let expect = if was == "v2" {
            Reason::Rerouted
        } else {
            Reason::Sticky
        };
        assert_eq!(d.reason, expect);
    }
    let rec = GuardRecord::decode(
        &store
            .get(other.services()[0].guard().unwrap().key())
            .unwrap(),
    )
    .unwrap();
    assert!(rec.tripped);
    assert_eq!((rec.requests, rec.failures), (4, 4));
}

#[test]
fn guarded_responses_count_5xx_and_missing_status_as_failures() {
    assert!(is_failure(Some(b"503")));
    assert!(is_failure(Some(b"500")));
    assert!(is_failure(None));
    assert!(is_failure(Some(b"abc")));
    assert!(is_failure(Some(b"\xff")));
    assert!(!is_failure(Some(b"200")));
    assert!(!is_failure(Some(b"404")));
}

#[test]
fn the_rollback_of_the_only_weighted_subset_spreads_evenly() {
    let c = canary(
        r#"{"services":[{"host":"reviews",
            "subsets":[{"name":"v1","weight":0},{"name":"v2","weight":0},{"name":"v3","weight":5}],
            "rollback":{"subset":"v3","max_error_rate":0,"min_requests":1}}]}"#,
    );
    let h = get("reviews");
    c.arm_guards(&h, 1).unwrap();
    let d = c.route(&h).unwrap();
    h.upstream_responds(500, &[]);
    assert_eq!(c.respond(&h, &d), Some(Observation::Tripped));
    let mut seen = [0u32; 3];
    for seed in 0..400 {
        let h = get("reviews").random_seed(seed).with_store(h.store());
        let d = c.route(&h).unwrap();
        seen[d.subset] += 1;
    }
    assert_eq!(seen[2], 0);
    assert!(seen[0] > 150 && seen[1] > 150, "{seen:?}");
}

#[test]
fn host_calls_stay_few_on_the_common_path() {
    let c = reviews(r#","sticky":{"header":"x-user-id"}"#, (90, 10));
    let h = get("reviews").request_header("x-user-id", "alice");
    let before = h.host_calls();
    c.route(&h).unwrap();
    // :authority, the sticky header, the route header.
    assert_eq!(h.host_calls() - before, 3);
    let h = get("ratings");
    let before = h.host_calls();
    assert_eq!(c.route(&h), None);
    assert_eq!(h.host_calls() - before, 2);
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn sticky(w1: u32, w2: u32) -> Canary {
        reviews(r#","sticky":{"header":"x-user-id"}"#, (w1, w2))
    }

    proptest! {
        // Any key, whatever the host's randomness: the same subset on every proxy.
        #[test]
        fn sticky_assignment_is_deterministic(
            key in prop::collection::vec(any::<u8>(), 1..64),
            seeds in (any::<u64>(), any::<u64>()),
            w in (0u32..100, 1u32..100),
        ) {
            let (a, b) = (sticky(w.0, w.1), sticky(w.0, w.1));
            let ha = get("reviews").random_seed(seeds.0).request_header("x-user-id", &key);
            let hb = get("reviews").random_seed(seeds.1).request_header("x-user-id", &key);
            prop_assert_eq!(a.decide(&ha), b.decide(&hb));
        }

        // Raising the canary's weight step by step only ever moves a key into it.
        #[test]
        fn sticky_users_never_leave_a_growing_canary(
            key in prop::collection::vec(any::<u8>(), 1..64),
            steps in prop::collection::vec(0u32..30, 1..8),
            total in 1u32..1000,
        ) {
            let mut canary = 0u32;
            let mut was_in = false;
            for step in steps {
                canary = (canary + step).min(total);
                let c = sticky(total - canary, canary);
                let h = get("reviews").request_header("x-user-id", &key);
                let now_in = c.decide(&h).map(|d| d.subset) == Some(1);
                prop_assert!(now_in || !was_in, "left at canary weight {} of {}", canary, total);
                was_in = now_in;
            }
        }
    }
}

#[test]
fn a_path_override_applies_to_paths_that_are_not_utf8() {
    let c = reviews(
        r#","overrides":[{"match":{"path_prefix":"/beta"},"subset":"v2"}]"#,
        (100, 0),
    );
    let h = FakeHost::new()
        .request_header(":method", "GET")
        .request_header(":authority", "reviews")
        .request_header(":path", b"/beta/\xff");
    assert_eq!(routed(&c, &h).as_deref(), Some("v2"));
}
