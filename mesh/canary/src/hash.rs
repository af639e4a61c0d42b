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

#[inline]
fn sip_round(v: &mut [u64; 4]) {
    let [mut v0, mut v1, mut v2, mut v3] = *v;
    v0 = v0.wrapping_add(v1);
    v1 = v1.rotate_left(13);
    v1 ^= v0;
    v0 = v0.rotate_left(32);
    v2 = v2.wrapping_add(v3);
    v3 = v3.rotate_left(16);
    v3 ^= v2;
    v0 = v0.wrapping_add(v3);
    v3 = v3.rotate_left(21);
    v3 ^= v0;
    v2 = v2.wrapping_add(v1);
    v1 = v1.rotate_left(17);
    v1 ^= v2;
    v2 = v2.rotate_left(32);
    *v = [v0, v1, v2, v3];
}

/// SipHash-2-4 of `data` under the 128-bit key `(k0, k1)` (each read little-endian, as in the
/// reference implementation).
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    // Last word: remaining bytes, zero padded, length mod 256 in the top byte.
    let mut last = [0u8; 8];
    for (dst, src) in last.iter_mut().zip(chunks.remainder()) {
        *dst = *src;
    }
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

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
