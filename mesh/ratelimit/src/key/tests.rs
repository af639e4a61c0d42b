use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn fp(addr: &str) -> u64 {
    PeerAddress::parse(addr.as_bytes())
        .unwrap()
        .hash_into(Fingerprint::for_rule("r"))
        .finish()
}

#[test]
fn addresses_lose_their_port() {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    assert_eq!(
        PeerAddress::parse(b"10.1.2.3:5555"),
        Some(PeerAddress::Ip(v4))
    );
    assert_eq!(PeerAddress::parse(b"10.1.2.3"), Some(PeerAddress::Ip(v4)));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(
        PeerAddress::parse(b"[::1]:40000"),
        Some(PeerAddress::Ip(v6))
    );
    assert_eq!(PeerAddress::parse(b"[::1]"), Some(PeerAddress::Ip(v6)));
    assert_eq!(PeerAddress::parse(b"::1"), Some(PeerAddress::Ip(v6)));
    assert_eq!(fp("10.1.2.3:1"), fp("10.1.2.3:2"));
    assert_eq!(fp("[2001:db8::7]:1"), fp("[2001:db8:0::7]:9"));
    assert_ne!(fp("10.1.2.3:1"), fp("10.1.2.4:1"));
}

#[test]
fn ipv4_mapped_ipv6_is_the_ipv4_client() {
    assert_eq!(fp("[::ffff:10.1.2.3]:80"), fp("10.1.2.3:81"));
}

#[test]
fn odd_addresses_are_kept_whole_and_never_panic() {
    let raw: &[&[u8]] = &[
        b"/var/run/envoy.sock",
        b"@abstract",
        b"[::1",
        b"fe80::1%eth0",
        b"[zz]:1",
        b":::::",
        b"\xff\xfe:80",
    ];
    for r in raw {
        assert!(PeerAddress::parse(r).is_some());
    }
    assert_eq!(PeerAddress::parse(b""), None);
    assert_eq!(
        PeerAddress::parse(b"/var/run/envoy.sock"),
        Some(PeerAddress::Other(b"/var/run/envoy.sock"))
    );
}

#[test]
fn principals_must_be_spiffe_ids() {
    let id = b"spiffe://cluster.local/ns/default/sa/web";
    assert_eq!(principal(id), Some(id.as_slice()));
    assert_eq!(principal(b"spiffe://"), None);
    assert_eq!(principal(b"https://example.com"), None);
    assert_eq!(principal(b""), None);
}

#[test]
fn rules_keep_equal_keys_apart_and_fingerprints_are_stable() {
    let a = Fingerprint::for_rule("a").bytes(b"k").finish();
    let b = Fingerprint::for_rule("b").bytes(b"k").finish();
    assert_ne!(a, b);
    assert_eq!(a, Fingerprint::for_rule("a").bytes(b"k").finish());
    // Pinned: workers (and 32-bit wasm) must agree on the slot of every key.
    assert_eq!(
        Fingerprint::for_rule("api")
            .byte(b'h')
            .bytes(b"key-1")
            .finish(),
        PINNED
    );
    assert_ne!(Fingerprint::for_rule("").finish(), EMPTY_FINGERPRINT);
}

const PINNED: u64 = 14_908_386_014_606_783_729;
