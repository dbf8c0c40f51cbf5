//! State shared by all workers of one server: mailboxes, the connection counts, shutdown.

use ringwire_conn::PreparedMessage;
use ringwire_io::{ConnId, Waker};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Why a command from another thread was not queued for a worker.
///
/// Returned by [`Remote`](crate::Remote)'s methods, [`ServerHandle::broadcast`](crate::ServerHandle::broadcast)
/// and [`Ws::broadcast`](crate::Ws::broadcast). Nothing is queued beyond a worker's
/// [`mailbox_capacity`](crate::ServerConfig::mailbox_capacity): a caller that outpaces a
/// worker is told so at once instead of growing its mailbox without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A worker's mailbox held `mailbox_capacity` commands it had not taken yet, so the
    /// command was not queued there. `missed` is how many workers did not get it: 1 for a
    /// [`Remote`](crate::Remote) call; for a broadcast, the workers whose mailbox was
    /// full (every other worker, and the calling worker's own connections for
    /// [`Ws::broadcast`](crate::Ws::broadcast), still got it). Try again later, or shed load.
    #[error("{missed} worker mailbox(es) full; the command was not queued there")]
    Full {
        /// Workers that did not get the command.
        missed: usize,
    },
    /// The server is shutting down (or the worker has stopped): nothing is queued any more.
    #[error("the server is shutting down")]
    Closed,
}

/// Work handed to a worker from another thread.
pub(crate) enum Command {
    /// For one connection (from its [`Remote`](crate::Remote)).
    Conn(ConnId, ringwire_drive::Command),
    Broadcast(PreparedMessage),
    /// To the worker's subscribers of a topic.
    Publish(Arc<str>, PreparedMessage),
}

/// Where a server's topics meet other processes: a message bus (Redis pub/sub, NATS, ...)
/// that [`Server::with_bus`](crate::Server::with_bus) attaches. The server tells it which
/// topics the process has subscribers for, and hands it what is published here; what the
/// bus receives from other processes it gives to
/// [`ServerHandle::publish_local`](crate::ServerHandle::publish_local).
///
/// The methods are called on worker threads and must not block (queue the work for a
/// thread of the bus's own). `subscribe` and `unsubscribe` come once per topic per
/// process, in order: `subscribe` when the first connection of any worker subscribes
/// to the topic, `unsubscribe` when the last one leaves it.
pub trait TopicBus: Send + Sync + 'static {
    /// The process has a subscriber of `topic` now.
    fn subscribe(&self, topic: &str);
    /// The process has no subscriber of `topic` left.
    fn unsubscribe(&self, topic: &str);
    /// `message` was published to `topic` in this process (by
    /// [`Ws::publish`](crate::Ws::publish) or [`ServerHandle::publish`](crate::ServerHandle::publish)):
    /// pass it on to the other processes.
    fn publish(&self, topic: &str, message: &PreparedMessage);
}

/// What a mailbox holds. Shutdown is a flag, not a queued command, so it is never
/// refused for lack of room.
struct Queue {
    commands: Vec<Command>,
    shutdown: bool,
    /// The worker has stopped: pushes fail with `Closed`.
    closed: bool,
}

/// One worker's inbox, bounded to `capacity` commands. A push wakes the worker's loop
/// (eventfd), coalesced.
pub(crate) struct Mailbox {
    queue: Mutex<Queue>,
    capacity: usize,
    waker: OnceLock<Waker>,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        let queue = Queue { commands: Vec::new(), shutdown: false, closed: false };
        Self { queue: Mutex::new(queue), capacity: capacity.max(1), waker: OnceLock::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
        self.wake();
    }

    /// Queues `cmd` unless the mailbox is full or closed.
    pub(crate) fn push(&self, cmd: Command) -> Result<(), QueueError> {
        let was_empty = {
            let mut q = self.lock();
            if q.closed {
                return Err(QueueError::Closed);
            }
            if q.commands.len() >= self.capacity {
                return Err(QueueError::Full { missed: 1 });
            }
            q.commands.push(cmd);
            q.commands.len() == 1
        };
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Asks the worker to shut down; never refused.
    pub(crate) fn push_shutdown(&self) {
        self.lock().shutdown = true;
        self.wake();
    }

    pub(crate) fn wake(&self) {
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
    }

    /// Moves every queued command into `out` (swapping buffers, no allocation in steady
    /// state); true once a shutdown was asked for (it comes after the commands).
    pub(crate) fn drain_into(&self, out: &mut Vec<Command>) -> bool {
        let mut q = self.lock();
        std::mem::swap(&mut q.commands, out);
        q.shutdown
    }

    /// The worker stopped: refuse further commands and free what is queued.
    pub(crate) fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.commands = Vec::new();
    }

    /// Commands queued and not yet taken by the worker.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().commands.len()
    }
}

/// Open connections per client IP, for `max_connections_per_ip`.
struct PerIp {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

pub(crate) struct Shared {
    pub(crate) workers: Vec<Mailbox>,
    /// Each worker's published counters, one block per worker.
    pub(crate) stats: Box<[crate::stats::StatsBlock]>,
    pub(crate) connections: AtomicUsize,
    pub(crate) max_connections: usize,
    /// `None` (the default): no per-address limit, and no lock on the accept path.
    per_ip: Option<PerIp>,
    pub(crate) shutting_down: AtomicBool,
    /// The TLS config every worker serves (and swaps on reload), when TLS is on.
    pub(crate) tls: Option<Arc<ringwire_tls::SharedServerConfig>>,
    /// The bus, when one is attached; set before the workers start.
    pub(crate) bus: OnceLock<Arc<dyn TopicBus>>,
    /// With a bus: how many workers have subscribers of each topic (touched when a
    /// worker gains its first or loses its last subscriber of a topic, never per message).
    topic_workers: Mutex<HashMap<Arc<str>, usize>>,
}

impl Shared {
    pub(crate) fn new(
        workers: usize,
        cfg: &crate::ServerConfig,
        tls: Option<Arc<ringwire_tls::SharedServerConfig>>,
    ) -> Self {
        let per_ip = cfg.max_connections_per_ip.filter(|&n| n > 0);
        Self {
            workers: (0..workers).map(|_| Mailbox::new(cfg.mailbox_capacity)).collect(),
            stats: (0..workers).map(|_| Default::default()).collect(),
            connections: AtomicUsize::new(0),
            max_connections: cfg.max_connections,
            per_ip: per_ip.map(|limit| PerIp { limit, counts: Mutex::new(HashMap::new()) }),
            shutting_down: AtomicBool::new(false),
            tls,
            bus: OnceLock::new(),
            topic_workers: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves a connection slot; false when the limit is reached.
    pub(crate) fn try_admit(&self) -> bool {
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_connections).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn release(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether connections are counted per client address.
    pub(crate) fn limits_per_ip(&self) -> bool {
        self.per_ip.is_some()
    }

    /// Counts one more connection from `ip`; false (and nothing counted) when `ip`
    /// already has `max_connections_per_ip` open. Always true without that limit.
    pub(crate) fn try_admit_ip(&self, ip: IpAddr) -> bool {
        let Some(p) = &self.per_ip else { return true };
        let mut counts = p.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= p.limit {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a connection counted by [`try_admit_ip`](Self::try_admit_ip).
    pub(crate) fn release_ip(&self, ip: IpAddr) {
        let Some(p) = &self.per_ip else { return };
        let mut counts = p.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&ip);
            }
        }
    }

    /// Queues `cmd` for `worker`; refused once the server is shutting down.
    pub(crate) fn push(&self, worker: usize, cmd: Command) -> Result<(), QueueError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        self.workers[worker].push(cmd)
    }

    /// Queues a broadcast for every worker except `skip`; `Full` counts the workers
    /// whose mailbox had no room (the others still get it).
    pub(crate) fn push_broadcast(&self, message: &PreparedMessage, skip: Option<usize>) -> Result<(), QueueError> {
        self.push_all(skip, || Command::Broadcast(message.clone()))
    }

    /// Queues `cmd()` for every worker except `skip`.
    fn push_all(&self, skip: Option<usize>, cmd: impl Fn() -> Command) -> Result<(), QueueError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        let mut missed = 0;
        let mut closed = false;
        for (i, w) in self.workers.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            match w.push(cmd()) {
                Ok(()) => {}
                Err(QueueError::Full { .. }) => missed += 1,
                Err(QueueError::Closed) => closed = true,
            }
        }
        if closed {
            Err(QueueError::Closed)
        } else if missed > 0 {
            Err(QueueError::Full { missed })
        } else {
            Ok(())
        }
    }

    /// Publishes to `topic`: to every worker except `skip`, and to the bus unless the
    /// server is shutting down.
    pub(crate) fn publish(
        &self,
        topic: &Arc<str>,
        message: &PreparedMessage,
        skip: Option<usize>,
    ) -> Result<(), QueueError> {
        let result = self.push_publish(topic, message, skip);
        if result != Err(QueueError::Closed)
            && let Some(bus) = self.bus.get()
        {
            bus.publish(topic, message);
        }
        result
    }

    /// Queues a publish to `topic` for every worker except `skip` (as
    /// [`push_broadcast`](Self::push_broadcast)).
    pub(crate) fn push_publish(
        &self,
        topic: &Arc<str>,
        message: &PreparedMessage,
        skip: Option<usize>,
    ) -> Result<(), QueueError> {
        self.push_all(skip, || Command::Publish(Arc::clone(topic), message.clone()))
    }

    /// A worker got its first subscriber of `topic`: the bus hears of it when it is the
    /// process's first.
    pub(crate) fn topic_added(&self, topic: &Arc<str>) {
        let Some(bus) = self.bus.get() else { return };
        let mut counts = self.topic_workers.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(Arc::clone(topic)).or_insert(0);
        *n += 1;
        if *n == 1 {
            // Under the lock, so the bus sees subscribes and unsubscribes in order.
            bus.subscribe(topic);
        }
    }

    /// A worker lost its last subscriber of `topic`.
    pub(crate) fn topic_removed(&self, topic: &Arc<str>) {
        let Some(bus) = self.bus.get() else { return };
        let mut counts = self.topic_workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(topic) {
            *n -= 1;
            if *n == 0 {
                counts.remove(topic);
                bus.unsubscribe(topic);
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        if !self.shutting_down.swap(true, Ordering::AcqRel) {
            for w in &self.workers {
                w.push_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mailbox_refuses_and_shutdown_still_gets_through() {
        let m = Mailbox::new(3);
        let id_cmd = || Command::Broadcast(PreparedMessage::text("x"));
        for _ in 0..3 {
            m.push(id_cmd()).unwrap();
        }
        assert_eq!(m.push(id_cmd()).unwrap_err(), QueueError::Full { missed: 1 });
        assert_eq!(m.len(), 3);
        m.push_shutdown();
        let mut out = Vec::new();
        assert!(m.drain_into(&mut out), "shutdown is seen although the queue was full");
        assert_eq!(out.len(), 3);
        m.push(id_cmd()).unwrap();
        m.close();
        assert_eq!(m.push(id_cmd()).unwrap_err(), QueueError::Closed);
        assert_eq!(m.len(), 0, "a stopped worker's queue is freed");
    }

    #[test]
    fn per_ip_counts_are_bounded_and_released() {
        let mut cfg = crate::ServerConfig { max_connections_per_ip: Some(2), ..Default::default() };
        let s = Shared::new(1, &cfg, None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(s.try_admit_ip(a) && s.try_admit_ip(a));
        assert!(!s.try_admit_ip(a), "a third from the same address is refused");
        assert!(s.try_admit_ip(b), "another address is counted apart");
        s.release_ip(a);
        assert!(s.try_admit_ip(a));
        for _ in 0..2 {
            s.release_ip(a);
        }
        s.release_ip(b);
        let p = s.per_ip.as_ref().unwrap();
        assert!(p.counts.lock().unwrap().is_empty(), "addresses with no connection are forgotten");
        cfg.max_connections_per_ip = None;
        assert!(!Shared::new(1, &cfg, None).limits_per_ip());
    }
}
