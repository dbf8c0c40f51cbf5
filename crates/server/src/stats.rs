//! Counters: each worker counts in plain integers and publishes them, once per loop
//! turn, to its own block of atomics; [`ServerHandle::stats`](crate::ServerHandle::stats)
//! sums the blocks.

use ringwire_conn::deflate::CodecCounts;
use ringwire_drive::Counts;
use ringwire_io::LoopStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upgrade requests answered with an error status (or, for 503 over TLS, dropped), by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// 400: a malformed upgrade request.
    pub bad_request: u64,
    /// 403: refused by the `Origin` or `Host` policy.
    pub forbidden: u64,
    /// 408: the request did not arrive within `handshake_timeout`.
    pub timeout: u64,
    /// 431: the request head was over `max_handshake_bytes` or had too many headers.
    pub too_large: u64,
    /// 426: an unsupported `Sec-WebSocket-Version`.
    pub upgrade_required: u64,
    /// 500: `on_request` panicked or accepted with an invalid choice.
    pub internal_error: u64,
    /// 503: over `max_connections` or `max_connections_per_ip` (over TLS the connection
    /// is dropped before its handshake instead of answered; counted here too).
    pub unavailable: u64,
    /// Any other status: 404 or whatever else a handler's
    /// [`Decision::Reject`](crate::Decision::Reject) chose (413, 414, ...), 405 for a
    /// method other than GET.
    pub other: u64,
}

impl Rejections {
    /// The count for `status`, or for [`other`](Self::other) when it has no field of its own.
    pub fn get(&self, status: u16) -> u64 {
        let mut copy = *self;
        *copy.slot(status)
    }

    /// Every rejection, whatever its status.
    pub fn total(&self) -> u64 {
        let mut copy = *self;
        let mut sum = 0;
        copy.for_each_mut(&mut |v| sum += *v);
        sum
    }

    fn slot(&mut self, status: u16) -> &mut u64 {
        match status {
            400 => &mut self.bad_request,
            403 => &mut self.forbidden,
            408 => &mut self.timeout,
            431 => &mut self.too_large,
            426 => &mut self.upgrade_required,
            500 => &mut self.internal_error,
            503 => &mut self.unavailable,
            _ => &mut self.other,
        }
    }

    fn for_each_mut(&mut self, f: &mut impl FnMut(&mut u64)) {
        for v in [
            &mut self.bad_request,
            &mut self.forbidden,
            &mut self.timeout,
            &mut self.too_large,
            &mut self.upgrade_required,
            &mut self.internal_error,
            &mut self.unavailable,
            &mut self.other,
        ] {
            f(v);
        }
    }

    const LEN: usize = 8;
}

/// A snapshot of a server's counters, summed over its workers
/// ([`ServerHandle::stats`](crate::ServerHandle::stats)).
///
/// Counters only grow; the fields marked as gauges go up and down. Each worker
/// publishes its own at the end of every event-loop turn, so a snapshot is at most one
/// turn behind each worker (and [`bytes_queued`](Self::bytes_queued) at most 250 ms),
/// and the workers' parts may be from slightly different instants.
///
/// ```no_run
/// use ringwire_server::{Handler, Server, ServerConfig};
/// # #[derive(Clone)] struct Echo;
/// # impl Handler for Echo {}
/// let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?))?;
/// let handle = server.handle();
/// let running = server.spawn(Echo);
/// // ... later, from any thread:
/// let s = handle.stats();
/// println!("{} open, {} text messages in", s.connections_open, s.traffic.messages_received.text);
/// # running.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// TCP connections accepted (every one, including those refused after).
    pub connections_accepted: u64,
    /// Gauge: WebSocket connections open (upgraded and not yet closed).
    pub connections_open: u64,
    /// Upgrade requests refused, by HTTP status.
    pub upgrades_rejected: Rejections,
    /// Messages and payload bytes in and out, close frames by code, protocol errors,
    /// keepalive and slow-consumer drops, as the connections' driver counts them.
    pub traffic: Counts,
    /// Gauge: bytes queued for peers and not yet written (every open connection's
    /// `buffered_amount`), refreshed at most every 250 ms.
    pub bytes_queued: u64,
    /// What the event loops counted of themselves: accepts that failed (out of
    /// descriptors: raise `ulimit -n`), io_uring's completion-queue overflows and
    /// receive-buffer window (summed over the workers), TLS handshakes done and failed.
    pub io: LoopStats,
    /// permessage-deflate: bytes in and out of the workers' compressors and
    /// decompressors (a message prepared once for many connections is compressed, and
    /// counted, once).
    pub compression: CodecCounts,
    /// Gauge: topics with at least one subscriber, counted per worker (a topic with
    /// subscribers on two workers counts twice).
    pub topics: u64,
    /// Gauge: subscriptions (a connection subscribed to a topic) on all workers.
    pub subscriptions: u64,
}

impl Stats {
    /// How many counters [`for_each_mut`](Self::for_each_mut) visits.
    const LEN: usize = 2 + Rejections::LEN + Counts::LEN + 1 + 10 + 4 + 2;

    /// Every counter, always in the same order (the order of the published blocks).
    fn for_each_mut(&mut self, mut f: impl FnMut(&mut u64)) {
        f(&mut self.connections_accepted);
        f(&mut self.connections_open);
        self.upgrades_rejected.for_each_mut(&mut f);
        self.traffic.for_each_mut(&mut f);
        f(&mut self.bytes_queued);
        let io = &mut self.io;
        for v in [
            &mut io.accept_errors.out_of_descriptors,
            &mut io.accept_errors.other,
            &mut io.cq_overflows,
            &mut io.recv_buffers,
            &mut io.recv_buffer_window,
            &mut io.recv_buffers_lent,
            &mut io.recv_buffers_exhausted,
            &mut io.recv_window_shrinks,
            &mut io.tls_handshakes,
            &mut io.tls_handshake_failures,
        ] {
            f(v);
        }
        let z = &mut self.compression;
        for v in [&mut z.compressed_in, &mut z.compressed_out, &mut z.inflated_in, &mut z.inflated_out] {
            f(v);
        }
        f(&mut self.topics);
        f(&mut self.subscriptions);
    }
}

/// One worker's published counters, alone on its cache lines: the worker stores, a
/// reader loads, and no two workers write the same line.
#[repr(align(64))]
pub(crate) struct StatsBlock([AtomicU64; Stats::LEN]);

impl Default for StatsBlock {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The sum of `blocks`.
pub(crate) fn sum(blocks: &[StatsBlock]) -> Stats {
    let mut s = Stats::default();
    let mut i = 0;
    s.for_each_mut(|v| {
        *v = blocks.iter().map(|b| b.0[i].load(Ordering::Relaxed)).sum();
        i += 1;
    });
    s
}

/// How often a worker sums its connections' queued bytes (a walk over all of them).
const QUEUED_EVERY: Duration = Duration::from_millis(250);

/// Where the per-message counters ([`Counts::per_message`]) start in the published order.
const PER_MESSAGE_AT: usize = 2 + Rejections::LEN;

/// One worker's counters, plain integers on its own thread, and what it last published.
pub(crate) struct WorkerCounters {
    pub(crate) now: Stats,
    published: [u64; Stats::LEN],
    /// When `bytes_queued` was last summed.
    queued_at: Option<Instant>,
    /// A counter other than the per-message ones may have changed since the last
    /// publish (a connection opened or closed, a refusal, a gauge): the next publish
    /// compares them all. Otherwise it stores only the eight per-message counters, which
    /// is what a busy turn changes.
    pub(crate) cold: bool,
}

impl WorkerCounters {
    pub(crate) fn new() -> Self {
        Self { now: Stats::default(), published: [0; Stats::LEN], queued_at: None, cold: true }
    }

    /// An upgrade refused with `status`.
    pub(crate) fn rejected(&mut self, status: u16) {
        *self.now.upgrades_rejected.slot(status) += 1;
        self.cold = true;
    }

    /// Sets `*field` to `value`, marking the counters for a full publish if it changed.
    #[inline]
    pub(crate) fn set<T: PartialEq>(cold: &mut bool, field: &mut T, value: T) {
        if *field != value {
            *field = value;
            *cold = true;
        }
    }

    /// Whether `bytes_queued` is due to be summed again at `now` (then it is taken as done).
    pub(crate) fn queued_due(&mut self, now: Instant) -> bool {
        if self.queued_at.is_some_and(|t| now.saturating_duration_since(t) < QUEUED_EVERY) {
            return false;
        }
        self.queued_at = Some(now);
        true
    }

    /// Stores the counters that changed since the last call into `block` (Relaxed: each
    /// is a number on its own, no other memory is published with it): all of them after
    /// a cold change, else the per-message ones only.
    pub(crate) fn publish(&mut self, block: &StatsBlock) {
        if !self.cold {
            let hot = self.now.traffic.per_message();
            for (i, v) in (PER_MESSAGE_AT..).zip(hot) {
                if v != self.published[i] {
                    self.published[i] = v;
                    block.0[i].store(v, Ordering::Relaxed);
                }
            }
            return;
        }
        self.cold = false;
        let published = &mut self.published;
        let mut i = 0;
        self.now.for_each_mut(|v| {
            if *v != published[i] {
                published[i] = *v;
                block.0[i].store(*v, Ordering::Relaxed);
            }
            i += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_sum_field_by_field() {
        let blocks = [StatsBlock::default(), StatsBlock::default()];
        let mut a = WorkerCounters::new();
        let mut b = WorkerCounters::new();
        let mut n = 0;
        a.now.for_each_mut(|v| {
            n += 1;
            *v = n;
        });
        assert_eq!(n as usize, Stats::LEN, "LEN counts every field");
        b.now.subscriptions = 5;
        b.rejected(431);
        b.rejected(404);
        a.publish(&blocks[0]);
        b.publish(&blocks[1]);
        let s = sum(&blocks);
        assert_eq!(s.connections_accepted, 1);
        assert_eq!(s.subscriptions, n + 5);
        assert_eq!(s.upgrades_rejected.get(431), a.now.upgrades_rejected.too_large + 1);
        assert_eq!(s.upgrades_rejected.get(404), a.now.upgrades_rejected.other + 1);
        assert_eq!(s.traffic.slow_consumer_drops, a.now.traffic.slow_consumer_drops);
        // Only what changed is stored again; a cold counter only after a cold change.
        b.now.subscriptions = 0;
        b.now.traffic.bytes_sent.binary = 7;
        b.publish(&blocks[1]);
        assert_eq!(sum(&blocks).subscriptions, n + 5, "not a cold change: not stored");
        assert_eq!(sum(&blocks).traffic.bytes_sent.binary, a.now.traffic.bytes_sent.binary + 7);
        b.cold = true;
        b.publish(&blocks[1]);
        assert_eq!(sum(&blocks).subscriptions, n);
    }

    #[test]
    fn the_per_message_counters_are_where_the_full_walk_puts_them() {
        let mut s = Stats::default();
        let mut i = 0;
        s.for_each_mut(|v| {
            *v = i;
            i += 1;
        });
        let at = PER_MESSAGE_AT as u64;
        assert_eq!(s.traffic.per_message(), std::array::from_fn(|k| at + k as u64));
    }
}
