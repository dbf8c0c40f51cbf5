//! What the workers and the bus thread share, the envelope, and the bus thread's start.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{Notify, mpsc};

use crate::config::{Broker, BusConfig};
use crate::{BusError, BusStats, Kind};

/// A publish waiting in the queue for the bus thread.
pub(crate) struct Outgoing {
    pub(crate) topic: Box<str>,
    pub(crate) kind: Kind,
    pub(crate) payload: Bytes,
}

/// The callback of [`crate::Bus::connect`].
pub(crate) type Deliver = Box<dyn Fn(&str, Kind, Bytes) + Send>;

/// Counters (relaxed atomics: written by one thread, read by `stats`).
#[derive(Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    publish_dropped: AtomicU64,
    received: AtomicU64,
    receive_dropped: AtomicU64,
    own_skipped: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    subscriptions: AtomicUsize,
}

impl Counters {
    pub(crate) fn published(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }
    /// Counts `n` publishes that were not sent; says so at warn when the total reaches
    /// 1, 2, 4, 8, ... (not per message, which would slow a bus that is already behind).
    pub(crate) fn dropped(&self, n: u64) {
        let before = self.publish_dropped.fetch_add(n, Relaxed);
        let total = before + n;
        if n > 0 && before.checked_ilog2() != total.checked_ilog2() {
            tracing::warn!(
                total,
                "bus: publishes dropped (queue full, broker slow or unreachable, or lost with a connection)"
            );
        }
    }
    /// One more message dropped on the receiving side; the count so far.
    pub(crate) fn receive_dropped(&self) -> u64 {
        self.receive_dropped.fetch_add(1, Relaxed) + 1
    }
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }
    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
    }
    pub(crate) fn set_subscriptions(&self, n: usize) {
        self.subscriptions.store(n, Relaxed);
    }
}

/// The topics the process wants, and which of them changed since the bus thread last looked.
#[derive(Default)]
struct Desired {
    set: HashSet<String>,
    changed: HashSet<String>,
}

pub(crate) struct Shared {
    pub(crate) url: String,
    /// The topics the process wants; the bus thread makes the broker's subscriptions follow.
    desired: Mutex<Desired>,
    /// Payload bytes of the publishes in the queue, and the most they may be.
    queued_bytes: AtomicUsize,
    pub(crate) queue_bytes: usize,
    /// Wakes the bus thread when `desired` changed.
    pub(crate) changed: Notify,
    stopping: Notify,
    pub(crate) count: Counters,
}

impl Shared {
    pub(crate) fn new(url: String, queue_bytes: usize) -> Shared {
        Shared {
            url,
            desired: Mutex::new(Desired::default()),
            queued_bytes: AtomicUsize::new(0),
            queue_bytes,
            changed: Notify::new(),
            stopping: Notify::new(),
            count: Counters::default(),
        }
    }

    fn desired(&self) -> std::sync::MutexGuard<'_, Desired> {
        self.desired.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn want(&self, topic: &str, wanted: bool) {
        let changed = {
            let mut desired = self.desired();
            let changed = if wanted { desired.set.insert(topic.to_owned()) } else { desired.set.remove(topic) };
            if changed {
                desired.changed.insert(topic.to_owned());
            }
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// `topic` is to be looked at again by the next [`diff`](Self::diff) (its subscribe failed).
    pub(crate) fn mark_changed(&self, topic: &str) {
        self.desired().changed.insert(topic.to_owned());
    }

    /// What to subscribe and unsubscribe at the broker so that `subscribed` becomes the
    /// desired set: over every topic when `full` (a new session), else over those changed
    /// since the last call, so the lock the workers take is held for the changes only.
    pub(crate) fn diff<V>(&self, subscribed: &HashMap<String, V>, full: bool) -> (Vec<String>, Vec<String>) {
        let mut desired = self.desired();
        let changed = std::mem::take(&mut desired.changed);
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        if full {
            add.extend(desired.set.iter().filter(|t| !subscribed.contains_key(*t)).cloned());
            remove.extend(subscribed.keys().filter(|t| !desired.set.contains(*t)).cloned());
            return (add, remove);
        }
        for topic in changed {
            match (desired.set.contains(&topic), subscribed.contains_key(&topic)) {
                (true, false) => add.push(topic),
                (false, true) => remove.push(topic),
                _ => {}
            }
        }
        (add, remove)
    }

    /// Takes `bytes` of payload into the queue's budget; false (nothing taken) when they
    /// do not fit.
    pub(crate) fn take_bytes(&self, bytes: usize) -> bool {
        self.queued_bytes
            .fetch_update(Relaxed, Relaxed, |q| q.checked_add(bytes).filter(|&n| n <= self.queue_bytes))
            .is_ok()
    }

    /// Gives back the budget of publishes the broker has (or that were dropped): until
    /// then a batch taken off the queue still counts.
    pub(crate) fn release_bytes(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Relaxed);
    }

    pub(crate) fn stop(&self) {
        self.stopping.notify_one();
    }

    pub(crate) fn stats(&self) -> BusStats {
        let c = &self.count;
        BusStats {
            published: c.published.load(Relaxed),
            publish_dropped: c.publish_dropped.load(Relaxed),
            received: c.received.load(Relaxed),
            receive_dropped: c.receive_dropped.load(Relaxed),
            own_skipped: c.own_skipped.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            connected: c.connected.load(Relaxed),
            subscriptions: c.subscriptions.load(Relaxed),
            url: self.url.clone(),
        }
    }
}

/// Length of the envelope's header: the 16-byte instance id and the kind byte.
pub(crate) const HEADER: usize = 17;

/// What the bus thread's tasks need: the config, the shared state, `deliver`, the id.
pub(crate) struct Ctx {
    pub(crate) config: BusConfig,
    pub(crate) shared: std::sync::Arc<Shared>,
    deliver: Deliver,
    id: [u8; 16],
}

impl Ctx {
    /// The broker channel or subject of `topic`.
    pub(crate) fn channel(&self, topic: &str) -> String {
        crate::config::channel(self.config.broker(), self.config.prefix(), topic)
    }

    /// `payload` in the envelope: our id, the kind byte (0 text, 1 binary), the payload.
    pub(crate) fn envelope(&self, kind: Kind, payload: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER + payload.len());
        self.envelope_into(&mut b, kind, payload);
        b.freeze()
    }

    /// [`Ctx::envelope`] written at the end of `out`.
    pub(crate) fn envelope_into(&self, out: &mut impl BufMut, kind: Kind, payload: &[u8]) {
        out.put_slice(&self.id);
        out.put_u8(match kind {
            Kind::Text => 0,
            Kind::Binary => 1,
        });
        out.put_slice(payload);
    }

    /// A message from the broker on the channel of `topic`: delivered unless it is our own
    /// or malformed (both counted).
    pub(crate) fn on_message(&self, topic: &str, data: Bytes) {
        let c = &self.shared.count;
        if data.len() < HEADER {
            c.malformed.fetch_add(1, Relaxed);
            tracing::debug!(topic, len = data.len(), "bus: message shorter than the envelope skipped");
            return;
        }
        if data[..16] == self.id {
            c.own_skipped.fetch_add(1, Relaxed);
            return;
        }
        let kind = match data[16] {
            0 if std::str::from_utf8(&data[HEADER..]).is_ok() => Kind::Text,
            1 => Kind::Binary,
            k => {
                c.malformed.fetch_add(1, Relaxed);
                tracing::debug!(topic, kind = k, "bus: message with a bad kind byte or invalid UTF-8 text skipped");
                return;
            }
        };
        // A panic in `deliver` is contained here: the bus thread goes on with the next message.
        let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.deliver)(topic, kind, data.slice(HEADER..));
        }));
        if delivered.is_err() {
            tracing::error!(topic, "bus: the deliver callback panicked; the bus goes on");
        }
        // counted once delivered, so a caller that sees the count sees what `deliver` did
        c.received.fetch_add(1, Relaxed);
    }
}

/// The bus thread: one current-thread runtime running the broker's driver until `stop`.
/// `ready` gets `Ok` once connected, or the error that ends the start.
pub(crate) fn run(
    config: BusConfig,
    shared: std::sync::Arc<Shared>,
    queue: mpsc::Receiver<Outgoing>,
    deliver: Deliver,
    ready: std::sync::mpsc::Sender<Result<(), BusError>>,
) {
    let url = shared.url.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(source) => {
            let _ = ready.send(Err(BusError::Thread { url, source }));
            return;
        }
    };
    let mut id = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut id) {
        let _ = ready.send(Err(BusError::Thread { url, source: std::io::Error::other(e.to_string()) }));
        return;
    }
    let ctx = std::rc::Rc::new(Ctx { config, shared: shared.clone(), deliver, id });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let driver = async {
            match ctx.config.broker() {
                Broker::Redis => crate::redis_bus::run(ctx.clone(), queue, ready).await,
                Broker::Nats => crate::nats::run(ctx.clone(), queue, ready).await,
            }
        };
        tokio::select! {
            () = shared.stopping.notified() => {}
            () = driver => {}
        }
        shared.count.set_connected(false);
    });
}

/// The first connection, tried until it works when `wait_at_start`: `Some(connection)`
/// (and `Ok` sent on `ready`), or `None` after sending the error.
pub(crate) async fn first_connect<C, E, F>(
    ctx: &Ctx,
    ready: &std::sync::mpsc::Sender<Result<(), BusError>>,
    mut connect: impl FnMut() -> F,
) -> Option<C>
where
    F: std::future::Future<Output = Result<C, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let url = &ctx.shared.url;
    let mut attempt = 0;
    loop {
        match tokio::time::timeout(ctx.config.connect_timeout, connect()).await {
            Ok(Ok(c)) => {
                if attempt > 0 {
                    tracing::info!("bus: connected to {url}");
                }
                ctx.shared.count.set_connected(true);
                let _ = ready.send(Ok(()));
                return Some(c);
            }
            result => {
                let source: Box<dyn std::error::Error + Send + Sync> = match result {
                    Ok(Err(e)) => e.into(),
                    _ => format!("no connection within {:?}", ctx.config.connect_timeout).into(),
                };
                if !ctx.config.wait_at_start {
                    let _ = ready.send(Err(BusError::Connect { url: url.clone(), source }));
                    return None;
                }
                attempt += 1;
                if attempt == 1 {
                    tracing::warn!("bus: {url} unreachable ({source}); waiting for it");
                } else {
                    tracing::debug!("bus: {url} still unreachable ({source})");
                }
                tokio::time::sleep(ctx.config.backoff_jittered(attempt)).await;
            }
        }
    }
}
