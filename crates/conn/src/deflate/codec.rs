//! RFC 7692 section 7.2: whole messages through raw deflate, and the per-thread shared
//! codecs for peers without context takeover.

use std::cell::RefCell;

use bytes::BytesMut;
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status};

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// What a sync flush ends with; removed by the sender, appended by the receiver (7.2.1, 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The most output room handed to zlib in one call (zeroed before each call: the safe API
/// takes initialised bytes).
const MAX_ROOM: usize = 64 << 10;
/// Below this much spare capacity the output buffer grows before the next call.
const MIN_ROOM: usize = 256;

/// Inflating a message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The message inflates to more than `limit` bytes (close with 1009).
    #[error("the inflated message exceeds the limit of {limit} bytes")]
    TooBig {
        /// The limit given.
        limit: usize,
    },
    /// The data is not valid deflate (close with 1007).
    #[error("corrupt deflate data: {0}")]
    Corrupt(String),
}

/// Compresses whole messages for one direction (raw deflate, RFC 7692 7.2.1).
///
/// Memory, allocated by [`new`](Self::new) and kept until drop: zlib-rs takes
/// `(1 << (window_bits + 2))` bytes for the window and chain, `7 << (mem_level + 6)`
/// for the symbol buffers, a 128 KiB hash table whatever `mem_level` and 3,200 bytes
/// of state: 380,032 bytes at 15/8, 272,512 at 15/4, 137,216 at 9/1, exactly as
/// measured by the `deflate` bench (zlib's formula, `(1 << (window_bits + 2)) +
/// (1 << (mem_level + 9))`, gives 256 KiB at 15/8).
pub struct Compressor {
    inner: Deflate,
    /// Something was compressed since the last reset.
    dirty: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").field("dirty", &self.dirty).finish_non_exhaustive()
    }
}

impl Compressor {
    /// A raw deflate stream with a `1 << window_bits` window (9..=15), compression
    /// `level` (0..=9) and zlib memory level `mem_level` (1..=9).
    ///
    /// # Panics
    ///
    /// On a value out of those ranges ([`DeflateConfig::validate`](super::DeflateConfig::validate)
    /// checks a configuration).
    pub fn new(window_bits: u8, level: u32, mem_level: u8) -> Self {
        assert!(
            (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&window_bits) && level <= 9 && (1..=9).contains(&mem_level),
            "deflate parameters out of range: window_bits {window_bits} (9..=15), level {level} (0..=9), mem_level {mem_level} (1..=9)"
        );
        let config = zlib_rs::DeflateConfig {
            level: level as i32,
            window_bits: -i32::from(window_bits),
            mem_level: i32::from(mem_level),
            ..zlib_rs::DeflateConfig::default()
        };
        Self { inner: Deflate::new_with_config(config), dirty: false }
    }

    /// Appends the compressed form of `payload` to `out`: a sync flush with the trailing
    /// `00 00 ff ff` removed, never a final block. An empty payload is the single byte
    /// `00` (an empty stored block once the receiver appends the tail). With `reset`
    /// (no context takeover) the state is reset after the message, so the next message
    /// does not refer to this one.
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut, reset: bool) {
        let before = out.len();
        if payload.is_empty() {
            // zlib emits nothing for a second sync flush in a row; an empty stored block
            // is what it would say, and it leaves the window as it is.
            out.extend_from_slice(&[0x00]);
        } else {
            self.deflate(payload, out);
            self.dirty = true;
        }
        if reset {
            self.reset();
        }
        COUNTS.with(|c| {
            let mut n = c.get();
            n.compressed_in += payload.len() as u64;
            n.compressed_out += (out.len() - before) as u64;
            c.set(n);
        });
    }

    fn deflate(&mut self, payload: &[u8], out: &mut BytesMut) {
        let start = out.len();
        let mut input = payload;
        loop {
            // Text compresses to well under half; incompressible data takes a few rounds.
            let room = (input.len() / 2 + 64).clamp(MIN_ROOM, MAX_ROOM);
            let len = out.len();
            out.resize(len + room, 0);
            let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
            let status = self.inner.compress(input, &mut out[len..], DeflateFlush::SyncFlush);
            let consumed = (self.inner.total_in() - in0) as usize;
            let produced = (self.inner.total_out() - out0) as usize;
            out.truncate(len + produced);
            input = &input[consumed..];
            // Only a broken stream state errs; ours is always initialised and never finished.
            let status = status.expect("zlib-rs deflate on a valid stream");
            if input.is_empty() && (produced < room || status == Status::BufError) {
                break;
            }
        }
        // A sync flush always ends with an empty stored block: drop its 4 bytes.
        debug_assert!(out[start..].ends_with(&TAIL), "sync flush ends with 00 00 ff ff");
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }

    /// Forgets the context: the next message is compressed as if it were the first.
    pub fn reset(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.inner.reset();
        }
    }
}

/// Inflates whole messages for one direction (RFC 7692 7.2.2).
///
/// Memory: zlib-rs allocates a 32 KiB window whatever the window bits, plus its state:
/// 47,552 bytes measured (zlib's formula, `1 << window_bits` plus a few KiB, does not
/// hold for it), allocated by [`new`](Self::new) and kept until drop. So it always
/// inflates with 15 bits, which takes a stream of any window and resets in place.
pub struct Decompressor {
    inner: Inflate,
    /// Something was inflated since the last reset.
    dirty: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").field("dirty", &self.dirty).finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A raw inflate stream for a peer compressing with at most `1 << window_bits`
    /// bytes of window, 8..=15 (8 included: zlib-based peers told 8 compress with 9).
    /// It inflates with a 15-bit window, which takes all of them (see the type's docs).
    ///
    /// # Panics
    ///
    /// On `window_bits` outside 8..=15.
    pub fn new(window_bits: u8) -> Self {
        assert!((8..=MAX_WINDOW_BITS).contains(&window_bits), "inflate window_bits {window_bits} out of 8..=15");
        Self { inner: Inflate::new(false, MAX_WINDOW_BITS), dirty: false }
    }

    /// Inflates one message's compressed bytes (all of its frames' payloads,
    /// concatenated), appending `00 00 ff ff` itself, into `out`.
    ///
    /// It works in bounded steps and never lets `out` hold more than `limit + 1` bytes:
    /// once the message would make `out` longer than `limit` it stops with
    /// [`InflateError::TooBig`], so a zip bomb costs at most `limit + 1` bytes of buffer
    /// (plus `out`'s capacity on entry, if larger).
    ///
    /// A message that ends in a final block (BFINAL) is accepted (RFC 7692 7.2.3.4) and
    /// the state is then reset; data after the final block other than the tail is
    /// corrupt. With `reset` (the peer has no context takeover) the state is reset after
    /// the message. After an error the state is reset too.
    pub fn decompress(
        &mut self,
        compressed: &[u8],
        out: &mut BytesMut,
        limit: usize,
        reset: bool,
    ) -> Result<(), InflateError> {
        if compressed.is_empty() {
            // Not even the empty stored block's header byte: an empty message, as zlib
            // users (Node's ws) read it; zlib is left untouched, mid-nothing.
            return Ok(());
        }
        self.dirty = true;
        let before = out.len();
        let result = self.inflate(compressed, out, limit);
        COUNTS.with(|c| {
            let mut n = c.get();
            n.inflated_in += compressed.len() as u64;
            n.inflated_out += (out.len().saturating_sub(before)) as u64;
            c.set(n);
        });
        if reset || !matches!(result, Ok(false)) {
            self.reset();
        }
        result.map(drop)
    }

    /// Inflates; `Ok(true)` when the message ended in a final block.
    fn inflate(&mut self, compressed: &[u8], out: &mut BytesMut, limit: usize) -> Result<bool, InflateError> {
        let too_big = InflateError::TooBig { limit };
        if out.len() > limit {
            return Err(too_big);
        }
        let cap_max = limit.saturating_add(1);
        let mut parts = [compressed, &TAIL[..]];
        let mut part = 0;
        // Room handed to zlib per call, zeroed first: a first guess (text inflates to
        // several times its compressed size, 8x leaves zlib room for its fast loop, which
        // needs 258 bytes of output), doubled after each call that fills it, so a
        // small message never pays for zeroing a large buffer's spare capacity.
        let mut step = compressed.len().saturating_mul(8).clamp(MIN_ROOM, MAX_ROOM);
        loop {
            let len = out.len();
            if out.capacity() - len < MIN_ROOM && out.capacity() < cap_max {
                let target = out.capacity().saturating_mul(2).max(len + step).min(cap_max);
                grow(out, target);
            }
            let room = (out.capacity() - len).min(step);
            out.resize(len + room, 0);
            let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
            let status = self.inner.decompress(parts[part], &mut out[len..], InflateFlush::NoFlush);
            let consumed = (self.inner.total_in() - in0) as usize;
            let produced = (self.inner.total_out() - out0) as usize;
            out.truncate(len + produced);
            if produced == room {
                step = step.saturating_mul(2).min(MAX_ROOM);
            }
            parts[part] = &parts[part][consumed..];
            let status = status.map_err(|e| InflateError::Corrupt(e.as_str().to_owned()))?;
            if out.len() > limit {
                return Err(too_big);
            }
            if status == Status::StreamEnd {
                // A final block: only the tail (or part of it) may follow.
                if part == 0 && !TAIL.starts_with(parts[0]) {
                    return Err(InflateError::Corrupt("data after the final block".to_owned()));
                }
                return Ok(true);
            }
            if parts[part].is_empty() {
                if part == 0 {
                    part = 1;
                    continue;
                }
                if produced < room {
                    return Ok(false);
                }
            } else if consumed == 0 && produced == 0 {
                return Err(InflateError::Corrupt("inflate made no progress".to_owned()));
            }
        }
    }

    /// Forgets the context: the next message is inflated as if it were the first.
    pub fn reset(&mut self) {
        if std::mem::take(&mut self.dirty) {
            // zlib-rs' reset restores its default, raw 15-bit window: ours.
            self.inner.reset(false);
        }
    }
}

/// Makes `out`'s capacity at least `cap` without going past it where `reserve` would
/// double beyond it.
fn grow(out: &mut BytesMut, cap: usize) {
    if out.capacity() >= cap {
        return;
    }
    if out.capacity().saturating_mul(2) <= cap {
        // Vec growth: max(2 * capacity, needed) = cap here.
        out.reserve(cap - out.len());
    } else {
        let mut bigger = BytesMut::with_capacity(cap);
        bigger.extend_from_slice(out);
        *out = bigger;
    }
}

type CompressorKey = (u8, u32, u8);

thread_local! {
    static SHARED_COMPRESSORS: RefCell<Vec<(CompressorKey, Compressor)>> = const { RefCell::new(Vec::new()) };
    static SHARED_DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// What this thread's compressors and decompressors did since it started (every
/// [`Compressor::compress`] and [`Decompressor::decompress`] on it): the compression
/// ratio is `compressed_in / compressed_out` and `inflated_out / inflated_in`. A server
/// worker is one thread: it reads its own counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodecCounts {
    /// Bytes given to compressors.
    pub compressed_in: u64,
    /// Bytes they produced (what goes in frames).
    pub compressed_out: u64,
    /// Compressed bytes given to decompressors.
    pub inflated_in: u64,
    /// Bytes they produced (a message over its limit counts what was inflated of it).
    pub inflated_out: u64,
}

thread_local! {
    static COUNTS: std::cell::Cell<CodecCounts> = const { std::cell::Cell::new(CodecCounts {
        compressed_in: 0, compressed_out: 0, inflated_in: 0, inflated_out: 0,
    }) };
}

/// This thread's [`CodecCounts`].
pub fn thread_counts() -> CodecCounts {
    COUNTS.with(std::cell::Cell::get)
}

/// Runs `f` with this thread's shared compressor for `(window_bits, level, mem_level)`,
/// for connections without context takeover (uWebSockets' `SHARED_COMPRESSOR`: one per
/// worker thread and setting, nothing per connection; a broadcast compressed once).
///
/// The compressor is reset after `f` if `f` left it with context, so every message
/// compressed here inflates on its own. A call nested inside `f` gets a fresh
/// compressor. Panics as [`Compressor::new`] does on out-of-range values.
///
/// ```
/// use bytes::BytesMut;
/// use ringwire_conn::deflate::{Decompressor, with_shared_compressor};
/// let mut wire = BytesMut::new();
/// with_shared_compressor(15, 6, 8, |c| c.compress(b"to everyone", &mut wire, true));
/// let mut text = BytesMut::new();
/// Decompressor::new(15).decompress(&wire, &mut text, 1024, true)?;
/// assert_eq!(&text[..], b"to everyone");
/// # Ok::<(), ringwire_conn::deflate::InflateError>(())
/// ```
pub fn with_shared_compressor<R>(
    window_bits: u8,
    level: u32,
    mem_level: u8,
    f: impl FnOnce(&mut Compressor) -> R,
) -> R {
    let key = (window_bits, level, mem_level);
    let taken =
        SHARED_COMPRESSORS.with_borrow_mut(|v| v.iter().position(|(k, _)| *k == key).map(|i| v.swap_remove(i).1));
    let mut c = taken.unwrap_or_else(|| Compressor::new(window_bits, level, mem_level));
    let r = f(&mut c);
    c.reset();
    SHARED_COMPRESSORS.with_borrow_mut(|v| {
        if !v.iter().any(|(k, _)| *k == key) {
            v.push((key, c));
        }
    });
    r
}

/// Runs `f` with this thread's shared decompressor, for inflating messages from peers
/// without context takeover. `window_bits` is the peer's (8..=15); like every
/// [`Decompressor`] the shared one inflates with 15 bits, so all peers share it.
///
/// It is reset after `f` if `f` left it with context, so no message can refer to
/// another's data (another connection's, above all). A call nested inside `f` gets a
/// fresh decompressor.
pub fn with_shared_decompressor<R>(window_bits: u8, f: impl FnOnce(&mut Decompressor) -> R) -> R {
    assert!((8..=MAX_WINDOW_BITS).contains(&window_bits), "inflate window_bits {window_bits} out of 8..=15");
    let taken = SHARED_DECOMPRESSOR.with_borrow_mut(Option::take);
    let mut d = taken.unwrap_or_else(|| Decompressor::new(window_bits));
    let r = f(&mut d);
    d.reset();
    SHARED_DECOMPRESSOR.with_borrow_mut(|slot| {
        slot.get_or_insert(d);
    });
    r
}
