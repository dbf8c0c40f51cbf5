//! One worker: the event-loop handler that owns a thread's connections and drives
//! each one's sans-IO state machine (handshake, then `ringwire_conn::Connection`).

use crate::handler::{Decision, Handler, SendOutcome};
use crate::shared::{Command, Shared};
use crate::slots::Slots;
use crate::ws::Ws;
use crate::{ServerConfig, policy, proxy};
use ringwire_conn::handshake::{self, HandshakeError, HandshakeLimits, Request};
use ringwire_conn::{CloseCode, ConnInfo, Connection, Event, PreparedMessage, Role, State};
use ringwire_io::{ConnId, Io};
use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

/// A connection's phase as this worker sees it.
// Open is by far the largest and the common case: boxing it would cost every connection
// an allocation rounded up to the allocator's size class, boxing the others saves nothing.
#[allow(clippy::large_enum_variant)]
enum Slot {
    /// Reading the upgrade request; `scanned`: bytes of `buf` already searched for the
    /// end of the head.
    Handshake { buf: Vec<u8>, peer: SocketAddr, scanned: usize },
    /// Upgraded: the state machine runs. Stored inline: a box would round every
    /// connection up to the allocator's next size class.
    Open(Open),
    /// Refused (or shut down); the socket is closing, input is ignored. `admitted`:
    /// whether it holds one of the server's connection slots.
    Closing { admitted: bool },
}

struct Open {
    conn: Connection,
    /// The deadline currently armed in the loop (only ever moved earlier, see `pump`), as
    /// nanoseconds from the worker's epoch ([`NOT_ARMED`]: none); 8 bytes, not 16.
    armed: i64,
    /// Bytes of the 101 response not yet reported written. The response goes out ahead
    /// of the connection's own output, so `on_sent` counts these off first: the
    /// connection is told only of its own bytes.
    response_unsent: u32,
    flags: Flags,
}

/// An [`Open`] connection's yes/no facts, one bit each: the slot table stores every
/// connection inline, and one byte keeps an entry within its size class.
#[derive(Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    /// `on_open` has been called: the first thing `pump` delivers for a connection.
    const ANNOUNCED: u8 = 1;
    /// Reading is on in the loop.
    const READING: u8 = 1 << 1;
    /// `io.close` or `io.abort` was called, or the loop reported the socket closed.
    const SOCKET_CLOSING: u8 = 1 << 2;
    /// `Event::Close` was taken from the connection.
    const CLOSE_REPORTED: u8 = 1 << 3;
    /// A handler callback panicked: no further event is delivered to the handler.
    const FAULTED: u8 = 1 << 4;
    /// The connection ended through a drop (the handler's `Ws::drop_connection`, or the
    /// keepalive timeout): the socket is aborted, not flushed.
    const DROPPED: u8 = 1 << 5;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on { self.0 |= bit } else { self.0 &= !bit }
    }
}

/// `Open::armed` when no deadline is armed; [`nanos_since`] never returns it.
const NOT_ARMED: i64 = i64::MIN;

/// `at` as signed nanoseconds from `epoch`: exact within 292 years either side, so
/// comparing two of them is comparing the instants.
fn nanos_since(epoch: Instant, at: Instant) -> i64 {
    let clamp = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    if at >= epoch { clamp(at - epoch) } else { -clamp(epoch - at) }
}

/// Whether the bytes from `*scanned` on complete a request head (an empty line: LF LF
/// or LF CR LF, as the parser accepts). Only new bytes are searched: `*scanned` moves to
/// the end, less the two bytes a terminator cut by the read could start in.
fn head_complete(buf: &[u8], scanned: &mut usize) -> bool {
    let from = scanned.saturating_sub(2);
    *scanned = buf.len();
    memchr::memchr_iter(b'\n', &buf[from..]).any(|i| {
        let rest = &buf[from + i + 1..];
        rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
    })
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)")
}

/// Runs one handler callback on `ws`. A panic is contained: it is logged with the
/// connection id, the connection is closed with 1011, `*faulted` is set (the caller
/// delivers nothing more to the handler for it) and `fallback` is returned.
fn guarded<R>(ws: &mut Ws<'_>, faulted: &mut bool, fallback: R, f: impl FnOnce(&mut Ws<'_>) -> R) -> R {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *ws))) {
        Ok(r) => r,
        Err(payload) => {
            *faulted = true;
            tracing::error!(
                worker = ws.worker,
                conn = %ws.id,
                panic = panic_message(&*payload),
                "handler panicked; closing the connection with 1011"
            );
            let _ = ws.conn.close(CloseCode::INTERNAL_SERVER_ERROR, "internal error");
            fallback
        }
    }
}

pub(crate) struct Worker<H> {
    index: usize,
    /// What `Open::armed` counts from.
    epoch: Instant,
    handler: H,
    shared: Arc<Shared>,
    cfg: Arc<ServerConfig>,
    limits: HandshakeLimits,
    /// One connection config shared by every connection of this worker.
    conn_config: Arc<ringwire_conn::Config>,
    slots: Slots<Slot>,
    /// The client address each connection is counted under, only with
    /// `max_connections_per_ip` (else empty: nothing allocated).
    peer_ips: Slots<IpAddr>,
    local_broadcast: Vec<PreparedMessage>,
    inbox: Vec<Command>,
    /// Set once shutdown starts: connections still open then are aborted.
    shutdown_deadline: Option<Instant>,
    /// The shutdown deadline passed and every connection was aborted.
    deadline_passed: bool,
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(index: usize, handler: H, shared: Arc<Shared>, cfg: Arc<ServerConfig>) -> Self {
        let limits = HandshakeLimits::new(cfg.max_handshake_headers, cfg.max_handshake_bytes);
        let conn_config = Arc::new(cfg.connection.clone());
        Self {
            index,
            epoch: Instant::now(),
            handler,
            shared,
            cfg,
            limits,
            conn_config,
            slots: Slots::new(),
            peer_ips: Slots::new(),
            local_broadcast: Vec::new(),
            inbox: Vec::new(),
            shutdown_deadline: None,
            deadline_passed: false,
        }
    }

    /// Refuses the handshake with `response` and closes the socket once it is written.
    fn refuse(&mut self, io: &mut impl Io, id: ConnId, response: Vec<u8>) {
        io.send(id, response.into());
        io.close(id);
        self.slots.insert(id, Slot::Closing { admitted: true });
    }

    fn on_request(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr, req: Request, rest: &[u8]) {
        let policy = policy::check_host(&self.cfg, &req.host)
            .and_then(|()| policy::check_origin(&self.cfg, req.origin.as_deref(), &req.host));
        if let Err(reason) = policy {
            tracing::debug!(%peer, %reason, "upgrade refused");
            return self.refuse(io, id, handshake::reject_response(403, Some(&reason), &[]));
        }
        let handler = &mut self.handler;
        let decision = catch_unwind(AssertUnwindSafe(|| handler.on_request(&req, &self.cfg.subprotocols)));
        let accept = match decision {
            Ok(Decision::Accept(accept)) => accept,
            Ok(Decision::Reject { status, reason, headers }) => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let reason = (!reason.is_empty()).then_some(reason.as_str());
                return self.refuse(io, id, handshake::reject_response(status, reason, &headers));
            }
            Err(payload) => {
                tracing::error!(
                    worker = self.index,
                    conn = %id,
                    panic = panic_message(&*payload),
                    "on_request panicked; answering 500"
                );
                return self.refuse(io, id, handshake::reject_response(500, Some("internal error"), &[]));
            }
        };
        let response = match req.accept(&accept) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "handler accepted with an invalid choice; refusing with 500");
                return self.refuse(io, id, handshake::reject_response(500, Some(&e.to_string()), &[]));
            }
        };
        let mut info = ConnInfo::new();
        info.protocol = accept.protocol;
        info.version = req.version;
        let forwarded = proxy::forwarded(peer.ip(), &req.x_forwarded_for, &self.cfg.trusted_proxies);
        let peer_only = forwarded.is_none();
        if let Some((remote_address, remote_addresses)) = forwarded {
            info.remote_address = Some(remote_address);
            info.remote_addresses = remote_addresses;
        }
        let now = io.now();
        let conn = Connection::new(Role::Server, Arc::clone(&self.conn_config), info, now);
        // The peer alone is kept as an IpAddr, not as strings.
        let conn = if peer_only { conn.with_remote_address(peer.ip()) } else { conn };
        let response_unsent = u32::try_from(response.len()).unwrap_or(u32::MAX);
        io.send(id, response.into());
        io.set_timer(id, None);
        let mut flags = Flags::default();
        flags.set(Flags::READING, true);
        self.slots.insert(id, Slot::Open(Open { conn, armed: NOT_ARMED, response_unsent, flags }));
        if !rest.is_empty()
            && let Some(Slot::Open(open)) = self.slots.get_mut(&id)
        {
            open.conn.handle_read(rest, now);
        }
        self.pump(io, id);
    }

    /// Delivers the connection's events to the handler (`on_open` first, once), moves its
    /// output to the loop, and syncs reading, the timer and the socket's fate with the
    /// state machine.
    fn pump(&mut self, io: &mut impl Io, id: ConnId) {
        self.pump_open(io, id);
        self.arm_shutdown(io, id);
    }

    fn pump_open(&mut self, io: &mut impl Io, id: ConnId) {
        let Some(Slot::Open(open)) = self.slots.get_mut(&id) else { return };
        let announce = !open.flags.has(Flags::ANNOUNCED);
        open.flags.set(Flags::ANNOUNCED, true);
        let mut faulted = open.flags.has(Flags::FAULTED);
        let mut ws = Ws {
            conn: &mut open.conn,
            id,
            worker: self.index,
            shared: &self.shared,
            local_broadcast: &mut self.local_broadcast,
            dropped: false,
        };
        let h = &mut self.handler;
        if announce && !faulted {
            guarded(&mut ws, &mut faulted, (), |ws| h.on_open(ws));
        }
        while let Some(event) = ws.conn.poll_event() {
            if matches!(event, Event::Close { .. }) {
                open.flags.set(Flags::CLOSE_REPORTED, true);
            }
            if faulted {
                continue; // closing with 1011; the handler hears nothing more of it
            }
            let f = &mut faulted;
            match event {
                Event::Message(m) => guarded(&mut ws, f, (), |ws| h.on_message(ws, m)),
                Event::Frame(fr) => guarded(&mut ws, f, (), |ws| h.on_frame(ws, fr)),
                Event::Ping(p) if !guarded(&mut ws, f, true, |ws| h.on_ping(ws, &p)) => ws.conn.cancel_pong(),
                Event::Ping(_) => {}
                Event::Pong(p) => guarded(&mut ws, f, (), |ws| h.on_pong(ws, &p)),
                Event::Drain => guarded(&mut ws, f, (), |ws| h.on_drain(ws)),
                Event::Pause => guarded(&mut ws, f, (), |ws| h.on_pause(ws)),
                Event::Resume => guarded(&mut ws, f, (), |ws| h.on_resume(ws)),
                Event::SendComplete(t) => {
                    guarded(&mut ws, f, (), |ws| h.on_send_complete(ws, t, SendOutcome::Written));
                }
                Event::SendFailed(t) => guarded(&mut ws, f, (), |ws| h.on_send_complete(ws, t, SendOutcome::Failed)),
                Event::Error(e) => guarded(&mut ws, f, (), |ws| h.on_error(ws, &e)),
                Event::Close { code, description } => {
                    guarded(&mut ws, f, (), |ws| h.on_close(ws, code, &description));
                }
                // Events added by later versions of the connection crate.
                _ => {}
            }
        }
        if ws.dropped {
            open.flags.set(Flags::DROPPED, true);
        }
        open.flags.set(Flags::FAULTED, faulted);
        if open.flags.has(Flags::SOCKET_CLOSING) {
            return; // the socket is gone or going; nothing more to write
        }
        while let Some(chunk) = open.conn.poll_transmit() {
            io.send(id, chunk);
        }
        if open.flags.has(Flags::DROPPED) && open.conn.state() == State::Closed {
            // A drop destroys the socket at once: the close frame was just handed to the
            // loop (best effort), the rest of the queue is not waited for.
            open.flags.set(Flags::SOCKET_CLOSING, true);
            io.abort(id);
            return;
        }
        let wants_read = open.conn.wants_read();
        if wants_read != open.flags.has(Flags::READING) {
            open.flags.set(Flags::READING, wants_read);
            if wants_read { io.resume_read(id) } else { io.pause_read(id) }
        }
        // Deadlines only move earlier in the loop; a timer that fires early is harmless
        // (handle_timeout checks) and re-arms. This keeps a keepalive that slides with
        // every message from costing a timer operation per message.
        if let Some(next) = open.conn.poll_timeout() {
            let at = nanos_since(self.epoch, next);
            if open.armed == NOT_ARMED || at < open.armed {
                open.armed = at;
                io.set_timer(id, Some(next));
            }
        }
        if open.conn.is_finished() {
            open.flags.set(Flags::SOCKET_CLOSING, true);
            io.close(id);
        }
    }

    /// During shutdown, makes sure `id`'s timer fires no later than the deadline.
    fn arm_shutdown(&mut self, io: &mut impl Io, id: ConnId) {
        let Some(deadline) = self.shutdown_deadline else { return };
        match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                let at = nanos_since(self.epoch, deadline);
                if open.armed == NOT_ARMED || at < open.armed {
                    open.armed = at;
                    io.set_timer(id, Some(deadline));
                }
            }
            Some(Slot::Closing { .. }) => io.set_timer(id, Some(deadline)),
            Some(Slot::Handshake { .. }) | None => {}
        }
    }

    /// Shutdown, step 1: stop accepting, abort handshakes, close every connection with
    /// 1001 (what is queued is flushed first), and arm the deadline.
    fn begin_shutdown(&mut self, io: &mut impl Io) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(io.now() + self.cfg.shutdown_timeout);
        io.stop_accepting();
        let ids: Vec<ConnId> = self.slots.iter().map(|(id, _)| id).collect();
        for id in ids {
            match self.slots.get_mut(&id) {
                Some(Slot::Handshake { .. }) => {
                    io.abort(id);
                    self.slots.insert(id, Slot::Closing { admitted: true });
                }
                Some(Slot::Open(open)) => {
                    let _ = open.conn.close(CloseCode::GOING_AWAY, "server shutting down");
                    self.pump(io, id);
                }
                Some(Slot::Closing { .. }) => self.arm_shutdown(io, id),
                None => {}
            }
        }
        self.maybe_stop(io);
    }

    /// Shutdown, step 2, at the deadline (`id`'s timer fired): abort every connection
    /// still here, all at once the first time.
    fn abort_at_deadline(&mut self, io: &mut impl Io, id: ConnId) {
        let ids: Vec<ConnId> = if self.deadline_passed {
            vec![id]
        } else {
            self.deadline_passed = true;
            let ids: Vec<ConnId> = self.slots.iter().map(|(id, _)| id).collect();
            tracing::warn!(
                worker = self.index,
                connections = ids.len(),
                timeout = ?self.cfg.shutdown_timeout,
                "shutdown deadline passed; aborting the connections still open"
            );
            ids
        };
        for id in ids {
            if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
                open.flags.set(Flags::SOCKET_CLOSING, true);
            }
            io.abort(id);
        }
    }

    fn maybe_stop(&mut self, io: &mut impl Io) {
        if self.shutdown_deadline.is_some() && self.slots.is_empty() {
            io.stop();
        }
    }

    fn flush_broadcasts(&mut self, io: &mut impl Io) {
        if self.local_broadcast.is_empty() {
            return;
        }
        let messages = std::mem::take(&mut self.local_broadcast);
        let ids: Vec<ConnId> = self
            .slots
            .iter()
            .filter_map(|(id, s)| matches!(s, Slot::Open(o) if o.conn.connected()).then_some(id))
            .collect();
        for id in ids {
            if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
                for m in &messages {
                    // BufferFull is reported by Drain later; a peer over the buffered limit
                    // is dropped by the connection's policy (1008).
                    let _ = open.conn.send_prepared(m, None);
                }
            }
            self.pump(io, id);
        }
    }

    /// Refuses a connection before its handshake with 503 and `reason`.
    fn unavailable(&mut self, io: &mut impl Io, id: ConnId, reason: &str) {
        io.send(id, handshake::reject_response(503, Some(reason), &[]).into());
        io.close(id);
        self.slots.insert(id, Slot::Closing { admitted: false });
    }
}

impl<H: Handler> ringwire_io::Handler for Worker<H> {
    fn on_accept(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr) {
        if self.shutdown_deadline.is_some() {
            io.abort(id);
            self.slots.insert(id, Slot::Closing { admitted: false });
            return;
        }
        if !self.shared.try_admit() {
            return self.unavailable(io, id, "too many connections");
        }
        if self.shared.limits_per_ip() {
            if !self.shared.try_admit_ip(peer.ip()) {
                self.shared.release();
                return self.unavailable(io, id, "too many connections from this address");
            }
            self.peer_ips.insert(id, peer.ip());
        }
        self.slots.insert(id, Slot::Handshake { buf: Vec::new(), peer, scanned: 0 });
        io.set_timer(id, Some(io.now() + self.cfg.handshake_timeout));
    }

    fn on_data(&mut self, io: &mut impl Io, id: ConnId, data: &mut [u8]) {
        match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                open.conn.handle_read(data, io.now());
                self.pump(io, id);
            }
            Some(Slot::Handshake { buf, peer, scanned }) => {
                let peer = *peer;
                buf.extend_from_slice(data);
                if !head_complete(buf, scanned) {
                    if buf.len() > self.cfg.max_handshake_bytes {
                        let e = HandshakeError::HeadTooLarge(self.cfg.max_handshake_bytes);
                        tracing::debug!(%peer, error = %e, "bad upgrade request");
                        self.refuse(io, id, e.response());
                    }
                    return;
                }
                match handshake::parse_request(buf, &self.limits) {
                    Ok(None) => {}
                    Ok(Some((req, used))) => {
                        let rest = buf.split_off(used);
                        self.on_request(io, id, peer, req, &rest);
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "bad upgrade request");
                        self.refuse(io, id, e.response());
                    }
                }
            }
            Some(Slot::Closing { .. }) | None => {}
        }
    }

    fn on_sent(&mut self, io: &mut impl Io, id: ConnId, bytes: usize) {
        if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
            let response = bytes.min(open.response_unsent as usize);
            open.response_unsent -= response as u32; // at most response_unsent: fits
            let own = bytes - response;
            if own > 0 {
                open.conn.handle_written(own, io.now());
                self.pump(io, id);
            }
        }
    }

    fn on_timer(&mut self, io: &mut impl Io, id: ConnId) {
        if self.shutdown_deadline.is_some_and(|d| io.now() >= d) {
            return self.abort_at_deadline(io, id);
        }
        match self.slots.get_mut(&id) {
            Some(Slot::Handshake { .. }) => {
                self.refuse(io, id, handshake::reject_response(408, Some("handshake timed out"), &[]));
            }
            Some(Slot::Open(open)) => {
                open.armed = NOT_ARMED;
                let was_open = open.conn.state() == State::Open;
                open.conn.handle_timeout(io.now());
                // A timeout takes an open connection straight to Closed only through the
                // keepalive's drop (WebSocket-Node drops a peer that stopped answering):
                // destroy the socket rather than flush to a peer that is gone.
                if was_open && open.conn.state() == State::Closed {
                    open.flags.set(Flags::DROPPED, true);
                }
                self.pump(io, id);
            }
            Some(Slot::Closing { .. }) => self.arm_shutdown(io, id),
            None => {}
        }
    }

    fn on_closed(&mut self, io: &mut impl Io, id: ConnId, error: Option<std::io::Error>) {
        let admitted = match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                if !open.flags.has(Flags::CLOSE_REPORTED) {
                    if let Some(e) = &error {
                        tracing::debug!(error = %e, "connection error");
                    }
                    open.flags.set(Flags::SOCKET_CLOSING, true);
                    open.conn.handle_eof(io.now());
                    self.pump_open(io, id);
                }
                true
            }
            Some(Slot::Handshake { .. }) => true,
            Some(Slot::Closing { admitted }) => *admitted,
            None => false,
        };
        if self.slots.remove(&id).is_some() && admitted {
            self.shared.release();
        }
        if let Some(ip) = self.peer_ips.remove(&id) {
            self.shared.release_ip(ip);
        }
        self.maybe_stop(io);
    }

    fn on_wake(&mut self, io: &mut impl Io) {
        let shutdown = self.shared.workers[self.index].drain_into(&mut self.inbox);
        let mut inbox = std::mem::take(&mut self.inbox);
        for cmd in inbox.drain(..) {
            // Keep the order commands were given in: pending broadcasts go out before
            // a later send, close or shutdown.
            if !matches!(cmd, Command::Broadcast(_)) {
                self.flush_broadcasts(io);
            }
            match cmd {
                Command::Send(id, payload) => {
                    if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
                        let _ = open.conn.send(payload, None);
                        self.pump(io, id);
                    }
                }
                Command::Close(id, code, reason) => {
                    if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
                        let _ = open.conn.close(code, reason.as_str());
                        self.pump(io, id);
                    }
                }
                Command::Pause(id, pause) => {
                    if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
                        if pause {
                            open.conn.pause()
                        } else {
                            open.conn.resume()
                        }
                        self.pump(io, id);
                    }
                }
                Command::Broadcast(m) => self.local_broadcast.push(m),
            }
        }
        self.inbox = inbox;
        if shutdown {
            self.flush_broadcasts(io);
            self.begin_shutdown(io);
        }
    }

    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.flush_broadcasts(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_state_is_small() {
        // One per connection, inline in the slot table; see docs/scaling.md.
        let entry = std::mem::size_of::<Option<(ConnId, Slot)>>();
        assert!(entry <= 224, "slot entry is {entry} bytes");
        assert!(std::mem::size_of::<Slot>() <= std::mem::size_of::<Open>() + 8);
    }

    #[test]
    fn the_head_end_is_found_across_reads_by_scanning_only_new_bytes() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        // Every split of the terminator across two reads is found, and not before.
        for cut in 1..head.len() {
            let mut scanned = 0;
            assert!(!head_complete(&head[..cut], &mut scanned), "cut at {cut}");
            assert_eq!(scanned, cut);
            assert!(head_complete(head, &mut scanned), "cut at {cut}");
        }
        let mut scanned = 0;
        assert!(head_complete(b"GET / HTTP/1.1\nHost: x\n\n", &mut scanned), "bare LF, as the parser takes");
        let mut buf = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        let mut scanned = 0;
        assert!(!head_complete(&buf, &mut scanned));
        buf.extend_from_slice(b"X-A: 1\r\n");
        assert!(!head_complete(&buf, &mut scanned), "a line end followed by a header is not the end");
        buf.extend_from_slice(b"\r\n");
        assert!(head_complete(&buf, &mut scanned));
    }

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
}
