//! Deadlines: close handshake, keepalive ping and grace period, idle timeout.
//! The connection never reads a clock; every `now` comes from the driver.

use crate::{Config, Keepalive};
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

/// The four deadlines. The keepalive and idle intervals are read from the shared
/// [`Config`] rather than copied into every connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timers {
    pub(crate) close: Option<Instant>,
    pub(crate) ping: Option<Instant>,
    pub(crate) grace: Option<Instant>,
    pub(crate) idle: Option<Instant>,
}

/// The keepalive of `cfg`; a zero duration would fire on every call, so a millisecond
/// is the floor.
fn keepalive(cfg: &Config) -> Option<Keepalive> {
    cfg.keepalive.map(|k| Keepalive { interval: k.interval.max(MIN), grace_period: k.grace_period.max(MIN), ..k })
}

/// The idle timeout of `cfg`, with the same floor.
fn idle_timeout(cfg: &Config) -> Option<Duration> {
    cfg.idle_timeout.map(|d| d.max(MIN))
}

impl Timers {
    pub(crate) fn new(cfg: &Config, now: Instant) -> Self {
        Self {
            close: None,
            ping: keepalive(cfg).map(|k| now + k.interval),
            grace: None,
            idle: idle_timeout(cfg).map(|d| now + d),
        }
    }

    /// The peer sent something: it is alive, and the connection is not idle.
    pub(crate) fn on_receive(&mut self, cfg: &Config, now: Instant) {
        if let Some(k) = keepalive(cfg) {
            self.ping = Some(now + k.interval);
            self.grace = None;
        }
        self.on_activity(cfg, now);
    }

    /// Bytes moved (either way): the connection is not idle.
    pub(crate) fn on_activity(&mut self, cfg: &Config, now: Instant) {
        if let Some(d) = idle_timeout(cfg) {
            self.idle = Some(now + d);
        }
    }

    /// We sent a keepalive ping at `now`.
    pub(crate) fn on_ping_sent(&mut self, cfg: &Config, now: Instant) {
        if let Some(k) = keepalive(cfg) {
            self.ping = Some(now + k.interval);
            if k.drop_on_timeout && self.grace.is_none() {
                self.grace = Some(now + k.grace_period);
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
        [self.close, self.grace, self.ping, self.idle].into_iter().flatten().min()
    }

    /// The first deadline at or before `now`, cleared.
    pub(crate) fn expired(&mut self, now: Instant) -> Option<Fired> {
        let due = |t: &mut Option<Instant>| t.is_some_and(|t| t <= now).then(|| *t = None).is_some();
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
