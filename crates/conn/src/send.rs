//! The outbound queue: framed chunks waiting to be handed to the driver and written,
//! the buffered amount, completion tokens and the drain signal.
//!
//! Chunks are handed out in order by [`Outbound::poll_transmit`] and are never handed
//! twice; [`Outbound::on_written`] reports how many of the handed bytes the driver
//! wrote. Payloads are shared, not copied, on the server; headers and small frames are
//! written into a per-connection arena so they cost no allocation of their own.

use crate::rng::Rng;
use crate::{Event, OpCode, Role, SendToken};
use bytes::{Bytes, BytesMut};
use ringwire_frame::{FrameHeader, apply_mask};
use std::collections::VecDeque;

/// Frames with a payload up to this size are copied next to their header, as one
/// chunk; larger payloads are shared and go out as a second chunk.
const INLINE_PAYLOAD: usize = 512;
/// How much the header arena grows by when it runs out.
const ARENA_BLOCK: usize = 8 << 10;

#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    /// Reported complete when this chunk is fully written.
    token: Option<SendToken>,
    /// The chunk starts a frame (a header), so a control frame may go before it.
    frame_start: bool,
    /// A ping or pong moved ahead of queued data.
    priority: bool,
    /// The chunk holds our close frame.
    close: bool,
}

/// What is queued: present only while something is, so an idle connection holds no
/// queue, no framing block and no bookkeeping for them.
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of `chunks[0]` already written.
    head_written: usize,
    /// Chunks from the front of the queue already handed to the driver.
    handed: usize,
    /// The framing block headers and small frames are written into.
    arena: BytesMut,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    /// The masking-key generator: present for the client role only.
    rng: Option<Rng>,
    /// `None` whenever nothing is queued (released as soon as the queue empties).
    queue: Option<Box<Queue>>,
    /// Unwritten bytes in the queue.
    buffered: usize,
    /// A send saw the buffered amount above the high-water mark: Drain is owed.
    pub(crate) drain_owed: bool,
    /// Our close frame is queued (or written).
    pub(crate) close_queued: bool,
    /// Our close frame is fully written.
    pub(crate) close_written: bool,
}

impl Outbound {
    pub(crate) fn new(role: Role) -> Self {
        Self {
            rng: (role == Role::Client).then(Rng::from_entropy),
            queue: None,
            buffered: 0,
            drain_owed: false,
            close_queued: false,
            close_written: false,
        }
    }

    /// Unwritten bytes, handed or not.
    #[inline]
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Nothing left to hand out or to write.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// Whether a chunk is waiting to be handed out.
    #[inline]
    pub(crate) fn has_unhanded(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| q.handed < q.chunks.len())
    }

    /// Drops the queue (its block included) once it holds no chunk.
    fn release_if_empty(&mut self) {
        if self.queue.as_ref().is_some_and(|q| q.chunks.is_empty()) {
            self.queue = None;
        }
    }

    /// The wire size of a message of `len` payload bytes framed with `threshold`.
    pub(crate) fn wire_len(&self, len: usize, threshold: Option<usize>) -> usize {
        let mask = if self.rng.is_some() { 4 } else { 0 };
        let hdr = |n: usize| {
            2 + mask
                + if n < 126 {
                    0
                } else if n <= 0xFFFF {
                    2
                } else {
                    8
                }
        };
        match threshold {
            Some(t) if len > t && t > 0 => {
                let (full, rest) = (len / t, len % t);
                full * (t + hdr(t)) + if rest > 0 { rest + hdr(rest) } else { 0 }
            }
            _ => len + hdr(len),
        }
    }

    /// Frames one frame of `payload` at the back of the queue.
    fn push_frame(&mut self, opcode: OpCode, fin: bool, payload: &Bytes) {
        let mut h = FrameHeader { fin, ..FrameHeader::new(opcode, payload.len() as u64) };
        let q = self.queue.get_or_insert_with(Box::default);
        if let Some(rng) = &mut self.rng {
            let key = rng.mask_key();
            h.mask = Some(key);
            let enc = h.encode();
            q.arena_reserve(enc.len() + payload.len());
            q.arena.extend_from_slice(enc.as_bytes());
            let start = q.arena.len();
            q.arena.extend_from_slice(payload);
            apply_mask(&mut q.arena[start..], key, 0);
            let b = q.arena.split().freeze();
            q.push(&mut self.buffered, b, true);
        } else {
            let enc = h.encode();
            let inline = payload.len() <= INLINE_PAYLOAD;
            q.arena_reserve(enc.len() + if inline { payload.len() } else { 0 });
            q.arena.extend_from_slice(enc.as_bytes());
            if inline {
                q.arena.extend_from_slice(payload);
            }
            let b = q.arena.split().freeze();
            q.push(&mut self.buffered, b, true);
            if !inline {
                q.push(&mut self.buffered, payload.clone(), false);
            }
        }
    }

    /// Queues a data message, split into frames of `threshold` bytes when given.
    pub(crate) fn push_message(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        threshold: Option<usize>,
        token: Option<SendToken>,
    ) {
        match threshold {
            Some(t) if payload.len() > t && t > 0 => {
                let mut op = opcode;
                let mut at = 0;
                while at < payload.len() {
                    let end = (at + t).min(payload.len());
                    self.push_frame(op, end == payload.len(), &payload.slice(at..end));
                    op = OpCode::Continuation;
                    at = end;
                }
            }
            _ => self.push_frame(opcode, true, &payload),
        }
        self.set_last_token(token);
    }

    /// Queues already-framed wire bytes (a prepared message).
    pub(crate) fn push_wire(&mut self, wire: Bytes, token: Option<SendToken>) {
        self.queue.get_or_insert_with(Box::default).push(&mut self.buffered, wire, true);
        self.set_last_token(token);
    }

    fn set_last_token(&mut self, token: Option<SendToken>) {
        if let (Some(t), Some(last)) = (token, self.queue.as_mut().and_then(|q| q.chunks.back_mut())) {
            last.token = Some(t);
        }
    }

    /// Queues a ping or pong ahead of data frames not yet handed out, behind other
    /// control frames and never inside a frame.
    pub(crate) fn push_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let at = self.queue.as_ref().map_or(0, |q| {
            (q.handed..q.chunks.len())
                .find(|&i| q.chunks[i].frame_start && !q.chunks[i].priority)
                .unwrap_or(q.chunks.len())
        });
        let before = self.queue.as_ref().map_or(0, |q| q.chunks.len());
        self.push_frame(opcode, true, &Bytes::copy_from_slice(payload));
        let q = self.queue.as_mut().expect("just pushed");
        debug_assert_eq!(q.chunks.len(), before + 1, "control frames are inline");
        let mut c = q.chunks.pop_back().expect("just pushed");
        c.priority = true;
        q.chunks.insert(at, c);
    }

    /// Queues our close frame at the very end: everything queued before it goes first.
    pub(crate) fn push_close(&mut self, payload: &[u8]) {
        self.push_frame(OpCode::Close, true, &Bytes::copy_from_slice(payload));
        if let Some(c) = self.queue.as_mut().and_then(|q| q.chunks.back_mut()) {
            c.close = true;
        }
        self.close_queued = true;
    }

    /// The next chunk to write. Each chunk is handed out once, in order.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let q = self.queue.as_mut()?;
        let c = q.chunks.get(q.handed)?;
        let out = if q.handed == 0 { c.bytes.slice(q.head_written..) } else { c.bytes.clone() };
        q.handed += 1;
        Some(out)
    }

    /// The driver wrote `n` bytes of what was handed out. Reports finished tokens.
    /// More than was handed out is clamped to what was handed out.
    pub(crate) fn on_written(&mut self, mut n: usize, events: &mut VecDeque<Event>) {
        let Some(q) = self.queue.as_mut() else { return };
        while n > 0 && q.handed > 0 {
            let Some(c) = q.chunks.front() else { break };
            let rest = c.bytes.len() - q.head_written;
            if n < rest {
                q.head_written += n;
                self.buffered -= n;
                return;
            }
            n -= rest;
            self.buffered -= rest;
            q.head_written = 0;
            q.handed -= 1;
            let c = q.chunks.pop_front().expect("front exists");
            if c.close {
                self.close_written = true;
            }
            if let Some(t) = c.token {
                events.push_back(Event::SendComplete(t));
            }
        }
        // Everything is written: let go of the queue and its framing block rather than
        // hold them (up to 8 KiB) per idle connection; the next send starts fresh ones.
        self.release_if_empty();
    }

    /// Drops every chunk not yet handed out, keeping the rest of a frame whose start
    /// was handed out (the driver will write it; a frame is never cut). Fails tokens.
    pub(crate) fn discard_unhanded(&mut self, events: &mut VecDeque<Event>) {
        let Some(q) = self.queue.as_mut() else { return };
        let keep = (q.handed..q.chunks.len()).find(|&i| q.chunks[i].frame_start).unwrap_or(q.chunks.len());
        for c in q.chunks.drain(keep..) {
            self.buffered -= c.bytes.len();
            if c.close {
                self.close_queued = false;
            }
            if let Some(t) = c.token {
                events.push_back(Event::SendFailed(t));
            }
        }
        self.release_if_empty();
    }

    /// The connection is gone: nothing more will be written. Fails every token.
    pub(crate) fn clear(&mut self, events: &mut VecDeque<Event>) {
        if let Some(q) = self.queue.take() {
            for c in q.chunks {
                if let Some(t) = c.token {
                    events.push_back(Event::SendFailed(t));
                }
            }
        }
        self.buffered = 0;
    }
}

impl Queue {
    fn arena_reserve(&mut self, n: usize) {
        if self.arena.capacity() - self.arena.len() < n {
            self.arena.reserve(n.max(ARENA_BLOCK));
        }
    }

    fn push(&mut self, buffered: &mut usize, bytes: Bytes, frame_start: bool) {
        *buffered += bytes.len();
        self.chunks.push_back(Chunk { bytes, token: None, frame_start, priority: false, close: false });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &mut Outbound) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = o.poll_transmit() {
            v.extend_from_slice(&b);
        }
        v
    }

    #[test]
    fn server_small_frame_is_one_chunk_and_large_is_shared() {
        let mut o = Outbound::new(Role::Server);
        o.push_message(OpCode::Text, Bytes::from_static(b"hi"), None, None);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x81\x02hi");
        let big = Bytes::from(vec![7u8; 1000]);
        o.push_message(OpCode::Binary, big.clone(), None, None);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x82\x7e\x03\xe8");
        let p = o.poll_transmit().unwrap();
        assert_eq!(p.as_ptr(), big.as_ptr(), "payload shared, not copied");
        assert_eq!(o.buffered(), 4 + 4 + 1000);
    }

    #[test]
    fn fragmentation_and_wire_len() {
        let mut o = Outbound::new(Role::Server);
        assert_eq!(o.wire_len(10, Some(0)), 12, "a zero threshold means no fragmentation");
        let payload = Bytes::from(vec![1u8; 10]);
        o.push_message(OpCode::Binary, payload, Some(4), Some(SendToken(9)));
        let wire = drain(&mut o);
        assert_eq!(wire.len(), o.wire_len(10, Some(4)));
        assert_eq!(&wire[..2], &[0x02, 4]);
        assert_eq!(&wire[6..8], &[0x00, 4]);
        assert_eq!(&wire[12..14], &[0x80, 2]);
        let mut ev = VecDeque::new();
        o.on_written(wire.len() - 1, &mut ev);
        assert!(ev.is_empty());
        o.on_written(1, &mut ev);
        assert_eq!(ev.pop_front(), Some(Event::SendComplete(SendToken(9))));
        assert!(o.is_empty());
    }

    #[test]
    fn control_goes_ahead_of_unhanded_data_but_never_inside_a_frame() {
        let mut o = Outbound::new(Role::Server);
        o.push_message(OpCode::Binary, Bytes::from(vec![0u8; 600]), None, None);
        o.push_message(OpCode::Binary, Bytes::from(vec![0u8; 600]), None, None);
        let h = o.poll_transmit().unwrap(); // header of the first frame
        assert_eq!(h.len(), 4);
        o.push_control(OpCode::Pong, b"p");
        o.push_control(OpCode::Ping, b"q");
        assert_eq!(o.poll_transmit().unwrap().len(), 600);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x8a\x01p");
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x89\x01q");
        assert_eq!(o.poll_transmit().unwrap().len(), 4);
    }

    #[test]
    fn client_frames_are_masked() {
        let mut o = Outbound::new(Role::Client);
        o.push_message(OpCode::Text, Bytes::from_static(b"Hello"), None, None);
        let w = o.poll_transmit().unwrap();
        assert_eq!(w[0], 0x81);
        assert_eq!(w[1], 0x85);
        let key = [w[2], w[3], w[4], w[5]];
        let mut p = w[6..].to_vec();
        apply_mask(&mut p, key, 0);
        assert_eq!(p, b"Hello");
    }

    #[test]
    fn discard_keeps_a_started_frame_and_fails_tokens() {
        let mut o = Outbound::new(Role::Server);
        o.push_message(OpCode::Binary, Bytes::from(vec![0u8; 600]), None, Some(SendToken(1)));
        o.push_message(OpCode::Binary, Bytes::from_static(b"x"), None, Some(SendToken(2)));
        o.poll_transmit().unwrap();
        let mut ev = VecDeque::new();
        o.discard_unhanded(&mut ev);
        assert_eq!(ev, [Event::SendFailed(SendToken(2))]);
        assert_eq!(o.buffered(), 604);
        o.clear(&mut ev);
        assert_eq!(ev.pop_back(), Some(Event::SendFailed(SendToken(1))));
        assert_eq!(o.buffered(), 0);
    }
}
