use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn parses_istio_form() {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/frontend").unwrap();
    assert_eq!(id.trust_domain, "cluster.local");
    assert_eq!(id.namespace, "default");
    assert_eq!(id.name, "frontend");
    assert_eq!(id.kind, SpiffeKind::Istio);
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/frontend"
    );
}

#[test]
fn parses_consul_forms() {
    let id = SpiffeId::parse("spiffe://abc.consul/ns/team/dc/dc1/svc/web").unwrap();
    assert_eq!((id.namespace.as_str(), id.name.as_str()), ("team", "web"));
    assert_eq!(
        id.kind,
        SpiffeKind::Consul {
            datacenter: "dc1".into(),
            partition: None
        }
    );
    let ap = SpiffeId::parse("spiffe://abc.consul/ap/p1/ns/team/dc/dc1/svc/web").unwrap();
    assert_eq!(
        ap.to_string(),
        "spiffe://abc.consul/ap/p1/ns/team/dc/dc1/svc/web"
    );
}

#[test]
fn rejects_lookalikes() {
    for bad in [
        "",
        "http://td/ns/a/sa/b",
        "SPIFFE://td/ns/a/sa/b",
        "spiffe://TD/ns/a/sa/b",
        "spiffe://td:443/ns/a/sa/b",
        "spiffe://user@td/ns/a/sa/b",
        "spiffe://td/ns/a/sa/b/",
        "spiffe://td/ns/a/sa/b?x=1",
        "spiffe://td/ns/a/sa/b#f",
        "spiffe://td/ns//sa/b",
        "spiffe://td/ns/../sa/b",
        "spiffe://td/ns/a%2Fb/sa/c",
        "spiffe://td/ns/a/sa",
        "spiffe://td/ns/a/svc/b",
        "spiffe://td",
        "spiffe:///ns/a/sa/b",
        "spiffe://td/ns/a/sa/b\u{0}",
        "spiffe://td/ns/a/sa/bé",
    ] {
        assert!(SpiffeId::parse(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(
        SpiffeId::parse(&"spiffe://a/".repeat(300)),
        Err(SpiffeError::TooLong)
    );
}
