//! Raw WebSocket and HTTP/1.1 over std sockets, written without the library under test:
//! a test that speaks through these checks the library against RFC 6455, not against itself.

use ringwire_frame::OpCode;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// The masking key [`RawClient`] puts on its frames.
pub const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// The `Sec-WebSocket-Key` of [`upgrade_request`] (RFC 6455's example).
pub const UPGRADE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `Sec-WebSocket-Accept` a server must answer [`UPGRADE_KEY`] with.
pub const UPGRADE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// How long a raw socket waits for the server before the test fails.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An opcode given as the library's [`OpCode`] or as any wire value (reserved ones too).
pub trait IntoOpcode {
    /// The four-bit wire value.
    fn opcode(self) -> u8;
}

impl IntoOpcode for u8 {
    fn opcode(self) -> u8 {
        self
    }
}

impl IntoOpcode for OpCode {
    fn opcode(self) -> u8 {
        self.as_u8()
    }
}

/// One whole frame: header (with the mask key when `mask` is given), then the payload, masked
/// with it. `rsv` is the three RSV bits (0b100 is RSV1).
pub fn client_frame(fin: bool, rsv: u8, opcode: impl IntoOpcode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.push(if fin { 0x80 } else { 0 } | (rsv & 0b111) << 4 | opcode.opcode() & 0x0F);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(bit | n as u8),
        n if n < 65536 => {
            f.push(bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = f.len() + mask.map_or(0, |k| k.len());
    if let Some(k) = mask {
        f.extend_from_slice(&k);
    }
    f.extend_from_slice(payload);
    if let Some(k) = mask {
        f[start..].iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i % 4]);
    }
    f
}

/// One whole client frame, masked with [`KEY`].
pub fn masked_frame(opcode: impl IntoOpcode, payload: &[u8]) -> Vec<u8> {
    client_frame(true, 0, opcode, payload, Some(KEY))
}

/// An unmasked (server) frame.
pub fn server_frame(fin: bool, opcode: impl IntoOpcode, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, 0, opcode, payload, None)
}

/// The payload of a close frame: the code, then the reason.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A close frame from the server.
pub fn server_close(code: u16, reason: &str) -> Vec<u8> {
    server_frame(true, 0x8, &close_frame(code, reason))
}

/// A frame as seen on the wire, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    /// FIN.
    pub fin: bool,
    /// The three RSV bits.
    pub rsv: u8,
    /// The four-bit opcode.
    pub opcode: u8,
    /// The masking key, if the frame was masked.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

/// The length of the header `head` starts with (mask key included) and of the payload:
/// `None` while `head` is too short to say.
fn header_len(head: &[u8]) -> Option<(usize, usize)> {
    let (b1, ext) = (*head.get(1)?, head.get(2..)?);
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes(ext.get(..2)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(ext.get(..8)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    Some((at + if b1 & 0x80 != 0 { 4 } else { 0 }, len))
}

/// The first frame in `wire` and how many bytes it took; `None` if `wire` holds no whole frame.
pub fn parse_frame(wire: &[u8]) -> Option<(WireFrame, usize)> {
    let (at, len) = header_len(wire)?;
    let body = wire.get(at..at.checked_add(len)?)?;
    let mask = (wire[1] & 0x80 != 0).then(|| <[u8; 4]>::try_from(&wire[at - 4..at]).unwrap());
    let mut payload = body.to_vec();
    if let Some(k) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i % 4]);
    }
    let frame =
        WireFrame { fin: wire[0] & 0x80 != 0, rsv: (wire[0] >> 4) & 0b111, opcode: wire[0] & 0x0F, mask, payload };
    Some((frame, at + len))
}

/// The whole frames in `wire`, in order (a cut-off last frame is left out).
pub fn parse_frames(mut wire: &[u8]) -> Vec<WireFrame> {
    let mut out = Vec::new();
    while let Some((f, used)) = parse_frame(wire) {
        out.push(f);
        wire = &wire[used..];
    }
    out
}

/// Reads exactly one frame from `r`.
pub fn read_frame(r: &mut impl Read) -> io::Result<WireFrame> {
    let mut buf = vec![0u8; 2];
    r.read_exact(&mut buf)?;
    let mut need = 2;
    loop {
        match header_len(&buf) {
            Some((at, len)) => {
                buf.resize(at + len, 0);
                r.read_exact(&mut buf[need..])?;
                return Ok(parse_frame(&buf).expect("a whole frame").0);
            }
            None => {
                // The extended length: 2 or 8 more bytes.
                let more = if buf[1] & 0x7F == 126 { 2 } else { 8 };
                buf.resize(2 + more, 0);
                r.read_exact(&mut buf[need..])?;
                need = buf.len();
            }
        }
    }
}

/// Reads from `stream` until it closes (EOF, reset or timeout), appending to `buf`.
pub fn read_to_close(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 65536];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A loopback address nothing listens on (bound, then released).
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An upgrade request for `/` at `addr` with [`UPGRADE_KEY`]; `extra` is more header lines,
/// each ending in `\r\n`.
pub fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    upgrade_request_to(addr, "/", extra)
}

/// [`upgrade_request`] for `path` (the request target).
pub fn upgrade_request_to(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP head (up to and including the blank line), a byte at a time so that
/// nothing after it is consumed.
pub fn read_http_head(stream: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b) {
            Ok(0) => break,
            Ok(_) => buf.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading an HTTP head: {e} after {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    String::from_utf8(buf).unwrap()
}

/// Sends a raw HTTP request on a new connection and returns the response head.
pub fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_http_head(&mut stream)
}

/// A client that speaks raw WebSocket over a std `TcpStream` (or any stream, e.g. TLS
/// over one: [`RawClient::over`]) after a real upgrade.
pub struct RawClient<S = TcpStream> {
    /// The upgraded connection.
    pub stream: S,
}

impl RawClient {
    /// Connects and upgrades.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::upgrade(TcpStream::connect(addr).unwrap(), addr)
    }

    /// Connects with `SO_RCVBUF` set to `bytes` before the handshake (so the window the
    /// server sees is small from the start), and upgrades.
    pub fn connect_with_rcvbuf(addr: SocketAddr, bytes: usize) -> Self {
        let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(bytes).unwrap();
        sock.connect(&addr.into()).unwrap();
        Self::upgrade(sock.into(), addr)
    }

    /// Connects and upgrades with `path` as the request target.
    pub fn connect_to(addr: SocketAddr, path: &str) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Self::upgrade_over(&mut stream, &upgrade_request_to(addr, path, ""));
        Self { stream }
    }

    /// Upgrades `stream`, connected to `addr`: the answer must be 101 with the right accept key.
    pub fn upgrade(stream: TcpStream, addr: SocketAddr) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        RawClient::over(stream, addr)
    }
}

impl<S: Read + Write> RawClient<S> {
    /// Upgrades over `stream` (its read timeout set by the caller), for a server at `addr`:
    /// the answer must be 101 with the right accept key.
    pub fn over(mut stream: S, addr: SocketAddr) -> Self {
        Self::upgrade_over(&mut stream, &upgrade_request(addr, ""));
        Self { stream }
    }

    /// Sends `request` and checks the answer is 101 with the right accept key.
    fn upgrade_over(stream: &mut S, request: &str) {
        stream.write_all(request.as_bytes()).unwrap();
        let resp = read_http_head(stream);
        assert!(resp.starts_with("HTTP/1.1 101"), "upgrade refused: {resp}");
        assert!(resp.contains(UPGRADE_ACCEPT), "{resp}");
    }

    /// Sends one frame, masked with [`KEY`] unless `masked` is false.
    pub fn frame(&mut self, fin: bool, rsv: u8, opcode: impl IntoOpcode, payload: &[u8], masked: bool) {
        self.send_raw(&client_frame(fin, rsv, opcode, payload, masked.then_some(KEY)));
    }

    /// Sends one whole masked frame.
    pub fn send(&mut self, opcode: impl IntoOpcode, payload: &[u8]) {
        self.send_raw(&masked_frame(opcode, payload));
    }

    /// Writes `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one server frame, which must be unmasked: (fin, opcode, payload).
    pub fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let f = read_frame(&mut self.stream).expect("a frame from the server");
        assert_eq!(f.mask, None, "server frames are unmasked");
        (f.fin, f.opcode, f.payload)
    }

    /// Reads one server frame: (opcode, payload).
    pub fn recv(&mut self) -> (u8, Vec<u8>) {
        let (_, opcode, payload) = self.read_frame();
        (opcode, payload)
    }

    /// Reads frames until a close frame; returns its code and reason.
    pub fn read_close(&mut self) -> (u16, String) {
        loop {
            let (_, op, p) = self.read_frame();
            if op == 0x8 {
                assert!(p.len() >= 2, "close frame without a code");
                return (u16::from_be_bytes([p[0], p[1]]), String::from_utf8(p[2..].to_vec()).unwrap());
            }
        }
    }

    /// True once the server has closed the TCP connection (read returns 0 or a reset).
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 64];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_at_every_length_form() {
        for len in [0, 1, 125, 126, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for mask in [None, Some(KEY)] {
                let wire = client_frame(false, 0b100, OpCode::Binary, &payload, mask);
                let want = WireFrame { fin: false, rsv: 0b100, opcode: 2, mask, payload: payload.clone() };
                assert_eq!(parse_frame(&wire), Some((want.clone(), wire.len())), "len {len}, mask {mask:?}");
                assert_eq!(read_frame(&mut wire.as_slice()).unwrap(), want);
                assert_eq!(parse_frame(&wire[..wire.len() - 1]), None, "a cut-off frame is not whole");
            }
        }
    }

    #[test]
    fn masked_bytes_are_those_of_rfc_6455() {
        // RFC 6455 5.7: a masked "Hello" with key 37 fa 21 3d.
        let wire = client_frame(true, 0, 0x1u8, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(wire, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(server_frame(true, 0x1u8, b"Hello"), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let two = [server_close(1000, "bye"), server_frame(true, 0x9u8, b"")].concat();
        let frames = parse_frames(&two);
        assert_eq!(
            frames.iter().map(|f| (f.opcode, f.payload.clone())).collect::<Vec<_>>(),
            [(0x8, b"\x03\xe8bye".to_vec()), (0x9, vec![])]
        );
    }
}
