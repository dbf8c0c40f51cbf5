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

#[derive(Debug)]
pub(crate) struct Recv {
    dcfg: DecodeConfig,
    max_message: usize,
    assemble: bool,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    cur: Option<Cur>,
    msg: Option<Msg>,
    /// The message (or, without assembly, the frame) being received.
    buf: BytesMut,
    /// A control frame's payload being received.
    ctrl: Vec<u8>,
    /// A close frame or an error was seen: the rest of the input is ignored.
    pub(crate) done: bool,
}

impl Recv {
    pub(crate) fn new(dcfg: DecodeConfig, max_message: usize, assemble: bool) -> Self {
        Self {
            dcfg,
            max_message,
            assemble,
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            cur: None,
            msg: None,
            buf: BytesMut::new(),
            ctrl: Vec::new(),
            done: false,
        }
    }

    /// Bytes held for frames not yet complete.
    pub(crate) fn held(&self) -> usize {
        self.hdr_len + self.buf.len() + self.ctrl.len()
    }

    /// Consumes `data`, calling `out` for each finding, until the input ends, a close
    /// frame or an error stops the stream, or a finding was reported: then it returns
    /// how many bytes it used, and the caller feeds the rest once the application has
    /// taken the events. Yielding after every finding keeps the application's reply to
    /// a message ahead of the failure a later frame causes (Autobahn 3.2, 5.15).
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(Inbound)) -> usize {
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
                match self.next_header(data) {
                    Ok(Some((h, used))) => {
                        data = &data[used..];
                        if let Err(e) = self.begin(h) {
                            self.fail(e, &mut out);
                        }
                    }
                    Ok(None) => data = &[],
                    Err(e) => self.fail(e, &mut out),
                }
                continue;
            };
            let need = cur.len - cur.got;
            if cur.got == 0 && data.len() >= need && !self.is_continuing(cur) {
                // Fast path: the whole payload is in the caller's slice.
                let (payload, rest) = data.split_at(need);
                data = rest;
                self.cur = None;
                if let Err(e) = self.whole(cur, payload, &mut out) {
                    self.fail(e, &mut out);
                }
            } else if need == 0 || !data.is_empty() {
                let take = need.min(data.len());
                let (part, rest) = data.split_at(take);
                data = rest;
                if let Err(e) = self.partial(part, &mut out) {
                    self.fail(e, &mut out);
                }
            } else {
                break;
            }
        }
        if self.done { len } else { len - data.len() }
    }

    /// Whether `cur` appends to a message already in the buffer (then it takes the
    /// buffered path even when whole).
    #[inline]
    fn is_continuing(&self, cur: Cur) -> bool {
        cur.opcode == OpCode::Continuation && self.assemble
    }

    fn fail(&mut self, e: ProtocolError, out: &mut impl FnMut(Inbound)) {
        self.done = true;
        self.cur = None;
        self.msg = None;
        self.buf = BytesMut::new();
        self.ctrl = Vec::new();
        out(Inbound::Error(e));
    }

    /// The next header, from the partial-header array or straight from `data`.
    /// `Ok(None)`: `data` was all taken and the header is still incomplete.
    fn next_header(&mut self, data: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        self.next_header_inner(data).map_err(|e| match e {
            // The decoder reports the extended length only when those bytes are in;
            // report the 7-bit field always, so the error is the same for any split.
            ProtocolError::Frame(FrameError::ControlFrameTooLong(n)) => {
                ProtocolError::Frame(FrameError::ControlFrameTooLong(n.min(126)))
            }
            e => e,
        })
    }

    fn next_header_inner(&mut self, data: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if self.hdr_len == 0 {
            return match decode_header(data, &self.dcfg)? {
                Decoded::Header(h, n) => Ok(Some((h, n))),
                Decoded::NeedMore(_) => {
                    self.hdr[..data.len()].copy_from_slice(data);
                    self.hdr_len = data.len();
                    Ok(None)
                }
            };
        }
        let mut used = 0;
        loop {
            match decode_header(&self.hdr[..self.hdr_len], &self.dcfg)? {
                Decoded::Header(h, n) => {
                    debug_assert_eq!(n, self.hdr_len);
                    self.hdr_len = 0;
                    return Ok(Some((h, used)));
                }
                Decoded::NeedMore(more) => {
                    let take = more.min(data.len() - used);
                    if take == 0 {
                        return Ok(None);
                    }
                    self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[used..used + take]);
                    self.hdr_len += take;
                    used += take;
                }
            }
        }
    }

    /// Checks a header against the message in progress and the message limit.
    fn begin(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        let len = h.payload_len;
        match h.opcode {
            OpCode::Continuation => {
                let Some(m) = &mut self.msg else { return Err(ProtocolError::UnexpectedContinuation) };
                m.total = m.total.saturating_add(len);
                if self.assemble && m.total > self.max_message as u64 {
                    return Err(ProtocolError::MessageTooBig { size: m.total, max: self.max_message });
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.msg.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if self.assemble && len > self.max_message as u64 {
                    return Err(ProtocolError::MessageTooBig { size: len, max: self.max_message });
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
    fn whole(&mut self, cur: Cur, payload: &[u8], out: &mut impl FnMut(Inbound)) -> Result<(), ProtocolError> {
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
        if self.assemble {
            // A single-frame message (continuations take the buffered path).
            debug_assert!(cur.fin || self.buf.is_empty());
            if !cur.fin {
                // The first fragment: it starts the message buffer (empty here, so
                // `unsplit` just moves `b` in).
                if msg.text {
                    msg.utf8.feed(&b).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.buf.unsplit(b);
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
    fn partial(&mut self, part: &[u8], out: &mut impl FnMut(Inbound)) -> Result<(), ProtocolError> {
        let cur = self.cur.as_mut().expect("a frame in progress");
        let offset = cur.got;
        cur.got += part.len();
        let cur = *cur;
        if cur.opcode.is_control() {
            self.ctrl.extend_from_slice(part);
            if cur.got == cur.len {
                self.cur = None;
                let mut p = core::mem::take(&mut self.ctrl);
                if let Some(k) = cur.mask {
                    apply_mask(&mut p, k, 0);
                }
                return self.control(cur.opcode, p, out);
            }
            return Ok(());
        }
        let start = self.buf.len();
        // Room for the rest of the frame (bounded by the frame limit, and by 1 MiB per
        // step so an announced but unsent payload does not reserve it all at once).
        let rest = cur.len - offset;
        if self.buf.capacity() - start < rest {
            self.buf.reserve(rest.min(1 << 20));
        }
        self.buf.extend_from_slice(part);
        if let Some(k) = cur.mask {
            apply_mask(&mut self.buf[start..], k, offset);
        }
        let msg = self.msg.as_mut().expect("begin() set the message");
        if msg.text {
            msg.utf8.feed(&self.buf[start..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if cur.got < cur.len {
            return Ok(());
        }
        self.cur = None;
        if !self.assemble {
            let b = self.buf.split().freeze();
            return self.end_frame_unassembled(cur, b, out);
        }
        if !cur.fin {
            return Ok(());
        }
        let msg = self.msg.take().expect("message");
        let mut utf8 = msg.utf8;
        let bytes = self.buf.split().freeze();
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
                self.buf = BytesMut::new();
                out(Inbound::Close(parsed.map(|(c, r)| (c, r.to_owned()))));
            }
        }
        Ok(())
    }
}
