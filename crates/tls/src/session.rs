//! The sans-IO TLS session: ciphertext in, plaintext out, plaintext in, ciphertext out.

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic};
use rustls::{ClientConfig, ServerConfig};

use crate::TlsError;

/// Largest TLS record on the wire: a 5-byte header and up to 16 KiB + 2048 bytes of payload
/// (the most RFC 8446/5246 allow for a protected record; rustls refuses longer ones).
pub const MAX_RECORD_LEN: usize = 5 + 16_384 + 2_048;

/// Bound of the staging buffer after the handshake: one record, since every complete record
/// is processed at once and only the partial one at the end of a read is kept.
pub const STAGING_LIMIT: usize = MAX_RECORD_LEN;

/// Bound of the staging buffer during the handshake: rustls joins a handshake message that
/// spans records in the caller's buffer, so the records of its largest message (64 KiB) are
/// kept together, plus one partial record.
pub const HANDSHAKE_STAGING_LIMIT: usize = 0x1_0000 + 5 * 5 + MAX_RECORD_LEN;

/// Plaintext per TLS record (the protocol maximum).
const MAX_FRAGMENT: usize = 16_384;
/// Room asked for per record when encrypting (header, content type, nonce and tag take at
/// most 5 + 1 + 8 + 16 bytes); the output is cut back to what was written.
const RECORD_OVERHEAD: usize = 64;

/// The two kinds of unbuffered rustls connection behind one interface.
trait Unbuffered {
    type Data;
    fn records<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// Whether rustls holds output (`sendable_tls` is not empty).
    fn wants_write(&self) -> bool;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn records<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn wants_write(&self) -> bool {
        rustls::CommonState::wants_write(self)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn records<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn wants_write(&self) -> bool {
        rustls::CommonState::wants_write(self)
    }
}

enum Side {
    Server(Box<UnbufferedServerConnection>),
    Client(Box<UnbufferedClientConnection>),
}

/// Flags the processing loop updates.
#[derive(Default)]
struct Flags {
    peer_closed: bool,
    sent_close: bool,
    failed: bool,
}

/// One TLS connection, server or client, with no I/O: the caller moves bytes.
///
/// - [`TlsSession::read`] takes ciphertext as `&mut [u8]` (whole records are decrypted in
///   place there), appends the plaintext to a caller buffer and the handshake bytes and
///   alerts to send to another.
/// - [`TlsSession::encrypt`] appends the ciphertext of some plaintext to a caller buffer.
/// - [`TlsSession::close_notify`] appends the close_notify alert.
///
/// A record split across reads is kept in a staging buffer that exists only while a record
/// is partial: at most [`STAGING_LIMIT`] bytes once the handshake is done,
/// [`HANDSHAKE_STAGING_LIMIT`] during it; more is [`TlsError::RecordTooLarge`].
/// `tests/session.rs` drives a server and a client session against each other in memory.
pub struct TlsSession {
    side: Side,
    staging: Option<Staging>,
    flags: Flags,
}

/// Input kept for the next read: what rustls did not consume.
struct Staging {
    buf: Vec<u8>,
    /// `buf[..seen]` are complete records rustls has already processed (decrypted or
    /// joined in place, so their headers are gone) and waits to complete with more records;
    /// `buf[seen..]` is raw input: the start of a record.
    seen: usize,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("server", &matches!(self.side, Side::Server(_)))
            .field("handshaking", &self.is_handshaking())
            .field("staged", &self.staged())
            .field("peer_closed", &self.flags.peer_closed)
            .finish()
    }
}

impl TlsSession {
    /// A server session; it waits for the client's hello.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(TlsError::Protocol)?;
        Ok(Self::with(Side::Server(Box::new(conn))))
    }

    /// A client session for the server `name` (SNI and certificate name check). Its first
    /// [`TlsSession::read`] (with empty input) writes the client hello.
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, TlsError> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(TlsError::Protocol)?;
        Ok(Self::with(Side::Client(Box::new(conn))))
    }

    fn with(side: Side) -> Self {
        TlsSession { side, staging: None, flags: Flags::default() }
    }

    /// Whether this is the server side.
    pub fn is_server(&self) -> bool {
        matches!(self.side, Side::Server(_))
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        match &self.side {
            Side::Server(c) => c.is_handshaking(),
            Side::Client(c) => c.is_handshaking(),
        }
    }

    /// The ALPN protocol agreed in the handshake (`b"http/1.1"` when both sides offer it).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.side {
            Side::Server(c) => c.alpn_protocol(),
            Side::Client(c) => c.alpn_protocol(),
        }
    }

    /// The TLS version agreed in the handshake.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.side {
            Side::Server(c) => c.protocol_version(),
            Side::Client(c) => c.protocol_version(),
        }
    }

    /// Whether the peer sent close_notify (no more plaintext will come).
    pub fn peer_closed(&self) -> bool {
        self.flags.peer_closed
    }

    /// Whether close_notify was written by [`TlsSession::close_notify`].
    pub fn sent_close(&self) -> bool {
        self.flags.sent_close
    }

    /// Bytes of a partial record kept for the next read (0: no staging buffer exists).
    pub fn staged(&self) -> usize {
        self.staging.as_ref().map_or(0, |s| s.buf.len())
    }

    fn staging_limit(&self) -> usize {
        if self.is_handshaking() { HANDSHAKE_STAGING_LIMIT } else { STAGING_LIMIT }
    }

    /// Processes received ciphertext.
    ///
    /// Whole records are decrypted in place in `input`; a record cut at the end of `input` is
    /// kept (copied) until the next call completes it. The plaintext is appended to `plain`,
    /// handshake messages and alerts to send to the peer are appended to `out`. Data after
    /// the peer's close_notify is dropped. On error, `out` may hold the alert to send before
    /// closing; the session is dead afterwards.
    pub fn read(&mut self, input: &mut [u8], out: &mut Vec<u8>, plain: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.flags.failed {
            return Err(TlsError::Closed);
        }
        let mut pos = 0;
        if let Some(mut st) = self.staging.take() {
            // Complete the staged record(s) from the front of `input`, process them there.
            loop {
                let mut want = missing(&st.buf[st.seen..]);
                if want == 0 && st.seen == st.buf.len() {
                    want = 5; // rustls has seen it all and waits for another record
                }
                while want > 0 {
                    let take = want.min(input.len() - pos);
                    // `seen` bytes are records rustls holds (a handshake message spanning
                    // records, also after the handshake, e.g. a large ticket): the limit is
                    // on the raw record being completed.
                    let limit = self.staging_limit();
                    if st.buf.len() - st.seen + take > limit {
                        return self.fail(TlsError::RecordTooLarge { len: st.buf.len() - st.seen + take, limit });
                    }
                    st.buf.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    if take < want {
                        self.staging = Some(st);
                        return Ok(());
                    }
                    want = missing(&st.buf[st.seen..]);
                }
                let used = self.process(&mut st.buf, out, plain)?;
                st.buf.drain(..used);
                st.seen = st.buf.len();
                if st.buf.is_empty() {
                    break;
                }
            }
        }
        let rest = &mut input[pos..];
        let complete = complete_len(rest);
        let used = self.process(rest, out, plain)?;
        if used < rest.len() {
            let tail = &rest[used..];
            // rustls has seen (and may have rewritten: it decrypts and joins handshake
            // fragments in place) the complete records; only the raw tail has headers to parse.
            let seen = complete.saturating_sub(used);
            let limit = self.staging_limit();
            if tail.len() - seen > limit {
                return self.fail(TlsError::RecordTooLarge { len: tail.len() - seen, limit });
            }
            self.staging = Some(Staging { buf: tail.to_vec(), seen });
        }
        Ok(())
    }

    /// Runs rustls over `buf` until it needs more bytes; returns how many it consumed.
    fn process(&mut self, buf: &mut [u8], out: &mut Vec<u8>, plain: &mut Vec<u8>) -> Result<usize, TlsError> {
        let r = match &mut self.side {
            Side::Server(c) => process_with(&mut **c, &mut self.flags, buf, out, plain),
            Side::Client(c) => process_with(&mut **c, &mut self.flags, buf, out, plain),
        };
        match r {
            Ok(n) => Ok(n),
            Err(e) => self.fail(e),
        }
    }

    /// Marks the session dead: rustls is not called again.
    fn fail<T>(&mut self, e: TlsError) -> Result<T, TlsError> {
        self.flags.failed = true;
        self.staging = None;
        Err(e)
    }

    /// Appends the ciphertext of `plain` to `out`: `plain.len()` plus at most 30 bytes per
    /// 16 KiB record (callers bound the output by bounding `plain`). Fails with
    /// [`TlsError::NotReady`] while handshaking and [`TlsError::Closed`] after close_notify
    /// was sent or an error.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.flags.failed || self.flags.sent_close {
            return Err(TlsError::Closed);
        }
        let flags = &mut self.flags;
        match &mut self.side {
            Side::Server(c) => with_write_traffic(&mut **c, flags, out, |w, out| encrypt_into(w, plain, out)),
            Side::Client(c) => with_write_traffic(&mut **c, flags, out, |w, out| encrypt_into(w, plain, out)),
        }
    }

    /// Appends the close_notify alert to `out` (once). Returns whether it was written: not
    /// during the handshake (rustls can only send it once traffic keys exist), nor twice.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<bool, TlsError> {
        if self.flags.failed || self.flags.sent_close || self.is_handshaking() {
            return Ok(false);
        }
        let flags = &mut self.flags;
        let r = match &mut self.side {
            Side::Server(c) => with_write_traffic(&mut **c, flags, out, close_into),
            Side::Client(c) => with_write_traffic(&mut **c, flags, out, close_into),
        };
        r?;
        self.flags.sent_close = true;
        Ok(true)
    }
}

/// Walks the record headers of raw input: (length of the complete records at its front,
/// bytes still needed to complete the record after them, its header first). A header with an
/// impossible length counts as complete, so that rustls sees it and rejects it.
fn records(buf: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    loop {
        let left = buf.len() - pos;
        if left == 0 {
            return (pos, 0);
        }
        if left < 5 {
            return (pos, 5 - left);
        }
        let len = u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]) as usize;
        if 5 + len > MAX_RECORD_LEN {
            return (buf.len(), 0);
        }
        if left < 5 + len {
            return (pos, 5 + len - left);
        }
        pos += 5 + len;
    }
}

/// Bytes needed to complete the last record of raw input (0: it ends at a record boundary).
fn missing(buf: &[u8]) -> usize {
    records(buf).1
}

/// Length of the complete records at the front of raw input.
fn complete_len(buf: &[u8]) -> usize {
    records(buf).0
}

fn process_with<C: Unbuffered>(
    conn: &mut C,
    flags: &mut Flags,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    plain: &mut Vec<u8>,
) -> Result<usize, TlsError> {
    let mut off = 0;
    loop {
        if flags.peer_closed {
            // Nothing after close_notify is read (rustls stops deframing): drop it.
            return Ok(buf.len());
        }
        let status = conn.records(&mut buf[off..]);
        let mut discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => {
                off += discard;
                flush_alerts(conn, &mut buf[off..], out);
                return Err(TlsError::Protocol(e));
            }
        };
        let stop = match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    // 0.23 never fails here (the record was decrypted before ReadTraffic).
                    let rec = rec.map_err(TlsError::Protocol)?;
                    discard += rec.discard;
                    plain.extend_from_slice(rec.payload);
                }
                false
            }
            ConnectionState::EncodeTlsData(mut e) => {
                encode_into(&mut e, out)?;
                false
            }
            ConnectionState::TransmitTlsData(t) => {
                // The caller sends `out` in order after this call: the bytes are as good as sent.
                t.done();
                false
            }
            ConnectionState::PeerClosed => {
                flags.peer_closed = true;
                false
            }
            ConnectionState::Closed => {
                // Both directions closed: whatever follows is dropped, as after PeerClosed (it
                // must not be staged as a partial record). rustls 0.23 reports PeerClosed first.
                flags.peer_closed = true;
                return Ok(buf.len());
            }
            // Needs more input: during the handshake, or after it with no complete record left.
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => true,
            // Early data is never enabled (max_early_data_size is left at 0).
            other => return Err(TlsError::Unexpected(format!("{other:?}"))),
        };
        off += discard;
        if stop {
            return Ok(off);
        }
    }
}

/// After rustls failed on `rest` (the input past what it discarded): the fatal alert it
/// queued, if any, into `out`.
///
/// Only while rustls holds output: then `process_tls_records` pops it before deframing. A
/// call that deframed again would fail again, and rustls 0.23.46 panics on a second fatal
/// alert (`assert!(!self.sent_fatal_alert)`); an empty slice instead of `rest` would not
/// match the handshake messages its deframer still points into (another panic).
fn flush_alerts<C: Unbuffered>(conn: &mut C, rest: &mut [u8], out: &mut Vec<u8>) {
    let mut off = 0;
    for _ in 0..8 {
        if !conn.wants_write() {
            return;
        }
        let status = conn.records(&mut rest[off..]);
        let discard = status.discard;
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                if encode_into(&mut e, out).is_err() {
                    return;
                }
            }
            _ => return,
        }
        off += discard;
    }
}

/// Drives the connection (no input) to `WriteTraffic` and runs `f` there.
fn with_write_traffic<C: Unbuffered, T>(
    conn: &mut C,
    flags: &mut Flags,
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut WriteTraffic<'_, C::Data>, &mut Vec<u8>) -> Result<T, TlsError>,
) -> Result<T, TlsError> {
    // Each pass either encodes a queued handshake message (a key update) or ends: bounded.
    for _ in 0..8 {
        let mut empty: [u8; 0] = [];
        let status = conn.records(&mut empty);
        match status.state.map_err(TlsError::Protocol)? {
            ConnectionState::WriteTraffic(mut w) => return f(&mut w, out),
            ConnectionState::EncodeTlsData(mut e) => encode_into(&mut e, out)?,
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::PeerClosed => flags.peer_closed = true,
            ConnectionState::Closed => return Err(TlsError::Closed),
            ConnectionState::BlockedHandshake => return Err(TlsError::NotReady),
            other => return Err(TlsError::Unexpected(format!("{other:?}"))),
        }
    }
    Err(TlsError::Unexpected("no write state after 8 steps".into()))
}

fn encode_into<D>(e: &mut EncodeTlsData<'_, D>, out: &mut Vec<u8>) -> Result<(), TlsError> {
    let start = out.len();
    out.resize(start + 1024, 0);
    let n = match e.encode(&mut out[start..]) {
        Ok(n) => n,
        Err(rustls::unbuffered::EncodeError::InsufficientSize(s)) => {
            out.resize(start + s.required_size, 0);
            e.encode(&mut out[start..]).map_err(|e| TlsError::Unexpected(e.to_string()))?
        }
        Err(other) => {
            out.truncate(start);
            return Err(TlsError::Unexpected(other.to_string()));
        }
    };
    out.truncate(start + n);
    Ok(())
}

/// Room for `plain` bytes once encrypted: each record's header, tag and content type.
pub(crate) fn sealed_len(plain: usize) -> usize {
    plain + plain.div_ceil(MAX_FRAGMENT).max(1) * RECORD_OVERHEAD
}

fn encrypt_into<D>(w: &mut WriteTraffic<'_, D>, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
    let start = out.len();
    out.resize(start + sealed_len(plain.len()), 0);
    let n = match w.encrypt(plain, &mut out[start..]) {
        Ok(n) => n,
        Err(EncryptError::InsufficientSize(s)) => {
            out.resize(start + s.required_size, 0);
            w.encrypt(plain, &mut out[start..]).map_err(encrypt_error)?
        }
        Err(e) => {
            out.truncate(start);
            return Err(encrypt_error(e));
        }
    };
    out.truncate(start + n);
    Ok(())
}

fn close_into<D>(w: &mut WriteTraffic<'_, D>, out: &mut Vec<u8>) -> Result<(), TlsError> {
    let start = out.len();
    out.resize(start + RECORD_OVERHEAD, 0);
    let n = w.queue_close_notify(&mut out[start..]).map_err(encrypt_error)?;
    out.truncate(start + n);
    Ok(())
}

fn encrypt_error(e: EncryptError) -> TlsError {
    match e {
        EncryptError::EncryptExhausted => TlsError::Closed,
        other => TlsError::Unexpected(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{complete_len, missing};

    #[test]
    fn missing_counts_to_the_end_of_the_last_record() {
        assert_eq!(missing(&[]), 0);
        assert_eq!(missing(&[23, 3, 3]), 2);
        assert_eq!(missing(&[23, 3, 3, 0, 4]), 4);
        assert_eq!(missing(&[23, 3, 3, 0, 4, 1, 2, 3, 4]), 0);
        assert_eq!(missing(&[23, 3, 3, 0, 1, 9, 23]), 4);
        // an impossible length is left for rustls to refuse
        assert_eq!(missing(&[23, 3, 3, 0xff, 0xff]), 0);
        assert_eq!(complete_len(&[23, 3, 3, 0, 1, 9, 23]), 6);
        assert_eq!(complete_len(&[23, 3, 3, 0, 1, 9, 23, 3, 3, 0, 0]), 11);
        assert_eq!(complete_len(&[23, 3]), 0);
    }
}
