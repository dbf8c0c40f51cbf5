//! # ringwire-conn
//!
//! The sans-IO WebSocket connection (RFC 6455) at the heart of ringwire: a value that
//! consumes bytes, commands and time, and produces bytes, events and deadlines. No
//! socket, thread, clock or runtime inside (quinn-proto and rustls are the models).
//!
//! ```text
//!             handle_read(bytes) ──►┌────────────┐──► poll_event()    -> Event
//!   driver    handle_written(n)  ──►│ Connection │──► poll_transmit() -> Bytes
//!             handle_eof/timeout ──►│  (no I/O)  │──► poll_timeout()  -> Instant
//!   app       send/ping/close/...──►└────────────┘
//! ```
//!
//! - [`handshake`]: the upgrade handshake, both sides, as pure functions over bytes.
//! - [`Connection`]: the state machine after the handshake, for both roles; its docs
//!   give the calling order.
//! - [`Config`]: WebSocket-Node's `ConnectionConfig` plus keepalive, idle timeout and
//!   flow control.
//!
//! `docs/api.md` maps every item of WebSocket-Node's `WebSocketConnection` to its
//! counterpart here.

#![forbid(unsafe_code)]

mod config;
mod connection;
mod error;
mod event;
pub mod handshake;
mod prepared;
mod recv;
mod rng;
mod send;
mod timers;

pub use config::{BufferedLimitPolicy, Config, Keepalive};
pub use connection::Connection;
pub use error::{ConnError, ProtocolError, SendError};
pub use event::{ConnInfo, Event, Frame, Message, Payload, SendStatus, SendToken, State, Utf8Bytes};
pub use prepared::PreparedMessage;
pub use ringwire_frame::{CloseCode, OpCode, Role};
pub use rng::random_key;

#[cfg(test)]
mod tests;
