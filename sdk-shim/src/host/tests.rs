use super::*;
use crate::compose::{PassHost, PassState};
use crate::testing::FakeHost;

const SAN: &str = "spiffe://mesh.local/ns/default/sa/web";

fn owned(cert: PeerCertificate<'_>) -> (bool, Option<Vec<u8>>) {
    (cert.mtls(), cert.uri_san().map(<[u8]>::to_vec))
}

fn read(host: &FakeHost) -> (bool, Option<Vec<u8>>) {
    host.peer_certificate_with(owned).unwrap()
}

#[test]
fn a_uri_san_is_one_read_and_means_mtls() {
    let host = FakeHost::new()
        .property(&MTLS_PROPERTY, [1])
        .property(&PEER_URI_SAN_PROPERTY, SAN);
    assert_eq!(read(&host), (true, Some(SAN.as_bytes().to_vec())));
    assert_eq!(
        host.host_call_log(),
        ["property connection.uri_san_peer_certificate"]
    );
}

#[test]
fn without_a_uri_san_the_flag_tells_a_certificate_from_none() {
    let no_san = FakeHost::new().property(&MTLS_PROPERTY, [1]);
    assert_eq!(read(&no_san), (true, None));
    assert_eq!(
        no_san.host_call_log(),
        [
            "property connection.uri_san_peer_certificate",
            "property connection.mtls"
        ]
    );
    // An empty SAN names nobody either.
    let empty = FakeHost::new()
        .property(&MTLS_PROPERTY, [1])
        .property(&PEER_URI_SAN_PROPERTY, "");
    assert_eq!(read(&empty), (true, None));
    // Only Envoy's one-byte true is a certificate.
    for flag in [&[0u8][..], &[], &[2], b"true"] {
        let host = FakeHost::new().property(&MTLS_PROPERTY, flag);
        assert_eq!(read(&host), (false, None), "{flag:?}");
    }
    assert_eq!(read(&FakeHost::new()), (false, None));
}

/// A host whose reads of one property fail.
struct Failing(FakeHost, &'static [&'static str], HostError);

impl Properties for Failing {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        if path == self.1 {
            return Err(self.2);
        }
        Properties::property(&self.0, path)
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.0.set_property(path, value)
    }
}

#[test]
fn a_failed_read_is_an_error_and_a_missing_one_is_absence() {
    let mtls = || FakeHost::new().property(&MTLS_PROPERTY, [1]);
    let failing = Failing(mtls(), &PEER_URI_SAN_PROPERTY, HostError::Internal);
    assert_eq!(
        failing.peer_certificate_with(owned),
        Err(HostError::Internal)
    );
    let failing = Failing(FakeHost::new(), &MTLS_PROPERTY, HostError::BadArgument);
    assert_eq!(
        failing.peer_certificate_with(owned),
        Err(HostError::BadArgument)
    );
    let missing = Failing(mtls(), &PEER_URI_SAN_PROPERTY, HostError::NotFound);
    assert_eq!(missing.peer_certificate_with(owned), Ok((true, None)));
    let missing = Failing(FakeHost::new(), &MTLS_PROPERTY, HostError::NotFound);
    assert_eq!(missing.peer_certificate_with(owned), Ok((false, None)));
}

#[test]
fn a_pass_reads_the_certificate_once_for_every_filter() {
    for host in connections() {
        let state = PassState::new(&[]);
        let pass = PassHost::new(&host, &state, false);
        let first = pass.peer_certificate_with(owned).unwrap();
        let calls = host.host_calls();
        assert_eq!(pass.peer_certificate_with(owned).unwrap(), first);
        let san = pass.peer_uri_san_with(|s| s.map(<[u8]>::to_vec)).unwrap();
        assert_eq!(san, first.1);
        assert_eq!(host.host_calls(), calls, "{:?}", host.host_call_log());
    }
}

/// The connections Envoy can report: a SAN only ever comes with the flag.
fn connections() -> [FakeHost; 4] {
    [
        FakeHost::new(),
        FakeHost::new().property(&MTLS_PROPERTY, [0]),
        FakeHost::new().property(&MTLS_PROPERTY, [1]),
        FakeHost::new()
            .property(&MTLS_PROPERTY, [1])
            .property(&PEER_URI_SAN_PROPERTY, SAN),
    ]
}

#[test]
fn an_identity_is_the_san_alone_in_one_read() {
    let [none, plain, no_san, san] = connections();
    for (host, want) in [
        (none, None),
        (plain, None),
        (no_san, None),
        (san, Some(SAN.as_bytes().to_vec())),
    ] {
        let got = host.peer_uri_san_with(|s| s.map(<[u8]>::to_vec)).unwrap();
        assert_eq!(got, want);
        assert_eq!(
            host.host_call_log(),
            ["property connection.uri_san_peer_certificate"]
        );
    }
    // An empty SAN names nobody; a missing property is none; a failure is returned.
    let empty = FakeHost::new().property(&PEER_URI_SAN_PROPERTY, "");
    assert_eq!(empty.peer_uri_san_with(|s| s.is_none()), Ok(true));
    let missing = Failing(FakeHost::new(), &PEER_URI_SAN_PROPERTY, HostError::NotFound);
    assert_eq!(missing.peer_uri_san_with(|s| s.is_none()), Ok(true));
    let failing = Failing(FakeHost::new(), &PEER_URI_SAN_PROPERTY, HostError::Internal);
    assert_eq!(
        failing.peer_uri_san_with(|s| s.is_none()),
        Err(HostError::Internal)
    );
}
