//! Fan-out across ringwire processes over a real broker: Redis pub/sub or NATS.
//!
//! A [`Bus`] is one thread per process (named `ringwire-bus`) running one tokio
//! current-thread runtime with the broker's client (the `redis` crate or `async-nats`).
//! Worker threads talk to it only through calls that never block:
//!
//! - [`Bus::subscribe`] / [`Bus::unsubscribe`]: the process wants (or no longer wants) the
//!   messages of a topic. The bus keeps the desired set and makes the broker's
//!   subscriptions follow it (one broker subscription per topic per process), again after
//!   every reconnect.
//! - [`Bus::publish`]: queue a message for every *other* process on the bus (bounded queue:
//!   `false` when full, counted).
//! - `deliver` (given to [`Bus::connect`]): called on the bus thread once per message of a
//!   subscribed topic that another process published. A process's own messages never come
//!   back: each carries an envelope with a random 16-byte id of the [`Bus`] instance.
//!
//! Delivery is at most once: a message in flight when the broker goes away is lost (and
//! counted as dropped when the bus knows it was not sent). Topic-to-channel mapping, the
//! envelope format and the figures are in `docs/scaling.md` ("Bus").
//!
//! ```no_run
//! use ringwire_bus::{Bus, BusConfig, Kind};
//!
//! let config = BusConfig::parse("redis://127.0.0.1:6379")?;
//! let bus = Bus::connect(config, |topic: &str, kind: Kind, payload: bytes::Bytes| {
//!     // on the bus thread: hand the message to the local subscribers of `topic`
//!     println!("{topic}: {kind:?}, {} bytes", payload.len());
//! })?;
//! bus.subscribe("/chat/room1");
//! assert!(bus.publish("/chat/room1", Kind::Text, bytes::Bytes::from_static(b"hello")));
//! println!("{:?}", bus.stats());
//! # Ok::<(), ringwire_bus::BusError>(())
//! ```

mod config;
mod nats;
mod redis_bus;
mod shared;

pub use config::{Broker, BusConfig};

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::mpsc;

use shared::{Outgoing, Shared};

/// The kind of a message: what WebSocket opcode a process sends it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A text message (valid UTF-8: a text message that is not is skipped as malformed).
    Text,
    /// A binary message.
    Binary,
}

/// What can go wrong when setting a bus up. Once connected, a [`Bus`] reports no errors:
/// it reconnects, logs, and counts (see [`BusStats`]).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus URL cannot be used.
    #[error("bus URL {url}: {why}")]
    Url {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The broker could not be reached (and [`BusConfig::wait_at_start`] was not set).
    #[error("bus {url}: cannot connect: {source}")]
    Connect {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bus thread could not be started.
    #[error("bus {url}: cannot start the bus thread: {source}")]
    Thread {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Counters of a [`Bus`] since it was connected. Every accepted or refused [`Bus::publish`]
/// ends up in `published` or `publish_dropped` (once the queue has drained).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusStats {
    /// Messages handed to the broker's connection (Redis: confirmed by the broker; NATS:
    /// taken by the client's connection, which may still lose them if the connection drops).
    pub published: u64,
    /// Messages not published: refused by a full queue (`publish` returned false), over the
    /// broker's maximum payload, or lost with a connection that failed before the broker
    /// confirmed them (those may have been delivered).
    pub publish_dropped: u64,
    /// Messages of other processes handed to `deliver` (counted after it returned).
    pub received: u64,
    /// Messages for this process dropped before `deliver` because receiving fell behind,
    /// at least this many (NATS: the client's per-subscription buffer of 65,536 messages was
    /// full; counted from its slow-consumer events, which it drops itself when they come
    /// faster than they are read, so this is a lower bound). Redis' client buffers without
    /// bound instead.
    pub receive_dropped: u64,
    /// This bus's own messages that came back from the broker (skipped, never delivered).
    pub own_skipped: u64,
    /// Messages on our channels that do not carry a valid envelope (skipped).
    pub malformed: u64,
    /// How many times the connection to the broker was lost and made again.
    pub reconnects: u64,
    /// Whether the bus is connected to the broker now.
    pub connected: bool,
    /// Topics subscribed at the broker now (counted once the broker has answered a command
    /// sent after the SUBSCRIBE / SUB: a message published after that reaches this bus).
    pub subscriptions: usize,
    /// The broker's URL, with any password replaced by `***`.
    pub url: String,
}

/// A connection of this process to the bus. See the [crate docs](crate).
pub struct Bus {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Outgoing>,
    thread: Option<JoinHandle<()>>,
}

impl Bus {
    /// Starts the bus thread and connects. Broker unreachable: `Err(BusError::Connect{url,
    /// source})` at once, unless `config.wait_at_start` (then it retries with backoff,
    /// logging once per state change, and returns when connected).
    ///
    /// `deliver` is called on the bus thread for each message of a subscribed topic that
    /// another process published: keep it short (hand the message over to the workers). A
    /// panic in it is caught and logged; the bus goes on.
    pub fn connect(config: BusConfig, deliver: impl Fn(&str, Kind, Bytes) + Send + 'static) -> Result<Bus, BusError> {
        let url = config.redacted_url().to_owned();
        let shared = Arc::new(Shared::new(url.clone(), config.queue_bytes));
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ringwire-bus".into())
            .spawn(move || shared::run(config, thread_shared, rx, Box::new(deliver), ready_tx))
            .map_err(|source| BusError::Thread { url: url.clone(), source })?;
        let started = ready_rx.recv().unwrap_or_else(|_| {
            Err(BusError::Connect { url: url.clone(), source: "the bus thread ended before connecting".into() })
        });
        match started {
            Ok(()) => Ok(Bus { shared, queue, thread: Some(thread) }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// The process wants messages of `topic` (called by the server when the process's first
    /// subscriber to it appears). Idempotent. Never blocks on the broker (a short lock on
    /// the desired set), never dropped: the broker's subscriptions follow the set.
    pub fn subscribe(&self, topic: &str) {
        self.shared.want(topic, true);
    }

    /// The process has no subscriber of `topic` left. Idempotent. Never blocks on the broker.
    pub fn unsubscribe(&self, topic: &str) {
        self.shared.want(topic, false);
    }

    /// Publishes to every other process on the bus. Never blocks: `false` (counted in
    /// [`BusStats::publish_dropped`], and logged at 1, 2, 4, 8, ... drops) when
    /// `queue_capacity` messages or `queue_bytes` of payload are already waiting (for
    /// example while the broker is down).
    pub fn publish(&self, topic: &str, kind: Kind, payload: Bytes) -> bool {
        let len = payload.len();
        let sent = self.shared.take_bytes(len) && {
            let queued = self.queue.try_send(Outgoing { topic: topic.into(), kind, payload }).is_ok();
            if !queued {
                self.shared.release_bytes(len);
            }
            queued
        };
        if !sent {
            self.shared.count.dropped(1);
        }
        sent
    }

    /// The counters and state of this bus.
    pub fn stats(&self) -> BusStats {
        self.shared.stats()
    }
}

impl Drop for Bus {
    /// Stops the bus thread (what is still queued is not sent) and joins it, unless this
    /// runs on the bus thread itself: `deliver` may hold the last reference to what owns
    /// the bus (a server whose other handles are gone), and a thread cannot join itself;
    /// it ends on its own once stopped.
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("url", &self.shared.url).finish_non_exhaustive()
    }
}
