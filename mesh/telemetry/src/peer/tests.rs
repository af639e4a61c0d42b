use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn round_trips() {
    let m = PeerMetadata {
        workload: "web-v1".into(),
        namespace: "shop".into(),
        service: Some("web".into()),
        revision: Some("v1".into()),
        ..PeerMetadata::default()
    };
    assert_eq!(
        m.to_string(),
        "workload=web-v1;namespace=shop;service=web;revision=v1"
    );
    assert_eq!(PeerMetadata::parse(m.to_string().as_bytes()), Ok(m));
}

#[test]
fn app_version_and_cluster_round_trip() {
    let m = PeerMetadata {
        workload: "web-v1".into(),
        namespace: "shop".into(),
        app: Some("web".into()),
        version: Some("v1".into()),
        cluster: Some("east-1".into()),
        ..PeerMetadata::default()
    };
    assert_eq!(
        m.to_string(),
        "workload=web-v1;namespace=shop;app=web;version=v1;cluster=east-1"
    );
    assert_eq!(PeerMetadata::parse(m.to_string().as_bytes()), Ok(m));
    // Any order; each key once and checked like the others.
    let m = PeerMetadata::parse(b"cluster=c;version=2;app=a;namespace=n;workload=w").unwrap();
    assert_eq!(
        (m.app.as_deref(), m.version.as_deref(), m.cluster.as_deref()),
        (Some("a"), Some("2"), Some("c"))
    );
    assert_eq!(
        PeerMetadata::parse(b"workload=w;namespace=n;app=a;app=b"),
        Err(PeerMetadataError::DuplicateKey)
    );
    assert_eq!(
        PeerMetadata::parse(b"workload=w;namespace=n;cluster=a%3Bb"),
        Err(PeerMetadataError::BadValue)
    );
}

#[test]
fn optional_and_unknown_keys() {
    let m = PeerMetadata::parse(b"namespace=ns;future=x;workload=w").unwrap();
    assert_eq!((m.workload.as_str(), m.namespace.as_str()), ("w", "ns"));
    assert_eq!(m.service, None);
    assert_eq!((m.app, m.version, m.cluster), (None, None, None));
}

#[test]
fn rejects_bad_headers() {
    use PeerMetadataError::*;
    let long = format!("workload={};namespace=n", "a".repeat(2000));
    let cases: &[(&[u8], PeerMetadataError)] = &[
        (b"", Malformed),
        (b"workload", Malformed),
        (b"workload=a;workload=b;namespace=n", DuplicateKey),
        (b"workload=a b;namespace=n", BadValue),
        (b"workload=;namespace=n", BadValue),
        (b"workload=a;namespace=n;service=x=y", BadValue),
        (b"workload=a", MissingWorkloadOrNamespace),
        (&[0xff, 0xfe], Malformed),
        (long.as_bytes(), TooLong),
    ];
    for (raw, err) in cases {
        assert_eq!(
            PeerMetadata::parse(raw),
            Err(*err),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = PeerMetadata::parse(&bytes) {
                prop_assert!(valid_value(&m.workload) && valid_value(&m.namespace));
            }
        }
    }
}
