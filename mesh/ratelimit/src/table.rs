//! The bucket table in proxy-wasm shared data: a fixed number of slots, each holding the
//! fingerprint of the key that owns it and that key's GCRA theoretical arrival time.
//!
//! Shared data has no delete, so memory is bounded by the table, never by the number of keys
//! seen: a key lives in slot `fingerprint % max_keys`. When that slot belongs to another key:
//! - if the owner's bucket is idle (its TAT is not in the future, i.e. it is full again), the
//!   slot is reclaimed: the newcomer takes it over as an unused bucket. The old owner loses
//!   nothing, since a full bucket and an unused one admit the same requests;
//! - if the owner's bucket is busy, both keys share it (counted as a slot collision). Sharing
//!   only ever adds consumption to a bucket, so it can limit early but never over-admits.
//!
//! Each decision is one `get` and, when the request is admitted, one CAS `set` presenting the
//! version read. A CAS conflict (another worker wrote in between) re-reads and retries, at
//! most [`MAX_CAS_RETRIES`] times; a refused request writes nothing.
//!
//! Envoy treats a CAS of 0 as "write unconditionally" and creates a missing key whatever CAS
//! is given, so the request path never writes a slot it did not read: [`seed`] creates every
//! slot at configuration time, and a slot found missing or without a version later is a
//! store failure, not something to create on the fly. Envoy configures a plugin on its main
//! thread before any worker gets it, so seeding completes before the first request.
//!
//! Every key lives in the plugin's [`Namespace`] under [`LAYOUT`] (`<ns>/ratelimit.2/<slot>`,
//! `.../seeded`, `.../secret`): two plugins in one VM keep separate tables, and a module with
//! another layout never reads these entries as its own.
//!
//! Fingerprints are keyed by a 128-bit secret kept next to the table under [`SECRET`]
//! (see [`load_or_create_secret`]): the first configuration draws it from the host's random
//! source, every later one (other workers, reconfigurations) reads it, so all workers agree
//! on every key's slot and buckets survive a configuration update, while clients, who never
//! see it, cannot predict which keys share a slot.

use crate::gcra::{Limit, Outcome};
use crate::key::EMPTY_FINGERPRINT;
use mesh_core::hash::SipKey;
use sdk_shim::{HostError, Namespace, Random, SharedStore};

/// The table's layout: its name and version inside the plugin's namespace. Version 1 was the
/// un-namespaced `mesh.ratelimit/...`; change the version whenever the entries change.
#[cfg(not(feature = "next-layout"))]
pub const LAYOUT: &str = "ratelimit.2/";
/// Tests only (feature `next-layout`): the layout a future module with changed entries would
/// use, so that an e2e test can swap such a module in under the same `vm_id`.
#[cfg(feature = "next-layout")]
pub const LAYOUT: &str = "ratelimit.3/";
/// Key (after the layout) recording how many slots are already seeded.
pub const SEEDED: &str = "seeded";
/// Key (after the layout) of the table's hash secret (16 bytes).
pub const SECRET: &str = "secret";

/// The shared-data keys of one plugin's table.
#[derive(Debug, Clone, Copy)]
pub struct TableKeys {
    ns: Namespace,
    /// `<ns><LAYOUT>`, the start of every slot key: copied whole per request.
    prefix: SlotKey,
}
/// CAS conflicts tolerated per rule per request before giving up.
pub const MAX_CAS_RETRIES: u32 = 16;

/// One slot's value: owner fingerprint and theoretical arrival time, 16 bytes little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry {
    pub fingerprint: u64,
    pub tat: u64,
}

/// Room for a slot key: the namespace, the layout and ten digits.
const SLOT_KEY_BYTES: usize = 48;

/// A slot's shared-data key, formatted without allocating.
#[derive(Debug, Clone, Copy)]
pub struct SlotKey {
    buf: [u8; SLOT_KEY_BYTES],
    len: usize,
}

/// The table's hash secret, as one configuration found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    pub key: SipKey,
    /// This configuration generated it (the first one on this proxy).
    pub created: bool,
}

/// The outcome of one rule for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub outcome: Outcome,
    /// The slot belonged to another busy key and was shared.
    pub collision: bool,
    pub cas_retries: u32,
}

/// Why a bucket could not be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The host store failed.
    Store(HostError),
    /// The slot does not exist (seeding failed or was skipped).
    Unseeded,
    /// The store returned no version, so a CAS write would be unconditional.
    NoVersion,
    /// Every retry lost its CAS race.
    CasExhausted { retries: u32 },
}

// === impl Entry ===

impl Entry {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (fp, tat) = out.split_at_mut(8);
        fp.copy_from_slice(&self.fingerprint.to_le_bytes());
        tat.copy_from_slice(&self.tat.to_le_bytes());
        out
    }

    /// `None` for a value of the wrong size (not written by this module).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (fp, tat) = bytes.split_first_chunk::<8>()?;
        let tat: &[u8; 8] = tat.try_into().ok()?;
        Some(Self {
            fingerprint: u64::from_le_bytes(*fp),
            tat: u64::from_le_bytes(*tat),
        })
    }
}

// === impl TableKeys ===

impl TableKeys {
    pub fn new(ns: Namespace) -> Self {
        let mut prefix = SlotKey {
            buf: [0; SLOT_KEY_BYTES],
            len: 0,
        };
        prefix.push(ns.as_bytes());
        prefix.push(LAYOUT.as_bytes());
        Self { ns, prefix }
    }

    pub fn seeded(&self) -> String {
        self.ns.key(&format!("{LAYOUT}{SEEDED}"))
    }

    pub fn secret(&self) -> String {
        self.ns.key(&format!("{LAYOUT}{SECRET}"))
    }

    pub fn slot(&self, slot: u32) -> SlotKey {
        SlotKey::new(self, slot)
    }
}

// === impl SlotKey ===

impl SlotKey {
    fn new(keys: &TableKeys, slot: u32) -> Self {
        let mut key = keys.prefix;
        // The slot in decimal, written from the end.
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        let mut n = slot;
        while let Some(d) = start.checked_sub(1).and_then(|i| digits.get_mut(i)) {
            // `n % 10` is a single digit.
            *d = b'0' + (n % 10) as u8;
            start -= 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        key.push(digits.get(start..).unwrap_or_default());
        key
    }

    /// Appends what fits of `bytes`.
    fn push(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(SLOT_KEY_BYTES.saturating_sub(self.len));
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + take),
            bytes.get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
    }

    pub fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or(LAYOUT)
    }
}

/// The slot of a fingerprint in a table of `max_keys` slots.
pub fn slot_of(fingerprint: u64, max_keys: u32) -> u32 {
    u32::try_from(fingerprint % u64::from(max_keys.max(1))).unwrap_or(0)
}

/// Creates every missing slot of a `max_keys` table with an empty entry. Runs at
/// configuration time; skips the work when an earlier configuration seeded at least as many.
/// Returns how many slots it created.
pub fn seed<S: SharedStore>(store: &S, keys: &TableKeys, max_keys: u32) -> Result<u32, HostError> {
    let seeded = keys.seeded();
    if seeded_count(store, &seeded)?.is_some_and(|(n, _)| n >= max_keys) {
        return Ok(0);
    }
    let empty = Entry::default().encode();
    let mut created = 0;
    for slot in 0..max_keys {
        let key = keys.slot(slot);
        if store.shared_get(key.as_str())?.is_none() {
            store.shared_set(key.as_str(), &empty, None)?;
            created += 1;
        }
    }
    // Record the size; a lost race here only means a later configuration re-checks slots.
    for _ in 0..MAX_CAS_RETRIES {
        let current = seeded_count(store, &seeded)?;
        if current.is_some_and(|(n, _)| n >= max_keys) {
            break;
        }
        let cas = current.map(|(_, cas)| cas).filter(|c| *c != 0);
        match store.shared_set(&seeded, &u64::from(max_keys).to_le_bytes(), cas) {
            Err(HostError::CasMismatch) => continue,
            other => {
                other?;
                break;
            }
        }
    }
    Ok(created)
}

/// Reads the table's hash secret, generating it from the host's random source if there is
/// none yet. Runs at configuration time, like [`seed`] and for the same reason: a write can
/// only be guarded by CAS once the key exists, so the secret is created by the first
/// configuration (Envoy's main thread, before any worker), and every later configuration
/// reads it and never overwrites it. After writing, it reads the value back and uses what the
/// store holds, so of two writers the later one's secret is kept by both unless the earlier
/// one read back before the later one wrote (which needs two first configurations at once;
/// Envoy runs the main thread's alone). A value of the wrong size (not written by this
/// module) is replaced with a CAS on the version read, so racing replacements leave one
/// winner.
pub fn load_or_create_secret<H: SharedStore + Random>(
    host: &H,
    keys: &TableKeys,
) -> Result<Secret, HostError> {
    let secret_key = keys.secret();
    let mut written = None;
    for _ in 0..=MAX_CAS_RETRIES {
        let current = host.shared_get(&secret_key)?;
        if let Some(key) = current.as_ref().and_then(|v| decode_secret(&v.value)) {
            return Ok(Secret {
                key,
                created: written == Some(key),
            });
        }
        let mut bytes = [0u8; SipKey::LEN];
        host.fill_random(&mut bytes)?;
        let cas = current.map(|v| v.cas).filter(|c| *c != 0);
        match host.shared_set(&secret_key, &bytes, cas) {
            Ok(()) => written = Some(SipKey::from_bytes(&bytes)),
            Err(HostError::CasMismatch) => {}
            Err(e) => return Err(e),
        }
    }
    Err(HostError::CasMismatch)
}

fn decode_secret(value: &[u8]) -> Option<SipKey> {
    <&[u8; SipKey::LEN]>::try_from(value)
        .ok()
        .map(SipKey::from_bytes)
}

fn seeded_count<S: SharedStore>(store: &S, key: &str) -> Result<Option<(u32, u32)>, HostError> {
    Ok(store.shared_get(key)?.map(|v| {
        let n = v
            .value
            .first_chunk::<8>()
            .map(|b| u64::from_le_bytes(*b))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        (n, v.cas)
    }))
}

/// Decides one request for the key with `fingerprint` under `limit` at `now`, updating its
/// slot with CAS when the request is admitted.
pub fn acquire<S: SharedStore>(
    store: &S,
    keys: &TableKeys,
    limit: &Limit,
    fingerprint: u64,
    max_keys: u32,
    now: u64,
) -> Result<Acquired, Failure> {
    let key = keys.slot(slot_of(fingerprint, max_keys));
    let mut cas_retries = 0;
    loop {
        let current = store
            .shared_get(key.as_str())
            .map_err(Failure::Store)?
            .ok_or(Failure::Unseeded)?;
        if current.cas == 0 {
            return Err(Failure::NoVersion);
        }
        // A value of the wrong size is not ours to trust: take the slot over as unused.
        let entry = Entry::decode(&current.value).unwrap_or_default();
        let owned = entry.fingerprint == fingerprint;
        let reclaim = !owned && (entry.fingerprint == EMPTY_FINGERPRINT || entry.tat <= now);
        let (owner, tat, collision) = if owned {
            (fingerprint, entry.tat, false)
        } else if reclaim {
            (fingerprint, 0, false)
        } else {
            (entry.fingerprint, entry.tat, true)
        };
        let outcome = limit.check(tat, now);
        let Outcome::Allow { new_tat, .. } = outcome else {
            return Ok(Acquired {
                outcome,
                collision,
                cas_retries,
            });
        };
        let next = Entry {
            fingerprint: owner,
            tat: new_tat,
        };
        match store.shared_set(key.as_str(), &next.encode(), Some(current.cas)) {
            Ok(()) => {
                return Ok(Acquired {
                    outcome,
                    collision,
                    cas_retries,
                })
            }
            Err(HostError::CasMismatch) if cas_retries < MAX_CAS_RETRIES => cas_retries += 1,
            Err(HostError::CasMismatch) => {
                return Err(Failure::CasExhausted {
                    retries: cas_retries,
                })
            }
            Err(e) => return Err(Failure::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests;
