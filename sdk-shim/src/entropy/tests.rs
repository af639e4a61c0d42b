use super::*;

/// A host whose entropy is a counter, so every byte handed out can be traced to a fetch.
struct Counter {
    next: u8,
    calls: usize,
}

impl Counter {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        self.calls += 1;
        for b in buf {
            *b = self.next;
            self.next = self.next.wrapping_add(1);
        }
        Ok(())
    }
}

#[test]
fn small_draws_share_one_host_call_per_block_and_never_repeat_a_byte() {
    let mut host = Counter { next: 0, calls: 0 };
    let mut pool = EntropyPool::default();
    let mut seen = Vec::new();
    // 8-byte draws: 32 fit in one block; draws of 5 straddle block ends.
    for len in [8usize; 32].into_iter().chain([5; 60]) {
        let mut out = vec![0xAA; len];
        pool.fill(&mut out, |b| host.fill(b)).unwrap();
        seen.extend(out);
    }
    assert_eq!(host.calls, 3, "256 + 300 bytes: three blocks");
    // The bytes come out in the order the host produced them, each once.
    let expected: Vec<u8> = (0..seen.len()).map(|i| (i % 256) as u8).collect();
    assert_eq!(seen, expected);
}

#[test]
fn a_draw_larger_than_a_block_goes_to_the_host() {
    let mut host = Counter { next: 7, calls: 0 };
    let mut pool = EntropyPool::default();
    let mut big = vec![0u8; BLOCK + 1];
    pool.fill(&mut big, |b| host.fill(b)).unwrap();
    // One call filled all 257 bytes, counting on from 7 (and wrapping at 256).
    assert_eq!((host.calls, big[0], big[1], big[BLOCK]), (1, 7, 8, 7));
    // The pool itself was not touched.
    let mut small = [0u8; 1];
    pool.fill(&mut small, |b| host.fill(b)).unwrap();
    assert_eq!(host.calls, 2);
}

#[test]
fn a_failing_host_is_reported_and_the_pool_stays_empty() {
    let mut pool = EntropyPool::default();
    let mut out = [0u8; 4];
    assert_eq!(
        pool.fill(&mut out, |_| Err("no entropy")),
        Err("no entropy")
    );
    let mut host = Counter { next: 1, calls: 0 };
    pool.fill(&mut out, |b| host.fill(b)).unwrap();
    assert_eq!(out, [1, 2, 3, 4]);
}
