//! Topics across processes: a [`ringwire_bus::Bus`] (Redis pub/sub or NATS) attached to
//! a server as its [`TopicBus`].
//!
//! ```no_run
//! use ringwire::bus::{BusConfig, ServerBus};
//! use ringwire::server::{Server, ServerConfig};
//! # #[derive(Clone)] struct Chat;
//! # impl ringwire::server::Handler for Chat {}
//!
//! let server = Server::bind(ServerConfig::default())?;
//! // Connects now (or fails: the broker is not there); BusConfig::wait_at_start waits.
//! let bus = ServerBus::connect(BusConfig::parse("redis://127.0.0.1:6379")?, &server)?;
//! let server = server.with_bus(bus.clone());
//! server.run_until_signal(Chat)?;
//! println!("{:?}, {} not delivered here", bus.stats(), bus.local_missed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use ringwire_conn::{OpCode, PreparedMessage, Utf8Bytes};
use ringwire_server::{Server, TopicBus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use ringwire_bus::{Broker, Bus, BusConfig, BusError, BusStats, Kind};

/// A [`Bus`] that delivers what other processes publish to one server's subscribers
/// ([`ServerHandle::publish_local`](ringwire_server::ServerHandle::publish_local)), and
/// hears of that server's topics and publishes as its [`TopicBus`]
/// ([`Server::with_bus`]).
pub struct ServerBus {
    bus: Bus,
    missed: Arc<AtomicU64>,
}

impl ServerBus {
    /// Connects to the bus (see [`Bus::connect`]) for `server`'s topics. Attach the result
    /// with [`Server::with_bus`]. The bus holds only a weak handle to the server, so
    /// dropping the server (and the handles to it) drops the bus and stops its thread.
    pub fn connect(config: BusConfig, server: &Server) -> Result<Arc<ServerBus>, BusError> {
        let server = server.handle().downgrade();
        let missed = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&missed);
        let deliver = move |topic: &str, kind: Kind, payload: Bytes| {
            let message = match kind {
                // The bus delivers text only when it is UTF-8.
                Kind::Text => match Utf8Bytes::try_from(payload) {
                    Ok(text) => PreparedMessage::text(text),
                    Err(_) => return,
                },
                Kind::Binary => PreparedMessage::binary(payload),
            };
            let Some(server) = server.upgrade() else { return };
            if let Err(ringwire_server::QueueError::Full { missed }) = server.publish_local(topic, message) {
                counted.fetch_add(missed as u64, Ordering::Relaxed);
            }
        };
        let bus = Bus::connect(config, deliver)?;
        Ok(Arc::new(ServerBus { bus, missed }))
    }

    /// The bus's counters.
    pub fn stats(&self) -> BusStats {
        self.bus.stats()
    }

    /// Messages from other processes that some worker of this server did not get, its
    /// mailbox full ([`ServerConfig::mailbox_capacity`](ringwire_server::ServerConfig::mailbox_capacity)):
    /// one per worker per message.
    pub fn local_missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl TopicBus for ServerBus {
    fn subscribe(&self, topic: &str) {
        self.bus.subscribe(topic);
    }

    fn unsubscribe(&self, topic: &str) {
        self.bus.unsubscribe(topic);
    }

    fn publish(&self, topic: &str, message: &PreparedMessage) {
        let kind = if message.opcode() == OpCode::Text { Kind::Text } else { Kind::Binary };
        // false: the bus's queue is full (the broker slow or away); the bus counts it.
        let _ = self.bus.publish(topic, kind, message.payload().clone());
    }
}

impl std::fmt::Debug for ServerBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBus").field("bus", &self.bus).finish_non_exhaustive()
    }
}

/// The bus's counters on `/metrics` ([`Metrics::with_source`](crate::metrics::Metrics::with_source)).
#[cfg(feature = "metrics")]
impl crate::metrics::Source for Arc<ServerBus> {
    fn encode(&self, w: &mut crate::metrics::Families<'_, '_>) -> std::fmt::Result {
        let s = self.stats();
        w.info("ringwire_bus_info", "The bus's broker (value 1; a password is shown as ***).", &[("url", &s.url)])?;
        w.gauge("ringwire_bus_connected", "1 while the bus is connected to its broker.", None, s.connected as i64)?;
        w.gauge(
            "ringwire_bus_subscriptions",
            "Topics this process is subscribed to at the broker.",
            None,
            s.subscriptions as i64,
        )?;
        w.counter("ringwire_bus_published", "Messages handed to the broker.", s.published)?;
        w.counter(
            "ringwire_bus_publish_dropped",
            "Messages not published: the bus queue full, over the broker's payload limit, or lost with a connection.",
            s.publish_dropped,
        )?;
        w.counter("ringwire_bus_received", "Messages of other processes delivered to this server.", s.received)?;
        w.counter(
            "ringwire_bus_receive_dropped",
            "Messages for this process dropped because receiving fell behind (a lower bound).",
            s.receive_dropped,
        )?;
        w.counter(
            "ringwire_bus_not_delivered",
            "Bus messages a worker missed because its mailbox was full (one per worker per message).",
            self.local_missed(),
        )?;
        w.counter("ringwire_bus_malformed", "Messages on the bus's channels without a valid envelope.", s.malformed)?;
        w.counter(
            "ringwire_bus_reconnects",
            "Times the connection to the broker was lost and made again.",
            s.reconnects,
        )
    }
}
