use super::*;
use crate::config::Config;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn rule(name: &str, requests: u32, per: &str) -> Rule {
    let json = format!(
        r#"{{"rules":[{{"name":"{name}","limit":{{"requests":{requests},"per":"{per}"}}}}]}}"#
    );
    Config::parse(json.as_bytes()).unwrap().rules.remove(0)
}

/// Checks `value` is an sf-list of string items with integer parameters, as the draft
/// requires for both fields, and returns (item, params) pairs.
fn parse_sf_list(value: &str) -> Vec<(String, Vec<(String, u64)>)> {
    value
        .split(", ")
        .map(|member| {
            let mut parts = member.split(';');
            let item = parts.next().unwrap();
            assert!(
                item.len() >= 2 && item.starts_with('"') && item.ends_with('"'),
                "{item}"
            );
            let params = parts
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    assert!(k.bytes().all(|b| b.is_ascii_lowercase()), "{k}");
                    (k.to_owned(), v.parse::<u64>().unwrap())
                })
                .collect();
            (item.trim_matches('"').to_owned(), params)
        })
        .collect()
}

#[test]
fn limited_reply_fields_follow_the_draft() {
    let r = rule("api", 100, "1h");
    let reply = LimitedReply::new(&r, 36);
    assert_eq!(reply.retry_after, "36");
    assert_eq!(reply.policy, r#""api";q=100;w=3600"#);
    assert_eq!(reply.ratelimit, r#""api";r=0;t=36"#);
    assert_eq!(
        parse_sf_list(&reply.policy),
        [(
            "api".to_owned(),
            vec![("q".to_owned(), 100), ("w".to_owned(), 3600)]
        )]
    );
    let headers = reply.headers();
    assert_eq!(headers[0], ("content-type", "application/problem+json"));
    assert_eq!(headers[1], ("retry-after", "36"));
}

#[test]
fn problem_body_names_the_violated_policy() {
    let reply = LimitedReply::new(&rule("per-user", 5, "1m"), 0);
    assert_eq!(reply.retry_after, "1", "never 0: clients would spin");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["type"], QUOTA_EXCEEDED_TYPE);
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"], serde_json::json!(["per-user"]));
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("5 requests per 60s"));
}

#[test]
fn lists_join_items() {
    let (a, b) = (rule("a", 10, "1s"), rule("b", 1, "500ms"));
    let mut rl = String::new();
    push_service_limit(&mut rl, &a, 9, 1);
    push_service_limit(&mut rl, &b, 0, 1);
    assert_eq!(rl, r#""a";r=9;t=1, "b";r=0;t=1"#);
    let mut policy = String::new();
    push_policy(&mut policy, &a);
    push_policy(&mut policy, &b);
    assert_eq!(parse_sf_list(&policy).len(), 2);
    assert_eq!(policy, r#""a";q=10;w=1, "b";q=1;w=1"#);
    assert_eq!(ceil_secs(1), 1);
    assert_eq!(ceil_secs(0), 0);
    assert_eq!(ceil_secs(2_000_000_000), 2);
}
