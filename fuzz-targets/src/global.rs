//! The rate limit service's side of a global check (mesh-ratelimit's `global`): its answers are
//! untrusted bytes from the network, and the key values a request sends are a client's.

use mesh_ratelimit::global::{
    answer, proto, Answer, MAX_SERVICE_HEADERS, MAX_SERVICE_HEADER_VALUE,
};
use mesh_ratelimit::{Config, LimitedReply};
use prost::Message;
use std::sync::OnceLock;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::parse(
            br#"{"rules":[{"name":"api","key":{"header":"x-user"},
                "global":{"cluster":"rls","domain":"mesh",
                          "entries":[{"key":"service","value":"reviews"}]}}]}"#,
        )
        .unwrap()
    })
}

fn clean_header(name: &str, value: &str) {
    assert!(!name.is_empty() && !name.starts_with(':'), "{name:?}");
    assert_eq!(name, name.to_ascii_lowercase(), "{name:?}");
    assert!(value.len() <= MAX_SERVICE_HEADER_VALUE);
    assert!(
        !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)),
        "{value:?}"
    );
}

/// First byte: which half. Answers: decoding agrees with the message type, every header taken
/// is safe to send, the figures of a refusal are sane and its reply well formed. Requests: any
/// key value goes out and comes back as the last entry.
pub fn rls_response(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rule = &config().rules[0];
    if mode % 2 == 1 {
        let value = String::from_utf8_lossy(rest);
        let global = rule.global.as_ref().unwrap();
        let sent =
            proto::RateLimitRequest::decode(global.request(Some(&value)).as_slice()).unwrap();
        let last = sent.descriptors[0].entries.last().unwrap();
        assert_eq!(
            (last.key.as_str(), last.value.as_str()),
            ("x-user", value.as_ref())
        );
        return;
    }
    let decoded = answer(rest);
    assert_eq!(
        decoded.is_ok(),
        proto::RateLimitResponse::decode(rest).is_ok(),
        "the answer decodes exactly when the message does"
    );
    let Ok(decoded) = decoded else {
        return;
    };
    match decoded {
        Answer::Ok {
            request_headers,
            response_headers,
        } => {
            for headers in [&request_headers, &response_headers] {
                assert!(headers.len() <= MAX_SERVICE_HEADERS);
                for (k, v) in headers {
                    clean_header(k, v);
                }
            }
        }
        Answer::OverLimit {
            retry_after_s,
            policy,
            response_headers,
            ..
        } => {
            assert!(retry_after_s.is_none_or(|s| s >= 1));
            assert!(policy.is_none_or(|(q, w)| q > 0 && w > 0));
            assert!(response_headers.len() <= MAX_SERVICE_HEADERS);
            let reply = LimitedReply::global(rule, retry_after_s, policy, response_headers);
            assert_eq!(reply.status, 429);
            for (k, v) in reply.headers() {
                clean_header(k, v);
            }
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["status"], 429);
        }
    }
}
