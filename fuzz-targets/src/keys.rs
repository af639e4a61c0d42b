//! Rate-limit key handling (mesh-ratelimit): peer addresses, `x-forwarded-for` walks,
//! principals, fingerprints, GCRA decisions and the shared table's slots, which hold whatever
//! bytes another writer left there.

use crate::Input;
use mesh_core::SipKey;
use mesh_ratelimit::gcra::{Limit, Outcome};
use mesh_ratelimit::key::{client_behind, principal, Fingerprint, PeerAddress};
use mesh_ratelimit::table::{self, Entry, TableKeys};
use sdk_shim::testing::FakeStore;
use sdk_shim::{Namespace, SharedStore};

pub fn ratelimit_key(data: &[u8]) {
    let mut input = Input::new(data);
    let peer = input.field();
    let hops = input.byte();
    let xff: Vec<Vec<u8>> = (0..input.byte() % 8)
        .map(|_| input.field().to_vec())
        .collect();

    // A peer address: `None` only when empty; an IP reads back the same from its text.
    match PeerAddress::parse(peer) {
        None => assert!(peer.is_empty()),
        Some(PeerAddress::Ip(ip)) => {
            let text = ip.to_string();
            assert_eq!(
                PeerAddress::parse(text.as_bytes()),
                Some(PeerAddress::Ip(ip)),
                "{peer:?}"
            );
        }
        Some(PeerAddress::Other(raw)) => assert_eq!(raw, peer),
    }

    // The client behind trusted hops is the peer or one trimmed element of the chain.
    let client = client_behind(peer, &xff, hops);
    if hops == 0 {
        assert_eq!(client, peer);
    } else {
        let is_entry = xff
            .iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|e| e.trim_ascii() == client);
        assert!(client == peer || is_entry, "{client:?} came from nowhere");
    }

    if let Some(p) = principal(peer) {
        assert!(p.starts_with(b"spiffe://") && p.len() > 9);
    }

    // Fingerprints are deterministic and never the empty-slot marker.
    let secret = SipKey::from_bytes(&[7; SipKey::LEN]);
    let fp = |v: &[u8]| {
        Fingerprint::for_rule(secret, "rule")
            .byte(b'h')
            .bytes(v)
            .finish()
    };
    let f = fp(peer);
    assert_eq!(f, fp(peer));
    assert_ne!(f, mesh_ratelimit::key::EMPTY_FINGERPRINT);

    // A GCRA decision keeps its promises for any limit and state.
    let (requests, per, burst) = (input.u64() % 10_000, input.u64(), input.u64() % 10_000);
    let (tat, now) = (input.u64(), input.u64());
    let Some(limit) = Limit::new(requests, per, burst) else {
        return;
    };
    match limit.check(tat, now) {
        Outcome::Allow {
            new_tat, remaining, ..
        } => {
            assert!(new_tat >= now);
            assert!(new_tat - now <= limit.tolerance_ns());
            assert!(remaining <= limit.burst());
        }
        Outcome::Deny { retry_in_ns } => assert!(retry_in_ns > 0),
    }

    // One acquisition against a slot holding arbitrary bytes.
    let store = FakeStore::default();
    let keys = TableKeys::new(Namespace::from_identity(&[b"fuzz"]));
    let max_keys = u32::from(input.byte() % 4) + 1;
    table::seed(&store, &keys, max_keys).expect("seeding a fake store");
    let stored = input.field();
    let slot = keys.slot(table::slot_of(f, max_keys));
    store
        .shared_set(slot.as_str(), stored, None)
        .expect("writing a fake store");
    let before = store.get(slot.as_str());
    let got = table::acquire(&store, &keys, &limit, f, max_keys, now).expect("a healthy store");
    let after = store.get(slot.as_str());
    match got.outcome {
        Outcome::Allow { new_tat, .. } => {
            let entry = Entry::decode(&after.unwrap_or_default()).expect("a written entry");
            assert_eq!(entry.tat, new_tat);
            if !got.collision {
                assert_eq!(entry.fingerprint, f);
            }
        }
        Outcome::Deny { .. } => assert_eq!(before, after, "a denial wrote the slot"),
    }
}
