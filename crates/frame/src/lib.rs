//! # ringwire-frame
//!
//! The RFC 6455 frame codec at the bottom of ringwire: no I/O, no async, no allocation
//! on the parse path.
//!
//! - [`decode_header`] parses a header from a byte slice and enforces every section 5
//!   rule (reserved opcodes and RSV bits, control frame limits, masking direction,
//!   64-bit length) and the configured frame limit; short input is
//!   [`Decoded::NeedMore`], not an error.
//! - [`FrameHeader::encode`] writes a header (2 to 14 bytes) into a stack buffer; the
//!   payload is never copied to be framed.
//! - [`apply_mask`] unmasks in place with the fastest kernel this CPU has.
//! - [`Utf8Validator`] validates text as it arrives, fail-fast.
//! - [`CloseCode`] and [`parse_close_payload`] cover close frames.
//!
//! ```
//! use ringwire_frame::{apply_mask, decode_header, DecodeConfig, Decoded, OpCode, Role};
//!
//! // A masked "Hello" from a client (RFC 6455 section 5.7).
//! let mut wire = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let cfg = DecodeConfig::new(Role::Server, 64 << 10);
//! let Decoded::Header(h, n) = decode_header(&wire, &cfg)? else { unreachable!() };
//! assert_eq!((h.opcode, h.payload_len, n), (OpCode::Text, 5, 6));
//! let payload = &mut wire[n..];
//! apply_mask(payload, h.mask.unwrap(), 0);
//! assert_eq!(payload, b"Hello");
//! # Ok::<(), ringwire_frame::FrameError>(())
//! ```

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod close;
mod error;
mod header;
pub mod mask;
mod opcode;
mod utf8;

pub use close::{CloseCode, ClosePayload, ClosePayloadError, MAX_CLOSE_REASON, parse_close_payload, truncate_utf8};
pub use error::FrameError;
pub use header::{
    DecodeConfig, Decoded, FrameHeader, HeaderBuf, MAX_HEADER_LEN, RSV1, RSV2, RSV3, Role, decode_header,
};
pub use mask::apply_mask;
pub use opcode::OpCode;
pub use utf8::{InvalidUtf8, Utf8Validator, validate_utf8};

/// The most a control frame (close, ping, pong) may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
