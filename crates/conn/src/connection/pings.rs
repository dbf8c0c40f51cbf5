//! The ping bookkeeping of a [`Connection`]: the pongs owed, when they may be queued,
//! and [`Connection::cancel_pong`].

use super::Connection;
use crate::{Event, OpCode, State};
use bytes::Bytes;
use std::collections::VecDeque;

/// Ping bookkeeping, created when a ping arrives and dropped once every ping was
/// polled, no pong is owed and no pong is cancellable (the numbering then restarts at
/// zero, which nothing can tell apart: a number only matters while its pong is owed).
#[derive(Debug, Default)]
pub(super) struct Pings {
    /// The pongs owed and not queued yet, oldest first: `(ping number, payload)`. At
    /// most [`MAX_OWED_PONGS`]: a ping that finds the list full replaces the newest
    /// (RFC 6455 5.5.3 lets an endpoint answer only the most recent of the pings it has
    /// not answered yet).
    owed: VecDeque<(u64, Bytes)>,
    received: u64,
    polled: u64,
    /// The last event polled was a ping, and no `poll_event` or `poll_transmit` came
    /// since: its pong may still be cancelled even if it was queued meanwhile.
    window: bool,
    /// In the window, the pong of the last polled ping was queued (a `ping`, `pong` or
    /// `close` made by the application flushed it): it is the queue's cancellable chunk.
    queued: bool,
}

/// Pongs owed at most (see [`Pings::owed`]). Every ping is answered while the output
/// drains; a peer that pings faster than it reads gets at most this many pongs beyond
/// the low-water mark.
const MAX_OWED_PONGS: usize = 16;

impl Pings {
    /// A ping arrived: its pong is owed if `owe_pong`.
    pub(super) fn on_ping(pings: &mut Option<Box<Self>>, payload: &Bytes, owe_pong: bool) {
        let pings = pings.get_or_insert_with(Box::default);
        if owe_pong {
            if pings.owed.len() == MAX_OWED_PONGS {
                // Full: the latest ping's pong replaces the newest owed one.
                pings.owed.pop_back();
            }
            pings.owed.push_back((pings.received, payload.clone()));
        }
        pings.received += 1;
    }
}

impl Connection {
    /// Suppresses the automatic pong for the last [`Event::Ping`] returned by
    /// [`poll_event`](Self::poll_event) (Node's `cancel()` in the `'ping'` handler).
    ///
    /// Until the next `poll_event` or [`poll_transmit`](Self::poll_transmit) it works
    /// whatever was called in between: a [`ping`](Self::ping), [`pong`](Self::pong) or
    /// [`close`](Self::close) that queued the owed pong (a pong goes before our close
    /// frame) has it taken out of the queue again. Later it cancels the pong only while
    /// it is still owed, not queued; once handed out it has no effect. A ping whose
    /// pong was replaced by a later ping's (more than sixteen owed, see
    /// [`Config::auto_pong`](crate::Config::auto_pong)) has no pong left to cancel.
    pub fn cancel_pong(&mut self) {
        if let Some(p) = &mut self.pings
            && p.polled > 0
        {
            if let Some(i) = p.owed.iter().position(|(seq, _)| *seq == p.polled - 1) {
                p.owed.remove(i);
            } else if p.queued {
                p.queued = false;
                self.out.cancel_pong();
            }
        }
        self.release_pings();
    }

    /// `poll_event` handed out an event: a ping opens the window in which its pong
    /// stays cancellable.
    #[inline(always)]
    pub(super) fn on_event_polled(&mut self, e: &Event) {
        if let (Event::Ping(_), Some(p)) = (e, &mut self.pings) {
            p.polled += 1;
            p.window = true;
        }
    }

    /// The next `poll_event` or `poll_transmit`: the last polled ping's pong is no
    /// longer cancellable once queued.
    // The check is inlined into every caller (poll_event, poll_transmit: several times per
    // message), the rest is not: with no ping outstanding it costs one test.
    #[inline(always)]
    pub(super) fn close_pong_window(&mut self) {
        if self.pings.is_some() {
            self.close_pong_window_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn close_pong_window_slow(&mut self) {
        let Some(p) = &mut self.pings else { return };
        if p.window {
            p.window = false;
            if std::mem::take(&mut p.queued) {
                self.out.keep_pong();
            }
            self.release_pings();
        }
    }

    /// The oldest owed pong may be queued now: the connection is open, the output is
    /// not backed up (at most the low-water mark is unwritten), and it fits in
    /// `max_buffered`.
    pub(super) fn pong_ready(&self) -> bool {
        self.pings.as_ref().and_then(|p| p.owed.front()).is_some_and(|(_, p)| {
            self.state == State::Open
                && !self.out.close_queued()
                && self.out.buffered() <= self.config.low_water_mark
                && self.fits(self.out.wire_len(p.len(), None))
        })
    }

    /// Queues the owed pongs that may go (see [`pong_ready`](Self::pong_ready)); the
    /// rest stay owed (a newer ping may still replace the newest), or are dropped once
    /// the connection is no longer open.
    #[inline(always)]
    pub(super) fn flush_pongs(&mut self) {
        if self.pings.is_some() {
            self.flush_pongs_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn flush_pongs_slow(&mut self) {
        while self.pong_ready() {
            let (seq, p) = self.pings.as_mut().and_then(|p| p.owed.pop_front()).expect("pong_ready");
            self.queue_pong(seq, &p);
        }
        if self.state != State::Open || self.out.close_queued() {
            self.clear_pongs();
            return;
        }
        self.release_pings();
    }

    /// Right before our close frame is queued: the owed pongs go now or never, so they
    /// are queued even while the output is backed up or over `max_buffered` (once; at
    /// most [`MAX_OWED_PONGS`]).
    pub(super) fn flush_pongs_before_close(&mut self) {
        let owed = self.pings.as_mut().map(|p| std::mem::take(&mut p.owed)).unwrap_or_default();
        if self.state == State::Open && !self.out.close_queued() {
            for (seq, p) in owed {
                self.queue_pong(seq, &p);
            }
        }
        self.release_pings();
    }

    /// Queues the pong of ping `seq`; cancellable if it is the last polled ping's and
    /// its window is open.
    fn queue_pong(&mut self, seq: u64, payload: &[u8]) {
        let mut cancellable = false;
        if let Some(p) = &mut self.pings
            && p.window
            && seq + 1 == p.polled
        {
            p.queued = true;
            cancellable = true;
        }
        self.out.push_control(OpCode::Pong, payload, cancellable);
    }

    /// Drops the owed pongs.
    pub(super) fn clear_pongs(&mut self) {
        if let Some(p) = &mut self.pings {
            p.owed.clear();
        }
        self.release_pings();
    }

    /// Drops the ping bookkeeping once every ping was polled, no pong is owed and none
    /// is cancellable.
    pub(super) fn release_pings(&mut self) {
        if self.pings.as_ref().is_some_and(|p| p.owed.is_empty() && p.received == p.polled && !p.window) {
            self.pings = None;
        }
    }
}
