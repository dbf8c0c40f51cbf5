//! [`PreparedMessage`]: a message framed once and shared by many connections.

use crate::deflate::with_shared_compressor;
use crate::{OpCode, Payload, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use ringwire_frame::FrameHeader;
use std::sync::{Arc, OnceLock};

/// A message framed once, as a server sends it (one unmasked frame), into shared
/// `Bytes`: broadcasting it to N connections copies nothing. With permessage-deflate in
/// shared mode (no context takeover) it is also compressed once, by the first connection
/// that sends it, for all (clones share that).
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    opcode: OpCode,
    payload: Bytes,
    wire: Bytes,
    /// The payload compressed with the settings it was compressed with.
    deflated: Arc<OnceLock<(DeflateKey, Bytes)>>,
}

/// permessage-deflate settings a compressed payload depends on: window bits, level,
/// memory level.
type DeflateKey = (u8, u32, u8);

impl PartialEq for PreparedMessage {
    fn eq(&self, other: &Self) -> bool {
        (self.opcode, &self.payload) == (other.opcode, &other.payload)
    }
}

impl Eq for PreparedMessage {}

impl PreparedMessage {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::framed(OpCode::Text, text.into().into_bytes())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::framed(OpCode::Binary, data.into())
    }

    /// A text or binary message, by the payload's type as [`Connection::send`] decides
    /// (the same as `PreparedMessage::from(payload)`).
    ///
    /// [`Connection::send`]: crate::Connection::send
    pub fn new(payload: impl Into<Payload>) -> Self {
        match payload.into() {
            Payload::Text(t) => Self::text(t),
            Payload::Binary(b) => Self::binary(b),
        }
    }

    fn framed(opcode: OpCode, payload: Bytes) -> Self {
        let h = FrameHeader::new(opcode, payload.len() as u64).encode();
        let mut wire = BytesMut::with_capacity(h.len() + payload.len());
        wire.extend_from_slice(h.as_bytes());
        wire.extend_from_slice(&payload);
        let wire = wire.freeze();
        let payload = wire.slice(h.len()..);
        Self { opcode, payload, wire, deflated: Arc::default() }
    }

    /// Text or Binary.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The payload (a view into the wire bytes).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The whole frame as a server writes it.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The payload as permessage-deflate without context takeover compresses it: once
    /// for all connections that use these settings (the first ones asked for; other
    /// settings compress anew each time).
    pub(crate) fn deflated(&self, window_bits: u8, level: u32, mem_level: u8) -> Bytes {
        let key = (window_bits, level, mem_level);
        if let Some((k, z)) = self.deflated.get()
            && *k == key
        {
            return z.clone();
        }
        let mut z = BytesMut::with_capacity(self.payload.len() / 2 + 64);
        with_shared_compressor(window_bits, level, mem_level, |c| c.compress(&self.payload, &mut z, true));
        let z = z.freeze();
        let _ = self.deflated.set((key, z.clone()));
        z
    }
}

/// Frames anything [`Connection::send`](crate::Connection::send) takes: `&str`,
/// `String`, `Utf8Bytes` as text; `Bytes`, `Vec<u8>`, `&[u8]` as binary.
impl<T: Into<Payload>> From<T> for PreparedMessage {
    fn from(payload: T) -> Self {
        Self::new(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_once() {
        let p = PreparedMessage::text("hey");
        assert_eq!(&p.wire()[..], b"\x81\x03hey");
        assert_eq!(&p.payload()[..], b"hey");
        let b = PreparedMessage::binary(vec![0u8; 200]);
        assert_eq!(&b.wire()[..4], &[0x82, 126, 0, 200]);
        assert_eq!(b.opcode(), OpCode::Binary);
        assert_eq!(PreparedMessage::from("hey"), p);
        assert_eq!(PreparedMessage::from(vec![0u8; 200]), b);
    }
}
