//! Pieces shared by both backends: the connection slab, the send queue, the timer heap, the
//! close deadlines and the accept-error policy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU64;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};

use crate::{ConnId, LoopConfig};

/// Where a connection is in its shutdown, the same in both backends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Closing {
    Open,
    /// close() or peer EOF: flush the queue, then `shutdown(WR)`.
    Graceful,
    /// Output written and shut down: read and drop input until the peer's EOF or the linger
    /// deadline, then close.
    Lingering,
    /// Stop now: cancel what is in flight, close the fd, report.
    Teardown,
}

/// An IPv4 peer address packed into 8 bytes (a quarter of an `Option<SocketAddr>`): the
/// address in bits 16..48, the port in bits 0..16 and bit 48 set. 0 means no IPv4 address;
/// [`Rare`] keeps any other address (IPv6) in its box.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct PeerV4(u64);

impl PeerV4 {
    const SET: u64 = 1 << 48;

    /// Packs an IPv4 address; returns any other address back to be kept elsewhere.
    pub(crate) fn pack(peer: Option<SocketAddr>) -> (PeerV4, Option<SocketAddr>) {
        match peer {
            Some(SocketAddr::V4(a)) => {
                (PeerV4(Self::SET | u64::from(a.ip().to_bits()) << 16 | u64::from(a.port())), None)
            }
            other => (PeerV4(0), other),
        }
    }

    pub(crate) fn get(self) -> Option<SocketAddr> {
        (self.0 & Self::SET != 0)
            .then(|| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from_bits((self.0 >> 16) as u32), self.0 as u16)))
    }
}

/// A connection's peer address and what it rarely needs, for both backends: an IPv4 peer
/// packed in 8 bytes, and behind one box created on first use any other peer address
/// (IPv6), the error the connection ended with, its close-linger timer slot, and the
/// backend's own rarely used state `X`. An open connection with an IPv4 peer has no box.
pub(crate) struct Rare<X> {
    peer: PeerV4,
    cold: Option<Box<Cold<X>>>,
}

/// The boxed part of [`Rare`].
#[derive(Default)]
pub(crate) struct Cold<X> {
    /// A peer address that is not IPv4.
    peer: Option<SocketAddr>,
    /// The first error the connection ended with.
    error: Option<std::io::Error>,
    /// The deadline of the close in progress (see [`CloseTimers`]).
    pub(crate) close_timer: TimerSlot,
    /// The backend's own rarely used state.
    pub(crate) more: X,
}

impl<X: Default> Rare<X> {
    pub(crate) fn new(peer: Option<SocketAddr>) -> Self {
        let (peer, other) = PeerV4::pack(peer);
        Rare { peer, cold: other.map(|peer| Box::new(Cold { peer: Some(peer), ..Cold::default() })) }
    }

    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer.get().or_else(|| self.cold.as_ref().and_then(|c| c.peer))
    }

    /// The boxed part, if it was ever needed.
    pub(crate) fn cold(&self) -> Option<&Cold<X>> {
        self.cold.as_deref()
    }

    /// The boxed part, if it was ever needed, without creating it.
    pub(crate) fn cold_if_any(&mut self) -> Option<&mut Cold<X>> {
        self.cold.as_deref_mut()
    }

    /// The boxed part, created now if need be.
    pub(crate) fn cold_mut(&mut self) -> &mut Cold<X> {
        self.cold.get_or_insert_with(Box::default)
    }

    /// Keeps `error` unless the connection already ended with one.
    pub(crate) fn keep_first_error(&mut self, error: Option<std::io::Error>) {
        if let Some(error) = error
            && self.cold.as_ref().is_none_or(|c| c.error.is_none())
        {
            self.cold_mut().error = Some(error);
        }
    }

    /// The error the connection ended with, if any.
    pub(crate) fn into_error(self) -> Option<std::io::Error> {
        self.cold.and_then(|c| c.error)
    }
}

/// What both backends keep per connection for the rules of `Io::{send, queued, close,
/// abort}`; [`Slab`]'s methods below apply those rules once for both.
pub(crate) trait LoopConn {
    fn closing(&self) -> Closing;
    fn closing_mut(&mut self) -> &mut Closing;
    fn queue(&self) -> &SendQueue;
    fn queue_mut(&mut self) -> &mut SendQueue;
    /// Whether the connection is already on the turn's dirty list.
    fn dirty_mut(&mut self) -> &mut bool;
    /// The deadline of the close in progress (in the connection's boxed rare state).
    fn close_timer(&mut self) -> &mut TimerSlot;
    /// The socket's descriptor while the connection still owns it open.
    fn fd(&self) -> Option<RawFd>;
    /// Moves to [`Closing::Teardown`]; each backend decides what may stay in flight.
    fn teardown(&mut self, error: Option<std::io::Error>);

    /// Tears down with a reset: `SO_LINGER` {on, 0} first, so closing the descriptor drops
    /// unsent data and sends RST instead of waiting on the peer.
    fn abort(&mut self, error: Option<std::io::Error>) {
        if let Some(fd) = self.fd() {
            reset_on_close(fd);
        }
        self.teardown(error);
    }
}

/// Sets `SO_LINGER` {on, 0} on `fd`: its close then discards unsent data and sends RST (no
/// FIN, no TIME_WAIT, no orphan socket waiting on a peer that does not read). Best effort: a
/// socket the peer already reset refuses nothing that matters here.
pub(crate) fn reset_on_close(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a live local; a bad or closed
    // fd only makes it fail, and the result is deliberately ignored.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl<C: LoopConn> Slab<C> {
    /// Puts `id` on the turn's `dirty` list once, so the backend moves it forward at the end.
    pub(crate) fn mark_dirty(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && !*c.dirty_mut()
        {
            *c.dirty_mut() = true;
            dirty.push(id);
        }
    }

    /// `Io::send`: output is taken only while the connection is open.
    pub(crate) fn queue_send(&mut self, id: ConnId, chunk: Bytes, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() == Closing::Open
        {
            c.queue_mut().push(chunk);
            self.mark_dirty(id, dirty);
        }
    }

    /// `Io::queued`: after an abort the queue no longer counts, even while a send of it is
    /// still in flight (io_uring frees it when that send completes).
    pub(crate) fn queued(&self, id: ConnId) -> usize {
        self.get(id).map_or(0, |c| if c.closing() == Closing::Teardown { 0 } else { c.queue().len() })
    }

    /// `Io::close`: an open connection starts its graceful close (its flush deadline is armed
    /// when the backend moves it forward, see [`CloseTimers::flushing`]).
    pub(crate) fn begin_close(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() == Closing::Open
        {
            *c.closing_mut() = Closing::Graceful;
            self.mark_dirty(id, dirty);
        }
    }

    /// `Io::abort`: tear down now with a reset, whatever the state, once.
    pub(crate) fn abort(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() != Closing::Teardown
        {
            c.abort(None);
            self.mark_dirty(id, dirty);
        }
    }
}

/// The deadlines of closing connections, the same rules on both backends. A connection has
/// one close deadline at a time, in [`Cold::close_timer`]:
///
/// - [`Closing::Graceful`] (after `Io::close` or the peer's EOF): the flush deadline,
///   [`LoopConfig::flush_timeout`] after the close started. If the output is still not
///   written and the write side shut down by then (a peer that does not read), the
///   connection is aborted with a reset and reports `TimedOut`.
/// - [`Closing::Lingering`] (written and shut down): the linger deadline,
///   [`LoopConfig::close_linger`] after the shutdown; the fd is then closed normally.
///
/// So `close()` to `on_closed` takes at most `flush_timeout + close_linger` plus a turn.
pub(crate) struct CloseTimers {
    timers: Timers,
    flush_timeout: Duration,
    linger: Duration,
}

impl CloseTimers {
    pub(crate) fn new(cfg: &LoopConfig) -> Self {
        CloseTimers { timers: Timers::default(), flush_timeout: cfg.flush_timeout, linger: cfg.close_linger }
    }

    /// `c` is in its graceful close: arms its flush deadline, once, counted from `now` (the
    /// turn in which the close started).
    pub(crate) fn flushing<C: LoopConn>(&mut self, id: ConnId, c: &mut C, now: Instant) {
        let slot = c.close_timer();
        if !slot.is_set() {
            // A timeout too large to add is no deadline at all.
            self.timers.set(id, slot, now.checked_add(self.flush_timeout));
        }
    }

    /// `c` wrote everything and shut down its write side: the linger deadline replaces the
    /// flush deadline.
    pub(crate) fn lingering<C: LoopConn>(&mut self, id: ConnId, c: &mut C, now: Instant) {
        self.timers.set(id, c.close_timer(), now.checked_add(self.linger));
    }

    /// The earliest deadline (maybe stale: waking early for it is harmless).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Acts on the deadlines that passed at `now` and puts the connections it tore down on
    /// `dirty`; `scratch` is an empty list to reuse.
    pub(crate) fn expired<C: LoopConn>(
        &mut self,
        now: Instant,
        conns: &mut Slab<C>,
        dirty: &mut Vec<ConnId>,
        scratch: &mut Vec<ConnId>,
    ) {
        self.timers.expired(now, conns, C::close_timer, scratch);
        for id in scratch.drain(..) {
            let Some(c) = conns.get_mut(id) else { continue };
            match c.closing() {
                Closing::Graceful => c.abort(Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the graceful close did not write its output within flush_timeout ({:?}): reset",
                        self.flush_timeout
                    ),
                ))),
                Closing::Lingering => c.teardown(None),
                Closing::Open | Closing::Teardown => continue,
            }
            conns.mark_dirty(id, dirty);
        }
    }
}

/// How long a loop stops accepting on a listener after an accept failed for lack of
/// descriptors or memory, or with an error it does not know.
///
/// 100 ms, not nginx's 500 ms (its `accept_mutex_delay`, reused): while accepting pauses,
/// new connections wait in the listen backlog, so the pause is added to their connect time
/// once descriptors are free again; a retry that fails costs one `accept4` (or one io_uring
/// ACCEPT) of a few microseconds, so ten a second per listener cost nothing measurable, while
/// a loop that retried every turn would spin at 100% CPU on an error that persists.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one accept-error line per loop per this long; the next line says how many were
/// left out.
pub(crate) const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What an accept error means for the listener.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AcceptFailure {
    /// A connection that died in the backlog (or a firewall refusing it), or an interrupted
    /// call: accept the next one at once, log nothing.
    Transient,
    /// Out of descriptors, out of memory, or unknown: logged (rate-limited), and accepting
    /// on that listener pauses for [`ACCEPT_BACKOFF`].
    BackOff,
}

/// Sorts an accept errno. The transient ones are those accept(2) documents for a connection
/// that failed while queued (Linux passes its pending network error to `accept`), plus EPERM
/// (a firewall rule), EINTR and EAGAIN.
pub(crate) fn accept_failure(errno: i32) -> AcceptFailure {
    match errno {
        libc::ECONNABORTED
        | libc::EPROTO
        | libc::EPERM
        | libc::EINTR
        | libc::EAGAIN
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH => AcceptFailure::Transient,
        _ => AcceptFailure::BackOff,
    }
}

/// A log line at most once per [`ACCEPT_LOG_EVERY`]: the events in between are counted, and
/// the next line says how many were left out.
#[derive(Default)]
pub(crate) struct RateLimited {
    last_log: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// Whether to log the event at `now`; `Some(n)`: yes, and `n` were left out since the
    /// last line.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last_log.is_some_and(|t| now.saturating_duration_since(t) < ACCEPT_LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The accept-error policy of one loop (both backends): what to do after a failed accept,
/// and its log lines, at most one per [`ACCEPT_LOG_EVERY`].
#[derive(Default)]
pub(crate) struct AcceptErrors {
    log: RateLimited,
}

impl AcceptErrors {
    /// An accept on `listener` failed with `errno` at `now`: logs it if it is worth a line
    /// and none was logged lately, and returns when to accept on that listener again (`None`:
    /// at once).
    pub(crate) fn failed(&mut self, now: Instant, errno: i32, listener: Option<SocketAddr>) -> Option<Instant> {
        if accept_failure(errno) == AcceptFailure::Transient {
            return None;
        }
        if let Some(line) = self.line(now, errno, listener) {
            tracing::warn!("{line}");
        }
        Some(now + ACCEPT_BACKOFF)
    }

    /// The line to log for a failure that backs off, or `None` when one was logged less than
    /// [`ACCEPT_LOG_EVERY`] ago (it is counted, and the next line says how many).
    fn line(&mut self, now: Instant, errno: i32, listener: Option<SocketAddr>) -> Option<String> {
        let suppressed = self.log.admit(now)?;
        let listener = listener.map_or_else(|| "a listener".to_string(), |a| a.to_string());
        let e = io::Error::from_raw_os_error(errno).to_string();
        let e = e.split(" (os error").next().unwrap_or(&e);
        let advice = match errno {
            libc::EMFILE | libc::ENFILE => {
                "out of file descriptors: raise the open-file limit: ulimit -n / LimitNOFILE="
            }
            libc::ENOBUFS | libc::ENOMEM => "out of memory for new sockets",
            _ => "unexpected error",
        };
        let suppressed = match suppressed {
            0 => String::new(),
            n => format!("; {n} more accept errors since the last line were not logged"),
        };
        Some(format!(
            "accept on {listener} failed: {e} ({}, errno {errno}): {advice}; accepting again in {} ms{suppressed}",
            errno_name(errno),
            ACCEPT_BACKOFF.as_millis()
        ))
    }
}

/// The symbolic name of the errnos the loop reports.
pub(crate) fn errno_name(code: i32) -> &'static str {
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
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIME => "ETIME",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EBADR => "EBADR",
        _ => "errno",
    }
}

/// At most this many iovecs go into one vectored send (Linux `IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// Slots per chunk of a [`Slab`].
const SLAB_CHUNK: usize = 256;

/// A slab of connection slots; an id is (index, generation), and a slot's generation moves on
/// when it is freed, so a stale id never reaches the next connection in that slot.
///
/// The slots live in fixed chunks rather than one doubling `Vec`: growing never copies the
/// connections nor leaves the old copy behind in the allocator, and the unused tail is at
/// most one chunk.
pub(crate) struct Slab<T> {
    chunks: Vec<Box<[Slot<T>]>>,
    /// Slots handed out so far (the next fresh index).
    used: usize,
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { chunks: Vec::new(), used: 0, free: Vec::new(), len: 0 }
    }

    fn slot(&self, idx: u32) -> Option<&Slot<T>> {
        let i = idx as usize;
        if i >= self.used {
            return None;
        }
        Some(&self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK])
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot<T>> {
        let i = idx as usize;
        if i >= self.used {
            return None;
        }
        Some(&mut self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK])
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            let slot = self.slot_mut(idx).expect("freed slots exist");
            slot.value = Some(value);
            ConnId { idx, generation: slot.generation }
        } else {
            let idx = u32::try_from(self.used).expect("more than 2^32 connections");
            if self.used == self.chunks.len() * SLAB_CHUNK {
                self.chunks.push((0..SLAB_CHUNK).map(|_| Slot { generation: 0, value: None }).collect());
            }
            self.used += 1;
            self.slot_mut(idx).expect("just made").value = Some(value);
            ConnId { idx, generation: 0 }
        }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        match self.slot(id.idx) {
            Some(s) if s.generation == id.generation => s.value.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slot_mut(id.idx) {
            Some(s) if s.generation == id.generation => s.value.as_mut(),
            _ => None,
        }
    }

    /// The live id of slot `idx`, if it holds a connection whose generation matches the low
    /// `bits` bits of `generation` (the io_uring user_data only carries 24 bits of it).
    pub(crate) fn id_at(&self, idx: u32, generation: u32, mask: u32) -> Option<ConnId> {
        let s = self.slot(idx)?;
        (s.value.is_some() && (s.generation & mask) == (generation & mask))
            .then_some(ConnId { idx, generation: s.generation })
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let s = self.slot_mut(id.idx)?;
        if s.generation != id.generation {
            return None;
        }
        let v = s.value.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.free.push(id.idx);
        self.len -= 1;
        Some(v)
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .take(self.used)
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| ConnId { idx: i as u32, generation: s.generation })
            .collect()
    }
}

/// Output queued for one connection: shared `Bytes` chunks written in order. The front
/// chunk, once partly written, is narrowed to what is left (`Bytes::advance`: its storage
/// does not move, so a send in flight still points at valid bytes).
#[derive(Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes queued and not yet written (including any in flight).
    len: usize,
}

impl SendQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The unwritten bytes, as up to `max` slices in order.
    pub(crate) fn segments(&self, max: usize) -> impl Iterator<Item = &[u8]> {
        self.chunks.iter().take(max).map(|c| &c[..])
    }

    /// `n` bytes were written: drop the chunks that are done.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("advance past the queue");
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            // All written: an idle connection keeps no queue storage.
            self.chunks = VecDeque::new();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.len = 0;
    }
}

/// A deadline as nanoseconds after its [`Timers`]' epoch, plus one (so `Option<Tick>` is
/// 8 bytes, half an `Option<Instant>`). Deadlines before the epoch are the epoch: both are
/// in the past for every `now` the loop sees.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Tick(NonZeroU64);

/// Per-connection timer state, kept in the connection.
#[derive(Default)]
pub(crate) struct TimerSlot {
    /// The deadline the handler asked for.
    deadline: Option<Tick>,
    /// The earliest entry for this connection that is live in the heap.
    in_heap: Option<Tick>,
}

impl TimerSlot {
    /// Whether a deadline is set.
    pub(crate) fn is_set(&self) -> bool {
        self.deadline.is_some()
    }
}

/// One heap of deadlines per loop, with lazy deletion: clearing or moving a deadline later
/// leaves the old entry in the heap, and it is checked against the connection when it pops.
/// A connection adds an entry only when its deadline moves earlier, so a timer reset on every
/// message does not grow the heap.
pub(crate) struct Timers {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Tick, u32, u32)>>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { epoch: Instant::now(), heap: BinaryHeap::new() }
    }
}

impl Timers {
    fn tick(&self, at: Instant) -> Tick {
        let nanos = u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1);
        Tick(NonZeroU64::MIN.saturating_add(nanos))
    }

    fn instant(&self, t: Tick) -> Instant {
        self.epoch + Duration::from_nanos(t.0.get() - 1)
    }

    pub(crate) fn set(&mut self, id: ConnId, slot: &mut TimerSlot, at: Option<Instant>) {
        let at = at.map(|at| self.tick(at));
        slot.deadline = at;
        if let Some(at) = at
            && slot.in_heap.is_none_or(|h| at < h)
        {
            slot.in_heap = Some(at);
            self.heap.push(Reverse((at, id.idx, id.generation)));
        }
    }

    /// The earliest entry (maybe stale: waking early for it is harmless).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| self.instant(*t))
    }

    /// Pops entries due at `now` and pushes the connections whose deadline passed to `out`
    /// (their deadline is cleared).
    pub(crate) fn expired<T>(
        &mut self,
        now: Instant,
        conns: &mut Slab<T>,
        slot: fn(&mut T) -> &mut TimerSlot,
        out: &mut Vec<ConnId>,
    ) {
        let now = self.tick(now);
        while let Some(&Reverse((t, idx, generation))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let id = ConnId { idx, generation };
            let Some(conn) = conns.get_mut(id) else { continue };
            let ts = slot(conn);
            if ts.in_heap != Some(t) {
                continue;
            }
            ts.in_heap = None;
            match ts.deadline {
                Some(d) if d <= now => {
                    ts.deadline = None;
                    out.push(id);
                }
                Some(d) => {
                    ts.in_heap = Some(d);
                    self.heap.push(Reverse((d, idx, generation)));
                }
                None => {}
            }
        }
        // Stale entries (deadlines cleared or moved later) left the heap: give back the
        // room a burst of them (a handshake timer per new connection) took.
        if self.heap.capacity() > 64 && self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_v4_round_trips_and_leaves_other_addresses() {
        for a in ["1.2.3.4:80", "0.0.0.0:0", "255.255.255.255:65535", "127.0.0.1:24111"] {
            let a: SocketAddr = a.parse().unwrap();
            let (p, rest) = PeerV4::pack(Some(a));
            assert_eq!((p.get(), rest), (Some(a), None));
        }
        let v6: SocketAddr = "[::ffff:1.2.3.4]:443".parse().unwrap();
        assert_eq!(PeerV4::pack(Some(v6)), (PeerV4(0), Some(v6)));
        assert_eq!(PeerV4::pack(None), (PeerV4(0), None));
        assert_eq!(PeerV4::default().get(), None);
    }

    #[test]
    fn rare_state_is_boxed_only_when_needed_and_keeps_the_first_error() {
        let v4: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let mut r: Rare<Vec<u8>> = Rare::new(Some(v4));
        assert!(r.cold().is_none(), "an IPv4 peer needs no box");
        assert_eq!(r.peer(), Some(v4));
        r.keep_first_error(None);
        assert!(r.cold().is_none());
        r.keep_first_error(Some(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        r.keep_first_error(Some(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert_eq!(r.into_error().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset));
        let v6: SocketAddr = "[2001:db8::1]:8080".parse().unwrap();
        let r: Rare<()> = Rare::new(Some(v6));
        assert_eq!(r.peer(), Some(v6));
        assert!(r.into_error().is_none());
        assert_eq!(Rare::<()>::new(None).peer(), None);
    }

    #[test]
    fn slab_spans_chunks_and_reuses_slots() {
        let mut s: Slab<usize> = Slab::new();
        let ids: Vec<ConnId> = (0..SLAB_CHUNK * 2 + 3).map(|i| s.insert(i)).collect();
        assert_eq!(s.len(), ids.len());
        assert_eq!(s.chunks.len(), 3, "grows a chunk at a time");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(s.get(*id), Some(&i));
        }
        let last = *ids.last().unwrap();
        assert_eq!(s.remove(last), Some(ids.len() - 1));
        assert_eq!(s.get(last), None);
        assert_eq!(s.id_at(last.idx, last.generation, u32::MAX), None);
        let again = s.insert(7);
        assert_eq!(again.idx, last.idx);
        assert_ne!(again.generation, last.generation);
        assert_eq!(s.get(last), None, "a stale id does not reach the new connection");
        assert_eq!(s.ids().len(), ids.len());
        assert_eq!(s.get(ConnId { idx: (SLAB_CHUNK * 3) as u32, generation: 0 }), None);
    }

    #[test]
    fn accept_errors_back_off_and_log_at_most_once_per_period() {
        let mut a = AcceptErrors::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for e in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM, libc::EINTR, libc::EAGAIN, libc::ENETUNREACH] {
            assert_eq!(a.failed(t0, e, None), None, "errno {e} is transient");
        }
        assert_eq!(a.log.last_log, None, "transient errors are not logged");
        let listener: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let first = a.line(t0, libc::EMFILE, Some(listener)).expect("the first error is logged");
        assert!(
            first.starts_with("accept on 127.0.0.1:8080 failed: Too many open files (EMFILE, errno 24)"),
            "{first}"
        );
        assert!(first.contains("ulimit -n / LimitNOFILE="), "{first}");
        assert!(!first.contains("not logged"), "{first}");
        assert_eq!(a.line(at(1), libc::ENFILE, None), None);
        assert_eq!(a.failed(at(2), libc::EINVAL, None), Some(at(2) + ACCEPT_BACKOFF), "unknown errors back off");
        assert_eq!(a.failed(at(3), libc::ENOMEM, None), Some(at(3) + ACCEPT_BACKOFF));
        assert_eq!(a.log.suppressed, 3);
        let next = a.line(t0 + ACCEPT_LOG_EVERY, libc::EBADF, None).expect("a line per period");
        assert!(next.contains("EBADF") && next.contains("unexpected error"), "{next}");
        assert!(next.ends_with("; 3 more accept errors since the last line were not logged"), "{next}");
        assert_eq!(a.log.suppressed, 0);
    }

    #[test]
    fn send_queue_lets_go_of_its_storage_when_written() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        q.advance(4);
        assert_eq!(q.segments(8).collect::<Vec<_>>(), [&b"e"[..]]);
        assert!(q.chunks.capacity() > 0);
        q.advance(1);
        assert!(q.is_empty());
        assert_eq!(q.chunks.capacity(), 0);
    }

    #[test]
    fn timer_ticks_round_trip_and_pop_in_order() {
        let mut t = Timers::default();
        let mut s: Slab<TimerSlot> = Slab::new();
        let a = s.insert(TimerSlot::default());
        let b = s.insert(TimerSlot::default());
        let at = t.epoch + Duration::from_millis(5);
        t.set(a, s.get_mut(a).unwrap(), Some(at + Duration::from_nanos(1)));
        t.set(b, s.get_mut(b).unwrap(), Some(at));
        assert_eq!(t.next(), Some(at), "nanosecond exact");
        let mut out = Vec::new();
        t.expired(at, &mut s, |c| c, &mut out);
        assert_eq!(out, [b]);
        t.expired(at + Duration::from_nanos(1), &mut s, |c| c, &mut out);
        assert_eq!(out, [b, a]);
        // A deadline before the epoch is simply due.
        let early = t.epoch.checked_sub(Duration::from_secs(1)).unwrap_or(t.epoch);
        t.set(a, s.get_mut(a).unwrap(), Some(early));
        out.clear();
        t.expired(t.epoch, &mut s, |c| c, &mut out);
        assert_eq!(out, [a]);
    }
}
