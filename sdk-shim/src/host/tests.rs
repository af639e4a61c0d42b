use super::*;
use crate::compose::{PassHost, PassState};
use crate::testing::FakeHost;
use std::sync::Arc;

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
    // Whatever the hint says first: the first reader records what it read, and the next
    // reader's order asks the pass for values it already holds.
    for flag_first in [false, true] {
        for host in connections() {
            let hint = Arc::new(PeerHint::new());
            if flag_first {
                read(&FakeHost::new().with_peer_hint(&hint));
            }
            let host = host.with_peer_hint(&hint);
            let state = PassState::new(&[]);
            let pass = PassHost::new(&host, &state, false);
            let first = pass.peer_certificate_with(owned).unwrap();
            let calls = host.host_calls();
            assert_eq!(pass.peer_certificate_with(owned).unwrap(), first);
            assert_eq!(host.host_calls(), calls, "{:?}", host.host_call_log());
        }
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
fn the_hint_changes_the_reads_never_the_answer() {
    for before in 0..4 {
        for now in 0..4 {
            let hint = Arc::new(PeerHint::new());
            let [a, b, c, d] = connections();
            let hosts = [a, b, c, d].map(|h| h.with_peer_hint(&hint));
            let (Some(prev), Some(cur)) = (hosts.get(before), hosts.get(now)) else {
                unreachable!()
            };
            read(prev);
            let plain = connections();
            assert_eq!(read(cur), read(&plain[now]), "{before} then {now}");
        }
    }
}

#[test]
fn a_listener_of_one_kind_reads_once_per_request() {
    let hint = Arc::new(PeerHint::new());
    let reads = |host: FakeHost| {
        let host = host.with_peer_hint(&hint);
        read(&host);
        host.host_call_log()
    };
    let plaintext = || FakeHost::new().property(&MTLS_PROPERTY, [0]);
    let mtls = || {
        FakeHost::new()
            .property(&MTLS_PROPERTY, [1])
            .property(&PEER_URI_SAN_PROPERTY, SAN)
    };
    // A fresh VM expects a mesh peer.
    assert_eq!(
        reads(mtls()),
        ["property connection.uri_san_peer_certificate"]
    );
    assert_eq!(
        reads(mtls()),
        ["property connection.uri_san_peer_certificate"]
    );
    // The first plaintext request learns that the SAN read finds nothing...
    assert_eq!(
        reads(plaintext()),
        [
            "property connection.uri_san_peer_certificate",
            "property connection.mtls"
        ]
    );
    // ...so the next ones read the flag alone.
    assert_eq!(reads(plaintext()), ["property connection.mtls"]);
    assert_eq!(reads(plaintext()), ["property connection.mtls"]);
    // Back to mTLS: the flag, then the SAN, then the SAN alone again.
    assert_eq!(
        reads(mtls()),
        [
            "property connection.mtls",
            "property connection.uri_san_peer_certificate"
        ]
    );
    assert_eq!(
        reads(mtls()),
        ["property connection.uri_san_peer_certificate"]
    );
}
