//! [`ClientLoop`]: one event loop on the calling thread driving many client connections,
//! each from TCP connect through the handshake to a running `ringwire_conn::Connection`.

use crate::handler::{ClientHandler, SendOutcome};
use crate::handshake::{self, Refusal, Step};
use crate::ws::{ClientId, ClientWs, Cmd, Ctl, LoopHandle, Shared, Target};
use crate::{ConnectError, ConnectOptions};
use ringwire_conn::handshake::Response;
use ringwire_conn::{CloseCode, ConnInfo, Connection, Event, Role, State};
use ringwire_io::{Backend, ConnId, Detected, EventLoop, Io, IoChoice, LoopConfig};
use std::any::Any;
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
///         let _ = ws.send("hello", None);
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

    /// A loop with explicit loop settings (buffer ring size, `TCP_NODELAY`, ...).
    pub fn with_config(io: IoChoice, cfg: &LoopConfig) -> std::io::Result<Self> {
        let detected = ringwire_io::detect(io)?;
        let (ev, waker) = EventLoop::new(detected.backend, cfg)?;
        let shared = Arc::new(Shared::new(waker, Self::DEFAULT_INBOX_CAPACITY));
        Ok(Self {
            ev,
            detected,
            state: LoopState {
                slots: HashMap::new(),
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
    slots: HashMap<ConnId, Slot>,
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
    conn: Connection,
    response: Response,
    /// The deadline currently armed in the loop (only ever moved earlier, see `pump`).
    armed: Option<Instant>,
    reading: bool,
    socket_closing: bool,
    close_reported: bool,
    /// A handler callback panicked: no further event is delivered to the handler.
    faulted: bool,
    /// Ended through a drop (the handler's `ClientWs::drop_connection`, or the
    /// keepalive timeout): the socket is aborted, not flushed.
    dropped: bool,
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)")
}

/// Runs one handler callback on `ws`. A panic is contained: it is logged with the
/// connection id, the connection is closed with 1011, `*faulted` is set (the caller
/// delivers nothing more to the handler for it) and `fallback` is returned.
fn guarded<R>(ws: &mut ClientWs<'_>, faulted: &mut bool, fallback: R, f: impl FnOnce(&mut ClientWs<'_>) -> R) -> R {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *ws))) {
        Ok(r) => r,
        Err(payload) => {
            *faulted = true;
            tracing::error!(
                conn = %ws.id,
                panic = panic_message(&*payload),
                "client handler panicked; closing the connection with 1011"
            );
            let _ = ws.conn.close(CloseCode::INTERNAL_SERVER_ERROR, "internal error");
            fallback
        }
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
                let mut info = ConnInfo::new().with_remote_address(addr.to_string());
                info.protocol = response.protocol.clone();
                info.version = attempt.target.opts.version;
                let now = io.now();
                let conn_sm = Connection::new(Role::Client, attempt.target.opts.config.clone(), info, now);
                io.set_timer(conn, None);
                let open = Open {
                    id: attempt.id,
                    conn: conn_sm,
                    response,
                    armed: None,
                    reading: true,
                    socket_closing: false,
                    close_reported: false,
                    faulted: false,
                    dropped: false,
                };
                self.st.slots.insert(conn, Slot::Open(Box::new(open)));
                self.announce(conn);
                self.feed(io, conn, &buf[used..]);
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

    /// Calls `on_open`; the first [`pump`](Self::pump) (from `feed`) acts on what it did.
    fn announce(&mut self, conn: ConnId) {
        if let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn) {
            let mut ws = ClientWs {
                conn: &mut open.conn,
                id: open.id,
                response: &open.response,
                ctl: Ctl { shared: &self.st.shared, cmds: &mut self.st.cmds },
                dropped: false,
            };
            let h = &mut *self.h;
            guarded(&mut ws, &mut open.faulted, (), |ws| h.on_open(ws));
            open.dropped |= ws.dropped;
        }
    }

    /// Hands received bytes to an open connection and delivers what they produced. The
    /// connection parses lazily, one finding per `poll_event`, so a reply the handler
    /// queues for a message goes out before a failure a later frame in the same read causes.
    fn feed(&mut self, io: &mut impl Io, conn: ConnId, data: &[u8]) {
        if let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn) {
            open.conn.handle_read(data, io.now());
            self.pump(io, conn);
        }
    }

    /// Delivers the connection's events to the handler, moves its output to the loop, and
    /// syncs reading, the timer and the socket's fate with the state machine.
    fn pump(&mut self, io: &mut impl Io, conn: ConnId) {
        let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn) else { return };
        let mut ws = ClientWs {
            conn: &mut open.conn,
            id: open.id,
            response: &open.response,
            ctl: Ctl { shared: &self.st.shared, cmds: &mut self.st.cmds },
            dropped: false,
        };
        let h = &mut *self.h;
        while let Some(event) = ws.conn.poll_event() {
            if matches!(event, Event::Close { .. }) {
                open.close_reported = true;
            }
            if open.faulted {
                continue; // closing with 1011; the handler hears nothing more of it
            }
            let f = &mut open.faulted;
            match event {
                Event::Message(m) => guarded(&mut ws, f, (), |ws| h.on_message(ws, m)),
                Event::Frame(fr) => guarded(&mut ws, f, (), |ws| h.on_frame(ws, fr)),
                Event::Ping(p) if !guarded(&mut ws, f, true, |ws| h.on_ping(ws, &p)) => ws.conn.cancel_pong(),
                Event::Ping(_) => {}
                Event::Pong(p) => guarded(&mut ws, f, (), |ws| h.on_pong(ws, &p)),
                Event::Drain => guarded(&mut ws, f, (), |ws| h.on_drain(ws)),
                Event::Pause => guarded(&mut ws, f, (), |ws| h.on_pause(ws)),
                Event::Resume => guarded(&mut ws, f, (), |ws| h.on_resume(ws)),
                Event::SendComplete(t) => {
                    guarded(&mut ws, f, (), |ws| h.on_send_complete(ws, t, SendOutcome::Written));
                }
                Event::SendFailed(t) => guarded(&mut ws, f, (), |ws| h.on_send_complete(ws, t, SendOutcome::Failed)),
                Event::Error(e) => guarded(&mut ws, f, (), |ws| h.on_error(ws, &e)),
                Event::Close { code, description } => {
                    guarded(&mut ws, f, (), |ws| h.on_close(ws, code, &description));
                }
                _ => {}
            }
        }
        open.dropped |= ws.dropped;
        if open.close_reported {
            self.st.ids.remove(&open.id);
        }
        if open.socket_closing {
            return; // the socket is gone or going; nothing more to write
        }
        while let Some(chunk) = open.conn.poll_transmit() {
            io.send(conn, chunk);
        }
        if open.dropped && open.conn.state() == State::Closed {
            // A drop destroys the socket at once: the close frame was just handed to the
            // loop (best effort), the rest of the queue is not waited for.
            open.socket_closing = true;
            io.abort(conn);
            return;
        }
        let wants_read = open.conn.wants_read();
        if wants_read != open.reading {
            open.reading = wants_read;
            if wants_read { io.resume_read(conn) } else { io.pause_read(conn) }
        }
        // Deadlines only move earlier in the loop; a timer that fires early is harmless
        // (handle_timeout checks) and re-arms.
        let next = open.conn.poll_timeout();
        if next.is_some() && (open.armed.is_none() || next < open.armed) {
            open.armed = next;
            io.set_timer(conn, next);
        }
        if open.conn.is_finished() {
            open.socket_closing = true;
            io.close(conn);
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
                    Cmd::Send(id, payload) => {
                        if let Some((conn, sm)) = self.open_conn(id) {
                            let _ = sm.send(payload, None);
                            self.pump(io, conn);
                        }
                    }
                    Cmd::Ping(id, payload) => {
                        if let Some((conn, sm)) = self.open_conn(id) {
                            let _ = sm.ping(&payload);
                            self.pump(io, conn);
                        }
                    }
                    Cmd::Pause(id, paused) => {
                        if let Some((conn, sm)) = self.open_conn(id) {
                            if paused {
                                sm.pause()
                            } else {
                                sm.resume()
                            }
                            self.pump(io, conn);
                        }
                    }
                    Cmd::Close(id, code, reason) => {
                        if let Some((conn, sm)) = self.open_conn(id) {
                            let _ = sm.close(code, reason.as_str());
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

    fn open_conn(&mut self, id: ClientId) -> Option<(ConnId, &mut Connection)> {
        let conn = *self.st.ids.get(&id)?;
        match self.st.slots.get_mut(&conn) {
            Some(Slot::Open(open)) => Some((conn, &mut open.conn)),
            _ => None,
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
            Some(Slot::Open(_)) => self.feed(io, conn, data),
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
        if let Some(Slot::Open(open)) = self.st.slots.get_mut(&conn) {
            open.conn.handle_written(bytes, io.now());
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
                open.armed = None;
                let was_open = open.conn.state() == State::Open;
                open.conn.handle_timeout(io.now());
                // A timeout takes an open connection straight to Closed only through the
                // keepalive's drop: destroy the socket rather than flush to a silent peer.
                open.dropped |= was_open && open.conn.state() == State::Closed;
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
                if !open.close_reported {
                    if let Some(e) = &error {
                        tracing::debug!(error = %e, "connection error");
                    }
                    open.socket_closing = true;
                    open.conn.handle_eof(io.now());
                    let id = open.id;
                    self.st.slots.insert(conn, Slot::Open(open));
                    self.pump(io, conn);
                    self.st.slots.remove(&conn);
                    self.st.ids.remove(&id);
                }
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
