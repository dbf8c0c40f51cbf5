//! Connection configuration: WebSocket-Node's `ConnectionConfig` plus keepalive, idle
//! timeout and output flow control.

use std::time::Duration;

/// Keepalive: ping a silent peer, and drop it if it stays silent.
///
/// Any received byte resets both timers (WebSocket-Node does the same); our own sends
/// do not, since they say nothing about whether the peer is alive. The exception: while
/// the connection does not read because its output is above
/// [`Config::high_water_mark`], bytes written reset them (the peer is taking them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// Send a ping after this long without receiving anything (Node `keepaliveInterval`, 20 s).
    pub interval: Duration,
    /// After that ping, how long the peer has to send anything (Node `keepaliveGracePeriod`, 10 s).
    pub grace_period: Duration,
    /// Drop the connection with 1006 when the grace period ends
    /// (Node `dropConnectionOnKeepaliveTimeout`, true). When false, keep pinging.
    pub drop_on_timeout: bool,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self { interval: Duration::from_secs(20), grace_period: Duration::from_secs(10), drop_on_timeout: true }
    }
}

impl Keepalive {
    /// A keepalive with the given interval and grace period that drops on timeout.
    pub fn new(interval: Duration, grace_period: Duration) -> Self {
        Self { interval, grace_period, drop_on_timeout: true }
    }
}

/// What to do when a send would take the buffered amount over
/// [`Config::max_buffered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufferedLimitPolicy {
    /// Refuse the send and drop the peer with 1008 (policy violation): a peer that
    /// never reads cannot make us hold unbounded memory.
    Drop,
    /// Refuse the send with [`SendError::BufferLimitExceeded`](crate::SendError) and
    /// keep the connection: the application applies its own backpressure.
    Report,
}

/// Per-connection settings. Build with [`Config::server`] or [`Config::client`] and
/// change fields: the struct is `#[non_exhaustive]`, so new fields are not a breaking change.
///
/// ```
/// let mut cfg = ringwire_conn::Config::server();
/// cfg.max_received_frame_size = 16 << 20;
/// cfg.keepalive = None;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted; larger fails with 1009 as soon as the header
    /// arrives (Node `maxReceivedFrameSize`: server 64 KiB, client 1 MiB).
    pub max_received_frame_size: usize,
    /// Largest message accepted, checked on the running total at each frame header,
    /// single-frame messages included (Node checks only fragmented ones); 1009
    /// (Node `maxReceivedMessageSize`: server 1 MiB, client 8 MiB). Checked only while
    /// [`assemble_fragments`](Self::assemble_fragments) is on: without assembly
    /// nothing is held beyond one frame.
    pub max_received_message_size: usize,
    /// Split outgoing messages larger than [`fragmentation_threshold`](Self::fragmentation_threshold)
    /// into frames of that size (Node `fragmentOutgoingMessages`, true).
    pub fragment_outgoing_messages: bool,
    /// Payload bytes per outgoing frame when fragmenting (Node `fragmentationThreshold`, 16 KiB).
    pub fragmentation_threshold: usize,
    /// Assemble fragments into [`Event::Message`](crate::Event); when false, every
    /// frame received (data, continuation, ping, pong, close) is an
    /// [`Event::Frame`](crate::Event), no Message is emitted, and control frames are
    /// still handled after theirs (Node `assembleFragments`, true).
    pub assemble_fragments: bool,
    /// Node `disableNagleAlgorithm` (true): `TCP_NODELAY` on the connection's socket, so
    /// small writes go out at once. The connection has no socket; the server and client
    /// drivers set it when the connection opens.
    pub disable_nagle_algorithm: bool,
    /// After our close frame, how long to wait for the peer's before dropping
    /// (Node `closeTimeout`, 5 s).
    pub close_timeout: Duration,
    /// Keepalive pings (server: on, 20 s + 10 s; client: off, as in WebSocket-Node).
    pub keepalive: Option<Keepalive>,
    /// Node `useNativeKeepalive` (false): instead of pinging, let TCP find a dead peer.
    /// With [`keepalive`](Self::keepalive) set, the connection runs no keepalive timer and
    /// the drivers turn `SO_KEEPALIVE` on with its `interval` as the idle time before
    /// the first probe (`TCP_KEEPIDLE`; probes and their interval are the system's). A
    /// dead peer then ends the connection with a socket error (`on_error`) and 1006.
    /// Without `keepalive` it does nothing, as in Node.
    pub use_native_keepalive: bool,
    /// Close with 1001 after this long with nothing received and nothing written (off).
    pub idle_timeout: Option<Duration>,
    /// A send that leaves more than this many bytes buffered returns
    /// [`SendStatus::BufferFull`](crate::SendStatus) (Node's `false`) (64 KiB). While
    /// more than this is buffered (control frames count), the connection also stops
    /// reading: [`Connection::wants_read`](crate::Connection::wants_read) is false until
    /// the amount falls to [`low_water_mark`](Self::low_water_mark), so a peer that
    /// does not read what we answer cannot keep making us answer.
    pub high_water_mark: usize,
    /// After a `BufferFull`, [`Event::Drain`](crate::Event) is emitted once the buffered
    /// amount falls to this many bytes or fewer (16 KiB; see `docs/conn.md`). The same
    /// mark governs two more things: reading stopped at the high-water mark starts again
    /// here, and automatic pongs are queued only while at most this much is buffered
    /// (owed ones go as soon as the amount falls to it, before the Drain, so an
    /// application that refills at every Drain does not starve them).
    ///
    /// `0` is WebSocket-Node's `'drain'`: emitted when the output is empty
    /// ([`buffered_amount`](crate::Connection::buffered_amount) is 0 when the
    /// application sees it). Reading then resumes, and pongs are queued, only once
    /// everything is written, and the socket runs dry before the application refills it.
    pub low_water_mark: usize,
    /// Hard limit on buffered bytes, control frames included; a send, [`ping`] or
    /// [`pong`] that would exceed it is refused and
    /// [`buffered_limit_policy`](Self::buffered_limit_policy) applies (64 MiB). An
    /// automatic pong that does not fit waits until it does; a keepalive ping that does
    /// not fit is skipped (its grace period still runs). Only our close frame (and a
    /// pong owed just before it) may go over. `None`: no limit.
    ///
    /// This is a safety net against a peer that never reads, not flow control (that is
    /// [`high_water_mark`](Self::high_water_mark) and
    /// [`SendStatus::BufferFull`](crate::SendStatus::BufferFull)), so the default is
    /// loose: the library cannot know what an application sends, and 64 MiB holds eight
    /// messages of the largest size WebSocket-Node's client accepts by default (8 MiB).
    /// The `ringwire` binary sets 16 MiB, since it only sends back messages of at most
    /// its own `--max-message-size`. Set it to what one slow peer may cost you.
    ///
    /// [`ping`]: crate::Connection::ping
    /// [`pong`]: crate::Connection::pong
    pub max_buffered: Option<usize>,
    /// What happens at [`max_buffered`](Self::max_buffered) (drop the peer with 1008).
    pub buffered_limit_policy: BufferedLimitPolicy,
    /// Answer pings automatically (the application can still cancel one pong with
    /// [`Connection::cancel_pong`](crate::Connection::cancel_pong)) (true). Every ping
    /// gets its pong while at most [`low_water_mark`](Self::low_water_mark) is
    /// unwritten; beyond it pongs wait, at most sixteen owed, and a ping that finds
    /// sixteen owed replaces the newest (RFC 6455 5.5.3 lets an endpoint answer only the
    /// most recent), so a ping flood from a peer that never reads costs at most the
    /// low-water mark plus sixteen pongs, not one pong per ping.
    pub auto_pong: bool,
    /// permessage-deflate (RFC 7692): `None` (the default, as WebSocket-Node, which has
    /// none) neither offers nor accepts it. A server accepts a client's offer with these
    /// settings; a client offers them. Never negotiated while
    /// [`assemble_fragments`](Self::assemble_fragments) is off (frames are handed out
    /// as they arrive, so there is no message to inflate).
    ///
    /// `server_no_context_takeover` and `client_no_context_takeover` both set is
    /// uWebSockets' shared mode: no compression state per connection at all (one
    /// compressor and one decompressor per thread, and a broadcast compressed once for
    /// every recipient). Without them a connection keeps its own (dedicated mode:
    /// better ratio, zlib's memory per connection, allocated when its first compressed
    /// message is sent or received).
    pub deflate: Option<crate::deflate::DeflateConfig>,
}

impl Config {
    /// WebSocket-Node's `WebSocketServer` defaults.
    pub fn server() -> Self {
        Self {
            max_received_frame_size: 0x1_0000,
            max_received_message_size: 0x10_0000,
            fragment_outgoing_messages: true,
            fragmentation_threshold: 0x4000,
            assemble_fragments: true,
            disable_nagle_algorithm: true,
            close_timeout: Duration::from_secs(5),
            keepalive: Some(Keepalive::default()),
            use_native_keepalive: false,
            idle_timeout: None,
            high_water_mark: 64 << 10,
            low_water_mark: 16 << 10,
            max_buffered: Some(64 << 20),
            buffered_limit_policy: BufferedLimitPolicy::Drop,
            auto_pong: true,
            deflate: None,
        }
    }

    /// WebSocket-Node's `WebSocketClient` defaults (larger limits, no keepalive).
    pub fn client() -> Self {
        Self {
            max_received_frame_size: 0x10_0000,
            max_received_message_size: 0x80_0000,
            keepalive: None,
            use_native_keepalive: false,
            ..Self::server()
        }
    }

    /// The defaults for `role`.
    pub fn for_role(role: crate::Role) -> Self {
        match role {
            crate::Role::Server => Self::server(),
            crate::Role::Client => Self::client(),
        }
    }
}

impl Default for Config {
    /// The server defaults.
    fn default() -> Self {
        Self::server()
    }
}
