use super::*;
use proptest::prelude::*;

/// Serializes like proxy-wasm's `marshalPairs`, as Envoy does for a CEL list.
fn marshal(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = u32::try_from(items.len()).unwrap().to_le_bytes().to_vec();
    for i in items {
        out.extend(u32::try_from(i.len()).unwrap().to_le_bytes());
        out.extend(0u32.to_le_bytes());
    }
    for i in items {
        out.extend(i);
        out.extend([0, 0]);
    }
    out
}

#[test]
fn a_list_of_paths_is_one_cel_expression() {
    const TWO: &[&[&str]] = &[&["response", "code"], &["request", "total_size"]];
    assert_eq!(
        cel_list(&PropertySet::new(TWO)).as_deref(),
        Some("[response.code, request.total_size]")
    );
    assert_eq!(
        cel_list(&PropertySet::new(TWO).optional(1)).as_deref(),
        Some(r#"[response.code, (has(request.total_size) ? request.total_size : "")]"#)
    );
}

#[test]
fn filter_state_objects_are_read_by_their_whole_key() {
    const TWO: &[&[&str]] = &[&["response", "code"], &[FILTER_STATE, "wasm.mesh.canary"]];
    assert_eq!(
        cel_list(&PropertySet::new(TWO)).as_deref(),
        Some(r#"[response.code, filter_state["wasm.mesh.canary"]]"#)
    );
    assert_eq!(
        cel_list(&PropertySet::new(TWO).optional(1)).as_deref(),
        Some(
            r#"[response.code, ("wasm.mesh.canary" in filter_state ? filter_state["wasm.mesh.canary"] : b"")]"#
        )
    );
    // A key that would need quoting is not written into an expression.
    const ODD: [&[&[&str]]; 5] = [
        &[&[FILTER_STATE, r#"a"] || true || ["b"#]],
        &[&[FILTER_STATE, "A.b"]],
        &[&[FILTER_STATE, ""]],
        &[&[FILTER_STATE, "a b"]],
        &[&[FILTER_STATE, "a\\b"]],
    ];
    for paths in ODD {
        assert_eq!(cel_list(&PropertySet::new(paths)), None, "{paths:?}");
    }
    // `filter_state` with no key, or more segments, is an ordinary path.
    assert_eq!(
        cel_list(&PropertySet::new(&[&[FILTER_STATE]])).as_deref(),
        Some("[filter_state]")
    );
    assert_eq!(
        cel_list(&PropertySet::new(&[&[FILTER_STATE, "a", "b"]])).as_deref(),
        Some("[filter_state.a.b]")
    );
}

#[test]
fn paths_that_are_not_identifiers_are_not_batched() {
    let list = |paths: &'static [&'static [&'static str]]| cel_list(&PropertySet::new(paths));
    assert_eq!(list(&[&["request", "headers", "x-id"]]), None);
    assert_eq!(list(&[&["xds", "node", "metadata", "LABELS"]]), None);
    assert_eq!(list(&[&["a", "b) || true || (c"]]), None);
    assert_eq!(list(&[&[]]), None);
    assert_eq!(list(&[]), None);
}

#[test]
fn an_optional_path_reads_as_missing_when_empty() {
    const THREE: &[&[&str]] = &[&["a", "b"], &["c", "d"], &["e", "f"]];
    let set = PropertySet::new(THREE).optional(1).optional(2);
    let bytes = marshal(&[Vec::new(), Vec::new(), b"x".to_vec()]);
    assert_eq!(
        PropertyValues::decode(bytes.clone(), &set).map(|v| v.to_vec()),
        Some(vec![Some(Vec::new()), None, Some(b"x".to_vec())])
    );
    // Borrowed in place: the same values without a copy each.
    let values = PropertyValues::decode(bytes.clone(), &set).unwrap();
    let borrowed: Vec<Option<&[u8]>> = values.iter().collect();
    assert_eq!(borrowed, [Some(&b""[..]), None, Some(&b"x"[..])]);
    // A list of another length is refused as a whole.
    assert_eq!(
        PropertyValues::decode(bytes[..bytes.len() - 1].to_vec(), &set),
        None
    );
    let two = PropertySet::new(&THREE[..2]);
    assert_eq!(PropertyValues::decode(bytes, &two), None);
    assert!(!set.is_optional(0) && set.is_optional(1) && !set.is_optional(64));
}

#[test]
fn envoys_list_encoding_decodes_in_order() {
    let items = vec![200i64.to_le_bytes().to_vec(), Vec::new(), b"UH".to_vec()];
    assert_eq!(decode_list(&marshal(&items), 3), Some(items));
}

#[test]
fn a_list_of_another_length_or_with_trailing_bytes_is_refused() {
    let bytes = marshal(&[vec![1], vec![2]]);
    assert_eq!(decode_list(&bytes, 3), None);
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode_list(&longer, 2), None);
    assert_eq!(decode_list(&bytes[..bytes.len() - 1], 2), None);
}

proptest! {
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..4) {
        let _ = decode_list(&bytes, n);
    }

    #[test]
    fn decoding_inverts_encoding(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6)) {
        prop_assert_eq!(decode_list(&marshal(&items), items.len()), Some(items));
    }
}
