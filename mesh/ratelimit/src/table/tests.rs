use super::*;
use sdk_shim::testing::{FakeHost, FakeStore};
use sdk_shim::Versioned;
use std::cell::{Cell, RefCell};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const S: u64 = 1_000_000_000;

/// The keys of one test plugin's table.
fn keys() -> TableKeys {
    TableKeys::new(Namespace::from_identity(&[b"test"]))
}
const NOW: u64 = 1_700_000_000 * S;

fn limit(requests: u64, per_s: u64) -> Limit {
    Limit::new(requests, per_s * S, requests).unwrap()
}

fn seeded(max_keys: u32) -> FakeStore {
    let store = FakeStore::default();
    assert_eq!(seed(&store, &keys(), max_keys).unwrap(), max_keys);
    store
}

/// One request for fingerprint `fp` against 1 per minute in a 10-slot table, at `NOW`.
fn one_per_minute<S: SharedStore>(store: &S, fp: u64) -> Result<Acquired, Failure> {
    acquire(store, &keys(), &limit(1, 60), fp, 10, NOW)
}

fn admitted(r: Result<Acquired, Failure>) -> bool {
    matches!(r.unwrap().outcome, Outcome::Allow { .. })
}

fn entry(store: &FakeStore, slot: u32) -> Entry {
    Entry::decode(&store.get(keys().slot(slot).as_str()).unwrap()).unwrap()
}

#[test]
fn entries_are_16_bytes_and_round_trip() {
    let e = Entry {
        fingerprint: 0x0102_0304_0506_0708,
        tat: u64::MAX - 1,
    };
    assert_eq!(e.encode().len(), Entry::LEN);
    assert_eq!(Entry::decode(&e.encode()), Some(e));
    assert_eq!(Entry::decode(&[0u8; 15]), None);
    assert_eq!(Entry::decode(&[0u8; 17]), None);
}

#[test]
fn slot_keys_format_without_allocating() {
    let ns = Namespace::from_identity(&[b"test"]);
    let ns = ns.as_str();
    #[cfg(not(feature = "next-layout"))]
    assert_eq!(LAYOUT, "ratelimit.2/");
    assert_eq!(keys().slot(0).as_str(), format!("{ns}{LAYOUT}0"));
    assert_eq!(keys().slot(907).as_str(), format!("{ns}{LAYOUT}907"));
    assert_eq!(
        keys().slot(u32::MAX).as_str(),
        format!("{ns}{LAYOUT}4294967295")
    );
    assert_eq!(slot_of(1003, 1000), 3);
    assert_eq!(slot_of(5, 0), 0);
}

#[test]
fn seeding_creates_each_slot_once_and_never_clobbers() {
    let store = seeded(100);
    assert_eq!(store.len(), 101, "100 slots and the seeded marker");
    // A slot in use survives a later seeding of a bigger table.
    let fp = 7;
    assert!(admitted(acquire(
        &store,
        &keys(),
        &limit(1, 60),
        fp,
        100,
        NOW
    )));
    let before = entry(&store, 7);
    assert_eq!(
        seed(&store, &keys(), 100).unwrap(),
        0,
        "already seeded: nothing to do"
    );
    assert_eq!(
        seed(&store, &keys(), 150).unwrap(),
        50,
        "only the new slots"
    );
    assert_eq!(entry(&store, 7), before);
    assert_eq!(store.len(), 151);
    // A smaller table reuses the slots already there.
    assert_eq!(seed(&store, &keys(), 10).unwrap(), 0);
}

#[test]
fn an_unseeded_slot_is_a_failure_not_a_blind_write() {
    let store = FakeStore::default();
    assert_eq!(one_per_minute(&store, 1), Err(Failure::Unseeded));
    assert!(store.is_empty());
}

#[test]
fn a_key_admits_its_limit_then_is_refused() {
    let store = seeded(10);
    let l = limit(3, 60);
    let results: Vec<bool> = (0..5)
        .map(|_| admitted(acquire(&store, &keys(), &l, 42, 10, NOW)))
        .collect();
    assert_eq!(results, [true, true, true, false, false]);
    assert_eq!(entry(&store, 2).fingerprint, 42);
}

#[test]
fn an_idle_foreign_bucket_is_reclaimed() {
    let store = seeded(10);
    let l = limit(1, 60);
    // Keys 3 and 13 share slot 3.
    assert!(admitted(acquire(&store, &keys(), &l, 3, 10, NOW)));
    // 60s later key 3's bucket is full again: key 13 takes the slot, no collision.
    let a = acquire(&store, &keys(), &l, 13, 10, NOW + 60 * S).unwrap();
    assert!(!a.collision);
    assert!(matches!(a.outcome, Outcome::Allow { .. }));
    assert_eq!(entry(&store, 3).fingerprint, 13);
    // And key 3 is not harmed: the slot is busy with 13, so 3 shares it (a collision).
    let a = acquire(&store, &keys(), &l, 3, 10, NOW + 60 * S).unwrap();
    assert!(a.collision);
}

#[test]
fn a_busy_foreign_bucket_is_shared_and_counted() {
    let store = seeded(10);
    let l = limit(2, 60);
    assert!(admitted(acquire(&store, &keys(), &l, 3, 10, NOW)));
    let a = acquire(&store, &keys(), &l, 13, 10, NOW).unwrap();
    assert!(a.collision);
    assert!(matches!(a.outcome, Outcome::Allow { .. }));
    assert_eq!(entry(&store, 3).fingerprint, 3, "the owner keeps the slot");
    // Both keys together got the one bucket's 2, never more.
    let a = acquire(&store, &keys(), &l, 3, 10, NOW).unwrap();
    assert!(matches!(a.outcome, Outcome::Deny { .. }));
}

#[test]
fn a_corrupt_slot_is_taken_over_as_unused() {
    let store = seeded(10);
    store
        .shared_set(keys().slot(4).as_str(), b"garbage", None)
        .unwrap();
    assert!(admitted(one_per_minute(&store, 4)));
    assert_eq!(entry(&store, 4).fingerprint, 4);
}

#[test]
fn cas_conflicts_are_retried_and_counted() {
    let store = seeded(10);
    store.force_cas_conflicts(3);
    let a = one_per_minute(&store, 5).unwrap();
    assert_eq!(a.cas_retries, 3);
    assert!(matches!(a.outcome, Outcome::Allow { .. }));
}

#[test]
fn exhausted_retries_fail_without_admitting() {
    let store = seeded(10);
    let before = entry(&store, 5);
    store.force_cas_conflicts(MAX_CAS_RETRIES + 1);
    assert_eq!(
        one_per_minute(&store, 5),
        Err(Failure::CasExhausted {
            retries: MAX_CAS_RETRIES
        })
    );
    assert_eq!(entry(&store, 5), before, "nothing written");
    // The next request has the whole bucket: the failed one consumed nothing.
    assert!(admitted(one_per_minute(&store, 5)));
}

/// A store whose reads carry no version (what a CAS-less host would return).
struct NoVersions(FakeStore);

impl SharedStore for NoVersions {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        Ok(self.0.shared_get(key)?.map(|v| Versioned { cas: 0, ..v }))
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.0.shared_set(key, value, cas)
    }
}

#[test]
fn a_missing_version_is_never_used_as_an_unconditional_write() {
    let store = NoVersions(seeded(10));
    assert_eq!(one_per_minute(&store, 5), Err(Failure::NoVersion));
}

/// A store that lets a rival worker run a whole decision between our read and our write,
/// deterministically reproducing the race two Envoy workers can have.
type Rival<'a> = Box<dyn FnOnce(&FakeStore) + 'a>;

struct Racing<'a> {
    inner: FakeStore,
    rival: RefCell<Option<Rival<'a>>>,
    sets: Cell<u32>,
}

impl SharedStore for Racing<'_> {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.sets.set(self.sets.get() + 1);
        if let Some(rival) = self.rival.borrow_mut().take() {
            rival(&self.inner);
        }
        self.inner.shared_set(key, value, cas)
    }
}

#[test]
fn two_workers_racing_for_the_last_request_admit_it_once() {
    let inner = seeded(10);
    let l = limit(2, 3600);
    assert!(admitted(acquire(&inner, &keys(), &l, 9, 10, NOW)));
    let rival_result = RefCell::new(None);
    let store = Racing {
        inner: inner.clone(),
        rival: RefCell::new(Some(Box::new(|s: &FakeStore| {
            *rival_result.borrow_mut() = Some(acquire(s, &keys(), &l, 9, 10, NOW));
        }))),
        sets: Cell::new(0),
    };
    // We read "1 left", the rival takes it, our CAS fails, we re-read and are refused.
    let ours = acquire(&store, &keys(), &l, 9, 10, NOW).unwrap();
    let rival = rival_result.borrow_mut().take().unwrap().unwrap();
    assert!(matches!(rival.outcome, Outcome::Allow { .. }));
    assert!(matches!(ours.outcome, Outcome::Deny { .. }));
    assert_eq!(ours.cas_retries, 1);
    assert_eq!(store.sets.get(), 1);
}

// === the hash secret ===

fn host(store: &FakeStore, seed: u64) -> FakeHost {
    FakeHost::new().with_store(store).random_seed(seed)
}

#[test]
fn the_first_configuration_draws_the_secret_and_later_ones_read_it() {
    let store = FakeStore::default();
    let first = load_or_create_secret(&host(&store, 1), &keys()).unwrap();
    assert!(first.created);
    assert_eq!(
        store.get(&keys().secret()).unwrap(),
        first.key.to_bytes(),
        "16 bytes"
    );
    // Other workers and later configurations draw other bytes but keep the first secret.
    for seed in 2..6 {
        let later = load_or_create_secret(&host(&store, seed), &keys()).unwrap();
        assert_eq!(
            later,
            Secret {
                key: first.key,
                created: false
            }
        );
    }
    assert_eq!(store.len(), 1);
    // Another proxy (another store) gets its own.
    let elsewhere = load_or_create_secret(&host(&FakeStore::default(), 2), &keys()).unwrap();
    assert_ne!(elsewhere.key, first.key);
}

#[test]
fn a_malformed_secret_is_replaced() {
    let store = FakeStore::default();
    store
        .shared_set(&keys().secret(), b"not 16 bytes", None)
        .unwrap();
    let s = load_or_create_secret(&host(&store, 3), &keys()).unwrap();
    assert!(s.created);
    assert_eq!(store.get(&keys().secret()).unwrap(), s.key.to_bytes());
}

/// A store where a rival that also found the secret missing writes its own right after our
/// write, before our read-back.
struct RivalSecret {
    inner: FakeStore,
    rival: [u8; 16],
    raced: Cell<bool>,
}

impl SharedStore for RivalSecret {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.inner.shared_set(key, value, cas)?;
        if !self.raced.replace(true) {
            // The rival saw the key missing, so its write has no version to check: it lands.
            self.inner.shared_set(key, &self.rival, None)?;
        }
        Ok(())
    }
}

impl Random for RivalSecret {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        host(&self.inner, 1).fill_random(buf)
    }
}

#[test]
fn a_writer_uses_what_the_store_holds_after_its_write() {
    let store = RivalSecret {
        inner: FakeStore::default(),
        rival: [9; 16],
        raced: Cell::new(false),
    };
    let ours = load_or_create_secret(&store, &keys()).unwrap();
    assert!(!ours.created, "the rival's write came last");
    assert_eq!(ours.key, SipKey::from_bytes(&[9; 16]));
}

/// A host whose random source or store fails.
struct Broken {
    inner: FakeStore,
    random: bool,
    reads: bool,
}

impl SharedStore for Broken {
    fn shared_get(&self, key: &str) -> Result<Option<Versioned>, HostError> {
        if !self.reads {
            return Err(HostError::Internal);
        }
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.inner.shared_set(key, value, cas)
    }
}

impl Random for Broken {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        if !self.random {
            return Err(HostError::Unsupported);
        }
        host(&self.inner, 1).fill_random(buf)
    }
}

#[test]
fn without_randomness_or_a_store_there_is_no_secret() {
    let no_random = Broken {
        inner: FakeStore::default(),
        random: false,
        reads: true,
    };
    assert_eq!(
        load_or_create_secret(&no_random, &keys()),
        Err(HostError::Unsupported)
    );
    assert!(no_random.inner.is_empty(), "nothing guessable written");
    // An existing secret needs no randomness.
    let s = load_or_create_secret(&host(&no_random.inner, 1), &keys()).unwrap();
    assert_eq!(
        load_or_create_secret(&no_random, &keys()).unwrap().key,
        s.key
    );
    let no_reads = Broken {
        inner: FakeStore::default(),
        random: true,
        reads: false,
    };
    assert_eq!(
        load_or_create_secret(&no_reads, &keys()),
        Err(HostError::Internal)
    );
}
