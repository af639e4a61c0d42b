//! Small parsers of client- or peer-supplied values, each checked by a round trip.

use crate::Input;
use mesh_canary::cookie::{cookie_values, CookieCodec};
use mesh_canary::host::{authority_host, HostPattern};
use mesh_core::SpiffeId;
use mesh_intentions::Peer;
use mesh_telemetry::peer::PeerMetadata;
use mesh_telemetry::trace::{self, TraceParent, TRACEPARENT_LEN};
use sdk_shim::batch::decode_list;

/// SPIFFE IDs: a parsed ID prints back to exactly its input (the parser accepts one spelling
/// per identity), and the intentions' peer agrees with the parser.
pub fn spiffe(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match SpiffeId::parse(&text) {
        Ok(id) => {
            assert_eq!(id.to_string(), text, "does not print back");
            assert!(id.trust_domain.bytes().all(|b| !b.is_ascii_uppercase()));
            let peer = Peer::from_uri_san(&text, &id.trust_domain);
            assert!(
                peer.service().is_some()
                    || matches!(
                        id.kind,
                        mesh_core::SpiffeKind::Consul { partition: Some(ref p), .. } if p != "default"
                    )
            );
        }
        Err(_) => {
            let peer = Peer::from_uri_san(&text, "mesh.local");
            assert!(peer.service().is_none(), "a refused ID authenticated");
        }
    }
}

/// Cookies: every value found for a name comes from a `name=value` pair of the header, has
/// no `;` and no surrounding blanks; the sticky codec accepts exactly what it issued.
pub fn cookie(data: &[u8]) {
    let mut input = Input::new(data);
    let name = input.field();
    let header = input.field();
    let secret = input.text();
    for v in cookie_values(header, name) {
        assert!(!v.contains(&b';'));
        assert!(!v.starts_with(b" ") && !v.ends_with(b" "));
        assert!(!v.starts_with(b"\t") && !v.ends_with(b"\t"));
    }
    let codecs = [CookieCodec::new(None), CookieCodec::new(Some(&secret))];
    for codec in &codecs {
        if let Some(ticket) = codec.decode(header) {
            let issued = codec.encode(ticket);
            let bare = header
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(header);
            assert_eq!(bare, issued.as_bytes(), "accepted a value it did not issue");
        }
        let ticket = u64::from_le_bytes(
            header
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8]),
        );
        let issued = codec.encode(ticket);
        assert_eq!(codec.decode(issued.as_bytes()), Some(ticket));
        assert_eq!(
            codec.decode(format!("\"{issued}\"").as_bytes()),
            Some(ticket)
        );
    }
}

/// `traceparent`: a parsed value prints back to the bytes it came from (all of them for
/// version 00, the first 55 for a later version), and `decide` keeps exactly the valid ones.
pub fn traceparent(data: &[u8]) {
    match TraceParent::parse(data) {
        Ok(tp) => {
            let printed = tp.to_string();
            assert_eq!(printed.as_bytes(), &data[..TRACEPARENT_LEN]);
            if tp.version == 0 {
                assert_eq!(printed.as_bytes(), data, "version 00 has trailing bytes");
            }
            assert_eq!(TraceParent::parse(printed.as_bytes()), Ok(tp));
            assert_eq!(tp.trace_id_hex(), printed[3..35]);
            assert_eq!(
                trace::decide(Some(data), false, false, |_| false),
                trace::TraceOutcome::Kept(tp)
            );
        }
        Err(_) => {
            let out = trace::decide(Some(data), true, true, |b| {
                b.fill(0x5a);
                true
            });
            let trace::TraceOutcome::Replaced(fresh) = out else {
                panic!("an invalid traceparent was not replaced: {out:?}");
            };
            let text = fresh.to_string();
            assert_eq!(TraceParent::parse(text.as_bytes()), Ok(fresh));
        }
    }
}

/// Peer metadata: an accepted header prints back to one that parses to the same metadata.
pub fn peer_metadata(data: &[u8]) {
    if let Ok(m) = PeerMetadata::parse(data) {
        let printed = m.to_string();
        assert_eq!(PeerMetadata::parse(printed.as_bytes()), Ok(m));
    }
}

/// `:authority` hosts and canary host patterns: the host is a non-empty part of the
/// authority, and a pattern built from a host matches it.
pub fn authority(data: &[u8]) {
    let mut input = Input::new(data);
    let authority = input.field();
    let spec = input.text();
    if let Some(host) = authority_host(authority) {
        assert!(!host.is_empty());
        assert!(
            authority.starts_with(host),
            "{host:?} is not a prefix of {authority:?}"
        );
        // A host still ending in `.` had two (an empty label): no pattern names it.
        let text = std::str::from_utf8(host).ok().filter(|t| !t.ends_with('.'));
        if let Some(text) = text {
            if let Ok(p) = HostPattern::parse(text) {
                assert!(p.matches(host), "{text:?} does not match itself");
                assert!(p.matches(text.to_ascii_uppercase().as_bytes()));
            }
        }
    }
    if let Ok(p) = HostPattern::parse(&spec) {
        let _ = p.matches(authority);
    }
}

/// Serializes pairs the way Envoy does (count, lengths, then each half NUL-terminated).
pub fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The proxy-wasm pair list sdk-shim decodes (batched property reads): what Envoy encodes
/// decodes back to its elements; arbitrary bytes decode to `expected` elements or to nothing,
/// and a decoded list re-encodes to the same length.
pub fn header_pairs(data: &[u8]) {
    let mut input = Input::new(data);
    let expected = usize::from(input.byte() % 8);
    let raw = input.field();
    if let Some(list) = decode_list(raw, expected) {
        assert_eq!(list.len(), expected);
        let keys_len: usize = list.iter().map(Vec::len).sum();
        assert!(4 + 8 * expected + keys_len + 2 * expected <= raw.len());
    }
    let mut pairs = Vec::new();
    while !input.is_empty() && pairs.len() < 16 {
        pairs.push((input.field(), input.field()));
    }
    let encoded = encode_pairs(&pairs);
    let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.to_vec()).collect();
    assert_eq!(decode_list(&encoded, pairs.len()), Some(keys));
    if !pairs.is_empty() {
        assert_eq!(decode_list(&encoded, pairs.len() - 1), None);
        assert_eq!(
            decode_list(&encoded[..encoded.len() - 1], pairs.len()),
            None
        );
    }
}
