//! [`Ws`]: the connection handle given to every [`Handler`](crate::Handler) call.

use crate::shared::{Command, Shared};
use crate::topics::{Change, TopicError};
use crate::worker::{Local, Outgoing};
use crate::{QueueError, ServerHandle};
use bytes::Bytes;
use ringwire_conn::{CloseCode, Payload, PreparedMessage};
use ringwire_drive::{Command as ConnCommand, WebSocketConnection};
use ringwire_io::ConnId;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A connection inside a handler call. It dereferences to [`WebSocketConnection`], the
/// spec's getters and commands (`send`, `send_text`, `send_binary`, `ping`, `pong`,
/// `close`, `drop_connection`, `pause`, `resume`, `state`, `connected`,
/// `close_reason_code`, `remote_address`, ...); this type adds what needs the server:
/// topics ([`Ws::subscribe`], [`Ws::unsubscribe`], [`Ws::is_subscribed`], [`Ws::topics`],
/// [`Ws::publish`], [`Ws::publish_including_self`]), [`Ws::broadcast`], [`Ws::remote`],
/// [`Ws::server`], [`Ws::id`], [`Ws::worker`].
/// Everything only queues; output leaves at the end of the loop turn.
pub struct Ws<'a> {
    pub(crate) conn: WebSocketConnection<'a>,
    pub(crate) id: ConnId,
    pub(crate) worker: usize,
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) local: &'a mut Local,
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

    /// Sends `message` to every open connection of every worker, this one included: a
    /// [`PreparedMessage`], or anything `send` takes (`&str`, `String`, `Bytes`, ...),
    /// framed once here and shared. The same as [`ServerHandle::broadcast`].
    ///
    /// This worker's connections always get it. `Err(QueueError::Full { missed })`:
    /// `missed` other workers had a full mailbox and their connections do not get it
    /// (the rest do); `Err(QueueError::Closed)`: the server is shutting down.
    pub fn broadcast(&mut self, message: impl Into<PreparedMessage>) -> Result<(), QueueError> {
        let message = message.into();
        let others = self.shared.push_broadcast(&message, Some(self.worker));
        self.local.pending.push(Outgoing::All(message));
        others
    }

    /// Subscribes this connection to `topic` (uWebSockets' `subscribe`): it gets what is
    /// published to the topic from now on, until [`unsubscribe`](Self::unsubscribe) or
    /// its close, which drops all its topics. `Ok(true)` when newly subscribed, `Ok(false)`
    /// when it already was. Refused past
    /// [`max_topics_per_connection`](crate::ServerConfig::max_topics_per_connection) topics
    /// or for a name over [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) bytes.
    ///
    /// The first subscriber of a topic in the process subscribes the process on the
    /// [bus](crate::Server::with_bus), if there is one.
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, TopicError> {
        match self.local.topics.subscribe(self.id, topic, self.local.max_topics)? {
            Change::None => Ok(false),
            Change::Conn => Ok(true),
            Change::Topic(name) => {
                self.shared.topic_added(&name);
                Ok(true)
            }
        }
    }

    /// Unsubscribes this connection from `topic`; false when it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        match self.local.topics.unsubscribe(self.id, topic) {
            Change::None => false,
            Change::Conn => true,
            Change::Topic(name) => {
                self.shared.topic_removed(&name);
                true
            }
        }
    }

    /// Whether this connection subscribes to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.local.topics.is_subscribed(self.id, topic)
    }

    /// The topics this connection subscribes to (uWebSockets' `getTopics`).
    pub fn topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.local.topics.topics_of(self.id)
    }

    /// Sends `message` to every subscriber of `topic` but this connection (as
    /// uWebSockets' `ws.publish`; [`ServerHandle::publish`] includes everyone), on every
    /// worker, and to the other processes on the [bus](crate::Server::with_bus). Framed
    /// once (and compressed once where compression is shared) for all. Never blocks.
    ///
    /// This worker's subscribers get it at the end of the loop turn, with the turn's other
    /// publishes and broadcasts in the order they were made: the subscribers at that
    /// moment (a connection that subscribes later in the same turn gets it too, one that
    /// unsubscribes misses it). `Err(QueueError::Full { missed })`: `missed` other workers
    /// had a full mailbox and their subscribers do not get it; `Err(QueueError::Closed)`:
    /// the server is shutting down (and the bus does not get it either). A subscriber that
    /// does not read is dropped at [`max_buffered`](ringwire_conn::Config::max_buffered)
    /// (1008), as any peer; the bus counts what it could not pass on.
    pub fn publish(&mut self, topic: &str, message: impl Into<PreparedMessage>) -> Result<(), QueueError> {
        self.publish_from(topic, message.into(), Some(self.id))
    }

    /// [`publish`](Self::publish), this connection included when it subscribes to `topic`:
    /// it gets its own message in the same order as this worker's other subscribers (a
    /// `send` of it would go out ahead of the turn's earlier publishes).
    pub fn publish_including_self(
        &mut self,
        topic: &str,
        message: impl Into<PreparedMessage>,
    ) -> Result<(), QueueError> {
        self.publish_from(topic, message.into(), None)
    }

    fn publish_from(&mut self, topic: &str, message: PreparedMessage, skip: Option<ConnId>) -> Result<(), QueueError> {
        let topic: Arc<str> = topic.into();
        let others = self.shared.publish(&topic, &message, Some(self.worker));
        self.local.pending.push(Outgoing::Topic(topic, message, skip));
        others
    }
}

impl<'a> Deref for Ws<'a> {
    type Target = WebSocketConnection<'a>;

    fn deref(&self) -> &WebSocketConnection<'a> {
        &self.conn
    }
}

impl DerefMut for Ws<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
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
    fn push(&self, cmd: ConnCommand) -> Result<(), QueueError> {
        self.shared.push(self.worker, Command::Conn(self.id, cmd))
    }

    /// Queues a text or binary message.
    pub fn send(&self, data: impl Into<Payload>) -> Result<(), QueueError> {
        self.push(ConnCommand::Send(data.into()))
    }

    /// Sends a ping (ignored if `payload` is over 125 bytes).
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<(), QueueError> {
        self.push(ConnCommand::Ping(payload.into()))
    }

    /// Closes the connection with `code` and `reason` (`None`: the code's description).
    pub fn close<'r>(&self, code: CloseCode, reason: impl Into<Option<&'r str>>) -> Result<(), QueueError> {
        self.push(ConnCommand::close(code, reason))
    }

    /// Stops reading from the connection (Node `pause`).
    pub fn pause(&self) -> Result<(), QueueError> {
        self.push(ConnCommand::Pause(true))
    }

    /// Resumes reading (Node `resume`).
    pub fn resume(&self) -> Result<(), QueueError> {
        self.push(ConnCommand::Pause(false))
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("worker", &self.worker).field("id", &self.id).finish()
    }
}
