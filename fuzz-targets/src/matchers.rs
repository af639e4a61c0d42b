//! Header, method and path matchers (mesh-core), compiled from fuzzed specs and run on
//! fuzzed requests, against a reference written from their documentation.

use crate::Input;
use mesh_core::matchers::compile_regex;
use mesh_core::{HeaderMatchSpec, HttpMatchSpec, MatchInput};
use sdk_shim::HeaderSnapshot;

fn lower(v: &[u8]) -> Vec<u8> {
    v.to_ascii_lowercase()
}

/// What one value does against the documented operator.
fn reference(kind: u8, pattern: &[u8], value: &[u8], ignore_case: bool) -> Option<bool> {
    let (p, v) = if ignore_case {
        (lower(pattern), lower(value))
    } else {
        (pattern.to_vec(), value.to_vec())
    };
    Some(match kind {
        0 => true,
        1 => v == p,
        2 => v.starts_with(&p),
        3 => v.ends_with(&p),
        4 => p.is_empty() || v.windows(p.len()).any(|w| w == p.as_slice()),
        _ => return None,
    })
}

pub fn matchers(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let kind = flags % 6;
    let ignore_case = flags & 0x10 != 0;
    let name = input.text().to_ascii_lowercase();
    let pattern = input.text();
    let headers: Vec<(String, Vec<u8>)> = (0..input.byte() % 6)
        .map(|_| {
            let n = if input.byte() & 1 == 0 {
                name.clone()
            } else {
                input.text()
            };
            (n, input.field().to_vec())
        })
        .collect();
    let path = input.text();
    let method = input.field().to_vec();

    let mut spec = HeaderMatchSpec {
        name: name.clone(),
        ignore_case,
        ..HeaderMatchSpec::default()
    };
    match kind {
        0 => spec.present = Some(true),
        1 => spec.exact = Some(pattern.clone()),
        2 => spec.prefix = Some(pattern.clone()),
        3 => spec.suffix = Some(pattern.clone()),
        4 => spec.contains = Some(pattern.clone()),
        _ => spec.regex = Some(pattern.clone()),
    }
    let inverted = HeaderMatchSpec {
        invert: true,
        ..spec.clone()
    };
    if let (Ok(m), Ok(inv)) = (spec.compile("h"), inverted.compile("h")) {
        let map = HeaderSnapshot::from_pairs(&headers);
        let result = m.matches(&map);
        assert_eq!(inv.matches(&map), !result, "invert is not negation");
        // Any value of a repeated header decides, whatever the order.
        let mut reversed = headers.clone();
        reversed.reverse();
        assert_eq!(m.matches(&HeaderSnapshot::from_pairs(&reversed)), result);
        let each = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&name))
            .any(|(k, v)| m.matches(&HeaderSnapshot::from_pairs(&[(k, v)])));
        assert_eq!(each, result, "a repeated header is not any-of");
        if let Some(expected) = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&name))
            .map(|(_, v)| reference(kind, pattern.as_bytes(), v, ignore_case))
            .try_fold(false, |acc, r| r.map(|r| acc || r))
        {
            assert_eq!(result, expected, "differs from the documented operator");
        }
    }

    // A regex matches whole values only; an escaped literal matches exactly itself.
    if let Ok(re) = compile_regex(&regex_lite::escape(&pattern), false, "r") {
        assert!(re.is_match(&pattern));
        assert!(!re.is_match(&format!("{pattern}x")));
        assert!(!re.is_match(&format!("x{pattern}")));
    }
    if let Ok(re) = compile_regex(&pattern, ignore_case, "r") {
        let _ = re.is_match(&path);
    }

    // Path and method conditions against their reference.
    for (which, spec) in [
        (
            0,
            HttpMatchSpec {
                path_exact: Some(pattern.clone()),
                ..HttpMatchSpec::default()
            },
        ),
        (
            1,
            HttpMatchSpec {
                path_prefix: Some(pattern.clone()),
                ..HttpMatchSpec::default()
            },
        ),
        (
            2,
            HttpMatchSpec {
                methods: vec![name.to_ascii_uppercase()],
                ..HttpMatchSpec::default()
            },
        ),
    ] {
        let Ok(m) = spec.compile("m") else { continue };
        let map = HeaderSnapshot::from_pairs(&headers);
        let req = MatchInput {
            method: &method,
            path: &path,
            headers: &map,
        };
        let expected = match which {
            0 => path == pattern,
            1 => path.starts_with(pattern.as_str()),
            _ => method == name.to_ascii_uppercase().as_bytes(),
        };
        assert_eq!(
            m.matches(&req),
            expected,
            "spec {which} differs from its reference"
        );
    }

    // A whole match spec from JSON never panics, and an error names a field.
    if let Ok(spec) = serde_json::from_slice::<HttpMatchSpec>(input.rest()) {
        if let Err(e) = spec.compile("match") {
            assert!(e.field.starts_with("match"));
            crate::config::check_error_line(&e.to_string());
        }
    }
}
