//! Weighted split of a 64-bit ticket over subsets, with ranges laid out for monotone growth.
//!
//! A ticket `t` lands at position `p = (t * W) >> 64` in `[0, W)`, `W` the total weight.
//! Subsets take consecutive ranges in configuration order starting at 0: with weights
//! `[w0, w1, .., wn]`, subset 0 holds `[0, w0)` and the last subset holds `[W - wn, W)`.
//! So the first subset is anchored at the bottom and the last at the top: when the last
//! subset's share `wn / W` grows (whatever the other weights do), its range only grows
//! downward and every ticket it held stays in it; symmetrically for the first subset. List the
//! stable version first and the canary last. A subset whose weight is 0 holds no position.

use crate::hash::position;

/// Weights of a service's subsets, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    weights: Vec<u64>,
    total: u64,
}

// === impl Split ===

impl Split {
    /// `None` when the weights sum to 0 or overflow.
    pub fn new(weights: Vec<u64>) -> Option<Self> {
        let total = weights
            .iter()
            .try_fold(0u64, |acc, w| acc.checked_add(*w))?;
        (total > 0).then_some(Self { weights, total })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn weights(&self) -> &[u64] {
        &self.weights
    }

    /// The subset holding `ticket`.
    pub fn pick(&self, ticket: u64) -> usize {
        walk(&self.weights, position(ticket, self.total), None)
    }

    /// The subset holding `ticket` once `excluded` is taken out: its share is spread over
    /// the others in proportion to their weights, or evenly when they all weigh 0. `None`
    /// when there is no other subset.
    pub fn pick_excluding(&self, ticket: u64, excluded: usize) -> Option<usize> {
        let left = self.total - self.weights.get(excluded).copied().unwrap_or(0);
        if left > 0 {
            return Some(walk(&self.weights, position(ticket, left), Some(excluded)));
        }
        let others = (0..self.weights.len()).filter(|i| *i != excluded);
        let n = others.clone().count() as u64;
        let nth = usize::try_from(position(ticket, n)).ok()?;
        others.clone().nth(nth)
    }
}

// The subset whose range holds position `p`; `p` is below the sum of the weights walked, so
// the loop always returns inside (the fallback keeps it total without a panic).
fn walk(weights: &[u64], mut p: u64, skip: Option<usize>) -> usize {
    let mut last = 0;
    for (i, w) in weights.iter().enumerate() {
        if Some(i) == skip || *w == 0 {
            continue;
        }
        if p < *w {
            return i;
        }
        p -= *w;
        last = i;
    }
    last
}

/// Derives an independent ticket from `ticket`, to spread a rolled-back subset's users over
/// the other subsets without moving anyone else (splitmix64's finalizer).
pub fn remix(ticket: u64) -> u64 {
    let mut z = ticket ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
