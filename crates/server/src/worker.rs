//! One worker: the event-loop handler that owns a thread's connections and drives
//! each one's sans-IO state machine (handshake, then `ringwire_conn::Connection`).

use crate::handler::{Decision, Handler};
use crate::shared::{Command, Shared};
use crate::stats::WorkerCounters;
use crate::topics::Topics;
use crate::ws::Ws;
use crate::{ServerConfig, policy, proxy};
use bytes::BytesMut;
use ringwire_conn::handshake::{self, HandshakeError, HandshakeLimits, PlainRequest, Request};
use ringwire_conn::{CloseCode, ConnInfo, Connection, PreparedMessage, Role};
use ringwire_drive::{ByType, Callback, Driven, Slots, WebSocketConnection, panic_message};
use ringwire_io::{ConnId, Io, RecvBuf};
use std::fmt;
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
    /// Upgraded: the shared driver runs it. Stored inline: a box would round every
    /// connection up to the allocator's next size class.
    Open(Driven),
    /// Refused (or shut down); the socket is closing, input is ignored. `admitted`:
    /// whether it holds one of the server's connection slots.
    Closing { admitted: bool },
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

/// The driver of `slot` when it is open and connected (not closing): a message goes to it.
fn connected(slot: &mut Slot) -> Option<&mut Driven> {
    match slot {
        Slot::Open(o) if o.connection().connected() => Some(o),
        _ => None,
    }
}

/// A message for this worker's connections, sent at the end of the loop turn.
pub(crate) enum Outgoing {
    /// To every open connection.
    All(PreparedMessage),
    /// To the subscribers of a topic but one (the publishing connection).
    Topic(Arc<str>, PreparedMessage, Option<ConnId>),
}

/// What a handler call may change in its worker besides its connection.
pub(crate) struct Local {
    /// Broadcasts and publishes not sent yet.
    pub(crate) pending: Vec<Outgoing>,
    pub(crate) topics: Topics,
    /// `ServerConfig::max_topics_per_connection`.
    pub(crate) max_topics: usize,
}

/// The driver's way to the handler: each callback gets a [`Ws`] around the driver's view.
fn to_handler<'w, H: Handler>(
    h: &'w mut H,
    worker: usize,
    id: ConnId,
    shared: &'w Arc<Shared>,
    local: &'w mut Local,
) -> impl FnMut(WebSocketConnection<'_>, Callback) -> bool + 'w {
    move |conn, call| {
        let ws = &mut Ws { conn, id, worker, shared, local: &mut *local };
        ringwire_drive::deliver!(&mut *h, ws, call)
    }
}

/// How a worker's connection is named in logs.
struct Who(usize, ConnId);

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} {}", self.0, self.1)
    }
}

pub(crate) struct Worker<H> {
    index: usize,
    /// What the driver's armed deadlines count from.
    epoch: Instant,
    /// `TCP_NODELAY` as the loop sets it on accepted sockets.
    loop_nodelay: bool,
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
    local: Local,
    /// The connections a flush sent to, pumped once each afterwards (kept to reuse).
    targets: Vec<ConnId>,
    inbox: Vec<Command>,
    /// Set once shutdown starts: connections still open then are aborted.
    shutdown_deadline: Option<Instant>,
    /// The shutdown deadline passed and every connection was aborted.
    deadline_passed: bool,
    /// This worker's counters, published at the end of each loop turn.
    counters: WorkerCounters,
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(index: usize, handler: H, shared: Arc<Shared>, cfg: Arc<ServerConfig>) -> Self {
        let limits = HandshakeLimits::new(cfg.max_handshake_headers, cfg.max_handshake_bytes);
        let conn_config = Arc::new(cfg.connection.clone());
        let max_topics = cfg.max_topics_per_connection;
        Self {
            index,
            epoch: Instant::now(),
            loop_nodelay: cfg.resolved_event_loop().nodelay,
            handler,
            shared,
            cfg,
            limits,
            conn_config,
            slots: Slots::new(),
            peer_ips: Slots::new(),
            local: Local { pending: Vec::new(), topics: Topics::default(), max_topics },
            targets: Vec::new(),
            inbox: Vec::new(),
            shutdown_deadline: None,
            deadline_passed: false,
            counters: WorkerCounters::new(),
        }
    }

    /// Refuses the handshake with `response` (of `status`) and closes the socket once
    /// it is written.
    fn refuse(&mut self, io: &mut impl Io, id: ConnId, status: u16, response: Vec<u8>) {
        self.counters.rejected(status);
        self.answer_and_close(io, id, response);
    }

    /// Sends a whole HTTP response and closes the socket once it is written.
    fn answer_and_close(&mut self, io: &mut impl Io, id: ConnId, response: Vec<u8>) {
        io.send(id, response.into());
        io.close(id);
        self.slots.insert(id, Slot::Closing { admitted: true });
    }

    /// A plain GET (not an upgrade): the handler's answer, or 400 as before.
    #[cold]
    fn on_http(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr, req: PlainRequest) {
        let handler = &mut self.handler;
        match catch_unwind(AssertUnwindSafe(|| handler.on_http(&req))) {
            Ok(Some(r)) => self.answer_and_close(io, id, handshake::http_response(r.status, &r.content_type, &r.body)),
            Ok(None) => {
                let e = HandshakeError::NotWebSocketUpgrade;
                tracing::debug!(%peer, error = %e, "bad upgrade request");
                self.refuse(io, id, e.status(), e.response());
            }
            Err(payload) => {
                tracing::error!(worker = self.index, conn = %id, panic = panic_message(&*payload), "on_http panicked; answering 500");
                self.refuse(io, id, 500, handshake::reject_response(500, Some("internal error"), &[]));
            }
        }
    }

    fn on_request(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr, req: Request, rest: &[u8]) {
        let policy = policy::check_host(&self.cfg, &req.host)
            .and_then(|()| policy::check_origin(&self.cfg, req.origin.as_deref(), &req.host));
        if let Err(reason) = policy {
            tracing::debug!(%peer, %reason, "upgrade refused");
            return self.refuse(io, id, 403, handshake::reject_response(403, Some(&reason), &[]));
        }
        let handler = &mut self.handler;
        let decision = catch_unwind(AssertUnwindSafe(|| handler.on_request(&req, &self.cfg.subprotocols)));
        let mut accept = match decision {
            Ok(Decision::Accept(accept)) => accept,
            Ok(Decision::Reject { status, reason, headers }) => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let reason = (!reason.is_empty()).then_some(reason.as_str());
                return self.refuse(io, id, status, handshake::reject_response(status, reason, &headers));
            }
            Err(payload) => {
                tracing::error!(
                    worker = self.index,
                    conn = %id,
                    panic = panic_message(&*payload),
                    "on_request panicked; answering 500"
                );
                return self.refuse(io, id, 500, handshake::reject_response(500, Some("internal error"), &[]));
            }
        };
        // permessage-deflate, when configured: never without assembly (no message to inflate).
        let conn_cfg = &self.cfg.connection;
        if let Some(deflate) = conn_cfg.deflate.as_ref().filter(|_| conn_cfg.assemble_fragments) {
            accept.deflate = req.negotiate_deflate(deflate);
        }
        let response = match req.accept(&accept) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "handler accepted with an invalid choice; refusing with 500");
                return self.refuse(io, id, 500, handshake::reject_response(500, Some(&e.to_string()), &[]));
            }
        };
        let mut info = ConnInfo::new();
        info.protocol = accept.protocol;
        info.deflate = accept.deflate.map(|(params, _)| params);
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
        let open = Driven::new(conn, response.len());
        open.apply_socket_options(io, id, self.loop_nodelay);
        io.send(id, response.into());
        io.set_timer(id, None);
        self.slots.insert(id, Slot::Open(open));
        self.counters.now.connections_open += 1;
        self.counters.cold = true;
        // `on_open` first, then what came with the request (it may close the connection).
        self.pump(io, id);
        if !rest.is_empty()
            && let Some(Slot::Open(open)) = self.slots.get_mut(&id)
        {
            open.read(rest, now);
            self.pump(io, id);
        }
    }

    /// Runs the shared driver on `id` (events to the handler, output to the loop, ...),
    /// then keeps its timer within the shutdown deadline.
    fn pump(&mut self, io: &mut impl Io, id: ConnId) {
        let Some(Slot::Open(open)) = self.slots.get_mut(&id) else { return };
        let deliver = to_handler(&mut self.handler, self.index, id, &self.shared, &mut self.local);
        open.pump(io, id, self.epoch, &Who(self.index, id), &mut self.counters.now.traffic, deliver);
        // The close (its frames, an error before it) was counted: publish everything.
        self.counters.cold |= open.close_reported();
        if self.shutdown_deadline.is_some() {
            self.arm_shutdown(io, id);
        }
    }

    /// During shutdown, makes sure `id`'s timer fires no later than the deadline.
    fn arm_shutdown(&mut self, io: &mut impl Io, id: ConnId) {
        let Some(deadline) = self.shutdown_deadline else { return };
        match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => open.arm(io, id, self.epoch, deadline),
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
                    let _ = open.connection_mut().close(CloseCode::GOING_AWAY, "server shutting down");
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
                open.mark_aborted();
            }
            io.abort(id);
        }
    }

    fn maybe_stop(&mut self, io: &mut impl Io) {
        if self.shutdown_deadline.is_some() && self.slots.is_empty() {
            // The loop may end before another turn end: the last counts go out now.
            self.publish_counters(io);
            io.stop();
        }
    }

    /// Sends the pending broadcasts and publishes: each message is queued on each of its
    /// connections (framed once, shared), then each connection is pumped once. A handler
    /// called by the pumps may publish again: that goes out in the next round, and after
    /// a few rounds in the next loop turn (the worker wakes itself), so a handler that
    /// publishes from every callback cannot keep the worker here.
    fn flush_pending(&mut self, io: &mut impl Io) {
        const ROUNDS: usize = 8;
        for _ in 0..ROUNDS {
            if self.local.pending.is_empty() {
                return;
            }
            self.flush_round(io);
        }
        if !self.local.pending.is_empty() {
            self.shared.workers[self.index].wake();
        }
    }

    fn flush_round(&mut self, io: &mut impl Io) {
        let mut pending = std::mem::take(&mut self.local.pending);
        let mut targets = std::mem::take(&mut self.targets);
        for out in &pending {
            // BufferFull is reported by Drain later; a peer over the buffered limit is
            // dropped by the connection's policy (1008) when it is pumped.
            match out {
                Outgoing::All(m) => {
                    for (id, slot) in self.slots.iter_mut() {
                        if let Some(open) = connected(slot) {
                            let _ = open.connection_mut().send_prepared(m, None);
                            targets.push(id);
                        }
                    }
                }
                Outgoing::Topic(topic, m, skip) => {
                    for &id in self.local.topics.subscribers(topic) {
                        if Some(id) != *skip
                            && let Some(open) = self.slots.get_mut(&id).and_then(connected)
                        {
                            let _ = open.connection_mut().send_prepared(m, None);
                            targets.push(id);
                        }
                    }
                }
            }
        }
        if pending.len() > 1 {
            // A connection several messages went to is pumped once.
            targets.sort_unstable_by_key(|id| id.index());
            targets.dedup();
        }
        pending.clear();
        if self.local.pending.is_empty() {
            self.local.pending = pending;
        }
        for &id in &targets {
            self.pump(io, id);
        }
        targets.clear();
        self.targets = targets;
    }

    /// Publishes the counters that changed this turn, with the gauges brought up to date.
    fn publish_counters(&mut self, io: &impl Io) {
        let now = io.now();
        let c = &mut self.counters;
        // The sends, as ringwire-conn counted them on this thread (every path).
        let sent = ringwire_conn::thread_sent();
        let t = &mut c.now.traffic;
        t.messages_sent = ByType { text: sent.text_messages, binary: sent.binary_messages };
        t.bytes_sent = ByType { text: sent.text_bytes, binary: sent.binary_bytes };
        let cold = &mut c.cold;
        WorkerCounters::set(cold, &mut c.now.io, io.loop_stats());
        WorkerCounters::set(cold, &mut c.now.compression, ringwire_conn::deflate::thread_counts());
        WorkerCounters::set(cold, &mut c.now.topics, self.local.topics.len() as u64);
        WorkerCounters::set(cold, &mut c.now.subscriptions, self.local.topics.subscriptions() as u64);
        if c.queued_due(now) {
            let queued = self
                .slots
                .iter()
                .map(|(_, slot)| match slot {
                    Slot::Open(open) => open.connection().buffered_amount() as u64,
                    _ => 0,
                })
                .sum();
            WorkerCounters::set(&mut c.cold, &mut c.now.bytes_queued, queued);
        }
        c.publish(&self.shared.stats[self.index]);
    }

    /// Refuses a connection before its handshake with 503 and `reason`. Over TLS it is
    /// dropped at once instead (as nginx and HAProxy do): the 503 could only go out after a
    /// TLS handshake, which would spend a certificate signature and, meanwhile, a descriptor
    /// that no limit counts on a connection that is over the limits.
    fn unavailable(&mut self, io: &mut impl Io, id: ConnId, reason: &str) {
        self.counters.rejected(503);
        if self.cfg.tls.is_some() {
            tracing::debug!(worker = self.index, conn = %id, reason, "tls connection over the limits dropped");
            io.abort(id);
            self.slots.insert(id, Slot::Closing { admitted: false });
            return;
        }
        io.send(id, handshake::reject_response(503, Some(reason), &[]).into());
        io.close(id);
        self.slots.insert(id, Slot::Closing { admitted: false });
    }
}

impl<H: Handler> ringwire_io::Handler for Worker<H> {
    fn on_accept(&mut self, io: &mut impl Io, id: ConnId, peer: SocketAddr) {
        self.counters.now.connections_accepted += 1;
        self.counters.cold = true;
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

    fn on_data(&mut self, io: &mut impl Io, id: ConnId, data: RecvBuf<'_>) {
        match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                open.read_buf(data, io.now());
                self.pump(io, id);
            }
            Some(Slot::Handshake { buf, peer, scanned }) => {
                let peer = *peer;
                buf.extend_from_slice(&data);
                if !head_complete(buf, scanned) {
                    if buf.len() > self.cfg.max_handshake_bytes {
                        let e = HandshakeError::HeadTooLarge(self.cfg.max_handshake_bytes);
                        tracing::debug!(%peer, error = %e, "bad upgrade request");
                        self.refuse(io, id, e.status(), e.response());
                    }
                    return;
                }
                match handshake::parse_request(buf, &self.limits) {
                    Ok(None) => {}
                    Ok(Some((req, used))) => {
                        let rest = buf.split_off(used);
                        self.on_request(io, id, peer, req, &rest);
                    }
                    Err(HandshakeError::NotWebSocketUpgrade)
                        if let Some(req) = handshake::parse_plain_request(buf, &self.limits) =>
                    {
                        self.on_http(io, id, peer, req);
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "bad upgrade request");
                        self.refuse(io, id, e.status(), e.response());
                    }
                }
            }
            Some(Slot::Closing { .. }) | None => {}
        }
    }

    fn on_data_into(&mut self, io: &mut impl Io, id: ConnId, buf: BytesMut) {
        if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
            open.read_into(buf, io.now());
            self.pump(io, id);
        }
    }

    fn on_sent(&mut self, io: &mut impl Io, id: ConnId, bytes: usize) {
        if let Some(Slot::Open(open)) = self.slots.get_mut(&id)
            && open.written(bytes, io.now())
        {
            self.pump(io, id);
        }
    }

    fn on_timer(&mut self, io: &mut impl Io, id: ConnId) {
        if self.shutdown_deadline.is_some_and(|d| io.now() >= d) {
            return self.abort_at_deadline(io, id);
        }
        match self.slots.get_mut(&id) {
            Some(Slot::Handshake { .. }) => {
                self.refuse(io, id, 408, handshake::reject_response(408, Some("handshake timed out"), &[]));
            }
            Some(Slot::Open(open)) => {
                open.timeout(io.now());
                self.pump(io, id);
            }
            Some(Slot::Closing { .. }) => self.arm_shutdown(io, id),
            None => {}
        }
    }

    fn on_closed(&mut self, io: &mut impl Io, id: ConnId, error: Option<std::io::Error>) {
        let admitted = match self.slots.get_mut(&id) {
            Some(Slot::Open(open)) => {
                let deliver = to_handler(&mut self.handler, self.index, id, &self.shared, &mut self.local);
                let counts = &mut self.counters.now.traffic;
                open.closed(io, id, self.epoch, error.as_ref(), &Who(self.index, id), counts, deliver);
                self.counters.now.connections_open -= 1;
                self.counters.cold = true;
                // After the handler's last call (which may still subscribe).
                let shared = &self.shared;
                self.local.topics.remove_conn(id, |topic| shared.topic_removed(&topic));
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
            // Keep the order commands were given in: pending broadcasts and publishes go
            // out before a later send, close or shutdown.
            if matches!(cmd, Command::Conn(..)) {
                self.flush_pending(io);
            }
            match cmd {
                Command::Conn(id, cmd) => {
                    if let Some(Slot::Open(open)) = self.slots.get_mut(&id) {
                        cmd.apply(open.connection_mut());
                        self.pump(io, id);
                    }
                }
                Command::Broadcast(m) => self.local.pending.push(Outgoing::All(m)),
                Command::Publish(topic, m) => self.local.pending.push(Outgoing::Topic(topic, m, None)),
            }
        }
        self.inbox = inbox;
        if shutdown {
            self.flush_pending(io);
            self.begin_shutdown(io);
        }
    }

    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.flush_pending(io);
        self.publish_counters(io);
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
        assert!(std::mem::size_of::<Slot>() <= std::mem::size_of::<Driven>() + 8);
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
}
