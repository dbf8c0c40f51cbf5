//! Server configuration: the spec's connection config plus the server's own limits.

use ringwire_conn::Config as ConnConfig;
use ringwire_io::{IoChoice, LoopConfig};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Everything a server needs to start. Build with [`ServerConfig::new`] and the
/// `with_*` methods, or set the public fields directly.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:9001`).
    pub addr: SocketAddr,
    /// Worker threads, each with its own event loop and `SO_REUSEPORT` listener.
    /// 0 means one per available core (the default).
    pub threads: usize,
    /// Which I/O backend to run: io_uring, epoll, or auto-detect (default).
    pub io: IoChoice,
    /// Open connections (handshaking included) across all workers; more are refused
    /// with `503 Service Unavailable` (default 100,000).
    pub max_connections: usize,
    /// Time a client has to complete the upgrade request (default 10 s); then the
    /// socket is closed with `408 Request Timeout`.
    pub handshake_timeout: Duration,
    /// Largest upgrade request in bytes (default 8 KiB); larger gets `431`.
    pub max_handshake_bytes: usize,
    /// Most header lines in an upgrade request (default 64); more gets `431`.
    pub max_handshake_headers: usize,
    /// Origins allowed to connect. Empty: any origin (and requests without one).
    /// Otherwise a request whose `Origin` (or v8 `Sec-WebSocket-Origin`) is not listed
    /// is refused with `403 Forbidden`. Compared ASCII case-insensitively.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed. Default: none, so
    /// `remote_address` is always the TCP peer. (WebSocket-Node trusts every
    /// `X-Forwarded-For` by default, which lets any client spoof its address.)
    pub trusted_proxies: Vec<IpAddr>,
    /// Subprotocols this server speaks, in order of preference. The default
    /// [`Handler::on_request`](crate::Handler::on_request) accepts the first one
    /// the client offers that is in this list, and accepts with no protocol if none is.
    pub subprotocols: Vec<String>,
    /// Per-connection behaviour: the spec's `ConnectionConfig` and more.
    pub connection: ConnConfig,
    /// Event loop tuning (buffer ring size, ring entries, `TCP_NODELAY`).
    pub event_loop: LoopConfig,
    /// Listen backlog (default 1024).
    pub backlog: i32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new("127.0.0.1:9001".parse().expect("valid literal"))
    }
}

impl ServerConfig {
    /// Defaults for a server on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            threads: 0,
            io: IoChoice::Auto,
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            max_handshake_bytes: 8 * 1024,
            max_handshake_headers: 64,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            subprotocols: Vec::new(),
            connection: ConnConfig::server(),
            event_loop: LoopConfig::default(),
            backlog: 1024,
        }
    }

    /// Sets the worker count (0 = one per core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets the I/O backend choice.
    pub fn with_io(mut self, io: IoChoice) -> Self {
        self.io = io;
        self
    }

    /// Sets the per-connection configuration.
    pub fn with_connection(mut self, connection: ConnConfig) -> Self {
        self.connection = connection;
        self
    }

    /// Sets the allowed origins (empty = any).
    pub fn with_allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// Sets the supported subprotocols, in order of preference.
    pub fn with_subprotocols(mut self, protocols: Vec<String>) -> Self {
        self.subprotocols = protocols;
        self
    }

    /// Sets the trusted proxies for `X-Forwarded-For`.
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The worker count this config resolves to on this machine.
    pub fn resolved_threads(&self) -> usize {
        if self.threads > 0 { self.threads } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }
}
