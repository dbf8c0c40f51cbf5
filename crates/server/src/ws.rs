//! [`Ws`]: the connection handle given to every [`Handler`](crate::Handler) call.

use crate::shared::{Command, Shared};
use crate::{QueueError, ServerHandle};
use ringwire_conn::{CloseCode, Connection, Payload, PreparedMessage, State};
use ringwire_io::ConnId;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A connection inside a handler call. It dereferences to the connection's state
/// machine, [`Connection`], which has the spec's methods and properties (`send`,
/// `send_text`, `send_binary`, `ping`, `pong`, `close`, `drop_connection`, `pause`,
/// `resume`, `state`, `connected`, `close_reason_code`, ...); this type adds what needs
/// the server: [`Ws::broadcast`], [`Ws::remote`], [`Ws::server`], and
/// [`Ws::drop_connection`], which also destroys the socket.
/// Everything only queues; output leaves at the end of the loop turn.
pub struct Ws<'a> {
    pub(crate) conn: &'a mut Connection,
    pub(crate) id: ConnId,
    pub(crate) worker: usize,
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) local_broadcast: &'a mut Vec<PreparedMessage>,
    /// The handler dropped the connection: the worker aborts the socket.
    pub(crate) dropped: bool,
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

    /// Sends `message` to every open connection of every worker, this one included.
    /// The message is framed once and shared.
    ///
    /// This worker's connections always get it. `Err(QueueError::Full { missed })`:
    /// `missed` other workers had a full mailbox and their connections do not get it
    /// (the rest do); `Err(QueueError::Closed)`: the server is shutting down.
    pub fn broadcast(&mut self, message: PreparedMessage) -> Result<(), QueueError> {
        let others = self.shared.push_broadcast(&message, Some(self.worker));
        self.local_broadcast.push(message);
        others
    }

    /// Closes at once (WebSocket-Node's `drop`): what is not yet handed to the socket is
    /// discarded, a close frame is queued unless `skip_close_frame`, `on_close` follows,
    /// and the worker then aborts the socket (a TCP reset) instead of flushing it, so a
    /// peer that does not read cannot hold it. The close frame is best effort: it is
    /// handed to the event loop just before the abort, which may discard it.
    ///
    /// This shadows [`Connection::drop_connection`]; calling that one through
    /// `Deref` closes the connection the same way but flushes the socket gracefully.
    pub fn drop_connection(&mut self, code: CloseCode, reason: &str, skip_close_frame: bool) {
        if self.conn.state() != State::Closed {
            self.dropped = true;
        }
        self.conn.drop_connection(code, reason, skip_close_frame);
    }
}

impl Deref for Ws<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl DerefMut for Ws<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

/// Reaches one connection from any thread: the command is handed to its worker's
/// mailbox and carried out on its next loop turn. Stale handles (the connection closed)
/// are ignored by the worker.
///
/// Each method says whether the command was queued: `Err(QueueError::Full { missed: 1 })`
/// when the worker's mailbox holds [`mailbox_capacity`](crate::ServerConfig::mailbox_capacity)
/// commands it has not taken yet (the worker is busy or blocked: slow down or drop),
/// `Err(QueueError::Closed)` once the server is shutting down.
#[derive(Clone)]
pub struct Remote {
    pub(crate) shared: Arc<Shared>,
    pub(crate) worker: usize,
    pub(crate) id: ConnId,
}

impl Remote {
    /// Queues a text or binary message.
    pub fn send(&self, data: impl Into<Payload>) -> Result<(), QueueError> {
        self.shared.push(self.worker, Command::Send(self.id, data.into()))
    }

    /// Closes the connection with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), QueueError> {
        self.shared.push(self.worker, Command::Close(self.id, code, reason.to_owned()))
    }

    /// Stops reading from the connection (Node `pause`).
    pub fn pause(&self) -> Result<(), QueueError> {
        self.shared.push(self.worker, Command::Pause(self.id, true))
    }

    /// Resumes reading (Node `resume`).
    pub fn resume(&self) -> Result<(), QueueError> {
        self.shared.push(self.worker, Command::Pause(self.id, false))
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("worker", &self.worker).field("id", &self.id).finish()
    }
}
