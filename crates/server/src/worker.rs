//! One worker: the event-loop handler that owns a thread's connections and drives
//! each one's sans-IO state machine (handshake, then `ringwire_conn::Connection`).

use crate::handler::{Decision, Handler, SendOutcome};
use crate::shared::{Command, Shared};
use crate::slots::Slots;
use crate::ws::Ws;
use crate::{ServerConfig, proxy};
use ringwire_conn::handshake::{self, HandshakeLimits, Request};
use ringwire_conn::{CloseCode, ConnInfo, Connection, Event, PreparedMessage, Role};
use ringwire_io::{ConnId, Io};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A connection's phase as this worker sees it.
// Open is by far the largest and the common case: boxing it would cost every connection
// an allocation rounded up to the allocator's size class, boxing the others saves nothing.
#[allow(clippy::large_enum_variant)]
enum Slot {
    /// Reading the upgrade request.
    Handshake { buf: Vec<u8>, peer: SocketAddr },
    /// Upgraded: the state machine runs. Stored inline: a box would round every
    /// connection up to the allocator's next size class.
    Open(Open),
    /// Refused (or shut down); the socket is closing, input is ignored. `admitted`:
    /// whether it holds one of the server's connection slots.
    Closing { admitted: bool },
}

struct Open {
    conn: Connection,
    /// `on_open` has been called: the first thing `pump` delivers for a connection.
    announced: bool,
    /// The deadline currently armed in the loop (only ever moved earlier, see `pump`), as
    /// nanoseconds from the worker's epoch ([`NOT_ARMED`]: none); 8 bytes, not 16.
    armed: i64,
    reading: bool,
    socket_closing: bool,
    close_reported: bool,
}

/// `Open::armed` when no deadline is armed; [`nanos_since`] never returns it.
const NOT_ARMED: i64 = i64::MIN;

/// `at` as signed nanoseconds from `epoch`: exact within 292 years either side, so
/// comparing two of them is comparing the instants.
fn nanos_since(epoch: Instant, at: Instant) -> i64 {
    let clamp = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    if at >= epoch { clamp(at - epoch) } else { -clamp(epoch - at) }
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
    local_broadcast: Vec<PreparedMessage>,
    inbox: Vec<Command>,
    shutting_down: bool,
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
            local_broadcast: Vec::new(),
            inbox: Vec::new(),
            shutting_down: false,
        }
    }

    /// Refuses the handshake with `response` and closes the socket once it is written.
    fn refuse(&mut self, io: &mut impl Io, id: ConnId, response: Vec<u8>) {
        io.send(id, response.into());
        io.close(id);
        self.slots.insert(id, Slot::Closing { admitted: true });
    }

    fn on_request(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr, req: Request, rest: &[u8]) {
        if !self.cfg.allowed_origins.is_empty() {
            let allowed = req
                .origin
                .as_deref()
                .is_some_and(|o| self.cfg.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
            if !allowed {
                let reason = match &req.origin {
                    Some(o) => format!("origin {o} is not allowed"),
                    None => "an Origin header is required".to_owned(),
                };
                return self.refuse(io, id, handshake::reject_response(403, Some(&reason), &[]));
            }
        }
        let accept = match self.handler.on_request(&req, &self.cfg.subprotocols) {
            Decision::Reject { status, reason, headers } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let reason = (!reason.is_empty()).then_some(reason.as_str());
                return self.refuse(io, id, handshake::reject_response(status, reason, &headers));
            }
            Decision::Accept(accept) => accept,
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
        io.send(id, response.into());
        io.set_timer(id, None);
        let open = Open {
            conn,
            announced: false,
            armed: NOT_ARMED,
            reading: true,
            socket_closing: false,
            close_reported: false,
        };
        self.slots.insert(id, Slot::Open(open));
        if !rest.is_empty()
            && let Some(Slot::Open(open)) = self.slots.get_mut(&id)
        {
            open.conn.handle_read(rest, now);
        }
        self.pump(io, id);
    }

    /// Delivers the connection's events to the handler (`on_open` first, once), moves its
    /// output to the loop,
    /// and syncs reading, the timer and the socket's fate with the state machine.
    fn pump(&mut self, io: &mut impl Io, id: ConnId) {
        let Some(Slot::Open(open)) = self.slots.get_mut(&id) else { return };
        let announce = !std::mem::replace(&mut open.announced, true);
        let mut ws = Ws {
            conn: &mut open.conn,
            id,
            worker: self.index,
            shared: &self.shared,
            local_broadcast: &mut self.local_broadcast,
        };
        if announce {
            self.handler.on_open(&mut ws);
        }
        while let Some(event) = ws.conn.poll_event() {
            let h = &mut self.handler;
            match event {
                Event::Message(m) => h.on_message(&mut ws, m),
                Event::Frame(f) => h.on_frame(&mut ws, f),
                Event::Ping(p) if !h.on_ping(&mut ws, &p) => ws.conn.cancel_pong(),
                Event::Ping(_) => {}
                Event::Pong(p) => h.on_pong(&mut ws, &p),
                Event::Drain => h.on_drain(&mut ws),
                Event::Pause => h.on_pause(&mut ws),
                Event::Resume => h.on_resume(&mut ws),
                Event::SendComplete(t) => h.on_send_complete(&mut ws, t, SendOutcome::Written),
                Event::SendFailed(t) => h.on_send_complete(&mut ws, t, SendOutcome::Failed),
                Event::Error(e) => h.on_error(&mut ws, &e),
                Event::Close { code, description } => {
                    open.close_reported = true;
                    h.on_close(&mut ws, code, &description);
                }
                // Events added by later versions of the connection crate.
                _ => {}
            }
        }
        if open.socket_closing {
            return; // the socket is gone or going; nothing more to write
        }
        while let Some(chunk) = open.conn.poll_transmit() {
            io.send(id, chunk);
        }
        let wants_read = open.conn.wants_read();
        if wants_read != open.reading {
            open.reading = wants_read;
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
            open.socket_closing = true;
            io.close(id);
        }
    }

    fn begin_shutdown(&mut self, io: &mut impl Io) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
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
                _ => {}
            }
        }
        self.maybe_stop(io);
    }

    fn maybe_stop(&mut self, io: &mut impl Io) {
        if self.shutting_down && self.slots.is_empty() {
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
}

impl<H: Handler> ringwire_io::Handler for Worker<H> {
    fn on_accept(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr) {
        if self.shutting_down {
            io.abort(id);
            self.slots.insert(id, Slot::Closing { admitted: false });
            return;
        }
        if !self.shared.try_admit() {
            io.send(id, handshake::reject_response(503, Some("too many connections"), &[]).into());
            io.close(id);
            self.slots.insert(id, Slot::Closing { admitted: false });
            return;
        }
        self.slots.insert(id, Slot::Handshake { buf: Vec::new(), peer });
        io.set_timer(id, Some(io.now() + self.cfg.handshake_timeout));
    }

    fn on_data(&mut self, io: &mut impl Io, id: ConnId, data: &mut [u8]) {
        match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                open.conn.handle_read(data, io.now());
                self.pump(io, id);
            }
            Some(Slot::Handshake { buf, peer }) => {
                let peer = *peer;
                buf.extend_from_slice(data);
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
            open.conn.handle_written(bytes, io.now());
            self.pump(io, id);
        }
    }

    fn on_timer(&mut self, io: &mut impl Io, id: ConnId) {
        match self.slots.get_mut(&id) {
            Some(Slot::Handshake { .. }) => {
                self.refuse(io, id, handshake::reject_response(408, Some("handshake timed out"), &[]));
            }
            Some(Slot::Open(open)) => {
                open.armed = NOT_ARMED;
                open.conn.handle_timeout(io.now());
                self.pump(io, id);
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, io: &mut impl Io, id: ConnId, error: Option<std::io::Error>) {
        let admitted = match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                if !open.close_reported {
                    if let Some(e) = &error {
                        tracing::debug!(error = %e, "connection error");
                    }
                    open.socket_closing = true;
                    open.conn.handle_eof(io.now());
                    self.pump(io, id);
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
        self.maybe_stop(io);
    }

    fn on_wake(&mut self, io: &mut impl Io) {
        self.shared.workers[self.index].drain_into(&mut self.inbox);
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
                        let _ = open.conn.close(code, &reason);
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
                Command::Shutdown => self.begin_shutdown(io),
            }
        }
        self.inbox = inbox;
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
