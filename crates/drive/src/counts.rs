//! [`Counts`]: what a driver counted of its connections, in plain integers.

use ringwire_conn::{CloseCode, ConnError, Event, Message};

/// A count per message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByType {
    /// Text messages (or their payload bytes).
    pub text: u64,
    /// Binary messages (or their payload bytes).
    pub binary: u64,
}

impl ByType {
    /// Text and binary together.
    pub fn total(&self) -> u64 {
        self.text + self.binary
    }

    #[inline(always)]
    fn add(&mut self, text: bool, n: u64) {
        if text { self.text += n } else { self.binary += n }
    }

    fn for_each_mut(&mut self, f: &mut impl FnMut(&mut u64)) {
        f(&mut self.text);
        f(&mut self.binary);
    }
}

/// Close frames counted by code: one slot per code of 1000 to 1015 (those RFC 6455 and
/// the IANA registry name), one for any other code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseCodes {
    /// `named[i]`: frames with code `1000 + i`.
    pub named: [u64; 16],
    /// Frames with any code outside 1000 to 1015 (an application's 4000-4999, ...).
    pub other: u64,
}

impl CloseCodes {
    /// The count for `code`: its own slot for 1000 to 1015, [`other`](Self::other) for any other.
    pub fn get(&self, code: u16) -> u64 {
        match code.checked_sub(1000) {
            Some(i) if i < 16 => self.named[i as usize],
            _ => self.other,
        }
    }

    /// Every frame counted, whatever its code.
    pub fn total(&self) -> u64 {
        self.named.iter().sum::<u64>() + self.other
    }

    fn add(&mut self, code: CloseCode) {
        match code.0.checked_sub(1000) {
            Some(i) if i < 16 => self.named[i as usize] += 1,
            _ => self.other += 1,
        }
    }

    fn for_each_mut(&mut self, f: &mut impl FnMut(&mut u64)) {
        self.named.iter_mut().for_each(&mut *f);
        f(&mut self.other);
    }
}

/// Protocol errors by the peer, by the close code the connection failed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolErrors {
    /// 1002: a frame broke RFC 6455 (an unmasked client frame, a bad opcode, ...).
    pub protocol_error: u64,
    /// 1007: invalid UTF-8 in a text message, or compressed data that does not inflate.
    pub invalid_data: u64,
    /// 1009: a message or frame over the configured maximum.
    pub message_too_big: u64,
    /// Any other code.
    pub other: u64,
}

impl ProtocolErrors {
    fn add(&mut self, code: CloseCode) {
        match code {
            CloseCode::PROTOCOL_ERROR => self.protocol_error += 1,
            CloseCode::INVALID_DATA => self.invalid_data += 1,
            CloseCode::MESSAGE_TOO_BIG => self.message_too_big += 1,
            _ => self.other += 1,
        }
    }

    /// Every protocol error, whatever its code.
    pub fn total(&self) -> u64 {
        self.protocol_error + self.invalid_data + self.message_too_big + self.other
    }
}

/// What a driver counted of its connections' traffic, as plain integers (no atomics:
/// one driver, one thread). [`Driven::pump`](crate::Driven::pump) counts the events it
/// takes from a connection (messages and bytes received, close frames at the close,
/// errors). The sends are not counted here but by `ringwire-conn` itself, per thread,
/// whatever path queued them ([`ringwire_conn::thread_sent`]): a server copies its
/// worker's into `messages_sent` and `bytes_sent` when it publishes these for
/// [`stats`](../ringwire_server/struct.ServerHandle.html#method.stats).
///
/// Bytes are payload bytes, as the application sent or received them (before
/// permessage-deflate, without frame headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Whole messages received.
    pub messages_received: ByType,
    /// Their payload bytes.
    pub bytes_received: ByType,
    /// Messages queued to send (sends refused as not open or over `max_buffered` are not
    /// counted); filled in from [`ringwire_conn::thread_sent`], see above.
    pub messages_sent: ByType,
    /// Their payload bytes.
    pub bytes_sent: ByType,
    /// Close frames queued to send, by code (1005: one without a code), counted at the close.
    pub close_frames_sent: CloseCodes,
    /// Close frames received, by code (1005: one without a code), counted at the close.
    pub close_frames_received: CloseCodes,
    /// Connections failed for a protocol error by the peer.
    pub protocol_errors: ProtocolErrors,
    /// Connections dropped because the peer stopped answering keepalive pings.
    pub keepalive_drops: u64,
    /// Connections dropped with 1008 because a send would have gone over `max_buffered`
    /// (a slow consumer).
    pub slow_consumer_drops: u64,
}

impl Counts {
    #[inline(always)]
    fn received(&mut self, message: &Message) {
        let text = message.is_text();
        self.messages_received.add(text, 1);
        self.bytes_received.add(text, message.len() as u64);
    }

    /// Counts what `event` tells (a message, an error); the close frames are counted
    /// by [`closed`](Self::closed).
    #[inline(always)]
    fn event(&mut self, event: &Event) {
        match event {
            Event::Message(m) => self.received(m),
            Event::Error(e) => self.error(e),
            _ => {}
        }
    }

    #[cold]
    fn error(&mut self, e: &ConnError) {
        match e {
            ConnError::Protocol(p) => self.protocol_errors.add(p.close_code()),
            ConnError::KeepaliveTimeout => self.keepalive_drops += 1,
            ConnError::BufferLimitExceeded { .. } => self.slow_consumer_drops += 1,
            _ => {}
        }
    }

    /// The connection closed: its close frames, sent and received.
    #[cold]
    fn closed(&mut self, sent: Option<CloseCode>, received: Option<CloseCode>) {
        if let Some(code) = sent {
            self.close_frames_sent.add(code);
        }
        if let Some(code) = received {
            self.close_frames_received.add(code);
        }
    }

    /// Calls `f` on every counter, always in the same order: for copying them to and
    /// from a flat array (a server publishes them so).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut u64)) {
        let f = &mut f;
        self.messages_received.for_each_mut(f);
        self.bytes_received.for_each_mut(f);
        self.messages_sent.for_each_mut(f);
        self.bytes_sent.for_each_mut(f);
        self.close_frames_sent.for_each_mut(f);
        self.close_frames_received.for_each_mut(f);
        let p = &mut self.protocol_errors;
        for v in [&mut p.protocol_error, &mut p.invalid_data, &mut p.message_too_big, &mut p.other] {
            f(v);
        }
        f(&mut self.keepalive_drops);
        f(&mut self.slow_consumer_drops);
    }

    /// The counters every message moves (received and sent, messages and bytes, by
    /// type), in the order [`for_each_mut`](Self::for_each_mut) visits them first.
    #[inline]
    pub fn per_message(&self) -> [u64; 8] {
        let (mr, br, ms, bs) = (self.messages_received, self.bytes_received, self.messages_sent, self.bytes_sent);
        [mr.text, mr.binary, br.text, br.binary, ms.text, ms.binary, bs.text, bs.binary]
    }

    /// How many counters [`for_each_mut`](Self::for_each_mut) visits.
    pub const LEN: usize = 4 * 2 + 2 * 17 + 4 + 2;
}

/// Where [`Driven::pump`](crate::Driven::pump) counts what it takes from a connection:
/// [`Counts`] (a server), or `()` for a driver that reports nothing (the client), which
/// then pays nothing per message.
pub trait Tally {
    /// An event taken from a connection.
    fn event(&mut self, event: &Event);
    /// The connection closed, with the close frames it sent and received.
    fn closed(&mut self, sent: Option<CloseCode>, received: Option<CloseCode>);
}

impl Tally for Counts {
    #[inline(always)]
    fn event(&mut self, event: &Event) {
        Counts::event(self, event);
    }
    fn closed(&mut self, sent: Option<CloseCode>, received: Option<CloseCode>) {
        Counts::closed(self, sent, received);
    }
}

impl Tally for () {
    #[inline(always)]
    fn event(&mut self, _: &Event) {}
    #[inline(always)]
    fn closed(&mut self, _: Option<CloseCode>, _: Option<CloseCode>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_visited_once() {
        let mut c = Counts::default();
        let mut n = 0;
        c.for_each_mut(|v| {
            n += 1;
            *v = n;
        });
        assert_eq!(n as usize, Counts::LEN);
        assert_eq!(c.slow_consumer_drops, n, "the last one");
        assert_eq!(c.close_frames_sent.get(1000), 9);
        assert_eq!(c.close_frames_sent.get(3000), c.close_frames_sent.other);
    }
}
