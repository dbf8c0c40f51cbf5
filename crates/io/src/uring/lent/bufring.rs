//! The provided-buffer ring: the receive buffers the kernel writes into, and the ring of
//! entries through which they are lent to it.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The provided-buffer group id of the loop's buffer ring.
pub(in crate::uring) const BGID: u16 = 0;
/// Buffers the kernel may hold at start; [`BufRing::exhausted`] doubles it up to the count.
const INITIAL_WINDOW: u16 = 32;
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
pub(in crate::uring) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// `count * size` bytes, an anonymous private mapping of our own (see `reclaim`).
    bufs: *mut u8,
    pub(super) bufs_len: usize,
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
    pub(in crate::uring) fn new(count: u16, size: u32) -> io::Result<BufRing> {
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
        let want = (u32::from(peak) * 2).next_power_of_two().max(u32::from(INITIAL_WINDOW));
        (!starved && want * 2 <= u32::from(self.window)).then(|| want.min(u32::from(self.count)) as u16)
    }

    /// When the loop must wake to check the window even if nothing happens.
    pub(in crate::uring) fn check_at(&self) -> Option<Instant> {
        (self.window > INITIAL_WINDOW).then_some(self.period_end)
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
        debug_assert_eq!(usize::from(self.lent) + self.free.len(), usize::from(self.count));
        ring.submitter().unregister_buf_ring(BGID)?;
        // SAFETY: the range is our own anonymous mapping and the kernel no longer holds any
        // buffer of it (unregistered above); its contents are not needed (no buffer is in use).
        unsafe { libc::madvise(self.bufs.cast(), self.bufs_len, libc::MADV_DONTNEED) };
        self.reset(window);
        self.register(ring)
    }

    /// Publishes free buffers until the kernel holds `window` of them (or none are free).
    pub(in crate::uring) fn top_up(&mut self) {
        while self.lent < self.window {
            let Some(bid) = self.free.pop() else { break };
            self.push(bid);
            self.lent += 1;
        }
    }

    /// The kernel handed buffer `bid` back in a CQE.
    pub(in crate::uring) fn taken(&mut self) {
        self.lent = self.lent.saturating_sub(1);
        self.taken_turn = self.taken_turn.saturating_add(1);
    }

    /// We are done with buffer `bid`: it goes on the free list for the next top-up.
    pub(in crate::uring) fn release(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        self.free.push(bid);
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

    pub(in crate::uring) fn register(&self, ring: &IoUring) -> io::Result<()> {
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
    pub(in crate::uring) fn slice(&mut self, bid: u16, len: usize) -> &mut [u8] {
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
    /// Buffers lent to the kernel and not handed back yet.
    pub(in crate::uring) fn lent(&self) -> u16 {
        self.lent
    }

    /// Buffers neither lent nor in use, most recently returned last.
    pub(in crate::uring) fn free(&self) -> &[u16] {
        &self.free
    }

    /// The number of buffers.
    pub(in crate::uring) fn count(&self) -> u16 {
        self.count
    }

    /// Entries published so far (mod 2^16).
    pub(in crate::uring) fn tail(&self) -> u16 {
        self.tail
    }
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
}
