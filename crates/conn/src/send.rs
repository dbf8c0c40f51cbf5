//! The outbound queue: framed chunks waiting to be handed to the driver and written,
//! the buffered amount, completion tokens and the drain signal.
//!
//! Chunks are handed out in order by [`Outbound::poll_transmit`] and are never handed
//! twice; [`Outbound::on_written`] reports how many of the handed bytes the driver
//! wrote. Payloads are shared, not copied, on the server; headers and small frames are
//! written into a per-connection arena so they cost no allocation of their own, and
//! consecutive ones that are not handed out yet stay one chunk: a burst of small
//! messages reaches the driver as one contiguous write, not a scatter list.

use crate::rng;
use crate::{Event, OpCode, Role, SendToken};
use bytes::{Bytes, BytesMut};
use ringwire_frame::{FrameHeader, MAX_HEADER_LEN, apply_mask};
use std::collections::VecDeque;

/// Frames with a payload up to this size are copied next to their header, as one
/// chunk; larger payloads are shared and go out as a second chunk.
const INLINE_PAYLOAD: usize = 512;
/// How much the header arena grows by when it runs out.
const ARENA_BLOCK: usize = 8 << 10;
/// The first block of a queue's arena. Most queues hold a few small frames (a fan-out's
/// loop turn: up to a window of messages for each subscriber) and are released once
/// written, so with thousands of subscribers a full block each would be most of the
/// memory a fan-out holds (10,000 x 8 KiB); a burst that needs more gets full blocks.
const ARENA_FIRST: usize = 1 << 10;

#[derive(Debug)]
struct Chunk {
    bytes: Body,
    /// Reported complete when this chunk is fully written.
    token: Option<SendToken>,
    /// The chunk starts a frame (a header), so a control frame may go before it.
    frame_start: bool,
    /// A ping or pong moved ahead of queued data.
    priority: bool,
    /// The chunk holds our close frame.
    close: bool,
    /// The automatic pong [`Outbound::cancel_pong`] may still take back.
    cancellable: bool,
}

/// A chunk's bytes: still open in the arena (more small frames may be appended) until it
/// is handed out, then frozen.
#[derive(Debug)]
enum Body {
    Arena(BytesMut),
    Shared(Bytes),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Arena(b) => b.len(),
            Body::Shared(b) => b.len(),
        }
    }

    /// Closes an open chunk (it is being handed out: nothing joins it any more).
    fn freeze(&mut self) -> &Bytes {
        if let Body::Arena(open) = self {
            *self = Body::Shared(std::mem::take(open).freeze());
        }
        match self {
            Body::Shared(b) => b,
            Body::Arena(_) => unreachable!("frozen just above"),
        }
    }
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
    /// Unwritten bytes in the queue (none once it is released).
    buffered: usize,
    /// The framing block headers and small frames are written into.
    arena: BytesMut,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    /// `None` whenever nothing is queued (released as soon as the queue empties).
    queue: Option<Box<Queue>>,
    /// Frames are masked (the client role).
    mask: bool,
    /// A send saw the buffered amount above the high-water mark: Drain is owed.
    pub(crate) drain_owed: bool,
    /// The code of our close frame if it is queued (or written), 1005 for one without a
    /// code; 0: none queued. Kept here, where a bool's padding made room for it and
    /// for `close_received` (a `Connection` must stay within 192 bytes).
    close_sent: u16,
    /// The code of the close frame received from the peer (1005: none in it); 0: none.
    pub(crate) close_received: u16,
    /// Our close frame is fully written.
    pub(crate) close_written: bool,
    /// The buffered amount went above the high-water mark and has not fallen to the
    /// low-water mark since: the connection does not read (set and cleared by the
    /// connection, which knows the marks).
    pub(crate) read_blocked: bool,
}

impl Outbound {
    pub(crate) fn new(role: Role) -> Self {
        Self {
            queue: None,
            mask: role == Role::Client,
            drain_owed: false,
            close_sent: 0,
            close_received: 0,
            close_written: false,
            read_blocked: false,
        }
    }

    /// Unwritten bytes, handed or not.
    #[inline]
    pub(crate) fn buffered(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.buffered)
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
            debug_assert_eq!(self.buffered(), 0, "an empty queue has nothing unwritten");
            self.queue = None;
        }
    }

    /// The wire size of a message of `len` payload bytes framed with `threshold`.
    pub(crate) fn wire_len(&self, len: usize, threshold: Option<usize>) -> usize {
        let mask = if self.mask { 4 } else { 0 };
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

    /// Frames one frame of `payload` at the back of the queue. A data frame that fits
    /// the arena joins the open chunk at the back when there is one (see
    /// [`Queue::push_arena`]); control frames always get a chunk of their own.
    fn push_frame(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &Bytes) {
        let mut h = FrameHeader { fin, rsv, ..FrameHeader::new(opcode, payload.len() as u64) };
        let join = !opcode.is_control();
        let q = self.queue.get_or_insert_with(Box::default);
        if self.mask {
            let key = rng::mask_key();
            h.mask = Some(key);
            let enc = h.encode();
            q.arena_reserve(enc.len() + payload.len());
            q.arena.extend_from_slice(enc.as_bytes());
            let start = q.arena.len();
            q.arena.extend_from_slice(payload);
            apply_mask(&mut q.arena[start..], key, 0);
            q.push_arena(join);
        } else {
            let enc = h.encode();
            let inline = payload.len() <= INLINE_PAYLOAD;
            q.arena_reserve(enc.len() + if inline { payload.len() } else { 0 });
            q.arena.extend_from_slice(enc.as_bytes());
            if inline {
                q.arena.extend_from_slice(payload);
            }
            q.push_arena(join);
            if !inline {
                q.push(Body::Shared(payload.clone()), false);
            }
        }
    }

    /// Queues a data message, split into frames of `threshold` bytes when given.
    // Inlined into send_data (the per-message path) although send_prepared calls it too
    // (a plain #[inline] was not taken).
    #[inline(always)]
    pub(crate) fn push_message(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        threshold: Option<usize>,
        token: Option<SendToken>,
        rsv: u8,
    ) {
        match threshold {
            Some(t) if payload.len() > t && t > 0 => {
                // RSV1 (compressed) goes on the first frame only (RFC 7692 6.1).
                let (mut op, mut rsv) = (opcode, rsv);
                let mut at = 0;
                while at < payload.len() {
                    let end = (at + t).min(payload.len());
                    self.push_frame(op, end == payload.len(), rsv, &payload.slice(at..end));
                    (op, rsv) = (OpCode::Continuation, 0);
                    at = end;
                }
            }
            _ => self.push_frame(opcode, true, rsv, &payload),
        }
        self.set_last_token(token);
    }

    /// Queues already-framed wire bytes (a prepared message): shared, or copied into the
    /// arena when small, so that a burst of broadcasts is one write. Borrowed: a small
    /// frame is only copied (a fan-out to many connections then costs no reference-count
    /// traffic on the shared bytes), a large one cloned.
    pub(crate) fn push_wire(&mut self, wire: &Bytes, token: Option<SendToken>) {
        let q = self.queue.get_or_insert_with(Box::default);
        if wire.len() <= INLINE_PAYLOAD + MAX_HEADER_LEN {
            q.arena_reserve(wire.len());
            q.arena.extend_from_slice(wire);
            q.push_arena(true);
        } else {
            q.push(Body::Shared(wire.clone()), true);
        }
        self.set_last_token(token);
    }

    fn set_last_token(&mut self, token: Option<SendToken>) {
        if let (Some(t), Some(last)) = (token, self.queue.as_mut().and_then(|q| q.chunks.back_mut())) {
            last.token = Some(t);
        }
    }

    /// Queues a ping or pong ahead of data frames not yet handed out, behind other
    /// control frames and never inside a frame. A `cancellable` one (at most one at a
    /// time) can be taken back by [`cancel_pong`](Self::cancel_pong) until it is handed
    /// out or [`keep_pong`](Self::keep_pong) is called.
    pub(crate) fn push_control(&mut self, opcode: OpCode, payload: &[u8], cancellable: bool) {
        let at = self.queue.as_ref().map_or(0, |q| {
            (q.handed..q.chunks.len())
                .find(|&i| q.chunks[i].frame_start && !q.chunks[i].priority)
                .unwrap_or(q.chunks.len())
        });
        let before = self.queue.as_ref().map_or(0, |q| q.chunks.len());
        self.push_frame(opcode, true, 0, &Bytes::copy_from_slice(payload));
        let q = self.queue.as_mut().expect("just pushed");
        debug_assert_eq!(q.chunks.len(), before + 1, "control frames are inline");
        let mut c = q.chunks.pop_back().expect("just pushed");
        c.priority = true;
        c.cancellable = cancellable;
        q.chunks.insert(at, c);
    }

    /// Takes the cancellable pong out of the queue, if it is there and not handed out
    /// (a control frame is a chunk of its own, so nothing else goes with it).
    pub(crate) fn cancel_pong(&mut self) {
        let Some(q) = self.queue.as_mut() else { return };
        if let Some(i) = (q.handed..q.chunks.len()).find(|&i| q.chunks[i].cancellable) {
            let c = q.chunks.remove(i).expect("found");
            q.buffered -= c.bytes.len();
        }
        self.release_if_empty();
    }

    /// The cancellable pong, if still queued, stays: it is an ordinary pong now.
    pub(crate) fn keep_pong(&mut self) {
        if let Some(q) = self.queue.as_mut() {
            q.chunks.iter_mut().for_each(|c| c.cancellable = false);
        }
    }

    /// Queues our close frame at the very end: everything queued before it goes first.
    pub(crate) fn push_close(&mut self, payload: &[u8]) {
        self.push_frame(OpCode::Close, true, 0, &Bytes::copy_from_slice(payload));
        if let Some(c) = self.queue.as_mut().and_then(|q| q.chunks.back_mut()) {
            c.close = true;
        }
        self.close_sent = match payload {
            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
            _ => 1005,
        };
    }

    /// Our close frame is queued (or written).
    #[inline]
    pub(crate) fn close_queued(&self) -> bool {
        self.close_sent != 0
    }

    /// The code of our close frame if one is queued or written (1005: one without a code).
    pub(crate) fn close_sent(&self) -> Option<u16> {
        (self.close_sent != 0).then_some(self.close_sent)
    }

    /// The next chunk to write. Each chunk is handed out once, in order.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let q = self.queue.as_mut()?;
        let c = q.chunks.get_mut(q.handed)?;
        let bytes = c.bytes.freeze();
        let out = if q.handed == 0 { bytes.slice(q.head_written..) } else { bytes.clone() };
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
                q.buffered -= n;
                return;
            }
            n -= rest;
            q.buffered -= rest;
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
            q.buffered -= c.bytes.len();
            if c.close {
                self.close_sent = 0;
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
    }
}

impl Queue {
    fn arena_reserve(&mut self, n: usize) {
        if self.arena.capacity() - self.arena.len() < n {
            let block = if self.arena.capacity() == 0 { ARENA_FIRST } else { ARENA_BLOCK };
            self.arena.reserve(n.max(block));
        }
    }

    fn push(&mut self, bytes: Body, frame_start: bool) {
        self.buffered += bytes.len();
        self.chunks.push_back(Chunk {
            bytes,
            token: None,
            frame_start,
            priority: false,
            close: false,
            cancellable: false,
        });
    }

    /// Queues what was written into the arena since the last split (whole frames, or a
    /// header whose payload follows). With `join`, it is appended to the chunk at the
    /// back if that one is still open (`Body::Arena`: `poll_transmit` freezes a chunk as
    /// it hands it out), has no token to report (a token reports its own message, so
    /// nothing may be appended after it) and is not a control or close frame. It must
    /// also end where the new bytes start, i.e. the arena did not move to a new block in
    /// between, which makes the append O(1) (`unsplit` of two neighbours in one block);
    /// after a move, the new bytes start a chunk of their own.
    fn push_arena(&mut self, join: bool) {
        let new = self.arena.split();
        if join
            && let Some(back) = self.chunks.back_mut()
            && let (Body::Arena(open), None, false, false) = (&mut back.bytes, &back.token, back.priority, back.close)
            && open.as_ptr_range().end == new.as_ptr()
        {
            self.buffered += new.len();
            open.unsplit(new);
            return;
        }
        self.push(Body::Arena(new), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PreparedMessage;

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
        o.push_message(OpCode::Text, Bytes::from_static(b"hi"), None, None, 0);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x81\x02hi");
        let big = Bytes::from(vec![7u8; 1000]);
        o.push_message(OpCode::Binary, big.clone(), None, None, 0);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x82\x7e\x03\xe8");
        let p = o.poll_transmit().unwrap();
        assert_eq!(p.as_ptr(), big.as_ptr(), "payload shared, not copied");
        assert_eq!(o.buffered(), 4 + 4 + 1000);
    }

    #[test]
    fn a_burst_of_small_frames_is_one_chunk_until_handed_out() {
        let mut o = Outbound::new(Role::Server);
        for _ in 0..3 {
            o.push_message(OpCode::Text, Bytes::from_static(b"hi"), None, None, 0);
        }
        o.push_wire(PreparedMessage::binary(Bytes::from_static(b"pm")).wire(), None);
        // A large frame's header joins too; its shared payload is a chunk of its own.
        let big = Bytes::from(vec![7u8; 600]);
        o.push_message(OpCode::Binary, big.clone(), None, None, 0);
        let first = o.poll_transmit().unwrap();
        assert_eq!(&first[..], b"\x81\x02hi\x81\x02hi\x81\x02hi\x82\x02pm\x82\x7e\x02\x58");
        assert_eq!(o.poll_transmit().unwrap().as_ptr(), big.as_ptr(), "payload shared, not copied");
        assert!(o.poll_transmit().is_none());
        // Handed out: what comes next starts a new chunk.
        o.push_message(OpCode::Text, Bytes::from_static(b"a"), None, None, 0);
        o.push_message(OpCode::Text, Bytes::from_static(b"b"), None, None, 0);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x81\x01a\x81\x01b");
        assert_eq!(o.buffered(), first.len() + 600 + 6);
        let mut ev = VecDeque::new();
        o.on_written(o.buffered(), &mut ev);
        assert!(o.is_empty() && ev.is_empty());
    }

    #[test]
    fn nothing_joins_a_token_a_control_frame_or_the_close() {
        let mut o = Outbound::new(Role::Server);
        o.push_message(OpCode::Text, Bytes::from_static(b"a"), None, Some(SendToken(1)), 0);
        o.push_message(OpCode::Text, Bytes::from_static(b"b"), None, None, 0);
        o.push_control(OpCode::Ping, b"p", false);
        o.push_message(OpCode::Text, Bytes::from_static(b"c"), None, None, 0);
        o.push_close(b"");
        o.push_message(OpCode::Text, Bytes::from_static(b"d"), None, None, 0);
        let chunks: Vec<Bytes> = std::iter::from_fn(|| o.poll_transmit()).collect();
        // `c` was framed after the ping, which now lies between it and `b` in the arena.
        let want: [&[u8]; 6] = [b"\x89\x01p", b"\x81\x01a", b"\x81\x01b", b"\x81\x01c", b"\x88\x00", b"\x81\x01d"];
        assert_eq!(chunks, want);
        // The token is reported when its own message is written, not later.
        let mut ev = VecDeque::new();
        o.on_written(3 + 3, &mut ev);
        assert_eq!(ev, [Event::SendComplete(SendToken(1))]);
        o.on_written(3 + 3 + 2, &mut ev);
        assert!(o.close_written);
    }

    #[test]
    fn masked_frames_join_and_each_has_its_own_key() {
        let mut o = Outbound::new(Role::Client);
        o.push_message(OpCode::Text, Bytes::from_static(b"Hello"), None, None, 0);
        o.push_message(OpCode::Text, Bytes::from_static(b"World"), None, None, 0);
        let w = o.poll_transmit().unwrap();
        assert!(o.poll_transmit().is_none());
        assert_eq!(w.len(), 2 * 11);
        for (f, want) in w.chunks(11).zip([b"Hello", b"World"]) {
            assert_eq!(&f[..2], b"\x81\x85");
            let mut p = f[6..].to_vec();
            apply_mask(&mut p, [f[2], f[3], f[4], f[5]], 0);
            assert_eq!(&p, want);
        }
    }

    #[test]
    fn masking_keys_differ_across_frames_and_connections() {
        fn key(o: &mut Outbound) -> [u8; 4] {
            o.push_message(OpCode::Binary, Bytes::from_static(b"x"), None, None, 0);
            let w = o.poll_transmit().expect("a frame");
            let mut ev = VecDeque::new();
            o.on_written(w.len(), &mut ev);
            [w[2], w[3], w[4], w[5]]
        }
        let (mut a, mut b) = (Outbound::new(Role::Client), Outbound::new(Role::Client));
        let keys: std::collections::HashSet<[u8; 4]> = (0..64).flat_map(|_| [key(&mut a), key(&mut b)]).collect();
        // 128 draws of 32 bits: two collisions have a chance of about 1e-12.
        assert!(keys.len() >= 127, "{} distinct keys of 128", keys.len());
    }

    #[test]
    fn joining_across_a_new_arena_block_keeps_every_byte() {
        let mut o = Outbound::new(Role::Server);
        let mut want = Vec::new();
        for i in 0..100u8 {
            let p = Bytes::from(vec![i; 300]);
            o.push_message(OpCode::Binary, p, None, None, 0);
            want.extend_from_slice(&[0x82, 0x7e, 0x01, 0x2c]);
            want.extend_from_slice(&[i; 300]);
        }
        assert_eq!(drain(&mut o), want, "30 KiB crosses several 8 KiB blocks");
        assert_eq!(o.buffered(), want.len());
    }

    #[test]
    fn fragmentation_and_wire_len() {
        let mut o = Outbound::new(Role::Server);
        assert_eq!(o.wire_len(10, Some(0)), 12, "a zero threshold means no fragmentation");
        let payload = Bytes::from(vec![1u8; 10]);
        o.push_message(OpCode::Binary, payload, Some(4), Some(SendToken(9)), 0);
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
        o.push_message(OpCode::Binary, Bytes::from(vec![0u8; 600]), None, None, 0);
        o.push_message(OpCode::Binary, Bytes::from(vec![0u8; 600]), None, None, 0);
        let h = o.poll_transmit().unwrap(); // header of the first frame
        assert_eq!(h.len(), 4);
        o.push_control(OpCode::Pong, b"p", false);
        o.push_control(OpCode::Ping, b"q", false);
        assert_eq!(o.poll_transmit().unwrap().len(), 600);
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x8a\x01p");
        assert_eq!(&o.poll_transmit().unwrap()[..], b"\x89\x01q");
        assert_eq!(o.poll_transmit().unwrap().len(), 4);
    }

    #[test]
    fn client_frames_are_masked() {
        let mut o = Outbound::new(Role::Client);
        o.push_message(OpCode::Text, Bytes::from_static(b"Hello"), None, None, 0);
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
        o.push_message(OpCode::Binary, Bytes::from(vec![0u8; 600]), None, Some(SendToken(1)), 0);
        o.push_message(OpCode::Binary, Bytes::from_static(b"x"), None, Some(SendToken(2)), 0);
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
