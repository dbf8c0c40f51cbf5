//! [`Ws`]: the connection handle given to every [`Handler`](crate::Handler) call.

use crate::ServerHandle;
use crate::shared::{Command, Shared};
use bytes::Bytes;
use ringwire_conn::{
    CloseCode, Connection, Payload, PreparedMessage, SendError, SendStatus, SendToken, State, Utf8Bytes,
};
use ringwire_io::ConnId;
use std::sync::Arc;

/// A connection inside a handler call: the spec's methods and properties.
/// Everything here only queues; output leaves at the end of the loop turn.
pub struct Ws<'a> {
    pub(crate) conn: &'a mut Connection,
    pub(crate) id: ConnId,
    pub(crate) worker: usize,
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) local_broadcast: &'a mut Vec<PreparedMessage>,
}

impl Ws<'_> {
    /// This connection's id, unique within its worker while it is open.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The index of the worker thread that owns this connection.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// A `Send + Clone` handle to reach this connection from any thread.
    pub fn remote(&self) -> Remote {
        Remote { shared: Arc::clone(self.shared), worker: self.worker, id: self.id }
    }

    /// A handle to the whole server (broadcast, shutdown) usable from any thread.
    pub fn server(&self) -> ServerHandle {
        ServerHandle { shared: Arc::clone(self.shared) }
    }

    /// Node `send`: text for UTF-8 strings, binary for bytes.
    pub fn send(&mut self, data: impl Into<Payload>) -> Result<SendStatus, SendError> {
        self.conn.send(data, None)
    }

    /// Node `send` with a callback: `on_send_complete` reports the outcome for `token`.
    pub fn send_with_token(&mut self, data: impl Into<Payload>, token: SendToken) -> Result<SendStatus, SendError> {
        self.conn.send(data, Some(token))
    }

    /// Node `sendUTF`.
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<SendStatus, SendError> {
        self.conn.send_text(text, None)
    }

    /// Node `sendBytes`.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<SendStatus, SendError> {
        self.conn.send_binary(data, None)
    }

    /// Sends a message framed once for many connections.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<SendStatus, SendError> {
        self.conn.send_prepared(message, None)
    }

    /// Sends `message` to every open connection of every worker, this one included.
    /// The message is framed once and shared.
    pub fn broadcast(&mut self, message: PreparedMessage) {
        for (i, mailbox) in self.shared.workers.iter().enumerate() {
            if i != self.worker {
                mailbox.push(Command::Broadcast(message.clone()));
            }
        }
        self.local_broadcast.push(message);
    }

    /// Node `ping`: at most 125 bytes, else an error.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.conn.ping(payload)
    }

    /// Node `pong`.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.conn.pong(payload)
    }

    /// Node `close`: flush what is queued, send the close frame, wait for the peer's.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.conn.close(code, reason)
    }

    /// Node `drop`: close now, with a close frame unless `skip_close_frame`.
    pub fn drop_connection(&mut self, code: CloseCode, reason: &str, skip_close_frame: bool) {
        self.conn.drop_connection(code, reason, skip_close_frame)
    }

    /// Node `pause`: stop reading from the socket.
    pub fn pause(&mut self) {
        self.conn.pause()
    }

    /// Node `resume`.
    pub fn resume(&mut self) {
        self.conn.resume()
    }

    /// Node `state`.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Node `connected`.
    pub fn connected(&self) -> bool {
        self.conn.connected()
    }

    /// Node `closeReasonCode` (`None` while open).
    pub fn close_reason_code(&self) -> Option<CloseCode> {
        self.conn.close_reason_code()
    }

    /// Node `closeDescription` (`None` while open).
    pub fn close_description(&self) -> Option<&str> {
        self.conn.close_description()
    }

    /// Node `protocol`.
    pub fn protocol(&self) -> Option<&str> {
        self.conn.protocol()
    }

    /// Node `extensions`.
    pub fn extensions(&self) -> &[String] {
        self.conn.extensions()
    }

    /// Node `webSocketVersion` (8 or 13).
    pub fn version(&self) -> u8 {
        self.conn.version()
    }

    /// Node `remoteAddress`: the TCP peer, or the client named by a trusted proxy.
    pub fn remote_address(&self) -> Option<&str> {
        self.conn.remote_address()
    }

    /// Node `remoteAddresses`: the trusted `X-Forwarded-For` chain, then the TCP peer.
    pub fn remote_addresses(&self) -> &[String] {
        self.conn.remote_addresses()
    }

    /// Bytes queued and not yet written (Node's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// The underlying connection state machine, for anything not wrapped here.
    pub fn connection(&mut self) -> &mut Connection {
        self.conn
    }
}

/// Reaches one connection from any thread: the message is handed to its worker,
/// which sends it on its next loop turn. Stale handles (the connection closed) are
/// ignored by the worker.
#[derive(Clone)]
pub struct Remote {
    pub(crate) shared: Arc<Shared>,
    pub(crate) worker: usize,
    pub(crate) id: ConnId,
}

impl Remote {
    /// Queues a text or binary message.
    pub fn send(&self, data: impl Into<Payload>) {
        self.shared.workers[self.worker].push(Command::Send(self.id, data.into()));
    }

    /// Closes the connection with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.shared.workers[self.worker].push(Command::Close(self.id, code, reason.to_owned()));
    }

    /// Stops reading from the connection (Node `pause`).
    pub fn pause(&self) {
        self.shared.workers[self.worker].push(Command::Pause(self.id, true));
    }

    /// Resumes reading (Node `resume`).
    pub fn resume(&self) {
        self.shared.workers[self.worker].push(Command::Pause(self.id, false));
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("worker", &self.worker).field("id", &self.id).finish()
    }
}
