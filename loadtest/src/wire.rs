//! The client side of RFC 6455 as the load generator needs it, written independently of
//! `ringwire-frame` so that the generator can check a server without trusting ringwire's
//! own codec: pre-built masked frames, the upgrade request, the 101 check, and a
//! streaming parser for the (unmasked) frames a server sends.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::fmt;

/// The GUID that RFC 6455 section 1.3 appends to `Sec-WebSocket-Key`.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a given `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A `Sec-WebSocket-Key` made from 16 bytes derived from `seed` (the generator does not
/// need cryptographic keys, only distinct ones).
pub fn client_key(seed: u64) -> String {
    let mut s = XorShift::new(seed);
    let mut raw = [0u8; 16];
    for chunk in raw.chunks_mut(8) {
        chunk.copy_from_slice(&s.next_u64().to_le_bytes()[..chunk.len()]);
    }
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The HTTP/1.1 upgrade request a client sends, offering `extensions` (a
/// `Sec-WebSocket-Extensions` value such as [`DEFLATE_OFFER`]) when given; without it
/// there is no extension, so no compression.
pub fn upgrade_request(host: &str, path: &str, key: &str, extensions: Option<&str>) -> Vec<u8> {
    let ext = extensions.map_or_else(String::new, |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .into_bytes()
}

/// The extension offer `loadgen --deflate` makes: every message it sends is compressed
/// on its own (so once, up front, for all connections), and the server may choose its
/// own window and context takeover.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_no_context_takeover";

/// Why a server's bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The upgrade response was not a valid `101 Switching Protocols`.
    Handshake(String),
    /// A frame from the server broke RFC 6455 (masked, reserved bits, bad opcode, ...).
    Protocol(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Handshake(m) => write!(f, "handshake: {m}"),
            WireError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for WireError {}

/// A valid upgrade response: its length and what it agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Bytes of the response head (what follows are frames).
    pub head_len: usize,
    /// The permessage-deflate agreement, when [`DEFLATE_OFFER`] was made and accepted.
    pub deflate: Option<crate::deflate::Agreement>,
}

/// Checks a (possibly partial) upgrade response. `Ok(None)`: need more bytes;
/// `Ok(Some(upgrade))`: the response head is valid for `expected_accept`. With
/// `offered_deflate` ([`DEFLATE_OFFER`] was sent) the server must have accepted it (the
/// generator's frames are compressed up front); without, it must name no extension.
pub fn check_upgrade_response(
    buf: &[u8],
    expected_accept: &str,
    offered_deflate: bool,
) -> Result<Option<Upgrade>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > 16 * 1024 {
                return Err(WireError::Handshake("response head longer than 16 KiB".into()));
            }
            return Ok(None);
        }
        Err(e) => return Err(WireError::Handshake(format!("unparsable response: {e}"))),
    };
    if resp.code != Some(101) {
        return Err(WireError::Handshake(format!(
            "status {} {} (want 101)",
            resp.code.unwrap_or(0),
            resp.reason.unwrap_or("")
        )));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    match header("upgrade") {
        Some(v) if v.eq_ignore_ascii_case("websocket") => {}
        other => return Err(WireError::Handshake(format!("Upgrade header is {other:?}"))),
    }
    match header("connection") {
        Some(v) if v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")) => {}
        other => return Err(WireError::Handshake(format!("Connection header is {other:?}"))),
    }
    match header("sec-websocket-accept") {
        Some(v) if v == expected_accept => {}
        other => {
            return Err(WireError::Handshake(format!("Sec-WebSocket-Accept is {other:?}, want {expected_accept:?}")));
        }
    }
    let deflate = match (header("sec-websocket-extensions"), offered_deflate) {
        (None, false) => None,
        (Some(ext), false) => {
            return Err(WireError::Handshake(format!("server chose extensions we did not offer: {ext}")));
        }
        (None, true) => {
            return Err(WireError::Handshake(
                "server did not accept permessage-deflate (no Sec-WebSocket-Extensions in the 101)".into(),
            ));
        }
        (Some(ext), true) => Some(crate::deflate::Agreement::parse(&ext).map_err(WireError::Handshake)?),
    };
    Ok(Some(Upgrade { head_len: n, deflate }))
}

/// A complete client frame (FIN set, masked with `mask`).
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame_rsv1(opcode, payload, mask, false)
}

/// [`client_frame`] with RSV1 set when `rsv1` (the first frame of a compressed message).
pub fn client_frame_rsv1(opcode: u8, payload: &[u8], mask: [u8; 4], rsv1: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// A payload of `size` bytes made from `seed`: printable ASCII when `text`, arbitrary
/// bytes otherwise. Different seeds give different payloads.
pub fn pattern_payload(size: usize, seed: u64, text: bool) -> Vec<u8> {
    let mut s = XorShift::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555);
    (0..size)
        .map(|_| {
            let r = s.next_u64();
            if text { b'!' + (r % 94) as u8 } else { (r >> 24) as u8 }
        })
        .collect()
}

/// What the generator's messages contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadKind {
    /// Pseudo-random bytes (printable ASCII for text): incompressible.
    #[default]
    Pattern,
    /// JSON-like text records ([`json_payload`]): compressible like real application data.
    Json,
}

/// The payload of `size` bytes for `seed` of the given kind (`text` only matters for
/// [`PayloadKind::Pattern`]; JSON is always text).
pub fn payload(kind: PayloadKind, size: usize, seed: u64, text: bool) -> Vec<u8> {
    match kind {
        PayloadKind::Pattern => pattern_payload(size, seed, text),
        PayloadKind::Json => json_payload(size, seed),
    }
}

/// JSON-like text of exactly `size` bytes made from `seed`: an array of compact event
/// records (ids, timestamps, a session id, a nested user, line items, tags, a location),
/// cut at `size`, so the end is not valid JSON. Field names and vocabulary repeat as in
/// real application messages; ids, times, SKUs and prices vary. Different seeds give
/// different payloads. A message compressed on its own at zlib level 6 shrinks about
/// 2.3x at 1 KiB (three or four records: little to refer back to) and 5.8x at 16 KiB.
pub fn json_payload(size: usize, seed: u64) -> Vec<u8> {
    const FIRST: [&str; 16] = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Dennis", "Margaret", "Linus", "Guido", "Bjarne",
        "Frances", "John", "Radia", "Leslie",
    ];
    const LAST: [&str; 16] = [
        "Lovelace",
        "Hopper",
        "Turing",
        "Dijkstra",
        "Liskov",
        "Knuth",
        "Thompson",
        "Ritchie",
        "Hamilton",
        "Torvalds",
        "Rossum",
        "Stroustrup",
        "Allen",
        "McCarthy",
        "Perlman",
        "Lamport",
    ];
    const EVENTS: [&str; 8] = [
        "order.created",
        "order.paid",
        "order.shipped",
        "cart.updated",
        "user.login",
        "user.logout",
        "page.view",
        "search",
    ];
    const STATUS: [&str; 4] = ["ok", "pending", "failed", "retry"];
    const TAGS: [&str; 12] =
        ["mobile", "web", "eu", "us", "beta", "premium", "trial", "promo", "returning", "new", "api", "batch"];
    const CITIES: [(&str, &str); 8] = [
        ("Berlin", "52.5200,13.4050"),
        ("Lisbon", "38.7223,-9.1393"),
        ("Osaka", "34.6937,135.5023"),
        ("Toronto", "43.6532,-79.3832"),
        ("Nairobi", "-1.2921,36.8219"),
        ("Lima", "-12.0464,-77.0428"),
        ("Oslo", "59.9139,10.7522"),
        ("Austin", "30.2672,-97.7431"),
    ];
    use std::fmt::Write as _;
    let mut r = XorShift::new(seed.wrapping_mul(0x51_7CC1_B727_220A) ^ 0xC0FFEE);
    let mut pick = |n: usize| (r.next_u64() % n as u64) as usize;
    let mut s = String::with_capacity(size + 512);
    s.push('[');
    let mut id = 100_000 + seed * 7919;
    let mut ms = seed * 1_000_003 % 86_400_000;
    while s.len() < size {
        if s.len() > 1 {
            s.push(',');
        }
        let (fi, li) = (pick(16), pick(16));
        let (f, l) = (FIRST[fi], LAST[li]);
        let (city, latlon) = CITIES[pick(8)];
        ms = (ms + 1 + pick(2000) as u64) % 86_400_000;
        let mut items = String::new();
        for k in 0..1 + pick(3) {
            let sep = if k > 0 { "," } else { "" };
            let _ = write!(
                items,
                r#"{sep}{{"sku":"SKU-{:05}","qty":{},"price":{}.99}}"#,
                pick(100_000),
                1 + pick(4),
                pick(100)
            );
        }
        let _ = write!(
            s,
            r#"{{"id":{id},"event":"{}","ts":"2026-12-02T{:02}:{:02}:{:02}.{:03}Z","session":"{:08x}","user":{{"id":{},"name":"{f} {l}","email":"{}.{}@example.com","verified":{}}},"status":"{}","items":[{items}],"currency":"EUR","tags":["{}","{}"],"geo":{{"city":"{city}","coords":[{latlon}]}}}}"#,
            EVENTS[pick(8)],
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000,
            pick(1 << 32),
            1000 + fi * 16 + li,
            f.to_ascii_lowercase(),
            l.to_ascii_lowercase(),
            fi % 3 != 0,
            STATUS[pick(4)],
            TAGS[pick(12)],
            TAGS[pick(12)],
        );
        id += 1 + pick(3) as u64;
    }
    s.truncate(size);
    s.into_bytes()
}

/// A frame the generator can send many times: its bytes on the wire and its payload.
#[derive(Debug, Clone)]
pub struct Prebuilt {
    /// The masked frame exactly as written to the socket.
    pub wire: Vec<u8>,
    /// The unmasked payload the server must echo (before compression).
    pub payload: Vec<u8>,
    /// The data opcode (`OP_TEXT` or `OP_BINARY`).
    pub opcode: u8,
    /// Payload bytes in the frame as sent (the compressed size when compressed).
    pub wire_payload_len: usize,
}

impl Prebuilt {
    /// A frame for `payload`, compressed as a whole permessage-deflate message (RSV1 set)
    /// when `compress` is given, masked with `mask`.
    pub fn new(
        opcode: u8,
        payload: Vec<u8>,
        mask: [u8; 4],
        compress: Option<&mut crate::deflate::MessageDeflater>,
    ) -> Prebuilt {
        let (wire, wire_payload_len) = match compress {
            Some(d) => {
                let z = d.compress(&payload);
                (client_frame_rsv1(opcode, &z, mask, true), z.len())
            }
            None => (client_frame(opcode, &payload, mask), payload.len()),
        };
        Prebuilt { wire, payload, opcode, wire_payload_len }
    }
}

/// `count` distinct pre-built frames of `size` bytes (distinct payloads and mask keys),
/// each compressed on its own (no context takeover) when `deflate`.
pub fn prebuilt_frames(count: usize, size: usize, text: bool, kind: PayloadKind, deflate: bool) -> Vec<Prebuilt> {
    let opcode = if text { OP_TEXT } else { OP_BINARY };
    let mut d = deflate.then(crate::deflate::MessageDeflater::new);
    (0..count as u64)
        .map(|i| {
            let m = XorShift::new(i + 77).next_u64().to_le_bytes();
            Prebuilt::new(opcode, payload(kind, size, i + 1, text), [m[0], m[1], m[2], m[3]], d.as_mut())
        })
        .collect()
}

/// The header of a frame sent by a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerFrameHeader {
    /// FIN bit.
    pub fin: bool,
    /// RSV1 (permessage-deflate: the message is compressed; only allowed when
    /// `parse_server_header` was told so).
    pub rsv1: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload length.
    pub len: u64,
}

/// Parses a server frame header from the start of `buf`. `Ok(None)`: need more bytes;
/// `Ok(Some((header, header_len)))` otherwise. Rejects masked frames, reserved bits
/// (RSV1 is let through when `allow_rsv1`: permessage-deflate was agreed; where it may
/// appear is the caller's check), unknown opcodes, fragmented or long control frames, and
/// payloads above `max_len`.
pub fn parse_server_header(
    buf: &[u8],
    max_len: u64,
    allow_rsv1: bool,
) -> Result<Option<(ServerFrameHeader, usize)>, WireError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let reserved = if allow_rsv1 { 0x30 } else { 0x70 };
    if b0 & reserved != 0 {
        return Err(WireError::Protocol(format!("reserved bits set (byte0 {b0:#04x})")));
    }
    if b1 & 0x80 != 0 {
        return Err(WireError::Protocol("server frame is masked".into()));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let is_control = opcode & 0x8 != 0;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(WireError::Protocol(format!("reserved opcode {opcode:#x}"))),
    }
    let (len, hlen) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let l = u16::from_be_bytes([buf[2], buf[3]]) as u64;
            if l < 126 {
                return Err(WireError::Protocol("non-minimal 16-bit length".into()));
            }
            (l, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let l = u64::from_be_bytes(b);
            if l >> 63 != 0 || l <= u16::MAX as u64 {
                return Err(WireError::Protocol("bad 64-bit length".into()));
            }
            (l, 10)
        }
        l => (l as u64, 2),
    };
    if is_control && (!fin || len > 125) {
        return Err(WireError::Protocol(format!(
            "control frame opcode {opcode:#x} fragmented or longer than 125 bytes"
        )));
    }
    if len > max_len {
        return Err(WireError::Protocol(format!("frame of {len} bytes exceeds limit {max_len}")));
    }
    Ok(Some((ServerFrameHeader { fin, rsv1: b0 & 0x40 != 0, opcode, len }, hlen)))
}

/// A small xorshift64* generator (deterministic payloads, keys and mask keys).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        XorShift(seed ^ 0x2545_F491_4F6C_DD1D | 1)
    }

    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn client_frames_unmask_to_payload() {
        for size in [0usize, 5, 125, 126, 65535, 65536, 70000] {
            let payload = pattern_payload(size, 3, size % 2 == 0);
            let f = client_frame(OP_BINARY, &payload, [1, 2, 3, 4]);
            let hlen = if size < 126 {
                2
            } else if size <= 65535 {
                4
            } else {
                10
            };
            assert_eq!(f.len(), hlen + 4 + size);
            assert_eq!(f[0], 0x82);
            assert_eq!(f[1] & 0x80, 0x80);
            let mask = &f[hlen..hlen + 4];
            let un: Vec<u8> = f[hlen + 4..].iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect();
            assert_eq!(un, payload);
        }
    }

    #[test]
    fn text_patterns_are_ascii_and_distinct() {
        let a = pattern_payload(64, 1, true);
        let b = pattern_payload(64, 2, true);
        assert!(a.iter().all(|c| c.is_ascii_graphic()));
        assert_ne!(a, b);
        let frames = prebuilt_frames(4, 32, true, PayloadKind::Pattern, false);
        assert_ne!(frames[0].wire, frames[1].wire);
        assert_eq!(frames[0].payload.len(), 32);
    }

    #[test]
    fn server_header_parse() {
        assert_eq!(parse_server_header(&[0x81], 100, false), Ok(None));
        assert_eq!(
            parse_server_header(&[0x81, 5], 100, false),
            Ok(Some((ServerFrameHeader { fin: true, rsv1: false, opcode: 1, len: 5 }, 2)))
        );
        assert_eq!(parse_server_header(&[0x82, 126, 0], 1 << 20, false), Ok(None));
        assert_eq!(
            parse_server_header(&[0x02, 126, 0x40, 0], 1 << 20, false),
            Ok(Some((ServerFrameHeader { fin: false, rsv1: false, opcode: 2, len: 0x4000 }, 4)))
        );
        assert!(parse_server_header(&[0x81, 0x85], 100, false).is_err(), "masked");
        assert!(parse_server_header(&[0xC1, 5], 100, false).is_err(), "rsv1");
        assert!(parse_server_header(&[0x83, 0], 100, false).is_err(), "opcode 3");
        assert!(parse_server_header(&[0x09, 0], 100, false).is_err(), "fragmented ping");
        assert!(parse_server_header(&[0x89, 126, 0, 126], 1000, false).is_err(), "long ping");
        assert!(parse_server_header(&[0x82, 126, 0, 5], 1000, false).is_err(), "non-minimal");
        assert!(parse_server_header(&[0x82, 126, 1, 0], 100, false).is_err(), "over limit");
        // With permessage-deflate agreed RSV1 passes (and is reported); RSV2 and RSV3 never.
        assert_eq!(
            parse_server_header(&[0xC1, 5], 100, true),
            Ok(Some((ServerFrameHeader { fin: true, rsv1: true, opcode: 1, len: 5 }, 2)))
        );
        assert!(parse_server_header(&[0xA1, 5], 100, true).is_err(), "rsv2");
        assert!(parse_server_header(&[0x91, 5], 100, true).is_err(), "rsv3");
    }

    #[test]
    fn upgrade_response_checks() {
        let key = client_key(9);
        let acc = accept_key(&key);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\nxx"
        );
        assert_eq!(
            check_upgrade_response(ok.as_bytes(), &acc, false),
            Ok(Some(Upgrade { head_len: ok.len() - 2, deflate: None }))
        );
        assert_eq!(check_upgrade_response(&ok.as_bytes()[..20], &acc, false), Ok(None));
        let bad = ok.replace(&acc, "AAAA");
        assert!(check_upgrade_response(bad.as_bytes(), &acc, false).is_err());
        let e = check_upgrade_response(b"HTTP/1.1 400 Bad Request\r\n\r\n", &acc, false).unwrap_err();
        assert!(e.to_string().contains("400"), "{e}");
        let req = String::from_utf8(upgrade_request("h:1", "/", &key, None)).unwrap();
        assert!(req.contains(&key) && req.ends_with("\r\n\r\n") && !req.contains("Extensions"));
        // Offered deflate: the answer must accept it; not offered: it must name none.
        let e = check_upgrade_response(ok.as_bytes(), &acc, true).unwrap_err();
        assert!(e.to_string().contains("did not accept permessage-deflate"), "{e}");
        let with = ok.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n",
        );
        let up = check_upgrade_response(with.as_bytes(), &acc, true).unwrap().unwrap();
        assert_eq!(
            up.deflate,
            Some(crate::deflate::Agreement { server_no_context_takeover: false, server_max_window_bits: 15 })
        );
        assert!(check_upgrade_response(with.as_bytes(), &acc, false).is_err());
        let req = String::from_utf8(upgrade_request("h:1", "/", &key, Some(DEFLATE_OFFER))).unwrap();
        assert!(
            req.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"),
            "{req}"
        );
    }
}
