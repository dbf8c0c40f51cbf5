//! The io_uring backend: multishot accept per listener, multishot recv per connection into one
//! provided-buffer ring per loop (lent through an adaptive window, see [`BufRing`]), one send
//! (`send`, or a vectored `sendmsg`) in flight per connection, accepted sockets in a
//! registered file table, eventfd wakeups, timers through the wait timeout of
//! `io_uring_enter`.
//!
//! Ownership rule: every SQE that points at memory (the send `msghdr` and iovecs, lent to the
//! connection from the loop's pool until the send completes; the queued `Bytes`, the connect
//! address, the eventfd read buffer; the provided receive buffers) points into something owned
//! by the connection or the loop that is not freed or moved before that SQE's last CQE.
//! Per-connection state is freed only after all of its operations completed and its fd was
//! closed. When that cannot be known (the drop of the loop timed out waiting for the kernel),
//! the memory is leaked, never freed.
//!
//! Completion queue overflow: completions that do not fit in the CQ wait in the kernel's
//! overflow list (IORING_FEAT_NODROP). Each turn reads the CQ, and while the SQ ring's
//! IORING_SQ_CQ_OVERFLOW flag is set, asks the kernel to move the overflow list into the CQ
//! (io_uring_enter with GETEVENTS) and reads again, in the same turn. The buffer ring is only
//! ever reset when no completion can be pending anywhere (see [`UringLoop::bufs_settled`]). A
//! completion the kernel had to drop (no memory for the overflow list) is fatal: `run` fails
//! and the loop's memory is leaked on drop.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{BufRingEntry, CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

use crate::common::{
    AcceptErrors, CloseTimers, Closing, IOV_MAX, LoopConn, Rare, RateLimited, SendQueue, Slab, TimerSlot, Timers,
    earliest, errno_name,
};
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

/// How a ring was set up.
#[derive(Clone, Copy)]
struct Setup {
    /// The flags, for the start-up line.
    label: &'static str,
    /// DEFER_TASKRUN: no recv runs while the loop is in user space (see [`BufRing::reclaim`]).
    deferred: bool,
}

/// Creates a ring of `entries` SQEs and `cq` CQEs with the loop's flags, retrying with fewer
/// flags on EINVAL.
fn build_ring(entries: u32, cq: u32) -> io::Result<(IoUring, Setup)> {
    if env_flag(ENV_URING_DENY) {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    // DEFER_TASKRUN (6.1+): completions are produced only while this thread waits in
    // io_uring_enter, in one batch, instead of interrupting it; it needs SINGLE_ISSUER, which
    // holds because a loop is created and run on one thread.
    let deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(cq)
        .build(entries);
    match deferred {
        Ok(r) => return Ok((r, Setup { label: "SINGLE_ISSUER|DEFER_TASKRUN", deferred: true })),
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        Err(_) => {}
    }
    let flagged = IoUring::builder().setup_single_issuer().setup_coop_taskrun().setup_cqsize(cq).build(entries);
    match flagged {
        Ok(r) => Ok((r, Setup { label: "SINGLE_ISSUER|COOP_TASKRUN", deferred: false })),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((
            IoUring::builder().setup_cqsize(cq).build(entries)?,
            Setup { label: "plain flags (SINGLE_ISSUER|COOP_TASKRUN gave EINVAL)", deferred: false },
        )),
        Err(e) => Err(e),
    }
}

/// The opcodes the loop uses.
const NEEDED: &[(u8, &str)] = &[
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Send::CODE, "SEND"),
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
    let (mut ring, setup) = build_ring(8, 16).map_err(|e| fail("io_uring_setup", e))?;
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
    Ok(format!(
        "kernel {}; {}; multishot accept/recv, pbuf ring (adaptive window), send/sendmsg, registered files",
        kernel.as_deref().unwrap_or("unknown"),
        setup.label
    ))
}

/// Buffers the kernel may hold at start; [`BufRing::exhausted`] doubles it up to the count.
const INITIAL_WINDOW: u16 = 32;
/// How often the window is checked against the traffic it served (see [`BufRing::end_turn`]).
const WINDOW_PERIOD: Duration = Duration::from_millis(500);

/// Registers a sparse file table as large as RLIMIT_NOFILE allows (at most [`MAX_SLOTS`]);
/// returns its size, 0 when the kernel refuses (before 5.19), and connections then use
/// their plain descriptors.
fn register_file_table(ring: &IoUring) -> u32 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let n = lim.rlim_cur.min(MAX_SLOTS) as u32;
    match ring.submitter().register_files_sparse(n) {
        Ok(()) => n,
        Err(_) => 0,
    }
}

/// The provided-buffer ring: `count` buffers of `size` bytes, registered as group [`BGID`].
///
/// Only a window of the buffers is in the kernel's hands at any time; the rest wait on a
/// LIFO free list, and each turn [`BufRing::top_up`] hands the most recently returned
/// (cache-hot) ones back. The window starts small and doubles whenever a multishot recv ends
/// with ENOBUFS, so it settles at what the traffic needs: a few connections keep reusing a
/// few buffers that stay in cache, and a worker with few receivers never touches (never makes
/// resident) most of the buffer memory. Without the window the kernel would walk through all
/// `count` buffers in turn (a ring is FIFO), touching every page of them.
///
/// After a burst (say 10,000 handshakes at once) the window would stay large and every
/// buffer in it resident, so each [`WINDOW_PERIOD`] the loop compares the window with the
/// most buffers one turn took; when that peak is under a quarter of the window the ring is
/// re-registered with a smaller window and the buffer pages go back to the kernel
/// ([`BufRing::reclaim`]).
struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// `count * size` bytes, an anonymous private mapping of our own (see `reclaim`).
    bufs: *mut u8,
    bufs_len: usize,
    size: u32,
    count: u16,
    tail: u16,
    /// Buffers published to the kernel and not handed back in a CQE yet.
    lent: u16,
    /// How many buffers the kernel should have available after a top-up.
    window: u16,
    /// Buffers neither lent nor in use, most recently returned last.
    free: Vec<u16>,
    /// Buffers taken in the current turn, and the most taken in one turn this period.
    taken_turn: u16,
    peak: u16,
    /// A recv found no buffer this period.
    starved: bool,
    period_end: Instant,
}

impl BufRing {
    fn new(count: u16, size: u32) -> io::Result<BufRing> {
        let oom = || io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring allocation failed");
        let entries_layout =
            Layout::from_size_align((usize::from(count) * std::mem::size_of::<BufRingEntry>()).max(4096), 4096)
                .map_err(|_| oom())?;
        let bufs_len = usize::from(count) * size as usize;
        // SAFETY: the layout has a non-zero size (at least 4096).
        let entries = unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(oom());
        }
        // SAFETY: a fresh anonymous private mapping (bufs_len >= 512); the result is checked.
        // Its pages are mapped lazily, so buffers never used cost no RSS.
        let bufs = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bufs_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if bufs == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(entries.cast(), entries_layout) };
            return Err(e);
        }
        let mut r = BufRing {
            entries,
            entries_layout,
            bufs: bufs.cast(),
            bufs_len,
            size,
            count,
            tail: 0,
            lent: 0,
            window: 0,
            free: Vec::new(),
            taken_turn: 0,
            peak: 0,
            starved: false,
            period_end: Instant::now() + WINDOW_PERIOD,
        };
        r.reset(INITIAL_WINDOW);
        Ok(r)
    }

    /// Every buffer free, none lent, and the free ones lent up to `window`.
    fn reset(&mut self, window: u16) {
        self.tail = 0;
        self.lent = 0;
        // Highest id at the stack's bottom, so buffer 0 is lent first.
        self.free.clear();
        self.free.extend((0..self.count).rev());
        self.window = window.min(self.count);
        self.top_up();
    }

    /// Ends a turn (every buffer taken in it has been released). Returns the smaller window
    /// to [`reclaim`](Self::reclaim) down to when this period's peak used under a quarter of
    /// the window and nothing starved.
    fn end_turn(&mut self, now: Instant) -> Option<u16> {
        self.peak = self.peak.max(self.taken_turn);
        self.taken_turn = 0;
        if now < self.period_end {
            return None;
        }
        let (peak, starved) = (self.peak, self.starved);
        self.peak = 0;
        self.starved = false;
        self.period_end = now + WINDOW_PERIOD;
        let want = (u32::from(peak) * 2).next_power_of_two().max(u32::from(INITIAL_WINDOW));
        (!starved && want * 2 <= u32::from(self.window)).then(|| want.min(u32::from(self.count)) as u16)
    }

    /// When the loop must wake to check the window even if nothing happens.
    fn check_at(&self) -> Option<Instant> {
        (self.window > INITIAL_WINDOW).then_some(self.period_end)
    }

    /// Takes every buffer back from the kernel, returns their pages to it, and lends again
    /// with a window of `window`. Call only between turns, with every taken buffer released,
    /// no completion pending anywhere that could name a buffer ([`UringLoop::bufs_settled`]:
    /// a recv CQE still in the kernel's overflow list would otherwise name a buffer that was
    /// zeroed and lent out again), and only on a DEFER_TASKRUN ring: then no recv runs (so
    /// none can fill a buffer) until this thread next enters io_uring_enter, and a multishot
    /// recv that would run between the unregister and the register just ends with ENOBUFS and
    /// is re-armed.
    fn reclaim(&mut self, ring: &IoUring, window: u16) -> io::Result<()> {
        debug_assert_eq!(usize::from(self.lent) + self.free.len(), usize::from(self.count));
        ring.submitter().unregister_buf_ring(BGID)?;
        // SAFETY: the range is our own anonymous mapping and the kernel no longer holds any
        // buffer of it (unregistered above); its contents are not needed (no buffer is in use).
        unsafe { libc::madvise(self.bufs.cast(), self.bufs_len, libc::MADV_DONTNEED) };
        self.reset(window);
        self.register(ring)
    }

    /// Publishes free buffers until the kernel holds `window` of them (or none are free).
    fn top_up(&mut self) {
        while self.lent < self.window {
            let Some(bid) = self.free.pop() else { break };
            self.push(bid);
            self.lent += 1;
        }
    }

    /// The kernel handed buffer `bid` back in a CQE.
    fn taken(&mut self) {
        self.lent = self.lent.saturating_sub(1);
        self.taken_turn = self.taken_turn.saturating_add(1);
    }

    /// We are done with buffer `bid`: it goes on the free list for the next top-up.
    fn release(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        self.free.push(bid);
    }

    /// A recv found no buffer: lend more from now on (and at once).
    fn exhausted(&mut self) {
        self.starved = true;
        self.window = self.window.saturating_mul(2).min(self.count);
        self.top_up();
    }

    /// Whether the kernel's head of the ring (where the kernel reports it) shows that every
    /// buffer it took was handed back to us in a CQE we read: its head is our tail minus the
    /// buffers still lent.
    fn kernel_caught_up(&self, ring: &IoUring) -> bool {
        pbuf_head(ring).is_none_or(|head| head == self.tail.wrapping_sub(self.lent))
    }

    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries memory is page aligned, holds `count` entries and lives until
        // this BufRing is dropped, which happens only after unregistering with no operation in
        // flight (probe, Drop of UringLoop), or never (Drop of UringLoop leaks it otherwise).
        unsafe { ring.submitter().register_buf_ring_with_flags(self.entries as u64, self.count, BGID, 0) }
    }

    /// Publishes buffer `bid` to the kernel at the ring's tail.
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

/// `IORING_REGISTER_PBUF_STATUS` (Linux 6.8+): reads the kernel's head of a buffer ring.
const IORING_REGISTER_PBUF_STATUS: libc::c_long = 26;

/// `struct io_uring_buf_status`.
#[repr(C)]
struct BufStatus {
    buf_group: u32,
    head: u32,
    resv: [u32; 8],
}

/// The kernel's head of the loop's buffer ring: how many buffers (mod 2^16) it has taken
/// since the ring was registered. `None` where the kernel cannot tell (before 6.8).
fn pbuf_head(ring: &IoUring) -> Option<u16> {
    let mut st = BufStatus { buf_group: u32::from(BGID), head: 0, resv: [0; 8] };
    // SAFETY: PBUF_STATUS reads and writes one `io_uring_buf_status`, which `st` is (repr(C),
    // the kernel's layout), alive for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_io_uring_register, ring.as_raw_fd(), IORING_REGISTER_PBUF_STATUS, &raw mut st, 1)
    };
    (r == 0).then_some(st.head as u16)
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the kernel no longer uses them (the
        // ring was unregistered or destroyed first).
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            libc::munmap(self.bufs.cast(), self.bufs_len);
        }
    }
}

/// [`UConn::slot`] of a connection without a registered file.
const NO_SLOT: u32 = u32::MAX;
/// Registered file table size at most (also capped by RLIMIT_NOFILE, as the kernel requires).
const MAX_SLOTS: u64 = 1 << 16;

/// Evaluates `$e` with `$t` naming the connection's socket: its registered file when it has
/// one, its descriptor otherwise (the opcodes take either, as different types).
macro_rules! on_socket {
    ($c:expr, $t:ident => $e:expr) => {
        if $c.slot != NO_SLOT {
            let $t = Fixed($c.slot);
            $e
        } else {
            let $t = Fd($c.fd);
            $e
        }
    };
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
    /// The connection's slot in the ring's registered file table ([`NO_SLOT`]: none); ops
    /// name it instead of `fd`, which spares the kernel an fget/fput per op.
    slot: u32,
    connecting: bool,
    closing: Closing,
    /// SQEs of this connection whose last CQE has not arrived.
    ops: u32,
    recv_armed: bool,
    recv_cancel: bool,
    paused: bool,
    eof: bool,
    queue: SendQueue,
    send: SendSlot,
    send_inflight: bool,
    teardown_cancel: bool,
    close_sent: bool,
    dirty: bool,
    timer: TimerSlot,
    /// The peer, and what an open, unpaused connection never needs (see [`Rare`]).
    rare: Rare<UringCold>,
}

/// This backend's part of a connection's rarely used state.
#[derive(Default)]
struct UringCold {
    /// The address a CONNECT op in flight points to (so it must not move until it completes).
    connect_addr: Option<Box<socket2::SockAddr>>,
    /// Input received while paused (or while older kept input waits), delivered on resume.
    stash: Vec<u8>,
}

fn user_timer(c: &mut UConn) -> &mut TimerSlot {
    &mut c.timer
}

impl UConn {
    fn new(fd: RawFd, peer: Option<SocketAddr>) -> UConn {
        UConn {
            fd,
            slot: NO_SLOT,
            connecting: false,
            closing: Closing::Open,
            ops: 0,
            recv_armed: false,
            recv_cancel: false,
            paused: false,
            eof: false,
            queue: SendQueue::default(),
            send: SendSlot(None),
            send_inflight: false,
            teardown_cancel: false,
            close_sent: false,
            dirty: false,
            timer: TimerSlot::default(),
            rare: Rare::new(peer),
        }
    }

    fn stash_is_empty(&self) -> bool {
        self.rare.cold().is_none_or(|c| c.more.stash.is_empty())
    }

    fn teardown(&mut self, error: Option<io::Error>) {
        self.rare.keep_first_error(error);
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

    fn close_timer(&mut self) -> &mut TimerSlot {
        &mut self.rare.cold_mut().close_timer
    }

    fn fd(&self) -> Option<RawFd> {
        (!self.close_sent).then_some(self.fd)
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
    close_timers: CloseTimers,
    sqes: Vec<squeue::Entry>,
    dirty: Vec<ConnId>,
    deliver: Vec<ConnId>,
    listeners: Vec<Listener>,
    accept_errors: AcceptErrors,
    accepting: bool,
    stopped: bool,
    nodelay: bool,
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
            Closing::Open => !c.connecting && !c.paused && c.stash_is_empty(),
            Closing::Lingering => true,
            Closing::Graceful | Closing::Teardown => false,
        };
        if want_recv {
            arm_recv(c, id, sqes);
        }
        if c.closing == Closing::Open && !c.connecting {
            start_send(c, id, sqes);
        }
        if c.closing == Closing::Graceful {
            self.close_timers.flushing(id, c, self.now);
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
                    self.close_timers.lingering(id, c, self.now);
                    arm_recv(c, id, sqes);
                }
            } else {
                start_send(c, id, sqes);
            }
        }
        if c.closing == Closing::Teardown {
            if (c.recv_armed || c.send_inflight || c.connecting) && !c.teardown_cancel {
                let e = on_socket!(c, t => opcode::AsyncCancel2::new(CancelBuilder::fd(t).all()))
                    .build()
                    .user_data(user_data(KIND_CANCEL, id.idx, id.generation));
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
    let e = on_socket!(c, t => opcode::RecvMulti::new(t, BGID).build()).user_data(user_data(
        KIND_RECV,
        id.idx,
        id.generation,
    ));
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
    let ud = user_data(KIND_SEND, id.idx, id.generation);
    let e = if let [one] = sb.iov[..] {
        // One segment (the common case: a reply encoded in one piece): a plain send, which
        // spares the kernel copying in and walking a msghdr and an iovec array. A partial
        // send (also of a segment over 4 GiB, capped here) continues from the queue.
        let len = one.iov_len.min(u32::MAX as usize) as u32;
        on_socket!(c, t => opcode::Send::new(t, one.iov_base.cast_const().cast(), len).flags(libc::MSG_NOSIGNAL).build())
    } else {
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        sb.msg = unsafe { std::mem::zeroed() };
        sb.msg.msg_iov = sb.iov.as_mut_ptr();
        sb.msg.msg_iovlen = sb.iov.len() as _;
        on_socket!(c, t => opcode::SendMsg::new(t, &sb.msg).flags(libc::MSG_NOSIGNAL as u32).build())
    };
    sqes.push(e.user_data(ud));
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
            if !c.stash_is_empty() || c.eof {
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
        c.rare.cold_mut().more.connect_addr = Some(sa);
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
        self.conns.get(conn).and_then(|c| c.rare.peer())
    }
}

/// How long dropping a loop waits for the kernel to finish its cancelled operations.
const DRAIN_BOUND: Duration = Duration::from_secs(2);
/// Rounds of moving the kernel's CQ overflow list into the CQ per turn (each moves up to a
/// CQ's worth); what is left is read in the next turn. Nothing that needs every completion
/// read (resetting the buffer ring) runs while any is left.
const MAX_OVERFLOW_FLUSHES: usize = 64;
/// Loops whose drop leaked memory the kernel might still use (see [`UringLoop::drop`]).
static LEAKED_LOOPS: AtomicUsize = AtomicUsize::new(0);

/// One io_uring event loop.
pub(crate) struct UringLoop {
    ring: IoUring,
    /// Freed by Drop only once the kernel is known to be done with it (after the ring's
    /// operations all completed and the ring was unregistered); leaked otherwise.
    bufs: ManuallyDrop<BufRing>,
    pub(crate) core: Core,
    wake_fd: Arc<File>,
    wake_buf: Box<u64>,
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
    /// Turns that had to move completions out of the kernel's overflow list, and times the
    /// buffer window shrank (for tests and diagnostics).
    overflow_flushes: u64,
    /// The overflow's warning, at most one line per 10 s.
    overflow_log: RateLimited,
    reclaims: u64,
}

impl UringLoop {
    pub(crate) fn new(cfg: &LoopConfig) -> io::Result<(Box<UringLoop>, Waker)> {
        let (ring, setup) = build_ring(cfg.ring_entries, cfg.cq_size())
            .map_err(|e| io::Error::new(e.kind(), describe("io_uring_setup", &e)))?;
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
        let mut l = Box::new(UringLoop {
            ring,
            bufs: ManuallyDrop::new(bufs),
            core: Core {
                now: Instant::now(),
                conns: Slab::new(),
                timers: Timers::default(),
                close_timers: CloseTimers::new(cfg),
                sqes: Vec::new(),
                dirty: Vec::new(),
                deliver: Vec::new(),
                listeners: Vec::new(),
                accept_errors: AcceptErrors::default(),
                accepting: true,
                stopped: false,
                nodelay: cfg.nodelay,
                send_pool: Vec::new(),
            },
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            inflight: 0,
            cqes: Vec::with_capacity(1024),
            expired: Vec::new(),
            deferred: setup.deferred,
            slots: 0,
            broken: false,
            drain_bound: DRAIN_BOUND,
            overflow_flushes: 0,
            overflow_log: RateLimited::default(),
            reclaims: 0,
        });
        l.slots = register_file_table(&l.ring);
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
        self.bufs.top_up();
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
                        Err(e) => return Err(self.enter_failed(e)),
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
        if self.broken {
            return Err(io::Error::other("this io_uring loop lost completions earlier and cannot run again"));
        }
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
            let mut deadline = earliest(self.core.timers.next(), self.core.close_timers.next());
            if self.deferred {
                deadline = earliest(deadline, self.bufs.check_at());
            }
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
                Err(e) => return Err(self.enter_failed(e)),
            }
            self.core.now = Instant::now();
            self.reap(handler)?;
            // Timers.
            let mut expired = std::mem::take(&mut self.expired);
            self.core.timers.expired(self.core.now, &mut self.core.conns, user_timer, &mut expired);
            for id in expired.drain(..) {
                if self.core.conns.get(id).is_some_and(|c| c.closing != Closing::Teardown || !c.close_sent) {
                    handler.on_timer(&mut self.core, id);
                }
            }
            // Closes past their flush or linger deadline.
            let core = &mut self.core;
            core.close_timers.expired(core.now, &mut core.conns, &mut core.dirty, &mut expired);
            self.expired = expired;
            self.deliver_stashes(handler);
            handler.on_turn_end(&mut self.core);
            self.flush_dirty();
            if let Some(window) = self.bufs.end_turn(self.core.now)
                && self.deferred
                && self.bufs_settled()
            {
                self.bufs.reclaim(&self.ring, window).map_err(|e| {
                    io::Error::new(e.kind(), describe("re-registering the buffer ring (IORING_REGISTER_PBUF_RING)", &e))
                })?;
                self.reclaims += 1;
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
                self.overflow_flushes += 1;
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
        let mut list = std::mem::take(&mut self.core.deliver);
        for id in list.drain(..) {
            let Some(c) = self.core.conns.get_mut(id) else { continue };
            if c.paused || c.closing != Closing::Open {
                continue;
            }
            let mut data = c.rare.cold_if_any().map(|c| std::mem::take(&mut c.more.stash)).unwrap_or_default();
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
                        self.bufs.taken();
                        self.bufs.release(bid);
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
            // ECANCELED: stop_accepting cancelled it. Otherwise the shared policy: transient
            // errors re-arm at the end of this turn, the others are logged and back off.
            if -res != libc::ECANCELED {
                let local = l.sock.as_ref().and_then(|s| s.local_addr().ok());
                l.retry_at = self.core.accept_errors.failed(self.core.now, -res, local);
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
                // A CQE that carries a buffer hands it back whatever its result (an EOF or an
                // error can carry one too): the buffer returns to the ring below.
                let bid = cqueue::buffer_select(flags);
                if bid.is_some() {
                    self.bufs.taken();
                }
                if res > 0 {
                    let bid = bid.expect("recv CQE with data but without a buffer");
                    let data = self.bufs.slice(bid, res as usize);
                    // While closing, input is no longer wanted; while paused (or while older
                    // kept data waits for delivery) it is kept, in order.
                    let direct = c.closing == Closing::Open && !c.paused && c.stash_is_empty();
                    if !direct && c.closing == Closing::Open {
                        c.rare.cold_mut().more.stash.extend_from_slice(data);
                    }
                    if direct {
                        handler.on_data(core, id, data);
                    }
                } else if res == 0 {
                    c.eof = true;
                    if c.closing == Closing::Open && !c.paused && c.stash_is_empty() {
                        c.closing = Closing::Graceful;
                    } else if c.closing == Closing::Lingering {
                        c.teardown(None);
                    }
                } else if -res == libc::ENOBUFS {
                    self.bufs.exhausted();
                } else if -res != libc::ECANCELED {
                    c.teardown(Some(io::Error::from_raw_os_error(-res)));
                }
                if let Some(bid) = bid {
                    self.bufs.release(bid);
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
                    c.teardown(Some(io::Error::new(io::ErrorKind::WriteZero, "send wrote 0 bytes")));
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
                if let Some(cold) = c.rare.cold_if_any() {
                    cold.more.connect_addr = None;
                }
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
                if c.slot != NO_SLOT {
                    // The descriptor is closed; drop the table's reference too, which is what
                    // releases the socket. The slot is reused with the slab index.
                    let _ = self.ring.submitter().register_files_update(c.slot, &[-1]);
                }
                handler.on_closed(core, id, c.rare.into_error());
                return;
            }
            _ => {}
        }
        core.mark_dirty(id);
    }
}

impl UringLoop {
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
        // into, the eventfd read buffer, connect addresses. Freeing any of it could hand the
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
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffer ids published to the kernel, oldest first (what its head would take next).
    fn published(r: &BufRing, from: u16) -> Vec<u16> {
        let mask = r.count - 1;
        (from..r.tail)
            .map(|i| {
                // SAFETY: i & mask < count, inside the entries allocation.
                unsafe { (*r.entries.add(usize::from(i & mask))).bid() }
            })
            .collect()
    }

    #[test]
    fn buffer_window_starts_small_and_reuses_the_hottest_buffer() {
        let mut r = BufRing::new(256, 512).unwrap();
        assert_eq!((r.lent, r.window, r.tail), (INITIAL_WINDOW, INITIAL_WINDOW, INITIAL_WINDOW));
        assert_eq!(published(&r, 0), (0..INITIAL_WINDOW).collect::<Vec<_>>());
        // The kernel fills buffer 0, we consume and release it: it is the next one lent.
        r.taken();
        r.release(0);
        r.top_up();
        assert_eq!(published(&r, INITIAL_WINDOW), vec![0]);
        assert_eq!(r.lent, INITIAL_WINDOW);
        // Two taken and released: the last released goes out first after a top-up.
        r.taken();
        r.taken();
        r.release(1);
        r.release(2);
        r.top_up();
        assert_eq!(published(&r, INITIAL_WINDOW + 1), vec![2, 1]);
    }

    #[test]
    fn buffer_window_shrinks_after_a_quiet_period_but_not_after_starving() {
        let mut r = BufRing::new(1024, 512).unwrap();
        for _ in 0..5 {
            r.exhausted();
        }
        assert_eq!(r.window, 1024);
        let t0 = r.period_end;
        // A period that starved keeps the window.
        assert_eq!(r.end_turn(t0), None);
        // A busy turn: 300 buffers taken and released.
        for bid in 0..300 {
            r.taken();
            r.release(bid);
        }
        assert_eq!(r.end_turn(t0), None, "not a period yet");
        assert_eq!(r.end_turn(t0 + WINDOW_PERIOD), None, "peak 300 needs 1024");
        // A quiet period: shrink to twice the peak, at least the initial window.
        r.taken();
        r.release(7);
        assert_eq!(r.end_turn(t0 + 2 * WINDOW_PERIOD), Some(INITIAL_WINDOW));
        assert_eq!(r.check_at(), Some(t0 + 3 * WINDOW_PERIOD));
        r.reset(INITIAL_WINDOW);
        assert_eq!((r.lent, r.tail, r.free.len()), (INITIAL_WINDOW, INITIAL_WINDOW, 1024 - 32));
        assert_eq!(r.check_at(), None, "no need to wake at the initial window");
    }

    #[test]
    fn buffer_window_doubles_on_enobufs_up_to_the_count() {
        let mut r = BufRing::new(128, 512).unwrap();
        r.exhausted();
        assert_eq!((r.window, r.lent), (2 * INITIAL_WINDOW, 2 * INITIAL_WINDOW));
        r.exhausted();
        r.exhausted();
        assert_eq!((r.window, r.lent, r.tail), (128, 128, 128));
        assert!(r.free.is_empty());
        // Fewer buffers than the initial window: all of them are lent.
        let small = BufRing::new(8, 512).unwrap();
        assert_eq!((small.lent, small.window), (8, 8));
    }

    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

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
        fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: &mut [u8]) {
            io.send(conn, Bytes::copy_from_slice(data));
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
            h.closed, h.errors, l.overflow_flushes, l.reclaims
        );
        assert!(l.overflow_flushes > 0, "the CQ never overflowed: the test does not test it");
        assert_eq!(usize::from(l.bufs.lent) + l.bufs.free.len(), usize::from(l.bufs.count));
        match pbuf_head(&l.ring) {
            Some(head) => {
                assert_eq!(head, l.bufs.tail.wrapping_sub(l.bufs.lent), "a buffer the kernel took never came back")
            }
            None => println!("kernel head not checked: IORING_REGISTER_PBUF_STATUS needs Linux 6.8"),
        }
        if l.deferred {
            assert!(l.reclaims > 0, "the window never shrank after the burst");
        }
    }

    /// A recv completion that carries a buffer gives it back whatever its result: an EOF or
    /// an error with a buffer (which the kernel may attach) must not lose it for good.
    #[test]
    fn a_recv_completion_without_data_still_returns_its_buffer() {
        let (mut l, _waker) = UringLoop::new(&LoopConfig::default()).unwrap();
        for (bid, res) in [(0u16, 0), (1, -libc::ECONNRESET)] {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let id = l.core.conns.insert(UConn::new(sock.into_raw_fd(), None));
            let (lent, free) = (l.bufs.lent, l.bufs.free.len());
            let flags = IORING_CQE_F_BUFFER | u32::from(bid) << 16;
            let mut h = StopOnAccept;
            l.on_conn_cqe(&mut h, id, KIND_RECV, res, true, flags);
            assert_eq!((l.bufs.lent, l.bufs.free.len()), (lent - 1, free + 1), "result {res}");
            assert_eq!(l.bufs.free.last(), Some(&bid));
            let c = l.core.conns.get(id).unwrap();
            assert_ne!(c.closing, Closing::Open, "result {res} ends the connection");
        }
    }

    /// Leaves a multishot recv and the eventfd read in flight.
    struct StopOnAccept;

    impl Handler for StopOnAccept {
        fn on_accept(&mut self, io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {
            io.stop();
        }
        fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: &mut [u8]) {}
        fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<io::Error>) {}
    }

    /// A loop dropped while the kernel still has its operations leaks their memory instead of
    /// freeing it; a loop whose drain completes frees it.
    #[test]
    fn drop_leaks_only_when_the_kernel_may_still_use_the_memory() {
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

    #[test]
    fn per_connection_state_is_small() {
        // One per connection, in the loop's slab; see docs/scaling.md before raising it.
        let n = std::mem::size_of::<UConn>();
        assert!(n <= 104, "UConn is {n} bytes");
        assert_eq!(std::mem::size_of::<TimerSlot>(), 16);
        // An idle connection lends no send buffer.
        assert!(UConn::new(-1, None).send.0.is_none());
    }
}
