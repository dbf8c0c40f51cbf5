//! Streaming UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames and each frame across reads. The
//! validator checks every chunk as it arrives, carries a code point split across
//! chunks over to the next one, fails at the first byte that can never be valid
//! (fail-fast, as Autobahn 6.4.x checks), and fails at the end of the message if a
//! code point is left incomplete.
//!
//! Each chunk is cut before a code point left incomplete at its end (found by looking
//! back at most three bytes); the part before is validated in one `simdutf8` call (its
//! fast `basic` API: where an error is does not matter, only that there is one), and the
//! 1-3 byte tail is checked to be the start of a valid code point and kept. Short
//! chunks take an ASCII fast path; the part of a chunk after its last whole 64-byte
//! block is padded to a block (see `is_valid`). This is one SIMD pass per chunk.
//! `simdutf8`'s `compat` API (which reports where a split code point starts) is
//! slower, and below 64 bytes both of its APIs fall back to `core::str::from_utf8`:
//! that made a 125-byte message in three chunks slower to validate than `std` on
//! the whole.

use core::fmt;

/// Invalid UTF-8 in a text message: close with 1007.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl InvalidUtf8 {
    /// The close code for this fault (1007).
    pub const fn close_code(self) -> crate::CloseCode {
        crate::CloseCode::INVALID_DATA
    }
}

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8 in a text message")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Incremental validator: [`feed`](Self::feed) each chunk in order, then
/// [`finish`](Self::finish) at the end of the message. Six bytes of state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self { partial: [0; 4], partial_len: 0 }
    }

    /// Whether the bytes fed so far end inside a code point.
    #[inline]
    pub const fn in_code_point(&self) -> bool {
        self.partial_len != 0
    }

    /// Validates the next chunk of the message. Fails as soon as the bytes seen so far
    /// cannot be the start of valid UTF-8.
    #[inline]
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len != 0 {
            let have = self.partial_len as usize;
            let need = match self.partial[0] {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let take = (need - have).min(chunk.len());
            let mut tmp = self.partial;
            tmp[have..have + take].copy_from_slice(&chunk[..take]);
            match core::str::from_utf8(&tmp[..have + take]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    self.partial = tmp;
                    self.partial_len = (have + take) as u8;
                    return Ok(());
                }
            }
            chunk = &chunk[take..];
        }
        if chunk.len() <= ASCII_PROBE && is_ascii(chunk) {
            return Ok(()); // all ASCII: no call, no tail to carry
        }
        // The chunk now starts on a code point boundary. Split off a code point left
        // incomplete at its end, validate the rest in one go, and check that the tail is
        // the start of a valid code point (so an impossible tail fails now, not later).
        let (body, tail) = chunk.split_at(incomplete_tail_start(chunk));
        if !is_valid(body) {
            return Err(InvalidUtf8);
        }
        if !tail.is_empty() {
            match core::str::from_utf8(tail) {
                Err(e) if e.error_len().is_none() => {
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                }
                _ => return Err(InvalidUtf8),
            }
        }
        Ok(())
    }

    /// Ends the message: fails if it stopped inside a code point. Resets the validator.
    #[inline]
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.partial_len != 0;
        *self = Self::new();
        if incomplete { Err(InvalidUtf8) } else { Ok(()) }
    }
}

/// Where a code point left incomplete at the end of `b` starts (`b.len()` if none):
/// the last lead byte among the final three bytes, if its sequence runs past the end.
#[inline]
fn incomplete_tail_start(b: &[u8]) -> usize {
    let len = b.len();
    for j in 1..=len.min(3) {
        let c = b[len - j];
        if c & 0xC0 == 0x80 {
            continue; // a continuation byte: keep looking for its lead
        }
        let need = match c {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if need > j { len - j } else { len };
    }
    len
}

/// `simdutf8`'s block size. Below it `simdutf8` hands its input to
/// `core::str::from_utf8`, which is slow on non-ASCII text (over 1 ns per byte).
const SHORT: usize = 64;

/// Chunks up to this long are first probed for ASCII ([`is_ascii`]), which on short
/// chunks is cheaper than `simdutf8`'s fixed cost per call (5-10 ns).
const ASCII_PROBE: usize = 4096;

/// Whether every byte is ASCII: an OR over each 64-byte block (vectorised by the
/// compiler), stopping at the first block with a high bit; `core`'s word loop for the
/// rest.
#[inline]
fn is_ascii(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(SHORT);
    for block in &mut blocks {
        if block.iter().fold(0u8, |acc, &x| acc | x) >= 0x80 {
            return false;
        }
    }
    blocks.remainder().is_ascii()
}

/// Whether `b` is complete, valid UTF-8, by `simdutf8`'s SIMD validator.
///
/// `simdutf8` is fastest on whole 64-byte blocks: a partial last block costs it about
/// 10 ns (a copy and a second code path), and under 64 bytes it falls back to
/// `core::str::from_utf8`, which is slow on non-ASCII text. So `b` is cut at the last
/// 64-byte multiple where a code point starts (valid UTF-8 is valid in both parts
/// exactly when a code point starts there, and an error spanning the cut leaves the
/// first part ending inside a code point, which fails it); the whole blocks go to
/// `simdutf8` and the rest is copied into a zero-padded block (zeros are ASCII, so the
/// padding cannot change the verdict).
#[inline]
fn is_valid(b: &[u8]) -> bool {
    let mut cut = b.len() & !(SHORT - 1);
    while cut != 0 && cut < b.len() && b[cut] & 0xC0 == 0x80 {
        cut -= SHORT; // a continuation byte: no code point starts here
    }
    let (blocks, rest) = b.split_at(cut);
    if !blocks.is_empty() && simdutf8::basic::from_utf8(blocks).is_err() {
        return false;
    }
    if rest.len() > 2 * SHORT {
        return simdutf8::basic::from_utf8(rest).is_ok(); // only after many continuation bytes
    }
    if rest.is_empty() {
        return true;
    }
    let mut padded = [0u8; 2 * SHORT];
    padded[..rest.len()].copy_from_slice(rest);
    let n = if rest.len() <= SHORT { SHORT } else { 2 * SHORT };
    simdutf8::basic::from_utf8(&padded[..n]).is_ok()
}

/// Validates a whole text payload at once (a single-frame message).
#[inline]
pub fn validate_utf8(bytes: &[u8]) -> Result<&str, InvalidUtf8> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut at = 0;
        for &c in cuts {
            v.feed(&bytes[at..c])?;
            at = c;
        }
        v.feed(&bytes[at..])?;
        v.finish()
    }

    #[test]
    fn split_code_points_are_carried() {
        let s = "κόσμε 𝄞 €".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(streamed(s, &[i, j]), Ok(()), "cuts {i} {j}");
            }
        }
    }

    #[test]
    fn fail_fast_on_first_impossible_byte() {
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        // 0xED 0xA0 starts a UTF-16 surrogate: invalid as soon as the second byte arrives.
        v.feed(&[0xED]).unwrap();
        assert_eq!(v.feed(&[0xA0]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xFF]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4, 0x90]), Err(InvalidUtf8)); // > U+10FFFF
    }

    #[test]
    fn incomplete_at_end_fails() {
        assert_eq!(streamed(&[b'a', 0xE2, 0x82], &[2]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        v.feed(&[0xF0, 0x9D]).unwrap();
        assert!(v.in_code_point());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        assert!(!v.in_code_point());
    }

    #[test]
    fn whole() {
        assert_eq!(validate_utf8(b"hello"), Ok("hello"));
        assert_eq!(validate_utf8(&[0xC0, 0x80]), Err(InvalidUtf8));
    }
}
