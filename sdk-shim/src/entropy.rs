//! Host entropy drawn in blocks, for hosts where each draw is a host call.
//!
//! Filters draw a few bytes per request (a split ticket, a trace id). [`EntropyPool`] asks
//! the host for [`BLOCK`] bytes at a time and hands them out in order, each byte once: what a
//! filter gets is still the host's randomness, not a generator's output, so a secret drawn
//! from the pool is as unpredictable as one drawn directly.

/// Bytes fetched from the host per refill.
pub const BLOCK: usize = 256;

/// A block of host entropy and how much of it was handed out.
#[derive(Debug)]
pub struct EntropyPool {
    block: [u8; BLOCK],
    used: usize,
}

impl Default for EntropyPool {
    fn default() -> Self {
        Self {
            block: [0; BLOCK],
            used: BLOCK,
        }
    }
}

impl EntropyPool {
    /// Fills `out` from the pool, refilling it through `host` when it runs dry. A draw larger
    /// than a block goes to `host` directly.
    pub fn fill<E>(
        &mut self,
        out: &mut [u8],
        mut host: impl FnMut(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if out.len() > BLOCK {
            return host(out);
        }
        let mut done = 0;
        while done < out.len() {
            if self.used == BLOCK {
                host(&mut self.block)?;
                self.used = 0;
            }
            let n = (out.len() - done).min(BLOCK - self.used);
            let (Some(dst), Some(src)) = (
                out.get_mut(done..done + n),
                self.block.get_mut(self.used..self.used + n),
            ) else {
                // Cannot happen (n fits both); never hand back zeros as randomness.
                return out.get_mut(done..).map_or(Ok(()), host);
            };
            dst.copy_from_slice(src);
            // A byte handed out is not kept.
            src.fill(0);
            self.used += n;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
