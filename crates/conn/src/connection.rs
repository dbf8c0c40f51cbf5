//! [`Connection`]: the sans-IO state machine.

use crate::info::Info;
use crate::recv::{self, Inbound, Limits, Recv};
use crate::send::Outbound;
use crate::timers::{Fired, Timers};
use crate::{
    BufferedLimitPolicy, CloseCode, Config, ConnError, ConnInfo, Event, Message, OpCode, Payload, PreparedMessage,
    ProtocolError, Role, SendError, SendStatus, SendToken, State, Utf8Bytes,
};
use bytes::Buf as _;
use bytes::{Bytes, BytesMut};
use ringwire_frame::{ClosePayload, DecodeConfig, MAX_CLOSE_REASON, MAX_CONTROL_PAYLOAD, RSV1, truncate_utf8};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::ops::DerefMut;
use std::sync::Arc;
use std::time::Instant;

mod compression;
mod pings;

use compression::Codecs;
use pings::Pings;

/// Input for [`Connection::take_inbound`].
enum Step<'d> {
    /// Bytes received.
    Feed(&'d [u8]),
    /// The lent message buffer, back with bytes received into it.
    GiveBack(BytesMut),
}

/// What is left of a frame's payload for [`Connection::lend_read_buffer`] to lend the message
/// buffer to receive it into: below it a copy from a receive buffer costs less than the
/// system calls of a receive of its own. (1 KiB under test, so that property tests of a
/// few KiB per frame reach it.)
const LEND_MIN: usize = if cfg!(test) { 1 << 10 } else { 64 << 10 };

/// One WebSocket connection after the handshake, for either role, with no socket,
/// thread or clock inside.
///
/// The driver feeds it bytes and time, the application gives it commands, and both
/// collect what it produces:
///
/// - **(A) getters**: [`state`](Self::state), [`connected`](Self::connected),
///   [`close_reason_code`](Self::close_reason_code), [`buffered_amount`](Self::buffered_amount), ...
/// - **(B) inputs**: [`handle_read`](Self::handle_read), [`handle_written`](Self::handle_written),
///   [`handle_eof`](Self::handle_eof), [`handle_timeout`](Self::handle_timeout).
/// - **(C) commands**, which only enqueue: [`send`](Self::send), [`send_text`](Self::send_text),
///   [`send_binary`](Self::send_binary), [`send_prepared`](Self::send_prepared), [`ping`](Self::ping),
///   [`pong`](Self::pong), [`cancel_pong`](Self::cancel_pong), [`close`](Self::close),
///   [`drop_connection`](Self::drop_connection), [`pause`](Self::pause), [`resume`](Self::resume).
/// - **(D) outputs**: after every input or command, in this order:
///   [`poll_event`](Self::poll_event) until `None`, then [`poll_transmit`](Self::poll_transmit)
///   until `None` (write the chunks in order, report with `handle_written`), then
///   re-arm the timer from [`poll_timeout`](Self::poll_timeout). Stop reading while
///   [`wants_read`](Self::wants_read) is false; close the socket once
///   [`is_finished`](Self::is_finished) is true.
///
/// ```
/// use ringwire_conn::{Config, ConnInfo, Connection, Event, Message, Role};
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut server = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
/// // A masked "Hello" from a client (RFC 6455 section 5.7).
/// server.handle_read(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], now);
/// let Some(Event::Message(Message::Text(t))) = server.poll_event() else { panic!() };
/// assert_eq!(&*t, "Hello");
/// let _ = server.send_text(t, None).unwrap(); // echo
/// let mut wire = Vec::new();
/// while let Some(chunk) = server.poll_transmit() {
///     wire.extend_from_slice(&chunk);
/// }
/// assert_eq!(wire, b"\x81\x05Hello");
/// server.handle_written(wire.len(), now);
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    /// The handshake facts: no strings while they are just the peer's IP address.
    info: Info,
    state: State,
    recv: Recv,
    /// A close frame or a protocol error was read (or the peer's side ended): no more
    /// input is parsed.
    input_done: bool,
    out: Outbound,
    events: VecDeque<Event>,
    /// The deadlines and the last `now` given.
    timers: Timers,
    close_code: Option<CloseCode>,
    close_description: Option<Box<str>>,
    paused: bool,
    /// Received bytes not parsed yet: held while paused, and the rest of a read after
    /// a finding, parsed once the application has taken the events before it. `None`
    /// when there are none (boxed and released, so an idle connection holds nothing).
    pending: Option<Box<BytesMut>>,
    /// This connection's own permessage-deflate codecs (context takeover), created with
    /// the first message that needs one; `None` otherwise (shared mode never has any).
    codecs: Option<Box<Codecs>>,
    /// Pings received and the pong owed; `None` while no ping is outstanding.
    pings: Option<Box<Pings>>,
}

impl Connection {
    /// A connection in the `Open` state, right after a successful handshake. Pass the
    /// config as an `Arc<Config>` to share one among many connections (a server does).
    pub fn new(role: Role, config: impl Into<Arc<Config>>, info: ConnInfo, now: Instant) -> Self {
        let config = config.into();
        Self {
            role,
            recv: Recv::new(),
            input_done: false,
            timers: Timers::new(&config, now),
            config,
            info: Info::new(info),
            state: State::Open,
            out: Outbound::new(role),
            events: VecDeque::new(),
            close_code: None,
            close_description: None,
            paused: false,
            pending: None,
            pings: None,
            codecs: None,
        }
    }

    /// Sets the peer's IP address as the only address ([`remote_address`](Self::remote_address)
    /// and [`remote_addresses`](Self::remote_addresses)), replacing any in the [`ConnInfo`]
    /// given to [`new`](Self::new), as [`ConnInfo::with_remote_address`] does with its text.
    /// A server uses this for a peer that is not a trusted proxy: the address is written
    /// as text only if asked for, so an idle connection holds no strings for it.
    ///
    /// ```
    /// use ringwire_conn::{Config, ConnInfo, Connection, Role};
    /// use std::net::Ipv4Addr;
    /// use std::time::Instant;
    ///
    /// let c = Connection::new(Role::Server, Config::server(), ConnInfo::new(), Instant::now())
    ///     .with_remote_address(Ipv4Addr::new(192, 0, 2, 1).into());
    /// assert_eq!(c.remote_address(), Some("192.0.2.1"));
    /// assert_eq!(c.remote_addresses(), ["192.0.2.1"]);
    /// ```
    #[must_use]
    pub fn with_remote_address(mut self, addr: IpAddr) -> Self {
        self.info = self.info.with_peer(addr);
        self
    }

    // ---- (B) inputs -------------------------------------------------------------

    /// Bytes received from the peer: any split of the stream, in order. What is kept
    /// (partial frames) is copied, so `data` can be reused at once. Ignored once the
    /// connection no longer reads; buffered (not parsed) while paused.
    pub fn handle_read(&mut self, data: &[u8], now: Instant) {
        self.timers.set_now(now);
        if self.state == State::Closed || self.input_done || data.is_empty() {
            return;
        }
        if self.state == State::Open {
            self.timers.on_receive(&self.config, now);
        }
        if !self.parses_now() {
            // Reading is stopped, or earlier input or events come first: keep this for
            // `poll_event`.
            self.pending.get_or_insert_with(Box::default).extend_from_slice(data);
            return;
        }
        let used = self.feed(data);
        if used < data.len() {
            self.pending.get_or_insert_with(Box::default).extend_from_slice(&data[used..]);
        }
    }

    /// [`handle_read`](Self::handle_read) for input the connection may keep: a buffer the
    /// driver can hand over as [`Bytes`] without a copy (an io_uring receive buffer lends
    /// itself, see `ringwire_io::RecvBuf`; a driver whose buffer would copy calls
    /// `handle_read`). A data message in one frame at the front of `buf` that fills at least
    /// half of it, the usual case for a large message that arrived in one receive, is
    /// unmasked in place and becomes a slice of `buf` instead of a copy; anything else in
    /// `buf` is read as by `handle_read`.
    pub fn handle_read_buf<B>(&mut self, mut buf: B, now: Instant)
    where
        B: DerefMut<Target = [u8]> + Into<Bytes>,
    {
        // Below this a copy costs less than keeping the buffer (and would pin more memory
        // than it holds).
        const KEEP_MIN: usize = 2048;
        let direct = buf.len() >= KEEP_MIN
            && self.state != State::Closed
            && !self.input_done
            && self.parses_now()
            && self.recv.is_idle();
        let whole = if direct { recv::whole_message_in_place(&self.limits(), &mut buf) } else { None };
        let Some((opcode, payload)) = whole else { return self.handle_read(&buf, now) };
        self.timers.set_now(now);
        if self.state == State::Open {
            self.timers.on_receive(&self.config, now);
        }
        let buf: Bytes = buf.into();
        let end = payload.end;
        let data = buf.slice(payload);
        let message = if opcode == OpCode::Text {
            match Utf8Bytes::try_from(data) {
                Ok(text) => Message::Text(text),
                Err(_) => {
                    // As the usual path ends on it: nothing after it is read.
                    self.input_done = true;
                    return self.on_stream_end(Inbound::Error(ProtocolError::InvalidUtf8));
                }
            }
        } else {
            Message::Binary(data)
        };
        self.events.push_back(Event::Message(message));
        if end < buf.len() {
            self.handle_read(&buf[end..], now);
        }
    }

    /// Whether input is parsed as it arrives: reading is not stopped, no earlier input or
    /// event waits, and the message buffer is not lent out.
    fn parses_now(&self) -> bool {
        !self.paused && !self.output_full() && self.pending.is_none() && self.events.is_empty() && !self.recv.is_lent()
    }

    /// The message buffer, lent to the driver to receive the rest of a large frame's payload
    /// straight into it (`ringwire_io::Io::recv_into`), and how many bytes to receive: while
    /// a frame being received has at least 64 KiB of payload to come and input is parsed as
    /// it arrives. The buffer has room for them (or for the next 1 MiB of them: an announced
    /// payload reserves no more at once than on the usual path). Until
    /// [`handle_read_into`](Self::handle_read_into) gives it back, input given to
    /// [`handle_read`](Self::handle_read) is kept for after.
    ///
    /// Saves a copy per byte: a large payload otherwise arrives in the loop's receive
    /// buffers and is copied into this one.
    pub fn lend_read_buffer(&mut self) -> Option<(BytesMut, usize)> {
        if self.state == State::Closed || self.input_done || !self.parses_now() {
            return None;
        }
        self.recv.lend(LEND_MIN)
    }

    /// The buffer [`lend_read_buffer`](Self::lend_read_buffer) lent, back with the bytes
    /// received into it appended (any number, none at the peer's EOF): read as by
    /// [`handle_read`](Self::handle_read), then any input kept meanwhile. The new bytes are
    /// read at once even if reading was paused since (they are in the message buffer
    /// already; the drivers pause the loop with the connection, so none arrive then). A
    /// buffer not lent is dropped.
    pub fn handle_read_into(&mut self, buf: BytesMut, now: Instant) {
        self.timers.set_now(now);
        let Some(at) = self.recv.lent_at() else { return };
        if self.state == State::Closed || self.input_done {
            return;
        }
        if buf.len() > at && self.state == State::Open {
            self.timers.on_receive(&self.config, now);
        }
        let (_, extra) = self.take_inbound(Step::GiveBack(buf));
        if let Some(extra) = extra {
            // More than was asked for: the next frames.
            self.handle_read(&extra, now);
        }
        self.parse_pending();
    }

    /// The receive limits, from the shared config.
    fn limits(&self) -> Limits {
        let mut dcfg = DecodeConfig::new(self.role, self.config.max_received_frame_size as u64);
        if self.info.deflate().is_some() {
            dcfg.allowed_rsv = RSV1;
        }
        Limits { dcfg, max_message: self.config.max_received_message_size, assemble: self.config.assemble_fragments }
    }

    /// Parses held input until it yields an event, runs out, or reading stops.
    fn parse_pending(&mut self) {
        while self.events.is_empty() && !self.paused && !self.output_full() && !self.recv.is_lent() {
            let Some(mut held) = self.pending.take() else { return };
            if self.state == State::Closed || self.input_done {
                return;
            }
            let used = self.feed(&held);
            held.advance(used);
            if !held.is_empty() {
                self.pending = Some(held);
            }
        }
    }

    /// Feeds the receive path until it reports something; returns the bytes used.
    fn feed(&mut self, data: &[u8]) -> usize {
        self.take_inbound(Step::Feed(data)).0
    }

    /// Runs one step of the receive path, turning what it finds into events: returns the
    /// bytes of `data` used ([`Step::Feed`]) or those beyond the lent frame's payload
    /// ([`Step::GiveBack`]).
    #[inline(always)]
    fn take_inbound(&mut self, step: Step<'_>) -> (usize, Option<BytesMut>) {
        // Data, pings and pongs become events in stream order right here; a close frame
        // or an error ends the stream, so it is handled after.
        let owe_pongs = self.config.auto_pong && self.state == State::Open;
        let deflate = self.info.deflate();
        let lim = self.limits();
        let (events, pings, codecs, role) = (&mut self.events, &mut self.pings, &mut self.codecs, self.role);
        let mut last = None;
        let mut out = |item| match item {
            Inbound::Message(m) => events.push_back(Event::Message(m)),
            Inbound::Compressed { text, payload } => {
                // RSV1 only gets through the decoder once deflate was agreed.
                let params = deflate.expect("RSV1 allowed only with deflate");
                match compression::inflate(codecs, params, role, lim.max_message, text, &payload) {
                    Ok(m) => events.push_back(Event::Message(m)),
                    // The receive path stops after each finding: this is the last.
                    Err(e) => last = Some(Inbound::Error(e)),
                }
            }
            Inbound::Frame(f) => events.push_back(Event::Frame(f)),
            Inbound::Pong(p) => events.push_back(Event::Pong(p)),
            Inbound::Ping(p) => {
                Pings::on_ping(pings, &p, owe_pongs);
                events.push_back(Event::Ping(p));
            }
            end @ (Inbound::Close(_) | Inbound::Error(_)) => last = Some(end),
        };
        let (used, extra, done) = match step {
            Step::Feed(data) => {
                let (used, done) = self.recv.feed(&lim, data, &mut out);
                (used, None, done)
            }
            Step::GiveBack(buf) => {
                let (extra, done) = self.recv.give_back(&lim, buf, &mut out);
                (0, extra, done)
            }
        };
        self.input_done |= done || last.is_some();
        if let Some(end) = last {
            self.on_stream_end(end);
        }
        (used, extra)
    }

    /// The driver wrote `n` bytes of the chunks [`poll_transmit`](Self::poll_transmit)
    /// handed out (more than was handed out counts as all of it).
    ///
    /// While reading is stopped because the output is above the high-water mark (see
    /// [`wants_read`](Self::wants_read)), bytes written also count as a sign of life
    /// for keepalive: the peer is taking our output, and we are not looking at its.
    pub fn handle_written(&mut self, n: usize, now: Instant) {
        self.timers.set_now(now);
        if n > 0 && self.state == State::Open {
            if self.output_full() {
                self.timers.on_receive(&self.config, now);
            } else {
                self.timers.on_activity(&self.config, now);
            }
        }
        if self.out.buffered() > self.config.high_water_mark {
            self.out.read_blocked = true;
        }
        self.out.on_written(n, &mut self.events);
        if self.out.buffered() <= self.config.low_water_mark {
            self.out.read_blocked = false;
            // Owed pongs are queued now, before a Drain lets the application refill the
            // output above the mark (they would wait behind every refill); Drain then
            // waits until the buffered amount, pongs included, is at the mark again.
            self.flush_pongs();
        }
        if self.out.drain_owed && self.out.buffered() <= self.config.low_water_mark {
            self.out.drain_owed = false;
            self.events.push_back(Event::Drain);
        }
        if self.state == State::PeerRequestedClose && self.out.close_written {
            self.finish_close();
        }
    }

    /// The peer closed the TCP connection, or reading or writing failed. Unless the
    /// connection is already closed, it closes now: with the peer's code if its close
    /// frame arrived, with ours if we were closing, else with 1006.
    pub fn handle_eof(&mut self, now: Instant) {
        self.timers.set_now(now);
        self.input_done = true;
        self.clear_pongs();
        self.out.clear(&mut self.events);
        if self.state == State::Open {
            self.close_code = Some(CloseCode::ABNORMAL);
            self.close_description = Some("Connection dropped by remote peer.".into());
        }
        if self.state != State::Closed {
            self.finish_close();
        }
    }

    /// Time passed: fires every deadline at or before `now` (close timeout, keepalive,
    /// idle timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timers.set_now(now);
        // Each of the four timers fires at most once per call, even with a zero interval.
        for _ in 0..4 {
            let Some(fired) = self.timers.expired(now) else { break };
            match fired {
                Fired::Close => match self.state {
                    State::Ending | State::PeerRequestedClose => {
                        self.out.discard_unhanded(&mut self.events);
                        self.finish_close();
                    }
                    // Closed with output the peer never took: give up on it.
                    State::Closed => self.out.clear(&mut self.events),
                    State::Open => {}
                },
                Fired::KeepaliveGrace if self.state == State::Open => {
                    self.events.push_back(Event::Error(ConnError::KeepaliveTimeout));
                    self.drop_connection(CloseCode::ABNORMAL, "Peer not responding.", true);
                }
                Fired::KeepalivePing if self.state == State::Open => {
                    // Over `max_buffered` the ping is skipped; the grace period runs
                    // all the same.
                    if self.fits(self.out.wire_len(0, None)) {
                        self.out.push_control(OpCode::Ping, &[], false);
                    }
                    self.timers.on_ping_sent(&self.config, now);
                }
                Fired::Idle if self.state == State::Open => {
                    self.start_close(CloseCode::GOING_AWAY, "Idle timeout");
                }
                _ => {}
            }
        }
    }

    // ---- (C) commands -----------------------------------------------------------

    /// Sends text or binary, decided by the type (Node `send`): `String`/`&str`/
    /// [`Utf8Bytes`] as text, `Bytes`/`Vec<u8>`/`&[u8]` as binary.
    pub fn send(&mut self, data: impl Into<Payload>, token: Option<SendToken>) -> Result<SendStatus, SendError> {
        match data.into() {
            Payload::Text(t) => self.send_data(OpCode::Text, t.into_bytes(), token, true),
            Payload::Binary(b) => self.send_data(OpCode::Binary, b, token, true),
        }
    }

    /// Sends a text message (Node `sendUTF`). Valid UTF-8 by type.
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>, token: Option<SendToken>) -> Result<SendStatus, SendError> {
        self.send_data(OpCode::Text, text.into().into_bytes(), token, true)
    }

    /// Sends a binary message (Node `sendBytes`).
    pub fn send_binary(&mut self, data: impl Into<Bytes>, token: Option<SendToken>) -> Result<SendStatus, SendError> {
        self.send_data(OpCode::Binary, data.into(), token, true)
    }

    /// Sends a message framed once for many connections (broadcast). A server queues
    /// the shared wire bytes without copying them, except that a small message (up to
    /// 526 wire bytes) is copied next to the other small frames queued, so that a burst
    /// goes out as one write; a client must mask, so it frames the payload itself.
    ///
    /// Fragmented like [`send`](Self::send) when
    /// [`Config::fragment_outgoing_messages`] is on and the payload is over
    /// [`Config::fragmentation_threshold`]: then the frames are made here, each a new
    /// header and a slice of the shared payload (not copied on a server).
    pub fn send_prepared(
        &mut self,
        frame: &PreparedMessage,
        token: Option<SendToken>,
    ) -> Result<SendStatus, SendError> {
        let threshold = self.fragmentation();
        let len = frame.payload().len();
        let shared_wire = self.role == Role::Server && !threshold.is_some_and(|t| len > t && t > 0);
        let wire = if shared_wire { frame.wire().len() } else { self.out.wire_len(len, threshold) };
        self.check_send(wire)?;
        crate::sent::count(frame.opcode() == OpCode::Text, len);
        if let Some(z) = self.deflated_prepared(frame) {
            self.out.push_message(frame.opcode(), z, threshold, token, RSV1);
        } else if shared_wire {
            self.out.push_wire(frame.wire(), token);
        } else {
            self.out.push_message(frame.opcode(), frame.payload().clone(), threshold, token, 0);
        }
        Ok(self.send_status())
    }

    /// Sends text or binary like [`send`](Self::send), never compressed, even with
    /// permessage-deflate agreed: for a message that mixes a secret with what an attacker
    /// controls, which compression would leak through its size (CRIME, BREACH).
    pub fn send_uncompressed(
        &mut self,
        data: impl Into<Payload>,
        token: Option<SendToken>,
    ) -> Result<SendStatus, SendError> {
        match data.into() {
            Payload::Text(t) => self.send_data(OpCode::Text, t.into_bytes(), token, false),
            Payload::Binary(b) => self.send_data(OpCode::Binary, b, token, false),
        }
    }

    /// Queues a data message, compressed when `compress` and permessage-deflate applies.
    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        token: Option<SendToken>,
        compress: bool,
    ) -> Result<SendStatus, SendError> {
        let threshold = self.fragmentation();
        // Checked at the uncompressed size: compression makes it smaller, or larger by a
        // few bytes on data that does not compress.
        self.check_send(self.out.wire_len(payload.len(), threshold))?;
        crate::sent::count(opcode == OpCode::Text, payload.len());
        let deflated = if compress { self.deflated(&payload) } else { None };
        match deflated {
            Some(z) => self.out.push_message(opcode, z, threshold, token, RSV1),
            None => self.out.push_message(opcode, payload, threshold, token, 0),
        }
        Ok(self.send_status())
    }

    /// The frame size outgoing messages are cut to, if they are.
    fn fragmentation(&self) -> Option<usize> {
        self.config.fragment_outgoing_messages.then_some(self.config.fragmentation_threshold)
    }

    fn check_send(&mut self, wire: usize) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen(self.state));
        }
        let buffered = self.out.buffered();
        if let Some(limit) = self.config.max_buffered.filter(|&l| buffered + wire > l) {
            if self.config.buffered_limit_policy == BufferedLimitPolicy::Drop {
                let e = ConnError::BufferLimitExceeded { buffered, len: wire, limit };
                self.events.push_back(Event::Error(e));
                self.drop_connection(CloseCode::POLICY_VIOLATION, "Send buffer limit exceeded.", false);
            }
            return Err(SendError::BufferLimitExceeded { buffered, len: wire, limit });
        }
        Ok(())
    }

    fn send_status(&mut self) -> SendStatus {
        if self.out.buffered() > self.config.high_water_mark {
            self.out.drain_owed = true;
            SendStatus::BufferFull
        } else {
            SendStatus::Queued
        }
    }

    /// Sends a ping (Node `ping`). A payload over 125 bytes is an error, not cut.
    /// Counted in [`buffered_amount`](Self::buffered_amount) and held to
    /// [`Config::max_buffered`] like data: over it, the ping is refused and
    /// [`Config::buffered_limit_policy`] applies.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Sends an unsolicited pong (Node `pong`); pings are answered automatically. Held
    /// to [`Config::max_buffered`] as [`ping`](Self::ping) is. Unlike an automatic
    /// pong, it is never replaced by a later one.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, op: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        if self.state != State::Open {
            return Err(SendError::NotOpen(self.state));
        }
        self.flush_pongs();
        self.check_send(self.out.wire_len(payload.len(), None))?;
        self.out.push_control(op, payload, false);
        Ok(())
    }

    /// Starts the close handshake (Node `close`): the close frame goes after
    /// everything already queued, the state becomes `Ending`, and the peer has
    /// `close_timeout` (counted from the last `now` given) to answer. A no-op once a
    /// close has started. Codes that may not be sent (1004-1006, 1015, unassigned) and
    /// reasons over 123 bytes are errors.
    ///
    /// `reason` is a `&str` or an `Option<&str>`: `None` sends (and reports as
    /// [`close_description`](Self::close_description)) the code's
    /// [`description`](CloseCode::description), as Node fills an absent description
    /// from `CLOSE_DESCRIPTIONS` (empty for a code without one); `Some("")` sends no
    /// reason. Node's `close()` with no arguments is
    /// `close(CloseCode::default(), None)` (1000, "Normal connection closure").
    ///
    /// ```
    /// use ringwire_conn::{CloseCode, Config, ConnInfo, Connection, Role};
    /// use std::time::Instant;
    ///
    /// let mut c = Connection::new(Role::Server, Config::server(), ConnInfo::new(), Instant::now());
    /// c.close(CloseCode::default(), None)?;
    /// assert_eq!(c.close_reason_code(), Some(CloseCode::NORMAL));
    /// assert_eq!(c.close_description(), Some("Normal connection closure"));
    /// assert_eq!(&c.poll_transmit().unwrap()[4..], b"Normal connection closure");
    /// # Ok::<(), ringwire_conn::SendError>(())
    /// ```
    pub fn close<'r>(&mut self, code: CloseCode, reason: impl Into<Option<&'r str>>) -> Result<(), SendError> {
        let reason = reason_or_description(code, reason.into());
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::CloseReasonTooLong(reason.len()));
        }
        if self.state == State::Open {
            self.start_close(code, reason);
        }
        Ok(())
    }

    fn start_close(&mut self, code: CloseCode, reason: &str) {
        self.flush_pongs_before_close();
        self.out.push_close(ClosePayload::new(code, reason).as_bytes());
        self.state = State::Ending;
        self.close_code = Some(code);
        self.close_description = Some(reason.into());
        self.timers.stop_open_timers();
        self.timers.start_close(self.config.close_timeout);
    }

    /// Closes at once (Node `drop`): data not yet handed out is discarded (its tokens
    /// fail), a close frame with `code` and `reason` is queued unless
    /// `skip_close_frame` (or a close frame was already sent, or `code` may not be
    /// sent), and the state becomes `Closed` with a `Close` event. The reason is cut at
    /// 123 bytes on a character boundary; `None` means the code's
    /// [`description`](CloseCode::description), as for [`close`](Self::close) (Node's
    /// `drop()` defaults the code to 1002: pass `CloseCode::PROTOCOL_ERROR`).
    pub fn drop_connection<'r>(&mut self, code: CloseCode, reason: impl Into<Option<&'r str>>, skip_close_frame: bool) {
        if self.state == State::Closed {
            return;
        }
        let reason = reason_or_description(code, reason.into());
        self.clear_pongs();
        self.out.discard_unhanded(&mut self.events);
        if !skip_close_frame && !self.out.close_queued() && !self.out.close_written {
            let payload = if code.is_allowed_on_wire() { ClosePayload::new(code, reason) } else { ClosePayload::EMPTY };
            self.out.push_close(payload.as_bytes());
        }
        self.close_code = Some(code);
        self.close_description = Some(truncate_utf8(reason, MAX_CLOSE_REASON).into());
        self.finish_close();
    }

    /// Stops reading (Node `pause`): [`wants_read`](Self::wants_read) turns false and
    /// `Pause` is emitted. Bytes given anyway are kept until [`resume`](Self::resume).
    pub fn pause(&mut self) {
        if !self.paused {
            self.paused = true;
            self.events.push_back(Event::Pause);
        }
    }

    /// Restarts reading (Node `resume`) and emits `Resume`, then processes what arrived
    /// while paused.
    pub fn resume(&mut self) {
        if self.paused {
            self.paused = false;
            self.events.push_back(Event::Resume);
        }
    }

    // ---- (D) outputs ------------------------------------------------------------

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.close_pong_window();
        if self.events.is_empty() {
            self.parse_pending();
        }
        let Some(e) = self.events.pop_front() else {
            // Drained: an idle connection keeps no event queue.
            self.events = VecDeque::new();
            return None;
        };
        self.on_event_polled(&e);
        Some(e)
    }

    /// The next chunk to write, in order. Every chunk is handed out once: the driver
    /// writes them all, in order, and reports progress with
    /// [`handle_written`](Self::handle_written). A frame may be two chunks (header,
    /// then the shared payload); payloads are copied only to be masked (client role).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.close_pong_window();
        self.flush_pongs();
        self.out.poll_transmit()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next. May change after
    /// any input or command.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether the driver should read from the socket: false while paused, after a
    /// close frame or a protocol error was received, once closed, and while the output
    /// is backed up.
    ///
    /// Backed up: when [`buffered_amount`](Self::buffered_amount) (everything queued
    /// and not yet written, control frames included) goes above
    /// [`Config::high_water_mark`], reading stops until it falls to
    /// [`Config::low_water_mark`] (the hysteresis of [`Event::Drain`]), so a peer that
    /// sends without reading what we answer cannot make us hold more than
    /// [`Config::max_buffered`] plus one read. No event marks it, and it is independent
    /// of [`pause`](Self::pause): reading needs both to allow it. Bytes handed in
    /// anyway are kept, not parsed, until then.
    pub fn wants_read(&self) -> bool {
        !self.paused && !self.output_full() && !self.input_done && self.state != State::Closed
    }

    /// Whether there are chunks waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn wants_write(&self) -> bool {
        self.out.has_unhanded() || self.pong_ready()
    }

    /// True once the connection is `Closed` and everything queued was written (or
    /// discarded, at the latest `close_timeout` after closing): the driver closes the
    /// socket.
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed && self.out.is_empty()
    }

    // ---- (A) getters ------------------------------------------------------------

    /// The state (Node `state`).
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection is `Open` (Node `connected`).
    pub fn connected(&self) -> bool {
        self.state == State::Open
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The close code once a close started or arrived (Node `closeReasonCode`, -1
    /// while open): ours if we closed first, the peer's (1005 if it sent none) if it
    /// did, 1006 if the connection ended without a close frame.
    pub fn close_reason_code(&self) -> Option<CloseCode> {
        self.close_code
    }

    /// The code of the close frame this side queued to send, if it queued one (1005:
    /// one without a code). Unlike [`close_reason_code`](Self::close_reason_code) it
    /// tells a close frame sent from one received: for counting them.
    pub fn close_frame_sent(&self) -> Option<CloseCode> {
        self.out.close_sent().map(CloseCode)
    }

    /// The code of the close frame received from the peer, if one arrived (1005: one
    /// without a code), whichever side closed first.
    pub fn close_frame_received(&self) -> Option<CloseCode> {
        (self.out.close_received != 0).then_some(CloseCode(self.out.close_received))
    }

    /// The close reason text (Node `closeDescription`).
    pub fn close_description(&self) -> Option<&str> {
        self.close_description.as_deref()
    }

    /// The negotiated subprotocol (Node `protocol`).
    pub fn protocol(&self) -> Option<&str> {
        self.info.protocol()
    }

    /// Negotiated extensions (Node `extensions`; always empty for now).
    pub fn extensions(&self) -> &[String] {
        self.info.extensions()
    }

    /// The protocol version, 13 or 8 (Node `webSocketVersion`).
    pub fn version(&self) -> u8 {
        self.info.version()
    }

    /// The peer's IP address (Node `remoteAddress`): the TCP peer, or, when that is a
    /// trusted proxy, the right-most `X-Forwarded-For` entry that is not one (the rule
    /// of [`handshake::forwarded_addresses`](crate::handshake::forwarded_addresses)).
    /// The first call may write it as text.
    pub fn remote_address(&self) -> Option<&str> {
        self.info.full().remote_address.as_deref()
    }

    /// All addresses: `X-Forwarded-For` entries, then the peer (Node `remoteAddresses`).
    /// The first call may write them as text.
    pub fn remote_addresses(&self) -> &[String] {
        &self.info.full().remote_addresses
    }

    /// The handshake facts. The first call may build them from the compact form the
    /// connection keeps (see [`with_remote_address`](Self::with_remote_address)).
    pub fn info(&self) -> &ConnInfo {
        self.info.full()
    }

    /// Bytes queued and not yet written, frame headers included.
    pub fn buffered_amount(&self) -> usize {
        self.out.buffered()
    }

    /// Bytes received and held for frames not yet complete (plus any input held
    /// while paused).
    pub fn received_held(&self) -> usize {
        self.recv.held() + self.pending.as_ref().map_or(0, |p| p.len())
    }

    // ---- internals --------------------------------------------------------------

    fn on_stream_end(&mut self, item: Inbound) {
        match item {
            Inbound::Close(peer) => self.on_peer_close(peer),
            Inbound::Error(e) => {
                let code = e.close_code();
                let reason = e.to_string();
                self.events.push_back(Event::Error(ConnError::Protocol(e)));
                self.fail(code, &reason);
            }
            _ => unreachable!("only a close frame or an error ends the stream"),
        }
    }

    fn on_peer_close(&mut self, peer: Option<(CloseCode, String)>) {
        let received = peer.as_ref().map_or(CloseCode::NOT_PROVIDED, |(code, _)| *code);
        if matches!(self.state, State::Open | State::Ending) {
            self.out.close_received = received.0;
        }
        match self.state {
            State::Open => {
                self.flush_pongs_before_close();
                let payload = match &peer {
                    Some((code, _)) => ClosePayload::new(*code, ""),
                    None => ClosePayload::EMPTY,
                };
                self.out.push_close(payload.as_bytes());
                let (code, reason) = peer.unwrap_or((CloseCode::NOT_PROVIDED, String::new()));
                self.close_code = Some(code);
                self.close_description = Some(reason.into());
                self.state = State::PeerRequestedClose;
                self.timers.stop_open_timers();
                self.timers.start_close(self.config.close_timeout);
                if self.out.close_written {
                    self.finish_close();
                }
            }
            State::Ending => self.finish_close(),
            State::PeerRequestedClose | State::Closed => {}
        }
    }

    /// Fails the connection after a protocol error: what is queued is still written,
    /// then a close frame with `code` and `reason`; no wait for the peer's answer.
    fn fail(&mut self, code: CloseCode, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        // The pong owed for a ping read before the fault still goes out, before the close.
        self.flush_pongs_before_close();
        if !self.out.close_queued() {
            self.out.push_close(ClosePayload::new(code, reason).as_bytes());
        }
        self.close_code = Some(code);
        self.close_description = Some(truncate_utf8(reason, MAX_CLOSE_REASON).into());
        self.finish_close();
    }

    /// Moves to `Closed` and emits `Close` with the recorded code.
    fn finish_close(&mut self) {
        self.state = State::Closed;
        self.input_done = true;
        self.timers.stop_all();
        if !self.out.is_empty() {
            // What is left (a close frame, data queued before a protocol error) gets
            // `close_timeout` to be written; then `is_finished` turns true regardless.
            self.timers.start_close(self.config.close_timeout);
        }
        self.pending = None;
        let code = *self.close_code.get_or_insert(CloseCode::ABNORMAL);
        let description = self.close_description.get_or_insert_with(Box::default).to_string();
        self.events.push_back(Event::Close { code, description });
    }

    /// Reading stops: the output went above the high-water mark and has not fallen to
    /// the low-water mark since (see [`wants_read`](Self::wants_read)).
    fn output_full(&self) -> bool {
        self.out.read_blocked || self.out.buffered() > self.config.high_water_mark
    }

    /// `wire` more bytes stay within [`Config::max_buffered`].
    fn fits(&self, wire: usize) -> bool {
        self.config.max_buffered.is_none_or(|limit| self.out.buffered() + wire <= limit)
    }
}

/// `reason`, or the code's description when it is `None` (Node's
/// `CLOSE_DESCRIPTIONS[code]`; empty for a code without one).
fn reason_or_description(code: CloseCode, reason: Option<&str>) -> &str {
    reason.unwrap_or_else(|| code.description().unwrap_or(""))
}

#[cfg(test)]
mod memory;
