//! Errors: faults by the peer ([`ProtocolError`], inside [`ConnError`]) are kept apart
//! from misuse by the caller ([`SendError`]).

use crate::CloseCode;
use ringwire_frame::{ClosePayloadError, FrameError};

/// A fault by the peer. The connection is failed with [`ProtocolError::close_code`]
/// and the error's text as the close reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame header broke a section 5 rule or the frame size limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A continuation frame with no fragmented message in progress (1002).
    #[error("unexpected continuation frame")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message was in progress (1002).
    #[error("expected a continuation frame")]
    ExpectedContinuation,
    /// Invalid UTF-8 in a text message, detected at the first bad byte (1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// The message's running total exceeds `max_received_message_size` (1009).
    #[error("message of at least {size} bytes exceeds the maximum of {max}")]
    MessageTooBig {
        /// Bytes announced so far, this frame included.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A close frame with a 1-byte payload, a forbidden code or a non-UTF-8 reason.
    #[error("invalid close frame: {0}")]
    InvalidClosePayload(ClosePayloadError),
    /// RSV1 (permessage-deflate's "compressed") on a control or continuation frame
    /// (RFC 7692 6.1: only a message's first frame carries it) (1002).
    #[error("RSV1 set on a control or continuation frame")]
    CompressedControlOrContinuation,
    /// A compressed message that does not inflate (1007).
    #[error("invalid compressed data: {0}")]
    InvalidCompressedData(String),
}

impl ProtocolError {
    /// The code to close with: 1002, 1007 or 1009.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::Frame(e) => e.close_code(),
            Self::UnexpectedContinuation | Self::ExpectedContinuation => CloseCode::PROTOCOL_ERROR,
            Self::InvalidUtf8 => CloseCode::INVALID_DATA,
            Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidClosePayload(e) => e.close_code(),
            Self::CompressedControlOrContinuation => CloseCode::PROTOCOL_ERROR,
            Self::InvalidCompressedData(_) => CloseCode::INVALID_DATA,
        }
    }
}

impl From<&ProtocolError> for CloseCode {
    fn from(e: &ProtocolError) -> Self {
        e.close_code()
    }
}

/// Why the connection reported [`Event::Error`](crate::Event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer broke the protocol; we closed with its code.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A send would have exceeded `max_buffered`: the peer does not read (1008).
    #[error("{buffered} bytes buffered, a send of {len} more would exceed the limit of {limit}")]
    BufferLimitExceeded {
        /// Bytes buffered before the send.
        buffered: usize,
        /// The refused send's wire size.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The peer stayed silent through the keepalive grace period (dropped with 1006).
    #[error("peer not responding to keepalive ping")]
    KeepaliveTimeout,
    /// The peer did not answer our close frame within `close_timeout`.
    #[error("peer did not answer the close frame in time")]
    CloseTimeout,
    /// Reading from or writing to the socket failed (`ECONNRESET`, `EPIPE`, a TCP
    /// keepalive that found the peer dead, ...): Node's `error` event with the socket's
    /// error. Reported by the drivers (the connection has no socket); a close with 1006
    /// follows.
    #[error("socket error: {kind} (os error {})", os_code.map_or_else(|| "none".to_owned(), |c| c.to_string()))]
    Socket {
        /// What failed, as std names it (`ConnectionReset`, `BrokenPipe`, `TimedOut`, ...).
        kind: std::io::ErrorKind,
        /// The OS error number (`errno`), when there is one.
        os_code: Option<i32>,
    },
}

impl ConnError {
    /// The [`ConnError::Socket`] for an I/O error.
    pub fn socket(error: &std::io::Error) -> Self {
        Self::Socket { kind: error.kind(), os_code: error.raw_os_error() }
    }
}

/// Misuse by the caller: the command was refused and nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is not open (a close was sent or received, or it is closed).
    #[error("connection is {0}, not open")]
    NotOpen(crate::State),
    /// A ping or pong payload over 125 bytes (never cut silently).
    #[error("control frame payload of {0} bytes (max 125)")]
    ControlPayloadTooLong(usize),
    /// A close code that may not be sent (1004, 1005, 1006, 1015, unassigned).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason over 123 bytes.
    #[error("close reason of {0} bytes (max 123)")]
    CloseReasonTooLong(usize),
    /// The buffered amount would exceed `max_buffered`.
    #[error("{buffered} bytes buffered, a send of {len} more would exceed the limit of {limit}")]
    BufferLimitExceeded {
        /// Bytes buffered before the send.
        buffered: usize,
        /// The refused send's wire size.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
}
