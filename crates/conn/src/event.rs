//! What the connection hands out: events, messages, frames, and the small value types
//! that go with them.

use crate::{CloseCode, ConnError, OpCode};
use bytes::Bytes;
use bytestring::ByteString;
use core::fmt;
use core::ops::Deref;

/// `Bytes` known to hold valid UTF-8: derefs to `str` without a copy or a new check.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(ByteString);

impl Utf8Bytes {
    /// Wraps a static string without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(ByteString::from_static(s))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTF-8 bytes, shared (no copy).
    #[inline]
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// The UTF-8 bytes, shared (no copy).
    #[inline]
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = core::str::Utf8Error;
    /// Validates `bytes` once; no copy.
    #[inline]
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        ByteString::try_from(bytes).map(Self)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(ByteString::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    /// Copies the string.
    fn from(s: &str) -> Self {
        Self(ByteString::from(s))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(u: Utf8Bytes) -> Self {
        u.into_bytes()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Connection::send`](crate::Connection::send) accepts: text or binary, decided
/// by the type (Node's `send` sends a `Buffer` as binary and anything else as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Sent as a text message.
    Text(Utf8Bytes),
    /// Sent as a binary message.
    Binary(Bytes),
}

impl Payload {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Utf8Bytes> for Payload {
    fn from(t: Utf8Bytes) -> Self {
        Self::Text(t)
    }
}
impl From<String> for Payload {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}
impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Self::Text(s.into())
    }
}
impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}
impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(b.into())
    }
}
impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Self::Binary(Bytes::copy_from_slice(b))
    }
}
impl From<Message> for Payload {
    fn from(m: Message) -> Self {
        match m {
            Message::Text(t) => Self::Text(t),
            Message::Binary(b) => Self::Binary(b),
        }
    }
}

/// A whole received message (Node's `WebSocketMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `type: 'utf8'`: validated text, no copy.
    Text(Utf8Bytes),
    /// `type: 'binary'`.
    Binary(Bytes),
}

impl Message {
    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One received frame, unmasked (Node's `WebSocketFrame`), emitted for every frame
/// when [`Config::assemble_fragments`](crate::Config) is off: data, continuation, ping,
/// pong and close frames alike, in stream order. A control frame is still handled after
/// its `Frame` event (a ping is answered and reported as [`Event::Ping`], a pong as
/// [`Event::Pong`], a close frame starts or ends the close handshake), as in Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Final fragment of its message (always true for a control frame).
    pub fin: bool,
    /// Text, Binary, Continuation, Ping, Pong or Close.
    pub opcode: OpCode,
    /// The unmasked payload, as received: for a close frame the raw payload (the code
    /// in two bytes, then the reason), checked only after this event. Text is
    /// UTF-8-checked across frames, but a code point may be split between two frames,
    /// so it is given as bytes.
    pub payload: Bytes,
}

/// An application tag for a send, reported back as [`Event::SendComplete`] once the
/// whole message is written, or [`Event::SendFailed`] if the connection ends first
/// (the counterpart of Node's send callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendToken(pub u64);

/// The outcome of a successful send.
#[must_use = "BufferFull asks the sender to wait for Event::Drain"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the buffered amount is at or below the high-water mark (Node's `true`).
    Queued,
    /// Queued, but the buffered amount is above the high-water mark: wait for
    /// [`Event::Drain`] before sending more (Node's `false`).
    BufferFull,
}

/// Connection state (Node's `state`). It only ever moves forward:
/// `Open -> {PeerRequestedClose | Ending} -> Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// `'open'`: messages flow both ways.
    Open,
    /// `'peer_requested_close'`: the peer's close frame arrived; our echo is queued.
    PeerRequestedClose,
    /// `'ending'`: we sent a close frame and wait for the peer's (up to `close_timeout`).
    Ending,
    /// `'closed'`: the close handshake is over or the connection was dropped.
    Closed,
}

impl State {
    /// WebSocket-Node's string for this state.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::PeerRequestedClose => "peer_requested_close",
            Self::Ending => "ending",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the connection reports. Drain with [`Connection::poll_event`](crate::Connection::poll_event)
/// after every input and command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A whole message (Node `'message'`).
    Message(Message),
    /// A received frame, any opcode, only when `assemble_fragments` is off (Node
    /// `'frame'`); a control frame's own event (`Ping`, `Pong`, the close handshake)
    /// follows it.
    Frame(Frame),
    /// A ping arrived (Node `'ping'`). A pong with the same payload is queued unless
    /// [`Connection::cancel_pong`](crate::Connection::cancel_pong) is called before the
    /// next `poll_event` or `poll_transmit` (or `auto_pong` is off).
    Ping(Bytes),
    /// A pong arrived (Node `'pong'`).
    Pong(Bytes),
    /// The buffered amount fell to [`Config::low_water_mark`](crate::Config::low_water_mark)
    /// or below after a `BufferFull` (Node `'drain'`). Node emits it when the socket's
    /// buffer is empty: `low_water_mark = 0` gives exactly that (Drain when
    /// [`buffered_amount`](crate::Connection::buffered_amount) reaches 0); the default,
    /// 16 KiB, lets the application refill before the socket runs dry.
    Drain,
    /// Reading stopped after [`Connection::pause`](crate::Connection::pause) (Node `'pause'`).
    Pause,
    /// Reading restarted after [`Connection::resume`](crate::Connection::resume) (Node `'resume'`).
    Resume,
    /// The connection is closed, cleanly or not (Node `'close'`); always the last
    /// protocol event. `code` is 1005 when the peer's close frame had no code and 1006
    /// when the connection ended without a close frame.
    Close {
        /// The close code.
        code: CloseCode,
        /// The close reason text (may be empty).
        description: String,
    },
    /// Something went wrong (Node `'error'`): a protocol fault by the peer, a buffer
    /// limit, a keepalive timeout. A `Close` follows. A clean close is never an error.
    Error(ConnError),
    /// Every byte of the message sent with this token was written.
    SendComplete(SendToken),
    /// The connection ended before the message sent with this token was written.
    SendFailed(SendToken),
}

/// Facts about the connection fixed at the handshake (Node's `protocol`,
/// `extensions`, `webSocketVersion`, `remoteAddress`, `remoteAddresses`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The negotiated subprotocol.
    pub protocol: Option<String>,
    /// Negotiated extensions as the handshake stated them (Node `extensions`). When it
    /// is left empty and [`deflate`](Self::deflate) is set, the connection reports
    /// permessage-deflate's response value here.
    pub extensions: Vec<String>,
    /// The permessage-deflate parameters agreed in the handshake, if any: the connection
    /// then accepts compressed messages (RSV1) and compresses what it sends.
    pub deflate: Option<crate::deflate::DeflateParams>,
    /// Protocol version: 13, or 8 for old clients.
    pub version: u8,
    /// The peer's IP address: on a server, the socket peer, or when that is a trusted
    /// proxy the right-most `X-Forwarded-For` entry that is not one (see
    /// [`handshake::forwarded_addresses`](crate::handshake::forwarded_addresses)).
    pub remote_address: Option<String>,
    /// `X-Forwarded-For` entries (when the peer is a trusted proxy) followed by the
    /// socket peer.
    pub remote_addresses: Vec<String>,
}

impl Default for ConnInfo {
    fn default() -> Self {
        Self {
            protocol: None,
            extensions: Vec::new(),
            deflate: None,
            version: 13,
            remote_address: None,
            remote_addresses: Vec::new(),
        }
    }
}

impl ConnInfo {
    /// Version 13, no protocol, no addresses.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the peer's socket address as the only address.
    pub fn with_remote_address(mut self, addr: impl Into<String>) -> Self {
        let a = addr.into();
        self.remote_addresses = vec![a.clone()];
        self.remote_address = Some(a);
        self
    }

    /// Sets the negotiated subprotocol.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }
}
