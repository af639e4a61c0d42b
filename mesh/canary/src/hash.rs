//! The stable hash behind sticky assignment and cookie tags: SipHash-2-4 (Aumasson and
//! Bernstein, 2012), 64-bit output, over the raw bytes.
//!
//! A sticky key's position is `(siphash24(STICKY_K0, STICKY_K1, key) * total_weight) >> 64`,
//! so every worker and every proxy (and any other implementation following this text) puts a
//! user at the same place.

/// First key of the sticky-header hash (ASCII `mesh-can`, big-endian).
pub const STICKY_K0: u64 = 0x6d65_7368_2d63_616e;
/// Second key of the sticky-header hash (ASCII `ary-stky`, big-endian).
pub const STICKY_K1: u64 = 0x6172_792d_7374_6b79;

/// SipHash-2-4 of `data` under the 128-bit key `(k0, k1)` (each read little-endian, as in the
/// reference implementation); the one implementation lives in `mesh_core`.
pub use mesh_core::hash::siphash24;

/// The sticky ticket of a header value.
pub fn sticky_ticket(key: &[u8]) -> u64 {
    siphash24(STICKY_K0, STICKY_K1, key)
}

/// Maps a 64-bit ticket to `[0, total)`: the high half of `ticket * total`. Keeps the ticket's
/// fraction of the range, so scaling all weights (90/10 -> 9/1) moves nobody.
pub fn position(ticket: u64, total: u64) -> u64 {
    ((u128::from(ticket) * u128::from(total)) >> 64) as u64
}

#[cfg(test)]
mod tests;
