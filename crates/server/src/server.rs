//! Starting, running and stopping a server.

use crate::shared::Shared;
use crate::worker::Worker;
use crate::{Handler, QueueError, ServerConfig, Stats, TopicBus};
use ringwire_conn::PreparedMessage;
use ringwire_io::{Detected, EventLoop};
use ringwire_tls::{ServerTlsConfig, SharedServerConfig, TlsConfigError, TlsHandler, TlsOptions};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address is taken by another process.
    #[error("address {0} is already in use")]
    AddrInUse(SocketAddr),
    /// Binding needs a privilege we lack (e.g. a port below 1024).
    #[error("permission denied binding {0} (ports below 1024 need root or CAP_NET_BIND_SERVICE)")]
    PermissionDenied(SocketAddr),
    /// Any other error binding the listeners.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The requested I/O backend is unavailable (e.g. `--io uring` where io_uring is blocked).
    #[error("io backend: {0}")]
    Backend(std::io::Error),
    /// The TLS certificates could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] ringwire_tls::TlsConfigError),
    /// A worker's event loop failed.
    #[error("worker {worker}: {source}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound server, not yet serving. [`Server::run`] serves until shutdown.
pub struct Server {
    cfg: Arc<ServerConfig>,
    /// Each worker's listeners: one `SO_REUSEPORT` socket of its own ([`Server::bind`]),
    /// or a copy of every listener handed in ([`Server::from_listeners`]).
    listeners: Vec<Vec<TcpListener>>,
    local_addr: SocketAddr,
    backend: Detected,
    shared: Arc<Shared>,
}

impl Server {
    /// Picks the I/O backend and binds one `SO_REUSEPORT` listener per worker.
    ///
    /// While the address is in use, retries every 50 ms for up to
    /// [`ServerConfig::bind_retry`] (logging once that it waits: a previous instance may
    /// still be releasing the port), then fails with [`ServerError::AddrInUse`].
    pub fn bind(cfg: ServerConfig) -> Result<Self, ServerError> {
        let backend = ringwire_io::detect(cfg.io).map_err(ServerError::Backend)?;
        let threads = cfg.resolved_threads();
        let listeners = bind_retrying(&cfg, threads).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => ServerError::AddrInUse(cfg.addr),
            std::io::ErrorKind::PermissionDenied => ServerError::PermissionDenied(cfg.addr),
            _ => ServerError::Bind { addr: cfg.addr, source: e },
        })?;
        let local_addr = listeners[0].local_addr().map_err(|e| ServerError::Bind { addr: cfg.addr, source: e })?;
        let listeners = listeners.into_iter().map(|l| vec![l]).collect();
        Self::with_listeners(cfg, listeners, local_addr, backend)
    }

    /// A server on listeners made elsewhere: inherited from systemd socket activation
    /// (`LISTEN_FDS`), bound by the application, or passed by a supervisor. Every worker
    /// accepts on every listener (each gets its own duplicate of the descriptor; the
    /// kernel hands each new connection to one of them); `cfg.addr`, `cfg.backlog` and
    /// `cfg.bind_retry` are not used, everything else is. The listeners are made
    /// non-blocking. [`local_addr`](Self::local_addr) is the first listener's.
    ///
    /// Nothing here touches the process's signals: [`run`](Self::run) and
    /// [`spawn`](Self::spawn) serve until [`ServerHandle::shutdown`]; only
    /// [`run_until_signal`](Self::run_until_signal) installs SIGINT/SIGTERM/SIGHUP handling.
    ///
    /// ```no_run
    /// use ringwire_server::{Handler, Server, ServerConfig};
    /// use std::os::fd::FromRawFd;
    /// # #[derive(Clone)] struct Echo;
    /// # impl Handler for Echo {}
    /// // systemd socket activation: the first passed descriptor is 3.
    /// let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    /// let server = Server::from_listeners(ServerConfig::default(), vec![listener])?;
    /// server.run(Echo)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_listeners(cfg: ServerConfig, listeners: Vec<TcpListener>) -> Result<Self, ServerError> {
        let backend = ringwire_io::detect(cfg.io).map_err(ServerError::Backend)?;
        let handed_in = |source| ServerError::Bind { addr: cfg.addr, source };
        let first = listeners.first().ok_or_else(|| {
            handed_in(std::io::Error::new(std::io::ErrorKind::InvalidInput, "from_listeners: no listener given"))
        })?;
        let local_addr = first.local_addr().map_err(handed_in)?;
        let mut per_worker = Vec::new();
        for _ in 0..cfg.resolved_threads() {
            let copies = listeners
                .iter()
                .map(|l| {
                    let copy = l.try_clone()?;
                    copy.set_nonblocking(true)?;
                    Ok(copy)
                })
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(handed_in)?;
            per_worker.push(copies);
        }
        Self::with_listeners(cfg, per_worker, local_addr, backend)
    }

    fn with_listeners(
        cfg: ServerConfig,
        listeners: Vec<Vec<TcpListener>>,
        local_addr: SocketAddr,
        backend: Detected,
    ) -> Result<Self, ServerError> {
        let tls = cfg.tls.clone().map(SharedServerConfig::new).transpose()?.map(Arc::new);
        let shared = Arc::new(Shared::new(listeners.len(), &cfg, tls));
        Ok(Self { cfg: Arc::new(cfg), listeners, local_addr, backend, shared })
    }

    /// The address the listeners are bound to (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The I/O backend that will run, and why it was chosen.
    pub fn backend(&self) -> &Detected {
        &self.backend
    }

    /// A handle to broadcast to, count, or shut down the server from any thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle { shared: Arc::clone(&self.shared) }
    }

    /// Worker threads the server runs (its configured `threads`, 0 resolved to the cores).
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Joins this server's topics to other processes' through `bus` (see [`TopicBus`]):
    /// the bus hears when the process gains its first or loses its last subscriber of
    /// a topic, and gets every message published here; what it receives from the others
    /// it hands to [`ServerHandle::publish_local`]. Set once, before serving.
    ///
    /// # Panics
    ///
    /// When a bus is attached already.
    pub fn with_bus(self, bus: Arc<dyn TopicBus>) -> Self {
        assert!(self.shared.bus.set(bus).is_ok(), "a bus is attached to this server already");
        self
    }

    /// Serves on one thread per worker, each with a clone of `handler`, until
    /// [`ServerHandle::shutdown`] (or, with [`Server::run_until_signal`], SIGINT/SIGTERM).
    /// Returns once every worker has closed its connections and stopped.
    pub fn run<H: Handler + Clone>(self, handler: H) -> Result<(), ServerError> {
        self.spawn(handler).join()
    }

    /// Like [`Server::run`], but SIGINT and SIGTERM start a graceful shutdown: stop
    /// accepting, close every connection with 1001 after flushing what is queued, abort
    /// what is left at [`ServerConfig::shutdown_timeout`], return. A second signal exits
    /// the process at once (see [`shutdown_on_signals`](crate::shutdown_on_signals)).
    pub fn run_until_signal<H: Handler + Clone>(self, handler: H) -> Result<(), ServerError> {
        crate::signal::shutdown_on_signals(self.handle());
        self.run(handler)
    }

    /// Starts serving in background threads and returns at once.
    pub fn spawn<H: Handler + Clone>(self, handler: H) -> RunningServer {
        tracing::info!(
            "io backend: {} ({}); {} worker(s) listening on {}{}",
            self.backend.backend,
            self.backend.reason,
            self.listeners.len(),
            self.local_addr,
            self.shared.tls.as_ref().map_or(String::new(), |t| format!(" with tls ({})", t.describe()))
        );
        let mut threads = Vec::new();
        for (index, listeners) in self.listeners.into_iter().enumerate() {
            let handler = handler.clone();
            let shared = Arc::clone(&self.shared);
            let cfg = Arc::clone(&self.cfg);
            let backend = self.backend.backend;
            let t = std::thread::Builder::new().name(format!("ringwire-{index}")).spawn(move || {
                let run = || -> std::io::Result<()> {
                    let (mut event_loop, waker) = EventLoop::new(backend, &cfg.resolved_event_loop())?;
                    for listener in listeners {
                        event_loop.add_listener(listener)?;
                    }
                    shared.workers[index].set_waker(waker);
                    let worker = Worker::new(index, handler, Arc::clone(&shared), Arc::clone(&cfg));
                    match &shared.tls {
                        Some(tls) => {
                            let opts = TlsOptions {
                                handshake_timeout: cfg.handshake_timeout,
                                handshakes_per_turn: cfg.tls_handshakes_per_turn,
                                // The worker counts, limits and times connections from accept.
                                accept_early: true,
                            };
                            let mut tls = TlsHandler::server_shared(worker, Arc::clone(tls)).with_options(opts);
                            event_loop.run(&mut tls)
                        }
                        None => event_loop.run(&mut { worker }),
                    }
                };
                let result = run();
                // Whatever ended the loop, nothing more reaches this worker.
                shared.workers[index].close();
                if result.is_err() {
                    // One worker failing takes the server down rather than limping on.
                    shared.shutdown();
                }
                result.map_err(|source| ServerError::Worker { worker: index, source })
            });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.shared.shutdown();
                    threads.push(std::thread::spawn(move || Err(ServerError::Worker { worker: index, source: e })));
                }
            }
        }
        RunningServer { handle: ServerHandle { shared: self.shared }, local_addr: self.local_addr, threads }
    }
}

/// Binds the listeners, retrying while the address is in use for up to `cfg.bind_retry`.
fn bind_retrying(cfg: &ServerConfig, threads: usize) -> std::io::Result<Vec<TcpListener>> {
    const EVERY: Duration = Duration::from_millis(50);
    let start = Instant::now();
    let mut logged = false;
    loop {
        match ringwire_io::bind_reuseport(cfg.addr, threads, cfg.backlog) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && start.elapsed() < cfg.bind_retry => {
                if !logged {
                    logged = true;
                    tracing::warn!(
                        addr = %cfg.addr,
                        retry_for = ?cfg.bind_retry,
                        "address in use; a previous instance may still be releasing the port: retrying"
                    );
                }
                std::thread::sleep(EVERY.min(cfg.bind_retry.saturating_sub(start.elapsed())));
            }
            result => return result,
        }
    }
}

/// A server serving in background threads.
pub struct RunningServer {
    handle: ServerHandle,
    local_addr: SocketAddr,
    threads: Vec<JoinHandle<Result<(), ServerError>>>,
}

impl RunningServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to the server.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub fn shutdown(self) -> Result<(), ServerError> {
        self.handle.shutdown();
        self.join()
    }

    /// Waits for every worker to stop; the first error wins.
    pub fn join(self) -> Result<(), ServerError> {
        let mut first = Ok(());
        for t in self.threads {
            let r = t.join().unwrap_or_else(|_| {
                Err(ServerError::Worker { worker: usize::MAX, source: std::io::Error::other("worker panicked") })
            });
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Reaches the whole server from any thread. `Send + Sync + Clone`.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A [`ServerHandle`] that does not keep the server alive ([`ServerHandle::downgrade`]).
#[derive(Clone)]
pub struct WeakServerHandle {
    shared: std::sync::Weak<Shared>,
}

impl WeakServerHandle {
    /// The handle, while the server (or another handle to it) exists.
    pub fn upgrade(&self) -> Option<ServerHandle> {
        self.shared.upgrade().map(|shared| ServerHandle { shared })
    }
}

impl std::fmt::Debug for WeakServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakServerHandle").finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Sends a message to every open connection on every worker, framed once: a
    /// [`PreparedMessage`], or anything `send` takes (`&str`, `String`, `Bytes`, ...).
    ///
    /// `Err(QueueError::Full { missed })`: `missed` workers had a full mailbox (see
    /// [`ServerConfig::mailbox_capacity`]) and their connections do not get the message;
    /// the other workers do. `Err(QueueError::Closed)`: the server is shutting down and
    /// nothing was sent.
    pub fn broadcast(&self, message: impl Into<PreparedMessage>) -> Result<(), QueueError> {
        self.shared.push_broadcast(&message.into(), None)
    }

    /// Sends `message` to every subscriber of `topic` on every worker (as uWebSockets'
    /// `app.publish`) and to the other processes on the [bus](Server::with_bus). Framed
    /// once for all; never blocks. Errors as [`broadcast`](Self::broadcast)'s.
    pub fn publish(&self, topic: &str, message: impl Into<PreparedMessage>) -> Result<(), QueueError> {
        self.shared.publish(&topic.into(), &message.into(), None)
    }

    /// A handle that does not keep the server's shared state alive: for a thread that
    /// serves the server but must not outlive it (a [`TopicBus`] delivering messages).
    pub fn downgrade(&self) -> WeakServerHandle {
        WeakServerHandle { shared: Arc::downgrade(&self.shared) }
    }

    /// Sends `message` to every subscriber of `topic` in this process only: for a
    /// [`TopicBus`] delivering what other processes published.
    pub fn publish_local(&self, topic: &str, message: impl Into<PreparedMessage>) -> Result<(), QueueError> {
        self.shared.push_publish(&topic.into(), &message.into(), None)
    }

    /// Starts a graceful shutdown: stop accepting, close every connection with 1001
    /// after flushing what is queued, abort those still open after
    /// [`ServerConfig::shutdown_timeout`]; [`Server::run`] returns when all are closed.
    /// Never refused, however full the workers' mailboxes are.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// Whether a graceful shutdown has begun ([`shutdown`](Self::shutdown), a signal):
    /// the server no longer accepts and is draining. What a health check reports as
    /// unavailable, so a load balancer sends new clients elsewhere.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// Reads the TLS certificate and key files again and serves them to new connections
    /// (each worker swaps its own copy at its next accept; open connections keep theirs).
    /// On any error (a missing file, a key that does not fit) the certificates in force
    /// stay and the error says why. `Err(TlsConfigError::Empty)` when the server has no TLS.
    pub fn reload_tls(&self) -> Result<(), TlsConfigError> {
        self.shared.tls.as_ref().ok_or(TlsConfigError::Empty)?.reload()
    }

    /// Serves `tls` to new connections from now on, like [`reload_tls`](Self::reload_tls)
    /// (later reloads read its files); on error nothing changes.
    pub fn set_tls(&self, tls: ServerTlsConfig) -> Result<(), TlsConfigError> {
        self.shared.tls.as_ref().ok_or(TlsConfigError::Empty)?.replace(tls)
    }

    /// The server's counters, summed over its workers: connections accepted and open,
    /// upgrades refused by status, messages and bytes in and out, close frames by code,
    /// protocol errors, drops, queued bytes, accept errors, topics (see [`Stats`]).
    ///
    /// Costs the workers nothing: each keeps its counters in plain integers and stores
    /// the ones that changed in its own cache-line-aligned block of atomics at the end
    /// of every loop turn; this call only loads and adds. A snapshot is therefore up to
    /// one loop turn old.
    pub fn stats(&self) -> Stats {
        crate::stats::sum(&self.shared.stats)
    }

    /// Open connections (handshaking included) across all workers.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("connections", &self.connections()).finish()
    }
}
