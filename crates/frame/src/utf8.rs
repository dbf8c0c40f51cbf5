//! Streaming UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames and each frame across reads. The
//! validator checks every chunk as it arrives with `simdutf8`'s compat API, carries a
//! code point split across chunks over to the next one, fails at the first byte that
//! can never be valid (fail-fast, as Autobahn 6.4.x checks), and fails at the end of
//! the message if a code point is left incomplete.

use core::fmt;
use simdutf8::compat::from_utf8;

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
            match from_utf8(&tmp[..have + take]) {
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
        match from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &chunk[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the message: fails if it stopped inside a code point. Resets the validator.
    #[inline]
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.partial_len != 0;
        *self = Self::new();
        if incomplete { Err(InvalidUtf8) } else { Ok(()) }
    }
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
