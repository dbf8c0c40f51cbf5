//! Frame opcodes (RFC 6455 section 5.2).

/// A frame opcode. Reserved opcodes (3-7, 0xB-0xF) are not representable:
/// [`OpCode::from_u8`] rejects them, so a decoded header always holds a known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: first frame of a text message.
    Text = 0x1,
    /// 0x2: first frame of a binary message.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Parses the low four bits of the first header byte; `None` for a reserved opcode.
    #[inline]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Close, ping and pong: at most 125 bytes and never fragmented.
    #[inline]
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// Text, binary and continuation.
    #[inline]
    pub const fn is_data(self) -> bool {
        !self.is_control()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nibble() {
        for v in 0u8..16 {
            match OpCode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op.as_u8(), v);
                    assert_eq!(op.is_control(), v >= 8);
                    assert_eq!(op.is_data(), v < 8);
                }
                None => assert!(matches!(v, 3..=7 | 0xB..=0xF), "{v} must be reserved"),
            }
        }
    }
}
