//! The epoll backend (mio, edge-triggered): the fallback where io_uring is unavailable.
//!
//! Reads go into one shared 64 KiB scratch buffer until `WouldBlock` (at most a bounded number
//! per connection and turn, the rest next turn); writes use `write_vectored` and keep whatever
//! the socket did not take queued until it is writable again. A paused connection is simply
//! not read: its bytes stay in the kernel until `resume_read`.

use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::common::{Closing, IOV_MAX, LoopBackend, LoopConn, Rare, SendQueue, TimerSlot, conn_fields, earliest};
use crate::{ConnId, Handler, LoopConfig, RecvBuf, Waker, WakerInner};

const SCRATCH: usize = 64 << 10;
/// Reads per connection per turn before yielding to the others.
const READS_PER_TURN: usize = 16;
/// Transient accept errors in a row (connections that died in the backlog) before the rest
/// wait for the next turn.
const TRANSIENT_ACCEPT_ERRORS_PER_TURN: usize = 64;
const WAKER_TOKEN: Token = Token(usize::MAX);
const LISTENER_BIT: usize = 1 << 63;

/// Generation bits carried in a token (bit 63 marks listeners).
const GEN_MASK: u32 = 0x7FFF_FFFF;

fn conn_token(id: ConnId) -> Token {
    Token((((id.generation & GEN_MASK) as usize) << 32) | id.idx as usize)
}

/// One connection of the epoll loop, in its slab (the fields [`ConnFields`] names are the
/// ones both backends have).
///
/// [`ConnFields`]: crate::common::ConnFields
pub(crate) struct EConn {
    /// The socket, until the teardown is carried out; `None` means the connection is
    /// reported closed (or about to be, in this flush).
    stream: Option<TcpStream>,
    connecting: bool,
    closing: Closing,
    paused: bool,
    /// The socket may have unread input (an edge was seen and WouldBlock not yet reached).
    read_ready: bool,
    queue: SendQueue,
    dirty: bool,
    /// The peer's EOF was read.
    eof: bool,
    timer: TimerSlot,
    /// The peer, and what an open connection never needs (see [`Rare`]).
    rare: Rare<()>,
}

impl EConn {
    fn new(stream: TcpStream, peer: Option<SocketAddr>) -> EConn {
        EConn {
            stream: Some(stream),
            connecting: false,
            closing: Closing::Open,
            paused: false,
            read_ready: true,
            queue: SendQueue::default(),
            dirty: false,
            eof: false,
            timer: TimerSlot::default(),
            rare: Rare::new(peer),
        }
    }
}

conn_fields!(EConn);

impl LoopConn for EConn {
    fn fd(&self) -> Option<RawFd> {
        self.stream.as_ref().map(|s| s.as_raw_fd())
    }

    fn queue_lent(&self) -> bool {
        false
    }
}

struct Listener {
    sock: mio::net::TcpListener,
    retry_at: Option<Instant>,
}

/// This backend's part of the loop state (see [`Core`]).
pub(crate) struct Epoll {
    registry: Registry,
    /// Connections to read this turn.
    readable: Vec<ConnId>,
    listeners: Vec<Option<Listener>>,
}

/// The loop state handlers act on (the [`Io`](crate::Io) of this backend).
pub(crate) type Core = crate::common::Core<Epoll>;

impl Core {
    fn register(&mut self, stream: TcpStream, peer: Option<SocketAddr>, connecting: bool) -> io::Result<ConnId> {
        let mut c = EConn::new(stream, peer);
        c.connecting = connecting;
        let id = self.conns.insert(c);
        let c = self.conns.get_mut(id).expect("just inserted");
        let s = c.stream.as_mut().expect("open");
        if let Err(e) = self.own.registry.register(s, conn_token(id), Interest::READABLE | Interest::WRITABLE) {
            self.conns.remove(id);
            return Err(e);
        }
        Ok(id)
    }
}

impl LoopBackend for Epoll {
    type Conn = EConn;

    fn pause_read(core: &mut Core, conn: ConnId) {
        if let Some(c) = core.conns.get_mut(conn) {
            c.paused = true;
        }
    }

    fn resume_read(core: &mut Core, conn: ConnId) {
        if let Some(c) = core.conns.get_mut(conn)
            && c.paused
        {
            c.paused = false;
            if c.read_ready {
                core.own.readable.push(conn);
            }
        }
    }

    fn connect(core: &mut Core, addr: SocketAddr) -> io::Result<ConnId> {
        let s = TcpStream::connect(addr)?;
        if core.nodelay {
            s.set_nodelay(true)?;
        }
        core.register(s, Some(addr), true)
    }

    fn stop_accepting(core: &mut Core) {
        for l in core.own.listeners.iter_mut() {
            if let Some(mut l) = l.take() {
                let _ = core.own.registry.deregister(&mut l.sock);
            }
        }
    }
}

/// One epoll event loop.
pub(crate) struct EpollLoop {
    poll: Poll,
    events: Events,
    scratch: Box<[u8]>,
    pub(crate) core: Core,
    expired: Vec<ConnId>,
    closed: Vec<ConnId>,
}

#[derive(Clone, Copy)]
struct Ev {
    token: Token,
    readable: bool,
    writable: bool,
}

impl EpollLoop {
    pub(crate) fn new(cfg: &LoopConfig) -> io::Result<(Box<EpollLoop>, Waker)> {
        let poll = Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER_TOKEN)?);
        let registry = poll.registry().try_clone()?;
        let l = Box::new(EpollLoop {
            poll,
            events: Events::with_capacity(1024),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            core: Core::new(cfg, Epoll { registry, readable: Vec::new(), listeners: Vec::new() }),
            expired: Vec::new(),
            closed: Vec::new(),
        });
        Ok((l, Waker(WakerInner::Mio(waker))))
    }

    pub(crate) fn add_listener(&mut self, l: TcpListener) -> io::Result<()> {
        self.core.check_accepting()?;
        let i = self.core.own.listeners.len();
        let mut sock = mio::net::TcpListener::from_std(l);
        self.core.own.registry.register(&mut sock, Token(LISTENER_BIT | i), Interest::READABLE)?;
        self.core.own.listeners.push(Some(Listener { sock, retry_at: Some(Instant::now()) }));
        Ok(())
    }

    pub(crate) fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        self.core.start_run();
        self.flush(handler);
        let mut evs: Vec<Ev> = Vec::with_capacity(1024);
        loop {
            let deadline = earliest(self.core.timers.next(), self.core.close_timers.next());
            let deadline = self.core.own.listeners.iter().flatten().fold(deadline, |d, l| earliest(d, l.retry_at));
            let timeout = if !self.core.own.readable.is_empty() {
                Some(Duration::ZERO)
            } else {
                deadline.map(|d| {
                    // Round up so the timer has passed when poll returns (epoll has 1 ms steps).
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() { left } else { left + Duration::from_micros(999) }
                })
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.core.now = Instant::now();
            evs.clear();
            evs.extend(self.events.iter().map(|e| Ev {
                token: e.token(),
                readable: e.is_readable() || e.is_read_closed() || e.is_error(),
                writable: e.is_writable() || e.is_write_closed() || e.is_error(),
            }));
            for ev in &evs {
                if ev.token == WAKER_TOKEN {
                    handler.on_wake(&mut self.core);
                } else if ev.token.0 & LISTENER_BIT != 0 {
                    self.accept(handler, ev.token.0 & !LISTENER_BIT);
                } else {
                    self.conn_event(handler, *ev);
                }
            }
            let now = self.core.now;
            for i in 0..self.core.own.listeners.len() {
                if self.core.own.listeners[i].as_ref().is_some_and(|l| l.retry_at.is_some_and(|t| t <= now)) {
                    self.accept(handler, i);
                }
            }
            self.read_ready(handler);
            self.core.expire_timers(handler, &mut self.expired);
            handler.on_turn_end(&mut self.core);
            self.flush(handler);
            if self.core.stopped {
                return Ok(());
            }
        }
    }

    fn accept<H: Handler>(&mut self, handler: &mut H, i: usize) {
        let mut transient = 0;
        loop {
            let Some(Some(l)) = self.core.own.listeners.get_mut(i) else { return };
            l.retry_at = None;
            match l.sock.accept() {
                Ok((s, peer)) => {
                    if self.core.nodelay {
                        let _ = s.set_nodelay(true);
                    }
                    if let Ok(id) = self.core.register(s, Some(peer), false) {
                        self.core.own.readable.push(id);
                        handler.on_accept(&mut self.core, id, peer);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // The edge is consumed: a listener that stops before WouldBlock must be
                    // retried by the clock.
                    let now = self.core.now;
                    let errno = e.raw_os_error().unwrap_or(0);
                    match self.core.accept_errors.failed(now, errno, l.sock.local_addr().ok()) {
                        Some(at) => {
                            l.retry_at = Some(at);
                            return;
                        }
                        None => {
                            transient += 1;
                            if transient == TRANSIENT_ACCEPT_ERRORS_PER_TURN {
                                l.retry_at = Some(now);
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn conn_event<H: Handler>(&mut self, handler: &mut H, ev: Ev) {
        let Some(id) = self.core.conns.id_at(ev.token.0 as u32, (ev.token.0 >> 32) as u32, GEN_MASK) else { return };
        let Some(c) = self.core.conns.get_mut(id) else { return };
        if c.closing == Closing::Teardown {
            return;
        }
        if c.connecting {
            if !ev.writable && !ev.readable {
                return;
            }
            let s = c.stream.as_ref().expect("open");
            let result = match s.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // not yet
                    Err(e) => Err(e),
                },
            };
            c.connecting = false;
            match result {
                Ok(()) => {
                    self.core.own.readable.push(id);
                    self.core.mark_dirty(id);
                    handler.on_connect(&mut self.core, id, Ok(()));
                }
                Err(e) => {
                    c.teardown(Some(copy_error(&e)));
                    self.core.mark_dirty(id);
                    handler.on_connect(&mut self.core, id, Err(e));
                }
            }
            return;
        }
        if ev.readable {
            c.read_ready = true;
            self.core.own.readable.push(id);
        }
        if ev.writable {
            self.core.mark_dirty(id);
        }
    }

    /// Reads connections that have input and are not paused.
    fn read_ready<H: Handler>(&mut self, handler: &mut H) {
        let list = std::mem::take(&mut self.core.own.readable);
        for id in list {
            let mut reads = 0;
            while let Some(c) = self.core.conns.get_mut(id) {
                // After close(), input is read and dropped (as on io_uring), so the final
                // close() does not turn into a reset because of unread bytes.
                let discard = matches!(c.closing, Closing::Graceful | Closing::Lingering);
                if c.closing == Closing::Teardown || (c.paused && !discard) || c.connecting || !c.read_ready {
                    break;
                }
                if reads == READS_PER_TURN {
                    self.core.own.readable.push(id); // the rest next turn
                    break;
                }
                reads += 1;
                let s = c.stream.as_mut().expect("open");
                match s.read(&mut self.scratch) {
                    Ok(0) => {
                        c.read_ready = false;
                        c.peer_eof(true);
                        self.core.mark_dirty(id);
                    }
                    Ok(_) if discard => {}
                    Ok(n) => handler.on_data(&mut self.core, id, RecvBuf::from_slice(&mut self.scratch[..n])),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.read_ready = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        c.teardown(Some(e));
                        self.core.mark_dirty(id);
                    }
                }
            }
        }
    }

    /// Writes queued output, finishes closes and reports closed connections, until nothing
    /// is left to do this turn.
    fn flush<H: Handler>(&mut self, handler: &mut H) {
        loop {
            if self.core.dirty.is_empty() && self.closed.is_empty() {
                return;
            }
            let dirty = std::mem::take(&mut self.core.dirty);
            for id in dirty {
                self.advance(handler, id);
            }
            for id in std::mem::take(&mut self.closed) {
                if let Some(c) = self.core.conns.remove(id) {
                    handler.on_closed(&mut self.core, id, c.rare.into_error());
                }
            }
        }
    }

    fn advance<H: Handler>(&mut self, handler: &mut H, id: ConnId) {
        let Some(c) = self.core.conns.get_mut(id) else { return };
        c.dirty = false;
        if c.closing == Closing::Graceful {
            self.core.close_timers.flushing(id, c, self.core.now);
        }
        let mut sent = 0;
        if matches!(c.closing, Closing::Open | Closing::Graceful) && !c.connecting {
            sent = write_out(c);
            if c.closing == Closing::Graceful
                && c.queue.is_empty()
                && self.core.close_timers.written(id, c, self.core.now)
            {
                // Input that arrived before the shutdown has no edge left: look now.
                c.read_ready = true;
                self.core.own.readable.push(id);
            }
        }
        if c.closing == Closing::Teardown
            && let Some(mut s) = c.stream.take()
        {
            // Reported once: the stream is gone from here on.
            let _ = self.core.own.registry.deregister(&mut s);
            self.closed.push(id);
        }
        if sent > 0 && self.core.conns.get(id).is_none_or(|c| c.stream.is_some()) {
            handler.on_sent(&mut self.core, id, sent);
        }
    }
}

/// Writes as much queued output as the socket takes; returns the bytes written.
fn write_out(c: &mut EConn) -> usize {
    let mut total = 0;
    let Some(s) = c.stream.as_mut() else { return 0 };
    while !c.queue.is_empty() {
        let slices: Vec<IoSlice<'_>> = c.queue.segments(IOV_MAX).map(IoSlice::new).collect();
        // sendmsg with MSG_NOSIGNAL: a reset peer gives EPIPE, never SIGPIPE, whatever the
        // process does with that signal.
        match socket2::SockRef::from(&*s).send_vectored_with_flags(&slices, libc::MSG_NOSIGNAL) {
            Ok(0) => {
                c.teardown(Some(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes")));
                break;
            }
            Ok(n) => {
                c.queue.advance(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                c.teardown(Some(e));
                break;
            }
        }
    }
    total
}

/// A second `io::Error` with the same OS error code (or kind and message).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_state_is_small() {
        // One per connection, in the loop's slab; see docs/scaling.md before raising it.
        let n = std::mem::size_of::<EConn>();
        assert!(n <= 96, "EConn is {n} bytes");
    }
}
