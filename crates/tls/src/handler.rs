//! The decorator at ringwire-io's seam: TLS under any [`Handler`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringwire_io::{ConnId, Handler, Io, RecvBuf};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use crate::config::{LocalServerConfig, SharedServerConfig};
use crate::session::{HANDSHAKE_STAGING_LIMIT, sealed_len};
use crate::{TlsError, TlsSession};

/// Maps keyed by connection id. The ids are the loop's (slot and generation), never the
/// peer's, so a multiplicative hash is safe here and cheaper than SipHash, which took 1.1%
/// of the server's CPU on small TLS echoes (a lookup per callback).
type IdMap<V> = HashMap<ConnId, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<ConnId, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of the id's words.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u8(b);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n.into());
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n.into());
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Plaintext encrypted per `io.send`: a larger [`Io::send`] through [`TlsIo`] becomes several
/// ciphertext chunks of at most this plus ~30 bytes per 16 KiB record, so the encrypt output
/// is bounded whatever the inner handler sends.
pub const MAX_SEND_CHUNK: usize = 64 << 10;

/// Settings of a [`TlsHandler`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// How long a TLS handshake may take from accept (or connect) to its end; past it the
    /// connection is aborted. Default 10 s.
    pub handshake_timeout: Duration,
    /// Handshake steps (one `on_data` of a connection still handshaking) processed per loop
    /// turn; past the cap the ciphertext is kept, the connection's reads paused and the work
    /// done in a later turn, so a handshake storm cannot stall established connections.
    /// Default 5 (what uSockets does). At least 1.
    pub handshakes_per_turn: usize,
    /// Server side: tell the inner handler of a connection at TCP accept instead of when
    /// the TLS handshake is done (default false). A server that counts and limits
    /// connections at accept then counts handshaking ones too, and its handshake timer
    /// covers the TLS handshake. Until the handshake is done the inner handler gets no
    /// data; what it sends is held as plaintext (at most [`MAX_SEND_CHUNK`]; more fails the
    /// connection with [`TlsError::NotReady`]) and sent once the handshake is done, and a
    /// close it asks for then waits for the handshake to end (within
    /// [`handshake_timeout`](Self::handshake_timeout)) so that the answer gets out, or
    /// closes at once when nothing was sent.
    pub accept_early: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { handshake_timeout: Duration::from_secs(10), handshakes_per_turn: 5, accept_early: false }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Server { peer: SocketAddr },
    Client,
}

/// Per-connection TLS state.
struct Conn {
    session: TlsSession,
    kind: Kind,
    /// The handshake is done (and the inner handler told: on_accept or on_connect(Ok)).
    ready: bool,
    /// The inner handler knows the connection: `ready`, or told at accept
    /// ([`TlsOptions::accept_early`]).
    known: bool,
    /// Plaintext the inner handler sent before the handshake was done ([`TlsOptions::accept_early`]).
    pending: Vec<u8>,
    /// The inner handler closed before the handshake was done, with `pending` to send first.
    close_when_ready: bool,
    /// A close started (by the inner handler, a TLS error, or the peer's close_notify):
    /// no more data goes to the inner handler.
    closing: bool,
    /// The TLS error to report when the connection is gone.
    error: Option<TlsError>,
    /// (ciphertext bytes, plaintext bytes) of each `io.send`, oldest first.
    sent: VecDeque<(usize, usize)>,
    /// Ciphertext bytes of the front entry of `sent` already written.
    sent_front: usize,
    /// Plaintext bytes sent by the inner handler and not yet written.
    queued_plain: usize,
    /// Ciphertext held back by the handshake cap (reads are paused meanwhile).
    stash: Option<Vec<u8>>,
    /// End of the handshake deadline.
    deadline: Option<Instant>,
    /// The inner handler's timer while the handshake runs (the connection has one timer
    /// slot: the earlier of the two is armed; the inner one is re-armed when it is done).
    inner_timer: Option<Instant>,
}

impl Conn {
    fn new(session: TlsSession, kind: Kind, deadline: Instant, inner_timer: Option<Instant>) -> Self {
        Conn {
            session,
            kind,
            ready: false,
            known: false,
            pending: Vec::new(),
            close_when_ready: false,
            closing: false,
            error: None,
            sent: VecDeque::new(),
            sent_front: 0,
            queued_plain: 0,
            stash: None,
            deadline: Some(deadline),
            inner_timer,
        }
    }

    /// Arms the connection's timer slot during the handshake: the earlier of the handshake
    /// deadline and the inner handler's timer (a stashed connection keeps its wake-up timer
    /// until `on_turn_end` calls this).
    fn arm(&self, io: &mut impl Io, id: ConnId) {
        let at = match (self.deadline, self.inner_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        io.set_timer(id, at);
    }

    /// Queues ciphertext on the socket and remembers how much plaintext it carries.
    fn send_cipher(&mut self, io: &mut impl Io, id: ConnId, cipher: Vec<u8>, plain: usize) {
        if cipher.is_empty() {
            return;
        }
        self.sent.push_back((cipher.len(), plain));
        self.queued_plain += plain;
        io.send(id, Bytes::from(cipher));
    }

    /// Encrypts `data` in chunks of [`MAX_SEND_CHUNK`] and queues them.
    fn send_plain(&mut self, io: &mut impl Io, id: ConnId, data: &[u8]) -> Result<(), TlsError> {
        for chunk in data.chunks(MAX_SEND_CHUNK) {
            // Sized for the records, so that encryption never grows (copies) it.
            let mut out = Vec::with_capacity(sealed_len(chunk.len()));
            self.session.encrypt(chunk, &mut out)?;
            self.send_cipher(io, id, out, chunk.len());
        }
        Ok(())
    }

    /// Clean close: close_notify (once the handshake is done), then the graceful io close.
    fn start_close(&mut self, io: &mut impl Io, id: ConnId) {
        if self.closing {
            return;
        }
        self.closing = true;
        let mut out = Vec::new();
        if self.session.close_notify(&mut out).is_ok() {
            self.send_cipher(io, id, out, 0);
        }
        io.close(id);
    }

    /// A TLS failure: one log line, the alert (if any) sent, a graceful close so it gets out.
    fn fail(&mut self, io: &mut impl Io, id: ConnId, e: TlsError, alert: Vec<u8>) {
        let peer = io.peer_addr(id);
        tracing::debug!(conn = %id, ?peer, error = %e, "tls failure, closing");
        self.send_cipher(io, id, alert, 0);
        if self.error.is_none() {
            self.error = Some(e);
        }
        if !self.closing {
            self.closing = true;
            io.close(id);
        }
    }

    /// `bytes` of ciphertext were written: the plaintext of the chunks now fully written.
    fn written(&mut self, mut bytes: usize) -> usize {
        let mut plain = 0;
        while bytes > 0 {
            let Some(&(cipher, p)) = self.sent.front() else { break };
            let left = cipher - self.sent_front;
            if bytes >= left {
                bytes -= left;
                plain += p;
                self.sent.pop_front();
                self.sent_front = 0;
            } else {
                self.sent_front += bytes;
                bytes = 0;
            }
        }
        self.queued_plain -= plain;
        plain
    }
}

/// The [`Io`] the inner handler of a [`TlsHandler`] sees: `send` takes plaintext and sends
/// its ciphertext, `queued` counts plaintext, `close` sends close_notify first. Everything
/// else goes straight to the real `Io`.
pub struct TlsIo<'a, I: Io> {
    io: &'a mut I,
    conns: &'a mut IdMap<Conn>,
    names: &'a mut IdMap<ServerName<'static>>,
    /// The inner handler's timers on connections not yet connected (no session yet).
    timers: &'a mut IdMap<Instant>,
    routes: &'a mut Routes,
    /// The handler's handshake counts, reported by [`Io::loop_stats`].
    handshakes: &'a Handshakes,
}

/// Handshakes completed and failed, since the start.
#[derive(Debug, Default, Clone, Copy)]
struct Handshakes {
    done: u64,
    failed: u64,
}

/// Client connections that are not the handler's default: plain ones passed through
/// untouched, and TLS ones with a config of their own.
#[derive(Default)]
struct Routes {
    plain: IdSet,
    configs: IdMap<Arc<ClientConfig>>,
}

impl<I: Io> TlsIo<'_, I> {
    /// Starts a TLS client connection to `addr` verifying the server as `name` (and sending
    /// it as SNI). [`Io::connect`] uses [`TlsHandler::default_server_name`] instead.
    pub fn connect_tls(&mut self, addr: SocketAddr, name: ServerName<'static>) -> io::Result<ConnId> {
        let id = self.io.connect(addr)?;
        self.names.insert(id, name);
        Ok(id)
    }

    /// Like [`connect_tls`](Self::connect_tls) with a client config of its own instead of the
    /// handler's (which may then have none: [`TlsHandler::new`] with `client: None`).
    pub fn connect_tls_with(
        &mut self,
        addr: SocketAddr,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> io::Result<ConnId> {
        let id = self.connect_tls(addr, name)?;
        self.routes.configs.insert(id, config);
        Ok(id)
    }

    /// Starts a connection to `addr` that this handler passes through untouched: no TLS, its
    /// callbacks go to the inner handler as they come and its sends go out as they are (a
    /// loop that mixes `ws://` and `wss://` connections).
    pub fn connect_plain(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let id = self.io.connect(addr)?;
        self.routes.plain.insert(id);
        Ok(id)
    }

    /// The ALPN protocol agreed with the peer of `conn`.
    pub fn alpn_protocol(&self, conn: ConnId) -> Option<&[u8]> {
        self.conns.get(&conn).and_then(|c| c.session.alpn_protocol())
    }
}

impl<I: Io> Io for TlsIo<'_, I> {
    fn now(&self) -> Instant {
        self.io.now()
    }
    fn send(&mut self, conn: ConnId, chunk: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            if self.routes.plain.contains(&conn) {
                self.io.send(conn, chunk);
            }
            return;
        };
        if c.closing || c.close_when_ready || !c.known {
            return; // as the real Io drops sends after close
        }
        if !c.ready {
            // Held until the handshake is done, at most MAX_SEND_CHUNK: a refusal, not a stream.
            if c.pending.len() + chunk.len() > MAX_SEND_CHUNK {
                c.fail(self.io, conn, TlsError::NotReady, Vec::new());
            } else {
                c.pending.extend_from_slice(&chunk);
            }
            return;
        }
        if let Err(e) = c.send_plain(self.io, conn, &chunk) {
            c.fail(self.io, conn, e, Vec::new());
        }
    }
    fn queued(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            Some(c) => c.queued_plain + c.pending.len(),
            None if self.routes.plain.contains(&conn) => self.io.queued(conn),
            None => 0,
        }
    }
    fn close(&mut self, conn: ConnId) {
        match self.conns.get_mut(&conn) {
            // An answer to send first: once the handshake is done (see TlsOptions::accept_early).
            Some(c) if !c.ready && !c.pending.is_empty() => c.close_when_ready = true,
            Some(c) => c.start_close(self.io, conn),
            None => self.io.close(conn),
        }
    }
    fn abort(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
        self.io.abort(conn);
    }
    fn pause_read(&mut self, conn: ConnId) {
        self.io.pause_read(conn);
    }
    fn resume_read(&mut self, conn: ConnId) {
        self.io.resume_read(conn);
    }
    fn recv_into(&mut self, conn: ConnId, buf: BytesMut, max: usize) -> Result<(), BytesMut> {
        // A TLS connection's plaintext comes out of rustls; a plain one's straight from the loop.
        if self.conns.contains_key(&conn) || !self.routes.plain.contains(&conn) {
            return Err(buf);
        }
        self.io.recv_into(conn, buf, max)
    }
    fn set_timer(&mut self, conn: ConnId, at: Option<Instant>) {
        match self.conns.get_mut(&conn) {
            Some(c) if !c.ready => {
                c.inner_timer = at;
                if c.stash.is_none() {
                    c.arm(self.io, conn);
                }
            }
            Some(_) => self.io.set_timer(conn, at),
            None if self.routes.plain.contains(&conn) => self.io.set_timer(conn, at),
            None => {
                // Not connected yet: the slot is the inner handler's until the TLS session
                // starts; remembered so that on_connect keeps it.
                match at {
                    Some(at) => self.timers.insert(conn, at),
                    None => self.timers.remove(&conn),
                };
                self.io.set_timer(conn, at);
            }
        }
    }
    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.io.connect(addr)
    }
    fn stop_accepting(&mut self) {
        self.io.stop_accepting();
    }
    fn stop(&mut self) {
        self.io.stop();
    }
    fn conn_count(&self) -> usize {
        self.io.conn_count()
    }
    fn loop_stats(&self) -> ringwire_io::LoopStats {
        let h = self.handshakes;
        ringwire_io::LoopStats { tls_handshakes: h.done, tls_handshake_failures: h.failed, ..self.io.loop_stats() }
    }
    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.io.peer_addr(conn)
    }
    fn set_nodelay(&mut self, conn: ConnId, on: bool) -> io::Result<()> {
        self.io.set_nodelay(conn, on)
    }
    fn set_keepalive(&mut self, conn: ConnId, idle: Option<Duration>) -> io::Result<()> {
        self.io.set_keepalive(conn, idle)
    }
}

/// TLS under a [`Handler`]: every connection of the loop is TLS (but those made with
/// [`TlsIo::connect_plain`]), and the inner handler sees plaintext only.
///
/// - Accepted connections get a server session from the current [`ServerConfig`]; the inner
///   `on_accept` runs when the handshake is done, or at TCP accept with
///   [`TlsOptions::accept_early`] (its data still comes only after the handshake).
/// - Connections from [`Io::connect`] get a client session for the name set with
///   [`TlsHandler::set_server_name`] / [`TlsIo::connect_tls`], else
///   [`TlsHandler::default_server_name`], and the config given to
///   [`TlsIo::connect_tls_with`] or else the handler's; the inner `on_connect(Ok)` runs when
///   the handshake is done, `on_connect(Err)` and `on_closed(Some)` if it fails (both errors
///   hold the [`TlsError`] when there is one).
/// - Connections from [`TlsIo::connect_plain`] are no TLS at all: passed through untouched.
/// - A TLS error (or a handshake past [`TlsOptions::handshake_timeout`]) closes the
///   connection; the inner handler gets `on_closed` with an `io::Error` holding the
///   [`TlsError`] if it knew the connection, otherwise there is one debug log line.
/// - The peer's close_notify is answered with close_notify and a graceful close; the inner
///   handler's [`Io::close`] sends close_notify first. A peer EOF without close_notify after
///   the handshake is reported as [`TlsError::Truncated`].
/// - At most [`TlsOptions::handshakes_per_turn`] handshake steps run per loop turn.
/// - Timers: a connection has one timer slot. Before TCP connects it is the inner handler's
///   (its `on_timer` is forwarded); during the handshake the earlier of the handshake
///   deadline and the inner handler's timer is armed and each goes to its owner; when the
///   handshake is done the inner handler's timer is armed again.
pub struct TlsHandler<H> {
    inner: H,
    server: Option<LocalServerConfig>,
    client: Option<Arc<ClientConfig>>,
    default_name: Option<ServerName<'static>>,
    opts: TlsOptions,
    conns: IdMap<Conn>,
    names: IdMap<ServerName<'static>>,
    /// The inner handler's timers on connections not yet connected.
    timers: IdMap<Instant>,
    /// Plain client connections, and client configs of single connections.
    routes: Routes,
    /// Connections the inner handler never hears of (refused at accept).
    ignored: IdSet,
    /// Client connections the inner handler knows that failed before a session existed.
    failed: IdMap<TlsError>,
    /// Connections with stashed handshake ciphertext, oldest first.
    deferred: VecDeque<ConnId>,
    turn_handshakes: usize,
    /// Handshake steps put off to a later turn by the cap, since the start.
    deferred_total: u64,
    /// Handshake steps run, since the start.
    steps_total: u64,
    handshakes: Handshakes,
    /// Reused plaintext buffer.
    plain: Vec<u8>,
}

impl<H> std::fmt::Debug for TlsHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsHandler")
            .field("server", &self.server.is_some())
            .field("client", &self.client.is_some())
            .field("conns", &self.conns.len())
            .field("deferred", &self.deferred.len())
            .field("opts", &self.opts)
            .finish()
    }
}

macro_rules! tio {
    ($self:ident, $io:ident) => {
        &mut TlsIo {
            io: &mut *$io,
            conns: &mut $self.conns,
            names: &mut $self.names,
            timers: &mut $self.timers,
            routes: &mut $self.routes,
            handshakes: &$self.handshakes,
        }
    };
}

impl<H: Handler> TlsHandler<H> {
    /// A handler that serves TLS with `config` on accepted connections (set
    /// `config.alpn_protocols = vec![b"http/1.1".to_vec()]` for ALPN).
    pub fn server(inner: H, config: Arc<ServerConfig>) -> Self {
        Self::new(inner, Some(config), None)
    }

    /// A handler that serves TLS with the config in force in `shared` (checked at each
    /// accept; see [`SharedServerConfig`]: one atomic load, the lock only after a swap).
    pub fn server_shared(inner: H, shared: Arc<SharedServerConfig>) -> Self {
        let mut h = Self::new(inner, None, None);
        h.server = Some(LocalServerConfig::new(shared));
        h
    }

    /// A handler whose outgoing connections speak TLS with `config`.
    pub fn client(inner: H, config: Arc<ClientConfig>) -> Self {
        Self::new(inner, None, Some(config))
    }

    /// Either side or both (a loop that accepts and connects).
    pub fn new(inner: H, server: Option<Arc<ServerConfig>>, client: Option<Arc<ClientConfig>>) -> Self {
        TlsHandler {
            inner,
            server: server.map(|cfg| LocalServerConfig::new(Arc::new(SharedServerConfig::from_rustls(cfg)))),
            client,
            default_name: None,
            opts: TlsOptions::default(),
            conns: IdMap::default(),
            names: IdMap::default(),
            timers: IdMap::default(),
            routes: Routes::default(),
            ignored: IdSet::default(),
            failed: IdMap::default(),
            deferred: VecDeque::new(),
            turn_handshakes: 0,
            deferred_total: 0,
            steps_total: 0,
            handshakes: Handshakes::default(),
            plain: Vec::new(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, opts: TlsOptions) -> Self {
        self.opts = TlsOptions { handshakes_per_turn: opts.handshakes_per_turn.max(1), ..opts };
        self
    }

    /// The name client connections verify when none was set for them.
    pub fn default_server_name(mut self, name: ServerName<'static>) -> Self {
        self.default_name = Some(name);
        self
    }

    /// The server name for client connection `conn` (made with `EventLoop::connect`).
    pub fn set_server_name(&mut self, conn: ConnId, name: ServerName<'static>) {
        self.names.insert(conn, name);
    }

    /// Swaps the server config for new connections (existing ones keep theirs).
    pub fn set_server_config(&mut self, config: Arc<ServerConfig>) {
        self.server = Some(LocalServerConfig::new(Arc::new(SharedServerConfig::from_rustls(config))));
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The wrapped handler, mutably.
    pub fn inner_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    /// Unwraps the inner handler.
    pub fn into_inner(self) -> H {
        self.inner
    }

    /// The inner handler and a [`TlsIo`] over `io`, to drive the inner handler from outside
    /// a callback of this one (a wrapper that runs work of its own after each callback, with
    /// [`TlsIo::connect_tls_with`] and [`TlsIo::connect_plain`] at hand).
    pub fn split<'a, I: Io>(&'a mut self, io: &'a mut I) -> (&'a mut H, TlsIo<'a, I>) {
        let tio = TlsIo {
            io,
            conns: &mut self.conns,
            names: &mut self.names,
            timers: &mut self.timers,
            routes: &mut self.routes,
            handshakes: &self.handshakes,
        };
        (&mut self.inner, tio)
    }

    /// Puts `inner` in place of the inner handler, keeping every session and setting, and
    /// returns the old one: a handler that lives across several `EventLoop::run` calls with
    /// an inner handler that borrows per call.
    pub fn with_inner<H2>(self, inner: H2) -> (TlsHandler<H2>, H) {
        // every field but `inner` moves over (named once: a new field must be added here)
        macro_rules! move_fields {
            ($($f:ident),*) => {{
                let TlsHandler { inner: old, $($f),* } = self;
                (TlsHandler { inner, $($f),* }, old)
            }};
        }
        move_fields!(
            server,
            client,
            default_name,
            opts,
            conns,
            names,
            timers,
            routes,
            ignored,
            failed,
            deferred,
            turn_handshakes,
            deferred_total,
            steps_total,
            handshakes,
            plain
        )
    }

    /// Connections with a TLS session (handshaking or established).
    pub fn sessions(&self) -> usize {
        self.conns.len()
    }

    /// Handshake steps the per-turn cap put off to a later turn, since the start.
    pub fn deferred_handshakes(&self) -> u64 {
        self.deferred_total
    }

    /// Handshake steps run (ciphertext of a connection still handshaking fed to its
    /// session, at once or deferred), since the start: at most
    /// [`TlsOptions::handshakes_per_turn`] between two `on_turn_end` calls.
    pub fn handshake_steps(&self) -> u64 {
        self.steps_total
    }

    /// Feeds ciphertext to `id`'s session and tells the inner handler what came of it.
    fn feed(&mut self, io: &mut impl Io, id: ConnId, data: &mut [u8]) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let mut out = Vec::new();
        let mut plain = mem::take(&mut self.plain);
        plain.clear();
        let r = c.session.read(data, &mut out, &mut plain);
        if let Err(e) = r {
            c.fail(io, id, e, out);
            self.plain = plain;
            return;
        }
        c.send_cipher(io, id, out, 0);
        if !c.ready && !c.session.is_handshaking() {
            c.ready = true;
            self.handshakes.done += 1;
            c.deadline = None;
            io.set_timer(id, c.inner_timer.take()); // the slot is the inner handler's again
            if c.known {
                // Told at accept: what it sent meanwhile goes out now, then its close.
                let pending = mem::take(&mut c.pending);
                if let Err(e) = c.send_plain(io, id, &pending) {
                    c.fail(io, id, e, Vec::new());
                } else if c.close_when_ready {
                    c.start_close(io, id);
                }
            } else {
                c.known = true;
                let kind = c.kind;
                match kind {
                    Kind::Server { peer } => self.inner.on_accept(tio!(self, io), id, peer),
                    Kind::Client => self.inner.on_connect(tio!(self, io), id, Ok(())),
                }
            }
        }
        if !plain.is_empty() && self.conns.get(&id).is_some_and(|c| c.ready && !c.closing) {
            self.inner.on_data(tio!(self, io), id, RecvBuf::from_slice(&mut plain));
        }
        if let Some(c) = self.conns.get_mut(&id)
            && c.session.peer_closed()
        {
            c.start_close(io, id);
        }
        self.plain = plain;
    }
}

impl<H: Handler> Handler for TlsHandler<H> {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        let session = match &mut self.server {
            Some(cfg) => TlsSession::server(Arc::clone(cfg.get())),
            None => Err(TlsError::NoConfig("server")),
        };
        match session {
            Ok(s) => {
                let deadline = io.now() + self.opts.handshake_timeout;
                let mut c = Conn::new(s, Kind::Server { peer }, deadline, None);
                c.known = self.opts.accept_early;
                self.conns.insert(conn, c);
                io.set_timer(conn, Some(deadline));
                if self.opts.accept_early {
                    self.inner.on_accept(tio!(self, io), conn, peer);
                }
            }
            Err(e) => {
                tracing::debug!(conn = %conn, %peer, error = %e, "tls: refusing connection");
                self.ignored.insert(conn);
                io.abort(conn);
            }
        }
    }

    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        if self.routes.plain.contains(&conn) {
            return self.inner.on_connect(tio!(self, io), conn, result);
        }
        let name = self.names.remove(&conn).or_else(|| self.default_name.clone());
        let config = self.routes.configs.remove(&conn).or_else(|| self.client.clone());
        let inner_timer = self.timers.remove(&conn);
        if let Err(e) = result {
            return self.inner.on_connect(tio!(self, io), conn, Err(e));
        }
        let session = match (config, name) {
            (None, _) => Err(TlsError::NoConfig("client")),
            (_, None) => Err(TlsError::NoServerName),
            (Some(cfg), Some(name)) => TlsSession::client(cfg, name),
        };
        let mut s = match session {
            Ok(s) => s,
            Err(e) => {
                let first = e.clone().into();
                self.failed.insert(conn, e);
                io.abort(conn);
                return self.inner.on_connect(tio!(self, io), conn, Err(first));
            }
        };
        let deadline = io.now() + self.opts.handshake_timeout;
        let mut hello = Vec::new();
        let r = s.read(&mut [], &mut hello, &mut Vec::new());
        let c = self.conns.entry(conn).or_insert(Conn::new(s, Kind::Client, deadline, inner_timer));
        c.arm(io, conn);
        match r {
            Ok(()) => c.send_cipher(io, conn, hello, 0),
            Err(e) => c.fail(io, conn, e, hello),
        }
    }

    fn on_data_into(&mut self, io: &mut impl Io, conn: ConnId, buf: BytesMut) {
        // Only plain connections receive into a buffer (see TlsIo::recv_into).
        if self.routes.plain.contains(&conn) {
            self.inner.on_data_into(tio!(self, io), conn, buf);
        }
    }

    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, mut data: RecvBuf<'_>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            if self.routes.plain.contains(&conn) {
                self.inner.on_data(tio!(self, io), conn, data);
            }
            return;
        };
        if c.closing {
            return;
        }
        if !c.ready {
            if let Some(stash) = &mut c.stash {
                if stash.len() + data.len() > HANDSHAKE_STAGING_LIMIT {
                    let e = TlsError::RecordTooLarge { len: stash.len() + data.len(), limit: HANDSHAKE_STAGING_LIMIT };
                    c.fail(io, conn, e, Vec::new());
                } else {
                    stash.extend_from_slice(&data);
                }
                return;
            }
            if self.turn_handshakes >= self.opts.handshakes_per_turn {
                // Over the cap: keep the bytes, pause reads, make sure a next turn comes.
                c.stash = Some(data.to_vec());
                io.pause_read(conn);
                io.set_timer(conn, Some(io.now()));
                self.deferred.push_back(conn);
                self.deferred_total += 1;
                return;
            }
            self.turn_handshakes += 1;
            self.steps_total += 1;
        }
        self.feed(io, conn, &mut data);
    }

    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            if self.routes.plain.contains(&conn) {
                self.inner.on_sent(tio!(self, io), conn, bytes);
            }
            return;
        };
        let plain = c.written(bytes);
        if plain > 0 && c.ready {
            self.inner.on_sent(tio!(self, io), conn, plain);
        }
    }

    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<io::Error>) {
        if self.routes.plain.remove(&conn) {
            return self.inner.on_closed(tio!(self, io), conn, error);
        }
        self.routes.configs.remove(&conn);
        self.names.remove(&conn);
        self.timers.remove(&conn);
        if self.conns.get(&conn).is_some_and(|c| c.stash.is_some()) {
            // gone while deferred: the wake-up timer must not wait on it (see on_turn_end)
            self.deferred.retain(|&d| d != conn);
        }
        if self.ignored.remove(&conn) {
            return;
        }
        let Some(mut c) = self.conns.remove(&conn) else {
            // A client connection that never got a session: the inner handler knows it.
            let e = self.failed.remove(&conn).map(io::Error::from).or(error);
            return self.inner.on_closed(tio!(self, io), conn, e);
        };
        if !c.ready {
            self.handshakes.failed += 1;
        }
        let tls = c.error.take();
        match c.kind {
            _ if c.known => {
                let e = match (tls, error) {
                    (Some(t), _) => Some(t.into()),
                    (None, Some(e)) => Some(e),
                    (None, None) if !c.ready && !c.closing => Some(handshake_aborted()),
                    (None, None) if !c.closing && !c.session.peer_closed() => Some(TlsError::Truncated.into()),
                    (None, None) => None,
                };
                self.inner.on_closed(tio!(self, io), conn, e);
            }
            Kind::Client => {
                // The inner handler asked for this connection: on_connect(Err), then on_closed,
                // both holding the TlsError if there is one (an io error is copied with its
                // kind and message into the first).
                let (first, last): (io::Error, io::Error) = match (tls, error) {
                    (Some(t), _) => (t.clone().into(), t.into()),
                    (None, Some(e)) => (io::Error::new(e.kind(), e.to_string()), e),
                    (None, None) => (handshake_aborted(), handshake_aborted()),
                };
                self.inner.on_connect(tio!(self, io), conn, Err(first));
                self.inner.on_closed(tio!(self, io), conn, Some(last));
            }
            // Logged where it failed (Conn::fail, the handshake timeout).
            Kind::Server { .. } => {}
        }
    }

    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            // Not connected yet (the inner handler's connect timeout, say): its timer.
            self.timers.remove(&conn);
            if !self.ignored.contains(&conn) {
                self.inner.on_timer(tio!(self, io), conn);
            }
            return;
        };
        if c.ready {
            return self.inner.on_timer(tio!(self, io), conn);
        }
        let now = io.now();
        if c.deadline.is_some_and(|d| now >= d) && !c.closing {
            tracing::debug!(conn = %conn, peer = ?io.peer_addr(conn), "tls handshake timed out");
            c.error = Some(TlsError::HandshakeTimeout);
            c.closing = true;
            io.abort(conn);
            return;
        }
        if c.inner_timer.is_some_and(|t| now >= t) {
            c.inner_timer = None;
            if c.stash.is_none() {
                c.arm(io, conn);
            }
            self.inner.on_timer(tio!(self, io), conn);
        } else if c.stash.is_none() {
            c.arm(io, conn); // early or spurious: the slot holds the earliest again
        }
        // A stashed connection's wake-up: on_turn_end runs the deferred work and re-arms.
    }

    fn on_wake(&mut self, io: &mut impl Io) {
        self.inner.on_wake(tio!(self, io));
    }

    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.turn_handshakes = 0;
        while self.turn_handshakes < self.opts.handshakes_per_turn {
            let Some(id) = self.deferred.pop_front() else { break };
            let Some(c) = self.conns.get_mut(&id) else { continue };
            let Some(mut stash) = c.stash.take() else { continue };
            io.resume_read(id);
            c.arm(io, id);
            if c.closing {
                continue;
            }
            self.turn_handshakes += 1;
            self.steps_total += 1;
            self.feed(io, id, &mut stash);
        }
        // Work left for later turns: a timer due now makes sure the next turn comes. Entries
        // with nothing stashed any more (gone or closing) are dropped first: a timer on them
        // would never fire, and the ones behind would wait with paused reads for ever.
        while let Some(&id) = self.deferred.front()
            && !self.conns.get(&id).is_some_and(|c| c.stash.is_some() && !c.closing)
        {
            self.deferred.pop_front();
            if let Some(c) = self.conns.get_mut(&id) {
                c.stash = None;
                io.resume_read(id);
                c.arm(io, id);
            }
        }
        if let Some(&id) = self.deferred.front() {
            io.set_timer(id, Some(io.now()));
        }
        self.inner.on_turn_end(tio!(self, io));
    }
}

fn handshake_aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed during the tls handshake")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::RootCertStore;

    fn conn() -> Conn {
        let cfg = ClientConfig::builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let session = TlsSession::client(Arc::new(cfg), name).unwrap();
        Conn::new(session, Kind::Client, Instant::now(), None)
    }

    #[test]
    fn written_credits_plaintext_only_for_whole_chunks_across_split_counts() {
        let mut c = conn();
        for (cipher, plain) in [(100, 40), (50, 20), (10, 5)] {
            c.sent.push_back((cipher, plain));
            c.queued_plain += plain;
        }
        assert_eq!(c.written(30), 0, "part of the first chunk");
        assert_eq!(c.queued_plain, 65);
        assert_eq!(c.written(100), 40, "the rest of the first and part of the second");
        assert_eq!(c.sent_front, 30);
        assert_eq!(c.written(19), 0, "one byte of the second left");
        assert_eq!(c.written(11), 25, "the second and the third");
        assert_eq!((c.queued_plain, c.sent.len(), c.sent_front), (0, 0, 0));
        assert_eq!(c.written(7), 0, "bytes with nothing queued (close_notify) credit nothing");
    }
}
