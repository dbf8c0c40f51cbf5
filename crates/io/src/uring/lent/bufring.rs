//! The provided-buffer ring: the receive buffers the kernel writes into, and the ring of
//! entries through which they are lent to it.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The provided-buffer group id of the loop's buffer ring.
pub(in crate::uring) const BGID: u16 = 0;
/// Buffers the kernel may hold at start; [`BufRing::exhausted`] doubles it up to the count.
/// With incrementally consumed buffers ([`BufRing::incremental`]) it is what holds this
/// many bytes' worth of 32 KiB buffers, at least 2.
const INITIAL_WINDOW: u16 = 32;
/// `IOU_PBUF_RING_INC` (Linux 6.12): the kernel consumes a buffer a receive at a time.
const IOU_PBUF_RING_INC: u16 = 2;
/// How often the window is checked against the traffic it served (see [`BufRing::end_turn`]).
pub(in crate::uring) const WINDOW_PERIOD: Duration = Duration::from_millis(500);

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
///
/// A received buffer can also be lent to the application as [`Bytes`] ([`BufRing::lend`]):
/// a large message that arrived in one buffer then reaches the handler without a copy. The
/// buffer stays out of the ring until the last `Bytes` of it is dropped, on any thread
/// ([`LentBuf`]); the loop takes it back at its next turn. At most a quarter of the buffers
/// are out at once (then input is copied, as before), so a handler that keeps messages
/// cannot starve the ring.
///
/// Where the kernel can (6.12+, `IOU_PBUF_RING_INC`) the buffers are consumed incrementally:
/// a receive takes only the bytes it fills, and the next one continues in the same buffer,
/// so a small receive costs a large buffer nothing and large buffers can be the default
/// (a 64 KiB message then usually arrives whole in one buffer). The kernel hands a buffer
/// back (a completion without `IORING_CQE_F_BUF_MORE`) once its receives filled it; each
/// completion is a [`Piece`] of it, at the offset where the previous one ended. A buffer
/// returns to the free list when the kernel has handed it back and no piece of it is lent.
pub(in crate::uring) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// The buffers (`count * size` bytes, an anonymous private mapping of our own, see
    /// `reclaim`), shared with the ones lent out: unmapped when the last of them is gone.
    mem: Arc<RingMem>,
    pub(super) bufs_len: usize,
    size: u32,
    count: u16,
    /// Registered with `IOU_PBUF_RING_INC` (see the type's docs).
    inc: bool,
    /// Per buffer: where the next receive into it starts (0 but in an incremental buffer).
    next: Box<[u32]>,
    /// Per buffer: pieces of it lent to the application as `Bytes` and not taken back yet.
    lends: Box<[u32]>,
    /// Which buffers the kernel holds (published and not handed back in a CQE), a bit each.
    in_kernel: Box<[u64]>,
    tail: u16,
    /// Buffers published to the kernel and not handed back in a CQE yet.
    lent: u16,
    /// Buffers with pieces lent to the application as `Bytes`, and which (a bit per buffer).
    lent_out: u16,
    out: Box<[u64]>,
    /// The most that may be lent out at once.
    max_lent_out: u16,
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
    /// `count` buffers of `size` bytes; `incremental` asks for `IOU_PBUF_RING_INC`, which
    /// [`register`](Self::register) drops where the kernel lacks it.
    pub(in crate::uring) fn new(count: u16, size: u32, incremental: bool) -> io::Result<BufRing> {
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
        let words = usize::from(count).div_ceil(64);
        let returned = (0..words).map(|_| AtomicU64::new(0)).collect();
        let dropped = (0..count).map(|_| AtomicU32::new(0)).collect();
        let mut r = BufRing {
            entries,
            entries_layout,
            mem: Arc::new(RingMem { ptr: bufs.cast(), len: bufs_len, returned, dropped }),
            bufs_len,
            size,
            count,
            inc: incremental,
            next: vec![0; usize::from(count)].into_boxed_slice(),
            lends: vec![0; usize::from(count)].into_boxed_slice(),
            in_kernel: vec![0; words].into_boxed_slice(),
            tail: 0,
            lent: 0,
            lent_out: 0,
            out: vec![0; words].into_boxed_slice(),
            max_lent_out: count / 4,
            window: 0,
            free: Vec::new(),
            taken_turn: 0,
            peak: 0,
            starved: false,
            period_end: Instant::now() + WINDOW_PERIOD,
        };
        r.reset(r.initial_window());
        Ok(r)
    }

    /// The window at start, and the least it shrinks to: [`INITIAL_WINDOW`] buffers, or with
    /// incremental buffers as many as hold that many 32 KiB (at least 2). Receives then cycle
    /// through about 1 MiB of buffer memory, which stays in cache.
    fn initial_window(&self) -> u16 {
        if self.inc {
            ((u32::from(INITIAL_WINDOW) << 15) / self.size).clamp(2, u32::from(INITIAL_WINDOW)) as u16
        } else {
            INITIAL_WINDOW
        }
    }

    /// The number of buffers.
    pub(in crate::uring) fn count(&self) -> u16 {
        self.count
    }

    /// Every buffer free but those lent out, none published, and the free ones published up
    /// to `window`.
    fn reset(&mut self, window: u16) {
        self.tail = 0;
        self.lent = 0;
        self.in_kernel.fill(0);
        // Highest id at the stack's bottom, so buffer 0 is lent first.
        self.free.clear();
        let free: Vec<u16> = (0..self.count).rev().filter(|&b| !self.is_out(b)).collect();
        self.free.extend(free);
        self.window = window.min(self.count);
        self.top_up();
    }

    /// Ends a turn (every buffer taken in it has been released). Returns the smaller window
    /// to [`reclaim`](Self::reclaim) down to when this period's peak used under a quarter of
    /// the window and nothing starved.
    pub(in crate::uring) fn end_turn(&mut self, now: Instant) -> Option<u16> {
        self.peak = self.peak.max(self.taken_turn);
        self.taken_turn = 0;
        if now < self.period_end {
            return None;
        }
        let (peak, starved) = (self.peak, self.starved);
        self.peak = 0;
        self.starved = false;
        self.period_end = now + WINDOW_PERIOD;
        let want = (u32::from(peak) * 2).next_power_of_two().max(u32::from(self.initial_window()));
        (!starved && want * 2 <= u32::from(self.window)).then(|| want.min(u32::from(self.count)) as u16)
    }

    /// When the loop must wake to check the window even if nothing happens.
    pub(in crate::uring) fn check_at(&self) -> Option<Instant> {
        (self.window > self.initial_window()).then_some(self.period_end)
    }

    /// Takes every buffer back from the kernel, returns their pages to it, and lends again
    /// with a window of `window`. Call only between turns, with every taken buffer released,
    /// no completion pending anywhere that could name a buffer ([`UringLoop::bufs_settled`](crate::uring::UringLoop::bufs_settled):
    /// a recv CQE still in the kernel's overflow list would otherwise name a buffer that was
    /// zeroed and lent out again), and only on a DEFER_TASKRUN ring: then no recv runs (so
    /// none can fill a buffer) until this thread next enters io_uring_enter, and a multishot
    /// recv that would run between the unregister and the register just ends with ENOBUFS and
    /// is re-armed.
    pub(in crate::uring) fn reclaim(&mut self, ring: &IoUring, window: u16) -> io::Result<()> {
        debug_assert_eq!(
            usize::from(self.lent)
                + self.free.len()
                + (0..self.count).filter(|&b| self.is_out(b) && !self.kernel_holds(b)).count(),
            usize::from(self.count)
        );
        ring.submitter().unregister_buf_ring(BGID)?;
        // The pages of every buffer but the lent-out ones (messages the application still
        // reads), in runs of neighbouring buffers.
        let size = self.size as usize;
        let mut bid = 0;
        while bid < self.count {
            if self.is_out(bid) {
                bid += 1;
                continue;
            }
            let start = bid;
            while bid < self.count && !self.is_out(bid) {
                bid += 1;
            }
            // Whole pages only (madvise rounds the length up, which could reach into a lent
            // buffer that shares a page with this run when buffers are smaller than a page).
            let page = 4096;
            let from = (usize::from(start) * size).next_multiple_of(page);
            let to = usize::from(bid) * size / page * page;
            if from < to {
                // SAFETY: the range lies inside our own anonymous mapping (the mapping starts on
                // a page); the kernel no longer holds any buffer of it (unregistered above), and
                // none of these buffers is in use or lent out, so their contents are not needed.
                unsafe { libc::madvise(self.mem.ptr.add(from).cast(), to - from, libc::MADV_DONTNEED) };
            }
        }
        self.reset(window);
        self.register(ring)
    }

    /// Publishes free buffers until the kernel holds `window` of them (or none are free),
    /// after taking back the lent-out buffers whose last `Bytes` was dropped.
    pub(in crate::uring) fn top_up(&mut self) {
        if self.lent_out > 0 {
            self.take_back();
        }
        while self.lent < self.window {
            let Some(bid) = self.free.pop() else { break };
            self.push(bid);
            self.lent += 1;
        }
    }

    /// A CQE named buffer `bid` with result `res` and flags `flags`: the piece of it that
    /// holds the received bytes (none for `res <= 0`). Hand it to [`done`](Self::done) once
    /// the bytes were used.
    pub(in crate::uring) fn received(&mut self, bid: u16, res: i32, flags: u32) -> Piece {
        assert!(bid < self.count && self.kernel_holds(bid), "bad buffer id from the kernel");
        let len = res.max(0) as u32;
        let start = self.next[usize::from(bid)];
        assert!(len <= self.size - start, "bad receive length from the kernel");
        // An incremental buffer stays with the kernel while it says so, and after a receive
        // that took nothing: the kernel only moves past a buffer its receives filled.
        let last = !self.inc || (res > 0 && !io_uring::cqueue::buffer_more(flags));
        self.next[usize::from(bid)] = start + len;
        if last {
            set_bit(&mut self.in_kernel, bid, false);
            self.lent = self.lent.saturating_sub(1);
            self.taken_turn = self.taken_turn.saturating_add(1);
        }
        Piece { bid, start, len, last }
    }

    /// We are done with `piece`: its buffer goes on the free list for the next top-up when
    /// the kernel is done with it and no piece of it is lent.
    pub(in crate::uring) fn done(&mut self, piece: Piece) {
        if piece.last && self.lends[usize::from(piece.bid)] == 0 {
            self.free.push(piece.bid);
        }
    }

    /// Lends the first `len` bytes of `piece` to the application as `Bytes`: its buffer stays
    /// out of the ring until the last of them is dropped. `None` (keep the buffer; copy what
    /// is wanted) when a quarter of the buffers are out already and this piece's is not one of
    /// them, or for under an eighth of a buffer or 4 KiB (whichever is less), where a copy is
    /// cheap. A piece pins its whole buffer, which the cap on buffers out bounds.
    pub(in crate::uring) fn lend(&mut self, piece: &Piece, len: usize) -> Option<Bytes> {
        assert!(len <= piece.len as usize);
        let bid = piece.bid;
        if !self.would_lend(bid, len) {
            return None;
        }
        if self.lends[usize::from(bid)] == 0 {
            self.lent_out += 1;
            set_bit(&mut self.out, bid, true);
        }
        self.lends[usize::from(bid)] += 1;
        // See `LentBuf` for why reading the piece through `ptr` is sound.
        let ptr = self.piece_ptr(piece);
        Some(Bytes::from_owner(LentBuf { mem: Arc::clone(&self.mem), bid, ptr, len }))
    }

    /// Whether [`lend`](Self::lend) of `len` bytes of buffer `bid` would lend: a buffer
    /// already out lends further pieces past the cap on buffers out (they pin nothing more).
    fn would_lend(&self, bid: u16, len: usize) -> bool {
        len >= self.lend_min() && (self.lends[usize::from(bid)] > 0 || self.lent_out < self.max_lent_out)
    }

    /// The fewest bytes [`lend`](Self::lend) lends.
    fn lend_min(&self) -> usize {
        (self.size as usize / 8).min(4096)
    }

    /// Whether a piece of buffer `bid` is lent out.
    fn is_out(&self, bid: u16) -> bool {
        bit(&self.out, bid)
    }

    /// Whether the kernel holds buffer `bid` (published, not handed back in a CQE yet).
    fn kernel_holds(&self, bid: u16) -> bool {
        bit(&self.in_kernel, bid)
    }

    /// Takes back the lent pieces whose `Bytes` were dropped; a buffer with none left out
    /// goes back on the free list unless the kernel still fills it.
    fn take_back(&mut self) {
        for (w, word) in self.mem.returned.iter().enumerate() {
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Acquire: pairs with the release in `LentBuf::drop`, so whatever the last owner
            // did with the buffer happened before the kernel writes into it again.
            let mut bits = word.swap(0, Ordering::Acquire);
            while bits != 0 {
                let bid = (w * 64) as u16 + bits.trailing_zeros() as u16;
                bits &= bits - 1;
                // A drop after the swap above counts here already and sets the bit again;
                // the next pass then finds nothing to count.
                let n = self.mem.dropped[usize::from(bid)].swap(0, Ordering::Acquire);
                let lends = &mut self.lends[usize::from(bid)];
                *lends -= n;
                if *lends == 0 && n > 0 {
                    set_bit(&mut self.out, bid, false);
                    self.lent_out -= 1;
                    if !self.kernel_holds(bid) {
                        self.free.push(bid);
                    }
                }
            }
        }
    }

    /// Buffers lent to the application and not back yet.
    pub(in crate::uring) fn lent_out(&self) -> u16 {
        self.lent_out
    }

    /// How many buffers the kernel may hold at once now.
    pub(in crate::uring) fn window(&self) -> u16 {
        self.window
    }

    /// A recv found no buffer: lend more from now on (and at once).
    pub(in crate::uring) fn exhausted(&mut self) {
        self.starved = true;
        self.window = self.window.saturating_mul(2).min(self.count);
        self.top_up();
    }

    /// Whether the kernel's head of the ring (where the kernel reports it) shows that every
    /// buffer it took was handed back to us in a CQE we read: its head is our tail minus the
    /// buffers still lent.
    pub(in crate::uring) fn kernel_caught_up(&self, ring: &IoUring) -> bool {
        pbuf_head(ring).is_none_or(|head| head == self.tail.wrapping_sub(self.lent))
    }

    /// A ring of `count` buffers of `size` bytes registered as group [`BGID`], incremental if
    /// asked for and the kernel can. Where it refuses `IOU_PBUF_RING_INC` (before 6.12) the
    /// ring is plain and buffers of more than [`WHOLE_SIZE`] are split into buffers of that
    /// size, the same memory in all ([`whole_geometry`]): a receive then takes a whole buffer,
    /// and a large one per small receive would drain the ring.
    pub(in crate::uring) fn registered(
        ring: &IoUring,
        count: u16,
        size: u32,
        incremental: bool,
    ) -> io::Result<BufRing> {
        let mut r = BufRing::new(count, size, incremental)?;
        match r.register(ring) {
            Err(e) if incremental && e.raw_os_error() == Some(libc::EINVAL) => {
                // Never registered, so nothing of it is in the kernel: dropping it is safe.
                drop(r);
                let (count, size) = whole_geometry(count, size);
                let mut r = BufRing::new(count, size, false)?;
                r.register(ring)?;
                Ok(r)
            }
            res => res.map(|()| r),
        }
    }

    /// Registers the ring as group [`BGID`].
    pub(in crate::uring) fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        let flags = if self.inc { IOU_PBUF_RING_INC } else { 0 };
        // SAFETY: the entries memory is page aligned, holds `count` entries and lives until
        // this BufRing is dropped, which happens only after unregistering with no operation in
        // flight (probe, Drop of UringLoop), or never (Drop of UringLoop leaks it otherwise).
        unsafe { ring.submitter().register_buf_ring_with_flags(self.entries as u64, self.count, BGID, flags) }
    }

    /// Publishes buffer `bid` to the kernel at the ring's tail.
    fn push(&mut self, bid: u16) {
        let mask = self.count - 1;
        // SAFETY: `tail & mask < count`, so the entry is inside the allocation; the kernel only
        // reads entries between its head and our published tail, and this one is past the tail.
        let e = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        // SAFETY: bid < count, so the buffer lies inside the buffer allocation.
        e.set_addr(unsafe { self.mem.ptr.add(usize::from(bid) * self.size as usize) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        set_bit(&mut self.in_kernel, bid, true);
        self.next[usize::from(bid)] = 0;
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays the `resv` field of entry 0, inside the allocation and
        // 2-byte aligned; the kernel reads it concurrently, hence the atomic release store that
        // also publishes the entry written above.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// The received bytes of `piece`.
    pub(in crate::uring) fn slice(&mut self, piece: &Piece) -> &mut [u8] {
        // SAFETY: the range lies inside the buffer allocation (checked in `received`); the
        // kernel handed these bytes to us in a CQE and does not write them again until the
        // buffer is published anew (it moves on past them in an incremental buffer), which
        // happens only after `done`; `&mut self` guarantees no other slice of them is alive.
        unsafe { std::slice::from_raw_parts_mut(self.piece_ptr(piece), piece.len as usize) }
    }

    /// Where the bytes of `piece` start in the mapping.
    fn piece_ptr(&self, piece: &Piece) -> *mut u8 {
        // SAFETY: inside the mapping (checked in `received`).
        unsafe { self.mem.ptr.add(usize::from(piece.bid) * self.size as usize + piece.start as usize) }
    }
}

/// The bytes one receive CQE put in a buffer ([`BufRing::received`]): all of it from the
/// start, or with incremental buffers the part after the previous receive into it.
pub(in crate::uring) struct Piece {
    bid: u16,
    start: u32,
    len: u32,
    /// The kernel is done with the buffer.
    last: bool,
}

/// What a [`RecvBuf`](crate::RecvBuf) of a ring buffer needs to lend it: the ring and the
/// piece of a buffer it holds.
pub(crate) struct Lend<'a> {
    ring: &'a mut BufRing,
    piece: &'a Piece,
}

impl<'a> Lend<'a> {
    /// The bytes of `piece`, which the kernel just handed over in a CQE, as a
    /// [`RecvBuf`](crate::RecvBuf) that can lend them.
    pub(in crate::uring) fn recv_buf(ring: &'a mut BufRing, piece: &'a Piece) -> crate::RecvBuf<'a> {
        let ptr = ring.piece_ptr(piece);
        // SAFETY: the kernel handed these bytes to us in a CQE and will not touch them until
        // the buffer is published again, which happens only after `done(piece)` (once the
        // `RecvBuf` is gone) and after every `Bytes` lent of it is gone; the ring's `&mut` in
        // `Lend` covers none of the buffer's bytes (they live behind `mem`'s raw pointer), and
        // nothing else reads or writes them meanwhile.
        unsafe { crate::RecvBuf::lendable(ptr, piece.len as usize, Lend { ring, piece }) }
    }

    /// Whether [`lend`](Self::lend) of `len` bytes would lend (see [`BufRing::lend`]).
    pub(crate) fn would_lend(&self, len: usize) -> bool {
        self.ring.would_lend(self.piece.bid, len)
    }

    /// Lends the piece's first `len` bytes as `Bytes` (see [`BufRing::lend`]).
    pub(crate) fn lend(self, len: usize) -> Option<Bytes> {
        self.ring.lend(self.piece, len)
    }
}

/// The buffers' memory: `len` bytes at `ptr`, an anonymous private mapping, unmapped when
/// the ring and every buffer lent out of it are gone.
struct RingMem {
    ptr: *mut u8,
    len: usize,
    /// One bit per buffer: set by the last owner of a piece lent out of it when it lets go
    /// (from any thread), cleared by the loop when it takes the pieces back.
    returned: Box<[AtomicU64]>,
    /// Per buffer: lent pieces of it let go of and not taken back yet.
    dropped: Box<[AtomicU32]>,
}

// SAFETY: the mapping is plain memory owned by this value; `returned` is atomic. Who may
// touch which buffer is the ring's business (see `LentBuf`).
unsafe impl Send for RingMem {}
// SAFETY: as above; shared access only reads `ptr`/`len` and updates `returned` atomically.
unsafe impl Sync for RingMem {}

impl Drop for RingMem {
    fn drop(&mut self) {
        // SAFETY: mapped in `BufRing::new` with this length; nothing refers to it any more (the
        // ring and every lent buffer held an `Arc` of this).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A buffer lent out of the ring: the owner behind the [`Bytes`] of [`BufRing::lend`].
///
/// Reading `len` bytes at `ptr` is sound while this lives: the kernel handed the buffer to us
/// in a CQE and writes it again only once the loop publishes it in the ring, which it does
/// only after this is dropped and the loop took the buffer back; the loop writes it no more
/// (the handler's `&mut` slice of it ended when it asked for the `Bytes`); and the mapping
/// lives as long as `mem`.
struct LentBuf {
    mem: Arc<RingMem>,
    bid: u16,
    ptr: *const u8,
    len: usize,
}

// SAFETY: see the type's docs: the bytes are not written while any `LentBuf` of them lives,
// so reading them from any thread is sound; the return path is atomic.
unsafe impl Send for LentBuf {}
// SAFETY: as above.
unsafe impl Sync for LentBuf {}

impl AsRef<[u8]> for LentBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the type's docs.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for LentBuf {
    fn drop(&mut self) {
        let (w, bit) = (usize::from(self.bid) / 64, self.bid % 64);
        // Release: our reads of the buffer happen before the loop lends it to the kernel.
        self.mem.dropped[usize::from(self.bid)].fetch_add(1, Ordering::Release);
        self.mem.returned[w].fetch_or(1 << bit, Ordering::Release);
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
pub(in crate::uring) fn pbuf_head(ring: &IoUring) -> Option<u16> {
    let mut st = BufStatus { buf_group: u32::from(BGID), head: 0, resv: [0; 8] };
    // SAFETY: PBUF_STATUS reads and writes one `io_uring_buf_status`, which `st` is (repr(C),
    // the kernel's layout), alive for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_io_uring_register, ring.as_raw_fd(), IORING_REGISTER_PBUF_STATUS, &raw mut st, 1)
    };
    (r == 0).then_some(st.head as u16)
}

/// The ring's bookkeeping, for the loop's tests.
#[cfg(test)]
impl BufRing {
    /// Whether the kernel consumes the buffers incrementally (see the type's docs).
    pub(in crate::uring) fn incremental(&self) -> bool {
        self.inc
    }

    /// Buffers lent to the kernel and not handed back yet.
    pub(in crate::uring) fn lent(&self) -> u16 {
        self.lent
    }

    /// Buffers neither lent nor in use, most recently returned last.
    pub(in crate::uring) fn free(&self) -> &[u16] {
        &self.free
    }

    /// Entries published so far (mod 2^16).
    pub(in crate::uring) fn tail(&self) -> u16 {
        self.tail
    }

    /// The addresses of the buffers' memory.
    pub(in crate::uring) fn mem_range(&self) -> std::ops::Range<usize> {
        self.mem.ptr as usize..self.mem.ptr as usize + self.mem.len
    }
}

/// Bit `bid` of a bitmap of buffers.
fn bit(words: &[u64], bid: u16) -> bool {
    words[usize::from(bid) / 64] & (1 << (bid % 64)) != 0
}

/// Sets bit `bid` of a bitmap of buffers to `on`.
fn set_bit(words: &mut [u64], bid: u16, on: bool) {
    let (w, mask) = (usize::from(bid) / 64, 1u64 << (bid % 64));
    if on {
        words[w] |= mask;
    } else {
        words[w] &= !mask;
    }
}

/// The largest buffer of a ring whose receives take whole buffers, where the kernel cannot
/// consume them incrementally (see [`BufRing::registered`]).
pub(in crate::uring) const WHOLE_SIZE: u32 = 32 << 10;

/// `count` buffers of `size` bytes as buffers of at most [`WHOLE_SIZE`]: as many as fill the
/// same memory, rounded down to a power of two and at most 32,768 (a ring's limit).
fn whole_geometry(count: u16, size: u32) -> (u16, u32) {
    if size <= WHOLE_SIZE {
        return (count, size);
    }
    let n = (u64::from(count) * u64::from(size) / u64::from(WHOLE_SIZE)).min(32768);
    (1u16 << n.ilog2(), WHOLE_SIZE)
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // The buffers' mapping goes with the last `Arc` of `mem` (a lent-out buffer may outlive
        // the ring).
        // SAFETY: allocated in `new` with this layout; the kernel no longer uses it (the ring
        // was unregistered or destroyed first).
        unsafe { dealloc(self.entries.cast(), self.entries_layout) };
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

    /// `IORING_CQE_F_BUF_MORE`.
    const BUF_MORE: u32 = 1 << 4;

    /// The kernel hands back `len` bytes of buffer `bid`, which it is done with; we use them.
    fn recv(r: &mut BufRing, bid: u16, len: i32) {
        let p = r.received(bid, len, 0);
        r.done(p);
    }

    #[test]
    fn buffer_window_starts_small_and_reuses_the_hottest_buffer() {
        let mut r = BufRing::new(256, 512, false).unwrap();
        assert_eq!((r.lent, r.window, r.tail), (INITIAL_WINDOW, INITIAL_WINDOW, INITIAL_WINDOW));
        assert_eq!(published(&r, 0), (0..INITIAL_WINDOW).collect::<Vec<_>>());
        // The kernel fills buffer 0, we consume and release it: it is the next one lent.
        recv(&mut r, 0, 100);
        r.top_up();
        assert_eq!(published(&r, INITIAL_WINDOW), vec![0]);
        assert_eq!(r.lent, INITIAL_WINDOW);
        // Two taken and released: the last released goes out first after a top-up.
        recv(&mut r, 1, 512);
        recv(&mut r, 2, 1);
        r.top_up();
        assert_eq!(published(&r, INITIAL_WINDOW + 1), vec![2, 1]);
    }

    #[test]
    fn buffer_window_shrinks_after_a_quiet_period_but_not_after_starving() {
        let mut r = BufRing::new(1024, 512, false).unwrap();
        for _ in 0..5 {
            r.exhausted();
        }
        assert_eq!(r.window, 1024);
        let t0 = r.period_end;
        // A period that starved keeps the window.
        assert_eq!(r.end_turn(t0), None);
        // A busy turn: 300 buffers taken and released.
        for bid in 0..300 {
            recv(&mut r, bid, 1);
        }
        assert_eq!(r.end_turn(t0), None, "not a period yet");
        assert_eq!(r.end_turn(t0 + WINDOW_PERIOD), None, "peak 300 needs 1024");
        // A quiet period: shrink to twice the peak, at least the initial window.
        recv(&mut r, 300, 1);
        assert_eq!(r.end_turn(t0 + 2 * WINDOW_PERIOD), Some(INITIAL_WINDOW));
        assert_eq!(r.check_at(), Some(t0 + 3 * WINDOW_PERIOD));
        r.reset(INITIAL_WINDOW);
        assert_eq!((r.lent, r.tail, r.free.len()), (INITIAL_WINDOW, INITIAL_WINDOW, 1024 - 32));
        assert_eq!(r.check_at(), None, "no need to wake at the initial window");
    }

    /// Lent-out buffers (ids past the first bitmap word too) stay off the free list when the
    /// ring is reset (the window shrink), are capped at a quarter, and come back once their
    /// `Bytes` are dropped; small receives are not lent.
    #[test]
    fn lent_buffers_survive_a_reset_and_come_back_when_dropped() {
        let mut r = BufRing::new(256, 4096, false).unwrap();
        r.reset(256);
        let ids = [3u16, 64, 130, 255];
        let kept: Vec<Bytes> = ids
            .iter()
            .map(|&bid| {
                let p = r.received(bid, 4096, 0);
                r.slice(&p).fill(bid as u8);
                let b = r.lend(&p, 4096).expect("lent");
                r.done(p);
                b
            })
            .collect();
        let p = r.received(7, 511, 0);
        assert!(r.lend(&p, 511).is_none(), "under an eighth of a buffer is copied, not lent");
        r.done(p);
        assert_eq!(r.lent_out(), 4);
        r.reset(INITIAL_WINDOW);
        for bid in ids {
            assert!(!r.free.contains(&bid), "lent buffer {bid} on the free list after a reset");
            assert!(!published(&r, 0).contains(&bid), "lent buffer {bid} published after a reset");
        }
        assert_eq!(usize::from(r.lent) + r.free.len() + usize::from(r.lent_out), 256);
        for (b, bid) in kept.iter().zip(ids) {
            assert!(b.iter().all(|&x| x == bid as u8));
        }
        drop(kept);
        r.top_up();
        assert_eq!(r.lent_out(), 0);
        for bid in ids {
            assert!(r.free.contains(&bid) || published(&r, 0).contains(&bid), "buffer {bid} did not come back");
            assert!(!r.is_out(bid));
        }
        // At most a quarter of the buffers at once.
        r.reset(256);
        let many: Vec<Bytes> = (0..256u16)
            .filter_map(|bid| {
                let p = r.received(bid, 4096, 0);
                let b = r.lend(&p, 4096);
                r.done(p);
                b
            })
            .collect();
        assert_eq!(many.len(), 64);
    }

    /// Incremental buffers: each receive continues where the previous one into the buffer
    /// ended; the buffer goes back to the free list only once the kernel is done with it and
    /// every piece lent of it is dropped, and is filled from its start when published again.
    #[test]
    fn incremental_pieces_follow_each_other_and_the_buffer_returns_when_all_are_done() {
        assert!(io_uring::cqueue::buffer_more(BUF_MORE));
        let mut r = BufRing::new(16, 4096, true).unwrap();
        assert_eq!(r.window, 16);
        let a = r.received(0, 100, BUF_MORE);
        assert_eq!((a.start, a.len, a.last), (0, 100, false));
        r.slice(&a).fill(1);
        r.done(a);
        let b = r.received(0, 1000, BUF_MORE);
        assert_eq!((b.start, b.last), (100, false));
        r.slice(&b).fill(2);
        let lent_b = r.lend(&b, 1000).expect("lent");
        r.done(b);
        // A receive that took nothing leaves the buffer with the kernel, whatever the flags.
        let none = r.received(0, 0, 0);
        assert_eq!((none.start, none.len, none.last), (1100, 0, false));
        r.done(none);
        let c = r.received(0, 2996, 0);
        assert_eq!((c.start, c.last), (1100, true));
        r.slice(&c).fill(3);
        let lent_c = r.lend(&c, 2996).expect("a second piece of a lent buffer");
        r.done(c);
        assert_eq!((r.lent, r.lent_out()), (15, 1));
        r.top_up();
        assert!(!r.free.contains(&0) && !published(&r, 16).contains(&0), "buffer 0 back while lent");
        assert!(lent_b.iter().all(|&x| x == 2) && lent_c.iter().all(|&x| x == 3));
        drop(lent_b);
        r.top_up();
        assert!(!published(&r, 16).contains(&0), "buffer 0 back with a piece still lent");
        drop(lent_c);
        r.top_up();
        assert_eq!(published(&r, 16), vec![0]);
        assert_eq!((r.lent, r.lent_out()), (16, 0));
        let again = r.received(0, 10, BUF_MORE);
        assert_eq!(again.start, 0, "a buffer published again is filled from its start");
        r.done(again);
    }

    /// At the cap on buffers out, a buffer with no piece out lends nothing, and one already out
    /// lends its next piece (it pins nothing more); `would_lend` says the same as `lend`.
    #[test]
    fn a_buffer_already_out_lends_past_the_cap() {
        let mut r = BufRing::new(16, 4096, true).unwrap();
        let mut kept = Vec::new();
        for bid in 0..4 {
            let p = r.received(bid, 1000, BUF_MORE);
            assert!(r.would_lend(bid, 1000));
            kept.push(r.lend(&p, 1000).expect("under the cap"));
            r.done(p);
        }
        assert_eq!(r.lent_out(), 4);
        let p = r.received(4, 1000, BUF_MORE);
        assert!(!r.would_lend(4, 1000));
        assert!(r.lend(&p, 1000).is_none(), "a fifth buffer out");
        r.done(p);
        let p = r.received(0, 600, BUF_MORE);
        assert!(r.would_lend(0, 600));
        assert!(!r.would_lend(0, 100), "under the least lent");
        kept.push(r.lend(&p, 600).expect("a further piece of a buffer out"));
        r.done(p);
        assert_eq!(r.lent_out(), 4);
    }

    /// Where the kernel cannot consume buffers incrementally, large ones become 32 KiB ones
    /// filling the same memory (a power of two, within a ring's limit).
    #[test]
    fn whole_geometry_keeps_the_memory_in_32_kib_buffers() {
        assert_eq!(whole_geometry(128, 256 << 10), (1024, 32 << 10));
        assert_eq!(whole_geometry(1024, 32 << 10), (1024, 32 << 10));
        assert_eq!(whole_geometry(64, 4096), (64, 4096));
        assert_eq!(whole_geometry(8, 100 << 10), (16, 32 << 10)); // 25 rounded down
        assert_eq!(whole_geometry(32768, 1 << 20), (32768, 32 << 10));
    }

    /// A reset (the window shrink) takes an incremental buffer back from the kernel: one that
    /// had a piece lent returns to the free list when the piece is dropped.
    #[test]
    fn a_reset_takes_incremental_buffers_back_from_the_kernel() {
        let mut r = BufRing::new(16, 4096, true).unwrap();
        let a = r.received(5, 2048, BUF_MORE);
        let lent = r.lend(&a, 2048).expect("lent");
        r.done(a);
        r.reset(4);
        assert!(!r.kernel_holds(5) && !r.free.contains(&5));
        assert_eq!(usize::from(r.lent) + r.free.len() + 1, 16);
        drop(lent);
        r.top_up();
        assert!(r.free.contains(&5));
        // Larger incremental buffers start with a smaller window (about 1 MiB of them).
        assert_eq!(BufRing::new(64, 256 << 10, true).unwrap().window, 4);
        assert_eq!(BufRing::new(64, 4 << 20, true).unwrap().window, 2);
    }

    #[test]
    fn buffer_window_doubles_on_enobufs_up_to_the_count() {
        let mut r = BufRing::new(128, 512, false).unwrap();
        r.exhausted();
        assert_eq!((r.window, r.lent), (2 * INITIAL_WINDOW, 2 * INITIAL_WINDOW));
        r.exhausted();
        r.exhausted();
        assert_eq!((r.window, r.lent, r.tail), (128, 128, 128));
        assert!(r.free.is_empty());
        // Fewer buffers than the initial window: all of them are lent.
        let small = BufRing::new(8, 512, false).unwrap();
        assert_eq!((small.lent, small.window), (8, 8));
    }
}
