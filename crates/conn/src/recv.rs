//! The receive path: frame decoding, unmasking, fragment assembly and UTF-8
//! validation, over input that may be split anywhere.
//!
//! When no frame is partly buffered, headers are parsed straight from the caller's
//! slice and a whole payload is copied once, into the `Bytes` that becomes the
//! message. Otherwise the partial header is kept in a 14-byte array and payload bytes
//! are appended to the message buffer, unmasked in place and validated as they come.

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
    len: usize,
    got: usize,
}

/// A data message between its first frame and its final one.
#[derive(Debug)]
struct Msg {
    text: bool,
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

/// Payload bytes kept across reads: only while a frame or a fragmented message is split
/// between reads, so an idle connection holds none (boxed, created on first use).
#[derive(Debug, Default)]
struct Held {
    /// The message (or, without assembly, the frame) being received.
    buf: BytesMut,
    /// A control frame's payload being received.
    ctrl: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Recv {
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: u8,
    /// A close frame or an error was seen: the rest of the input is ignored.
    pub(crate) done: bool,
    cur: Option<Cur>,
    msg: Option<Msg>,
    held: Option<Box<Held>>,
}

impl Recv {
    pub(crate) fn new() -> Self {
        Self { hdr: [0; MAX_HEADER_LEN], hdr_len: 0, done: false, cur: None, msg: None, held: None }
    }

    /// Bytes held for frames not yet complete.
    pub(crate) fn held(&self) -> usize {
        usize::from(self.hdr_len) + self.held.as_ref().map_or(0, |h| h.buf.len() + h.ctrl.len())
    }

    fn held_mut(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Box::default)
    }

    /// Lets go of the held buffers once nothing is in them (the message buffer may still
    /// share the allocation of the message just handed out).
    fn release_if_empty(&mut self) {
        if self.held.as_ref().is_some_and(|h| h.buf.is_empty() && h.ctrl.is_empty()) {
            self.held = None;
        }
    }

    /// Consumes `data`, calling `out` for each finding, until the input ends, a close
    /// frame or an error stops the stream, or a finding was reported: then it returns
    /// how many bytes it used, and the caller feeds the rest once the application has
    /// taken the events. Yielding after every finding keeps the application's reply to
    /// a message ahead of the failure a later frame causes (Autobahn 3.2, 5.15).
    pub(crate) fn feed(&mut self, lim: &Limits, mut data: &[u8], out: &mut impl FnMut(Inbound)) -> usize {
        let len = data.len();
        let found = std::cell::Cell::new(false);
        let mut out = |item: Inbound| {
            found.set(true);
            out(item)
        };
        while !self.done && !found.get() {
            let Some(cur) = self.cur else {
                if data.is_empty() {
                    break;
                }
                match self.next_header(lim, data) {
                    Ok(Some((h, used))) => {
                        data = &data[used..];
                        if let Err(e) = self.begin(lim, h) {
                            self.fail(e, &mut out);
                        }
                    }
                    Ok(None) => data = &[],
                    Err(e) => self.fail(e, &mut out),
                }
                continue;
            };
            let need = cur.len - cur.got;
            if cur.got == 0 && data.len() >= need && !(cur.opcode == OpCode::Continuation && lim.assemble) {
                // Fast path: the whole payload is in the caller's slice.
                let (payload, rest) = data.split_at(need);
                data = rest;
                self.cur = None;
                if let Err(e) = self.whole(lim, cur, payload, &mut out) {
                    self.fail(e, &mut out);
                }
            } else if need == 0 || !data.is_empty() {
                let take = need.min(data.len());
                let (part, rest) = data.split_at(take);
                data = rest;
                if let Err(e) = self.partial(lim, part, &mut out) {
                    self.fail(e, &mut out);
                }
            } else {
                break;
            }
        }
        if self.done { len } else { len - data.len() }
    }

    fn fail(&mut self, e: ProtocolError, out: &mut impl FnMut(Inbound)) {
        self.done = true;
        self.cur = None;
        self.msg = None;
        self.held = None;
        out(Inbound::Error(e));
    }

    /// The next header, from the partial-header array or straight from `data`.
    /// `Ok(None)`: `data` was all taken and the header is still incomplete.
    fn next_header(&mut self, lim: &Limits, data: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        self.next_header_inner(lim, data).map_err(|e| match e {
            // The decoder reports the extended length only when those bytes are in;
            // report the 7-bit field always, so the error is the same for any split.
            ProtocolError::Frame(FrameError::ControlFrameTooLong(n)) => {
                ProtocolError::Frame(FrameError::ControlFrameTooLong(n.min(126)))
            }
            e => e,
        })
    }

    fn next_header_inner(&mut self, lim: &Limits, data: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if self.hdr_len == 0 {
            return match decode_header(data, &lim.dcfg)? {
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
            match decode_header(&self.hdr[..hdr_len], &lim.dcfg)? {
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
        match h.opcode {
            OpCode::Continuation => {
                let Some(m) = &mut self.msg else { return Err(ProtocolError::UnexpectedContinuation) };
                m.total = m.total.saturating_add(len);
                if lim.assemble && m.total > lim.max_message as u64 {
                    return Err(ProtocolError::MessageTooBig { size: m.total, max: lim.max_message });
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.msg.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if lim.assemble && len > lim.max_message as u64 {
                    return Err(ProtocolError::MessageTooBig { size: len, max: lim.max_message });
                }
                self.msg = Some(Msg { text: h.opcode == OpCode::Text, total: len, utf8: Utf8Validator::new() });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        // The frame limit (checked by the decoder) bounds `len` to usize.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.cur = Some(Cur { opcode: h.opcode, fin: h.fin, mask: h.mask, len, got: 0 });
        Ok(())
    }

    /// A whole frame payload, straight from the input.
    fn whole(
        &mut self,
        lim: &Limits,
        cur: Cur,
        payload: &[u8],
        out: &mut impl FnMut(Inbound),
    ) -> Result<(), ProtocolError> {
        if cur.opcode.is_control() {
            let mut p = payload.to_vec();
            if let Some(k) = cur.mask {
                apply_mask(&mut p, k, 0);
            }
            return self.control(cur.opcode, p, out);
        }
        let mut b = BytesMut::with_capacity(payload.len());
        b.extend_from_slice(payload);
        if let Some(k) = cur.mask {
            apply_mask(&mut b, k, 0);
        }
        let msg = self.msg.as_mut().expect("begin() set the message");
        if lim.assemble {
            // A single-frame message (continuations take the buffered path).
            debug_assert!(cur.fin || self.held.as_ref().is_none_or(|h| h.buf.is_empty()));
            if !cur.fin {
                // The first fragment: it starts the message buffer (empty here, so
                // `unsplit` just moves `b` in).
                if msg.text {
                    msg.utf8.feed(&b).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.held_mut().buf.unsplit(b);
                return Ok(());
            }
            let text = msg.text;
            self.msg = None;
            let bytes = b.freeze();
            out(Inbound::Message(if text {
                Message::Text(Utf8Bytes::try_from(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
            } else {
                Message::Binary(bytes)
            }));
            return Ok(());
        }
        // No assembly: one Frame event per data frame.
        if msg.text {
            msg.utf8.feed(&b).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.end_frame_unassembled(cur, b.freeze(), out)
    }

    /// Part of a frame payload; emits when the frame is complete.
    fn partial(&mut self, lim: &Limits, part: &[u8], out: &mut impl FnMut(Inbound)) -> Result<(), ProtocolError> {
        let cur = self.cur.as_mut().expect("a frame in progress");
        let offset = cur.got;
        cur.got += part.len();
        let cur = *cur;
        if cur.opcode.is_control() {
            self.held_mut().ctrl.extend_from_slice(part);
            if cur.got == cur.len {
                self.cur = None;
                let mut p = core::mem::take(&mut self.held_mut().ctrl);
                self.release_if_empty();
                if let Some(k) = cur.mask {
                    apply_mask(&mut p, k, 0);
                }
                return self.control(cur.opcode, p, out);
            }
            return Ok(());
        }
        let buf = &mut self.held.get_or_insert_with(Box::default).buf;
        let start = buf.len();
        // Room for the rest of the frame (bounded by the frame limit, and by 1 MiB per
        // step so an announced but unsent payload does not reserve it all at once).
        let rest = cur.len - offset;
        if buf.capacity() - start < rest {
            buf.reserve(rest.min(1 << 20));
        }
        buf.extend_from_slice(part);
        if let Some(k) = cur.mask {
            apply_mask(&mut buf[start..], k, offset);
        }
        let msg = self.msg.as_mut().expect("begin() set the message");
        if msg.text {
            msg.utf8.feed(&buf[start..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if cur.got < cur.len {
            return Ok(());
        }
        self.cur = None;
        if !lim.assemble {
            let b = buf.split().freeze();
            self.release_if_empty();
            return self.end_frame_unassembled(cur, b, out);
        }
        if !cur.fin {
            return Ok(());
        }
        let bytes = buf.split().freeze();
        self.release_if_empty();
        let msg = self.msg.take().expect("message");
        let mut utf8 = msg.utf8;
        out(Inbound::Message(if msg.text {
            utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Message::Text(Utf8Bytes::try_from(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
        } else {
            Message::Binary(bytes)
        }));
        Ok(())
    }

    fn end_frame_unassembled(
        &mut self,
        cur: Cur,
        payload: Bytes,
        out: &mut impl FnMut(Inbound),
    ) -> Result<(), ProtocolError> {
        if cur.fin {
            let mut m = self.msg.take().expect("message");
            if m.text {
                m.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        out(Inbound::Frame(Frame { fin: cur.fin, opcode: cur.opcode, payload }));
        Ok(())
    }

    fn control(&mut self, op: OpCode, payload: Vec<u8>, out: &mut impl FnMut(Inbound)) -> Result<(), ProtocolError> {
        match op {
            OpCode::Ping => out(Inbound::Ping(payload.into())),
            OpCode::Pong => out(Inbound::Pong(payload.into())),
            _ => {
                let parsed = parse_close_payload(&payload).map_err(ProtocolError::InvalidClosePayload)?;
                self.done = true;
                self.msg = None;
                self.held = None;
                out(Inbound::Close(parsed.map(|(c, r)| (c, r.to_owned()))));
            }
        }
        Ok(())
    }
}
