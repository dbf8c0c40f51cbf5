//! [`Driven`]: one open connection run on an event loop.

use crate::{Tally, WebSocketConnection};
use bytes::BytesMut;
use ringwire_conn::{CloseCode, ConnError, Connection, Event, State};
use ringwire_io::{ConnId, Io, RecvBuf};
use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// What the driver calls the handler with: the open, then each of the connection's
/// events. [`deliver!`](crate::deliver) maps it onto a handler's methods.
#[derive(Debug)]
pub enum Callback {
    /// The connection opened (`on_open`): the first call, once.
    Open,
    /// One of the connection's events.
    Event(Event),
}

/// An open connection as its driver keeps it: the state machine, the deadline armed in
/// the loop, and a byte of facts. Stored inline in the server's slot table, so it is
/// kept small (see `docs/scaling.md`).
#[derive(Debug)]
pub struct Driven {
    conn: Connection,
    /// The deadline currently armed in the loop (only ever moved earlier, see
    /// [`pump`](Self::pump)), as nanoseconds from the driver's epoch ([`NOT_ARMED`]:
    /// none); 8 bytes, not 16.
    armed: i64,
    /// Bytes written ahead of the connection's own output (the server's 101 response)
    /// not yet reported written: [`written`](Self::written) counts these off first, so
    /// the connection is told only of its own bytes.
    preamble: u32,
    flags: Flags,
}

/// A [`Driven`] connection's yes/no facts, one bit each.
#[derive(Debug, Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    /// `on_open` was delivered.
    const ANNOUNCED: u8 = 1;
    /// Reading is on in the loop.
    const READING: u8 = 1 << 1;
    /// `io.close` or `io.abort` was called, or the loop reported the socket closed.
    const SOCKET_CLOSING: u8 = 1 << 2;
    /// `Event::Close` was taken from the connection.
    const CLOSE_REPORTED: u8 = 1 << 3;
    /// A handler callback panicked: nothing more is delivered to the handler.
    const FAULTED: u8 = 1 << 4;
    /// Ended through a drop (the handler's `drop_connection` or the keepalive
    /// timeout): the socket is aborted, not flushed.
    const DROPPED: u8 = 1 << 5;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on { self.0 |= bit } else { self.0 &= !bit }
    }
}

/// `Driven::armed` when no deadline is armed; [`nanos_since`] never returns it.
const NOT_ARMED: i64 = i64::MIN;

/// `at` as signed nanoseconds from `epoch`: exact within 292 years either side, so
/// comparing two of them is comparing the instants.
fn nanos_since(epoch: Instant, at: Instant) -> i64 {
    let clamp = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    if at >= epoch { clamp(at - epoch) } else { -clamp(epoch - at) }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)")
}

/// Runs one handler callback on a view of `conn`, unless the handler faulted earlier. A
/// panic is contained: logged with `who`, the connection closed with 1011, `*faulted` set.
/// Returns the callback's answer (whether to pong; true after a panic).
#[inline(always)]
fn guarded<F>(
    conn: &mut Connection,
    dropped: &mut bool,
    faulted: &mut bool,
    who: &dyn fmt::Display,
    deliver: &mut F,
    callback: Callback,
) -> bool
where
    F: FnMut(WebSocketConnection<'_>, Callback) -> bool,
{
    if *faulted {
        return true; // closing with 1011; the handler hears nothing more of it
    }
    let view = WebSocketConnection { conn: &mut *conn, dropped };
    match catch_unwind(AssertUnwindSafe(|| deliver(view, callback))) {
        Ok(pong) => pong,
        Err(payload) => fault(conn, faulted, who, &*payload),
    }
}

/// `on_open`, once per connection: out of the per-message path.
#[cold]
#[inline(never)]
fn announce<F>(conn: &mut Connection, dropped: &mut bool, faulted: &mut bool, who: &dyn fmt::Display, deliver: &mut F)
where
    F: FnMut(WebSocketConnection<'_>, Callback) -> bool,
{
    guarded(conn, dropped, faulted, who, deliver, Callback::Open);
}

/// A handler callback panicked.
#[cold]
#[inline(never)]
fn fault(conn: &mut Connection, faulted: &mut bool, who: &dyn fmt::Display, payload: &(dyn Any + Send)) -> bool {
    *faulted = true;
    tracing::error!(conn = %who, panic = panic_message(payload), "handler panicked; closing the connection with 1011");
    let _ = conn.close(CloseCode::INTERNAL_SERVER_ERROR, "internal error");
    true
}

impl Driven {
    /// A connection that just opened. `preamble`: bytes the driver queued on the socket
    /// ahead of the connection's output (the server's 101 response), which
    /// [`written`](Self::written) must not report to the connection.
    pub fn new(conn: Connection, preamble: usize) -> Self {
        let mut flags = Flags::default();
        flags.set(Flags::READING, true);
        Self { conn, armed: NOT_ARMED, preamble: u32::try_from(preamble).unwrap_or(u32::MAX), flags }
    }

    /// Applies the connection's socket options (Node `disableNagleAlgorithm`,
    /// `useNativeKeepalive`) to its socket. `loop_nodelay`: what the loop gave new
    /// sockets ([`LoopConfig::nodelay`](ringwire_io::LoopConfig)), so an option that
    /// already holds costs no system call. A failure is logged, never fatal.
    pub fn apply_socket_options(&self, io: &mut impl Io, id: ConnId, loop_nodelay: bool) {
        let cfg = self.conn.config();
        if cfg.disable_nagle_algorithm != loop_nodelay
            && let Err(e) = io.set_nodelay(id, cfg.disable_nagle_algorithm)
        {
            tracing::debug!(conn = %id, error = %e, "setting TCP_NODELAY failed");
        }
        if cfg.use_native_keepalive
            && let Some(k) = cfg.keepalive
            && let Err(e) = io.set_keepalive(id, Some(k.interval))
        {
            tracing::debug!(conn = %id, error = %e, "setting SO_KEEPALIVE failed");
        }
    }

    /// The state machine, to read.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The state machine, for the driver's own commands (a broadcast, a command from
    /// another thread); [`pump`](Self::pump) after.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Whether the handler heard `on_close` (or would have, had it not panicked).
    pub fn close_reported(&self) -> bool {
        self.flags.has(Flags::CLOSE_REPORTED)
    }

    /// Bytes arrived; [`pump`](Self::pump) after.
    pub fn read(&mut self, data: &[u8], now: Instant) {
        self.conn.handle_read(data, now);
    }

    /// [`read`](Self::read) of a receive buffer the connection may keep when the loop can
    /// lend it (a large message in one frame becomes a slice of it, without a copy: see
    /// [`Connection::handle_read_buf`]); otherwise the connection copies what it keeps, as
    /// with `read`. [`pump`](Self::pump) after.
    pub fn read_buf(&mut self, data: RecvBuf<'_>, now: Instant) {
        if data.can_lend() {
            self.conn.handle_read_buf(data, now);
        } else {
            self.conn.handle_read(&data, now);
        }
    }

    /// The buffer lent to the loop's [`Io::recv_into`] came back
    /// ([`Handler::on_data_into`](ringwire_io::Handler::on_data_into)); [`pump`](Self::pump)
    /// after.
    pub fn read_into(&mut self, buf: BytesMut, now: Instant) {
        self.conn.handle_read_into(buf, now);
    }

    /// The loop wrote `bytes`; the preamble's are counted off first. Returns whether the
    /// connection heard of any (then [`pump`](Self::pump)).
    pub fn written(&mut self, bytes: usize, now: Instant) -> bool {
        let preamble = bytes.min(self.preamble as usize);
        self.preamble -= preamble as u32; // at most self.preamble: fits
        let own = bytes - preamble;
        if own > 0 {
            self.conn.handle_written(own, now);
        }
        own > 0
    }

    /// The connection's timer fired; [`pump`](Self::pump) after.
    pub fn timeout(&mut self, now: Instant) {
        self.armed = NOT_ARMED;
        let was_open = self.conn.state() == State::Open;
        self.conn.handle_timeout(now);
        // A timeout takes an open connection straight to Closed only through the
        // keepalive's drop (WebSocket-Node drops a peer that stopped answering):
        // destroy the socket rather than flush to a peer that is gone.
        if was_open && self.conn.state() == State::Closed {
            self.flags.set(Flags::DROPPED, true);
        }
    }

    /// The driver aborted the socket itself (a shutdown deadline): nothing more is
    /// written and its error is not the peer's.
    pub fn mark_aborted(&mut self) {
        self.flags.set(Flags::SOCKET_CLOSING, true);
    }

    /// Makes the loop's timer for `id` fire no later than `at`.
    #[inline]
    pub fn arm(&mut self, io: &mut impl Io, id: ConnId, epoch: Instant, at: Instant) {
        let ns = nanos_since(epoch, at);
        if self.armed == NOT_ARMED || ns < self.armed {
            self.armed = ns;
            io.set_timer(id, Some(at));
        }
    }

    /// The loop reported the socket closed, with the error that closed it if any. Unless
    /// the handler already heard `on_close`, it hears the error (Node's `error` event; only
    /// when the driver did not close the socket itself) and then `on_close`.
    // `pump`'s arguments and the error: a struct for them would be built on every pump.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    pub fn closed<F>(
        &mut self,
        io: &mut impl Io,
        id: ConnId,
        epoch: Instant,
        error: Option<&std::io::Error>,
        who: &dyn fmt::Display,
        counts: &mut impl Tally,
        mut deliver: F,
    ) where
        F: FnMut(WebSocketConnection<'_>, Callback) -> bool,
    {
        if self.close_reported() {
            return;
        }
        let error = error.filter(|_| !self.flags.has(Flags::SOCKET_CLOSING));
        self.flags.set(Flags::SOCKET_CLOSING, true);
        if let Some(e) = error {
            tracing::debug!(conn = %who, error = %e, "connection error");
            let event = Callback::Event(Event::Error(ConnError::socket(e)));
            let mut faulted = self.flags.has(Flags::FAULTED);
            let mut dropped = false;
            guarded(&mut self.conn, &mut dropped, &mut faulted, who, &mut deliver, event);
            self.flags.set(Flags::FAULTED, faulted);
        }
        self.conn.handle_eof(io.now());
        self.pump(io, id, epoch, who, counts, deliver);
    }

    /// Delivers the connection's events to the handler (`on_open` first, once), moves its
    /// output to the loop, and syncs reading, the timer and the socket's fate with the
    /// state machine. Call it after every input ([`read`](Self::read), ...) and command.
    ///
    /// `deliver` runs one handler callback and, for a ping, returns whether to pong. A
    /// panic in it is contained: logged with `who`, the connection closed with 1011,
    /// and nothing more delivered to the handler for it. `epoch`: the instant the
    /// driver's armed deadlines count from (any fixed one). `counts`: where every event is
    /// counted, delivered or not (after a panic); `&mut ()` counts nothing.
    // Inlined into each driver's own pump: the per-message path (several calls per
    // message) then passes no arguments and calls no closure out of line (a plain
    // #[inline] was not taken: callgrind showed the call and its argument set-up).
    #[inline(always)]
    pub fn pump<F>(
        &mut self,
        io: &mut impl Io,
        id: ConnId,
        epoch: Instant,
        who: &dyn fmt::Display,
        counts: &mut impl Tally,
        mut deliver: F,
    ) where
        F: FnMut(WebSocketConnection<'_>, Callback) -> bool,
    {
        let mut faulted = self.flags.has(Flags::FAULTED);
        let mut dropped = false;
        if !self.flags.has(Flags::ANNOUNCED) {
            self.flags.set(Flags::ANNOUNCED, true);
            announce(&mut self.conn, &mut dropped, &mut faulted, who, &mut deliver);
        }
        while let Some(event) = self.conn.poll_event() {
            counts.event(&event);
            if matches!(event, Event::Close { .. }) {
                self.flags.set(Flags::CLOSE_REPORTED, true);
                counts.closed(self.conn.close_frame_sent(), self.conn.close_frame_received());
            }
            let ping = matches!(event, Event::Ping(_));
            if !guarded(&mut self.conn, &mut dropped, &mut faulted, who, &mut deliver, Callback::Event(event)) && ping {
                self.conn.cancel_pong();
            }
        }
        if dropped {
            self.flags.set(Flags::DROPPED, true);
        }
        self.flags.set(Flags::FAULTED, faulted);
        self.sync(io, id, epoch);
    }

    /// Moves the output to the loop and syncs reading, the timer and the socket.
    #[inline(always)]
    fn sync(&mut self, io: &mut impl Io, id: ConnId, epoch: Instant) {
        if self.flags.has(Flags::SOCKET_CLOSING) {
            return; // the socket is gone or going; nothing more to write
        }
        while let Some(chunk) = self.conn.poll_transmit() {
            io.send(id, chunk);
        }
        if self.flags.has(Flags::DROPPED) && self.conn.state() == State::Closed {
            // A drop destroys the socket at once: the close frame was just handed to the
            // loop (best effort), the rest of the queue is not waited for.
            self.flags.set(Flags::SOCKET_CLOSING, true);
            io.abort(id);
            return;
        }
        let wants_read = self.conn.wants_read();
        if wants_read != self.flags.has(Flags::READING) {
            self.flags.set(Flags::READING, wants_read);
            if wants_read { io.resume_read(id) } else { io.pause_read(id) }
        }
        // The rest of a large frame goes straight into the message buffer where the loop
        // can (io_uring, without TLS); elsewhere it comes back at once, untouched.
        if wants_read
            && let Some((buf, n)) = self.conn.lend_read_buffer()
            && let Err(buf) = io.recv_into(id, buf, n)
        {
            self.conn.handle_read_into(buf, io.now());
        }
        // Deadlines only move earlier in the loop; a timer that fires early is harmless
        // (handle_timeout checks) and re-arms. This keeps a keepalive that slides with
        // every message from costing a timer operation per message.
        if let Some(next) = self.conn.poll_timeout() {
            self.arm(io, id, epoch, next);
        }
        if self.conn.is_finished() {
            self.flags.set(Flags::SOCKET_CLOSING, true);
            io.close(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_deadlines_compare_as_their_instants() {
        let epoch = Instant::now() + std::time::Duration::from_secs(60);
        let ns = std::time::Duration::from_nanos;
        let points = [epoch - ns(2), epoch - ns(1), epoch, epoch + ns(1), epoch + ns(1_000_000_000)];
        for w in points.windows(2) {
            assert!(nanos_since(epoch, w[0]) < nanos_since(epoch, w[1]));
        }
        assert!(points.iter().all(|&p| nanos_since(epoch, p) != NOT_ARMED));
    }

    #[test]
    fn a_driven_connection_is_small() {
        // Inline in the server's slot table for every connection; see docs/scaling.md.
        assert!(std::mem::size_of::<Driven>() <= std::mem::size_of::<Connection>() + 16);
    }
}
