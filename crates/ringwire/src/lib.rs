//! # ringwire
//!
//! A WebSocket (RFC 6455) engine for Linux: io_uring event loops, one thread per core,
//! an epoll fallback, and a sans-IO core. This crate re-exports the engine crates and
//! ships the `ringwire` binary (`ringwire echo`, `ringwire broadcast`).
//!
//! The library is the re-exports below and [`bus`] (a Redis or NATS bus as a server's
//! `TopicBus`). The binary's own dependencies (clap, mimalloc, tracing-subscriber, libc)
//! come with the `cli` feature, and the broker clients (redis, async-nats, tokio for the
//! bus thread) with the `bus` feature; both are on by default so that `cargo install
//! ringwire` builds the binary. To embed the engine without them:
//!
//! ```toml
//! [dependencies]
//! ringwire = { version = "0.1", default-features = false }            # the engine only
//! ringwire = { version = "0.1", default-features = false, features = ["bus"] }  # and the bus
//! ```
//!
//! | crate | what |
//! |---|---|
//! | [`frame`] | the RFC 6455 codec: headers, SIMD unmasking, streaming UTF-8, close codes |
//! | [`conn`] | the sans-IO connection: handshake, state machine, flow control |
//! | [`io`] | the event loops (io_uring, epoll) |
//! | [`server`] | the thread-per-core server and its handler API |
//! | [`client`] | the client over the same loops (`ws://` and `wss://`) |
//! | [`bus`] | topics across processes over Redis or NATS (feature `bus`, on by default) |
//!
//! ```no_run
//! use ringwire::conn::Message;
//! use ringwire::server::{Handler, Server, ServerConfig, Ws};
//!
//! #[derive(Clone)]
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
//!         ws.send(message);
//!     }
//! }
//! Server::bind(ServerConfig::default())?.run_until_signal(Echo)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub use ringwire_client as client;
pub use ringwire_conn as conn;
pub use ringwire_frame as frame;
pub use ringwire_io as io;
pub use ringwire_server as server;
pub use ringwire_tls as tls;

#[cfg(feature = "bus")]
pub mod bus;
#[cfg(feature = "metrics")]
pub mod metrics;
