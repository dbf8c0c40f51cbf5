//! Pieces shared by both backends: the connection slab, the send queue and the timer heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::ConnId;

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

/// What both backends keep per connection for the rules of `Io::{send, queued, close,
/// abort}`; [`Slab`]'s methods below apply those rules once for both.
pub(crate) trait LoopConn {
    fn closing(&self) -> Closing;
    fn closing_mut(&mut self) -> &mut Closing;
    fn queue(&self) -> &SendQueue;
    fn queue_mut(&mut self) -> &mut SendQueue;
    /// Whether the connection is already on the turn's dirty list.
    fn dirty_mut(&mut self) -> &mut bool;
    /// Moves to [`Closing::Teardown`]; each backend decides what may stay in flight.
    fn teardown(&mut self, error: Option<std::io::Error>);
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

    /// `Io::close`: an open connection starts its graceful close.
    pub(crate) fn begin_close(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() == Closing::Open
        {
            *c.closing_mut() = Closing::Graceful;
            self.mark_dirty(id, dirty);
        }
    }

    /// `Io::abort`: tear down now, whatever the state, once.
    pub(crate) fn abort(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() != Closing::Teardown
        {
            c.teardown(None);
            self.mark_dirty(id, dirty);
        }
    }
}

/// At most this many iovecs go into one vectored send (Linux `IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// A slab of connection slots; an id is (index, generation), and a slot's generation moves on
/// when it is freed, so a stale id never reaches the next connection in that slot.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            slot.value = Some(value);
            ConnId { idx, generation: slot.generation }
        } else {
            let idx = u32::try_from(self.slots.len()).expect("more than 2^32 connections");
            self.slots.push(Slot { generation: 0, value: Some(value) });
            ConnId { idx, generation: 0 }
        }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        match self.slots.get(id.idx as usize) {
            Some(s) if s.generation == id.generation => s.value.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slots.get_mut(id.idx as usize) {
            Some(s) if s.generation == id.generation => s.value.as_mut(),
            _ => None,
        }
    }

    /// The live id of slot `idx`, if it holds a connection whose generation matches the low
    /// `bits` bits of `generation` (the io_uring user_data only carries 24 bits of it).
    pub(crate) fn id_at(&self, idx: u32, generation: u32, mask: u32) -> Option<ConnId> {
        let s = self.slots.get(idx as usize)?;
        (s.value.is_some() && (s.generation & mask) == (generation & mask))
            .then_some(ConnId { idx, generation: s.generation })
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let s = self.slots.get_mut(id.idx as usize)?;
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
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| ConnId { idx: i as u32, generation: s.generation })
            .collect()
    }
}

/// Output queued for one connection: shared `Bytes` chunks written in order.
#[derive(Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already written.
    head_off: usize,
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
        self.chunks.iter().take(max).enumerate().map(|(i, c)| if i == 0 { &c[self.head_off..] } else { &c[..] })
    }

    /// `n` bytes were written: drop the chunks that are done.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front().expect("advance past the queue").len() - self.head_off;
            if n >= front {
                n -= front;
                self.chunks.pop_front();
                self.head_off = 0;
            } else {
                self.head_off += n;
                n = 0;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.head_off = 0;
        self.len = 0;
    }
}

/// Per-connection timer state, kept in the connection.
#[derive(Default)]
pub(crate) struct TimerSlot {
    /// The deadline the handler asked for.
    pub(crate) deadline: Option<Instant>,
    /// The earliest entry for this connection that is live in the heap.
    pub(crate) in_heap: Option<Instant>,
}

/// One heap of deadlines per loop, with lazy deletion: clearing or moving a deadline later
/// leaves the old entry in the heap, and it is checked against the connection when it pops.
/// A connection adds an entry only when its deadline moves earlier, so a timer reset on every
/// message does not grow the heap.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl Timers {
    pub(crate) fn set(&mut self, id: ConnId, slot: &mut TimerSlot, at: Option<Instant>) {
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
        self.heap.peek().map(|Reverse((t, _, _))| *t)
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
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
