//! # ringwire-drive
//!
//! The one connection driver of ringwire's server and client: everything between a
//! running [`ringwire_conn::Connection`] and a [`ringwire_io`] event loop, and the view a
//! handler gets of the connection.
//!
//! - [`Driven`]: an open connection as its driver keeps it. Inputs from the loop
//!   ([`read`](Driven::read), [`written`](Driven::written), [`timeout`](Driven::timeout),
//!   [`closed`](Driven::closed)), then [`pump`](Driven::pump): deliver the events to the
//!   handler (a panic closes that connection with 1011 and nothing else), hand the
//!   output to the loop, stop or restart reading, move the timer, close or abort the
//!   socket.
//! - [`WebSocketConnection`]: the handler's view, WebSocket-Node's `WebSocketConnection`
//!   (getters and commands only); the server's `Ws` and the client's `ClientWs`
//!   dereference to it.
//! - [`Command`]: what handles on other threads ask of a connection.
//! - [`Slots`]: per-connection state indexed by the loop's connection id.
//!
//! The server keeps the upgrade handshake, admission and broadcast; the client keeps
//! resolving, connecting and its handshake. Both hand every open connection to this
//! crate, so a fix here is a fix for both.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod command;
mod counts;
mod driven;
mod slots;
mod view;

pub use command::Command;
pub use counts::{ByType, CloseCodes, Counts, ProtocolErrors, Tally};
pub use driven::{Callback, Driven, panic_message};
pub use slots::Slots;
pub use view::{Sent, WebSocketConnection};

/// How a send made with a [`SendToken`](ringwire_conn::SendToken) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Every byte of the message was handed to the kernel.
    Written,
    /// The connection closed before the message was written.
    Failed,
}

/// Calls the handler method a [`Callback`] stands for, with the handle `$ws`, and
/// returns whether to pong (`on_ping`'s answer; true for every other callback).
///
/// The server's `Handler` and the client's `ClientHandler` name their spec callbacks
/// alike (`on_open`, `on_message`, `on_frame`, `on_ping`, `on_pong`, `on_drain`,
/// `on_pause`, `on_resume`, `on_send_complete`, `on_error`, `on_close`), each with its
/// own handle type; this is the one mapping from events to them.
#[macro_export]
macro_rules! deliver {
    ($handler:expr, $ws:expr, $callback:expr) => {{
        use $crate::__private::{Callback, Event, SendOutcome};
        let (h, ws) = ($handler, $ws);
        match $callback {
            Callback::Event(Event::Ping(p)) => h.on_ping(ws, &p),
            other => {
                match other {
                    Callback::Open => h.on_open(ws),
                    Callback::Event(Event::Message(m)) => h.on_message(ws, m),
                    Callback::Event(Event::Frame(f)) => h.on_frame(ws, f),
                    Callback::Event(Event::Pong(p)) => h.on_pong(ws, &p),
                    Callback::Event(Event::Drain) => h.on_drain(ws),
                    Callback::Event(Event::Pause) => h.on_pause(ws),
                    Callback::Event(Event::Resume) => h.on_resume(ws),
                    Callback::Event(Event::SendComplete(t)) => h.on_send_complete(ws, t, SendOutcome::Written),
                    Callback::Event(Event::SendFailed(t)) => h.on_send_complete(ws, t, SendOutcome::Failed),
                    Callback::Event(Event::Error(e)) => h.on_error(ws, &e),
                    Callback::Event(Event::Close { code, description }) => h.on_close(ws, code, &description),
                    // Ping is above; events added by later versions of the connection crate.
                    Callback::Event(_) => {}
                }
                true
            }
        }
    }};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::{Callback, SendOutcome};
    pub use ringwire_conn::Event;
}
