//! The loop state handlers act on, the same in both backends: [`Core`], and the one [`Io`]
//! implementation, which leaves to the backend ([`LoopBackend`]) only what it does its own
//! way (pausing reads, receiving into a handler's buffer, connecting, closing listeners).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{AcceptErrors, CloseTimers, ConnFields, LoopConn, Slab, Timers};
use crate::{ConnId, Handler, Io, LoopConfig};

/// A backend's part of the loop: its own state (in [`Core::own`]) and the [`Io`] methods it
/// implements its own way.
pub(crate) trait LoopBackend: Sized {
    /// The backend's connection, kept in [`Core::conns`].
    type Conn: LoopConn;
    /// [`Io::pause_read`].
    fn pause_read(core: &mut Core<Self>, conn: ConnId);
    /// [`Io::resume_read`].
    fn resume_read(core: &mut Core<Self>, conn: ConnId);
    /// [`Io::recv_into`].
    fn recv_into(_core: &mut Core<Self>, _conn: ConnId, buf: BytesMut, _max: usize) -> Result<(), BytesMut> {
        Err(buf)
    }
    /// [`Io::connect`].
    fn connect(core: &mut Core<Self>, addr: SocketAddr) -> io::Result<ConnId>;
    /// [`Io::stop_accepting`] (after [`Core::accepting`] is cleared).
    fn stop_accepting(core: &mut Core<Self>);
}

/// The loop state handlers act on (the [`Io`] of both backends): the connections, the
/// timers, the turn's dirty list, and the backend's own state `B`.
pub(crate) struct Core<B: LoopBackend> {
    /// The time at the start of this turn.
    pub(crate) now: Instant,
    pub(crate) conns: Slab<B::Conn>,
    /// The handlers' deadlines.
    pub(crate) timers: Timers,
    pub(crate) close_timers: CloseTimers,
    /// Connections to move forward at the end of the turn (each once, see
    /// [`Slab::mark_dirty`]).
    pub(crate) dirty: Vec<ConnId>,
    pub(crate) accept_errors: AcceptErrors,
    /// The backend's own counters ([`crate::LoopStats`], without the accept errors).
    pub(crate) stats: crate::LoopStats,
    /// Cleared for good by [`Io::stop_accepting`].
    pub(crate) accepting: bool,
    /// Set by [`Io::stop`]: `run` returns at the end of the turn.
    pub(crate) stopped: bool,
    /// [`LoopConfig::nodelay`].
    pub(crate) nodelay: bool,
    /// The backend's own loop state.
    pub(crate) own: B,
}

impl<B: LoopBackend> Core<B> {
    pub(crate) fn new(cfg: &LoopConfig, own: B) -> Self {
        Core {
            now: Instant::now(),
            conns: Slab::new(),
            timers: Timers::default(),
            close_timers: CloseTimers::new(cfg),
            dirty: Vec::new(),
            accept_errors: AcceptErrors::default(),
            stats: crate::LoopStats::default(),
            accepting: true,
            stopped: false,
            nodelay: cfg.nodelay,
            own,
        }
    }

    #[inline]
    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        self.conns.mark_dirty(id, &mut self.dirty);
    }

    /// `add_listener` is refused once [`Io::stop_accepting`] was called.
    pub(crate) fn check_accepting(&self) -> io::Result<()> {
        if self.accepting { Ok(()) } else { Err(io::Error::other("add_listener after stop_accepting")) }
    }

    /// The start of `run`: the clock is read, and every connection is marked dirty (those
    /// added before `run` by `connect`, or left dirty by the last `run`).
    pub(crate) fn start_run(&mut self) {
        self.stopped = false;
        self.now = Instant::now();
        for id in self.conns.ids() {
            self.mark_dirty(id);
        }
    }

    /// Calls `on_timer` for the handlers' deadlines that passed at [`Core::now`] (on
    /// connections that still own their socket), then acts on the close deadlines that
    /// passed. `scratch` is an empty list to reuse.
    pub(crate) fn expire_timers<H: Handler>(&mut self, handler: &mut H, scratch: &mut Vec<ConnId>) {
        self.timers.expired(self.now, &mut self.conns, B::Conn::timer, scratch);
        for id in scratch.drain(..) {
            if self.conns.get(id).is_some_and(|c| c.fd().is_some()) {
                handler.on_timer(self, id);
            }
        }
        self.close_timers.expired(self.now, &mut self.conns, &mut self.dirty, scratch);
    }
}

impl<B: LoopBackend> Io for Core<B> {
    fn now(&self) -> Instant {
        self.now
    }

    fn send(&mut self, conn: ConnId, chunk: Bytes) {
        self.conns.queue_send(conn, chunk, &mut self.dirty);
    }

    fn queued(&self, conn: ConnId) -> usize {
        self.conns.queued(conn)
    }

    fn close(&mut self, conn: ConnId) {
        self.conns.begin_close(conn, &mut self.dirty);
    }

    fn abort(&mut self, conn: ConnId) {
        self.conns.abort(conn, &mut self.dirty);
    }

    fn pause_read(&mut self, conn: ConnId) {
        B::pause_read(self, conn)
    }

    fn resume_read(&mut self, conn: ConnId) {
        B::resume_read(self, conn)
    }

    fn recv_into(&mut self, conn: ConnId, buf: BytesMut, max: usize) -> Result<(), BytesMut> {
        B::recv_into(self, conn, buf, max)
    }

    fn set_timer(&mut self, conn: ConnId, at: Option<Instant>) {
        if let Some(c) = self.conns.get_mut(conn) {
            self.timers.set(conn, c.timer(), at);
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        B::connect(self, addr)
    }

    fn loop_stats(&self) -> crate::LoopStats {
        crate::LoopStats { accept_errors: self.accept_errors.counts, ..self.stats }
    }

    fn stop_accepting(&mut self) {
        self.accepting = false;
        B::stop_accepting(self)
    }

    fn stop(&mut self) {
        self.stopped = true;
    }

    fn conn_count(&self) -> usize {
        self.conns.len()
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(conn).and_then(|c| c.peer())
    }

    fn set_nodelay(&mut self, conn: ConnId, on: bool) -> io::Result<()> {
        self.conns.with_fd(conn, |fd| crate::sys::set_nodelay(fd, on))
    }

    fn set_keepalive(&mut self, conn: ConnId, idle: Option<Duration>) -> io::Result<()> {
        self.conns.with_fd(conn, |fd| crate::sys::set_keepalive(fd, idle))
    }
}
