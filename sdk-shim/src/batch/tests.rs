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
    assert_eq!(
        cel_list(&[&["response", "code"], &["request", "total_size"]]).as_deref(),
        Some("[response.code, request.total_size]")
    );
}

#[test]
fn paths_that_are_not_identifiers_are_not_batched() {
    assert_eq!(cel_list(&[&["request", "headers", "x-id"]]), None);
    assert_eq!(cel_list(&[&["xds", "node", "metadata", "LABELS"]]), None);
    assert_eq!(cel_list(&[&["a", "b) || true || (c"]]), None);
    assert_eq!(cel_list(&[&[]]), None);
    assert_eq!(cel_list(&[]), None);
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
