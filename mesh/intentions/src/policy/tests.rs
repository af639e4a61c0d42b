use super::*;
use crate::identity::Anonymous;
use crate::pattern::tests::TABLE;
use crate::IntentionsConfig;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TD: &str = "mesh.local";

fn policy(json: &str) -> Policy {
    IntentionsConfig::parse(json.as_bytes()).unwrap()
}

/// A peer as the host would lend it (leaked: tests keep their peers as long as they like).
fn peer(ns: &str, name: &str) -> Peer<'static> {
    Peer::from_uri_san(format!("spiffe://{TD}/ns/{ns}/sa/{name}").leak(), TD)
}

fn decide_req(
    p: &Policy,
    who: &Peer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Decision {
    let headers = HeaderSnapshot::from_pairs(headers);
    let input = MatchInput {
        method: method.as_bytes(),
        path,
        headers: &headers,
    };
    p.select(who).decide(&input)
}

fn decide(p: &Policy, who: &Peer) -> Decision {
    decide_req(p, who, "GET", "/", &[])
}

/// `allow:<name>` or `deny:<name>`: the action and the decider's name.
fn named(p: &Policy, d: Decision) -> String {
    format!("{}:{}", d.action.as_str(), p.decider_name(d.by))
}

fn label(p: &Policy, who: &Peer, method: &str, path: &str) -> String {
    named(p, decide_req(p, who, method, path, &[]))
}

/// Every ordered pair of rows of Consul's table, with each action on each side: the higher row
/// decides, whatever the config order and the actions.
#[test]
fn every_pair_of_precedence_rows() {
    let web = peer("team", "web");
    let mut checked = 0;
    for (i, (s1, d1, l1)) in TABLE.iter().enumerate() {
        for (j, (s2, d2, l2)) in TABLE.iter().enumerate() {
            if i == j {
                continue;
            }
            for (a1, a2) in [("allow", "deny"), ("deny", "allow")] {
                let json = format!(
                    r#"{{"trust_domain":"{TD}","destination":"team/api","default_action":"deny",
                        "intentions":[
                          {{"name":"first","source":"{s1}","destination":"{d1}","action":"{a1}"}},
                          {{"name":"second","source":"{s2}","destination":"{d2}","action":"{a2}"}}]}}"#
                );
                let p = policy(&json);
                let (winner, action) = if l1 > l2 {
                    ("first", a1)
                } else {
                    ("second", a2)
                };
                assert_eq!(
                    label(&p, &web, "GET", "/"),
                    format!("{action}:{winner}"),
                    "{s1}->{d1} (level {l1}, {a1}) vs {s2}->{d2} (level {l2}, {a2})"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9 * 8 * 2);
}

/// With all nine rows present, removing the top one at a time hands the decision down the
/// table, level by level.
#[test]
fn all_rows_present_the_highest_decides() {
    let web = peer("team", "web");
    for (top, (_, _, level)) in TABLE.iter().enumerate() {
        let intentions: Vec<String> = TABLE
            .iter()
            .skip(top)
            .map(|(s, d, l)| {
                let a = if l.is_multiple_of(2) { "allow" } else { "deny" };
                format!(r#"{{"name":"l{l}","source":"{s}","destination":"{d}","action":"{a}"}}"#)
            })
            .collect();
        let json = format!(
            r#"{{"trust_domain":"{TD}","destination":"team/api","intentions":[{}]}}"#,
            intentions.join(",")
        );
        let p = policy(&json);
        let a = if level.is_multiple_of(2) {
            "allow"
        } else {
            "deny"
        };
        assert_eq!(label(&p, &web, "GET", "/"), format!("{a}:l{level}"));
    }
}

#[test]
fn more_specific_intentions_for_other_peers_do_not_interfere() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"team/api","intentions":[
            {{"source":"team/other","action":"deny"}},
            {{"source":"other/*","action":"deny"}},
            {{"source":"team/*","action":"allow"}}]}}"#
    ));
    assert_eq!(
        label(&p, &peer("team", "web"), "GET", "/"),
        "allow:team.any"
    );
    assert_eq!(
        label(&p, &peer("team", "other"), "GET", "/"),
        "deny:team.other"
    );
    assert_eq!(label(&p, &peer("other", "x"), "GET", "/"), "deny:other.any");
    assert_eq!(label(&p, &peer("third", "x"), "GET", "/"), "deny:default");
}

#[test]
fn wildcards_never_match_anonymous_peers() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","default_action":"deny",
            "intentions":[{{"source":"*","action":"allow"}},{{"source":"default/*","destination":"*","action":"allow"}}]}}"#
    ));
    for why in [
        Anonymous::NoCertificate,
        Anonymous::NoUriSan,
        Anonymous::NotSpiffe,
        Anonymous::ForeignTrustDomain,
        Anonymous::OtherPartition,
    ] {
        let anon = Peer::Anonymous(why);
        assert_eq!(label(&p, &anon, "GET", "/"), "deny:default", "{why:?}");
    }
    assert_eq!(label(&p, &peer("x", "y"), "GET", "/"), "allow:any");
}

#[test]
fn default_action_allow_applies_without_a_match() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","default_action":"allow",
            "intentions":[{{"source":"legacy/*","action":"deny"}}]}}"#
    ));
    assert_eq!(
        label(&p, &peer("default", "web"), "GET", "/"),
        "allow:default"
    );
    assert_eq!(
        label(&p, &peer("legacy", "web"), "GET", "/"),
        "deny:legacy.any"
    );
    assert_eq!(
        label(&p, &Peer::Anonymous(Anonymous::NoCertificate), "GET", "/"),
        "allow:default"
    );
}

#[test]
fn intentions_for_other_destinations_are_ignored() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"team/api","intentions":[
            {{"source":"web","destination":"team/db","action":"allow"}},
            {{"source":"web","destination":"other/*","action":"allow"}},
            {{"source":"web","destination":"team/*","action":"deny"}}]}}"#
    ));
    assert_eq!(p.ignored(), 2);
    assert_eq!(p.intentions().len(), 1);
    assert_eq!(
        label(&p, &peer("default", "web"), "GET", "/"),
        "deny:default.web.to.team.any"
    );
}

fn l7() -> Policy {
    policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","default_action":"deny","intentions":[
            {{"name":"web","source":"web","permissions":[
              {{"action":"deny","http":{{"path_prefix":"/api/admin"}}}},
              {{"action":"allow","http":{{"path_prefix":"/api/","methods":["GET","HEAD"]}}}},
              {{"action":"allow","http":{{"path_exact":"/upload","methods":["POST"],
                 "headers":[{{"name":"x-role","exact":"uploader"}}]}}}},
              {{"action":"deny","http":{{"methods":["DELETE"]}}}},
              {{"action":"allow","http":{{"path_regex":"/v[0-9]+/.*"}}}}]}}]}}"#
    ))
}

#[test]
fn first_matching_permission_decides() {
    let p = l7();
    let web = peer("default", "web");
    let d = decide_req(&p, &web, "GET", "/api/items", &[]);
    assert_eq!(
        d,
        Decision {
            action: Action::Allow,
            by: DecidedBy::Intention {
                index: 0,
                permission: Some(1)
            },
        }
    );
    // The deny comes first, even though the allow also matches.
    let d = decide_req(&p, &web, "GET", "/api/admin/users", &[]);
    assert_eq!(
        d.by,
        DecidedBy::Intention {
            index: 0,
            permission: Some(0)
        }
    );
    assert_eq!(named(&p, d), "deny:web");
    assert_eq!(label(&p, &web, "HEAD", "/api/x"), "allow:web");
    assert_eq!(label(&p, &web, "GET", "/v2/anything"), "allow:web");
    assert_eq!(label(&p, &web, "DELETE", "/v2/anything"), "deny:web");
}

#[test]
fn no_matching_permission_falls_to_default_action() {
    let p = l7();
    let web = peer("default", "web");
    let d = decide_req(&p, &web, "POST", "/api/items", &[]);
    assert_eq!(
        d,
        Decision {
            action: Action::Deny,
            by: DecidedBy::Default { after: Some(0) }
        }
    );
    assert_eq!(named(&p, d), "deny:default");
    assert_eq!(label(&p, &web, "GET", "/other"), "deny:default");
}

#[test]
fn headers_are_matched_with_every_value() {
    let p = l7();
    let web = peer("default", "web");
    assert!(p.select(&web).needs_headers());
    let up = |h: &[(&str, &str)]| named(&p, decide_req(&p, &web, "POST", "/upload", h));
    assert_eq!(up(&[("x-role", "uploader")]), "allow:web");
    assert_eq!(
        up(&[("x-role", "guest"), ("x-role", "uploader")]),
        "allow:web"
    );
    assert_eq!(up(&[("x-role", "Uploader")]), "deny:default");
    assert_eq!(up(&[]), "deny:default");
}

#[test]
fn methods_are_case_sensitive_for_allow_and_deny_catches_variants() {
    let p = l7();
    let web = peer("default", "web");
    // An allow for GET does not allow `get`.
    assert_eq!(label(&p, &web, "get", "/api/items"), "deny:default");
    assert_eq!(label(&p, &web, "Get", "/api/items"), "deny:default");
    // A deny on DELETE also stops `delete` and `DeLeTe` (which the regex allow would let in).
    assert_eq!(label(&p, &web, "delete", "/v2/x"), "deny:web");
    assert_eq!(label(&p, &web, "DeLeTe", "/v2/x"), "deny:web");
    assert_eq!(label(&p, &web, "PATCH", "/v2/x"), "allow:web");
}

#[test]
fn l4_selection_does_not_need_the_request() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","intentions":[{{"source":"web","action":"allow"}}]}}"#
    ));
    let web = peer("default", "web");
    let sel = p.select(&web);
    assert!(!sel.needs_headers());
    assert!(!sel.is_l7());
    assert_eq!(named(&p, decide(&p, &web)), "allow:default.web");
}

/// The policy decides alike in both modes; the filter carries audit mode out (its
/// `audit_mode_labels_denials` test).
#[test]
fn audit_mode_decides_as_enforce() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","mode":"audit",
            "intentions":[{{"source":"web","action":"deny"}}]}}"#
    ));
    assert_eq!(p.mode, Mode::Audit);
    assert_eq!(
        label(&p, &peer("default", "web"), "GET", "/"),
        "deny:default.web"
    );
    assert_eq!(label(&p, &peer("default", "x"), "GET", "/"), "deny:default");
}

fn tied(a: Rule, b: Rule) -> Policy {
    let src = NamePattern::Exact(ServiceName::new("default", "web"));
    let mk = |name: &str, rule| Intention {
        name: name.to_owned(),
        source: src.clone(),
        destination: None,
        precedence: 9,
        rule,
    };
    let intentions = vec![mk("a", a), mk("b", b)];
    Policy {
        trust_domain: TD.to_owned(),
        destination: None,
        default_action: Action::Allow,
        mode: Mode::Enforce,
        index: SourceIndex::new(&intentions),
        intentions,
        ignored: 0,
    }
}

fn perm(action: Action, prefix: &str) -> Permission {
    let spec: mesh_core::HttpMatchSpec =
        mesh_core::parse_json(format!(r#"{{"path_prefix":"{prefix}"}}"#).as_bytes()).unwrap();
    Permission {
        action,
        http: spec.compile("http").unwrap(),
    }
}

/// Ties cannot be configured (duplicate pairs are refused), but the evaluator still lets a
/// deny win among equals, in either order, including an L7 intention whose outcome is deny.
#[test]
fn deny_wins_ties() {
    let web = peer("default", "web");
    let p = tied(Rule::L4(Action::Allow), Rule::L4(Action::Deny));
    assert_eq!(label(&p, &web, "GET", "/"), "deny:b");
    let p = tied(Rule::L4(Action::Deny), Rule::L4(Action::Allow));
    assert_eq!(label(&p, &web, "GET", "/"), "deny:a");
    let p = tied(
        Rule::L4(Action::Allow),
        Rule::L7(vec![perm(Action::Deny, "/admin")]),
    );
    assert_eq!(label(&p, &web, "GET", "/admin"), "deny:b");
    assert_eq!(label(&p, &web, "GET", "/public"), "allow:a");
    let p = tied(Rule::L4(Action::Allow), Rule::L4(Action::Allow));
    assert_eq!(label(&p, &web, "GET", "/"), "allow:a");
}

#[test]
fn deny_also_catches_a_trailing_slash() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","intentions":[{{"source":"web","permissions":[
            {{"action":"deny","http":{{"path_exact":"/api/secret"}}}},
            {{"action":"deny","http":{{"path_regex":"/api/v[0-9]+/keys"}}}},
            {{"action":"allow","http":{{"path_prefix":"/"}}}}]}}]}}"#
    ));
    let web = peer("default", "web");
    assert_eq!(label(&p, &web, "GET", "/api/secret/"), "deny:default.web");
    assert_eq!(label(&p, &web, "GET", "/api/v2/keys/"), "deny:default.web");
    assert_eq!(label(&p, &web, "GET", "/api/secrets/"), "allow:default.web");
    assert_eq!(label(&p, &web, "GET", "/"), "allow:default.web");
}

#[test]
fn deny_header_matchers_see_list_elements() {
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","intentions":[{{"source":"web","permissions":[
            {{"action":"deny","http":{{"headers":[{{"name":"x-tenant","exact":"admin"}}]}}}},
            {{"action":"deny","http":{{"headers":[{{"name":"x-tier","exact":"gold","invert":true}}]}}}},
            {{"action":"allow","http":{{"headers":[{{"name":"x-ok","exact":"yes"}}]}}}}]}}]}}"#
    ));
    let web = peer("default", "web");
    let d = |h: &[(&str, &str)]| named(&p, decide_req(&p, &web, "GET", "/", h));
    let gold = ("x-tier", "gold");
    assert_eq!(
        d(&[gold, ("x-tenant", "guest"), ("x-tenant", "admin")]),
        "deny:default.web"
    );
    assert_eq!(d(&[gold, ("x-tenant", "guest, admin")]), "deny:default.web");
    assert_eq!(
        d(&[gold, ("x-tenant", "guest,admin ,x")]),
        "deny:default.web"
    );
    assert_eq!(
        d(&[gold, ("x-tenant", "guest, administrator"), ("x-ok", "yes")]),
        "allow:default.web"
    );
    // An inverted deny is still tried on the whole value: "silver, gold" is not "gold".
    assert_eq!(
        d(&[("x-tier", "silver, gold"), ("x-ok", "yes")]),
        "deny:default.web"
    );
    assert_eq!(d(&[gold, ("x-ok", "yes")]), "allow:default.web");
    // Allows are not lenient: "yes, no" is not "yes".
    assert_eq!(d(&[gold, ("x-ok", "yes, no")]), "deny:default");
}

#[test]
fn list_splitting_costs_at_most_a_small_multiple_of_the_request() {
    // A long header name with a value of commas: each element used to become a pair with its
    // own copy of the name (quadratic: a 60 KiB header could ask for gigabytes).
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","intentions":[{{"source":"web","permissions":[
            {{"action":"deny","http":{{"headers":[{{"name":"x-tenant","exact":"admin"}}]}}}},
            {{"action":"allow","http":{{"headers":[{{"name":"x-ok","exact":"yes"}}]}}}}]}}]}}"#
    ));
    let long_name = "x".repeat(2_000);
    let commas = ",".repeat(4_000);
    let headers = HeaderSnapshot::from_pairs(&[
        (long_name.as_str(), commas.as_str()),
        ("x-tenant", commas.as_str()),
        ("x-ok", "yes"),
    ]);
    let size = |h: &HeaderSnapshot| h.pairs().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let Rule::L7(perms) = &p.intentions[0].rule else {
        panic!("l7 expected")
    };
    let split = split_lists(perms, &headers).unwrap_or_default();
    assert!(
        size(&split) <= 8 * size(&headers),
        "{} bytes split from {}",
        size(&split),
        size(&headers)
    );
    let web = peer("default", "web");
    let input = MatchInput {
        method: b"GET",
        path: "/",
        headers: &headers,
    };
    assert_eq!(
        named(&p, p.select(&web).decide(&input)),
        "allow:default.web"
    );
}

#[test]
fn deny_header_regexes_see_values_that_are_not_utf8() {
    // A regex never matches raw non-UTF-8 bytes; a deny must not be evaded by appending one.
    let p = policy(&format!(
        r#"{{"trust_domain":"{TD}","destination":"api","intentions":[{{"source":"web","permissions":[
            {{"action":"deny","http":{{"headers":[{{"name":"user-agent","regex":"curl.*"}}]}}}},
            {{"action":"deny","http":{{"headers":[{{"name":"x-tenant","regex":"admin"}}]}}}},
            {{"action":"allow","http":{{"path_prefix":"/"}}}}]}}]}}"#
    ));
    let web = peer("default", "web");
    let d = |h: &[(&str, &[u8])]| {
        let headers = HeaderSnapshot::from_pairs(h);
        let input = MatchInput {
            method: b"GET",
            path: "/",
            headers: &headers,
        };
        named(&p, p.select(&web).decide(&input))
    };
    assert_eq!(d(&[("user-agent", b"curl/8")]), "deny:default.web");
    assert_eq!(d(&[("user-agent", b"curl/8\xff")]), "deny:default.web");
    assert_eq!(d(&[("user-agent", b"curl\x80, x")]), "deny:default.web");
    assert_eq!(
        d(&[("x-tenant", b"guest, admin, \xfe")]),
        "deny:default.web"
    );
    assert_eq!(d(&[("user-agent", b"wget\xff")]), "allow:default.web");
}

/// `n` intentions for `default/api`: exact sources `ns{k%10}/svc{k}`, plus `ns1/*`, `ns3/*`,
/// `ns5/*` and `*` denies, so that every kind of source is present.
fn many(n: usize) -> (String, Policy) {
    let mut items: Vec<String> = (0..n.saturating_sub(4))
        .map(|k| format!(r#"{{"source":"ns{}/svc{k}","action":"allow"}}"#, k % 10))
        .collect();
    items.extend([1, 3, 5].map(|k| format!(r#"{{"source":"ns{k}/*","action":"deny"}}"#)));
    items.push(r#"{"source":"*","action":"deny"}"#.to_owned());
    let json = format!(
        r#"{{"trust_domain":"{TD}","destination":"api","intentions":[{}]}}"#,
        items.join(",")
    );
    let p = policy(&json);
    assert_eq!(p.intentions().len(), n);
    (json, p)
}

/// What the scan before the index looked at: every intention up to the first whose source
/// matches, then the rest of its level.
fn linear_looked(p: &Policy, who: &Peer) -> usize {
    let Some(svc) = who.service() else { return 0 };
    let all = p.intentions();
    match all.iter().position(|i| i.source.matches(svc)) {
        None => all.len(),
        Some(first) => {
            let level = all[first].precedence;
            first
                + all[first..]
                    .iter()
                    .take_while(|i| i.precedence == level)
                    .count()
        }
    }
}

/// The work of selecting a peer's intentions does not grow with their number: 10 and 10,000
/// intentions look at the same number of buckets and candidates, for a peer with its own
/// exact intention, one only a namespace wildcard catches, and one only `*` catches.
#[test]
fn selection_cost_is_flat_in_the_number_of_intentions() {
    let (_, small) = many(10);
    let (_, large) = many(10_000);
    let peers = [
        // Exact: the last exact intention of each configuration.
        (peer("ns5", "svc5"), peer("ns5", "svc9995")),
        (peer("ns3", "nobody"), peer("ns3", "nobody")),
        (peer("elsewhere", "x"), peer("elsewhere", "x")),
    ];
    for (a, b) in &peers {
        let (sa, la) = small.select_counted(a);
        let (sb, lb) = large.select_counted(b);
        assert_eq!(sa.indices().count(), 1);
        assert_eq!(sb.indices().count(), 1);
        eprintln!(
            "{:?}: looked at {la} (10) and {lb} (10,000); the linear scan: {} and {}",
            b.service(),
            linear_looked(&small, a),
            linear_looked(&large, b)
        );
        assert_eq!(la, lb, "{b:?}");
        assert!(lb <= 3 * 9 + 1, "{b:?}: {lb}");
    }
    assert_eq!(
        decide(&large, &peer("ns5", "svc9995")).action,
        Action::Allow
    );
    assert_eq!(decide(&large, &peer("ns5", "svc9999")).action, Action::Deny);
}
