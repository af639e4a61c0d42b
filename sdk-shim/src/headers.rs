//! A whole header map read with one host call and looked up in place.
//!
//! The host hands the map over serialized (proxy-wasm's pair encoding: a count, each pair's
//! two lengths, then each name and value followed by a NUL). [`HeaderSnapshot`] keeps that
//! buffer as it came and answers lookups by walking it: no allocation per header, and every
//! value of a repeated header is still there.

/// One header map as the host serialized it, checked once when made. A clone shares the
/// buffer: every capability of a pass reads the one map the pass took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSnapshot {
    /// The serialized pairs; `None` for an empty map.
    bytes: Option<Arc<Vec<u8>>>,
    count: usize,
    /// One bit per name length present ([`name_bit`]): a lookup of a name whose length no
    /// header has ends here instead of walking the whole table.
    names: u64,
}

use std::ops::{Deref, Range};
use std::sync::Arc;

/// One header value kept by a filter past the read: a range of a map the pass already holds
/// (no copy, the buffer is shared) or the host's own copy.
#[derive(Debug, Clone)]
pub enum HeaderValue {
    Shared(HeaderSnapshot, Range<usize>),
    Owned(Vec<u8>),
}

impl Default for HeaderValue {
    fn default() -> Self {
        Self::Owned(Vec::new())
    }
}

impl Deref for HeaderValue {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Shared(map, range) => map.buffer().get(range.clone()).unwrap_or_default(),
            Self::Owned(v) => v,
        }
    }
}

impl HeaderValue {
    /// The value to keep past the callback that read it: still shared while the whole map
    /// is at most `max_map_bytes`, else its own copy, so a long-lived stream does not pin a
    /// large header map for its whole life.
    #[must_use]
    pub fn kept(self, max_map_bytes: usize) -> Self {
        match &self {
            Self::Shared(map, _) if map.buffer().len() > max_map_bytes => {
                Self::Owned(self.to_vec())
            }
            _ => self,
        }
    }
}

impl From<Vec<u8>> for HeaderValue {
    fn from(v: Vec<u8>) -> Self {
        Self::Owned(v)
    }
}

impl PartialEq for HeaderValue {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for HeaderValue {}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD: what a header or published value reads
/// as. Same result as `String::from_utf8_lossy`, but valid input (nearly every value) takes
/// `str::from_utf8`'s word-at-a-time check instead of the byte-at-a-time chunk scan.
pub fn utf8_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The little-endian `u32` at `at`, as a length.
fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

// === impl HeaderSnapshot ===

impl HeaderSnapshot {
    /// The empty map.
    pub const EMPTY: Self = Self {
        bytes: None,
        count: 0,
        names: 0,
    };

    /// Takes a serialized map; `None` unless every length stays inside the buffer and the
    /// pairs end exactly at its end. An empty buffer is an empty map (how Envoy answers one).
    pub fn parse(bytes: Vec<u8>) -> Option<Self> {
        if bytes.is_empty() {
            return Some(Self::default());
        }
        let Scan { count, names } = scan(&bytes)?;
        Some(Self {
            bytes: Some(Arc::new(bytes)),
            count,
            names,
        })
    }

    /// Serializes `pairs` the way the host does, for hosts that hand over pairs.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        let size: usize = pairs
            .iter()
            .map(|(n, v)| 10 + n.as_ref().len() + v.as_ref().len())
            .sum();
        let mut bytes = Vec::with_capacity(size + 4);
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        bytes.extend_from_slice(&len(pairs.len()));
        for (n, v) in pairs {
            bytes.extend_from_slice(&len(n.as_ref().len()));
            bytes.extend_from_slice(&len(v.as_ref().len()));
        }
        for (n, v) in pairs {
            bytes.extend_from_slice(n.as_ref());
            bytes.push(0);
            bytes.extend_from_slice(v.as_ref());
            bytes.push(0);
        }
        let names = pairs
            .iter()
            .fold(0, |m, (n, _)| m | name_bit(n.as_ref().len()));
        Self {
            bytes: (!pairs.is_empty()).then(|| Arc::new(bytes)),
            count: pairs.len(),
            names,
        }
    }

    fn buffer(&self) -> &[u8] {
        self.bytes.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The map serialized as the host sends it (empty for an empty map).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.buffer().to_vec()
    }

    /// Number of pairs (a repeated header counts once per value).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every (name, value) pair in the host's order, borrowed from the buffer.
    pub fn pairs(&self) -> Pairs<'_> {
        Pairs::new(self.buffer(), self.count)
    }

    /// The first value of `name` (names compare ASCII case-insensitively, as hosts do).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The first value of `name`, kept as a range of this map's shared buffer: no copy.
    pub fn shared(&self, name: &str) -> Option<HeaderValue> {
        let range = self.values(name).next_range()?;
        Some(HeaderValue::Shared(self.clone(), range))
    }

    /// Every value of `name`, in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> Values<'a, 'n> {
        let bytes = self.buffer();
        let data = 4 + 8 * self.count;
        // In range for a checked buffer; an empty map has no table, and a name the map lacks
        // gets none either.
        let table = if self.names & name_bit(name.len()) == 0 {
            &[]
        } else {
            bytes.get(4..data).unwrap_or_default().as_chunks::<8>().0
        };
        Values {
            bytes,
            name: name.as_bytes(),
            table: table.iter(),
            data,
        }
    }

    /// The pairs as owned strings (names decoded lossily), for callers that keep them.
    pub fn to_pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.pairs()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
            .collect()
    }
}

/// The filter bit of a header name of `len` bytes: names of another length never match,
/// and the length is in the table, so the parse sets the bits without touching the names.
fn name_bit(len: usize) -> u64 {
    1 << (len % 64)
}

/// What one walk over a serialized map's length table finds.
struct Scan {
    count: usize,
    names: u64,
}

/// The number of pairs in serialized `bytes`, checked: `None` unless every length stays
/// inside the buffer and the pairs end exactly at its end (an empty buffer has no count).
pub(crate) fn checked_count(bytes: &[u8]) -> Option<usize> {
    scan(bytes).map(|s| s.count)
}

/// Checks `bytes` as [`checked_count`] does and gathers the names' filter bits, in one walk
/// over the length table. Offsets add up in `u64`, saturating: one pair's two `u32` lengths
/// cannot overflow it, and a total that would (past any buffer) stays unequal to the length.
fn scan(bytes: &[u8]) -> Option<Scan> {
    let count = word(bytes, 0)?;
    let table_end = count.checked_mul(8)?.checked_add(4)?;
    let table = bytes.get(4..table_end)?.as_chunks::<8>().0;
    let mut data = u64::try_from(table_end).ok()?;
    let mut names = 0;
    for &[a, b, c, d, e, f, g, h] in table {
        let name = u64::from(u32::from_le_bytes([a, b, c, d]));
        let value = u64::from(u32::from_le_bytes([e, f, g, h]));
        names |= 1 << (name % 64);
        data = data.saturating_add(name + value + 2);
    }
    (data == u64::try_from(bytes.len()).ok()?).then_some(Scan { count, names })
}

/// Iterator over a snapshot's pairs.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    /// The (name, value) lengths of the pairs not yet read.
    table: std::slice::Iter<'a, [u8; 8]>,
    /// Where the next pair's name starts.
    data: usize,
}

impl<'a> Pairs<'a> {
    /// The pairs of `bytes`, whose `count` came from [`checked_count`] (or an empty buffer's 0).
    pub(crate) fn new(bytes: &'a [u8], count: usize) -> Self {
        let data = 4 + 8 * count;
        Self {
            bytes,
            table: bytes
                .get(4..data)
                .unwrap_or_default()
                .as_chunks::<8>()
                .0
                .iter(),
            data,
        }
    }
}

/// Iterator over the values of one name. Pairs whose name has another length are skipped on
/// the length table alone, without touching their bytes: most of a lookup's pairs.
#[derive(Debug, Clone)]
pub struct Values<'a, 'n> {
    bytes: &'a [u8],
    name: &'n [u8],
    /// The (name, value) lengths of the pairs not yet looked at.
    table: std::slice::Iter<'a, [u8; 8]>,
    /// Where the next pair's name starts.
    data: usize,
}

impl Values<'_, '_> {
    /// Where the next value of the name is in the buffer.
    fn next_range(&mut self) -> Option<Range<usize>> {
        // The table is walked as fixed-size entries: no bounds check per pair.
        for &[a, b, c, d, e, f, g, h] in self.table.by_ref() {
            let name_len = usize::try_from(u32::from_le_bytes([a, b, c, d])).ok()?;
            let value_len = usize::try_from(u32::from_le_bytes([e, f, g, h])).ok()?;
            let at = self.data;
            // Cannot overflow: the parse checked that every pair ends inside the buffer.
            self.data = at + name_len + value_len + 2;
            if name_len != self.name.len() {
                continue;
            }
            let value_at = at + name_len + 1;
            let name = self.bytes.get(at..value_at - 1)?;
            // Hosts send names lowercase and callers ask in lowercase: the exact compare
            // settles nearly every lookup before the byte-wise case-folding one.
            if name == self.name || name.eq_ignore_ascii_case(self.name) {
                return Some(value_at..value_at + value_len);
            }
        }
        None
    }
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        let range = self.next_range()?;
        self.bytes.get(range)
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let &[a, b, c, d, e, f, g, h] = self.table.next()?;
        let name_len = usize::try_from(u32::from_le_bytes([a, b, c, d])).ok()?;
        let value_len = usize::try_from(u32::from_le_bytes([e, f, g, h])).ok()?;
        let name = self.bytes.get(self.data..self.data + name_len)?;
        let value_at = self.data + name_len + 1;
        let value = self.bytes.get(value_at..value_at + value_len)?;
        self.data = value_at + value_len + 1;
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_lookups_see_every_value() {
        let pairs: Vec<(&str, &[u8])> = vec![
            (":path", b"/a"),
            ("x-forwarded-for", b"1.1.1.1"),
            ("empty", b""),
            ("x-forwarded-for", b"2.2.2.2"),
            ("bin", &[0xff, 0, 0xfe]),
        ];
        let snap = HeaderSnapshot::from_pairs(&pairs);
        assert_eq!(snap.len(), 5);
        let back: Vec<(&[u8], &[u8])> = snap.pairs().collect();
        let want: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), *v)).collect();
        assert_eq!(back, want);
        assert_eq!(snap.get(":PATH"), Some(&b"/a"[..]));
        assert_eq!(snap.get("empty"), Some(&b""[..]));
        assert_eq!(snap.get("missing"), None);
        let xff: Vec<&[u8]> = snap.values("x-forwarded-for").collect();
        assert_eq!(xff, [&b"1.1.1.1"[..], b"2.2.2.2"]);
        assert_eq!(snap.get("bin"), Some(&[0xff, 0, 0xfe][..]));
        // What the host sends parses to the same map.
        let reparsed = HeaderSnapshot::parse(snap.buffer().to_vec()).unwrap();
        assert_eq!(reparsed, snap);
    }

    #[test]
    fn a_malformed_buffer_is_refused_and_an_empty_one_is_an_empty_map() {
        assert!(HeaderSnapshot::parse(Vec::new()).unwrap().is_empty());
        let good = HeaderSnapshot::from_pairs(&[("a", "b")]).buffer().to_vec();
        for cut in 1..good.len() {
            assert_eq!(HeaderSnapshot::parse(good[..cut].to_vec()), None, "{cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(HeaderSnapshot::parse(long), None);
        // A count or length that overflows is refused, not trusted.
        let mut huge = good;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderSnapshot::parse(huge), None);
    }

    proptest::proptest! {
        #[test]
        fn lookups_see_what_a_walk_over_the_pairs_sees(
            pairs in proptest::collection::vec(("[a-cA-C]{0,3}", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)), 0..12),
            name in "[a-cA-C]{0,3}",
        ) {
            let snap = HeaderSnapshot::from_pairs(&pairs);
            let want: Vec<&[u8]> = pairs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(_, v)| v.as_slice())
                .collect();
            proptest::prop_assert_eq!(snap.values(&name).collect::<Vec<_>>(), want.clone());
            proptest::prop_assert_eq!(snap.get(&name), want.first().copied());
        }
    }
}
