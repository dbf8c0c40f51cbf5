//! # ringwire-io
//!
//! A per-thread event loop over TCP with two backends behind one interface: io_uring (multishot
//! accept, multishot recv into one provided-buffer ring per loop, vectored `sendmsg` straight out
//! of the queued [`Bytes`]) and epoll (mio, edge-triggered) as the fallback. Nothing here knows
//! about WebSocket: the loop calls a [`Handler`] with connection events and the handler acts
//! through [`Io`].
//!
//! - [`detect`] picks the backend once at start-up and says why ([`Detected::reason`]).
//! - [`bind_reuseport`] makes one `SO_REUSEPORT` listener per worker thread.
//! - [`EventLoop::new`] makes one loop per thread and a [`Waker`] other threads can use.
//!
//! ```
//! use std::net::SocketAddr;
//! use ringwire_io::bytes::Bytes;
//! use ringwire_io::{detect, ConnId, EventLoop, Handler, Io, IoChoice, LoopConfig, RecvBuf};
//!
//! /// Echoes every byte back; the client half sends "ping" and stops when it is echoed.
//! struct Echo { server: SocketAddr, client: Option<ConnId>, got: Vec<u8> }
//!
//! impl Handler for Echo {
//!     fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
//!     fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
//!         result.expect("connect");
//!         io.send(conn, Bytes::from_static(b"ping"));
//!     }
//!     fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
//!         if Some(conn) == self.client {
//!             self.got.extend_from_slice(&data);
//!             if self.got == b"ping" { io.stop(); }
//!         } else {
//!             // The server side echoes (a large receive is lent without a copy on io_uring).
//!             io.send(conn, data.into_bytes());
//!         }
//!     }
//!     fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
//! }
//!
//! let detected = detect(IoChoice::Auto)?;
//! println!("io backend: {} ({})", detected.backend, detected.reason);
//! let listener = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 128)?.remove(0);
//! let server = listener.local_addr()?;
//! let (mut ev, _waker) = EventLoop::new(detected.backend, &LoopConfig::default())?;
//! ev.add_listener(listener)?;
//! let client = ev.connect(server)?;
//! let mut h = Echo { server, client: Some(client), got: Vec::new() };
//! ev.run(&mut h)?;
//! assert_eq!(h.got, b"ping");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! See `README.md` in this crate for the design (buffer ring, send-buffer ownership, fallback
//! rules).

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

mod common;
mod epoll;
#[allow(unsafe_code)]
mod recv_buf;
#[allow(unsafe_code)]
mod sys;
mod uring;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// The I/O backend an [`EventLoop`] runs on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Backend {
    /// io_uring (Linux 6.0+ for multishot recv and provided-buffer rings).
    Uring,
    /// epoll through mio: the fallback where io_uring is unavailable or denied.
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// What the operator asked for (the server's `--io` flag).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum IoChoice {
    /// io_uring if it works here, otherwise epoll. `RINGWIRE_IO` may override it.
    #[default]
    Auto,
    /// io_uring, required: [`detect`] fails if it is unavailable.
    Uring,
    /// epoll, forced.
    Epoll,
}

impl FromStr for IoChoice {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(IoChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoChoice::Uring),
            "epoll" => Ok(IoChoice::Epoll),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid io backend {s:?}: expected one of auto, uring, epoll"),
            )),
        }
    }
}

impl fmt::Display for IoChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoChoice::Auto => "auto",
            IoChoice::Uring => "uring",
            IoChoice::Epoll => "epoll",
        })
    }
}

/// The outcome of [`detect`]: the backend to use and why (for the one start-up log line).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Detected {
    /// The backend every worker should use.
    pub backend: Backend,
    /// Why: the kernel and features for io_uring, or the error that ruled it out.
    pub reason: String,
}

/// Environment variable that overrides [`IoChoice::Auto`] (`auto`, `uring` or `epoll`).
pub const ENV_IO: &str = "RINGWIRE_IO";
/// Environment variable that, set to `1`, makes every io_uring ring creation fail with `EPERM`
/// (the test switch for the fallback).
pub const ENV_URING_DENY: &str = "RINGWIRE_IO_URING_DENY";

/// Picks the backend once, at start-up.
///
/// `Auto` takes io_uring if a ring with the loop's flags can be created, the opcodes the loop
/// needs probe as supported, a provided-buffer ring registers, and a NOP round trip completes
/// within a bounded wait; any error at all means epoll, with the error in the reason.
/// `RINGWIRE_IO` overrides `Auto` only. `Uring` fails with the reason if io_uring is unusable;
/// `Epoll` is forced.
pub fn detect(choice: IoChoice) -> io::Result<Detected> {
    let (choice, source) = match choice {
        IoChoice::Auto => match std::env::var(ENV_IO) {
            Ok(v) if !v.trim().is_empty() => {
                let c: IoChoice =
                    v.parse().map_err(|e: io::Error| io::Error::new(e.kind(), format!("{ENV_IO}: {e}")))?;
                (c, format!("{ENV_IO}={}", v.trim()))
            }
            _ => (IoChoice::Auto, String::new()),
        },
        c => (c, format!("--io {c}")),
    };
    match choice {
        IoChoice::Epoll => Ok(Detected { backend: Backend::Epoll, reason: format!("forced by {source}") }),
        IoChoice::Uring => match uring::probe() {
            Ok(info) => Ok(Detected { backend: Backend::Uring, reason: format!("{info}; required by {source}") }),
            Err(e) => Err(io::Error::new(e.kind(), format!("io_uring required by {source} but unavailable: {e}"))),
        },
        IoChoice::Auto => {
            let suffix = if source.is_empty() { String::new() } else { format!("; {source}") };
            match uring::probe() {
                Ok(info) => Ok(Detected { backend: Backend::Uring, reason: format!("{info}{suffix}") }),
                Err(e) => Ok(Detected { backend: Backend::Epoll, reason: format!("{e}{suffix}") }),
            }
        }
    }
}

/// A connection handle: slot index plus generation, so a stale id never reaches a newer
/// connection that reuses the slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnId {
    idx: u32,
    generation: u32,
}

impl ConnId {
    /// The slot index (dense, small: handy for a handler's own per-connection table).
    pub fn index(self) -> usize {
        self.idx as usize
    }

    /// An id for slot `index`, generation 0, as a loop's first connection there gets:
    /// for tests of tables keyed by ids, outside a loop.
    #[doc(hidden)]
    pub fn for_tests(index: usize) -> Self {
        Self { idx: index as u32, generation: 0 }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.idx, self.generation)
    }
}

/// Per-loop settings.
///
/// Every connection ends within a bounded time once its close starts: from [`Io::close`] (or
/// the peer's EOF, which starts the same graceful close) to [`Handler::on_closed`] takes at
/// most `flush_timeout + close_linger`, plus one loop turn. [`Io::abort`] takes one turn (on
/// io_uring: until the kernel has let go of what it was doing on the socket, which the cancel
/// makes quick).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopConfig {
    /// Provided receive buffers per loop (io_uring); a power of two, at most 32768. Default 128
    /// (32 MiB of buffers with the default size, mapped only as data arrives).
    pub buf_count: u16,
    /// Size of each receive buffer in bytes. Default 256 KiB: a 64 KiB message usually
    /// arrives whole in one buffer and reaches the handler without a copy.
    pub buf_size: u32,
    /// Let the kernel consume receive buffers incrementally where it can (io_uring,
    /// `IOU_PBUF_RING_INC`, Linux 6.12+): a receive takes only the bytes it fills and the
    /// next continues in the same buffer, so a small receive does not take a whole buffer.
    /// Default true. With `false`, or where the kernel cannot, each receive takes a buffer;
    /// where the kernel cannot, buffers over 32 KiB are also split into 32 KiB ones (as many
    /// as fill the same memory), so small receives do not drain the ring.
    pub buf_incremental: bool,
    /// Submission queue entries (io_uring), 8..=32768. Default 4096.
    pub ring_entries: u32,
    /// Completion queue entries (io_uring): 0 for twice `ring_entries` (the default), otherwise
    /// `ring_entries..=65536` (the kernel rounds it up to a power of two). Completions that do
    /// not fit wait in the kernel's overflow list, which the loop drains in the same turn, so
    /// a small queue costs extra system calls, never data; size it for the connections one
    /// loop serves (a broadcast completes one send per connection at once).
    pub cq_entries: u32,
    /// Set `TCP_NODELAY` on new connections (one connection can change it with
    /// [`Io::set_nodelay`]). Default true.
    pub nodelay: bool,
    /// How long a graceful close ([`Io::close`], or the peer's EOF) may take to write the
    /// queued output and shut down the write side. A peer that stops reading (a zero receive
    /// window) would otherwise hold the connection forever; when the deadline passes, the
    /// connection is aborted as by [`Io::abort`] (reset, queued output dropped) and
    /// `on_closed` reports `TimedOut`. Default 5 s.
    pub flush_timeout: Duration,
    /// After a graceful close wrote everything and shut down its write side, how long to keep
    /// reading (and dropping) input while waiting for the peer's EOF before closing the fd.
    /// Closing earlier while the peer still sends makes the kernel reset the connection, which
    /// can destroy output the peer has not read yet. Default 2 s.
    pub close_linger: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            buf_count: 128,
            buf_size: 256 << 10,
            buf_incremental: true,
            ring_entries: 4096,
            cq_entries: 0,
            nodelay: true,
            flush_timeout: Duration::from_secs(5),
            close_linger: Duration::from_secs(2),
        }
    }
}

/// The largest completion queue the kernel accepts (`IORING_MAX_CQ_ENTRIES`).
const MAX_CQ_ENTRIES: u32 = 65536;

impl LoopConfig {
    fn validate(&self) -> io::Result<()> {
        let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
        if self.buf_count == 0 || !self.buf_count.is_power_of_two() || self.buf_count > 32768 {
            return bad(format!("LoopConfig.buf_count = {}: must be a power of two in 1..=32768", self.buf_count));
        }
        if self.buf_size < 512 || self.buf_size > (1 << 30) {
            return bad(format!("LoopConfig.buf_size = {}: must be in 512..=2^30", self.buf_size));
        }
        if self.ring_entries < 8 || self.ring_entries > 32768 {
            return bad(format!("LoopConfig.ring_entries = {}: must be in 8..=32768", self.ring_entries));
        }
        if self.cq_entries != 0 && !(self.ring_entries..=MAX_CQ_ENTRIES).contains(&self.cq_entries) {
            return bad(format!(
                "LoopConfig.cq_entries = {}: must be 0 (twice ring_entries) or in ring_entries ({})..={MAX_CQ_ENTRIES}",
                self.cq_entries, self.ring_entries
            ));
        }
        Ok(())
    }

    /// The completion queue size asked of the kernel.
    fn cq_size(&self) -> u32 {
        if self.cq_entries == 0 { self.ring_entries * 2 } else { self.cq_entries }
    }
}

/// Accepts that failed on one loop's listeners since it started ([`LoopStats::accept_errors`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptErrors {
    /// Out of file descriptors: `EMFILE` (this process's limit) or `ENFILE` (the system's).
    pub out_of_descriptors: u64,
    /// Any other error: a connection that failed while queued (`ECONNABORTED`, ...), out
    /// of memory, or one the loop does not expect.
    pub other: u64,
}

/// What one loop counted of itself since it started ([`Io::loop_stats`]): counters never
/// reset, and the receive-buffer gauges as of the end of the last turn. The io_uring
/// fields stay 0 on epoll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Accepts that failed on the loop's listeners.
    pub accept_errors: AcceptErrors,
    /// io_uring: turns in which completions overflowed the completion queue into the
    /// kernel's overflow list (handled, at the cost of extra system calls; a larger
    /// [`LoopConfig::cq_entries`] avoids it).
    pub cq_overflows: u64,
    /// io_uring: receive buffers in the loop's provided-buffer ring ([`LoopConfig::buf_count`]).
    pub recv_buffers: u64,
    /// io_uring: gauge, the receive-buffer window: how many of those buffers the kernel
    /// may fill at once (it doubles when a receive finds none, shrinks after a quiet period).
    pub recv_buffer_window: u64,
    /// io_uring: gauge, receive buffers lent to the application as `Bytes`
    /// ([`RecvBuf::into_bytes`]) and not back in the ring yet (at most a quarter of them).
    pub recv_buffers_lent: u64,
    /// io_uring: receives that found no buffer in the window (the window then doubled).
    pub recv_buffers_exhausted: u64,
    /// io_uring: times the window shrank after a quiet period (its pages given back).
    pub recv_window_shrinks: u64,
    /// TLS handshakes completed (filled in by a TLS layer over the loop, such as
    /// `ringwire-tls`'s `TlsIo`; 0 without one).
    pub tls_handshakes: u64,
    /// TLS handshakes that failed: a TLS error, the handshake timeout, or a peer that
    /// closed before the handshake was done.
    pub tls_handshake_failures: u64,
}

/// The connection events of one loop. All methods run on the loop's thread.
pub trait Handler {
    /// A listener accepted `conn` from `peer`.
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr);
    /// An outgoing connection from [`Io::connect`] finished connecting. On error,
    /// [`Handler::on_closed`] follows with the same error kind.
    fn on_connect(&mut self, _io: &mut impl Io, _conn: ConnId, _result: io::Result<()>) {}
    /// Bytes arrived. `data` is in the loop's receive buffer, recycled on return unless
    /// kept as `Bytes` ([`RecvBuf::into_bytes`]: on io_uring a large receive is lent without a
    /// copy).
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>);
    /// The buffer given to [`Io::recv_into`] comes back, holding the bytes received into it
    /// (it may hold none new: the peer's EOF follows). Only handlers that call `recv_into`
    /// hear this; the default drops the buffer. A connection that closes (or is closed,
    /// aborted, or fails) first drops its buffer instead: input is no longer delivered.
    fn on_data_into(&mut self, _io: &mut impl Io, _conn: ConnId, _buf: BytesMut) {}
    /// `bytes` of the queued output of `conn` were written to the socket.
    fn on_sent(&mut self, _io: &mut impl Io, _conn: ConnId, _bytes: usize) {}
    /// The connection is gone: peer EOF (`None`, after queued output was written), reset or
    /// error (`Some`), or the end of [`Io::close`] / [`Io::abort`] (`None`; `TimedOut` when a
    /// graceful close missed [`LoopConfig::flush_timeout`] and was aborted). Called exactly
    /// once per connection; the id is dead afterwards.
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<io::Error>);
    /// The deadline set with [`Io::set_timer`] passed.
    fn on_timer(&mut self, _io: &mut impl Io, _conn: ConnId) {}
    /// [`Waker::wake`] was called (many wakes may be coalesced into one call).
    fn on_wake(&mut self, _io: &mut impl Io) {}
    /// Called once per loop turn, before output is submitted.
    fn on_turn_end(&mut self, _io: &mut impl Io) {}
}

/// What a [`Handler`] can do. Methods on a dead or unknown [`ConnId`] do nothing.
pub trait Io {
    /// The time at the start of this loop turn.
    fn now(&self) -> Instant;
    /// Queues `chunk` on `conn`; chunks are written in order. All chunks queued during one turn
    /// go out as one vectored send. The `Bytes` are held until the kernel is done with them.
    fn send(&mut self, conn: ConnId, chunk: Bytes);
    /// Bytes queued or in flight on `conn` and not yet written.
    fn queued(&self, conn: ConnId) -> usize;
    /// Graceful close: write everything queued, `shutdown(WR)`, then read and drop input until
    /// the peer's EOF or [`LoopConfig::close_linger`], then close. `on_closed` follows. No
    /// `on_data` is delivered after `close`, and later `send`s are dropped; `on_timer` still
    /// fires until `on_closed`.
    ///
    /// Bounded: if the output is not all written and the write side shut down within
    /// [`LoopConfig::flush_timeout`] (a peer that does not read), the connection is aborted
    /// as by [`Io::abort`] and `on_closed` reports `TimedOut`. From `close` to `on_closed`
    /// takes at most `flush_timeout + close_linger`, plus one loop turn. A peer's EOF starts
    /// the same graceful close, with the same bound.
    fn close(&mut self, conn: ConnId);
    /// Close now, discarding queued output, with a reset: `SO_LINGER` {on, 0} is set before
    /// the descriptor is closed, so the kernel drops unsent data at once and sends RST instead
    /// of FIN (what nginx's `reset_timedout_connection` does); the socket and its buffers are
    /// released promptly whatever the peer does. `on_closed` follows.
    fn abort(&mut self, conn: ConnId);
    /// Stop delivering `on_data` for `conn`. No byte is lost: data that arrives meanwhile is
    /// kept (io_uring) or left in the socket (epoll) and delivered after `resume_read`.
    fn pause_read(&mut self, conn: ConnId);
    /// Deliver `on_data` again, starting with anything kept while paused.
    fn resume_read(&mut self, conn: ConnId);
    /// Receives the next bytes of `conn` (at most `max`) straight into the spare capacity of
    /// `buf`, for a large payload whose size is known: the kernel copies them once, into
    /// their final place, instead of into a receive buffer they are copied out of again.
    /// [`Handler::on_data_into`] hands `buf` back with them appended (those that arrived, at
    /// least one unless the peer's EOF came), unless the connection closes first; no `on_data`
    /// comes between this call and that, and later bytes come by `on_data` again unless
    /// `recv_into` is called again.
    ///
    /// `Err(buf)`, untouched, where it cannot: on the epoll backend and through TLS (which
    /// decrypt into their own buffers), on a connection that is paused, closing, at EOF, with
    /// input kept from a pause still to deliver or with a target already, when `max` is 0 or
    /// `buf` has less spare capacity than `max`.
    fn recv_into(&mut self, _conn: ConnId, buf: BytesMut, _max: usize) -> Result<(), BytesMut> {
        Err(buf)
    }
    /// Sets (or with `None` clears) the one deadline of `conn`; `on_timer` fires once it passes.
    fn set_timer(&mut self, conn: ConnId, at: Option<Instant>);
    /// Starts an outgoing connection; `on_connect` follows.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId>;
    /// Closes the listeners (step 1 of a graceful shutdown). Open connections stay.
    fn stop_accepting(&mut self);
    /// Makes [`EventLoop::run`] return at the end of this turn.
    fn stop(&mut self);
    /// Live connections (accepted or connecting, not yet reported closed).
    fn conn_count(&self) -> usize;
    /// What this loop counted of itself so far: failed accepts, io_uring's CQ overflows
    /// and receive-buffer window.
    fn loop_stats(&self) -> LoopStats;
    /// The peer address of `conn`.
    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr>;
    /// Turns `TCP_NODELAY` on the socket of `conn` on (`true`: small writes go out at once) or
    /// off (`false`: Nagle's algorithm may hold a small segment back until earlier data is
    /// acknowledged), effective at once. Connections start with [`LoopConfig::nodelay`]. The
    /// error is the `setsockopt` one; a dead or unknown id does nothing and returns `Ok`.
    fn set_nodelay(&mut self, conn: ConnId, on: bool) -> io::Result<()>;
    /// TCP keepalive on the socket of `conn`, effective at once. `Some(idle)` turns
    /// `SO_KEEPALIVE` on and sets `TCP_KEEPIDLE`, how long the connection is quiet before the
    /// first probe, to `idle` rounded up to whole seconds (within 1..=32767 s, what Linux
    /// accepts); the interval between probes and their number stay the system's
    /// (`net.ipv4.tcp_keepalive_intvl`, `net.ipv4.tcp_keepalive_probes`). `None` turns
    /// `SO_KEEPALIVE` off. Connections start with it off. The error is the `setsockopt` one;
    /// a dead or unknown id does nothing and returns `Ok`.
    fn set_keepalive(&mut self, conn: ConnId, idle: Option<Duration>) -> io::Result<()>;
}

/// Wakes an [`EventLoop`] from any thread: the loop calls [`Handler::on_wake`] soon.
#[derive(Clone)]
pub struct Waker(WakerInner);

#[derive(Clone)]
enum WakerInner {
    Eventfd(Arc<std::fs::File>),
    Mio(Arc<mio::Waker>),
}

impl Waker {
    /// Wakes the loop. Wakes are coalesced: many calls may give one `on_wake`.
    pub fn wake(&self) -> io::Result<()> {
        match &self.0 {
            WakerInner::Eventfd(f) => {
                use std::io::Write;
                match (&**f).write(&1u64.to_ne_bytes()) {
                    Ok(_) => Ok(()),
                    // The counter is saturated: the loop is already due to wake.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(e),
                }
            }
            WakerInner::Mio(w) => w.wake(),
        }
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            WakerInner::Eventfd(_) => "Waker(eventfd)",
            WakerInner::Mio(_) => "Waker(mio)",
        })
    }
}

/// One event loop; make one per thread, on the thread that runs it (it is `!Send`: an io_uring
/// ring is set up SINGLE_ISSUER, bound to its creating thread).
///
/// Dropping it closes every remaining connection and listener (in-flight io_uring operations
/// are cancelled and waited for, bounded) without calling `on_closed`. If the kernel has not
/// finished with every io_uring operation within that bound (2 s), the memory those
/// operations may still read or write (receive buffers, queued output, send headers, connect
/// addresses) is leaked on purpose, with a warning logged, rather than freed under the kernel.
pub struct EventLoop {
    inner: Inner,
}

enum Inner {
    Uring(Box<uring::UringLoop>),
    Epoll(Box<epoll::EpollLoop>),
}

impl EventLoop {
    /// Creates a loop on `backend` and the [`Waker`] for it.
    pub fn new(backend: Backend, cfg: &LoopConfig) -> io::Result<(EventLoop, Waker)> {
        cfg.validate()?;
        Ok(match backend {
            Backend::Uring => {
                let (l, w) = uring::UringLoop::new(cfg)?;
                (EventLoop { inner: Inner::Uring(l) }, w)
            }
            Backend::Epoll => {
                let (l, w) = epoll::EpollLoop::new(cfg)?;
                (EventLoop { inner: Inner::Epoll(l) }, w)
            }
        })
    }

    /// The backend this loop runs on.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Uring(_) => Backend::Uring,
            Inner::Epoll(_) => Backend::Epoll,
        }
    }

    /// Accepts connections from `listener` (it is made nonblocking here).
    pub fn add_listener(&mut self, listener: TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        match &mut self.inner {
            Inner::Uring(l) => l.add_listener(listener),
            Inner::Epoll(l) => l.add_listener(listener),
        }
    }

    /// Starts an outgoing connection before [`EventLoop::run`] (inside it, use [`Io::connect`]).
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        match &mut self.inner {
            Inner::Uring(l) => l.core.connect(addr),
            Inner::Epoll(l) => l.core.connect(addr),
        }
    }

    /// Runs the loop until a handler calls [`Io::stop`]. It may be called again afterwards;
    /// connections and listeners persist between calls.
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        match &mut self.inner {
            Inner::Uring(l) => l.run(handler),
            Inner::Epoll(l) => l.run(handler),
        }
    }
}

/// Binds `n` listeners on `addr` in one `SO_REUSEPORT` group, each with `backlog`.
///
/// A port already in use by another socket fails with `AddrInUse` (the first socket is bound
/// without `SO_REUSEPORT`, which the kernel refuses to share, and joins the group only after
/// that). Port 0 binds the first listener to a free port and the rest to the same port.
pub fn bind_reuseport(addr: SocketAddr, n: usize, backlog: i32) -> io::Result<Vec<TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bind_reuseport: n must be at least 1"));
    }
    let new_socket = || -> io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        Ok(s)
    };
    let first = new_socket()?;
    first.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    first.set_reuse_port(true)?;
    let bound = first.local_addr()?.as_socket().ok_or_else(|| io::Error::other("bound address is not IP"))?;
    let mut socks = vec![first];
    for _ in 1..n {
        let s = new_socket()?;
        s.set_reuse_port(true)?;
        s.bind(&bound.into()).map_err(|e| io::Error::new(e.kind(), format!("bind {bound} (SO_REUSEPORT): {e}")))?;
        socks.push(s);
    }
    socks
        .into_iter()
        .map(|s| {
            s.listen(backlog)?;
            Ok(TcpListener::from(s))
        })
        .collect()
}

/// Reads an env switch that is on when set to `1`.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == "1")
}

/// Chunks are queued as `Bytes`; re-exported for handlers.
pub use bytes;
pub use recv_buf::RecvBuf;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_is_send_sync_clone() {
        fn is<T: Send + Sync + Clone>() {}
        is::<Waker>();
    }

    #[test]
    fn choice_parses() {
        assert_eq!("auto".parse::<IoChoice>().unwrap(), IoChoice::Auto);
        assert_eq!("URING".parse::<IoChoice>().unwrap(), IoChoice::Uring);
        assert_eq!("epoll".parse::<IoChoice>().unwrap(), IoChoice::Epoll);
        let e = "kqueue".parse::<IoChoice>().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("kqueue"), "{e}");
        assert_eq!(Backend::Uring.to_string(), "io_uring");
        assert_eq!(Backend::Epoll.to_string(), "epoll");
    }

    #[test]
    fn config_is_validated() {
        let bad = LoopConfig { buf_count: 1000, ..LoopConfig::default() };
        let e = bad.validate().unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        assert!(LoopConfig::default().validate().is_ok());
        assert_eq!(LoopConfig::default().cq_size(), 8192);
        for cq in [4095, 65537] {
            let e = LoopConfig { cq_entries: cq, ..LoopConfig::default() }.validate().unwrap_err();
            assert!(e.to_string().contains("cq_entries"), "{e}");
        }
        for cq in [4096, 65536] {
            let c = LoopConfig { cq_entries: cq, ..LoopConfig::default() };
            assert!(c.validate().is_ok());
            assert_eq!(c.cq_size(), cq);
        }
        assert_eq!(LoopConfig::default().flush_timeout, Duration::from_secs(5));
    }
}
