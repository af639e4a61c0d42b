use super::proto::*;
use super::*;
use crate::config::Config;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn rule_with(global: &str, key: &str) -> Result<crate::Rule, ConfigError> {
    let json = format!(r#"{{"rules":[{{"name":"api",{key}"global":{global}}}]}}"#);
    Config::parse(json.as_bytes()).map(|mut c| c.rules.remove(0))
}

fn global(global: &str, key: &str) -> Global {
    rule_with(global, key).unwrap().global.unwrap()
}

#[test]
fn defaults_follow_envoys_ratelimit_filter() {
    let g = global(r#"{"cluster":"rls","domain":"mesh"}"#, "");
    assert_eq!(g.timeout_ms, 20);
    assert_eq!(g.failure_mode, FailureMode::Allow);
    assert_eq!(g.hits_addend, 0);
    assert_eq!(g.entries, [("generic_key".to_owned(), "api".to_owned())]);
    assert_eq!(g.key_entry, None);
    let service = GrpcService::decode(g.service.as_bytes()).unwrap();
    assert_eq!(
        service.envoy_grpc,
        Some(EnvoyGrpc {
            cluster_name: "rls".to_owned(),
            authority: String::new()
        })
    );
}

#[test]
fn the_key_entry_is_named_after_the_key() {
    let header = r#""key":{"header":"X-User"},"#;
    let g = global(r#"{"cluster":"rls","domain":"d"}"#, header);
    assert_eq!(g.key_entry.as_deref(), Some("x-user"));
    let addr = r#""key":{"source":"address"},"#;
    let g = global(r#"{"cluster":"rls","domain":"d"}"#, addr);
    assert_eq!(g.key_entry.as_deref(), Some("remote_address"));
    let principal = r#""key":{"source":"principal"},"#;
    let g = global(
        r#"{"cluster":"rls","domain":"d","descriptor_key":"who"}"#,
        principal,
    );
    assert_eq!(g.key_entry.as_deref(), Some("who"));
}

#[test]
fn the_request_carries_the_entries_then_the_key() {
    let g = global(
        r#"{"cluster":"rls","authority":"rls.example","domain":"mesh",
            "entries":[{"key":"service","value":"reviews"}],"hits_addend":3}"#,
        r#""key":{"header":"x-user"},"#,
    );
    let req = RateLimitRequest::decode(g.request(Some("alice")).as_slice()).unwrap();
    assert_eq!(req.domain, "mesh");
    assert_eq!(req.hits_addend, 3);
    let entries: Vec<_> = req.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(entries, [("service", "reviews"), ("x-user", "alice")]);
    let service = GrpcService::decode(g.service.as_bytes()).unwrap();
    assert_eq!(service.envoy_grpc.unwrap().authority, "rls.example");
}

#[test]
fn bad_global_blocks_name_the_field() {
    let cases = [
        (
            r#"{"cluster":"","domain":"d"}"#,
            "",
            "rules[0].global.cluster",
        ),
        (
            r#"{"cluster":"a b","domain":"d"}"#,
            "",
            "rules[0].global.cluster",
        ),
        (
            r#"{"cluster":"c","domain":""}"#,
            "",
            "rules[0].global.domain",
        ),
        (
            r#"{"cluster":"c","domain":"d","timeout":"0s"}"#,
            "",
            "rules[0].global.timeout",
        ),
        (
            r#"{"cluster":"c","domain":"d","timeout":"2m"}"#,
            "",
            "rules[0].global.timeout",
        ),
        (
            r#"{"cluster":"c","domain":"d","hits_addend":0}"#,
            "",
            "rules[0].global.hits_addend",
        ),
        (
            r#"{"cluster":"c","domain":"d","descriptor_key":"k"}"#,
            "",
            "rules[0].global.descriptor_key",
        ),
        (
            r#"{"cluster":"c","domain":"d","entries":[{"key":"k","value":""}]}"#,
            "",
            "rules[0].global.entries[0].value",
        ),
        (
            r#"{"cluster":"c","domain":"d","failure_mode":"maybe"}"#,
            "",
            "failure_mode",
        ),
        (r#"{"cluster":"c","domain":"d","extra":1}"#, "", "extra"),
    ];
    for (g, key, field) in cases {
        let err = rule_with(g, key).unwrap_err().to_string();
        assert!(err.contains(field), "{g}: {err}");
        assert!(!err.ends_with('.'), "{err}");
    }
    let none = Config::parse(br#"{"rules":[{"name":"a"}]}"#).unwrap_err();
    assert_eq!(
        none.to_string(),
        "rules[0].limit: required unless the rule has a global block"
    );
}

fn encode(r: RateLimitResponse) -> Vec<u8> {
    r.encode_to_vec()
}

fn header(key: &str, value: &str) -> HeaderValue {
    HeaderValue {
        key: key.to_owned(),
        value: value.to_owned(),
        raw_value: Vec::new(),
    }
}

#[test]
fn an_over_limit_answer_with_statuses_gives_the_wait_and_the_policy() {
    let msg = encode(RateLimitResponse {
        overall_code: 2,
        statuses: vec![
            DescriptorStatus {
                code: 1,
                ..Default::default()
            },
            DescriptorStatus {
                code: 2,
                current_limit: Some(RateLimit {
                    requests_per_unit: 100,
                    unit: 3,
                    name: String::new(),
                }),
                limit_remaining: 0,
                duration_until_reset: Some(Duration {
                    seconds: 41,
                    nanos: 5,
                }),
            },
        ],
        response_headers_to_add: vec![header("x-ratelimit-limit", "100")],
        request_headers_to_add: vec![],
    });
    assert_eq!(
        answer(&msg).unwrap(),
        Answer::OverLimit {
            retry_after_s: Some(42),
            policy: Some((100, 3600)),
            remaining: Some(0),
            response_headers: vec![("x-ratelimit-limit".to_owned(), "100".to_owned())],
        }
    );
}

#[test]
fn an_over_limit_answer_without_statuses_as_limitador_sends_it() {
    let msg = encode(RateLimitResponse {
        overall_code: 2,
        ..Default::default()
    });
    assert_eq!(
        answer(&msg).unwrap(),
        Answer::OverLimit {
            retry_after_s: None,
            policy: None,
            remaining: None,
            response_headers: vec![],
        }
    );
}

#[test]
fn ok_and_unknown_admit_with_the_services_headers_sanitized() {
    let msg = encode(RateLimitResponse {
        overall_code: 0,
        request_headers_to_add: vec![
            header("X-Tier", "gold"),
            header(":path", "/admin"),
            header("host", "evil"),
            header("x-split", "a\r\nb"),
            HeaderValue {
                key: "x-raw".to_owned(),
                value: String::new(),
                raw_value: b"bytes".to_vec(),
            },
        ],
        ..Default::default()
    });
    assert_eq!(
        answer(&msg).unwrap(),
        Answer::Ok {
            request_headers: vec![
                ("x-tier".to_owned(), "gold".to_owned()),
                ("x-raw".to_owned(), "bytes".to_owned())
            ],
            response_headers: vec![],
        }
    );
    assert!(
        matches!(answer(&[]).unwrap(), Answer::Ok { .. }),
        "an empty message is OK's default"
    );
}

#[test]
fn garbage_does_not_decode() {
    assert_eq!(answer(&[0xff, 0xff, 0xff]), Err(Undecodable));
    assert_eq!(answer(&[0x12, 0x05, 0x01]), Err(Undecodable));
}
