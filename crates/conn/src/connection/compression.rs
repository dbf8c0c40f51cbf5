//! permessage-deflate (RFC 7692) on a [`Connection`]: inflating the messages that arrive
//! compressed and compressing what is sent, with the codecs the handshake's parameters
//! call for.
//!
//! A direction without context takeover uses its thread's shared codec (nothing per
//! connection); one with context takeover keeps its own, created with its first message.

use super::Connection;
use crate::deflate::{
    Compressor, Decompressor, DeflateConfig, DeflateParams, InflateError, with_shared_compressor,
    with_shared_decompressor,
};
use crate::{Message, ProtocolError, Role, Utf8Bytes};
use bytes::{Bytes, BytesMut};

/// A connection's own codecs (context takeover), each created when first needed.
#[derive(Debug, Default)]
pub(super) struct Codecs {
    compressor: Option<Compressor>,
    decompressor: Option<Decompressor>,
}

/// The compression settings a connection uses: its config's, or the defaults when the
/// parameters were given without one (a hand-built [`ConnInfo`](crate::ConnInfo)).
fn settings(conn: &Connection) -> (u32, u8, usize) {
    let pick = |c: &DeflateConfig| (c.level, c.mem_level, c.threshold);
    conn.config.deflate.as_ref().map_or_else(|| pick(&DeflateConfig::default()), pick)
}

/// Inflates one compressed message of at most `limit` bytes; a text message's UTF-8 is
/// checked once inflated.
#[cold]
pub(super) fn inflate(
    codecs: &mut Option<Box<Codecs>>,
    params: DeflateParams,
    role: Role,
    limit: usize,
    text: bool,
    payload: &[u8],
) -> Result<Message, ProtocolError> {
    let (bits, takeover) = params.theirs(role);
    let mut out = BytesMut::new();
    let mut run = |d: &mut Decompressor| d.decompress(payload, &mut out, limit, !takeover);
    let inflated = if takeover {
        let own = codecs.get_or_insert_with(Box::default);
        run(own.decompressor.get_or_insert_with(|| Decompressor::new(bits)))
    } else {
        with_shared_decompressor(bits, run)
    };
    inflated.map_err(|e| match e {
        InflateError::TooBig { limit } => ProtocolError::MessageTooBig { size: limit as u64 + 1, max: limit },
        e => ProtocolError::InvalidCompressedData(e.to_string()),
    })?;
    let bytes = out.freeze();
    Ok(if text {
        Message::Text(Utf8Bytes::try_from(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
    } else {
        Message::Binary(bytes)
    })
}

impl Connection {
    /// `payload` compressed, if this connection compresses it (permessage-deflate was
    /// agreed and the message is not below the threshold).
    #[inline]
    pub(super) fn deflated(&mut self, payload: &[u8]) -> Option<Bytes> {
        let params = self.info.deflate()?;
        self.deflate_now(params, payload)
    }

    #[cold]
    fn deflate_now(&mut self, params: DeflateParams, payload: &[u8]) -> Option<Bytes> {
        let (level, mem_level, threshold) = settings(self);
        if payload.len() < threshold {
            return None;
        }
        let (bits, takeover) = params.ours(self.role);
        let mut out = BytesMut::with_capacity(payload.len() / 2 + 64);
        if takeover {
            let own = self.codecs.get_or_insert_with(Box::default);
            let c = own.compressor.get_or_insert_with(|| Compressor::new(bits, level, mem_level));
            c.compress(payload, &mut out, false);
        } else {
            with_shared_compressor(bits, level, mem_level, |c| c.compress(payload, &mut out, true));
        }
        Some(out.freeze())
    }

    /// A prepared message's payload compressed for this connection: compressed once for
    /// every recipient when this side has no context takeover (the message keeps it),
    /// else with this connection's own compressor. `None`: sent uncompressed.
    pub(super) fn deflated_prepared(&mut self, message: &crate::PreparedMessage) -> Option<Bytes> {
        let params = self.info.deflate()?;
        let (bits, takeover) = params.ours(self.role);
        if takeover {
            return self.deflate_now(params, message.payload());
        }
        let (level, mem_level, threshold) = settings(self);
        (message.payload().len() >= threshold).then(|| message.deflated(bits, level, mem_level))
    }
}
