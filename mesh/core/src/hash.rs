//! SipHash (Aumasson and Bernstein, 2012): a keyed 64-bit hash, streaming and allocation free.
//!
//! Two uses in the suite: a *public* key gives a stable hash every proxy agrees on (canary's
//! sticky tickets, SipHash-2-4), and a *secret* key gives a hash clients cannot predict
//! (ratelimit's bucket table, SipHash-1-3), so they cannot aim their keys at someone else's
//! slot. Output is identical on every target (words are read little-endian, as the reference
//! implementation does).

use std::fmt;

/// A 128-bit SipHash key. Its `Debug` output never shows the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SipKey {
    k0: u64,
    k1: u64,
}

/// SipHash with `C` compression rounds per word and `D` finalization rounds, fed in any
/// number of pieces: hashing `ab` then `c` gives the same as hashing `abc`. `Copy`, so a
/// state that absorbed a common prefix can be reused. Its `Debug` output hides the state.
#[derive(Clone, Copy)]
pub struct SipHasher<const C: usize, const D: usize> {
    v: [u64; 4],
    /// Bytes not yet compressed (fewer than 8), little-endian in the low bits.
    tail: u64,
    tail_len: u32,
    /// Bytes written so far, modulo 256: all the length the final word carries.
    len: u8,
}

/// SipHash-1-3: the fast variant (Rust's `HashMap` default), for secret keys on hot paths.
pub type SipHasher13 = SipHasher<1, 3>;
/// SipHash-2-4: the original, conservative variant.
pub type SipHasher24 = SipHasher<2, 4>;

// === impl SipKey ===

impl SipKey {
    /// Bytes in a key's serialized form.
    pub const LEN: usize = 16;

    pub const fn new(k0: u64, k1: u64) -> Self {
        Self { k0, k1 }
    }

    /// The key from its 16 bytes: `k0` is bytes 0..8 and `k1` bytes 8..16, little-endian (the
    /// reference implementation's byte order).
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        let (k0, k1) = bytes.split_at(8);
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            w.iter_mut().zip(b).for_each(|(d, s)| *d = *s);
            u64::from_le_bytes(w)
        };
        Self::new(word(k0), word(k1))
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (k0, k1) = out.split_at_mut(8);
        k0.copy_from_slice(&self.k0.to_le_bytes());
        k1.copy_from_slice(&self.k1.to_le_bytes());
        out
    }
}

impl fmt::Debug for SipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SipKey(..)")
    }
}

// === impl SipHasher ===

impl<const C: usize, const D: usize> SipHasher<C, D> {
    pub fn new(key: SipKey) -> Self {
        Self {
            v: [
                key.k0 ^ 0x736f_6d65_7073_6575,
                key.k1 ^ 0x646f_7261_6e64_6f6d,
                key.k0 ^ 0x6c79_6765_6e65_7261,
                key.k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            tail_len: 0,
            len: 0,
        }
    }

    /// Absorbs `data`; whole 8-byte words go straight from the slice, without copying.
    pub fn write(&mut self, mut data: &[u8]) {
        // Only the length modulo 256 enters the hash, so truncation is the specification.
        self.len = self.len.wrapping_add(data.len() as u8);
        if self.tail_len > 0 {
            while self.tail_len < 8 {
                let Some((b, rest)) = data.split_first() else {
                    return;
                };
                self.tail |= u64::from(*b) << (8 * self.tail_len);
                self.tail_len += 1;
                data = rest;
            }
            self.compress(self.tail);
            self.tail = 0;
            self.tail_len = 0;
        }
        while let Some((word, rest)) = data.split_first_chunk::<8>() {
            self.compress(u64::from_le_bytes(*word));
            data = rest;
        }
        for b in data {
            self.tail |= u64::from(*b) << (8 * self.tail_len);
            self.tail_len += 1;
        }
    }

    pub fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    /// The hash of everything written so far (the state is left as it was).
    pub fn finish(&self) -> u64 {
        let mut v = self.v;
        let last = (u64::from(self.len) << 56) | self.tail;
        v[3] ^= last;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= last;
        v[2] ^= 0xff;
        for _ in 0..D {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        for _ in 0..C {
            round(&mut self.v);
        }
        self.v[0] ^= m;
    }
}

impl<const C: usize, const D: usize> fmt::Debug for SipHasher<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state is derived from the key: never print it.
        write!(f, "SipHasher<{C}, {D}>(..)")
    }
}

#[inline]
fn round(v: &mut [u64; 4]) {
    let [mut v0, mut v1, mut v2, mut v3] = *v;
    v0 = v0.wrapping_add(v1);
    v1 = v1.rotate_left(13) ^ v0;
    v0 = v0.rotate_left(32);
    v2 = v2.wrapping_add(v3);
    v3 = v3.rotate_left(16) ^ v2;
    v0 = v0.wrapping_add(v3);
    v3 = v3.rotate_left(21) ^ v0;
    v2 = v2.wrapping_add(v1);
    v1 = v1.rotate_left(17) ^ v2;
    v2 = v2.rotate_left(32);
    *v = [v0, v1, v2, v3];
}

/// SipHash-2-4 of `data` under the key `(k0, k1)`.
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut h = SipHasher24::new(SipKey::new(k0, k1));
    h.write(data);
    h.finish()
}

/// SipHash-1-3 of `data` under the key `(k0, k1)`.
pub fn siphash13(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut h = SipHasher13::new(SipKey::new(k0, k1));
    h.write(data);
    h.finish()
}

#[cfg(test)]
mod tests;
