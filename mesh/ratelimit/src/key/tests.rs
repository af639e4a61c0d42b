use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECRET: SipKey = SipKey::new(0x0123_4567_89ab_cdef, 0x0f1e_2d3c_4b5a_6978);

fn fp(addr: &str) -> u64 {
    PeerAddress::parse(addr.as_bytes())
        .unwrap()
        .hash_into(Fingerprint::for_rule(SECRET, "r"))
        .finish()
}

fn header(secret: SipKey, rule: &str, value: &[u8]) -> u64 {
    Fingerprint::for_rule(secret, rule)
        .byte(b'h')
        .bytes(value)
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
fn rules_keep_equal_keys_apart_and_fingerprints_are_stable_under_one_secret() {
    let a = header(SECRET, "a", b"k");
    assert_ne!(a, header(SECRET, "b", b"k"));
    assert_eq!(a, header(SECRET, "a", b"k"));
    // A prepared rule state can be reused for any number of keys.
    let prepared = Fingerprint::for_rule(SECRET, "a").byte(b'h');
    assert_eq!(prepared.bytes(b"k").finish(), a);
    assert_eq!(prepared.bytes(b"k").finish(), a);
    // Pinned: workers (and 32-bit wasm) must agree on the slot of every key.
    assert_eq!(header(SECRET, "api", b"key-1"), PINNED);
    assert_ne!(
        Fingerprint::for_rule(SECRET, "").finish(),
        EMPTY_FINGERPRINT
    );
}

const PINNED: u64 = 10_904_215_153_500_123_084;

#[test]
fn different_secrets_give_unrelated_fingerprints() {
    let other = SipKey::new(0x0123_4567_89ab_cdef, 0x0f1e_2d3c_4b5a_6979);
    let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("key-{i}").into_bytes()).collect();
    for k in &keys {
        assert_ne!(header(SECRET, "api", k), header(other, "api", k));
    }
    // Slots under one secret say nothing about slots under another: of 64 keys in a
    // 16-slot table, the ones that share a slot with `key-0` mostly part ways.
    let slot = |s: SipKey, k: &[u8]| header(s, "api", k) % 16;
    let mates: Vec<&Vec<u8>> = keys[1..]
        .iter()
        .filter(|k| slot(SECRET, k) == slot(SECRET, &keys[0]))
        .collect();
    assert!(!mates.is_empty());
    let still = mates
        .iter()
        .filter(|k| slot(other, k) == slot(other, &keys[0]))
        .count();
    assert!(
        still < mates.len(),
        "{still} of {} still together",
        mates.len()
    );
}

#[test]
fn huge_keys_hash_without_trouble() {
    let huge = vec![0xa5u8; 1 << 20];
    let a = header(SECRET, "api", &huge);
    assert_eq!(a, header(SECRET, "api", &huge));
    assert_ne!(a, header(SECRET, "api", &huge[1..]));
}
