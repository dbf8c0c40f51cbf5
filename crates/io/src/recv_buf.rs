//! [`RecvBuf`]: the bytes one receive delivered, as [`Handler::on_data`](crate::Handler::on_data)
//! hands them over.

use std::fmt;
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
    data: &'a mut [u8],
    lend: Option<Lend<'a>>,
}

impl<'a> RecvBuf<'a> {
    /// Bytes of a buffer of the caller's (a layer over the loop, such as TLS, handing
    /// plaintext on): [`into_bytes`](Self::into_bytes) copies them.
    pub fn from_slice(data: &'a mut [u8]) -> RecvBuf<'a> {
        RecvBuf { data, lend: None }
    }

    /// `data`, a ring buffer that `lend` can lend.
    pub(crate) fn lendable(data: &'a mut [u8], lend: Lend<'a>) -> RecvBuf<'a> {
        RecvBuf { data, lend: Some(lend) }
    }

    /// The bytes as [`Bytes`], with whatever was rewritten in place. On io_uring, a receive
    /// of at least an eighth of a receive buffer ([`LoopConfig::buf_size`](crate::LoopConfig::buf_size))
    /// is lent without a copy while fewer than a quarter of the loop's buffers
    /// ([`LoopConfig::buf_count`](crate::LoopConfig::buf_count)) are lent out: the buffer
    /// returns to the ring once the last `Bytes` of it is dropped. Anything else is copied.
    pub fn into_bytes(self) -> Bytes {
        let RecvBuf { data, lend } = self;
        if let Some(lend) = lend
            && let Some(b) = lend.lend(data.len())
        {
            return b;
        }
        Bytes::copy_from_slice(data)
    }
}

impl Deref for RecvBuf<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl DerefMut for RecvBuf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.data
    }
}

impl From<RecvBuf<'_>> for Bytes {
    fn from(buf: RecvBuf<'_>) -> Bytes {
        buf.into_bytes()
    }
}

impl fmt::Debug for RecvBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf").field("len", &self.data.len()).field("lendable", &self.lend.is_some()).finish()
    }
}
