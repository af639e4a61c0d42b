use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn n(p: &str) -> Result<String, PathError> {
    normalize_path(p.as_bytes()).map(Cow::into_owned)
}

fn ok(p: &str, want: &str) {
    assert_eq!(n(p).as_deref(), Ok(want), "{p:?}");
}

fn refused(p: &[u8], want: PathError) {
    assert_eq!(
        normalize_path(p),
        Err(want),
        "{:?}",
        String::from_utf8_lossy(p)
    );
}

#[test]
fn plain_paths_are_unchanged() {
    for p in [
        "/",
        "/a",
        "/a/b",
        "/a/b/",
        "/api/v1/items",
        "/a-b_c~d.e",
        "/x:y@z!$&'()*+,=",
    ] {
        ok(p, p);
    }
}

#[test]
fn query_and_fragment_are_removed() {
    ok("/admin?x=1", "/admin");
    ok("/admin#frag", "/admin");
    ok("/admin?x=/../y#z", "/admin");
    ok("/admin#x?y", "/admin");
    ok("/a?", "/a");
    ok("/a?;\\%zz", "/a");
    refused(b"?x", PathError::NotOriginForm);
    refused(b"", PathError::NotOriginForm);
    refused(b"#/admin", PathError::NotOriginForm);
}

#[test]
fn only_origin_form() {
    for p in ["*", "admin", "http://h/admin", "%2Fadmin", "./admin"] {
        refused(p.as_bytes(), PathError::NotOriginForm);
    }
}

#[test]
fn unreserved_escapes_are_decoded_once() {
    ok("/%61dmin", "/admin");
    ok("/%41%44%4D%49%4E", "/ADMIN");
    ok("/%7euser/%2D%5f", "/~user/-_");
    ok("/a%2Eb", "/a.b");
    // %25 is '%', not unreserved: it stays, and what follows is not decoded again...
    ok("/%25", "/%25");
    ok("/%25zz", "/%25zz");
    ok("/100%25/x", "/100%25/x");
    ok("/%25%47", "/%25G");
    // ...but an escape hidden behind it is refused: a server decoding twice would see it.
    for p in [
        "/%2561dmin",
        "/%252F",
        "/%252e%252e/admin",
        "/a%25%32%46",
        "/%25%41%41",
    ] {
        refused(p.as_bytes(), PathError::DoubleEncoding);
    }
}

#[test]
fn other_escapes_stay_encoded_in_uppercase() {
    ok("/a%3ab", "/a%3Ab");
    ok("/a%3Fb", "/a%3Fb");
    ok("/a%23b", "/a%23b");
    ok("/a%20b", "/a%20b");
    ok("/caf%c3%a9", "/caf%C3%A9");
    ok("/%e2%82%ac", "/%E2%82%AC");
}

#[test]
fn encoded_separators_are_refused() {
    for p in [
        "/a%2Fb",
        "/a%2fb",
        "/admin%2F",
        "/a%5Cb",
        "/a%5cb",
        "/%2F%2Fadmin",
    ] {
        refused(p.as_bytes(), PathError::EncodedSeparator);
    }
}

#[test]
fn backslashes_are_refused() {
    refused(b"/a\\b", PathError::Backslash);
    refused(b"/\\admin", PathError::Backslash);
    refused(b"/..\\admin", PathError::Backslash);
}

#[test]
fn control_bytes_are_refused() {
    for p in [
        &b"/a\0b"[..],
        b"/a\nb",
        b"/a\rb",
        b"/a\tb",
        b"/a b",
        b"/a\x7fb",
        b"/admin\0",
    ] {
        refused(p, PathError::ControlByte);
    }
    for p in [
        "/a%00b",
        "/admin%00",
        "/a%0Ab",
        "/a%0d%0a",
        "/a%1F",
        "/a%7f",
    ] {
        refused(p.as_bytes(), PathError::EncodedControl);
    }
}

#[test]
fn raw_non_ascii_is_refused() {
    refused("/café".as_bytes(), PathError::NonAscii);
    refused(b"/a\xc0\xafb", PathError::NonAscii);
    refused(b"/\xff", PathError::NonAscii);
}

#[test]
fn malformed_escapes_are_refused() {
    for p in ["/a%", "/a%2", "/a%zz", "/a%2g", "/%%41", "/a%+1", "/a%-1"] {
        refused(p.as_bytes(), PathError::MalformedEscape);
    }
}

#[test]
fn overlong_and_invalid_utf8_escapes_are_refused() {
    for p in [
        "/%C0%AF",       // overlong '/'
        "/..%C0%AF..",   // overlong '/' in traversal
        "/%C1%9C",       // overlong '\'
        "/%E0%80%AF",    // three-byte overlong '/'
        "/%F0%80%80%AF", // four-byte overlong '/'
        "/%C0%AE%C0%AE", // overlong '.'
        "/%80",          // lone continuation byte
        "/%C3",          // truncated sequence
        "/%ED%A0%80",    // surrogate
        "/%FF",
    ] {
        refused(p.as_bytes(), PathError::InvalidUtf8);
    }
}

#[test]
fn path_parameters_are_refused() {
    for p in [
        "/admin;x",
        "/a/..;/admin",
        "/admin;/",
        "/;",
        "/a;jsessionid=1/b",
    ] {
        refused(p.as_bytes(), PathError::PathParameter);
    }
    // Encoded too: some frameworks strip parameters after decoding.
    refused(b"/admin%3Bx", PathError::PathParameter);
    refused(b"/a/..%3b/admin", PathError::PathParameter);
}

#[test]
fn dot_segments_are_resolved() {
    ok("/a/./b", "/a/b");
    ok("/a/../b", "/b");
    ok("/a/b/..", "/a/");
    ok("/a/b/.", "/a/b/");
    ok("/..", "/");
    ok("/../admin", "/admin");
    ok("/../../../admin", "/admin");
    ok("/.", "/");
    ok("/api/../admin", "/admin");
    ok("/a/.../b", "/a/.../b");
    ok("/a/..b/c", "/a/..b/c");
    ok("/a/b../c", "/a/b../c");
}

#[test]
fn encoded_dot_segments_are_refused() {
    // Found by the path_normalize fuzz target: `/admin/%2e%2e/x` became `/x` and escaped a
    // deny on `/admin`, while servers that resolve before decoding (or route on the raw
    // path) serve it under `/admin`. An escaped dot segment is now refused.
    for p in [
        "/api/%2e%2e/admin",
        "/api/%2E./admin",
        "/api/.%2e/admin",
        "/api/%2e/admin",
        "/admin/%2e%2e",
        "/admin/%2E%2e/",
    ] {
        refused(p.as_bytes(), PathError::EncodedDotSegment);
    }
    ok("/a%2Eb/%2e%2e%2e/", "/a.b/.../");
    // Double-encoded dots are refused, not resolved.
    refused(b"/api/%252e%252e/admin", PathError::DoubleEncoding);
}

#[test]
fn repeated_slashes_are_merged() {
    ok("//admin", "/admin");
    ok("/a//b", "/a/b");
    ok("/a///b//", "/a/b/");
    ok("///", "/");
    ok("/a/.//b", "/a/b");
}

#[test]
fn slashes_with_dot_dot_are_ambiguous() {
    for p in ["/a//../b", "//../admin", "/a/.//../b", "/x//y/../z"] {
        refused(p.as_bytes(), PathError::AmbiguousDotSegments);
    }
    // A trailing empty segment is not ambiguous.
    ok("/a/../", "/");
}

#[test]
fn errors_have_tokens_and_messages() {
    assert_eq!(PathError::EncodedSeparator.as_str(), "encoded_separator");
    assert_eq!(
        PathError::InvalidUtf8.to_string(),
        "encoded bytes are not valid utf-8"
    );
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn tricky() -> impl Strategy<Value = Vec<u8>> {
        let atom = prop_oneof![
            Just(b"/".to_vec()),
            Just(b"//".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"%2e".to_vec()),
            Just(b"%2E".to_vec()),
            Just(b"%25".to_vec()),
            Just(b"%41".to_vec()),
            Just(b"%32".to_vec()),
            Just(b"%46".to_vec()),
            Just(b"%66".to_vec()),
            Just(b"F".to_vec()),
            Just(b"2".to_vec()),
            Just(b"%3b".to_vec()),
            Just(b"%3a".to_vec()),
            Just(b"%c3%a9".to_vec()),
            Just(b"%7e".to_vec()),
            Just(b"~".to_vec()),
            Just(b"admin".to_vec()),
            Just(b"a".to_vec()),
            Just(b"?".to_vec()),
            Just(b"#".to_vec()),
            Just(b";".to_vec()),
            Just(b"%".to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(atom, 0..16).prop_map(|parts| {
            std::iter::once(b"/".to_vec())
                .chain(parts)
                .flatten()
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn normalization_is_idempotent(raw in tricky()) {
            if let Ok(once) = normalize_path(&raw) {
                prop_assert_eq!(normalize_path(once.as_bytes()), Ok(once.clone()));
            }
        }

        #[test]
        fn normalized_paths_are_canonical(raw in tricky()) {
            if let Ok(p) = normalize_path(&raw) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(p.is_ascii());
                prop_assert!(!p.contains("//"), "{}", p);
                prop_assert!(!p.contains(['?', '#', ';', '\\']), "{}", p);
                for seg in p.split('/') {
                    prop_assert!(seg != "." && seg != "..", "{}", p);
                }
                // Kept escapes are uppercase and never stand for unreserved characters.
                let b = p.as_bytes();
                for (i, _) in p.match_indices('%') {
                    let h = &b[i + 1..i + 3];
                    prop_assert!(h.iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{}", p);
                    let v = u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap();
                    prop_assert!(!is_unreserved(v), "{}", p);
                }
            }
        }

        /// A server that decodes twice reads a normalized path the same as one decoding once.
        #[test]
        fn decoding_twice_changes_nothing(raw in tricky()) {
            if let Ok(p) = normalize_path(&raw) {
                let b = p.as_bytes();
                let mut once = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        once.push(hex(b[i + 1]).unwrap() << 4 | hex(b[i + 2]).unwrap());
                        i += 3;
                    } else {
                        once.push(b[i]);
                        i += 1;
                    }
                }
                let escapes = once.windows(3).any(|w| {
                    w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some()
                });
                prop_assert!(!escapes, "{} decodes to {:?}", p, String::from_utf8_lossy(&once));
            }
        }

        /// The fast path for already-normal paths answers exactly what decoding and
        /// resolving would.
        #[test]
        fn the_fast_path_agrees_with_the_full_one(raw in tricky()) {
            let end = raw.iter().position(|b| *b == b'?' || *b == b'#').unwrap_or(raw.len());
            let path = &raw[..end];
            if already_normal(path) {
                let full = decode(path).and_then(|d| resolve(&d));
                // Borrowed, not copied, and the same text.
                let fast = normalize_path(&raw);
                prop_assert!(matches!(fast, Ok(Cow::Borrowed(_))), "{:?}", fast);
                prop_assert_eq!(fast.map(Cow::into_owned), full);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = normalize_path(&raw);
        }
    }
}

#[test]
fn only_plain_paths_take_the_fast_path() {
    for p in ["/", "/a", "/a/b/", "/api/v1/reviews/123", "/a.b/..c/~x"] {
        assert!(already_normal(p.as_bytes()), "{p}");
    }
    for p in [
        "/a//b", "//", "/.", "/a/..", "/a/./b", "/%41", "/a;b", "/a\\b", "/a b", "/é",
    ] {
        assert!(!already_normal(p.as_bytes()), "{p}");
    }
}
