//! # ringwire-client
//!
//! A WebSocket client (`ws://` and `wss://`) on the same pieces as the server: the sans-IO
//! [`ringwire_conn::Connection`] in the client role (every outgoing frame masked with a fresh
//! key, masked server frames refused with 1002), the [`ringwire_io`] event loops (io_uring,
//! epoll fallback) and, for `wss://`, rustls through [`ringwire_tls::TlsHandler`] (`ws://`
//! connections pass through it untouched, so one loop can run both).
//!
//! Two ways in:
//!
//! - [`ClientLoop`] + [`ClientHandler`]: one event loop on the calling thread running any
//!   number of connections, with the same callbacks and handle methods as the server
//!   ([`ClientWs`]). This is the one to drive load with.
//! - [`connect`] -> [`WebSocket`] with blocking `send` / `recv` / `close`: one connection run
//!   by a loop on a background thread.
//!
//! ```
//! # let server = ringwire_server::Server::bind(ringwire_server::ServerConfig::new("127.0.0.1:0".parse()?).with_threads(1))?;
//! # let addr = server.local_addr();
//! # #[derive(Clone)] struct Echo;
//! # impl ringwire_server::Handler for Echo {
//! #     fn on_message(&mut self, ws: &mut ringwire_server::Ws<'_>, m: ringwire_conn::Message) { ws.send(m); }
//! # }
//! # let running = server.spawn(Echo);
//! use ringwire_client::{ClientHandler, ClientLoop, ClientWs, ConnectOptions};
//! use ringwire_conn::{CloseCode, Message};
//!
//! /// Sends one message per connection and closes when it comes back.
//! struct Hello { echoed: usize }
//! impl ClientHandler for Hello {
//!     fn on_open(&mut self, ws: &mut ClientWs<'_>) {
//!         let id = ws.id();
//!         ws.send(format!("hello from {id}"));
//!     }
//!     fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {
//!         assert_eq!(message, Message::Text(format!("hello from {}", ws.id()).into()));
//!         self.echoed += 1;
//!         let _ = ws.close(CloseCode::NORMAL, "bye");
//!     }
//! }
//!
//! let mut client = ClientLoop::new(ringwire_io::IoChoice::Auto)?;
//! for _ in 0..10 {
//!     client.connect(&format!("ws://{addr}/"), ConnectOptions::default())?;
//! }
//! let mut hello = Hello { echoed: 0 };
//! client.run(&mut hello)?; // returns once every connection is closed
//! assert_eq!(hello.echoed, 10);
//! # running.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Failures to open are told apart by [`ConnectError`]: a bad URL, DNS, refused, connect
//! or handshake timeout, a non-101 status (with the status and body), a bad accept key, a
//! subprotocol that was not offered, an extension that was not requested, the server
//! closing before the 101, and for `wss://` each TLS failure: unknown issuer, name
//! mismatch, expired, not yet valid, another certificate refusal, a failed handshake.
//!
//! ## wss://
//!
//! `wss://` URLs (port 443 by default) speak TLS 1.2 or 1.3 with ALPN `http/1.1`. The
//! server is verified, and SNI sent, as the URL's host (an IP literal as an IP address).
//! [`ConnectOptions::tls`] ([`TlsConfig`]) picks the roots (the system's by default, or
//! the compiled-in webpki roots), adds roots (PEM or DER), a client certificate (mutual
//! TLS), or hands in a whole `rustls::ClientConfig`; the config is built once and shared
//! by the connections made with those settings (one session cache, so later handshakes
//! resume). `handshake_timeout` covers the TLS handshake and the upgrade together.
//!
//! ```no_run
//! use ringwire_client::{ConnectError, ConnectOptions, IoChoice, TlsConfig, connect_with};
//!
//! let ca_pem = std::fs::read("ca.pem")?; // a private CA, on top of the system's roots
//! let opts = ConnectOptions::new().with_tls(TlsConfig::new().with_roots_pem(&ca_pem)?);
//! match connect_with("wss://chat.internal:8443/room", opts, IoChoice::Auto) {
//!     Ok(mut ws) => ws.send("hello")?,
//!     Err(e @ ConnectError::TlsUnknownIssuer { .. }) => eprintln!("{e}"), // one line, host and cause
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod blocking;
mod client_loop;
mod error;
mod handler;
mod handshake;
mod options;
mod tls;
mod ws;

pub use blocking::{Received, WebSocket, WsError, connect, connect_with};
pub use client_loop::ClientLoop;
pub use error::{ConnectError, QueueError};
pub use handler::{ClientHandler, SendOutcome};
pub use options::ConnectOptions;
pub use ringwire_conn::url::{Host, UrlError, WsUrl};
pub use ringwire_drive::{Sent, WebSocketConnection};
pub use tls::{Roots, TlsConfig};
pub use ws::{ClientId, ClientWs, Ctl, LoopHandle};

pub use ringwire_conn as conn;
pub use ringwire_io::{Backend, IoChoice, LoopConfig};
/// The TLS layer's error (inside the `Tls*` variants of [`ConnectError`]).
pub use ringwire_tls::TlsError;
/// rustls, re-exported: the types [`TlsConfig`] takes (`rustls::ClientConfig`,
/// `rustls::pki_types::{CertificateDer, PrivateKeyDer}`).
pub use ringwire_tls::rustls;
