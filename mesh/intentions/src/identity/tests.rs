use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TD: &str = "mesh.local";

fn peer(san: &str) -> Peer<'_> {
    Peer::from_certificate(PeerCertificate::UriSan(san.as_bytes()), TD)
}

#[test]
fn istio_and_consul_forms_authenticate() {
    let p = peer("spiffe://mesh.local/ns/team/sa/web");
    assert_eq!(p.service(), Some(ServiceRef::new("team", "web")));
    assert_eq!(p.to_string(), "spiffe://mesh.local/ns/team/sa/web");
    let c = peer("spiffe://mesh.local/ns/default/dc/dc1/svc/api");
    assert_eq!(c.service(), Some(ServiceRef::new("default", "api")));
    let ap = peer("spiffe://mesh.local/ap/default/ns/team/dc/dc1/svc/api");
    assert_eq!(ap.service(), Some(ServiceRef::new("team", "api")));
}

#[test]
fn no_certificate_is_anonymous() {
    assert_eq!(
        Peer::from_certificate(PeerCertificate::Absent, TD),
        Peer::Anonymous(Anonymous::NoCertificate)
    );
}

#[test]
fn certificate_without_uri_san_is_anonymous() {
    assert_eq!(
        Peer::from_certificate(PeerCertificate::NoUriSan, TD),
        Peer::Anonymous(Anonymous::NoUriSan)
    );
}

#[test]
fn without_a_san_the_log_line_reads_whether_a_certificate_came() {
    use sdk_shim::testing::FakeHost;
    let peer = Peer::from_peer_uri_san(None, TD);
    assert_eq!(peer, Peer::Anonymous(Anonymous::NoUriSanUnread));
    assert_eq!(peer.service(), None);
    let cases = [
        (
            FakeHost::new().property(&MTLS_PROPERTY, [1]),
            "anonymous(no_uri_san)",
        ),
        (
            FakeHost::new().property(&MTLS_PROPERTY, [0]),
            "anonymous(no_certificate)",
        ),
        (FakeHost::new(), "anonymous(no_certificate)"),
    ];
    for (host, want) in cases {
        assert_eq!(peer.resolved(&host).to_string(), want);
        assert_eq!(host.host_call_log(), ["property connection.mtls"]);
    }
    // A peer with a SAN needs no read, nor does one whose reason is known.
    let host = FakeHost::new();
    let web = Peer::from_peer_uri_san(Some(b"spiffe://mesh.local/ns/shop/sa/web"), TD);
    assert_eq!(
        web.resolved(&host).to_string(),
        "spiffe://mesh.local/ns/shop/sa/web"
    );
    let foreign = Peer::from_peer_uri_san(Some(b"spiffe://other/ns/shop/sa/web"), TD);
    assert_eq!(
        foreign.resolved(&host).to_string(),
        "anonymous(foreign_trust_domain)"
    );
    assert_eq!(host.host_calls(), 0);
}

#[test]
fn the_identity_borrows_the_san_it_was_read_from() {
    let san = String::from("spiffe://mesh.local/ns/team/sa/web");
    let Peer::Authenticated {
        uri,
        namespace,
        name,
    } = peer(&san)
    else {
        panic!("not authenticated");
    };
    // The same bytes, not a copy: the decision is made while the host lends them.
    assert!(std::ptr::eq(uri, san.as_str()));
    let within = san.as_bytes().as_ptr_range();
    for part in [namespace, name] {
        assert!(within.contains(&part.as_ptr()), "{part}");
    }
    assert_eq!((namespace, name), ("team", "web"));
}

#[test]
fn foreign_trust_domain_is_anonymous() {
    for san in [
        "spiffe://evil.local/ns/team/sa/web",
        "spiffe://mesh.local.evil/ns/team/sa/web",
        "spiffe://mesh.locaL/ns/team/sa/web",
    ] {
        assert!(matches!(peer(san), Peer::Anonymous(_)), "{san}");
    }
    assert_eq!(
        peer("spiffe://evil.local/ns/team/sa/web"),
        Peer::Anonymous(Anonymous::ForeignTrustDomain)
    );
}

#[test]
fn non_spiffe_sans_are_anonymous() {
    for san in [
        "https://mesh.local/ns/team/sa/web",
        "spiffe://mesh.local/ns/team/sa/web/extra",
        "spiffe://mesh.local/ns/team/sa/web?x",
        "spiffe://mesh.local/ns/team",
        "spiffe://mesh.local/ns/team/sa/web\u{0}",
        "spiffe://mesh.local/ns/team/sa/web,spiffe://mesh.local/ns/x/sa/y",
        "urn:spiffe:mesh.local",
    ] {
        assert_eq!(peer(san), Peer::Anonymous(Anonymous::NotSpiffe), "{san:?}");
    }
    assert_eq!(
        Peer::from_certificate(PeerCertificate::UriSan(&[0xff, 0xfe]), TD),
        Peer::Anonymous(Anonymous::NotSpiffe)
    );
}

#[test]
fn other_admin_partitions_are_anonymous() {
    assert_eq!(
        peer("spiffe://mesh.local/ap/p1/ns/team/dc/dc1/svc/web"),
        Peer::Anonymous(Anonymous::OtherPartition)
    );
}

#[test]
fn display_of_anonymous() {
    assert_eq!(
        Peer::Anonymous(Anonymous::NoCertificate).to_string(),
        "anonymous(no_certificate)"
    );
}
