//! Structured input from raw fuzz bytes, without a dependency: fields are cut at `0xFF`
//! (never valid UTF-8, so it seldom stands for itself in text fields), flags are bytes.

/// A cursor over fuzz bytes.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    rest: &'a [u8],
}

/// Separates fields in a seed: `0xFF`.
pub const SEP: u8 = 0xFF;

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// One byte, 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u64 from up to 8 bytes.
    pub fn u64(&mut self) -> u64 {
        let mut buf = [0u8; 8];
        for b in &mut buf {
            *b = self.byte();
        }
        u64::from_le_bytes(buf)
    }

    /// The bytes up to the next separator (which is consumed), or the rest.
    pub fn field(&mut self) -> &'a [u8] {
        match self.rest.iter().position(|b| *b == SEP) {
            Some(i) => {
                let (f, rest) = self.rest.split_at(i);
                self.rest = &rest[1..];
                f
            }
            None => std::mem::take(&mut self.rest),
        }
    }

    /// A field as text (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.field()).into_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}
