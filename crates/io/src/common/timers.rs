//! The timer heap and the close deadlines, the same in both backends.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use super::{Closing, LoopConn, Slab};
use crate::{ConnId, LoopConfig};

/// The deadlines of closing connections, the same rules on both backends. A connection has
/// one close deadline at a time, in [`Cold::close_timer`](super::Cold::close_timer):
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

    /// `c`, in its graceful close, has written all its output: its write side is shut down
    /// now. If the peer's EOF came already, it is done ([`Closing::Teardown`]); otherwise it
    /// is [`Closing::Lingering`], with the linger deadline in place of the flush deadline,
    /// and the result is true: the backend reads (and drops) its input until the peer's EOF.
    pub(crate) fn written<C: LoopConn>(&mut self, id: ConnId, c: &mut C, now: Instant) -> bool {
        if let Some(fd) = c.fd() {
            crate::sys::shutdown_write(fd);
        }
        if *c.eof_mut() {
            *c.closing_mut() = Closing::Teardown;
            return false;
        }
        *c.closing_mut() = Closing::Lingering;
        self.timers.set(id, c.close_timer(), now.checked_add(self.linger));
        true
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

#[cfg(test)]
mod tests {
    use super::*;

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
