//! The rollback guard: counts the guarded subset's responses and failures per window in the
//! shared store, shared by every worker, and trips once the error rate is too high.
//!
//! Layout: one fixed key per plugin, guarded service and rollback policy,
//! `<namespace>canary.2/guard.<fingerprint>` (see [`guard_key`]; version 1 was the
//! un-namespaced `mesh.canary.guard.<fingerprint>`), holding a [`GuardRecord`] of 34
//! bytes. Every update is a read then a compare-and-swap write, retried a bounded number of
//! times, so counts from all workers add up exactly. Since shared data has no delete and a
//! CAS against a missing key writes unconditionally, the key is seeded when the configuration
//! is applied ([`arm`]), before requests race on it; a request that still finds it missing
//! seeds it itself.
//!
//! Windows are tumbling: the first response after a window ends starts the next one. Once
//! tripped, the record stays tripped for the life of the Envoy process: a configuration that
//! keeps the service's host, guarded subset and rollback policy (new weights, overrides or
//! sticky settings, a listener rebuilt by an unrelated update) finds its record, counts and
//! tripped flag included, and keeps the canary out; a changed policy or guarded subset has a
//! new fingerprint, hence a fresh key. Shared data lives as long as the process, so a restart
//! re-arms.

use sdk_shim::{HostError, Namespace, SharedStore};

/// The guards' layout inside the plugin's namespace.
pub const LAYOUT: &str = "canary.2/";

/// Compare-and-swap attempts before an update is given up.
pub const MAX_CAS_ATTEMPTS: u32 = 8;

const RECORD_VERSION: u8 = 1;
const RECORD_LEN: usize = 34;
const PPB: u128 = 1_000_000_000;

/// The key of a guarded service's record in plugin namespace `ns`; `fingerprint` identifies
/// its configuration.
pub fn guard_key(ns: &Namespace, fingerprint: u64) -> String {
    ns.key(&format!("{LAYOUT}guard.{fingerprint:016x}"))
}

/// When the guard trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardPolicy {
    /// Error rate in parts per billion; trips when strictly above.
    pub max_error_ppb: u64,
    /// Responses needed in the window before the rate counts.
    pub min_requests: u64,
    pub window_nanos: u64,
}

/// The shared state of one guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardRecord {
    pub tripped: bool,
    /// When the configuration was applied (by the first worker).
    pub armed_at: u64,
    /// Start of the current window; 0 before the first response.
    pub window_start: u64,
    pub requests: u64,
    pub failures: u64,
}

/// What counting one response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Counted,
    /// This response tripped the guard (exactly one caller across workers sees this).
    Tripped,
    /// The guard had already tripped; nothing counted.
    AlreadyTripped,
    /// Every CAS attempt lost a race; the response was not counted.
    Contended,
}

// === impl GuardRecord ===

impl GuardRecord {
    pub fn fresh(armed_at: u64) -> Self {
        Self {
            armed_at,
            ..Self::default()
        }
    }

    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let fields = [
            self.armed_at,
            self.window_start,
            self.requests,
            self.failures,
        ];
        out[0] = RECORD_VERSION;
        out[1] = u8::from(self.tripped);
        for (chunk, field) in out[2..].chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// `None` for bytes of another length or version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != RECORD_LEN || bytes.first() != Some(&RECORD_VERSION) {
            return None;
        }
        let word = |i: usize| -> Option<u64> {
            let b: [u8; 8] = bytes.get(2 + 8 * i..10 + 8 * i)?.try_into().ok()?;
            Some(u64::from_le_bytes(b))
        };
        Some(Self {
            tripped: bytes.get(1) == Some(&1),
            armed_at: word(0)?,
            window_start: word(1)?,
            requests: word(2)?,
            failures: word(3)?,
        })
    }
}

// === impl GuardPolicy ===

impl GuardPolicy {
    /// The record after one more response at `now`, and whether it tripped the guard.
    pub fn observe(&self, mut rec: GuardRecord, now: u64, failure: bool) -> (GuardRecord, bool) {
        if rec.tripped {
            return (rec, false);
        }
        if rec.window_start == 0 || now >= rec.window_start.saturating_add(self.window_nanos) {
            rec.window_start = now.max(1);
            rec.requests = 0;
            rec.failures = 0;
        }
        rec.requests = rec.requests.saturating_add(1);
        rec.failures = rec.failures.saturating_add(u64::from(failure));
        rec.tripped =
            rec.requests >= self.min_requests && self.exceeded(rec.failures, rec.requests);
        (rec, rec.tripped)
    }

    /// Whether `failures / requests` is strictly above the maximum rate, exactly.
    pub fn exceeded(&self, failures: u64, requests: u64) -> bool {
        u128::from(failures) * PPB > u128::from(self.max_error_ppb) * u128::from(requests)
    }
}

/// Seeds the record at `key` when a worker applies its configuration at `now`, unless a
/// readable one is there already (from another worker, or an earlier application of the same
/// configuration, tripped or not). Returns whether a fresh record was written.
pub fn arm<S: SharedStore>(store: &S, key: &str, now: u64) -> Result<bool, HostError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = store.shared_get(key)?;
        let cas = match &current {
            None => None,
            Some(v) => match GuardRecord::decode(&v.value) {
                Some(_) => return Ok(false),
                None => Some(v.cas),
            },
        };
        match store.shared_set(key, &GuardRecord::fresh(now).encode(), cas) {
            Ok(()) => return Ok(true),
            Err(HostError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(HostError::CasMismatch)
}

/// The record at `key`, if there is a readable one.
pub fn read<S: SharedStore>(store: &S, key: &str) -> Option<GuardRecord> {
    let v = store.shared_get(key).ok()??;
    GuardRecord::decode(&v.value)
}

/// Whether the guard at `key` has tripped; a missing or unreadable record has not.
pub fn is_tripped<S: SharedStore>(store: &S, key: &str) -> bool {
    read(store, key).is_some_and(|r| r.tripped)
}

/// Counts one response of the guarded subset at `now`.
pub fn observe<S: SharedStore>(
    store: &S,
    key: &str,
    policy: &GuardPolicy,
    now: u64,
    failure: bool,
) -> Result<Observation, HostError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (rec, cas) = match store.shared_get(key)? {
            Some(v) => match GuardRecord::decode(&v.value) {
                Some(rec) => (rec, Some(v.cas)),
                // Unreadable: replace it, still under CAS.
                None => (GuardRecord::fresh(now), Some(v.cas)),
            },
            None => {
                // Not seeded (arm failed): seed, then count under CAS.
                store.shared_set(key, &GuardRecord::fresh(now).encode(), None)?;
                continue;
            }
        };
        if rec.tripped {
            return Ok(Observation::AlreadyTripped);
        }
        let (next, tripped) = policy.observe(rec, now, failure);
        match store.shared_set(key, &next.encode(), cas) {
            Ok(()) if tripped => return Ok(Observation::Tripped),
            Ok(()) => return Ok(Observation::Counted),
            Err(HostError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Observation::Contended)
}

#[cfg(test)]
mod tests;
