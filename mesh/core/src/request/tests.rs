use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn valid_text_is_borrowed_and_invalid_bytes_are_replaced() {
    assert!(matches!(
        utf8_lossy(b"/api/v1?x=1"),
        Cow::Borrowed("/api/v1?x=1")
    ));
    assert_eq!(utf8_lossy(b"/a\xff/b"), "/a\u{fffd}/b");
}

#[test]
fn the_path_stops_at_the_query_or_fragment() {
    let head = |p: &[u8]| RequestHead {
        path: p.to_vec().into(),
        ..RequestHead::default()
    };
    assert_eq!(head(b"/a/b?c=d").path_lossy(), "/a/b");
    assert_eq!(head(b"/a#frag").path_lossy(), "/a");
    assert_eq!(head(b"/\xc3(").path_lossy(), "/\u{fffd}(");
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_text_as_the_standard_library(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(utf8_lossy(&bytes), String::from_utf8_lossy(&bytes));
        }
    }
}
