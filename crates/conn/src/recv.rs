//! The receive path: frame decoding, unmasking, fragment assembly and UTF-8
//! validation, over input that may be split anywhere.
//!
//! When no frame is partly buffered, headers are parsed straight from the caller's
//! slice and a whole payload is copied once, into the `Bytes` that becomes the
//! message, keeping no state. Only a frame or a message split across reads creates
//! [`Split`]: the partial header in a 14-byte array, the frame and message in progress,
//! and the message buffer that payload bytes are appended to, unmasked in place and
//! validated as they come.

use crate::{Frame, Message, ProtocolError, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use ringwire_frame::{
    CloseCode, DecodeConfig, Decoded, FrameError, FrameHeader, MAX_HEADER_LEN, OpCode, Utf8Validator, apply_mask,
    decode_header, parse_close_payload,
};

/// What the receive path found, in stream order.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(Message),
    Frame(Frame),
    Ping(Bytes),
    Pong(Bytes),
    /// A compressed (permessage-deflate) message, whole: the connection inflates it
    /// (and checks a text message's UTF-8 after).
    Compressed {
        text: bool,
        payload: Bytes,
    },
    /// A valid close frame: its code and reason, or `None` for an empty payload.
    Close(Option<(CloseCode, String)>),
    /// The stream broke the protocol; nothing after it is read.
    Error(ProtocolError),
}

/// The frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct Cur {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// RSV1 on a single-frame message: compressed.
    compressed: bool,
    len: usize,
    got: usize,
}

/// A data message between its first frame and its final one.
#[derive(Debug)]
struct Msg {
    text: bool,
    /// RSV1 on its first frame: the payload is deflate data, checked once inflated.
    compressed: bool,
    /// Payload bytes announced so far, the current frame included.
    total: u64,
    utf8: Utf8Validator,
}

/// The receive limits, from the connection's shared config (not copied into every
/// connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) dcfg: DecodeConfig,
    pub(crate) max_message: usize,
    pub(crate) assemble: bool,
}

/// What a frame or a message split across reads needs kept, and only while one is
/// (boxed, created when one starts): whole frames need none of it, so an idle connection
/// holds nothing here.
#[derive(Debug, Default)]
struct Split {
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: u8,
    cur: Option<Cur>,
    msg: Option<Msg>,
    /// The message (or, without assembly, the frame) being received.
    buf: BytesMut,
    /// A control frame's payload being received.
    ctrl: Vec<u8>,
    /// `buf` is lent to the driver to receive the rest of the frame into
    /// ([`Recv::lend`]); its length when lent.
    lent: Option<usize>,
}

/// The receive state. A close frame or an error ends the stream: [`Recv::feed`] says so,
/// and the connection feeds nothing after it (the flag lives in the connection, where it
/// fills padding: this is one pointer).
#[derive(Debug, Default)]
pub(crate) struct Recv {
    split: Option<Box<Split>>,
}

/// How a step of the receive path left the stream.
enum Flow {
    /// Go on with the rest of the input.
    Go,
    /// The input ends inside a frame.
    Starved,
    /// A close frame ended the stream.
    End,
}

impl Recv {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Nothing is kept for a frame or message split across reads.
    pub(crate) fn is_idle(&self) -> bool {
        self.split.is_none()
    }

    /// The message buffer is lent out ([`Recv::lend`]): nothing may be fed until it is back.
    pub(crate) fn is_lent(&self) -> bool {
        self.lent_at().is_some()
    }

    /// The length the message buffer had when it was lent out, if it is.
    pub(crate) fn lent_at(&self) -> Option<usize> {
        self.split.as_ref().and_then(|s| s.lent)
    }

    /// Lends the message buffer, for the driver to receive the rest of a data frame's
    /// payload straight into, when at least `min` bytes of it are still to come: the buffer
    /// with room for them (or for the next 1 MiB of them, as the buffered path reserves) and
    /// how many to receive into it. [`Recv::give_back`] returns it with them appended.
    pub(crate) fn lend(&mut self, min: usize) -> Option<(BytesMut, usize)> {
        let s = self.split.as_deref_mut()?;
        let cur = s.cur?;
        let rest = cur.len - cur.got;
        if cur.opcode.is_control() || rest < min || s.lent.is_some() {
            return None;
        }
        reserve_rest(&mut s.buf, rest);
        s.lent = Some(s.buf.len());
        let room = s.buf.capacity() - s.buf.len();
        Some((std::mem::take(&mut s.buf), rest.min(room)))
    }

    /// Takes back the buffer [`Recv::lend`] lent, with the bytes received into it appended,
    /// and reads them as [`Recv::feed`] would: returns whether the stream ended, and any
    /// bytes beyond the frame's payload (more than were asked for), unread, for the caller
    /// to feed.
    pub(crate) fn give_back(
        &mut self,
        lim: &Limits,
        mut buf: BytesMut,
        out: &mut impl FnMut(Inbound),
    ) -> (Option<BytesMut>, bool) {
        let Some(s) = self.split.as_deref_mut() else { return (None, false) };
        let Some(start) = s.lent.take() else { return (None, false) };
        let start = start.min(buf.len());
        let end = start + s.cur.map_or(0, |c| c.len - c.got);
        let extra = (buf.len() > end).then(|| buf.split_off(end));
        s.buf = buf;
        if s.buf.len() == start {
            return (extra, false);
        }
        let flow = s.appended(lim, start, false, out);
        let done = match flow {
            Ok(Flow::End) => true,
            Ok(_) => false,
            Err(e) => {
                out(Inbound::Error(e));
                true
            }
        };
        if done || s.is_idle() {
            self.split = None;
        }
        (extra.filter(|_| !done), done)
    }

    /// Bytes held for frames not yet complete.
    pub(crate) fn held(&self) -> usize {
        // While the message buffer is lent, what it held when lent.
        self.split.as_ref().map_or(0, |s| usize::from(s.hdr_len) + s.buf.len() + s.lent.unwrap_or(0) + s.ctrl.len())
    }

    /// Consumes `data`, calling `out` for each finding, until the input ends, a close
    /// frame or an error stops the stream, or a finding was reported: then it returns
    /// how many bytes it used and whether the stream ended (then nothing more may be fed),
    /// and the caller feeds the rest once the application has taken the events. Yielding after every finding keeps the application's reply to
    /// a message ahead of the failure a later frame causes (Autobahn 3.2, 5.15).
    pub(crate) fn feed(&mut self, lim: &Limits, mut data: &[u8], out: &mut impl FnMut(Inbound)) -> (usize, bool) {
        let len = data.len();
        let mut done = false;
        let found = std::cell::Cell::new(false);
        let mut out = |item: Inbound| {
            found.set(true);
            out(item)
        };
        while !done && !found.get() {
            let flow = match self.split.as_deref_mut() {
                Some(s) => s.step(lim, &mut data, &mut out),
                None if data.is_empty() => break,
                None => match whole_frame(lim, &mut data, &mut out) {
                    Some(flow) => flow,
                    None => self.split.insert(Box::default()).step(lim, &mut data, &mut out),
                },
            };
            match flow {
                Ok(Flow::Go) => {}
                Ok(Flow::Starved) => break,
                Ok(Flow::End) => {
                    done = true;
                    self.split = None;
                }
                Err(e) => {
                    done = true;
                    self.split = None;
                    out(Inbound::Error(e));
                }
            }
            // Let go of the split state once nothing is split (the message buffer may
            // still share the allocation of the message just handed out).
            if self.split.as_ref().is_some_and(|s| s.is_idle()) {
                self.split = None;
            }
        }
        if done { (len, true) } else { (len - data.len(), false) }
    }
}

/// The fast path, while nothing is split: a whole frame at the front of `data` that
/// leaves nothing to keep (a single-frame message or a control frame) is decoded and
/// delivered straight from it, and `data` advanced past it. `None`, with `data`
/// untouched: the frame needs [`Split`] (the input ends inside it, or it is a fragment).
// Always inlined, as `single_frame` is: as calls, their `Result`s went through the stack
// and the conn bench's 32-byte messages took up to a third longer.
#[inline(always)]
fn whole_frame(lim: &Limits, data: &mut &[u8], out: &mut impl FnMut(Inbound)) -> Option<Result<Flow, ProtocolError>> {
    let (h, n) = match decode_header(data, &lim.dcfg) {
        Ok(Decoded::Header(h, n)) => (h, n),
        Ok(Decoded::NeedMore(_)) => return None,
        Err(e) => return Some(Err(header_error(e))),
    };
    let len = usize::try_from(h.payload_len).ok()?;
    let single = h.fin && h.opcode != OpCode::Continuation;
    if data.len() - n < len || !(single || h.opcode.is_control()) {
        return None;
    }
    if h.rsv != 0 && h.opcode.is_control() {
        return Some(Err(ProtocolError::CompressedControlOrContinuation));
    }
    let payload = &data[n..n + len];
    *data = &data[n + len..];
    Some(if h.opcode.is_control() {
        control(lim, h.opcode, h.mask, payload.to_vec(), out)
    } else if h.rsv != 0 {
        message_size(lim, h.payload_len).map(|()| compressed(h.opcode, unmasked(payload, h.mask).freeze(), out))
    } else {
        message_size(lim, h.payload_len).and_then(|()| single_frame(lim, h.opcode, h.mask, payload, out))
    })
}

/// A data message in one frame at the front of `buf`, for a caller that can keep `buf`
/// (see `Connection::handle_read_buf`): with assembly on, nothing split, uncompressed,
/// final, whole within `buf`, at least half of `buf` (a small message must not keep a large
/// buffer alive) and within the limits, it is unmasked in place, and its opcode and payload
/// range in `buf` come back. `None`, with `buf` untouched, for anything else,
/// which then takes the usual path (errors included).
pub(crate) fn whole_message_in_place(lim: &Limits, buf: &mut [u8]) -> Option<(OpCode, std::ops::Range<usize>)> {
    if !lim.assemble {
        return None;
    }
    let Ok(Decoded::Header(h, n)) = decode_header(buf, &lim.dcfg) else { return None };
    let len = usize::try_from(h.payload_len).ok()?;
    if !h.fin
        || h.rsv != 0
        || !matches!(h.opcode, OpCode::Text | OpCode::Binary)
        || buf.len() - n < len
        || len < buf.len() / 2
        || message_size(lim, h.payload_len).is_err()
    {
        return None;
    }
    if let Some(k) = h.mask {
        apply_mask(&mut buf[n..n + len], k, 0);
    }
    Some((h.opcode, n..n + len))
}

/// Room in `buf` for the `rest` of a frame's payload (bounded by the frame limit), at most
/// 1 MiB per step, so an announced but unsent payload does not reserve it all at once.
fn reserve_rest(buf: &mut BytesMut, rest: usize) {
    // A no-op while the spare capacity holds the step.
    buf.reserve(rest.min(1 << 20));
}

/// A header error, with a too long control frame reported the same way for any split.
#[cold]
fn header_error(e: FrameError) -> ProtocolError {
    ProtocolError::Frame(match e {
        // The decoder reports the extended length only when those bytes are in;
        // report the 7-bit field always, so the error is the same for any split.
        FrameError::ControlFrameTooLong(n) => FrameError::ControlFrameTooLong(n.min(126)),
        e => e,
    })
}

/// Checks a message's announced size against the limit (when messages are assembled).
fn message_size(lim: &Limits, size: u64) -> Result<(), ProtocolError> {
    if lim.assemble && size > lim.max_message as u64 {
        return Err(ProtocolError::MessageTooBig { size, max: lim.max_message });
    }
    Ok(())
}

/// A whole payload, unmasked into a buffer of its own.
#[inline]
fn unmasked(payload: &[u8], mask: Option<[u8; 4]>) -> BytesMut {
    let mut b = BytesMut::with_capacity(payload.len());
    extend_unmasked(&mut b, payload, mask, 0);
    b
}

/// Appends `src` to `buf`, unmasked from payload position `offset`. A large payload is
/// copied and unmasked a chunk at a time, so the unmask finds each chunk in L1 instead of
/// making a second pass over the whole of it.
#[inline]
fn extend_unmasked(buf: &mut BytesMut, src: &[u8], mask: Option<[u8; 4]>, offset: usize) {
    const CHUNK: usize = 8 << 10;
    let Some(k) = mask else {
        buf.extend_from_slice(src);
        return;
    };
    buf.reserve(src.len());
    for (i, c) in src.chunks(CHUNK).enumerate() {
        let at = buf.len();
        buf.extend_from_slice(c);
        apply_mask(&mut buf[at..], k, offset + i * CHUNK);
    }
}

/// A data message in one whole frame: a message, or without assembly a final frame.
#[inline(always)]
fn single_frame(
    lim: &Limits,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
    out: &mut impl FnMut(Inbound),
) -> Result<Flow, ProtocolError> {
    let bytes = unmasked(payload, mask).freeze();
    let text = opcode == OpCode::Text;
    out(if lim.assemble {
        Inbound::Message(if text {
            Message::Text(Utf8Bytes::try_from(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
        } else {
            Message::Binary(bytes)
        })
    } else {
        if text {
            let mut utf8 = Utf8Validator::new();
            utf8.feed(&bytes).and_then(|()| utf8.finish()).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Inbound::Frame(Frame { fin: true, opcode, payload: bytes })
    });
    Ok(Flow::Go)
}

/// A whole compressed message, unmasked: the connection inflates it.
#[cold]
fn compressed(opcode: OpCode, payload: Bytes, out: &mut impl FnMut(Inbound)) -> Flow {
    out(Inbound::Compressed { text: opcode == OpCode::Text, payload });
    Flow::Go
}

/// A whole control frame's payload, unmasked and reported: without assembly first as a
/// [`Frame`] (as Node emits `'frame'` for every frame), then as what it is.
fn control(
    lim: &Limits,
    op: OpCode,
    mask: Option<[u8; 4]>,
    mut payload: Vec<u8>,
    out: &mut impl FnMut(Inbound),
) -> Result<Flow, ProtocolError> {
    if let Some(k) = mask {
        apply_mask(&mut payload, k, 0);
    }
    let payload = Bytes::from(payload);
    if !lim.assemble {
        // Control frames are never fragmented (the decoder refuses them).
        out(Inbound::Frame(Frame { fin: true, opcode: op, payload: payload.clone() }));
    }
    match op {
        OpCode::Ping => out(Inbound::Ping(payload)),
        OpCode::Pong => out(Inbound::Pong(payload)),
        _ => {
            let parsed = parse_close_payload(&payload).map_err(ProtocolError::InvalidClosePayload)?;
            out(Inbound::Close(parsed.map(|(c, r)| (c, r.to_owned()))));
            return Ok(Flow::End);
        }
    }
    Ok(Flow::Go)
}

impl Split {
    /// Nothing is split any more.
    fn is_idle(&self) -> bool {
        self.hdr_len == 0
            && self.cur.is_none()
            && self.msg.is_none()
            && self.buf.is_empty()
            && self.ctrl.is_empty()
            && self.lent.is_none()
    }

    /// One step over `data`: a header or part of one, or a payload or part of one.
    fn step(&mut self, lim: &Limits, data: &mut &[u8], out: &mut impl FnMut(Inbound)) -> Result<Flow, ProtocolError> {
        let Some(cur) = self.cur else {
            if data.is_empty() {
                return Ok(Flow::Starved);
            }
            match self.next_header(lim, data)? {
                Some((h, used)) => {
                    *data = &data[used..];
                    self.begin(lim, h)?;
                }
                None => *data = &[],
            }
            return Ok(Flow::Go);
        };
        let need = cur.len - cur.got;
        if cur.got == 0 && data.len() >= need && !(cur.opcode == OpCode::Continuation && lim.assemble) {
            // The whole payload is in the caller's slice.
            let (payload, rest) = data.split_at(need);
            *data = rest;
            self.cur = None;
            self.whole(lim, cur, payload, out)
        } else if need == 0 || !data.is_empty() {
            let take = need.min(data.len());
            let (part, rest) = data.split_at(take);
            *data = rest;
            self.partial(lim, part, out)
        } else {
            Ok(Flow::Starved)
        }
    }

    /// The next header, from the partial-header array or straight from `data`.
    /// `Ok(None)`: `data` was all taken and the header is still incomplete.
    fn next_header(&mut self, lim: &Limits, data: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if self.hdr_len == 0 {
            return match decode_header(data, &lim.dcfg).map_err(header_error)? {
                Decoded::Header(h, n) => Ok(Some((h, n))),
                Decoded::NeedMore(_) => {
                    self.hdr[..data.len()].copy_from_slice(data);
                    // NeedMore: fewer than MAX_HEADER_LEN bytes.
                    self.hdr_len = data.len() as u8;
                    Ok(None)
                }
            };
        }
        let mut used = 0;
        loop {
            let hdr_len = usize::from(self.hdr_len);
            match decode_header(&self.hdr[..hdr_len], &lim.dcfg).map_err(header_error)? {
                Decoded::Header(h, n) => {
                    debug_assert_eq!(n, hdr_len);
                    self.hdr_len = 0;
                    return Ok(Some((h, used)));
                }
                Decoded::NeedMore(more) => {
                    let take = more.min(data.len() - used);
                    if take == 0 {
                        return Ok(None);
                    }
                    self.hdr[hdr_len..hdr_len + take].copy_from_slice(&data[used..used + take]);
                    // At most MAX_HEADER_LEN in total.
                    self.hdr_len += take as u8;
                    used += take;
                }
            }
        }
    }

    /// Checks a header against the message in progress and the message limit.
    fn begin(&mut self, lim: &Limits, h: FrameHeader) -> Result<(), ProtocolError> {
        let len = h.payload_len;
        let rsv1 = h.rsv != 0; // the decoder lets RSV1 through only once negotiated
        if rsv1 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(ProtocolError::CompressedControlOrContinuation);
        }
        match h.opcode {
            OpCode::Continuation => {
                let Some(m) = &mut self.msg else { return Err(ProtocolError::UnexpectedContinuation) };
                m.total = m.total.saturating_add(len);
                message_size(lim, m.total)?;
            }
            OpCode::Text | OpCode::Binary => {
                if self.msg.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                message_size(lim, len)?;
                self.msg = Some(Msg {
                    text: h.opcode == OpCode::Text,
                    compressed: rsv1,
                    total: len,
                    utf8: Utf8Validator::new(),
                });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        // The frame limit (checked by the decoder) bounds `len` to usize.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.cur = Some(Cur { opcode: h.opcode, fin: h.fin, mask: h.mask, compressed: rsv1, len, got: 0 });
        Ok(())
    }

    /// A whole frame payload, straight from the input.
    fn whole(
        &mut self,
        lim: &Limits,
        cur: Cur,
        payload: &[u8],
        out: &mut impl FnMut(Inbound),
    ) -> Result<Flow, ProtocolError> {
        if cur.opcode.is_control() {
            return control(lim, cur.opcode, cur.mask, payload.to_vec(), out);
        }
        if cur.fin && cur.opcode != OpCode::Continuation {
            // A single-frame message: `begin` started its message for it alone.
            self.msg = None;
            if cur.compressed {
                return Ok(compressed(cur.opcode, unmasked(payload, cur.mask).freeze(), out));
            }
            return single_frame(lim, cur.opcode, cur.mask, payload, out);
        }
        let b = unmasked(payload, cur.mask);
        let msg = self.msg.as_mut().expect("begin() set the message");
        if msg.text && !msg.compressed {
            msg.utf8.feed(&b).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if lim.assemble {
            // The first fragment (continuations take the buffered path): it starts the
            // message buffer (empty here, so `unsplit` just moves `b` in).
            debug_assert!(!cur.fin && self.buf.is_empty());
            self.buf.unsplit(b);
            return Ok(Flow::Go);
        }
        // No assembly: one Frame event per data frame.
        self.end_frame_unassembled(cur, b.freeze(), out)
    }

    /// Part of a frame payload; emits when the frame is complete.
    fn partial(&mut self, lim: &Limits, part: &[u8], out: &mut impl FnMut(Inbound)) -> Result<Flow, ProtocolError> {
        let cur = self.cur.as_mut().expect("a frame in progress");
        if cur.opcode.is_control() {
            cur.got += part.len();
            let cur = *cur;
            self.ctrl.extend_from_slice(part);
            if cur.got == cur.len {
                self.cur = None;
                return control(lim, cur.opcode, cur.mask, core::mem::take(&mut self.ctrl), out);
            }
            return Ok(Flow::Go);
        }
        let start = self.buf.len();
        reserve_rest(&mut self.buf, cur.len - cur.got);
        extend_unmasked(&mut self.buf, part, cur.mask, cur.got);
        self.appended(lim, start, true, out)
    }

    /// Payload bytes of the data frame in progress were appended to the message buffer at
    /// `start` (by [`Split::partial`], `unmasked` already, or received into it while lent):
    /// unmasks and checks them; emits when the frame is complete.
    fn appended(
        &mut self,
        lim: &Limits,
        start: usize,
        unmasked: bool,
        out: &mut impl FnMut(Inbound),
    ) -> Result<Flow, ProtocolError> {
        let cur = self.cur.as_mut().expect("a frame in progress");
        let offset = cur.got;
        cur.got += self.buf.len() - start;
        let cur = *cur;
        let buf = &mut self.buf;
        if let Some(k) = cur.mask
            && !unmasked
        {
            apply_mask(&mut buf[start..], k, offset);
        }
        let msg = self.msg.as_mut().expect("begin() set the message");
        if msg.text && !msg.compressed {
            msg.utf8.feed(&buf[start..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if cur.got < cur.len {
            return Ok(Flow::Go);
        }
        self.cur = None;
        if !lim.assemble {
            let b = buf.split().freeze();
            return self.end_frame_unassembled(cur, b, out);
        }
        if !cur.fin {
            return Ok(Flow::Go);
        }
        let bytes = buf.split().freeze();
        let msg = self.msg.take().expect("message");
        if msg.compressed {
            let opcode = if msg.text { OpCode::Text } else { OpCode::Binary };
            return Ok(compressed(opcode, bytes, out));
        }
        let mut utf8 = msg.utf8;
        out(Inbound::Message(if msg.text {
            utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Message::Text(Utf8Bytes::try_from(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
        } else {
            Message::Binary(bytes)
        }));
        Ok(Flow::Go)
    }

    fn end_frame_unassembled(
        &mut self,
        cur: Cur,
        payload: Bytes,
        out: &mut impl FnMut(Inbound),
    ) -> Result<Flow, ProtocolError> {
        if cur.fin {
            let mut m = self.msg.take().expect("message");
            if m.text {
                m.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        out(Inbound::Frame(Frame { fin: cur.fin, opcode: cur.opcode, payload }));
        Ok(Flow::Go)
    }
}
