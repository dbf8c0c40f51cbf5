//! [`RecvBuf`]: the bytes one receive delivered, as [`Handler::on_data`](crate::Handler::on_data)
//! hands them over.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;

use crate::uring::Lend;

/// Bytes that arrived on a connection, in the loop's receive buffer.
///
/// A `&mut [u8]` to read or rewrite in place (it derefs to one), recycled when the handler
/// returns. Or kept without a copy: [`into_bytes`](Self::into_bytes) (also `Bytes::from`)
/// turns it into [`Bytes`]; on io_uring a large receive is then lent out of the loop's buffer
/// ring until the last `Bytes` of it is dropped, on any thread (with bounds, see
/// [`into_bytes`](Self::into_bytes)); elsewhere the bytes are copied.
pub struct RecvBuf<'a> {
    // A pointer, not a `&'a mut [u8]`: the lent `Bytes` read the same bytes through the
    // ring's own pointer while this value may still be alive in a caller, and a unique
    // reference held all that time would forbid it.
    ptr: *mut u8,
    len: usize,
    lend: Option<Lend<'a>>,
    _data: PhantomData<&'a mut [u8]>,
}

impl<'a> RecvBuf<'a> {
    /// Bytes of a buffer of the caller's (a layer over the loop, such as TLS, handing
    /// plaintext on): [`into_bytes`](Self::into_bytes) copies them.
    pub fn from_slice(data: &'a mut [u8]) -> RecvBuf<'a> {
        RecvBuf { ptr: data.as_mut_ptr(), len: data.len(), lend: None, _data: PhantomData }
    }

    /// The `len` bytes at `ptr`, in a ring buffer that `lend` can lend.
    ///
    /// # Safety
    /// `ptr`/`len` are valid for reads and writes for `'a`, and nothing else accesses them
    /// meanwhile except through what `lend` hands out.
    pub(crate) unsafe fn lendable(ptr: *mut u8, len: usize, lend: Lend<'a>) -> RecvBuf<'a> {
        RecvBuf { ptr, len, lend: Some(lend), _data: PhantomData }
    }

    /// Whether [`into_bytes`](Self::into_bytes) would lend the buffer instead of copying
    /// (a driver that keeps only part of the bytes copies that part itself otherwise).
    pub fn can_lend(&self) -> bool {
        self.lend.as_ref().is_some_and(|l| l.would_lend(self.len))
    }

    /// The bytes as [`Bytes`], with whatever was rewritten in place. On io_uring, a receive
    /// of at least an eighth of a receive buffer ([`LoopConfig::buf_size`](crate::LoopConfig::buf_size)),
    /// or of 4 KiB where that is less, is lent without a copy while fewer than a quarter of
    /// the loop's buffers ([`LoopConfig::buf_count`](crate::LoopConfig::buf_count)) are lent
    /// out: the buffer returns to the ring once the last `Bytes` of it (and, with incremental
    /// buffers, of every other receive in it) is dropped. Anything else is copied.
    pub fn into_bytes(self) -> Bytes {
        let len = self.len;
        if let Some(lend) = self.lend
            && let Some(b) = lend.lend(len)
        {
            return b;
        }
        // SAFETY: `ptr`/`len` stand for the `&'a mut [u8]` this value was made from.
        Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(self.ptr, len) })
    }
}

impl Deref for RecvBuf<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` stand for the `&'a mut [u8]` this value was made from; the
        // slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for RecvBuf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the slice borrows `self` mutably, so it is the only one.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl From<RecvBuf<'_>> for Bytes {
    fn from(buf: RecvBuf<'_>) -> Bytes {
        buf.into_bytes()
    }
}

impl fmt::Debug for RecvBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf").field("len", &self.len).field("lendable", &self.lend.is_some()).finish()
    }
}
