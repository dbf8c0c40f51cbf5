//! [`ClientLoop`]: one event loop on the calling thread driving many client connections,
//! each from TCP connect through the handshake to a running `ringwire_conn::Connection`.

use crate::handler::ClientHandler;
use crate::handshake::{self, Refusal, Step};
use crate::ws::{ClientId, ClientWs, Cmd, Ctl, LoopHandle, Shared, Target};
use crate::{ConnectError, ConnectOptions};
use bytes::BytesMut;
use ringwire_conn::handshake::Response;
use ringwire_conn::{ConnInfo, Connection, Role};
use ringwire_drive::{Callback, Driven, Slots, WebSocketConnection, panic_message};
use ringwire_io::{Backend, ConnId, Detected, EventLoop, Handler, Io, IoChoice, LoopConfig, RecvBuf};
use ringwire_tls::{TlsError, TlsHandler, TlsIo, TlsOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Bodies of refusals (non-101 answers) are kept up to this size.
const MAX_BODY: usize = 64 << 10;

/// The TLS layer's own bound on a handshake: only a backstop, the connection's
/// `handshake_timeout` (armed by the driver) comes first unless it is `None`.
const TLS_BACKSTOP: Duration = Duration::from_secs(24 * 3600);

/// One event loop on the calling thread, running any number of client connections.
///
/// A panic in a [`ClientHandler`] callback is contained: it is logged with the
/// connection id, that connection is closed with 1011 "internal error" and gets no
/// further callback (not even `on_close`); the loop and the other connections go on (a
/// panic in `on_connect_failed` is logged and dropped). This needs `panic = "unwind"`.
///
/// ```no_run
/// use ringwire_client::{ClientHandler, ClientLoop, ClientWs, ConnectOptions};
/// use ringwire_conn::{CloseCode, Message};
///
/// struct Hello;
/// impl ClientHandler for Hello {
///     fn on_open(&mut self, ws: &mut ClientWs<'_>) {
///         ws.send("hello");
///     }
///     fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {
///         println!("{message:?}");
///         let _ = ws.close(CloseCode::NORMAL, "bye");
///     }
/// }
///
/// let mut client = ClientLoop::new(ringwire_io::IoChoice::Auto)?;
/// for _ in 0..100 {
///     client.connect("ws://127.0.0.1:9001/", ConnectOptions::default())?;
/// }
/// client.run(&mut Hello)?; // returns when all 100 are closed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClientLoop {
    ev: EventLoop,
    detected: Detected,
    state: LoopState,
    /// The TLS layer under the driver (`wss://`; `ws://` connections pass through it
    /// untouched), with its sessions, between `run` calls.
    tls: Option<TlsHandler<Idle>>,
}

/// The TLS layer's inner handler between `run` calls (none runs then).
struct Idle;

impl Handler for Idle {
    fn on_accept(&mut self, _: &mut impl Io, _: ConnId, _: SocketAddr) {}
    fn on_data(&mut self, _: &mut impl Io, _: ConnId, _: RecvBuf<'_>) {}
    fn on_closed(&mut self, _: &mut impl Io, _: ConnId, _: Option<std::io::Error>) {}
}

fn tls_layer() -> TlsHandler<Idle> {
    // no config of its own: each wss:// connection brings its target's
    TlsHandler::new(Idle, None, None)
        .with_options(TlsOptions { handshake_timeout: TLS_BACKSTOP, ..TlsOptions::default() })
}

impl ClientLoop {
    /// A loop on the backend [`ringwire_io::detect`] picks for `io`, with default loop settings.
    pub fn new(io: IoChoice) -> std::io::Result<Self> {
        Self::with_config(io, &LoopConfig::default())
    }

    /// A loop with explicit loop settings (buffer ring size, ring entries, ...). Its
    /// `nodelay` holds during the handshake; from the 101 on, each connection has the
    /// `TCP_NODELAY` of its own `config.disable_nagle_algorithm`.
    pub fn with_config(io: IoChoice, cfg: &LoopConfig) -> std::io::Result<Self> {
        let detected = ringwire_io::detect(io)?;
        let (ev, waker) = EventLoop::new(detected.backend, cfg)?;
        let shared = Arc::new(Shared::new(waker, Self::DEFAULT_INBOX_CAPACITY));
        Ok(Self {
            ev,
            detected,
            state: LoopState {
                epoch: Instant::now(),
                loop_nodelay: cfg.nodelay,
                slots: Slots::new(),
                ids: HashMap::new(),
                shared,
                cmds: Vec::new(),
                retries: Vec::new(),
                stop_when_idle: true,
            },
            tls: Some(tls_layer()),
        })
    }

    /// The default [`set_inbox_capacity`](Self::set_inbox_capacity): 65,536 commands.
    pub const DEFAULT_INBOX_CAPACITY: usize = 65_536;

    /// Sets how many commands from other threads ([`LoopHandle`]'s `connect`, `send`,
    /// `ping`, `close`, `pause`, `resume`) the loop holds before it takes them (default
    /// [`DEFAULT_INBOX_CAPACITY`](Self::DEFAULT_INBOX_CAPACITY); at least 1). Beyond it
    /// they return [`QueueError::Full`](crate::QueueError::Full); [`LoopHandle::stop`]
    /// always gets through.
    pub fn set_inbox_capacity(&mut self, capacity: usize) {
        self.state.shared.capacity.store(capacity, Ordering::Relaxed);
    }

    /// The backend this loop runs on.
    pub fn backend(&self) -> Backend {
        self.ev.backend()
    }

    /// Which backend was picked and why.
    pub fn detected(&self) -> &Detected {
        &self.detected
    }

    /// Requests a connection to `url`; it starts when [`run`](Self::run) runs. The URL is
    /// parsed, the host resolved and, for `wss://`, the TLS config built (or taken from
    /// [`TlsConfig`](crate::TlsConfig)'s cache) now, so those errors come back here; later
    /// failures go to [`ClientHandler::on_connect_failed`] with the returned id.
    pub fn connect(&mut self, url: &str, opts: ConnectOptions) -> Result<ClientId, ConnectError> {
        let (id, target) = self.state.shared.prepare(url, opts)?;
        self.state.cmds.push(Cmd::Connect(id, target));
        Ok(id)
    }

    /// A handle to reach this loop from other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle { shared: Arc::clone(&self.state.shared) }
    }

    /// Whether [`run`](Self::run) returns once no connection is left (default true). Set it
    /// to false for a loop that waits for [`LoopHandle::connect`] from other threads; it then
    /// returns only on [`Ctl::stop`] / [`LoopHandle::stop`].
    pub fn set_stop_when_idle(&mut self, stop: bool) {
        self.state.stop_when_idle = stop;
    }

    /// Live connections (connecting, handshaking, open or closing).
    pub fn connections(&self) -> usize {
        self.state.slots.len()
    }

    /// Runs the loop, calling `handler`, until a stop is requested or (by default) no
    /// connection is left and none is requested.
    pub fn run<H: ClientHandler>(&mut self, handler: &mut H) -> std::io::Result<()> {
        let pending = !self.state.cmds.is_empty() || self.state.shared.pending();
        if self.state.stop_when_idle && self.state.slots.is_empty() && !pending {
            return Ok(());
        }
        // The first turn picks up what was requested before `run`.
        self.state.shared.waker.wake()?;
        let driver = Driver { st: &mut self.state, h: handler };
        // (a run that panicked lost the TLS layer: a new one, its sessions died with it)
        let (tls, Idle) = self.tls.take().unwrap_or_else(tls_layer).with_inner(driver);
        let mut outer = Outer(tls);
        let result = self.ev.run(&mut outer);
        self.tls = Some(outer.0.with_inner(Idle).0);
        result
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        // Handles that outlive the loop are told so (QueueError::Closed).
        self.state.shared.close();
    }
}

struct LoopState {
    /// What the driver's armed deadlines count from.
    epoch: Instant,
    /// `TCP_NODELAY` as the loop sets it on new sockets.
    loop_nodelay: bool,
    slots: Slots<Slot>,
    ids: HashMap<ClientId, ConnId>,
    shared: Arc<Shared>,
    cmds: Vec<Cmd>,
    /// Attempts to start again on their next address.
    retries: Vec<Attempt>,
    stop_when_idle: bool,
}

/// One connection attempt: the target and which of its addresses is being tried.
struct Attempt {
    id: ClientId,
    target: Box<Target>,
    index: usize,
    /// The end of the handshake (TLS and upgrade) once TCP is up.
    deadline: Option<Instant>,
}

impl Attempt {
    fn addr(&self) -> SocketAddr {
        self.target.addrs[self.index]
    }
}

/// A socket's phase.
enum Slot {
    /// TCP connect in progress.
    Connecting(Attempt),
    /// `wss://`: TCP is up, the TLS handshake runs.
    Tls(Attempt),
    /// Request sent, reading the response head.
    Handshake(Attempt, Vec<u8>),
    /// A non-101 answer: reading its body before reporting it.
    Refused(Attempt, Refusal),
    /// Upgraded: the state machine runs.
    Open(Box<Open>),
    /// Failure reported (or the connection finished); the socket is closing.
    Closing,
}

impl Refusal {
    /// Whether the body is all in: it had a `Content-Length` (the handshake waited for it),
    /// or it runs until the close and the cap is reached.
    fn complete(&self) -> bool {
        !self.until_close || self.body.len() >= MAX_BODY
    }

    fn into_error(mut self) -> ConnectError {
        self.body.truncate(MAX_BODY);
        ConnectError::Status { status: self.status, reason: self.reason, headers: self.headers, body: self.body }
    }
}

struct Open {
    id: ClientId,
    response: Response,
    driven: Driven,
}

/// The driver's way to the handler: each callback gets a [`ClientWs`] around the driver's view.
fn to_handler<'w, H: ClientHandler>(
    h: &'w mut H,
    id: ClientId,
    response: &'w Response,
    shared: &'w Arc<Shared>,
    cmds: &'w mut Vec<Cmd>,
) -> impl FnMut(WebSocketConnection<'_>, Callback) -> bool + 'w {
    move |conn, call| {
        let ws = &mut ClientWs { conn, id, response, ctl: Ctl { shared, cmds: &mut *cmds } };
        ringwire_drive::deliver!(&mut *h, ws, call)
    }
}

struct Driver<'a, H> {
    st: &'a mut LoopState,
    h: &'a mut H,
}

impl<H: ClientHandler> Driver<'_, H> {
    fn fail(&mut self, id: ClientId, error: ConnectError) {
        tracing::debug!(%id, %error, "connect failed");
        self.st.ids.remove(&id);
        let mut ctl = Ctl { shared: &self.st.shared, cmds: &mut self.st.cmds };
        let h = &mut *self.h;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| h.on_connect_failed(&mut ctl, id, error))) {
            tracing::error!(conn = %id, panic = panic_message(&*payload), "on_connect_failed panicked");
        }
    }

    /// Starts (or moves on to the next address of) an attempt: through the TLS layer for
    /// `wss://`, past it for `ws://`.
    fn start<I: Io>(&mut self, io: &mut TlsIo<'_, I>, mut attempt: Attempt) {
        loop {
            let addr = attempt.addr();
            let started = match &attempt.target.tls {
                Some((config, name)) => io.connect_tls_with(addr, name.clone(), config.clone()),
                None => io.connect_plain(addr),
            };
            match started {
                Ok(conn) => {
                    io.set_timer(conn, attempt.target.opts.connect_timeout.map(|t| io.now() + t));
                    self.st.ids.insert(attempt.id, conn);
                    self.st.slots.insert(conn, Slot::Connecting(attempt));
                    return;
                }
                Err(e) if attempt.index + 1 < attempt.target.addrs.len() => {
                    tracing::debug!(%addr, error = %e, "connect failed at once; trying the next address");
                    attempt.index += 1;
                }
                Err(e) => return self.fail(attempt.id, connect_error(addr, e)),
            }
        }
    }

    /// Gives up on `conn` with `error`, or moves on to the next address if `retry` and one is left.
    fn give_up(&mut self, io: &mut impl Io, conn: ConnId, mut attempt: Attempt, error: ConnectError, retry: bool) {
        io.abort(conn);
        self.st.slots.insert(conn, Slot::Closing);
        if retry && attempt.index + 1 < attempt.target.addrs.len() {
            tracing::debug!(url = %attempt.target.url, addr = %attempt.addr(), %error, "trying the next address");
            attempt.index += 1;
            attempt.deadline = None;
            self.st.retries.push(attempt); // started by run_commands, after this callback
        } else {
            tracing::debug!(url = %attempt.target.url, addr = %attempt.addr(), %error, "giving up");
            self.fail(attempt.id, error);
        }
    }

    fn on_response(&mut self, io: &mut impl Io, conn: ConnId) {
        let step = match self.st.slots.get(&conn) {
            Some(Slot::Handshake(attempt, buf)) => handshake::step(&attempt.target.request, buf),
            _ => return,
        };
        match step {
            Step::NeedMore => {}
            Step::Fail(e) => {
                let Some(Slot::Handshake(attempt, _)) = self.st.slots.remove(&conn) else { unreachable!() };
                self.give_up(io, conn, attempt, e, false);
            }
            Step::Refused(refusal) => {
                let Some(Slot::Handshake(attempt, _)) = self.st.slots.remove(&conn) else { unreachable!() };
                self.refused(io, conn, attempt, refusal);
            }
            Step::Open(response, used) => {
                let Some(Slot::Handshake(attempt, buf)) = self.st.slots.remove(&conn) else { unreachable!() };
                let addr = attempt.addr();
                let mut info = ConnInfo::new();
                info.protocol = response.protocol.clone();
                info.deflate = response.deflate;
                info.version = attempt.target.opts.version;
                let now = io.now();
                // The spec's remoteAddress is the peer's IP (no port), as on the server.
                let sm = Connection::new(Role::Client, attempt.target.opts.config.clone(), info, now)
                    .with_remote_address(addr.ip());
                io.set_timer(conn, None);
                let driven = Driven::new(sm, 0);
                driven.apply_socket_options(io, conn, self.st.loop_nodelay);
                self.st.slots.insert(conn, Slot::Open(Box::new(Open { id: attempt.id, response, driven })));
                // `on_open` first, then what came with the 101 (it may close the connection).
                self.pump(io, conn);
                if used < buf.len()
                    && let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn)
                {
                    open.driven.read(&buf[used..], now);
                    self.pump(io, conn);
                }
            }
        }
    }

    /// A non-101 answer: report it once its body is in (or the server closes, or time is up).
    fn refused(&mut self, io: &mut impl Io, conn: ConnId, attempt: Attempt, refusal: Refusal) {
        if refusal.complete() {
            self.give_up(io, conn, attempt, refusal.into_error(), false);
        } else {
            self.st.slots.insert(conn, Slot::Refused(attempt, refusal));
        }
    }

    /// Runs the shared driver on an open connection (events to the handler, output to
    /// the loop, ...); a connection whose close the handler heard loses its id.
    fn pump(&mut self, io: &mut impl Io, conn: ConnId) {
        let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn) else { return };
        let deliver = to_handler(&mut *self.h, open.id, &open.response, &self.st.shared, &mut self.st.cmds);
        open.driven.pump(io, conn, self.st.epoch, &open.id, &mut (), deliver);
        if open.driven.close_reported() {
            self.st.ids.remove(&open.id);
        }
    }

    /// Runs the queued commands (and any they queue in turn), with those from other threads
    /// if `inbox`. Called after every callback: the loop may call some (`on_closed`,
    /// `on_sent`) after `on_turn_end`, just before it blocks.
    fn run_commands<I: Io>(&mut self, io: &mut TlsIo<'_, I>, inbox: bool) {
        let mut stop = false;
        loop {
            for attempt in std::mem::take(&mut self.st.retries) {
                self.start(io, attempt);
            }
            let mut cmds = std::mem::take(&mut self.st.cmds);
            if inbox {
                stop |= self.st.shared.take(&mut cmds);
            }
            if cmds.is_empty() && self.st.retries.is_empty() {
                break;
            }
            for cmd in cmds {
                match cmd {
                    Cmd::Connect(id, target) => self.start(io, Attempt { id, target, index: 0, deadline: None }),
                    Cmd::Conn(id, cmd) => {
                        if let Some(conn) = self.st.ids.get(&id).copied()
                            && let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn)
                        {
                            cmd.apply(open.driven.connection_mut());
                            self.pump(io, conn);
                        }
                    }
                    Cmd::Stop => io.stop(),
                }
            }
        }
        if stop {
            io.stop();
        }
    }

    /// Stops the loop when nothing is left to do (and that is wanted).
    fn maybe_stop<I: Io>(&mut self, io: &mut TlsIo<'_, I>) {
        self.run_commands(io, false);
        if self.st.stop_when_idle && self.st.slots.is_empty() {
            io.stop();
        }
    }
}

/// Maps a connect error to the error the caller sees.
fn connect_error(addr: SocketAddr, e: std::io::Error) -> ConnectError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ConnectError::Refused { addr },
        _ => ConnectError::Io { addr, source: e },
    }
}

/// The loop's callbacks, each followed by the commands it queued.
impl<H: ClientHandler> Driver<'_, H> {
    /// TCP is up for `conn`, before the TLS layer hears of it: a `wss://` connection's
    /// handshake deadline starts now (the timer set here is the TLS layer's inner timer).
    fn tcp_up(&mut self, io: &mut impl Io, conn: ConnId) {
        let Some(Slot::Connecting(a)) = self.st.slots.get(&conn) else { return };
        if a.target.tls.is_none() {
            return;
        }
        let Some(Slot::Connecting(mut attempt)) = self.st.slots.remove(&conn) else { unreachable!() };
        attempt.deadline = attempt.target.opts.handshake_timeout.map(|t| io.now() + t);
        io.set_timer(conn, attempt.deadline);
        self.st.slots.insert(conn, Slot::Tls(attempt));
    }

    /// TCP connected (`ws://`) or the TLS handshake is done (`wss://`), or either failed.
    fn connected(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        let Some(Slot::Connecting(_) | Slot::Tls(_)) = self.st.slots.get(&conn) else { return };
        let (mut attempt, tls) = match self.st.slots.remove(&conn) {
            Some(Slot::Connecting(a)) => (a, false),
            Some(Slot::Tls(a)) => (a, true),
            _ => unreachable!(),
        };
        match result {
            Ok(()) => {
                io.send(conn, attempt.target.request.bytes());
                if !tls {
                    attempt.deadline = attempt.target.opts.handshake_timeout.map(|t| io.now() + t);
                }
                io.set_timer(conn, attempt.deadline);
                self.st.slots.insert(conn, Slot::Handshake(attempt, Vec::new()));
            }
            Err(e) if tls => {
                // TCP was up: a TLS failure (or a reset meanwhile); no other address is tried.
                // The TLS layer reports a close during its handshake as ConnectionAborted.
                let error = match e.kind() {
                    std::io::ErrorKind::ConnectionAborted if e.get_ref().is_none_or(|i| !i.is::<TlsError>()) => {
                        ConnectError::ClosedBeforeUpgrade { addr: attempt.addr(), received: 0 }
                    }
                    _ => self.handshake_error(&attempt, e),
                };
                self.give_up(io, conn, attempt, error, false);
            }
            Err(e) => {
                // on_closed follows for this socket; the slot is already Closing.
                let error = connect_error(attempt.addr(), e);
                self.give_up(io, conn, attempt, error, true);
            }
        }
    }

    /// An error once TCP is up, before the 101: a TLS one told apart, else a socket error.
    fn handshake_error(&self, attempt: &Attempt, e: std::io::Error) -> ConnectError {
        let addr = attempt.addr();
        match e.get_ref().and_then(|e| e.downcast_ref::<ringwire_tls::TlsError>()) {
            Some(ringwire_tls::TlsError::HandshakeTimeout) => {
                ConnectError::HandshakeTimeout { addr, after: TLS_BACKSTOP }
            }
            Some(ringwire_tls::TlsError::Truncated) => ConnectError::ClosedBeforeUpgrade { addr, received: 0 },
            _ => crate::tls::tls_failure(&attempt.target.url.host_str(), &e)
                .unwrap_or(ConnectError::Io { addr, source: e }),
        }
    }

    fn data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        match self.st.slots.get_mut(&conn) {
            Some(Slot::Open(open)) => {
                open.driven.read_buf(data, io.now());
                self.pump(io, conn);
            }
            Some(Slot::Handshake(_, buf)) => {
                buf.extend_from_slice(&data);
                self.on_response(io, conn);
            }
            Some(Slot::Tls(_)) => {} // the TLS layer gives no data before its on_connect
            Some(Slot::Refused(_, refusal)) => {
                let room = MAX_BODY.saturating_sub(refusal.body.len());
                refusal.body.extend_from_slice(&data[..data.len().min(room)]);
                if refusal.complete() {
                    let Some(Slot::Refused(attempt, refusal)) = self.st.slots.remove(&conn) else { unreachable!() };
                    self.give_up(io, conn, attempt, refusal.into_error(), false);
                }
            }
            Some(Slot::Connecting(_) | Slot::Closing) | None => {}
        }
    }

    fn data_into(&mut self, io: &mut impl Io, conn: ConnId, buf: BytesMut) {
        if let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn) {
            open.driven.read_into(buf, io.now());
            self.pump(io, conn);
        }
    }

    fn sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        if let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn)
            && open.driven.written(bytes, io.now())
        {
            self.pump(io, conn);
        }
    }

    fn timer(&mut self, io: &mut impl Io, conn: ConnId) {
        let slot = self.st.slots.remove(&conn);
        match slot {
            Some(Slot::Connecting(attempt)) => {
                let after = attempt.target.opts.connect_timeout.unwrap_or_default();
                let error = ConnectError::ConnectTimeout { addr: attempt.addr(), after };
                self.give_up(io, conn, attempt, error, true);
            }
            Some(Slot::Handshake(attempt, _) | Slot::Tls(attempt)) => {
                let after = attempt.target.opts.handshake_timeout.unwrap_or_default();
                let error = ConnectError::HandshakeTimeout { addr: attempt.addr(), after };
                self.give_up(io, conn, attempt, error, false);
            }
            Some(Slot::Refused(attempt, refusal)) => self.give_up(io, conn, attempt, refusal.into_error(), false),
            Some(Slot::Open(mut open)) => {
                open.driven.timeout(io.now());
                self.st.slots.insert(conn, Slot::Open(open));
                self.pump(io, conn);
            }
            Some(Slot::Closing) => {
                self.st.slots.insert(conn, Slot::Closing);
            }
            None => {}
        }
    }

    fn closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        match self.st.slots.remove(&conn) {
            Some(Slot::Open(mut open)) => {
                let deliver = to_handler(&mut *self.h, open.id, &open.response, &self.st.shared, &mut self.st.cmds);
                open.driven.closed(io, conn, self.st.epoch, error.as_ref(), &open.id, &mut (), deliver);
                self.st.ids.remove(&open.id);
            }
            Some(Slot::Connecting(attempt)) => {
                let error = error.unwrap_or_else(|| std::io::Error::other("closed while connecting"));
                let error = connect_error(attempt.addr(), error);
                self.fail(attempt.id, error);
            }
            Some(Slot::Handshake(attempt, buf)) => {
                let addr = attempt.addr();
                let error = match error {
                    // e.g. TLS 1.3: the server refuses our certificate after our handshake ended
                    Some(source) => match self.handshake_error(&attempt, source) {
                        ConnectError::ClosedBeforeUpgrade { .. } => {
                            ConnectError::ClosedBeforeUpgrade { addr, received: buf.len() }
                        }
                        other => other,
                    },
                    None => ConnectError::ClosedBeforeUpgrade { addr, received: buf.len() },
                };
                self.fail(attempt.id, error);
            }
            Some(Slot::Tls(attempt)) => {
                // (the TLS layer reports on_connect(Err) first; this is only a fallback)
                let error = error.unwrap_or_else(|| std::io::Error::other("closed during the tls handshake"));
                let error = self.handshake_error(&attempt, error);
                self.fail(attempt.id, error);
            }
            Some(Slot::Refused(attempt, refusal)) => self.fail(attempt.id, refusal.into_error()),
            Some(Slot::Closing) | None => {}
        }
    }
}

/// The driver's callbacks, under the TLS layer; the commands they queue run in [`Outer`].
impl<H: ClientHandler> Handler for Driver<'_, H> {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        io.abort(conn); // a client loop has no listeners
    }

    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        self.connected(io, conn, result);
    }

    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.data(io, conn, data);
    }

    fn on_data_into(&mut self, io: &mut impl Io, conn: ConnId, buf: BytesMut) {
        self.data_into(io, conn, buf);
    }

    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        self.sent(io, conn, bytes);
    }

    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.timer(io, conn);
    }

    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.closed(io, conn, error);
    }
}

/// The loop's handler: the TLS layer (with the driver inside), and after each callback the
/// commands the driver queued, run with the TLS layer's `Io` (connects go through it).
struct Outer<'a, H>(TlsHandler<Driver<'a, H>>);

impl<H: ClientHandler> Outer<'_, H> {
    fn after(&mut self, io: &mut impl Io, inbox: bool, stop_if_idle: bool) {
        let (driver, mut tio) = self.0.split(io);
        driver.run_commands(&mut tio, inbox);
        if stop_if_idle {
            driver.maybe_stop(&mut tio);
        }
    }
}

impl<H: ClientHandler> Handler for Outer<'_, H> {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        io.abort(conn); // a client loop has no listeners
    }

    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        if result.is_ok() {
            let (driver, mut tio) = self.0.split(io);
            driver.tcp_up(&mut tio, conn);
        }
        self.0.on_connect(io, conn, result);
        self.after(io, false, false);
    }

    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.0.on_data(io, conn, data);
        self.after(io, false, false);
    }

    fn on_data_into(&mut self, io: &mut impl Io, conn: ConnId, buf: BytesMut) {
        self.0.on_data_into(io, conn, buf);
        self.after(io, false, false);
    }

    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        self.0.on_sent(io, conn, bytes);
        self.after(io, false, false);
    }

    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.0.on_timer(io, conn);
        self.after(io, false, false);
    }

    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.0.on_closed(io, conn, error);
        self.after(io, false, true);
    }

    fn on_wake(&mut self, io: &mut impl Io) {
        self.0.on_wake(io);
        self.after(io, true, false);
    }

    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.0.on_turn_end(io);
        self.after(io, true, true);
    }
}
