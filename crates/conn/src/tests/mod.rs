//! The quinn-style simulator: a client and a server [`Connection`] joined by two
//! in-memory pipes, a fake clock and configurable read splits. Tests read as
//! transcripts: act on one side, `drive()`, assert on the other side's events.

mod close;
mod deflate;
mod flow;
mod hostile;
mod methods;
mod props;
mod protocol;
mod spec;

use crate::{Config, ConnInfo, Connection, Event, OpCode, Role};
use ringwire_frame::{DecodeConfig, Decoded, FrameHeader, apply_mask, decode_header};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

pub(crate) struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    /// Read sizes, cycled, for every delivery (empty: deliver everything at once).
    pub splits: Vec<usize>,
    split_at: usize,
    /// Bytes in flight towards the server / the client.
    to_server: VecDeque<u8>,
    to_client: VecDeque<u8>,
    /// The side does not write (a peer that stopped reading).
    pub server_write_blocked: bool,
    pub client_write_blocked: bool,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Everything each side wrote, for wire-level assertions.
    pub client_wire: Vec<u8>,
    pub server_wire: Vec<u8>,
    eof_to_client: bool,
    eof_to_server: bool,
}

impl Pair {
    /// A pair with the default client and server configs.
    pub(crate) fn std() -> Self {
        Self::new(Config::client(), Config::server())
    }

    pub(crate) fn new(client: Config, server: Config) -> Self {
        let now = Instant::now();
        Self {
            client: Connection::new(Role::Client, client, ConnInfo::new(), now),
            server: Connection::new(Role::Server, server, ConnInfo::new(), now),
            now,
            splits: Vec::new(),
            split_at: 0,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            server_write_blocked: false,
            client_write_blocked: false,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_wire: Vec::new(),
            server_wire: Vec::new(),
            eof_to_client: false,
            eof_to_server: false,
        }
    }

    pub(crate) fn conn(&mut self, side: Side) -> &mut Connection {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Takes the events a side produced so far.
    pub(crate) fn events(&mut self, side: Side) -> Vec<Event> {
        self.collect();
        match side {
            Side::Client => std::mem::take(&mut self.client_events),
            Side::Server => std::mem::take(&mut self.server_events),
        }
    }

    pub(crate) fn server_events(&mut self) -> Vec<Event> {
        self.events(Side::Server)
    }

    pub(crate) fn client_events(&mut self) -> Vec<Event> {
        self.events(Side::Client)
    }

    fn collect(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    fn next_split(&mut self, len: usize) -> usize {
        if self.splits.is_empty() {
            return len;
        }
        let s = self.splits[self.split_at % self.splits.len()].max(1);
        self.split_at += 1;
        s.min(len)
    }

    /// Writes what `side` has to send into its pipe; whether anything moved.
    fn write(&mut self, side: Side) -> bool {
        let blocked = match side {
            Side::Client => self.client_write_blocked,
            Side::Server => self.server_write_blocked,
        };
        if blocked {
            return false;
        }
        let now = self.now;
        let mut out = Vec::new();
        let conn = self.conn(side);
        while let Some(chunk) = conn.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
        if out.is_empty() {
            return false;
        }
        conn.handle_written(out.len(), now);
        let (pipe, wire) = match side {
            Side::Client => (&mut self.to_server, &mut self.client_wire),
            Side::Server => (&mut self.to_client, &mut self.server_wire),
        };
        pipe.extend(&out);
        wire.extend_from_slice(&out);
        true
    }

    /// Delivers in-flight bytes to `side` while it wants to read; whether any moved.
    fn read(&mut self, side: Side) -> bool {
        let mut moved = false;
        loop {
            let pending = match side {
                Side::Client => self.to_client.len(),
                Side::Server => self.to_server.len(),
            };
            if pending == 0 || !self.conn(side).wants_read() {
                return moved;
            }
            let n = self.next_split(pending);
            let chunk: Vec<u8> = match side {
                Side::Client => self.to_client.drain(..n).collect(),
                Side::Server => self.to_server.drain(..n).collect(),
            };
            let now = self.now;
            self.conn(side).handle_read(&chunk, now);
            self.collect();
            moved = true;
        }
    }

    /// Runs both sides until nothing moves: events, writes, reads, and TCP close once
    /// a side is finished and its bytes are delivered.
    pub(crate) fn drive(&mut self) {
        for _ in 0..10_000 {
            self.collect();
            let mut moved = self.write(Side::Client) | self.write(Side::Server);
            moved |= self.read(Side::Server) | self.read(Side::Client);
            let now = self.now;
            if self.server.is_finished() && self.to_client.is_empty() && !self.eof_to_client {
                self.eof_to_client = true;
                self.client.handle_eof(now);
                moved = true;
            }
            if self.client.is_finished() && self.to_server.is_empty() && !self.eof_to_server {
                self.eof_to_server = true;
                self.server.handle_eof(now);
                moved = true;
            }
            if !moved {
                self.collect();
                return;
            }
        }
        panic!("drive() did not settle");
    }

    /// Moves the clock forward by `d`, firing due timers on both sides, then drives.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.client.handle_timeout(now);
                    self.server.handle_timeout(now);
                    self.drive();
                }
                _ => break,
            }
        }
        self.now = end;
        self.drive();
    }

    /// Raw bytes from the client's side straight into the server (crafted frames).
    pub(crate) fn inject_to_server(&mut self, bytes: &[u8]) {
        self.to_server.extend(bytes);
        self.drive();
    }

    /// Raw bytes from the server's side straight into the client.
    pub(crate) fn inject_to_client(&mut self, bytes: &[u8]) {
        self.to_client.extend(bytes);
        self.drive();
    }
}

/// A frame as a test builds or decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct F {
    pub fin: bool,
    pub op: OpCode,
    pub payload: Vec<u8>,
}

/// Encodes a frame; `mask` for client-to-server frames.
pub(crate) fn frame(op: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    frame_rsv(op, fin, 0, payload, mask)
}

/// Encodes a frame with RSV bits (`rsv`, as in [`FrameHeader`]).
pub(crate) fn frame_rsv(op: OpCode, fin: bool, rsv: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let h = FrameHeader { fin, rsv, mask, ..FrameHeader::new(op, payload.len() as u64) };
    let mut v = h.encode().as_bytes().to_vec();
    let start = v.len();
    v.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut v[start..], k, 0);
    }
    v
}

/// A masked client frame.
pub(crate) fn cframe(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(op, fin, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A close frame payload.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason.as_bytes());
    v
}

/// Decodes every frame in `wire`, sent by `from` (so masked iff from a client).
pub(crate) fn frames(wire: &[u8], from: Role) -> Vec<F> {
    frames_rsv(wire, from)
        .into_iter()
        .map(|(f, rsv)| {
            assert_eq!(rsv, 0, "RSV bits on {f:?}");
            f
        })
        .collect()
}

/// [`frames`], with each frame's RSV bits (RSV1 is let through: permessage-deflate).
pub(crate) fn frames_rsv(wire: &[u8], from: Role) -> Vec<(F, u8)> {
    let role = if from == Role::Client { Role::Server } else { Role::Client };
    let mut cfg = DecodeConfig::new(role, u64::MAX >> 1);
    cfg.allowed_rsv = ringwire_frame::RSV1;
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let Ok(Decoded::Header(h, n)) = decode_header(&wire[at..], &cfg) else { panic!("bad frame at {at}") };
        let len = h.payload_len as usize;
        let mut p = wire[at + n..at + n + len].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut p, k, 0);
        }
        out.push((F { fin: h.fin, op: h.opcode, payload: p }, h.rsv));
        at += n + len;
    }
    out
}

/// The close event a side is expected to end with.
pub(crate) fn close_event(code: u16, description: &str) -> Event {
    Event::Close { code: crate::CloseCode(code), description: description.to_owned() }
}
