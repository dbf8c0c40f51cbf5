//! Everything the io_uring loop lends the kernel, and the one rule for it: **memory an SQE
//! points at outlives that SQE's last CQE.**
//!
//! Each piece is a type of this module whose insides no other module reaches:
//!
//! - [`SendSlot`]: the `msghdr` and iovecs of a connection's send in flight. The loop's
//!   [`SendPool`] lends the connection one before a send may start ([`SendPool::lend`]) and
//!   the send's completion gives it back ([`SendPool::give_back`]), so an idle connection
//!   holds none. The iovecs point into the connection's queued `Bytes`, which stay queued
//!   until that completion says how much went out (`UConn::teardown` does not clear a queue
//!   with a send in flight; the completion does).
//! - [`ConnectAddr`]: the address a CONNECT points at, kept in the connection until the
//!   CONNECT completes.
//! - [`RecvTarget`]: a handler's buffer a single RECV fills ([`crate::Io::recv_into`]), kept
//!   in the connection from `recv_into` until it is handed back, which never happens while
//!   its RECV is in flight.
//! - [`WakeBuf`]: the 8 bytes the eventfd READ writes.
//! - [`BufRing`] (`lent/bufring.rs`): the receive buffers and the ring of entries that lends
//!   them, registered with the kernel as buffer group [`BGID`].
//!
//! The SQEs that point at memory are built only here ([`SendSlot::sqe`], [`ConnectAddr::sqe`],
//! [`RecvTarget::sqe`], the eventfd READ in `push_sqes`); every other SQE of the loop (multishot RECV from the
//! registered buffer group, ACCEPT without an address, the cancels, CLOSE, NOP) points at
//! none. SQEs reach the kernel only here (`push_sqes`, [`push_nop`], `drain`).
//!
//! When the memory is freed: a send buffer goes back to the pool at its send's completion; a
//! connection's state (its connect address, receive target and queued `Bytes`) only once all of its
//! operations completed and its fd was closed (the CLOSE completion, in `conn.rs`, is what
//! removes it); the loop's memory, and that of the connections still open, only in the
//! loop's `Drop` (here), after it drained every operation, or never: when the drain runs out
//! of time or the kernel lost completions, all of it is leaked.

mod bufring;

use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

pub(crate) use bufring::Lend;
pub(super) use bufring::{BGID, BufRing};
#[cfg(test)]
pub(super) use bufring::{WINDOW_PERIOD, pbuf_head};

use super::UringLoop;
use super::ops::{KIND_ACCEPT, KIND_NOP, KIND_WAKE, split_user_data, user_data};
use crate::common::{IOV_MAX, SendQueue};

/// The `msghdr` and iovecs of the send in flight; boxed so their address is stable.
pub(super) struct SendBuf {
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

impl SendBuf {
    fn new() -> Box<SendBuf> {
        Box::new(SendBuf {
            iov: Vec::new(),
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
        })
    }
}

/// A handler's buffer that the next bytes of one connection go into ([`crate::Io::recv_into`]):
/// first whatever its multishot RECV still delivered while being cancelled (copied, in
/// order), then a single RECV straight into the spare capacity, so the kernel copies those
/// bytes once, into their final place. At most `want` bytes go in.
pub(super) struct RecvTarget {
    buf: BytesMut,
    /// Bytes still wanted.
    want: usize,
    /// A RECV into `buf` is in flight: `buf` must not move, grow or be dropped.
    inflight: bool,
    /// Holds bytes for the handler (its RECV completed, or it is full): hand it back (so
    /// does the peer's EOF, which the connection's `eof` says).
    ready: bool,
}

impl RecvTarget {
    /// `want` bytes are wanted in `buf`, which has room for them.
    pub(super) fn new(buf: BytesMut, want: usize) -> RecvTarget {
        debug_assert!(buf.capacity() - buf.len() >= want && want > 0);
        RecvTarget { buf, want, inflight: false, ready: false }
    }

    /// Appends the front of `data` (bytes received before the single RECV could start);
    /// returns how much it took. Full: ready.
    pub(super) fn fill(&mut self, data: &[u8]) -> usize {
        debug_assert!(!self.inflight);
        let n = data.len().min(self.want);
        self.buf.extend_from_slice(&data[..n]);
        self.want -= n;
        self.ready |= self.want == 0;
        n
    }

    /// Whether a RECV into it is in flight.
    pub(super) fn inflight(&self) -> bool {
        self.inflight
    }

    /// Whether it waits to be handed back.
    pub(super) fn ready(&self) -> bool {
        self.ready
    }

    /// The RECV of the wanted bytes into the spare capacity, on the socket `slot`/`fd` names:
    /// the SQE without its user_data. The target must stay in its connection, untouched,
    /// until [`completed`](Self::completed).
    pub(super) fn sqe(&mut self, slot: u32, fd: RawFd) -> squeue::Entry {
        debug_assert!(!self.inflight && !self.ready && self.want > 0);
        self.inflight = true;
        let spare = self.buf.spare_capacity_mut();
        let len = self.want.min(spare.len()).min(u32::MAX as usize) as u32;
        let ptr = spare.as_mut_ptr().cast::<u8>();
        on_socket!(slot, fd, t => opcode::Recv::new(t, ptr, len).build())
    }

    /// Its RECV completed with `res`: the bytes received (then it is ready), 0 at the peer's
    /// EOF, or a negative errno.
    pub(super) fn completed(&mut self, res: i32) {
        debug_assert!(self.inflight);
        self.inflight = false;
        if res > 0 {
            let n = (res as usize).min(self.want);
            // SAFETY: the kernel wrote `res` bytes (at most the length the SQE gave, which is
            // at most `want` and the spare capacity) at the start of the spare capacity.
            unsafe { self.buf.set_len(self.buf.len() + n) };
            self.want -= n;
            self.ready = true;
        }
    }

    /// The buffer, to hand back (never while its RECV is in flight).
    pub(super) fn into_buf(self) -> BytesMut {
        assert!(!self.inflight, "a receive target handed back while the kernel writes into it");
        self.buf
    }
}

/// Buffers kept in the loop's pool for the next sends; the rest are freed.
const SEND_POOL_MAX: usize = 256;

/// A connection's [`SendBuf`]: held only while a send is in flight. `advance` lends it one
/// from the loop's pool before a send may start, and the send's completion gives it back, so
/// an idle connection holds none (and no iovec array).
pub(super) struct SendSlot(Option<Box<SendBuf>>);

impl SendSlot {
    /// No buffer lent.
    pub(super) fn empty() -> SendSlot {
        SendSlot(None)
    }

    /// Whether a buffer is lent to this connection.
    #[cfg(test)]
    pub(super) fn is_lent(&self) -> bool {
        self.0.is_some()
    }

    /// The send of (the first [`IOV_MAX`] chunks of) `queue` on the socket `slot`/`fd` names,
    /// pointing at this slot's buffer and at the queued `Bytes`: the SQE without its
    /// user_data. The slot and the queue must stay as they are until its completion.
    pub(super) fn sqe(&mut self, queue: &SendQueue, slot: u32, fd: RawFd) -> squeue::Entry {
        // `advance` lends one before every send; allocating here is only a fallback.
        let sb = self.0.get_or_insert_with(SendBuf::new);
        sb.iov.clear();
        sb.iov.extend(
            queue.segments(IOV_MAX).map(|s| libc::iovec { iov_base: s.as_ptr().cast_mut().cast(), iov_len: s.len() }),
        );
        if let [one] = sb.iov[..] {
            // One segment (the common case: a reply encoded in one piece): a plain send, which
            // spares the kernel copying in and walking a msghdr and an iovec array. A partial
            // send (also of a segment over 4 GiB, capped here) continues from the queue.
            let len = one.iov_len.min(u32::MAX as usize) as u32;
            on_socket!(slot, fd, t => opcode::Send::new(t, one.iov_base.cast_const().cast(), len).flags(libc::MSG_NOSIGNAL).build())
        } else {
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            sb.msg = unsafe { std::mem::zeroed() };
            sb.msg.msg_iov = sb.iov.as_mut_ptr();
            sb.msg.msg_iovlen = sb.iov.len() as _;
            on_socket!(slot, fd, t => opcode::SendMsg::new(t, &sb.msg).flags(libc::MSG_NOSIGNAL as u32).build())
        }
    }
}

/// Send buffers not lent to any connection (see [`SendSlot`]). Boxed: a lent buffer's
/// address must not change while the kernel reads it.
#[derive(Default)]
pub(super) struct SendPool(#[allow(clippy::vec_box)] Vec<Box<SendBuf>>);

impl SendPool {
    /// Lends `slot` a buffer from the pool (a new one if the pool is empty), unless it has one.
    pub(super) fn lend(&mut self, slot: &mut SendSlot) {
        if slot.0.is_none() {
            slot.0 = Some(self.0.pop().unwrap_or_else(SendBuf::new));
        }
    }

    /// The send of `slot` completed, so the kernel is done with its msghdr and iovecs: the
    /// buffer goes back to the pool (or is freed when the pool is full).
    pub(super) fn give_back(&mut self, slot: &mut SendSlot) {
        if let Some(mut b) = slot.0.take()
            && self.0.len() < SEND_POOL_MAX
        {
            // A pooled buffer keeps room for a few iovecs, not a burst's worth.
            b.iov.shrink_to(16);
            self.0.push(b);
        }
    }
}

/// The address a CONNECT points at; boxed so it does not move while the CONNECT is in flight.
pub(super) struct ConnectAddr(Box<socket2::SockAddr>);

impl ConnectAddr {
    pub(super) fn new(addr: SocketAddr) -> ConnectAddr {
        ConnectAddr(Box::new(socket2::SockAddr::from(addr)))
    }

    /// The CONNECT of `fd` to this address, without its user_data. Keep `self` (in the
    /// connection) until it completes.
    pub(super) fn sqe(&self, fd: RawFd) -> squeue::Entry {
        opcode::Connect::new(Fd(fd), self.0.as_ptr().cast(), self.0.len()).build()
    }
}

/// What the eventfd READ writes: 8 bytes, boxed so they do not move.
pub(super) struct WakeBuf(Box<u64>);

impl WakeBuf {
    pub(super) fn new() -> WakeBuf {
        WakeBuf(Box::new(0))
    }
}

/// The socket a successful ACCEPT completion carries (a new descriptor, ours from now on);
/// `None` for any other completion.
pub(super) fn accepted_socket(cqe: &cqueue::Entry) -> Option<socket2::Socket> {
    let (kind, _, _) = split_user_data(cqe.user_data());
    let fd = cqe.result();
    // SAFETY: the result of a successful ACCEPT is a new descriptor that nobody else owns.
    (kind == KIND_ACCEPT && fd >= 0).then(|| socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Queues a NOP with the user_data of [`KIND_NOP`] (the probe's round trip).
pub(super) fn push_nop(ring: &mut IoUring) -> Result<(), squeue::PushError> {
    let nop = opcode::Nop::new().build().user_data(user_data(KIND_NOP, 0, 0));
    // SAFETY: a NOP references no memory.
    unsafe { ring.submission().push(&nop) }
}

/// How long dropping a loop waits for the kernel to finish its cancelled operations.
pub(super) const DRAIN_BOUND: Duration = Duration::from_secs(2);
/// Loops whose drop leaked memory the kernel might still use (see [`UringLoop::drop`]).
pub(super) static LEAKED_LOOPS: AtomicUsize = AtomicUsize::new(0);

impl UringLoop {
    /// Pushes every pending SQE into the submission queue, submitting when it is full.
    pub(super) fn push_sqes(&mut self) -> io::Result<()> {
        let now = self.core.now;
        self.bufs.top_up();
        if !self.wake_armed {
            let buf: *mut u64 = &mut *self.wake_buf.0;
            let e = opcode::Read::new(Fd(self.wake_fd.as_raw_fd()), buf.cast(), 8)
                .build()
                .user_data(user_data(KIND_WAKE, 0, 0));
            self.core.own.sqes.push(e);
            self.wake_armed = true;
        }
        if self.core.accepting {
            for (i, l) in self.core.own.listeners.iter_mut().enumerate() {
                if let Some(s) = &l.sock
                    && !l.armed
                    && l.retry_at.is_none_or(|t| t <= now)
                {
                    let e = opcode::AcceptMulti::new(Fd(s.as_raw_fd()))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                        .user_data(user_data(KIND_ACCEPT, i as u32, 0));
                    self.core.own.sqes.push(e);
                    l.armed = true;
                    l.retry_at = None;
                }
            }
        }
        let mut pushed = 0;
        'push: for e in &self.core.own.sqes {
            loop {
                // SAFETY: the SQEs that point at memory are built by this module only (the
                // send msghdr/iovecs and the queued Bytes they point into, the connect address,
                // a receive target's spare capacity, the eventfd buffer above); none of it is freed or moved before the SQE's last
                // CQE (see the module docs). The other SQEs of the loop point at no memory
                // (the multishot RECV selects from the registered buffer ring).
                match unsafe { self.ring.submission().push(e) } {
                    Ok(()) => break,
                    Err(_) => match self.ring.submit() {
                        Ok(_) => {}
                        // The completion queue is backed up: keep the rest for the next turn,
                        // after this turn's completions were reaped.
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)) => {
                            break 'push;
                        }
                        Err(e) => return Err(self.enter_failed(e)),
                    },
                }
            }
            pushed += 1;
        }
        self.core.own.sqes.drain(..pushed);
        self.inflight += pushed;
        Ok(())
    }

    /// Cancels everything still in flight and waits, at most `drain_bound`, for the last
    /// completion of every operation. True when the kernel is done with all of them.
    fn drain(&mut self) -> bool {
        if self.inflight == 0 {
            return !self.broken;
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(user_data(KIND_NOP, 0, 0));
        // SAFETY: a cancel SQE references no memory.
        let mut pushed = unsafe { self.ring.submission().push(&cancel) }.is_ok();
        if !pushed {
            // The submission queue is full of SQEs not submitted yet: submit them, then retry.
            let _ = self.ring.submit();
            // SAFETY: as above.
            pushed = unsafe { self.ring.submission().push(&cancel) }.is_ok();
        }
        if !pushed {
            return false;
        }
        self.inflight += 1;
        let end = Instant::now() + self.drain_bound;
        while self.inflight > 0 && Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
            let ts = Timespec::from(left);
            // want = 1 enters with GETEVENTS, which also moves the overflow list into the CQ.
            let _ = self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            for c in self.ring.completion() {
                if !cqueue::more(c.flags()) {
                    self.inflight = self.inflight.saturating_sub(1);
                }
            }
        }
        self.inflight == 0 && !self.broken
    }
}

impl Drop for UringLoop {
    fn drop(&mut self) {
        if self.drain() {
            // Every operation completed: the kernel holds nothing of ours but the buffer
            // ring's registration, which goes first.
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
            for id in self.core.conns.ids() {
                if let Some(c) = self.core.conns.remove(id)
                    && !c.close_sent
                {
                    // SAFETY: the connection owns this fd and its CLOSE op never completed.
                    drop(unsafe { OwnedFd::from_raw_fd(c.fd) });
                }
            }
            // SAFETY: dropped once, here; the kernel no longer uses the ring (unregistered,
            // no operation in flight).
            unsafe { ManuallyDrop::drop(&mut self.bufs) };
            return;
        }
        // The kernel may still read or write memory its operations point at: the receive
        // buffers and their ring, the send msghdr/iovecs and the queued Bytes they point
        // into, the eventfd read buffer, connect addresses, receive targets. Freeing any of it could hand the
        // kernel memory that is reused for something else, so all of it is leaked on purpose
        // (`bufs` is ManuallyDrop and stays undropped; the connections and the wake buffer are
        // forgotten). The descriptors are closed: an operation in flight holds its own file
        // reference, and the ring's teardown cancels it.
        LEAKED_LOOPS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "io_uring loop dropped with {} operations still in flight after {:?} (broken: {}): \
             leaking its buffers ({} KiB) and {} connections' state instead of freeing memory the kernel may use",
            self.inflight,
            self.drain_bound,
            self.broken,
            self.bufs.bufs_len >> 10,
            self.core.conns.len()
        );
        for id in self.core.conns.ids() {
            if let Some(c) = self.core.conns.remove(id) {
                if !c.close_sent {
                    // SAFETY: the connection owns this fd and no CLOSE op was submitted for it.
                    drop(unsafe { OwnedFd::from_raw_fd(c.fd) });
                }
                std::mem::forget(c);
            }
        }
        std::mem::forget(std::mem::replace(&mut self.wake_buf, WakeBuf::new()));
    }
}
