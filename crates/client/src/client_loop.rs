//! [`ClientLoop`]: one event loop on the calling thread driving many client connections,
//! each from TCP connect through the handshake to a running `ringwire_conn::Connection`.

use crate::handler::ClientHandler;
use crate::handshake::{self, Refusal, Step};
use crate::ws::{ClientId, ClientWs, Cmd, Ctl, LoopHandle, Shared, Target};
use crate::{ConnectError, ConnectOptions};
use ringwire_conn::handshake::Response;
use ringwire_conn::{ConnInfo, Connection, Role};
use ringwire_drive::{Callback, Driven, Slots, WebSocketConnection, panic_message};
use ringwire_io::{Backend, ConnId, Detected, EventLoop, Io, IoChoice, LoopConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Bodies of refusals (non-101 answers) are kept up to this size.
const MAX_BODY: usize = 64 << 10;

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
                stop_when_idle: true,
            },
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
    /// parsed and the host resolved now, so those errors come back here; later failures go
    /// to [`ClientHandler::on_connect_failed`] with the returned id.
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
        let mut driver = Driver { st: &mut self.state, h: handler };
        self.ev.run(&mut driver)
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
    stop_when_idle: bool,
}

/// One connection attempt: the target and which of its addresses is being tried.
struct Attempt {
    id: ClientId,
    target: Box<Target>,
    index: usize,
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

    /// Starts (or moves on to the next address of) an attempt.
    fn start(&mut self, io: &mut impl Io, mut attempt: Attempt) {
        loop {
            let addr = attempt.addr();
            match io.connect(addr) {
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
            self.start(io, attempt);
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
        open.driven.pump(io, conn, self.st.epoch, &open.id, deliver);
        if open.driven.close_reported() {
            self.st.ids.remove(&open.id);
        }
    }

    /// Runs the queued commands (and any they queue in turn), with those from other threads
    /// if `inbox`. Called after every callback: the loop may call some (`on_closed`,
    /// `on_sent`) after `on_turn_end`, just before it blocks.
    fn run_commands(&mut self, io: &mut impl Io, inbox: bool) {
        let mut stop = false;
        loop {
            let mut cmds = std::mem::take(&mut self.st.cmds);
            if inbox {
                stop |= self.st.shared.take(&mut cmds);
            }
            if cmds.is_empty() {
                break;
            }
            for cmd in cmds {
                match cmd {
                    Cmd::Connect(id, target) => self.start(io, Attempt { id, target, index: 0 }),
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
    fn maybe_stop(&mut self, io: &mut impl Io) {
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
    fn connected(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        let Some(Slot::Connecting(_)) = self.st.slots.get(&conn) else { return };
        let Some(Slot::Connecting(attempt)) = self.st.slots.remove(&conn) else { unreachable!() };
        match result {
            Ok(()) => {
                io.send(conn, attempt.target.request.bytes());
                io.set_timer(conn, attempt.target.opts.handshake_timeout.map(|t| io.now() + t));
                self.st.slots.insert(conn, Slot::Handshake(attempt, Vec::new()));
            }
            Err(e) => {
                // on_closed follows for this socket; the slot is already Closing.
                let error = connect_error(attempt.addr(), e);
                self.give_up(io, conn, attempt, error, true);
            }
        }
    }

    fn data(&mut self, io: &mut impl Io, conn: ConnId, data: &mut [u8]) {
        match self.st.slots.get_mut(&conn) {
            Some(Slot::Open(open)) => {
                open.driven.read(data, io.now());
                self.pump(io, conn);
            }
            Some(Slot::Handshake(_, buf)) => {
                buf.extend_from_slice(data);
                self.on_response(io, conn);
            }
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
            Some(Slot::Handshake(attempt, _)) => {
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
                open.driven.closed(io, conn, self.st.epoch, error.as_ref(), &open.id, deliver);
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
                    Some(source) => ConnectError::Io { addr, source },
                    None => ConnectError::ClosedBeforeUpgrade { addr, received: buf.len() },
                };
                self.fail(attempt.id, error);
            }
            Some(Slot::Refused(attempt, refusal)) => self.fail(attempt.id, refusal.into_error()),
            Some(Slot::Closing) | None => {}
        }
    }
}

impl<H: ClientHandler> ringwire_io::Handler for Driver<'_, H> {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        io.abort(conn); // a client loop has no listeners
    }

    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        self.connected(io, conn, result);
        self.run_commands(io, false);
    }

    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: &mut [u8]) {
        self.data(io, conn, data);
        self.run_commands(io, false);
    }

    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        self.sent(io, conn, bytes);
        self.run_commands(io, false);
    }

    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.timer(io, conn);
        self.run_commands(io, false);
    }

    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.closed(io, conn, error);
        self.maybe_stop(io);
    }

    fn on_wake(&mut self, io: &mut impl Io) {
        self.run_commands(io, true);
    }

    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.run_commands(io, true);
        self.maybe_stop(io);
    }
}
