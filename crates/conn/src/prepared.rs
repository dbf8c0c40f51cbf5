//! [`PreparedMessage`]: a message framed once and shared by many connections.

use crate::{OpCode, Payload, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use ringwire_frame::FrameHeader;

/// A message framed once, as a server sends it (one unmasked frame), into shared
/// `Bytes`: broadcasting it to N connections copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMessage {
    opcode: OpCode,
    payload: Bytes,
    wire: Bytes,
}

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
        Self { opcode, payload, wire }
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
