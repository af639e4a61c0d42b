use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn round_trips_a_ticket() {
    let c = CookieCodec::new(None);
    for t in [0, 1, 0xdead_beef, u64::MAX] {
        let v = c.encode(t);
        assert_eq!(v.len(), 32);
        assert_eq!(c.decode(v.as_bytes()), Some(t));
        assert_eq!(c.decode(format!("\"{v}\"").as_bytes()), Some(t));
    }
}

#[test]
fn rejects_forged_and_garbage_values() {
    let c = CookieCodec::new(None);
    let good = c.encode(42);
    // Edited ticket, kept tag.
    let mut forged = good.clone().into_bytes();
    forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
    assert_eq!(c.decode(&forged), None);
    let upper = good.to_ascii_uppercase();
    for bad in [
        &b""[..],
        b"v2",
        b"\xff\xfe",
        upper.as_bytes(),
        &good.as_bytes()[..31],
        b"\"",
        b"\"\"",
    ] {
        assert_eq!(c.decode(bad), None, "{bad:?}");
    }
    let long = format!("{good}0");
    assert_eq!(c.decode(long.as_bytes()), None);
    assert_eq!(c.decode(&[b'a'; 100_000]), None);
}

#[test]
fn a_secret_changes_the_tag() {
    let open = CookieCodec::new(None);
    let a = CookieCodec::new(Some("s3cret"));
    let b = CookieCodec::new(Some("other"));
    let v = a.encode(7);
    assert_eq!(a.decode(v.as_bytes()), Some(7));
    assert_eq!(b.decode(v.as_bytes()), None);
    assert_eq!(open.decode(v.as_bytes()), None);
    assert_eq!(format!("{a:?}"), "CookieCodec");
}

#[test]
fn finds_cookie_values_in_a_header() {
    let h = b"a=1; canary=xyz;b=2 ;  canary = second ; novalue; =x; canary";
    let found: Vec<&[u8]> = cookie_values(h, b"canary").collect();
    assert_eq!(found, vec![&b"xyz"[..], b"second"]);
    assert_eq!(cookie_values(b"Canary=1", b"canary").count(), 0);
    assert_eq!(cookie_values(b"", b"canary").count(), 0);
    assert_eq!(
        cookie_values(b"canary=\xff\xfe", b"canary").next(),
        Some(&b"\xff\xfe"[..])
    );
}

#[test]
fn formats_set_cookie() {
    assert_eq!(
        set_cookie("c", "v", None, false),
        "c=v; Path=/; HttpOnly; SameSite=Lax"
    );
    assert_eq!(
        set_cookie("c", "v", Some(3600), true),
        "c=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure"
    );
}

#[test]
fn cookie_names_are_tokens() {
    assert!(valid_cookie_name("canary_id"));
    assert!(!valid_cookie_name(""));
    assert!(!valid_cookie_name("a b"));
    assert!(!valid_cookie_name("a=b"));
    assert!(!valid_cookie_name("a;b"));
}
