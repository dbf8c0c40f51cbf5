//! Test support for the ringwire crates (a dev-dependency only, never published).
//!
//! - [`backends`] and [`uring_or_skip`]: which io backends a test runs on. io_uring is
//!   left out, with one `SKIPPED ...` line on stderr, where it cannot be used (a seccomp
//!   filter as in Docker's default profile or gVisor, `kernel.io_uring_disabled`), unless
//!   `RINGWIRE_REQUIRE_URING=1` (set by `.ci/run`) makes that a failure.
//! - [`RawClient`], [`client_frame`], [`server_frame`], [`parse_frames`]: raw WebSocket over a
//!   std `TcpStream`, encoded and parsed here without the library under test.
//! - [`read_http_head`], [`http`], [`upgrade_request`], [`upgrade_request_to`]: raw HTTP/1.1.
//! - [`socket_options`]: `TCP_NODELAY` and `SO_KEEPALIVE` of one of this process's own
//!   sockets, found by its addresses (what the server or client under test set).
//! - [`deny_io_uring_setup`] and the `seccomp-deny-uring` binary: a real seccomp filter that
//!   makes `io_uring_setup` fail with EPERM, to run tests (or a whole `cargo test`) where
//!   io_uring is blocked.
//! - [`brokers`]: real `redis-server` and `nats-server` on free loopback ports for the bus
//!   tests (skipped with a line when missing, unless `RINGWIRE_REQUIRE_BROKERS=1`).

pub mod brokers;
mod seccomp;
mod sockets;
pub mod tls;
mod uring;
mod ws;

pub use seccomp::deny_io_uring_setup;
pub use sockets::{SocketOptions, TcpRow, accepts, socket_options, tcp_table};
pub use uring::{REQUIRE_URING_ENV, backends, uring_or_skip, uring_usable};
pub use ws::{
    IntoOpcode, KEY, RawClient, UPGRADE_ACCEPT, UPGRADE_KEY, WireFrame, client_frame, close_frame, dead_port, http,
    masked_frame, parse_frame, parse_frames, read_frame, read_http_head, read_to_close, server_close, server_frame,
    upgrade_request, upgrade_request_to,
};
