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
//!   flow control, and permessage-deflate ([`Config::deflate`]).
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation and the codec; once agreed
//!   in the handshake ([`ConnInfo::deflate`]), the connection inflates and compresses by
//!   itself.
//!
//! A whole exchange, with byte vectors standing in for the socket:
//!
//! ```
//! use ringwire_conn::handshake::{Accept, ClientRequest, HandshakeLimits, parse_request};
//! use ringwire_conn::{CloseCode, Config, Connection, Event, Message, Role, random_key};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! // Client -> server: the upgrade request.
//! let req = ClientRequest::new("example.com", 80, "/chat", &["chat"], None, &[], 13, random_key())?;
//! let (request, _) = parse_request(req.as_bytes(), &HandshakeLimits::default())?.expect("complete");
//! let protocol = request.select_protocol(&["chat"]);
//! let response = request.accept(&Accept { protocol: protocol.map(String::from), ..Accept::default() })?;
//! let info = request.conn_info(protocol, Some("192.0.2.1".parse()?), &[]);
//! let mut server = Connection::new(Role::Server, Config::server(), info, now);
//! // Server -> client: the 101, checked.
//! let (resp, _) = req.verify_response(&response)?.expect("complete");
//! let mut client = Connection::new(Role::Client, Config::client(), req.conn_info(&resp, None), now);
//!
//! // The driver's job: move transmit chunks to the other side's handle_read.
//! fn pump(from: &mut Connection, to: &mut Connection, now: Instant) {
//!     while let Some(chunk) = from.poll_transmit() {
//!         from.handle_written(chunk.len(), now);
//!         to.handle_read(&chunk, now);
//!     }
//! }
//! let _ = client.send_text("hello", None)?;
//! pump(&mut client, &mut server, now);
//! assert_eq!(server.poll_event(), Some(Event::Message(Message::Text("hello".into()))));
//! server.close(CloseCode::NORMAL, "bye")?;
//! pump(&mut server, &mut client, now);
//! pump(&mut client, &mut server, now);
//! assert_eq!(client.poll_event(), Some(Event::Close { code: CloseCode::NORMAL, description: "bye".into() }));
//! assert_eq!(server.poll_event(), Some(Event::Close { code: CloseCode::NORMAL, description: "bye".into() }));
//! assert!(client.is_finished() && server.is_finished());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `docs/api.md` maps every item of WebSocket-Node's `WebSocketConnection` to its
//! counterpart here.

#![forbid(unsafe_code)]

mod config;
mod connection;
pub mod deflate;
mod error;
mod event;
pub mod handshake;
mod info;
mod prepared;
mod recv;
mod rng;
mod send;
mod sent;
mod timers;
pub mod url;

pub use config::{BufferedLimitPolicy, Config, Keepalive};
pub use connection::Connection;
pub use deflate::{Compressor, Decompressor, DeflateConfig, DeflateError, DeflateParams, InflateError};
pub use error::{ConnError, ProtocolError, SendError};
pub use event::{ConnInfo, Event, Frame, Message, Payload, SendStatus, SendToken, State, Utf8Bytes};
pub use prepared::PreparedMessage;
pub use ringwire_frame::{CloseCode, OpCode, Role};
pub use rng::random_key;
pub use sent::{SentCounts, thread_sent};

#[cfg(test)]
mod tests;
