//! [`WebSocketConnection`]: a connection as a handler sees it.

use bytes::Bytes;
use ringwire_conn::{
    CloseCode, Config, ConnInfo, Connection, Payload, PreparedMessage, Role, SendError, SendStatus, SendToken, State,
    Utf8Bytes,
};

/// One connection inside a handler call: WebSocket-Node's `WebSocketConnection`, its
/// getters and commands and nothing else. The server's `Ws` and the client's `ClientWs`
/// dereference to it and add what needs their side.
///
/// The driver keeps the rest of [`Connection`] (the bytes in and out, the timers) to
/// itself: a handler cannot feed or drain the stream behind its back. Every command
/// only queues; what it produces is written at the end of the event-loop turn,
/// coalesced with the rest of the turn's output.
pub struct WebSocketConnection<'a> {
    pub(crate) conn: &'a mut Connection,
    /// Set by [`drop_connection`](Self::drop_connection): the driver aborts the socket.
    pub(crate) dropped: &'a mut bool,
}

/// What a send did. Not `#[must_use]`: a handler that sends and moves on (an echo) needs
/// no `let _ =`; one that does flow control looks at [`Sent::BufferFull`] (and waits for
/// `on_drain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Queued; at most the high-water mark is buffered (Node's `true`).
    Queued,
    /// Queued, but more than the high-water mark is buffered: wait for `on_drain`
    /// before sending more (Node's `false`).
    BufferFull,
    /// Nothing was queued: the connection is not open, or the message would take the
    /// buffered amount over `max_buffered` (with the default policy the connection is
    /// then dropped with 1008, and `on_error` says so).
    Refused(SendError),
}

impl Sent {
    /// Whether the message was queued ([`Queued`](Self::Queued) or [`BufferFull`](Self::BufferFull)).
    pub fn is_queued(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }

    /// As the connection's own `send` says it: `Ok(status)` or `Err(why)`, for `?`.
    pub fn into_result(self) -> Result<SendStatus, SendError> {
        match self {
            Self::Queued => Ok(SendStatus::Queued),
            Self::BufferFull => Ok(SendStatus::BufferFull),
            Self::Refused(e) => Err(e),
        }
    }
}

impl From<Result<SendStatus, SendError>> for Sent {
    fn from(r: Result<SendStatus, SendError>) -> Self {
        match r {
            Ok(SendStatus::Queued) => Self::Queued,
            Ok(SendStatus::BufferFull) => Self::BufferFull,
            Err(e) => Self::Refused(e),
        }
    }
}

impl WebSocketConnection<'_> {
    // ---- commands -------------------------------------------------------------

    /// Sends text or binary, decided by the type (Node `send`): `String`, `&str`,
    /// [`Utf8Bytes`] as text; `Bytes`, `Vec<u8>`, `&[u8]` as binary.
    pub fn send(&mut self, data: impl Into<Payload>) -> Sent {
        self.conn.send(data, None).into()
    }

    /// Sends a text message (Node `sendUTF`).
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Sent {
        self.conn.send_text(text, None).into()
    }

    /// Sends a binary message (Node `sendBytes`); the payload is shared, not copied.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Sent {
        self.conn.send_binary(data, None).into()
    }

    /// [`send`](Self::send), never compressed even with permessage-deflate agreed: for a
    /// message that mixes a secret with what an attacker controls (CRIME, BREACH).
    pub fn send_uncompressed(&mut self, data: impl Into<Payload>) -> Sent {
        self.conn.send_uncompressed(data, None).into()
    }

    /// [`send`](Self::send) with Node's callback: the handler's `on_send_complete` gets
    /// `token` once every byte is written, or when the connection closes first.
    pub fn send_tracked(&mut self, data: impl Into<Payload>, token: SendToken) -> Sent {
        self.conn.send(data, Some(token)).into()
    }

    /// Sends a message framed once for many connections (see
    /// [`Connection::send_prepared`]).
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Sent {
        self.conn.send_prepared(message, None).into()
    }

    /// Sends a ping (Node `ping`); a payload over 125 bytes is an error, not cut.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.conn.ping(payload)
    }

    /// Sends an unsolicited pong (Node `pong`); pings are answered automatically.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.conn.pong(payload)
    }

    /// Starts the close handshake (Node `close`): `ws.close(CloseCode::default(), None)`
    /// is Node's `close()` (1000, the code's description as the reason); see
    /// [`Connection::close`].
    pub fn close<'r>(&mut self, code: CloseCode, reason: impl Into<Option<&'r str>>) -> Result<(), SendError> {
        self.conn.close(code, reason)
    }

    /// Closes at once (Node `drop`): what is not yet handed to the socket is discarded,
    /// a close frame is queued unless `skip_close_frame`, `on_close` follows, and the
    /// driver then destroys the socket (a TCP reset) instead of flushing it, so a peer
    /// that does not read cannot hold it. The close frame is best effort: it is handed
    /// to the event loop just before the abort, which may discard it.
    /// `reason`: as for [`close`](Self::close) (`None`: the code's description).
    pub fn drop_connection<'r>(&mut self, code: CloseCode, reason: impl Into<Option<&'r str>>, skip_close_frame: bool) {
        if self.conn.state() != State::Closed {
            *self.dropped = true;
        }
        self.conn.drop_connection(code, reason, skip_close_frame);
    }

    /// Stops reading from the peer (Node `pause`); `on_pause` follows.
    pub fn pause(&mut self) {
        self.conn.pause();
    }

    /// Reads again (Node `resume`); `on_resume` follows, then what arrived meanwhile.
    pub fn resume(&mut self) {
        self.conn.resume();
    }

    // ---- getters --------------------------------------------------------------

    /// The state (Node `state`).
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Whether the connection is open (Node `connected`).
    pub fn connected(&self) -> bool {
        self.conn.connected()
    }

    /// The close code once a close started or arrived (Node `closeReasonCode`).
    pub fn close_reason_code(&self) -> Option<CloseCode> {
        self.conn.close_reason_code()
    }

    /// The close reason (Node `closeDescription`).
    pub fn close_description(&self) -> Option<&str> {
        self.conn.close_description()
    }

    /// The negotiated subprotocol (Node `protocol`).
    pub fn protocol(&self) -> Option<&str> {
        self.conn.protocol()
    }

    /// Negotiated extensions (Node `extensions`).
    pub fn extensions(&self) -> &[String] {
        self.conn.extensions()
    }

    /// The protocol version, 13 or 8 (Node `webSocketVersion`).
    pub fn version(&self) -> u8 {
        self.conn.version()
    }

    /// The peer's IP address (Node `remoteAddress`; see [`Connection::remote_address`]).
    pub fn remote_address(&self) -> Option<&str> {
        self.conn.remote_address()
    }

    /// Forwarded addresses, then the peer (Node `remoteAddresses`).
    pub fn remote_addresses(&self) -> &[String] {
        self.conn.remote_addresses()
    }

    /// Bytes queued and not yet written, frame headers included.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// The connection's configuration (Node `config`).
    pub fn config(&self) -> &Config {
        self.conn.config()
    }

    /// Server or client.
    pub fn role(&self) -> Role {
        self.conn.role()
    }

    /// The handshake facts.
    pub fn info(&self) -> &ConnInfo {
        self.conn.info()
    }
}

impl std::fmt::Debug for WebSocketConnection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketConnection").field("state", &self.state()).finish_non_exhaustive()
    }
}
