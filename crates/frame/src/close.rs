//! Close codes (RFC 6455 section 7.4) and the close frame payload.

use core::fmt;

/// A close status code. A newtype rather than an enum, so codes this crate does not
/// name (application codes 3000-4999, future IANA codes) pass through unchanged.
///
/// The constants and descriptions are WebSocket-Node's `CLOSE_REASON_*` and
/// `CLOSE_DESCRIPTIONS`, plus the IANA-registered 1012-1014.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: an endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNPROCESSABLE_INPUT: Self = Self(1003);
    /// 1004: reserved; never sent or accepted on the wire.
    pub const RESERVED: Self = Self(1004);
    /// 1005: no status code was present (a close frame with an empty payload). Local only.
    pub const NOT_PROVIDED: Self = Self(1005);
    /// 1006: the connection ended without a close frame. Local only.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: payload inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_DATA: Self = Self(1007);
    /// 1008: a message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const EXTENSION_REQUIRED: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_SERVER_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Local only.
    pub const TLS_HANDSHAKE_FAILED: Self = Self(1015);

    /// The numeric code.
    #[inline]
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// WebSocket-Node's `CLOSE_DESCRIPTIONS` text, or `None` for an unnamed code.
    pub const fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "Normal connection closure",
            1001 => "Remote end going away",
            1002 => "Protocol error",
            1003 => "Unprocessable input",
            1004 => "Reserved",
            1005 => "Reason not provided",
            1006 => "Abnormal closure, no close frame",
            1007 => "Invalid frame payload data",
            1008 => "Policy violation",
            1009 => "Message too big",
            1010 => "Extension required",
            1011 => "Internal server error",
            1012 => "Service restart",
            1013 => "Try again later",
            1014 => "Bad gateway",
            1015 => "TLS handshake failed",
            _ => return None,
        })
    }

    /// Whether the code may appear in a close frame on the wire, sent or received:
    /// 1000-1003, 1007-1014 and 3000-4999. 1004, 1005, 1006, 1015, the rest of
    /// 1000-2999 and everything outside 1000-4999 may not.
    #[inline]
    pub const fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => write!(f, "{} ({d})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Default for CloseCode {
    /// [`NORMAL`](Self::NORMAL) (1000), the code of WebSocket-Node's `close()` without
    /// arguments.
    fn default() -> Self {
        Self::NORMAL
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        Self(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> Self {
        c.0
    }
}

/// The longest close reason that fits a control frame: 125 - 2 bytes of code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Why a received close payload is invalid. Each maps to the code we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// A one-byte payload: a code needs two (1002).
    TruncatedCode,
    /// A code that may not appear on the wire (1002).
    CodeNotAllowed(u16),
    /// The reason is not valid UTF-8 (1007).
    InvalidUtf8,
}

impl ClosePayloadError {
    /// The close code to answer this fault with.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::TruncatedCode | Self::CodeNotAllowed(_) => CloseCode::PROTOCOL_ERROR,
            Self::InvalidUtf8 => CloseCode::INVALID_DATA,
        }
    }
}

impl fmt::Display for ClosePayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedCode => f.write_str("close frame payload of 1 byte"),
            Self::CodeNotAllowed(c) => write!(f, "close code {c} is not allowed on the wire"),
            Self::InvalidUtf8 => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for ClosePayloadError {}

/// Parses a received (unmasked) close payload: empty, or a 2-byte code plus a UTF-8
/// reason. `Ok(None)` for an empty payload (reported locally as 1005).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ClosePayloadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ClosePayloadError::TruncatedCode),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_allowed_on_wire() {
                return Err(ClosePayloadError::CodeNotAllowed(code.0));
            }
            let reason = simdutf8::basic::from_utf8(reason).map_err(|_| ClosePayloadError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// A close payload ready to frame: at most 125 bytes, on the stack.
#[derive(Clone, Copy)]
pub struct ClosePayload {
    buf: [u8; 125],
    len: u8,
}

impl ClosePayload {
    /// An empty payload (no code, no reason).
    pub const EMPTY: Self = Self { buf: [0; 125], len: 0 };

    /// Encodes `code` and `reason`. The reason is cut at a character boundary to at
    /// most [`MAX_CLOSE_REASON`] bytes, so the result is always a valid control frame.
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut buf = [0u8; 125];
        buf[..2].copy_from_slice(&code.0.to_be_bytes());
        let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
        buf[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        Self { buf, len: (2 + reason.len()) as u8 }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl fmt::Debug for ClosePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClosePayload").field(&self.as_bytes()).finish()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_rules_match_autobahn_7_7_and_7_9() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(ok).is_allowed_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(bad).is_allowed_on_wire(), "{bad}");
        }
    }

    #[test]
    fn descriptions_are_the_specs() {
        assert_eq!(CloseCode::NORMAL.description(), Some("Normal connection closure"));
        assert_eq!(CloseCode::ABNORMAL.description(), Some("Abnormal closure, no close frame"));
        assert_eq!(CloseCode::TLS_HANDSHAKE_FAILED.description(), Some("TLS handshake failed"));
        assert_eq!(CloseCode(4000).description(), None);
        assert_eq!(CloseCode::MESSAGE_TOO_BIG.to_string(), "1009 (Message too big)");
    }

    #[test]
    fn parse_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[3]), Err(ClosePayloadError::TruncatedCode));
        assert_eq!(parse_close_payload(&[0x03, 0xE8]), Ok(Some((CloseCode::NORMAL, ""))));
        assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some((CloseCode::NORMAL, "bye"))));
        assert_eq!(parse_close_payload(&[0x03, 0xED]), Err(ClosePayloadError::CodeNotAllowed(1005)));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(ClosePayloadError::InvalidUtf8));
        assert_eq!(ClosePayloadError::InvalidUtf8.close_code(), CloseCode::INVALID_DATA);
        assert_eq!(ClosePayloadError::TruncatedCode.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn encode_truncates_on_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let p = ClosePayload::new(CloseCode::GOING_AWAY, &long);
        assert!(p.as_bytes().len() <= 125);
        let (code, reason) = parse_close_payload(p.as_bytes()).unwrap().unwrap();
        assert_eq!(code, CloseCode::GOING_AWAY);
        assert_eq!(reason.len(), 122); // 61 two-byte chars
        assert_eq!(ClosePayload::new(CloseCode::NORMAL, "ok").as_bytes(), b"\x03\xe8ok");
    }
}
