//! # ringwire-server
//!
//! A thread-per-core WebSocket server: one event loop per worker thread, each with its
//! own `SO_REUSEPORT` listener, on io_uring (multishot accept and recv into a
//! provided-buffer ring, vectored sends) with an epoll fallback chosen at start.
//! Each connection is a sans-IO [`ringwire_conn::Connection`]; this crate moves bytes
//! between it and the loop and calls your [`Handler`].
//!
//! ```no_run
//! use ringwire_server::{Handler, Server, ServerConfig, Ws};
//! use ringwire_conn::Message;
//!
//! #[derive(Clone)]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
//!         let _ = ws.send(message, None);
//!     }
//! }
//!
//! let server = Server::bind(ServerConfig::new("127.0.0.1:9001".parse()?))?;
//! println!("listening on ws://{}", server.local_addr());
//! server.run_until_signal(Echo)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - Handshake: strict validation (400, 405, 426 with `Sec-WebSocket-Version: 13, 8`,
//!   431), the origin allow-list (403), [`Handler::on_request`] to accept (subprotocol,
//!   origin, cookies, headers) or reject (any status), a handshake timeout (408), a
//!   connection limit (503).
//! - Remote handles: [`Remote`] reaches one connection and [`ServerHandle`] the whole
//!   server (broadcast, shutdown) from any thread; the worker is woken by an eventfd.
//! - Broadcast frames a message once into shared bytes and fans it out.
//! - Graceful shutdown: stop accepting, close everything with 1001 after flushing.

#![deny(missing_docs)]

mod config;
mod handler;
mod proxy;
mod server;
mod shared;
mod signal;
mod slots;
mod worker;
mod ws;

pub use config::ServerConfig;
pub use handler::{Decision, Handler, SendOutcome};
pub use server::{RunningServer, Server, ServerError, ServerHandle};
pub use signal::shutdown_on_signals;
pub use ws::{Remote, Ws};

pub use ringwire_conn as conn;

use ringwire_conn::{Payload, PreparedMessage};

/// Frames `payload` once for sending to many connections.
pub fn prepare(payload: impl Into<Payload>) -> PreparedMessage {
    match payload.into() {
        Payload::Text(t) => PreparedMessage::text(t),
        Payload::Binary(b) => PreparedMessage::binary(b),
    }
}
pub use ringwire_io::{Backend, Detected, IoChoice, LoopConfig};
