//! Header-level protocol errors.

use crate::CloseCode;
use core::fmt;

/// A frame header that breaks an RFC 6455 section 5 rule or a configured limit.
/// Each variant names the rule; [`FrameError::close_code`] gives the code to close with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Opcode 3-7 or 0xB-0xF (section 5.2).
    ReservedOpcode(u8),
    /// An RSV bit set that no negotiated extension allows (section 5.2). Holds the bits (0b0RRR0000 >> 4).
    ReservedBitsSet(u8),
    /// A close, ping or pong with a payload over 125 bytes (section 5.5).
    ControlFrameTooLong(u64),
    /// A close, ping or pong with FIN clear (section 5.5).
    FragmentedControlFrame,
    /// A 64-bit length with its most significant bit set (section 5.2).
    LengthTopBitSet,
    /// A length not encoded in the minimal number of bytes (section 5.2).
    NonMinimalLength,
    /// A server received an unmasked frame (section 5.1).
    UnmaskedClientFrame,
    /// A client received a masked frame (section 5.1).
    MaskedServerFrame,
    /// The payload exceeds the configured `max_frame_size` (policy, 1009).
    FrameTooLarge {
        /// Announced payload length.
        len: u64,
        /// Configured limit.
        max: u64,
    },
}

impl FrameError {
    /// The close code to fail the connection with: 1009 for a size limit, 1002 otherwise.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ReservedOpcode(op) => write!(f, "reserved opcode 0x{op:X}"),
            Self::ReservedBitsSet(bits) => write!(f, "RSV bits 0b{bits:03b} set without a negotiated extension"),
            Self::ControlFrameTooLong(n) => write!(f, "control frame payload of {n} bytes (max 125)"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::LengthTopBitSet => f.write_str("64-bit payload length with the top bit set"),
            Self::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            Self::UnmaskedClientFrame => f.write_str("unmasked frame from a client"),
            Self::MaskedServerFrame => f.write_str("masked frame from a server"),
            Self::FrameTooLarge { len, max } => write!(f, "frame of {len} bytes exceeds the maximum of {max}"),
        }
    }
}

impl std::error::Error for FrameError {}
