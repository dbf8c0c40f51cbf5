//! Shared test support: start a server on an ephemeral port for a backend, connect
//! clients (tokio-tungstenite, or raw TCP for malformed input).
#![allow(dead_code, unreachable_pub)]

use futures_util::{SinkExt, StreamExt};
use ringwire_conn::Message;
use ringwire_frame::{FrameHeader, OpCode, apply_mask};
use ringwire_server::{Handler, IoChoice, RunningServer, Server, ServerConfig, ServerHandle, Ws};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Both backends; each behaviour is tested on each.
pub const BACKENDS: [IoChoice; 2] = [IoChoice::Uring, IoChoice::Epoll];

pub fn config(io: IoChoice) -> ServerConfig {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
    cfg.connection.max_received_frame_size = 16 << 20;
    cfg.connection.max_received_message_size = 16 << 20;
    // Test clients that are still open at shutdown never answer the 1001 close frame;
    // a short close timeout keeps each test from waiting out the default 5 s.
    cfg.connection.close_timeout = Duration::from_millis(500);
    cfg
}

pub fn start<H: Handler + Clone>(cfg: ServerConfig, handler: H) -> RunningServer {
    Server::bind(cfg).expect("bind").spawn(handler)
}

#[derive(Clone)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        let _ = ws.send(message, None);
    }
}

/// Waits until the server counts `n` open connections; fails after 10 s.
pub fn wait_for_connections(handle: &ServerHandle, n: usize) {
    let t0 = Instant::now();
    while handle.connections() != n {
        assert!(t0.elapsed() < Duration::from_secs(10), "connections stuck at {}, not {n}", handle.connections());
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(addr: SocketAddr) -> Client {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.expect("connect");
    assert_eq!(resp.status(), 101);
    ws
}

/// Next data/close message from the server, failing after 10 s.
pub async fn next(ws: &mut Client) -> TMessage {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("timed out waiting for the server")
        .expect("stream ended")
        .expect("websocket error")
}

pub async fn send(ws: &mut Client, m: TMessage) {
    ws.send(m).await.expect("send");
}

/// A raw TCP connection that has completed the upgrade, for sending malformed frames.
pub struct Raw {
    pub stream: TcpStream,
}

pub const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

impl Raw {
    pub fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let resp = read_http_head(&mut stream);
        assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
        assert!(resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{resp}");
        Self { stream }
    }

    /// Sends one frame, masked with [`KEY`] unless `masked` is false.
    pub fn frame(&mut self, fin: bool, rsv: u8, op: OpCode, payload: &[u8], masked: bool) {
        let h = FrameHeader { fin, rsv, opcode: op, mask: masked.then_some(KEY), payload_len: payload.len() as u64 };
        let mut bytes = h.encode().as_bytes().to_vec();
        let mut p = payload.to_vec();
        if masked {
            apply_mask(&mut p, KEY, 0);
        }
        bytes.extend_from_slice(&p);
        self.stream.write_all(&bytes).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one unmasked server frame: (fin, opcode byte, payload).
    pub fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        self.stream.read_exact(&mut p).unwrap();
        (h[0] & 0x80 != 0, h[0] & 0x0F, p)
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

    /// True once the server has closed the TCP connection (read returns 0).
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 64];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Reads an HTTP response head (up to and including the blank line).
pub fn read_http_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b) {
            Ok(0) => break,
            Ok(_) => buf.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading response: {e} after {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    String::from_utf8(buf).unwrap()
}

/// Sends a raw HTTP request and returns the response head (status line and headers).
pub fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_http_head(&mut stream)
}
