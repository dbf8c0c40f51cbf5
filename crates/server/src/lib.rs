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
//!         ws.send(message);
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
//!   431), the `Host` and `Origin` policy (403, below), [`Handler::on_request`] to accept
//!   (subprotocol, origin, cookies, headers) or reject (any status), a handshake timeout
//!   (408), a connection limit and an optional per-address limit (503). The request is
//!   parsed once its blank line has arrived; each read searches only the new bytes.
//! - Remote handles: [`Remote`] reaches one connection and [`ServerHandle`] the whole
//!   server (broadcast, shutdown) from any thread; the worker is woken by an eventfd.
//!   Each worker's mailbox is bounded ([`ServerConfig::mailbox_capacity`]): a call that
//!   finds it full returns [`QueueError::Full`] rather than growing it.
//! - Broadcast frames a message once into shared bytes and fans it out.
//! - Topics, as in uWebSockets: [`Ws::subscribe`], [`Ws::unsubscribe`],
//!   [`Ws::is_subscribed`], [`Ws::topics`], [`Ws::publish`] (every subscriber but the
//!   sender) and [`ServerHandle::publish`] (every subscriber, from any thread). Each worker
//!   keeps its own index; a publish reaches the other workers through their mailboxes,
//!   framed once, and other processes through a [`TopicBus`] ([`Server::with_bus`];
//!   `ringwire-bus` over Redis or NATS). A connection's topics go with its close. See
//!   `examples/rooms.rs`.
//! - Counters for operators: [`ServerHandle::stats`] sums every worker's counters
//!   (connections, refused upgrades by status, messages and bytes by type, close frames
//!   by code, protocol errors, drops, queued bytes, accept errors, io_uring's queues, TLS
//!   handshakes, compression, topics) into a [`Stats`]. Each worker
//!   counts in plain integers and publishes once per loop turn to its own cache lines,
//!   so counting costs the message path an integer add.
//! - Plain HTTP on the WebSocket port: [`Handler::on_http`] answers a `GET` that is not an
//!   upgrade (a health check, a metrics scrape) with an [`HttpResponse`];
//!   [`ServerHandle::is_shutting_down`] tells a health check that the server drains.
//! - Listeners made elsewhere: [`Server::from_listeners`] (systemd socket activation, a
//!   socket the application bound). [`Server::run`] and [`Server::spawn`] leave the
//!   process's signals alone; [`Server::run_until_signal`] handles SIGINT/SIGTERM/SIGHUP.
//! - Graceful shutdown: stop accepting, close everything with 1001 after flushing, and
//!   abort what is still open at [`ServerConfig::shutdown_timeout`].
//!
//! ## Threads
//!
//! Each worker thread has its own event loop and its own listener in one `SO_REUSEPORT`
//! group, so the kernel spreads accepted connections and a connection never leaves its
//! worker; the per-connection path takes no lock. Work from other threads (a
//! [`Remote`] send, a [`ServerHandle::broadcast`], [`Ws::broadcast`], a publish to a
//! topic, shutdown) goes
//! through one mailbox per worker: a mutex-protected `Vec` that the worker swaps out
//! whole, and an eventfd wake sent only by a push that finds the mailbox empty.
//! A mailbox holds at most [`ServerConfig::mailbox_capacity`] commands: a sender that
//! outpaces the worker gets [`QueueError::Full`] instead of growing it. Shutdown is a
//! flag beside the queue, so it always gets through.
//!
//! ## Origin and Host
//!
//! Browsers send `Origin` with every WebSocket upgrade but do not apply the same-origin
//! policy to WebSockets, and they attach the site's cookies. By default a request whose
//! `Origin` names another host than its `Host` header is refused with 403 (gorilla/
//! websocket's default), so a page on another site cannot open a connection in the
//! user's name (cross-site WebSocket hijacking); requests without `Origin` (programs,
//! not browsers) pass. A server listening on a loopback address also refuses `Host`
//! values that do not name loopback, so a page cannot reach it through a DNS name it
//! controls that resolves to 127.0.0.1 (DNS rebinding). Both are configurable:
//! [`ServerConfig::allowed_origins`], [`allow_any_origin`](ServerConfig::allow_any_origin),
//! [`allowed_hosts`](ServerConfig::allowed_hosts), [`allow_any_host`](ServerConfig::allow_any_host).
//!
//! ## Panics in handlers
//!
//! Every [`Handler`] callback runs inside `catch_unwind`. A panic closes that
//! connection only: it is logged (one error line with the connection id and the panic
//! message), the connection is closed with 1011 "internal error" (a panic in
//! [`Handler::on_request`] answers 500), the handler gets no further call for it, not
//! even `on_close`, and its admission slot is released as usual; other connections and
//! workers go on. The handler value itself is kept: a panic halfway through changing
//! its own state leaves that state as it was at the panic. This needs the panic to
//! unwind: with `panic = "abort"` in the profile that builds your program, a handler
//! panic ends the process. The `ringwire` binary is built with `panic = "unwind"` for
//! this reason.
//!
//! ## Drop
//!
//! [`WebSocketConnection::drop_connection`] (WebSocket-Node's `drop`) and the keepalive timeout end the
//! connection at once and abort the socket (a TCP reset) rather than flushing it, so a
//! peer that does not read cannot hold it; their close frame is best effort.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod config;
mod handler;
mod policy;
mod proxy;
mod server;
mod shared;
// sigwait and the signal mask: libc calls std does not wrap.
#[allow(unsafe_code)]
mod signal;
mod stats;
mod topics;
mod worker;
mod ws;

pub use config::ServerConfig;
pub use handler::{Decision, Handler, HttpResponse, SendOutcome};
pub use ringwire_drive::{ByType, CloseCodes, Counts, ProtocolErrors};
pub use ringwire_drive::{Sent, WebSocketConnection};
pub use server::{RunningServer, Server, ServerError, ServerHandle, WeakServerHandle};
pub use shared::{QueueError, TopicBus};
pub use signal::shutdown_on_signals;
pub use stats::{Rejections, Stats};
pub use topics::{MAX_TOPIC_LEN, TopicError};
pub use ws::{Remote, Ws};

pub use ringwire_conn as conn;

pub use ringwire_conn::deflate::CodecCounts;
pub use ringwire_io::{AcceptErrors, Backend, Detected, IoChoice, LoopConfig, LoopStats};
