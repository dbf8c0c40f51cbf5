//! [`Command`]: what other threads (and other connections' callbacks) ask of a connection.

use bytes::Bytes;
use ringwire_conn::{CloseCode, Connection, Payload};

/// A command for one connection, queued by a handle (the server's `Remote`, the
/// client's `LoopHandle` and `Ctl`) and carried out on the connection's loop.
#[derive(Debug, Clone)]
pub enum Command {
    /// A text or binary message.
    Send(Payload),
    /// A ping (ignored if the payload is over 125 bytes).
    Ping(Bytes),
    /// Start the close handshake; no reason: the code's description (as `close` with `None`).
    Close(CloseCode, Option<String>),
    /// Stop reading (`true`) or read again.
    Pause(bool),
}

impl Command {
    /// A [`Command::Close`] from what `close` takes.
    pub fn close<'r>(code: CloseCode, reason: impl Into<Option<&'r str>>) -> Self {
        Self::Close(code, reason.into().map(str::to_owned))
    }

    /// Carries the command out. A connection that is no longer open ignores it: the
    /// sender could not know, and nothing is owed to a closed peer.
    pub fn apply(self, conn: &mut Connection) {
        match self {
            Self::Send(payload) => {
                let _ = conn.send(payload, None);
            }
            Self::Ping(payload) => {
                let _ = conn.ping(&payload);
            }
            Self::Close(code, reason) => {
                let _ = conn.close(code, reason.as_deref());
            }
            Self::Pause(true) => conn.pause(),
            Self::Pause(false) => conn.resume(),
        }
    }
}
