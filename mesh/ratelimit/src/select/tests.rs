use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// `n` rules, each limiting its own service's prefix `/svc{k}/`, with `GET` only on every
/// other one.
fn many(n: usize) -> Config {
    let rules: Vec<String> = (0..n)
        .map(|k| {
            let methods = if k % 2 == 0 { r#","methods":["GET"]"# } else { "" };
            format!(
                r#"{{"name":"r{k}","match":{{"path_prefix":"/svc{k}/"{methods}}},"limit":{{"requests":10,"per":"1s"}}}}"#
            )
        })
        .collect();
    let json = format!(r#"{{"rules":[{}]}}"#, rules.join(","));
    Config::parse(json.as_bytes()).unwrap()
}

/// A request matching one of 1 or of 1,000 prefix rules is offered that one rule only, after
/// walking the same trie nodes (one per byte of the longest matching prefix, plus the root).
#[test]
fn candidates_are_flat_in_the_number_of_rules() {
    let large = many(1_000);
    let large_index = RuleIndex::new(&large);
    let small = many(1);
    let small_index = RuleIndex::new(&small);

    let (one, walked_small) = small_index.candidates_counted(Some("/svc0/items"));
    assert_eq!(one.as_ref(), [0]);
    // The same shape of prefix, `/svcN/`, for a rule near the end of the large config.
    let (one, walked_large) = large_index.candidates_counted(Some("/svc998/items"));
    assert_eq!(one.as_ref(), [998]);
    assert_eq!(walked_small, "/svc0/".len() + 1);
    assert_eq!(walked_large, "/svc998/".len() + 1);
    eprintln!(
        "candidates: 1 of 1 rule and 1 of 1,000 (the scan before: 1 and 1,000); trie nodes: {walked_small} and {walked_large}"
    );
    // A path no rule can match visits none.
    let (none, walked) = large_index.candidates_counted(Some("/other"));
    assert!(none.is_empty());
    assert_eq!(walked, 2);
    // The head could not be read: every rule is tried (each reports the failure).
    assert_eq!(large_index.candidates(None).len(), 1_000);
}

#[test]
fn exact_regex_and_pathless_rules() {
    let json = r#"{"rules":[
        {"name":"a","match":{"path_regex":"/x.*"},"limit":{"requests":1,"per":"1s"}},
        {"name":"b","match":{"path_exact":"/x/y"},"limit":{"requests":1,"per":"1s"}},
        {"name":"c","limit":{"requests":1,"per":"1s"}},
        {"name":"d","match":{"path_prefix":"/x"},"limit":{"requests":1,"per":"1s"}},
        {"name":"e","match":{"methods":["POST"]},"limit":{"requests":1,"per":"1s"}},
        {"name":"f","match":{"path_prefix":"/x/"},"limit":{"requests":1,"per":"1s"}},
        {"name":"g","match":{"path_exact":"/x/y/"},"limit":{"requests":1,"per":"1s"}}]}"#;
    let index = RuleIndex::new(&Config::parse(json.as_bytes()).unwrap());
    assert_eq!(index.candidates(Some("/x/y")).as_ref(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(index.candidates(Some("/x")).as_ref(), [0, 2, 3, 4]);
    assert_eq!(index.candidates(Some("/")).as_ref(), [0, 2, 4]);
    assert!(index.needs_head());
    assert!(!index.needs_headers());
}
