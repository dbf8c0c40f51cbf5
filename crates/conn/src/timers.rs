//! Deadlines: close handshake, keepalive ping and grace period, idle timeout.
//! The connection never reads a clock; every `now` comes from the driver.

use crate::{Config, Keepalive};
use std::num::NonZeroI64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What fired in [`Timers::expired`], in the order the connection handles them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fired {
    /// The peer did not finish the close handshake in time.
    Close,
    /// The keepalive grace period ended without a byte from the peer.
    KeepaliveGrace,
    /// Time to send a keepalive ping.
    KeepalivePing,
    /// Nothing moved either way for the idle timeout.
    Idle,
}

const MIN: Duration = Duration::from_millis(1);

/// The four deadlines and the last `now` the driver gave. The keepalive and idle
/// intervals are read from the shared [`Config`] rather than copied into every connection.
///
/// Instants are kept as signed nanoseconds from the process-wide [`epoch`], 8 bytes each
/// instead of 16 and no epoch of its own: exact for any instant within 292 years either
/// side of it, so deadlines fire exactly when they did as `Option<Instant>`.
#[derive(Debug, Clone)]
pub(crate) struct Timers {
    now: Nanos,
    close: Option<Deadline>,
    ping: Option<Deadline>,
    grace: Option<Deadline>,
    idle: Option<Deadline>,
}

/// An instant as nanoseconds after (negative: before) the [`epoch`].
type Nanos = i64;

/// What every connection's instants count from: one instant for the whole process, fixed
/// when it is first needed (the offsets only have to share a base, not start at zero).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` as [`Nanos`].
fn nanos(at: Instant) -> Nanos {
    let epoch = epoch();
    let clamp = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    if at >= epoch { clamp(at - epoch) } else { -clamp(epoch - at) }
}

/// The instant `n` stands for.
fn instant(n: Nanos) -> Instant {
    let d = Duration::from_nanos(n.unsigned_abs());
    if n >= 0 { epoch() + d } else { epoch() - d }
}

/// A deadline, [`Nanos`] stored so that `Option<Deadline>` takes 8 bytes: 0 is skipped by
/// shifting the non-negative values up by one, which keeps the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline(NonZeroI64);

impl Deadline {
    fn new(n: Nanos) -> Self {
        let v = if n >= 0 { n.saturating_add(1) } else { n };
        Deadline(NonZeroI64::new(v).expect("non-zero by construction"))
    }

    fn at(at: Instant) -> Self {
        Self::new(nanos(at))
    }

    fn nanos(self) -> Nanos {
        let v = self.0.get();
        if v > 0 { v - 1 } else { v }
    }
}

/// The keepalive pings of `cfg` (none when TCP's own keepalive replaces them); a zero
/// duration would fire on every call, so a millisecond is the floor.
fn keepalive(cfg: &Config) -> Option<Keepalive> {
    cfg.keepalive.filter(|_| !cfg.use_native_keepalive).map(|k| Keepalive {
        interval: k.interval.max(MIN),
        grace_period: k.grace_period.max(MIN),
        ..k
    })
}

/// The idle timeout of `cfg`, with the same floor.
fn idle_timeout(cfg: &Config) -> Option<Duration> {
    cfg.idle_timeout.map(|d| d.max(MIN))
}

impl Timers {
    pub(crate) fn new(cfg: &Config, now: Instant) -> Self {
        Self {
            now: nanos(now),
            close: None,
            ping: keepalive(cfg).map(|k| Deadline::at(now + k.interval)),
            grace: None,
            idle: idle_timeout(cfg).map(|d| Deadline::at(now + d)),
        }
    }

    /// The last `now` given by the driver.
    pub(crate) fn now(&self) -> Instant {
        instant(self.now)
    }

    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = nanos(now);
    }

    /// Starts the close handshake timeout: `timeout` after the last `now`.
    pub(crate) fn start_close(&mut self, timeout: Duration) {
        self.close = Some(Deadline::at(self.now() + timeout));
    }

    /// The peer sent something: it is alive, and the connection is not idle.
    pub(crate) fn on_receive(&mut self, cfg: &Config, now: Instant) {
        if let Some(k) = keepalive(cfg) {
            self.ping = Some(Deadline::at(now + k.interval));
            self.grace = None;
        }
        self.on_activity(cfg, now);
    }

    /// Bytes moved (either way): the connection is not idle.
    pub(crate) fn on_activity(&mut self, cfg: &Config, now: Instant) {
        if let Some(d) = idle_timeout(cfg) {
            self.idle = Some(Deadline::at(now + d));
        }
    }

    /// We sent a keepalive ping at `now`.
    pub(crate) fn on_ping_sent(&mut self, cfg: &Config, now: Instant) {
        if let Some(k) = keepalive(cfg) {
            self.ping = Some(Deadline::at(now + k.interval));
            if k.drop_on_timeout && self.grace.is_none() {
                self.grace = Some(Deadline::at(now + k.grace_period));
            }
        }
    }

    /// Open-state timers stop once a close starts.
    pub(crate) fn stop_open_timers(&mut self) {
        self.ping = None;
        self.grace = None;
        self.idle = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.stop_open_timers();
        self.close = None;
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        [self.close, self.grace, self.ping, self.idle].into_iter().flatten().min().map(|d| instant(d.nanos()))
    }

    /// The first deadline at or before `now`, cleared.
    pub(crate) fn expired(&mut self, now: Instant) -> Option<Fired> {
        let now = nanos(now);
        let due = |t: &mut Option<Deadline>| t.is_some_and(|t| t.nanos() <= now).then(|| *t = None).is_some();
        if due(&mut self.close) {
            Some(Fired::Close)
        } else if due(&mut self.grace) {
            Some(Fired::KeepaliveGrace)
        } else if due(&mut self.ping) {
            Some(Fired::KeepalivePing)
        } else if due(&mut self.idle) {
            Some(Fired::Idle)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_exactly_either_side_of_the_epoch() {
        let created = Instant::now() + Duration::from_secs(3600);
        let t = Timers::new(&Config::server(), created);
        assert_eq!(t.now(), created, "a connection's first now is kept exactly");
        let epoch = epoch();
        for d in [0, 1, 999, 1_000_000_007, 86_400_000_000_000] {
            for at in [epoch + Duration::from_nanos(d), epoch - Duration::from_nanos(d)] {
                let dl = Deadline::at(at);
                assert_eq!(instant(dl.nanos()), at);
            }
        }
        // Order is kept across zero.
        let (a, b, c) = (
            Deadline::at(epoch - Duration::from_nanos(1)),
            Deadline::at(epoch),
            Deadline::at(epoch + Duration::from_nanos(1)),
        );
        assert!(a < b && b < c);
        assert_eq!(std::mem::size_of::<Option<Deadline>>(), 8);
    }

    #[test]
    fn a_deadline_fires_at_its_instant_not_a_nanosecond_before() {
        let epoch = Instant::now();
        let mut t = Timers::new(&Config::server(), epoch);
        t.stop_all();
        t.set_now(epoch + Duration::from_nanos(5));
        t.start_close(Duration::from_nanos(10));
        let at = epoch + Duration::from_nanos(15);
        assert_eq!(t.next(), Some(at));
        assert_eq!(t.expired(at - Duration::from_nanos(1)), None);
        assert_eq!(t.expired(at), Some(Fired::Close));
        assert_eq!(t.next(), None);
    }
}
