//! Test data and helpers shared by ringwire's criterion benches (`benches/frame.rs`).
//!
//! The benches compare ringwire's frame path with fastwebsockets and tungstenite in
//! the same criterion group; see `docs/benchmarks.md` for the results and the command
//! that reproduces them, and `report.py` for the table generator.

use std::io::{self, Read, Write};

/// Payload sizes every frame-path bench runs at.
pub const SIZES: [usize; 8] = [0, 2, 125, 126, 1 << 10, 16 << 10, 64 << 10, 1 << 20];

/// Where the data starts relative to a 64-byte boundary: aligned, and one byte past.
pub const ALIGNS: [usize; 2] = [0, 1];

/// The masking key the benches use (every byte differs, so a rotation bug would show).
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// `len` bytes of ASCII text.
pub fn ascii_text(len: usize) -> Vec<u8> {
    let words = b"the quick brown fox jumps over the lazy dog; ";
    words.iter().copied().cycle().take(len).collect()
}

/// `len` bytes of valid UTF-8 mixing ASCII with 2-, 3- and 4-byte code points (about a
/// third of the bytes are non-ASCII), padded with ASCII to the exact length.
pub fn mixed_text(len: usize) -> Vec<u8> {
    let sample = "Grüße, κόσμε! Ünïcödé text — 3 € for 𝄞 and 漢字; plain ascii words follow. ";
    let mut out = String::with_capacity(len);
    for c in sample.chars().cycle() {
        if out.len() + c.len_utf8() > len {
            break;
        }
        out.push(c);
    }
    while out.len() < len {
        out.push('x');
    }
    out.into_bytes()
}

/// Bytes placed at a chosen offset from a 64-byte boundary inside a larger allocation.
#[derive(Clone)]
pub struct Placed {
    storage: Vec<u8>,
    at: usize,
    len: usize,
}

impl Placed {
    /// Copies `data` to `align` bytes past a 64-byte boundary.
    pub fn new(data: &[u8], align: usize) -> Self {
        let mut storage = vec![0u8; data.len() + 64 + align];
        let at = storage.as_ptr().align_offset(64) + align;
        storage[at..at + data.len()].copy_from_slice(data);
        Self { storage, at, len: data.len() }
    }

    /// The placed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.storage[self.at..self.at + self.len]
    }

    /// The placed bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.at..self.at + self.len]
    }
}

/// One frame on the wire as ringwire encodes it: header, then the payload masked with
/// `mask` if given.
pub fn encode_frame(opcode: ringwire_frame::OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = ringwire_frame::FrameHeader { mask, ..ringwire_frame::FrameHeader::new(opcode, payload.len() as u64) };
    let mut wire = header.encode().as_bytes().to_vec();
    let start = wire.len();
    wire.extend_from_slice(payload);
    if let Some(key) = mask {
        ringwire_frame::apply_mask(&mut wire[start..], key, 0);
    }
    wire
}

/// An in-memory socket for tungstenite: reads return the same wire bytes over and over
/// (so a `WebSocket` can be read from forever without being rebuilt), writes are
/// discarded.
#[derive(Debug, Clone)]
pub struct Replay {
    wire: Vec<u8>,
    pos: usize,
}

impl Replay {
    /// A stream that repeats `wire` endlessly. `wire` must not be empty.
    pub fn new(wire: Vec<u8>) -> Self {
        assert!(!wire.is_empty(), "Replay needs at least one byte to repeat");
        Self { wire, pos: 0 }
    }
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let take = (buf.len() - n).min(self.wire.len() - self.pos);
            buf[n..n + take].copy_from_slice(&self.wire[self.pos..self.pos + take]);
            n += take;
            self.pos = (self.pos + take) % self.wire.len();
        }
        Ok(n)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_have_the_exact_length_and_are_valid() {
        for len in SIZES.into_iter().chain(1..300) {
            let m = mixed_text(len);
            assert_eq!(m.len(), len);
            assert!(std::str::from_utf8(&m).is_ok());
            assert_eq!(ascii_text(len).len(), len);
        }
        let m = mixed_text(1 << 10);
        assert!(m.iter().filter(|b| !b.is_ascii()).count() > 200, "mixed text is mostly ASCII");
    }

    #[test]
    fn placed_is_at_the_requested_alignment() {
        for align in ALIGNS {
            let p = Placed::new(b"hello", align);
            assert_eq!(p.bytes(), b"hello");
            assert_eq!(p.bytes().as_ptr() as usize % 64, align);
        }
    }

    #[test]
    fn replay_repeats_the_wire() {
        let mut r = Replay::new(b"abc".to_vec());
        let mut buf = [0u8; 7];
        assert_eq!(r.read(&mut buf).unwrap(), 7);
        assert_eq!(&buf, b"abcabca");
        assert_eq!(r.read(&mut buf[..2]).unwrap(), 2);
        assert_eq!(&buf[..2], b"bc");
    }
}
