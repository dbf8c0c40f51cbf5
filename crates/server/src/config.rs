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
    /// Origins allowed to connect. Compared ASCII case-insensitively with the request's
    /// `Origin` (or v8 `Sec-WebSocket-Origin`); a request whose origin is refused gets
    /// `403 Forbidden` with the reason.
    ///
    /// - Empty (the default): **same origin only**. A request with an `Origin` whose
    ///   `host[:port]` differs from its `Host` header is refused; a request without
    ///   `Origin` passes. Browsers send `Origin` on every WebSocket request and do not
    ///   apply the same-origin policy to WebSockets, so without this check any web page
    ///   could open a connection that carries the user's cookies for this server
    ///   (cross-site WebSocket hijacking). Clients that are not browsers send no
    ///   `Origin` and are not affected. This is gorilla/websocket's `CheckOrigin` default.
    /// - Non-empty: only these origins (e.g. `https://example.com`); a request without
    ///   `Origin` is refused too.
    ///
    /// [`allow_any_origin`](Self::allow_any_origin) turns the check off.
    pub allowed_origins: Vec<String>,
    /// Accept any `Origin`, or none (default false): for a server that does not rely on
    /// cookies or other ambient credentials, or that checks the origin itself in
    /// [`Handler::on_request`](crate::Handler::on_request). Overrides `allowed_origins`.
    pub allow_any_origin: bool,
    /// Host names (the `Host` header without its port) this server answers to, compared
    /// ASCII case-insensitively; IPv6 literals with or without brackets. Others get `403`.
    ///
    /// Empty (the default): when [`addr`](Self::addr) is a loopback address, only `Host`
    /// values naming loopback pass (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`,
    /// any port): a web page cannot reach a local server through a DNS name it controls
    /// that resolves to 127.0.0.1 (DNS rebinding), which would make the origin check
    /// above pass. Jupyter and webpack-dev-server do the same. On any other address an
    /// empty list accepts every `Host`. Non-empty: exactly these names, wherever the
    /// server listens.
    pub allowed_hosts: Vec<String>,
    /// Accept any `Host` (default false), even on a loopback address: for a local server
    /// reached through names it cannot list. Overrides `allowed_hosts`.
    pub allow_any_host: bool,
    /// Most open connections (handshaking included) from one client IP address (the TCP
    /// peer, across all workers); more are refused with `503 Service Unavailable`, as
    /// nginx's `limit_conn`. `None` (the default) or `Some(0)`: no limit, and no lock
    /// on the accept path.
    pub max_connections_per_ip: Option<usize>,
    /// Commands each worker's mailbox holds for messages, closes, pauses and broadcasts
    /// sent from other threads ([`Remote`](crate::Remote), [`ServerHandle`](crate::ServerHandle),
    /// [`Ws::broadcast`](crate::Ws::broadcast)) before it takes them (default 65,536;
    /// at least 1). Beyond it those calls return [`QueueError::Full`](crate::QueueError::Full);
    /// a shutdown always gets through.
    pub mailbox_capacity: usize,
    /// Most topics one connection may subscribe to (default 128, as Centrifugo's
    /// `client_channel_limit`); [`Ws::subscribe`](crate::Ws::subscribe) refuses more with
    /// [`TopicError::TooMany`](crate::TopicError::TooMany). Each subscription costs the
    /// worker about 16 bytes, and a topic's name is kept once per worker.
    pub max_topics_per_connection: usize,
    /// How long a graceful shutdown may take (default 10 s). Shutdown stops accepting,
    /// aborts handshakes, closes every connection with 1001 and flushes what is queued;
    /// connections still open at the deadline (a peer that does not read or does not
    /// answer the close) are aborted, so [`Server::run`](crate::Server::run) returns
    /// within it.
    pub shutdown_timeout: Duration,
    /// How long [`Server::bind`](crate::Server::bind) keeps retrying, every 50 ms, while
    /// the address is in use (default 3 s; zero: fail at once). A server killed a moment
    /// ago may still hold its listeners: on io_uring the kernel releases them 100-300 ms
    /// after the process died, so a restart (systemd's default `RestartSec` is 100 ms)
    /// would fail without it.
    pub bind_retry: Duration,
    /// Proxies whose `X-Forwarded-For` is believed. Default: none, so
    /// `remote_address` is always the TCP peer. (WebSocket-Node trusts every
    /// `X-Forwarded-For` by default, which lets any client spoof its address.)
    pub trusted_proxies: Vec<IpAddr>,
    /// Subprotocols this server speaks. The default
    /// [`Handler::on_request`](crate::Handler::on_request) accepts the first protocol of
    /// the client's list that is in this one (compared ASCII case-insensitively), or no
    /// protocol if none is: the client's order decides (RFC 6455 4.1 has the client list
    /// them by preference), not the order of this list. A handler that prefers its own
    /// order picks in `on_request`.
    pub subprotocols: Vec<String>,
    /// Per-connection behaviour: the spec's `ConnectionConfig` and more.
    pub connection: ConnConfig,
    /// Event loop tuning (buffer ring size, ring entries). Its `nodelay` is not read:
    /// sockets get `TCP_NODELAY` from
    /// [`connection.disable_nagle_algorithm`](ringwire_conn::Config::disable_nagle_algorithm)
    /// (see [`resolved_event_loop`](Self::resolved_event_loop)).
    pub event_loop: LoopConfig,
    /// Listen backlog (default 1024).
    pub backlog: i32,
    /// Serve TLS (`wss://`) with these certificates (default `None`: plain `ws://`). The
    /// files are read by [`Server::bind`](crate::Server::bind) (a bad file fails it) and
    /// again by [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls) (and
    /// SIGHUP with [`Server::run_until_signal`](crate::Server::run_until_signal)).
    /// [`handshake_timeout`](Self::handshake_timeout) covers the TLS handshake and the
    /// upgrade request together; a handshaking connection counts toward
    /// [`max_connections`](Self::max_connections) and the per-IP limit from accept on, and
    /// one over them is dropped at accept rather than answered `503` (which could only be
    /// sent after a TLS handshake).
    pub tls: Option<ringwire_tls::ServerTlsConfig>,
    /// TLS handshake steps each worker runs per loop turn (default 5, as uSockets): past
    /// it the rest wait for the next turn, so a storm of handshakes cannot stall the
    /// established connections. At least 1.
    pub tls_handshakes_per_turn: usize,
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
            allow_any_origin: false,
            allowed_hosts: Vec::new(),
            allow_any_host: false,
            max_connections_per_ip: None,
            mailbox_capacity: 65_536,
            max_topics_per_connection: 128,
            shutdown_timeout: Duration::from_secs(10),
            bind_retry: Duration::from_secs(3),
            trusted_proxies: Vec::new(),
            subprotocols: Vec::new(),
            connection: ConnConfig::server(),
            event_loop: LoopConfig::default(),
            backlog: 1024,
            tls: None,
            tls_handshakes_per_turn: 5,
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

    /// Sets the allowed origins (empty = same origin only; see
    /// [`allowed_origins`](Self::allowed_origins)).
    pub fn with_allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// Sets the host names this server answers to (see [`allowed_hosts`](Self::allowed_hosts)).
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// Sets the graceful shutdown deadline.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the supported subprotocols (see [`subprotocols`](Self::subprotocols): the
    /// default handler follows the client's order).
    pub fn with_subprotocols(mut self, protocols: Vec<String>) -> Self {
        self.subprotocols = protocols;
        self
    }

    /// Serves TLS with `tls` (see [`tls`](Self::tls)).
    pub fn with_tls(mut self, tls: ringwire_tls::ServerTlsConfig) -> Self {
        self.tls = Some(tls);
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

    /// The event loop settings each worker runs with: [`event_loop`](Self::event_loop), with
    /// a completion queue sized for the connection count when `event_loop.cq_entries` is 0.
    ///
    /// A broadcast completes one send per connection in one turn, so a worker's CQ gets as
    /// many entries as its share of [`max_connections`](Self::max_connections) (at least twice
    /// `ring_entries`, at most 65,536: 16 bytes each, 1 MiB per worker at the most).
    /// Completions that still do not fit wait in the kernel's overflow list and are handled
    /// (with a logged warning), only at the cost of extra system calls.
    ///
    /// `nodelay` is [`connection.disable_nagle_algorithm`](ringwire_conn::Config::disable_nagle_algorithm)
    /// (Node's `disableNagleAlgorithm`): every connection of a server shares that config,
    /// so the loop sets it on each socket it accepts, with no extra system call.
    pub fn resolved_event_loop(&self) -> LoopConfig {
        let mut cfg = self.event_loop.clone();
        cfg.nodelay = self.connection.disable_nagle_algorithm;
        if cfg.cq_entries == 0 {
            let per_worker = self.max_connections.div_ceil(self.resolved_threads().max(1));
            let per_worker =
                u32::try_from(per_worker).unwrap_or(u32::MAX).checked_next_power_of_two().unwrap_or(u32::MAX);
            cfg.cq_entries = per_worker.clamp(cfg.ring_entries.saturating_mul(2).min(65_536), 65_536);
        }
        cfg
    }
}
