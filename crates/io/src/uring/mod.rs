//! The io_uring backend: multishot accept per listener, multishot recv per connection into one
//! provided-buffer ring per loop (lent through an adaptive window, see [`BufRing`]), one send
//! (`send`, or a vectored `sendmsg`) in flight per connection, accepted sockets in a
//! registered file table, eventfd wakeups, timers through the wait timeout of
//! `io_uring_enter`.
//!
//! The pieces, one module each:
//!
//! - [`probe`](mod@probe): whether io_uring works here the way the loop uses it, and how a
//!   ring is set up.
//! - [`ops`]: what each operation is called (the `user_data` of its SQE) and the socket it
//!   names.
//! - [`lent`]: everything the loop lends the kernel (send headers, connect addresses, the
//!   eventfd buffer, the provided-buffer ring) and the one rule for it: memory an SQE points
//!   at outlives that SQE's last CQE. The only module here with `unsafe` code.
//! - [`conn`]: a connection and its state machine, and [`Core`], the [`Io`](crate::Io) of
//!   this backend.
//! - this file: the loop itself, its turn, and where each completion goes.
//!
//! Completion queue overflow: completions that do not fit in the CQ wait in the kernel's
//! overflow list (IORING_FEAT_NODROP). Each turn reads the CQ, and while the SQ ring's
//! IORING_SQ_CQ_OVERFLOW flag is set, asks the kernel to move the overflow list into the CQ
//! (io_uring_enter with GETEVENTS) and reads again, in the same turn. The buffer ring is only
//! ever reset when no completion can be pending anywhere (see [`UringLoop::bufs_settled`]). A
//! completion the kernel had to drop (no memory for the overflow list) is fatal: `run` fails
//! and the loop's memory is leaked on drop.

#[macro_use]
mod ops;
mod conn;
#[allow(unsafe_code)]
mod lent;
mod probe;

use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::net::TcpListener;
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue};

use crate::common::{Closing, RateLimited, earliest};
use crate::{ConnId, Handler, LoopConfig, RecvBuf, Waker, WakerInner};
use conn::{Core, UConn, Uring};
use lent::{BufRing, DRAIN_BOUND, SendPool, WakeBuf, accepted_socket};
use ops::{GEN_MASK, KIND_ACCEPT, KIND_LISTENER_CANCEL, KIND_NOP, KIND_WAKE, split_user_data};
use probe::{build_ring, describe, register_file_table};

pub(crate) use lent::Lend;
pub(crate) use probe::probe;

struct Listener {
    sock: Option<TcpListener>,
    armed: bool,
    retry_at: Option<Instant>,
}

/// Rounds of moving the kernel's CQ overflow list into the CQ per turn (each moves up to a
/// CQ's worth); what is left is read in the next turn. Nothing that needs every completion
/// read (resetting the buffer ring) runs while any is left.
const MAX_OVERFLOW_FLUSHES: usize = 64;

/// One io_uring event loop.
pub(crate) struct UringLoop {
    ring: IoUring,
    /// Freed by Drop only once the kernel is known to be done with it (after the ring's
    /// operations all completed and the ring was unregistered); leaked otherwise.
    bufs: ManuallyDrop<BufRing>,
    pub(crate) core: Core,
    wake_fd: Arc<File>,
    wake_buf: WakeBuf,
    wake_armed: bool,
    /// SQEs submitted whose last CQE has not arrived (for the bounded drain in Drop).
    inflight: usize,
    cqes: Vec<cqueue::Entry>,
    expired: Vec<ConnId>,
    /// Set up with DEFER_TASKRUN: the buffer window may shrink (see [`BufRing::reclaim`]).
    deferred: bool,
    /// Size of the registered file table (0: none could be registered).
    slots: u32,
    /// The kernel dropped completions (or the loop otherwise lost track of its operations):
    /// nothing it lent the kernel may be freed.
    broken: bool,
    /// How long Drop waits for the kernel ([`DRAIN_BOUND`]; tests shorten it).
    drain_bound: Duration,
    /// The overflow's warning, at most one line per 10 s.
    overflow_log: RateLimited,
}

impl UringLoop {
    pub(crate) fn new(cfg: &LoopConfig) -> io::Result<(Box<UringLoop>, Waker)> {
        let (ring, setup) = build_ring(cfg.ring_entries, cfg.cq_size())
            .map_err(|e| io::Error::new(e.kind(), describe("io_uring_setup", &e)))?;
        let bufs = BufRing::registered(&ring, cfg.buf_count, cfg.buf_size, cfg.buf_incremental)
            .map_err(|e| io::Error::new(e.kind(), describe("IORING_REGISTER_PBUF_RING", &e)))?;
        let wake_fd = Arc::new(File::from(crate::sys::eventfd()?));
        let waker = Waker(WakerInner::Eventfd(wake_fd.clone()));
        let mut l = Box::new(UringLoop {
            ring,
            bufs: ManuallyDrop::new(bufs),
            core: Core::new(
                cfg,
                Uring { sqes: Vec::new(), deliver: Vec::new(), listeners: Vec::new(), send_pool: SendPool::default() },
            ),
            wake_fd,
            wake_buf: WakeBuf::new(),
            wake_armed: false,
            inflight: 0,
            cqes: Vec::with_capacity(1024),
            expired: Vec::new(),
            deferred: setup.deferred,
            slots: 0,
            broken: false,
            drain_bound: DRAIN_BOUND,
            overflow_log: RateLimited::default(),
        });
        l.core.stats.recv_buffers = u64::from(l.bufs.count());
        l.slots = register_file_table(&l.ring);
        Ok((l, waker))
    }

    pub(crate) fn add_listener(&mut self, l: TcpListener) -> io::Result<()> {
        self.core.check_accepting()?;
        self.core.own.listeners.push(Listener { sock: Some(l), armed: false, retry_at: None });
        Ok(())
    }

    pub(crate) fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("this io_uring loop lost completions earlier and cannot run again"));
        }
        self.core.start_run();
        self.flush_dirty();
        loop {
            self.push_sqes()?;
            // Wait for completions, a timer, or nothing if work is pending.
            let mut deadline = earliest(self.core.timers.next(), self.core.close_timers.next());
            if self.deferred {
                deadline = earliest(deadline, self.bufs.check_at());
            }
            let deadline = self.core.own.listeners.iter().fold(deadline, |d, l| earliest(d, l.retry_at));
            let want = if self.core.own.deliver.is_empty() && self.core.own.sqes.is_empty() { 1 } else { 0 };
            let res = match deadline {
                Some(d) if want == 1 => {
                    let ts = Timespec::from(d.saturating_duration_since(Instant::now()));
                    self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                }
                _ => self.ring.submitter().submit_and_wait(want),
            };
            match res {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
                Err(e) => return Err(self.enter_failed(e)),
            }
            self.core.now = Instant::now();
            self.reap(handler)?;
            self.core.expire_timers(handler, &mut self.expired);
            self.deliver_stashes(handler);
            self.core.stats.recv_buffer_window = u64::from(self.bufs.window());
            self.core.stats.recv_buffers_lent = u64::from(self.bufs.lent_out());
            handler.on_turn_end(&mut self.core);
            self.flush_dirty();
            if let Some(window) = self.bufs.end_turn(self.core.now)
                && self.deferred
                && self.bufs_settled()
            {
                self.bufs.reclaim(&self.ring, window).map_err(|e| {
                    io::Error::new(e.kind(), describe("re-registering the buffer ring (IORING_REGISTER_PBUF_RING)", &e))
                })?;
                self.core.stats.recv_window_shrinks += 1;
            }
            if self.core.stopped {
                self.push_sqes()?;
                self.ring.submit()?;
                return Ok(());
            }
        }
    }

    /// Reads and handles every completion of this turn: the CQ, then, while the kernel has
    /// more in its overflow list (the SQ ring's IORING_SQ_CQ_OVERFLOW flag), moves them into
    /// the CQ and reads again ([`MAX_OVERFLOW_FLUSHES`] rounds at most).
    fn reap<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        let mut flushes = 0;
        loop {
            self.cqes.clear();
            self.cqes.extend(self.ring.completion());
            let cqes = std::mem::take(&mut self.cqes);
            for c in &cqes {
                if !cqueue::more(c.flags()) {
                    self.inflight = self.inflight.saturating_sub(1);
                }
                self.complete(handler, c);
            }
            self.cqes = cqes;
            if !self.ring.submission().cq_overflow() || flushes == MAX_OVERFLOW_FLUSHES {
                break;
            }
            if flushes == 0 {
                self.core.stats.cq_overflows += 1;
                if let Some(left_out) = self.overflow_log.admit(self.core.now) {
                    tracing::warn!(
                        "io_uring completion queue overflowed ({left_out} more times since the last line): \
                         handled, at the cost of extra system calls; a larger LoopConfig::cq_entries \
                         (ringwire --cq-entries) avoids it"
                    );
                }
            }
            flushes += 1;
            // With the overflow flag set, the io-uring crate's submit_and_wait(0) enters with
            // IORING_ENTER_GETEVENTS, and the kernel moves what fits from its overflow list
            // into the CQ (on a DEFER_TASKRUN ring it also runs pending completions, which is
            // fine: they are read here too). It also submits any SQE still queued.
            match self.ring.submitter().submit_and_wait(0) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
                Err(e) => return Err(self.enter_failed(e)),
            }
        }
        // The kernel counts the completions it had to drop (no memory for its overflow list).
        let dropped = self.ring.completion().overflow();
        if dropped != 0 {
            self.broken = true;
            return Err(io::Error::other(format!(
                "io_uring dropped {dropped} completions (the kernel had no memory for its CQ overflow list): \
                 the loop lost track of its operations and cannot go on"
            )));
        }
        Ok(())
    }

    /// An io_uring_enter failed with something other than a wait that ended early: EBADR
    /// means the kernel dropped completions (see [`UringLoop::reap`]).
    fn enter_failed(&mut self, e: io::Error) -> io::Error {
        if e.raw_os_error() == Some(libc::EBADR) {
            self.broken = true;
            return io::Error::new(e.kind(), describe("io_uring_enter: completions were dropped", &e));
        }
        e
    }

    /// Whether no completion that names a buffer of the ring can be pending anywhere, so the
    /// ring may be reset: the CQ is empty, the kernel's overflow list is empty, and where the
    /// kernel reports the ring's head (6.8+), every buffer it took came back in a CQE we read.
    fn bufs_settled(&mut self) -> bool {
        self.ring.completion().is_empty()
            && !self.ring.submission().cq_overflow()
            && self.bufs.kernel_caught_up(&self.ring)
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.core.dirty);
        for id in dirty.drain(..) {
            self.core.advance(id);
        }
        // advance() never marks anything dirty, but keep whatever a future change adds.
        dirty.append(&mut self.core.dirty);
        self.core.dirty = dirty;
    }

    /// Delivers data kept while a connection was paused, now that it was resumed.
    fn deliver_stashes<H: Handler>(&mut self, handler: &mut H) {
        let mut list = std::mem::take(&mut self.core.own.deliver);
        for id in list.drain(..) {
            // A target filled while paused goes first: its bytes came before the stash's.
            self.settle_target(handler, id);
            let Some(c) = self.core.conns.get_mut(id) else { continue };
            if c.paused || c.closing != Closing::Open || c.target().is_some() {
                continue;
            }
            let mut data = c.rare.cold_if_any().map(|c| std::mem::take(&mut c.more.stash)).unwrap_or_default();
            if !data.is_empty() {
                handler.on_data(&mut self.core, id, RecvBuf::from_slice(&mut data));
            }
            if let Some(c) = self.core.conns.get_mut(id) {
                c.close_after_eof();
            }
            self.core.mark_dirty(id);
        }
        // Anything resumed during delivery stays for the next turn.
        list.append(&mut self.core.own.deliver);
        self.core.own.deliver = list;
    }

    fn complete<H: Handler>(&mut self, handler: &mut H, cqe: &cqueue::Entry) {
        let (kind, generation, idx) = split_user_data(cqe.user_data());
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        match kind {
            KIND_WAKE => {
                self.wake_armed = false;
                handler.on_wake(&mut self.core);
            }
            KIND_ACCEPT => self.on_accept(handler, idx as usize, cqe),
            KIND_LISTENER_CANCEL | KIND_NOP => {}
            _ => {
                let Some(id) = self.core.conns.id_at(idx, generation, GEN_MASK) else {
                    // Cannot happen: a slot is freed only after its last CQE. Return any buffer.
                    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                        let piece = self.bufs.received(bid, res, cqe.flags());
                        self.bufs.done(piece);
                    }
                    return;
                };
                self.on_conn_cqe(handler, id, kind, res, more, cqe.flags());
            }
        }
    }

    fn on_accept<H: Handler>(&mut self, handler: &mut H, i: usize, cqe: &cqueue::Entry) {
        let (res, more) = (cqe.result(), cqueue::more(cqe.flags()));
        let Some(l) = self.core.own.listeners.get_mut(i) else { return };
        if !more {
            l.armed = false;
            if !self.core.accepting {
                l.sock = None;
            }
        }
        if res < 0 {
            // ECANCELED: stop_accepting cancelled it. Otherwise the shared policy: transient
            // errors re-arm at the end of this turn, the others are logged and back off.
            if -res != libc::ECANCELED {
                let local = l.sock.as_ref().and_then(|s| s.local_addr().ok());
                l.retry_at = self.core.accept_errors.failed(self.core.now, -res, local);
            }
            return;
        }
        let Some(sock) = accepted_socket(cqe) else { return };
        if !self.core.accepting {
            return; // dropped: closes it
        }
        let Ok(peer) = sock.peer_addr() else { return };
        let Some(peer) = peer.as_socket() else { return };
        if self.core.nodelay {
            let _ = sock.set_tcp_nodelay(true);
        }
        let id = self.core.conns.insert(UConn::new(sock.into_raw_fd(), Some(peer)));
        self.register_file(id);
        self.core.mark_dirty(id);
        handler.on_accept(&mut self.core, id, peer);
    }

    /// Puts an accepted connection's socket in the registered file table, at its slab index.
    fn register_file(&mut self, id: ConnId) {
        if id.idx >= self.slots {
            return;
        }
        let Some(c) = self.core.conns.get_mut(id) else { return };
        if self.ring.submitter().register_files_update(id.idx, &[c.fd]).is_ok() {
            c.slot = id.idx;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::atomic::Ordering;

    use bytes::Bytes;

    use super::lent::{LEAKED_LOOPS, WINDOW_PERIOD, pbuf_head};
    use super::ops::KIND_RECV;
    use crate::Io;

    /// `IORING_CQE_F_BUFFER`: the CQE names a provided buffer in its upper 16 flag bits.
    const IORING_CQE_F_BUFFER: u32 = 1;

    /// Echoes; once `expect` connections closed, waits `quiet` on the first (idle)
    /// connection's timer and stops.
    struct ChurnThenQuiet {
        expect: usize,
        quiet: Duration,
        idle: Option<ConnId>,
        closed: usize,
        errors: usize,
    }

    impl Handler for ChurnThenQuiet {
        fn on_accept(&mut self, _io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
            self.idle.get_or_insert(conn);
        }
        fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
            io.send(conn, Bytes::copy_from_slice(&data));
        }
        fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<io::Error>) {
            self.closed += 1;
            self.errors += usize::from(error.is_some());
            if self.closed == self.expect {
                let idle = self.idle.expect("the idle connection came first");
                io.set_timer(idle, Some(io.now() + self.quiet));
            }
        }
        fn on_timer(&mut self, io: &mut impl Io, _conn: ConnId) {
            io.stop();
        }
    }

    fn listen(l: &mut UringLoop) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        l.add_listener(listener).unwrap();
        addr
    }

    /// A completion queue of 16 for 200 connections that send, then all close at once, half
    /// of them with a reset: the kernel's overflow list is drained every turn, every buffer
    /// any completion carried (data, EOF or error) is back, the kernel's view of the buffer
    /// ring agrees with ours, and in the quiet that follows the window shrinks (the settled
    /// check does not block it for good).
    #[test]
    fn buffers_come_back_after_a_burst_of_closes_and_resets() {
        if !ringwire_testkit::uring_usable() {
            return;
        }
        let n = 200;
        let cfg =
            LoopConfig { ring_entries: 8, cq_entries: 16, buf_count: 1024, buf_size: 1024, ..LoopConfig::default() };
        let (mut l, _waker) = UringLoop::new(&cfg).unwrap();
        let addr = listen(&mut l);
        let clients = std::thread::spawn(move || {
            let idle = TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(50)); // accepted first
            let mut conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
            let msg: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
            for s in &mut conns {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(&msg).unwrap();
            }
            for s in &mut conns {
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap();
                assert!(back == msg);
            }
            // More input, then everyone leaves at once: half with RST, half with FIN (and
            // they read what is echoed until the server's FIN).
            let mut polite = Vec::new();
            for (i, mut s) in conns.into_iter().enumerate() {
                s.write_all(&msg).unwrap();
                if i % 2 == 0 {
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                } else {
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                    polite.push(s);
                }
            }
            for mut s in polite {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
            idle
        });
        let mut h = ChurnThenQuiet { expect: n, quiet: 3 * WINDOW_PERIOD, idle: None, closed: 0, errors: 0 };
        l.run(&mut h).unwrap();
        drop(clients.join().unwrap());
        println!(
            "{} closed ({} with an error), {} turns flushed the CQ overflow list, {} window shrinks",
            h.closed, h.errors, l.core.stats.cq_overflows, l.core.stats.recv_window_shrinks
        );
        assert!(l.core.stats.cq_overflows > 0, "the CQ never overflowed: the test does not test it");
        assert_eq!(usize::from(l.bufs.lent()) + l.bufs.free().len(), usize::from(l.bufs.count()));
        match pbuf_head(&l.ring) {
            Some(head) => {
                assert_eq!(head, l.bufs.tail().wrapping_sub(l.bufs.lent()), "a buffer the kernel took never came back")
            }
            None => println!("kernel head not checked: IORING_REGISTER_PBUF_STATUS needs Linux 6.8"),
        }
        if l.deferred {
            assert!(l.core.stats.recv_window_shrinks > 0, "the window never shrank after the burst");
        }
    }

    /// A recv completion that carries a buffer gives it back whatever its result: an EOF or
    /// an error with a buffer (which the kernel may attach) must not lose it for good. An
    /// incremental buffer stays with the kernel instead: a receive that took nothing did not
    /// move the kernel past it (whatever the flags say; kernels before the fix of 2026 leave
    /// `IORING_CQE_F_BUF_MORE` out there).
    #[test]
    fn a_recv_completion_without_data_still_returns_its_buffer() {
        if !ringwire_testkit::uring_usable() {
            return;
        }
        for incremental in [false, true] {
            let cfg = LoopConfig { buf_incremental: incremental, ..LoopConfig::default() };
            let (mut l, _waker) = UringLoop::new(&cfg).unwrap();
            let incremental = l.bufs.incremental();
            for (bid, res) in [(0u16, 0), (1, -libc::ECONNRESET)] {
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                let id = l.core.conns.insert(UConn::new(sock.into_raw_fd(), None));
                let (lent, free) = (l.bufs.lent(), l.bufs.free().len());
                let flags = IORING_CQE_F_BUFFER | u32::from(bid) << 16;
                let mut h = StopOnAccept;
                l.on_conn_cqe(&mut h, id, KIND_RECV, res, true, flags);
                if incremental {
                    assert_eq!((l.bufs.lent(), l.bufs.free().len()), (lent, free), "result {res}");
                } else {
                    assert_eq!((l.bufs.lent(), l.bufs.free().len()), (lent - 1, free + 1), "result {res}");
                    assert_eq!(l.bufs.free().last(), Some(&bid));
                }
                let c = l.core.conns.get(id).unwrap();
                assert_ne!(c.closing, Closing::Open, "result {res} ends the connection");
            }
        }
    }

    /// Keeps every receive as `Bytes` (lent out of the ring where it can be) and echoes it;
    /// stops once `expect` bytes arrived.
    struct Keep {
        expect: usize,
        got: usize,
        kept: Vec<Bytes>,
    }

    impl Handler for Keep {
        fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
        fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
            let b = data.into_bytes();
            self.got += b.len();
            io.send(conn, b.clone());
            self.kept.push(b);
            if self.got == self.expect {
                io.stop();
            }
        }
        fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<io::Error>) {}
    }

    /// Stops at the end of its first turn.
    struct OneTurn;

    impl Handler for OneTurn {
        fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
        fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
        fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<io::Error>) {}
        fn on_turn_end(&mut self, io: &mut impl Io) {
            io.stop();
        }
    }

    /// Receives kept as `Bytes` are lent out of the ring without a copy, at most a quarter
    /// of the buffers at once (the rest copied); the kernel never writes a lent buffer (each
    /// kept message still reads as sent after many more receives); dropped on another thread,
    /// the buffers return to the ring at the loop's next turn; small receives are copied.
    #[test]
    fn kept_receives_are_lent_bounded_and_come_back_from_any_thread() {
        kept_receives(false, 3000, 1);
    }

    /// The same with incremental buffers, two messages to a buffer: a lent piece is never
    /// written while the kernel fills the rest of its buffer, and a buffer with a piece out
    /// lends its second piece too.
    #[test]
    fn kept_pieces_of_incremental_buffers_are_lent_bounded_and_come_back() {
        kept_receives(true, 2048, 2);
    }

    /// Echoes 40 messages of `len` bytes, one at a time, keeping each as `Bytes`; `per_buffer`
    /// of them fit in a buffer.
    fn kept_receives(incremental: bool, len: usize, per_buffer: usize) {
        if !ringwire_testkit::uring_usable() {
            return;
        }
        let (count, size, msgs) = (64u16, 4096u32, 40usize);
        let cfg =
            LoopConfig { buf_count: count, buf_size: size, buf_incremental: incremental, ..LoopConfig::default() };
        let (mut l, waker) = UringLoop::new(&cfg).unwrap();
        if l.bufs.incremental() != incremental {
            println!("skipped: the kernel cannot consume buffers incrementally (Linux 6.12+)");
            return;
        }
        let addr = listen(&mut l);
        let message = move |i: usize| -> Vec<u8> { (0..len).map(|j| (i * 31 + j) as u8).collect() };
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            // One at a time, each echoed before the next: each arrives in a receive of its own.
            for i in 0..msgs {
                s.write_all(&message(i)).unwrap();
                let mut back = vec![0u8; len];
                s.read_exact(&mut back).unwrap();
                assert!(back == message(i), "echo {i} differs");
            }
            // A small one: copied, not lent.
            s.write_all(b"small").unwrap();
            s
        });
        let mut h = Keep { expect: msgs * len + 5, got: 0, kept: Vec::new() };
        l.run(&mut h).unwrap();
        let _client = client.join().unwrap();
        let max = usize::from(count / 4);
        let mem = l.bufs.mem_range();
        let in_ring = |b: &Bytes| mem.contains(&(b.as_ptr() as usize));
        let lent = h.kept.iter().filter(|b| in_ring(b)).count();
        println!("{} receives kept, {lent} lent out of the ring", h.kept.len());
        assert_eq!(h.kept.len(), msgs + 1, "one receive per message");
        assert_eq!(lent, max * per_buffer, "lent up to a quarter of the buffers, then copied");
        assert_eq!(usize::from(l.bufs.lent_out()), max);
        assert!(!in_ring(h.kept.last().unwrap()), "a small receive is copied");
        for (i, b) in h.kept[..msgs].iter().enumerate() {
            assert!(b[..] == message(i)[..], "kept message {i} was overwritten");
        }
        // Dropped on another thread; the next turn takes them back.
        let kept = std::mem::take(&mut h.kept);
        std::thread::spawn(move || drop(kept)).join().unwrap();
        waker.wake().unwrap();
        l.run(&mut OneTurn).unwrap();
        assert_eq!(l.bufs.lent_out(), 0, "lent buffers came back");
        assert_eq!(usize::from(l.bufs.lent()) + l.bufs.free().len(), usize::from(l.bufs.count()));
        assert_eq!(l.core.stats.recv_buffers_lent, 0);
    }

    /// Takes a stream by `on_data` and, at most times, by `recv_into` into buffers of varied
    /// sizes; pauses once, for 20 ms, with a target pending. Stops when the connection closes.
    #[derive(Default)]
    struct IntoTargets {
        got: Vec<u8>,
        calls: usize,
        /// `on_data_into` calls, and the bytes they brought.
        into: (usize, usize),
        outstanding: bool,
        refused: usize,
        paused_once: bool,
        closed: Option<Option<io::ErrorKind>>,
    }

    impl IntoTargets {
        fn next(&mut self, io: &mut impl Io, conn: ConnId) {
            self.calls += 1;
            if self.calls.is_multiple_of(4) {
                return; // this time by on_data
            }
            let size = 1 + (self.calls * 7919) % (256 << 10);
            match io.recv_into(conn, bytes::BytesMut::with_capacity(size), size) {
                Ok(()) => self.outstanding = true,
                Err(buf) => {
                    // Input kept from the batch the last target filled up in waits first.
                    assert!(buf.is_empty());
                    self.refused += 1;
                }
            }
            if !self.paused_once && self.outstanding && self.got.len() > 2 << 20 {
                self.paused_once = true;
                io.pause_read(conn);
                io.set_timer(conn, Some(io.now() + Duration::from_millis(20)));
            }
        }
    }

    impl Handler for IntoTargets {
        fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
        fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
            assert!(!self.outstanding, "on_data while a target was out");
            self.got.extend_from_slice(&data);
            self.next(io, conn);
        }
        fn on_data_into(&mut self, io: &mut impl Io, conn: ConnId, buf: bytes::BytesMut) {
            assert!(self.outstanding, "a target came back twice");
            self.outstanding = false;
            self.into.0 += 1;
            self.into.1 += buf.len();
            self.got.extend_from_slice(&buf);
            self.next(io, conn);
        }
        fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
            io.resume_read(conn);
        }
        fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<io::Error>) {
            self.closed = Some(error.map(|e| e.kind()));
            io.stop();
        }
    }

    /// A stream taken partly by `on_data` and partly received into the handler's buffers
    /// (`recv_into`: what the multishot recv still brought, then a single RECV), of sizes from
    /// 1 byte to 256 KiB, through a pause with a target pending and the peer's EOF: every byte
    /// arrives, in order, once; no `on_data` comes while a target is out; the close is clean.
    #[test]
    fn a_stream_received_into_targets_arrives_whole_and_in_order() {
        if !ringwire_testkit::uring_usable() {
            return;
        }
        let total = 12 << 20;
        let pattern = move |i: usize| (i % 251) as u8 ^ (i >> 16) as u8;
        let (mut l, _waker) = UringLoop::new(&LoopConfig::default()).unwrap();
        let addr = listen(&mut l);
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let data: Vec<u8> = (0..total).map(pattern).collect();
            let mut at = 0;
            for i in 0usize.. {
                let n = (1 + i * 104_729 % (300 << 10)).min(total - at);
                s.write_all(&data[at..at + n]).unwrap();
                at += n;
                if at == total {
                    break;
                }
                if i % 5 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let _ = s.read_to_end(&mut Vec::new());
        });
        let mut h = IntoTargets::default();
        l.run(&mut h).unwrap();
        client.join().unwrap();
        println!("{} bytes, {} targets back with {} bytes, {} refused", h.got.len(), h.into.0, h.into.1, h.refused);
        assert_eq!(h.closed, Some(None), "closed cleanly");
        assert_eq!(h.got.len(), total);
        assert!(h.got.iter().enumerate().all(|(i, b)| *b == pattern(i)), "bytes out of order");
        assert!(h.paused_once);
        // What the multishot recv took in the batch a target was asked for in (up to 32
        // receives) fills the target first; the rest of that batch comes by on_data.
        assert!(h.into.0 >= 10 && h.into.1 > 0);
    }

    /// Aborts the connection while a RECV into a target is in flight (the peer sends nothing
    /// more).
    #[derive(Default)]
    struct AbortWithTarget {
        into: usize,
        closed: bool,
    }

    impl Handler for AbortWithTarget {
        fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
        fn on_data(&mut self, io: &mut impl Io, conn: ConnId, _data: RecvBuf<'_>) {
            assert!(io.recv_into(conn, bytes::BytesMut::with_capacity(1000), 1000).is_ok());
            io.set_timer(conn, Some(io.now() + Duration::from_millis(50)));
        }
        fn on_data_into(&mut self, _io: &mut impl Io, _conn: ConnId, _buf: bytes::BytesMut) {
            self.into += 1;
        }
        fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
            io.abort(conn);
        }
        fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, _error: Option<io::Error>) {
            self.closed = true;
            io.stop();
        }
    }

    /// An abort cancels a RECV into a target in flight: the connection closes without the
    /// target coming back, and every operation completes (the loop frees its memory on drop).
    #[test]
    fn an_abort_cancels_a_receive_into_a_target() {
        if !ringwire_testkit::uring_usable() {
            return;
        }
        let (mut l, _waker) = UringLoop::new(&LoopConfig::default()).unwrap();
        let addr = listen(&mut l);
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"hello").unwrap();
        let mut h = AbortWithTarget::default();
        l.run(&mut h).unwrap();
        assert!(h.closed && h.into == 0);
        assert_eq!(l.core.conns.len(), 0);
        let before = LEAKED_LOOPS.load(Ordering::Relaxed);
        drop(l);
        assert_eq!(LEAKED_LOOPS.load(Ordering::Relaxed), before, "the loop leaked: an operation never completed");
        drop(client);
    }

    /// Leaves a multishot recv and the eventfd read in flight.
    struct StopOnAccept;

    impl Handler for StopOnAccept {
        fn on_accept(&mut self, io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {
            io.stop();
        }
        fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
        fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<io::Error>) {}
    }

    /// A loop dropped while the kernel still has its operations leaks their memory instead of
    /// freeing it; a loop whose drain completes frees it.
    #[test]
    fn drop_leaks_only_when_the_kernel_may_still_use_the_memory() {
        if !ringwire_testkit::uring_usable() {
            return;
        }
        for (bound, leaks) in [(Duration::ZERO, true), (DRAIN_BOUND, false)] {
            let (mut l, _waker) = UringLoop::new(&LoopConfig::default()).unwrap();
            let addr = listen(&mut l);
            let client = TcpStream::connect(addr).unwrap();
            l.run(&mut StopOnAccept).unwrap();
            assert!(l.inflight >= 2, "recv and wake read in flight: {}", l.inflight);
            l.drain_bound = bound;
            let before = LEAKED_LOOPS.load(Ordering::Relaxed);
            drop(l);
            assert_eq!(LEAKED_LOOPS.load(Ordering::Relaxed) > before, leaks, "drain bound {bound:?}");
            drop(client);
        }
    }
}
