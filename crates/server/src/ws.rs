//! [`Ws`]: the connection handle given to every [`Handler`](crate::Handler) call.

use crate::ServerHandle;
use crate::shared::{Command, Shared};
use ringwire_conn::{CloseCode, Connection, Payload, PreparedMessage};
use ringwire_io::ConnId;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A connection inside a handler call. It dereferences to the connection's state
/// machine, [`Connection`], which has the spec's methods and properties (`send`,
/// `send_text`, `send_binary`, `ping`, `pong`, `close`, `drop_connection`, `pause`,
/// `resume`, `state`, `connected`, `close_reason_code`, ...); this type adds what needs
/// the server: [`Ws::broadcast`], [`Ws::remote`], [`Ws::server`].
/// Everything only queues; output leaves at the end of the loop turn.
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
