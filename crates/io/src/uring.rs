//! The io_uring backend: multishot accept per listener, multishot recv per connection into one
//! provided-buffer ring per loop, one vectored `sendmsg` in flight per connection, eventfd
//! wakeups, timers through the wait timeout of `io_uring_enter`.
//!
//! Ownership rule: every SQE that points at memory (the send `msghdr` and iovecs, lent to the
//! connection from the loop's pool until the send completes; the queued `Bytes`, the connect
//! address, the eventfd read buffer) points into something owned by the connection or the
//! loop that is not freed or moved before that SQE's last CQE. Per-connection
//! state is freed only after all of its operations completed and its fd was closed.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

use crate::common::{Closing, IOV_MAX, LoopConn, SendQueue, Slab, TimerSlot, Timers, earliest};
use crate::{ConnId, ENV_URING_DENY, Handler, Io, LoopConfig, Waker, WakerInner, env_flag};

const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_CONNECT: u64 = 4;
const KIND_CANCEL: u64 = 5;
const KIND_CLOSE: u64 = 6;
const KIND_WAKE: u64 = 7;
const KIND_LISTENER_CANCEL: u64 = 8;
const KIND_NOP: u64 = 9;

/// The generation bits carried in user_data.
const GEN_MASK: u32 = 0x00FF_FFFF;
/// The provided-buffer group id of the loop's buffer ring.
const BGID: u16 = 0;

/// user_data: op kind (8 bits) | generation (24 bits) | slot index (32 bits).
fn user_data(kind: u64, idx: u32, generation: u32) -> u64 {
    (kind << 56) | (u64::from(generation & GEN_MASK) << 32) | u64::from(idx)
}

fn split_user_data(ud: u64) -> (u64, u32, u32) {
    (ud >> 56, ((ud >> 32) as u32) & GEN_MASK, ud as u32)
}

fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ETIME => "ETIME",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        _ => "errno",
    }
}

fn describe(what: &str, e: &io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    let msg = io::Error::from_raw_os_error(code).to_string();
    let msg = msg.split(" (os error").next().unwrap_or(&msg).to_string();
    let mut s = if code != 0 { format!("{what}: {msg} ({})", errno_name(code)) } else { format!("{what}: {e}") };
    if code == libc::EPERM {
        let v = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|_| "unreadable".to_string());
        s.push_str(&format!(": blocked by seccomp or kernel.io_uring_disabled={v}"));
        if env_flag(ENV_URING_DENY) {
            s.push_str(&format!(" ({ENV_URING_DENY}=1 is set)"));
        }
    }
    s
}

/// Creates a ring with the loop's flags, retrying with plain flags on EINVAL.
fn build_ring(entries: u32) -> io::Result<(IoUring, &'static str)> {
    if env_flag(ENV_URING_DENY) {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    let cq = entries.saturating_mul(2);
    let flagged = IoUring::builder().setup_single_issuer().setup_coop_taskrun().setup_cqsize(cq).build(entries);
    match flagged {
        Ok(r) => Ok((r, "SINGLE_ISSUER|COOP_TASKRUN")),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((
            IoUring::builder().setup_cqsize(cq).build(entries)?,
            "plain flags (SINGLE_ISSUER|COOP_TASKRUN gave EINVAL)",
        )),
        Err(e) => Err(e),
    }
}

/// The opcodes the loop uses.
const NEEDED: &[(u8, &str)] = &[
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Read::CODE, "READ"),
    (opcode::ProvideBuffers::CODE, "PROVIDE_BUFFERS"),
];

/// Checks that io_uring works here the way the loop uses it. `Ok` is a description for the
/// start-up line; `Err` carries the reason io_uring cannot be used.
pub(crate) fn probe() -> io::Result<String> {
    let fail = |what: &str, e: io::Error| io::Error::new(e.kind(), describe(what, &e));
    let (mut ring, flags) = build_ring(8).map_err(|e| fail("io_uring_setup", e))?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11)"));
    }
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p).map_err(|e| fail("IORING_REGISTER_PROBE", e))?;
    let missing: Vec<&str> = NEEDED.iter().filter(|(c, _)| !p.is_supported(*c)).map(|(_, n)| *n).collect();
    if !missing.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring lacks opcodes: {}", missing.join(", ")),
        ));
    }
    {
        let bufs = BufRing::new(8, 512)?;
        bufs.register(&ring).map_err(|e| fail("IORING_REGISTER_PBUF_RING", e))?;
        ring.submitter().unregister_buf_ring(BGID).map_err(|e| fail("IORING_UNREGISTER_PBUF_RING", e))?;
    }
    let nop = opcode::Nop::new().build().user_data(user_data(KIND_NOP, 0, 0));
    // SAFETY: a NOP references no memory.
    unsafe { ring.submission().push(&nop) }.map_err(|_| io::Error::other("NOP: submission queue full"))?;
    let ts = Timespec::from(Duration::from_secs(1));
    match ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts)) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => return Err(fail("io_uring_enter (NOP round trip)", e)),
    }
    let done = ring.completion().any(|c| c.user_data() == user_data(KIND_NOP, 0, 0) && c.result() == 0);
    if !done {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "io_uring NOP round trip did not complete within 1 s"));
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
    Ok(format!("kernel {}; {flags}; multishot accept/recv, pbuf ring, sendmsg", kernel.as_deref().unwrap_or("unknown")))
}

/// The provided-buffer ring: `count` buffers of `size` bytes, registered as group [`BGID`].
struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    size: u32,
    count: u16,
    tail: u16,
}

impl BufRing {
    fn new(count: u16, size: u32) -> io::Result<BufRing> {
        let oom = || io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring allocation failed");
        let entries_layout =
            Layout::from_size_align((usize::from(count) * std::mem::size_of::<BufRingEntry>()).max(4096), 4096)
                .map_err(|_| oom())?;
        let bufs_layout = Layout::from_size_align(usize::from(count) * size as usize, 4096).map_err(|_| oom())?;
        // SAFETY: both layouts have a non-zero size (at least 4096 and count*size >= 512).
        let entries = unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(oom());
        }
        // SAFETY: as above; zeroed memory is lazily mapped, so idle buffers cost no RSS.
        let bufs = unsafe { alloc_zeroed(bufs_layout) };
        if bufs.is_null() {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(entries.cast(), entries_layout) };
            return Err(oom());
        }
        let mut r = BufRing { entries, entries_layout, bufs, bufs_layout, size, count, tail: 0 };
        for bid in 0..count {
            r.push(bid);
        }
        Ok(r)
    }

    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries memory is page aligned, holds `count` entries and lives until
        // this BufRing is dropped, which happens only after the ring is gone (field order and
        // Drop of UringLoop) or after unregistering (probe).
        unsafe { ring.submitter().register_buf_ring_with_flags(self.entries as u64, self.count, BGID, 0) }
    }

    /// Gives buffer `bid` (back) to the kernel.
    fn push(&mut self, bid: u16) {
        let mask = self.count - 1;
        // SAFETY: `tail & mask < count`, so the entry is inside the allocation; the kernel only
        // reads entries between its head and our published tail, and this one is past the tail.
        let e = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        // SAFETY: bid < count, so the buffer lies inside the buffer allocation.
        e.set_addr(unsafe { self.bufs.add(usize::from(bid) * self.size as usize) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays the `resv` field of entry 0, inside the allocation and
        // 2-byte aligned; the kernel reads it concurrently, hence the atomic release store that
        // also publishes the entry written above.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`, which the kernel just handed to us in a CQE.
    fn slice(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.count && len <= self.size as usize, "bad buffer id/len from the kernel");
        // SAFETY: the range lies inside the buffer allocation; the kernel handed this buffer to
        // us (it was selected for a completed recv) and will not touch it until `push(bid)`;
        // `&mut self` guarantees no other slice of it is alive.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.add(usize::from(bid) * self.size as usize), len) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the kernel no longer uses them (the
        // ring was unregistered or destroyed first).
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.bufs, self.bufs_layout);
        }
    }
}

/// The `msghdr` and iovecs of the send in flight; boxed so their address is stable.
struct SendBuf {
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

/// Buffers kept in the loop's pool for the next sends; the rest are freed.
const SEND_POOL_MAX: usize = 256;

/// A connection's [`SendBuf`]: held only while a send is in flight. `advance` lends it one
/// from the loop's pool before a send may start, and the send's completion gives it back, so
/// an idle connection holds none (and no iovec array).
struct SendSlot(Option<Box<SendBuf>>);

impl std::ops::Deref for SendSlot {
    type Target = SendBuf;

    fn deref(&self) -> &SendBuf {
        self.0.as_deref().expect("no send buffer lent")
    }
}

impl std::ops::DerefMut for SendSlot {
    fn deref_mut(&mut self) -> &mut SendBuf {
        // `advance` lends one before every send; allocating here is only a fallback.
        self.0.get_or_insert_with(SendBuf::new)
    }
}

struct UConn {
    fd: RawFd,
    peer: Option<SocketAddr>,
    connecting: bool,
    connect_addr: Option<Box<socket2::SockAddr>>,
    closing: Closing,
    error: Option<io::Error>,
    /// SQEs of this connection whose last CQE has not arrived.
    ops: u32,
    recv_armed: bool,
    recv_cancel: bool,
    paused: bool,
    eof: bool,
    stash: Vec<u8>,
    queue: SendQueue,
    send: SendSlot,
    send_inflight: bool,
    teardown_cancel: bool,
    close_sent: bool,
    dirty: bool,
    timer: TimerSlot,
    linger: TimerSlot,
}

fn user_timer(c: &mut UConn) -> &mut TimerSlot {
    &mut c.timer
}

fn linger_timer(c: &mut UConn) -> &mut TimerSlot {
    &mut c.linger
}

impl UConn {
    fn new(fd: RawFd, peer: Option<SocketAddr>) -> UConn {
        UConn {
            fd,
            peer,
            connecting: false,
            connect_addr: None,
            closing: Closing::Open,
            error: None,
            ops: 0,
            recv_armed: false,
            recv_cancel: false,
            paused: false,
            eof: false,
            stash: Vec::new(),
            queue: SendQueue::default(),
            send: SendSlot(None),
            send_inflight: false,
            teardown_cancel: false,
            close_sent: false,
            dirty: false,
            timer: TimerSlot::default(),
            linger: TimerSlot::default(),
        }
    }

    fn teardown(&mut self, error: Option<io::Error>) {
        if self.error.is_none() {
            self.error = error;
        }
        self.closing = Closing::Teardown;
        if !self.send_inflight {
            self.queue.clear();
        }
    }
}

impl LoopConn for UConn {
    fn closing(&self) -> Closing {
        self.closing
    }

    fn closing_mut(&mut self) -> &mut Closing {
        &mut self.closing
    }

    fn queue(&self) -> &SendQueue {
        &self.queue
    }

    fn queue_mut(&mut self) -> &mut SendQueue {
        &mut self.queue
    }

    fn dirty_mut(&mut self) -> &mut bool {
        &mut self.dirty
    }

    fn teardown(&mut self, error: Option<io::Error>) {
        self.teardown(error)
    }
}

struct Listener {
    sock: Option<TcpListener>,
    armed: bool,
    retry_at: Option<Instant>,
}

/// The loop state handlers act on (the [`Io`] of this backend).
pub(crate) struct Core {
    now: Instant,
    conns: Slab<UConn>,
    timers: Timers,
    linger_timers: Timers,
    sqes: Vec<squeue::Entry>,
    dirty: Vec<ConnId>,
    deliver: Vec<ConnId>,
    listeners: Vec<Listener>,
    accepting: bool,
    stopped: bool,
    nodelay: bool,
    close_linger: Duration,
    /// Send buffers not lent to any connection (see [`SendSlot`]). Boxed: a lent buffer's
    /// address must not change while the kernel reads it.
    #[allow(clippy::vec_box)]
    send_pool: Vec<Box<SendBuf>>,
}

impl Core {
    fn mark_dirty(&mut self, id: ConnId) {
        self.conns.mark_dirty(id, &mut self.dirty);
    }

    /// Moves a connection forward at the end of a turn: arm recv, start a send, shut down,
    /// cancel, close.
    fn advance(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else { return };
        c.dirty = false;
        if c.send.0.is_none() && !c.send_inflight && !c.queue.is_empty() {
            c.send.0 = Some(self.send_pool.pop().unwrap_or_else(SendBuf::new));
        }
        let sqes = &mut self.sqes;
        let want_recv = match c.closing {
            Closing::Open => !c.connecting && !c.paused && c.stash.is_empty(),
            Closing::Lingering => true,
            Closing::Graceful | Closing::Teardown => false,
        };
        if want_recv {
            arm_recv(c, id, sqes);
        }
        if c.closing == Closing::Open && !c.connecting {
            start_send(c, id, sqes);
        }
        if c.closing == Closing::Graceful && !c.connecting {
            if c.queue.is_empty() && !c.send_inflight {
                // SAFETY: the fd is owned by this connection and still open (closed only by
                // the CLOSE op below).
                unsafe { libc::shutdown(c.fd, libc::SHUT_WR) };
                if c.eof {
                    c.closing = Closing::Teardown;
                } else {
                    c.closing = Closing::Lingering;
                    self.linger_timers.set(id, &mut c.linger, Some(self.now + self.close_linger));
                    arm_recv(c, id, sqes);
                }
            } else {
                start_send(c, id, sqes);
            }
        }
        if c.closing == Closing::Teardown {
            if (c.recv_armed || c.send_inflight || c.connecting) && !c.teardown_cancel {
                let e = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(c.fd)).all()).build().user_data(user_data(
                    KIND_CANCEL,
                    id.idx,
                    id.generation,
                ));
                sqes.push(e);
                c.teardown_cancel = true;
                c.ops += 1;
            }
            if c.ops == 0 && !c.close_sent {
                let e = opcode::Close::new(Fd(c.fd)).build().user_data(user_data(KIND_CLOSE, id.idx, id.generation));
                sqes.push(e);
                c.close_sent = true;
                c.ops += 1;
            }
        }
    }
}

/// Arms the multishot recv of `c` unless it is armed or the peer already closed.
fn arm_recv(c: &mut UConn, id: ConnId, sqes: &mut Vec<squeue::Entry>) {
    if c.recv_armed || c.eof {
        return;
    }
    let e = opcode::RecvMulti::new(Fd(c.fd), BGID).build().user_data(user_data(KIND_RECV, id.idx, id.generation));
    sqes.push(e);
    c.recv_armed = true;
    c.ops += 1;
}

fn start_send(c: &mut UConn, id: ConnId, sqes: &mut Vec<squeue::Entry>) {
    if c.send_inflight || c.queue.is_empty() {
        return;
    }
    let sb = &mut *c.send;
    sb.iov.clear();
    sb.iov.extend(
        c.queue.segments(IOV_MAX).map(|s| libc::iovec { iov_base: s.as_ptr().cast_mut().cast(), iov_len: s.len() }),
    );
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    sb.msg = unsafe { std::mem::zeroed() };
    sb.msg.msg_iov = sb.iov.as_mut_ptr();
    sb.msg.msg_iovlen = sb.iov.len() as _;
    let e = opcode::SendMsg::new(Fd(c.fd), &sb.msg).flags(libc::MSG_NOSIGNAL as u32).build().user_data(user_data(
        KIND_SEND,
        id.idx,
        id.generation,
    ));
    sqes.push(e);
    c.send_inflight = true;
    c.ops += 1;
}

impl Io for Core {
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
        if let Some(c) = self.conns.get_mut(conn)
            && !c.paused
        {
            c.paused = true;
            if c.recv_armed && !c.recv_cancel {
                let target = user_data(KIND_RECV, conn.idx, conn.generation);
                let e = opcode::AsyncCancel::new(target).build().user_data(user_data(
                    KIND_CANCEL,
                    conn.idx,
                    conn.generation,
                ));
                self.sqes.push(e);
                c.recv_cancel = true;
                c.ops += 1;
            }
        }
    }

    fn resume_read(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn)
            && c.paused
        {
            c.paused = false;
            if !c.stash.is_empty() || c.eof {
                self.deliver.push(conn);
            }
            self.mark_dirty(conn);
        }
    }

    fn set_timer(&mut self, conn: ConnId, at: Option<Instant>) {
        if let Some(c) = self.conns.get_mut(conn) {
            self.timers.set(conn, &mut c.timer, at);
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
        if self.nodelay {
            s.set_tcp_nodelay(true)?;
        }
        let mut c = UConn::new(s.into_raw_fd(), Some(addr));
        let sa = Box::new(socket2::SockAddr::from(addr));
        let e = opcode::Connect::new(Fd(c.fd), sa.as_ptr().cast(), sa.len());
        c.connect_addr = Some(sa);
        c.connecting = true;
        c.ops = 1;
        let id = self.conns.insert(c);
        self.sqes.push(e.build().user_data(user_data(KIND_CONNECT, id.idx, id.generation)));
        Ok(id)
    }

    fn stop_accepting(&mut self) {
        self.accepting = false;
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.armed {
                let e = opcode::AsyncCancel::new(user_data(KIND_ACCEPT, i as u32, 0)).build().user_data(user_data(
                    KIND_LISTENER_CANCEL,
                    i as u32,
                    0,
                ));
                self.sqes.push(e);
            } else {
                l.sock = None;
            }
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
    }

    fn conn_count(&self) -> usize {
        self.conns.len()
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(conn).and_then(|c| c.peer)
    }
}

/// One io_uring event loop.
pub(crate) struct UringLoop {
    // Field order matters for Drop: the ring goes before the buffers it points at.
    ring: IoUring,
    bufs: BufRing,
    pub(crate) core: Core,
    wake_fd: Arc<File>,
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// SQEs submitted whose last CQE has not arrived (for the bounded drain in Drop).
    inflight: usize,
    cqes: Vec<cqueue::Entry>,
    expired: Vec<ConnId>,
}

impl UringLoop {
    pub(crate) fn new(cfg: &LoopConfig) -> io::Result<(Box<UringLoop>, Waker)> {
        let (ring, _) =
            build_ring(cfg.ring_entries).map_err(|e| io::Error::new(e.kind(), describe("io_uring_setup", &e)))?;
        let bufs = BufRing::new(cfg.buf_count, cfg.buf_size)?;
        bufs.register(&ring).map_err(|e| io::Error::new(e.kind(), describe("IORING_REGISTER_PBUF_RING", &e)))?;
        // SAFETY: eventfd has no memory arguments; the result is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor we own.
        let wake_fd = Arc::new(File::from(unsafe { OwnedFd::from_raw_fd(efd) }));
        let waker = Waker(WakerInner::Eventfd(wake_fd.clone()));
        let l = Box::new(UringLoop {
            ring,
            bufs,
            core: Core {
                now: Instant::now(),
                conns: Slab::new(),
                timers: Timers::default(),
                linger_timers: Timers::default(),
                sqes: Vec::new(),
                dirty: Vec::new(),
                deliver: Vec::new(),
                listeners: Vec::new(),
                accepting: true,
                stopped: false,
                nodelay: cfg.nodelay,
                close_linger: cfg.close_linger,
                send_pool: Vec::new(),
            },
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            inflight: 0,
            cqes: Vec::with_capacity(1024),
            expired: Vec::new(),
        });
        Ok((l, waker))
    }

    pub(crate) fn add_listener(&mut self, l: TcpListener) -> io::Result<()> {
        if !self.core.accepting {
            return Err(io::Error::other("add_listener after stop_accepting"));
        }
        self.core.listeners.push(Listener { sock: Some(l), armed: false, retry_at: None });
        Ok(())
    }

    /// Pushes every pending SQE into the submission queue, submitting when it is full.
    fn push_sqes(&mut self) -> io::Result<()> {
        let now = self.core.now;
        if !self.wake_armed {
            let buf: *mut u64 = &mut *self.wake_buf;
            let e = opcode::Read::new(Fd(self.wake_fd.as_raw_fd()), buf.cast(), 8)
                .build()
                .user_data(user_data(KIND_WAKE, 0, 0));
            self.core.sqes.push(e);
            self.wake_armed = true;
        }
        if self.core.accepting {
            for (i, l) in self.core.listeners.iter_mut().enumerate() {
                if let Some(s) = &l.sock
                    && !l.armed
                    && l.retry_at.is_none_or(|t| t <= now)
                {
                    let e = opcode::AcceptMulti::new(Fd(s.as_raw_fd()))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                        .user_data(user_data(KIND_ACCEPT, i as u32, 0));
                    self.core.sqes.push(e);
                    l.armed = true;
                    l.retry_at = None;
                }
            }
        }
        let mut pushed = 0;
        'push: for e in &self.core.sqes {
            loop {
                // SAFETY: every SQE built by this module points only at memory owned by a
                // connection (send msghdr/iovecs/queued Bytes, connect address) or by the loop
                // (eventfd buffer, listener fds), none of which is freed or moved before the
                // SQE's last CQE (see the module docs).
                match unsafe { self.ring.submission().push(e) } {
                    Ok(()) => break,
                    Err(_) => match self.ring.submit() {
                        Ok(_) => {}
                        // The completion queue is backed up: keep the rest for the next turn,
                        // after this turn's completions were reaped.
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)) => {
                            break 'push;
                        }
                        Err(e) => return Err(e),
                    },
                }
            }
            pushed += 1;
        }
        self.core.sqes.drain(..pushed);
        self.inflight += pushed;
        Ok(())
    }

    pub(crate) fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        self.core.stopped = false;
        self.core.now = Instant::now();
        // Connections added before run (connect) or left dirty by the last run.
        let ids = self.core.conns.ids();
        for id in ids {
            self.core.mark_dirty(id);
        }
        self.flush_dirty();
        loop {
            self.push_sqes()?;
            // Wait for completions, a timer, or nothing if work is pending.
            let mut deadline = earliest(self.core.timers.next(), self.core.linger_timers.next());
            for l in &self.core.listeners {
                if let Some(t) = l.retry_at {
                    deadline = Some(deadline.map_or(t, |d| d.min(t)));
                }
            }
            let want = if self.core.deliver.is_empty() && self.core.sqes.is_empty() { 1 } else { 0 };
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
                Err(e) => return Err(e),
            }
            self.core.now = Instant::now();
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
            // Timers.
            let mut expired = std::mem::take(&mut self.expired);
            self.core.timers.expired(self.core.now, &mut self.core.conns, user_timer, &mut expired);
            for id in expired.drain(..) {
                if self.core.conns.get(id).is_some_and(|c| c.closing != Closing::Teardown || !c.close_sent) {
                    handler.on_timer(&mut self.core, id);
                }
            }
            // Lingering closes whose peer did not close in time.
            self.core.linger_timers.expired(self.core.now, &mut self.core.conns, linger_timer, &mut expired);
            for id in expired.drain(..) {
                if let Some(c) = self.core.conns.get_mut(id)
                    && c.closing == Closing::Lingering
                {
                    c.teardown(None);
                    self.core.mark_dirty(id);
                }
            }
            self.expired = expired;
            self.deliver_stashes(handler);
            handler.on_turn_end(&mut self.core);
            self.flush_dirty();
            if self.core.stopped {
                self.push_sqes()?;
                self.ring.submit()?;
                return Ok(());
            }
        }
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
        let mut list = std::mem::take(&mut self.core.deliver);
        for id in list.drain(..) {
            let Some(c) = self.core.conns.get_mut(id) else { continue };
            if c.paused || c.closing != Closing::Open {
                continue;
            }
            let mut data = std::mem::take(&mut c.stash);
            let eof = c.eof;
            if !data.is_empty() {
                handler.on_data(&mut self.core, id, &mut data);
            }
            if eof
                && let Some(c) = self.core.conns.get_mut(id)
                && c.closing == Closing::Open
                && !c.paused
            {
                c.closing = Closing::Graceful;
            }
            self.core.mark_dirty(id);
        }
        // Anything resumed during delivery stays for the next turn.
        list.append(&mut self.core.deliver);
        self.core.deliver = list;
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
            KIND_ACCEPT => self.on_accept(handler, idx as usize, res, more),
            KIND_LISTENER_CANCEL | KIND_NOP => {}
            _ => {
                let Some(id) = self.core.conns.id_at(idx, generation, GEN_MASK) else {
                    // Cannot happen: a slot is freed only after its last CQE. Return any buffer.
                    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                        self.bufs.push(bid);
                    }
                    return;
                };
                self.on_conn_cqe(handler, id, kind, res, more, cqe.flags());
            }
        }
    }

    fn on_accept<H: Handler>(&mut self, handler: &mut H, i: usize, res: i32, more: bool) {
        let Some(l) = self.core.listeners.get_mut(i) else { return };
        if !more {
            l.armed = false;
            if !self.core.accepting {
                l.sock = None;
            }
        }
        if res < 0 {
            if matches!(-res, libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) {
                // Out of descriptors or memory: back off instead of spinning on the error.
                l.retry_at = Some(self.core.now + Duration::from_millis(100));
            }
            return;
        }
        // SAFETY: a successful accept CQE carries a new descriptor that nobody else owns.
        let sock = socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(res) });
        if !self.core.accepting {
            return; // dropped: closes it
        }
        let Ok(peer) = sock.peer_addr() else { return };
        let Some(peer) = peer.as_socket() else { return };
        if self.core.nodelay {
            let _ = sock.set_tcp_nodelay(true);
        }
        let id = self.core.conns.insert(UConn::new(sock.into_raw_fd(), Some(peer)));
        self.core.mark_dirty(id);
        handler.on_accept(&mut self.core, id, peer);
    }

    fn on_conn_cqe<H: Handler>(&mut self, handler: &mut H, id: ConnId, kind: u64, res: i32, more: bool, flags: u32) {
        let core = &mut self.core;
        let c = core.conns.get_mut(id).expect("live id");
        if !more {
            c.ops -= 1;
        }
        match kind {
            KIND_RECV => {
                if !more {
                    c.recv_armed = false;
                    c.recv_cancel = false;
                }
                if res > 0 {
                    let bid = cqueue::buffer_select(flags).expect("recv CQE without a buffer");
                    let data = self.bufs.slice(bid, res as usize);
                    // While closing, input is no longer wanted; while paused (or while older
                    // kept data waits for delivery) it is kept, in order.
                    let direct = c.closing == Closing::Open && !c.paused && c.stash.is_empty();
                    if !direct && c.closing == Closing::Open {
                        c.stash.extend_from_slice(data);
                    }
                    if direct {
                        handler.on_data(core, id, data);
                    }
                    self.bufs.push(bid);
                } else if res == 0 {
                    c.eof = true;
                    if c.closing == Closing::Open && !c.paused && c.stash.is_empty() {
                        c.closing = Closing::Graceful;
                    } else if c.closing == Closing::Lingering {
                        c.teardown(None);
                    }
                } else if -res != libc::ENOBUFS && -res != libc::ECANCELED {
                    c.teardown(Some(io::Error::from_raw_os_error(-res)));
                }
                // ENOBUFS / ECANCELED / the end of a multishot: advance() re-arms if wanted.
            }
            KIND_SEND => {
                c.send_inflight = false;
                // The kernel is done with the msghdr and iovecs: back to the pool.
                if let Some(mut b) = c.send.0.take()
                    && core.send_pool.len() < SEND_POOL_MAX
                {
                    // A pooled buffer keeps room for a few iovecs, not a burst's worth.
                    b.iov.shrink_to(16);
                    core.send_pool.push(b);
                }
                if res == 0 && c.closing != Closing::Teardown {
                    // A stream socket that takes no bytes of a non-empty send would loop forever.
                    c.teardown(Some(io::Error::new(io::ErrorKind::WriteZero, "sendmsg wrote 0 bytes")));
                } else if res >= 0 {
                    c.queue.advance(res as usize);
                    if c.closing == Closing::Teardown {
                        c.queue.clear();
                    } else if res > 0 {
                        handler.on_sent(core, id, res as usize);
                    }
                } else {
                    c.queue.clear();
                    if -res != libc::ECANCELED {
                        c.teardown(Some(io::Error::from_raw_os_error(-res)));
                    }
                }
            }
            KIND_CONNECT => {
                c.connecting = false;
                c.connect_addr = None;
                if c.closing == Closing::Teardown {
                    // Aborted while connecting: no on_connect, on_closed follows.
                } else if res == 0 {
                    handler.on_connect(core, id, Ok(()));
                } else {
                    let code = -res;
                    c.teardown(Some(io::Error::from_raw_os_error(code)));
                    handler.on_connect(core, id, Err(io::Error::from_raw_os_error(code)));
                }
            }
            KIND_CANCEL => {}
            KIND_CLOSE => {
                let c = core.conns.remove(id).expect("live id");
                handler.on_closed(core, id, c.error);
                return;
            }
            _ => {}
        }
        core.mark_dirty(id);
    }
}

impl Drop for UringLoop {
    fn drop(&mut self) {
        // Cancel everything still in flight and wait (bounded) for the kernel to let go of the
        // memory the SQEs point at, then close the remaining connection fds.
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(user_data(KIND_NOP, 0, 0));
        // SAFETY: a cancel SQE references no memory.
        if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
            self.inflight += 1;
        }
        let end = Instant::now() + Duration::from_secs(2);
        while self.inflight > 0 && Instant::now() < end {
            let ts = Timespec::from(Duration::from_millis(50));
            let _ = self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            for c in self.ring.completion() {
                if !cqueue::more(c.flags()) {
                    self.inflight = self.inflight.saturating_sub(1);
                }
            }
        }
        for id in self.core.conns.ids() {
            if let Some(c) = self.core.conns.remove(id)
                && !c.close_sent
            {
                // SAFETY: the connection owns this fd and its CLOSE op never completed.
                drop(unsafe { OwnedFd::from_raw_fd(c.fd) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_state_is_small() {
        // One per connection, in the loop's slab; see docs/scaling.md before raising it.
        let n = std::mem::size_of::<UConn>();
        assert!(n <= 184, "UConn is {n} bytes");
        assert_eq!(std::mem::size_of::<TimerSlot>(), 16);
        // An idle connection lends no send buffer.
        assert!(UConn::new(-1, None).send.0.is_none());
    }
}
