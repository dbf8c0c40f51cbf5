//! Shared test support: a recording handler, a runner with a watchdog, a tokio-tungstenite
//! echo server, and a scripted raw TCP server for malformed answers.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ringwire_client::{
    ClientHandler, ClientId, ClientLoop, ClientWs, ConnectError, ConnectOptions, Ctl, IoChoice, SendOutcome,
};
use ringwire_conn::handshake::{Accept, HandshakeLimits, parse_request};
use ringwire_conn::{CloseCode, ConnError, Message, SendToken};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The backends (io_uring skipped where it is blocked) and the raw frame codec.
#[allow(unused_imports)] // each test binary uses some
pub use ringwire_testkit::{WireFrame, backends, dead_port, parse_frames, read_to_close, server_close, server_frame};

/// What a connection went through, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Open(Option<String>),
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    SendComplete(SendToken, SendOutcome),
    Pause,
    Resume,
    Error(String),
    Close(u16, String),
}

type OpenFn = Box<dyn FnMut(&mut ClientWs<'_>)>;
type MessageFn = Box<dyn FnMut(&mut ClientWs<'_>, &Message, usize)>;

/// Records every event per connection and runs the scripted reactions.
#[derive(Default)]
pub struct Recorder {
    pub events: Vec<(ClientId, Ev)>,
    pub failures: Vec<(ClientId, ConnectError)>,
    pub errors: Vec<ConnError>,
    pub on_open: Option<OpenFn>,
    /// Called with the message and how many messages this loop received so far (1-based).
    pub on_message: Option<MessageFn>,
    pub answer_pings: bool,
    received: usize,
}

impl Recorder {
    pub fn new() -> Self {
        Self { answer_pings: true, ..Self::default() }
    }

    pub fn on_open(mut self, f: impl FnMut(&mut ClientWs<'_>) + 'static) -> Self {
        self.on_open = Some(Box::new(f));
        self
    }

    pub fn on_message(mut self, f: impl FnMut(&mut ClientWs<'_>, &Message, usize) + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Events of the connection `id`.
    pub fn of(&self, id: ClientId) -> Vec<Ev> {
        self.events.iter().filter(|(i, _)| *i == id).map(|(_, e)| e.clone()).collect()
    }

    pub fn messages(&self, id: ClientId) -> Vec<Message> {
        self.of(id)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    pub fn close_of(&self, id: ClientId) -> (u16, String) {
        self.of(id)
            .into_iter()
            .find_map(|e| match e {
                Ev::Close(c, r) => Some((c, r)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no close for {id}: {:?}", self.of(id)))
    }

    pub fn failure(&mut self, id: ClientId) -> ConnectError {
        let i = self.failures.iter().position(|(f, _)| *f == id).unwrap_or_else(|| {
            panic!("no failure for {id}; events {:?}", self.of(id));
        });
        self.failures.remove(i).1
    }
}

impl ClientHandler for Recorder {
    fn on_open(&mut self, ws: &mut ClientWs<'_>) {
        self.events.push((ws.id(), Ev::Open(ws.protocol().map(str::to_owned))));
        if let Some(f) = &mut self.on_open {
            f(ws);
        }
    }
    fn on_connect_failed(&mut self, _ctl: &mut Ctl<'_>, id: ClientId, error: ConnectError) {
        self.failures.push((id, error));
    }
    fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {
        self.received += 1;
        self.events.push((ws.id(), Ev::Message(message.clone())));
        let n = self.received;
        if let Some(f) = &mut self.on_message {
            f(ws, &message, n);
        }
    }
    fn on_ping(&mut self, ws: &mut ClientWs<'_>, payload: &Bytes) -> bool {
        self.events.push((ws.id(), Ev::Ping(payload.clone())));
        self.answer_pings
    }
    fn on_pong(&mut self, ws: &mut ClientWs<'_>, payload: &Bytes) {
        self.events.push((ws.id(), Ev::Pong(payload.clone())));
    }
    fn on_pause(&mut self, ws: &mut ClientWs<'_>) {
        self.events.push((ws.id(), Ev::Pause));
    }
    fn on_resume(&mut self, ws: &mut ClientWs<'_>) {
        self.events.push((ws.id(), Ev::Resume));
    }
    fn on_send_complete(&mut self, ws: &mut ClientWs<'_>, token: SendToken, outcome: SendOutcome) {
        self.events.push((ws.id(), Ev::SendComplete(token, outcome)));
    }
    fn on_error(&mut self, ws: &mut ClientWs<'_>, error: &ConnError) {
        self.errors.push(error.clone());
        self.events.push((ws.id(), Ev::Error(error.to_string())));
    }
    fn on_close(&mut self, ws: &mut ClientWs<'_>, code: CloseCode, description: &str) {
        self.events.push((ws.id(), Ev::Close(code.as_u16(), description.to_owned())));
    }
}

/// Runs `client` until it is idle; a watchdog stops it (and fails the test) after 20 s.
pub fn run<H: ClientHandler>(client: &mut ClientLoop, handler: &mut H) {
    let handle = client.handle();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            handle.stop();
            return true;
        }
        false
    });
    client.run(handler).expect("loop failed");
    let _ = done_tx.send(());
    assert!(!watchdog.join().unwrap(), "watchdog: the client loop did not finish within 20 s");
}

/// One connection on a fresh loop of backend `io`, run to the end.
pub fn run_one(io: IoChoice, url: &str, opts: ConnectOptions, mut rec: Recorder) -> (ClientId, Recorder) {
    let mut client = ClientLoop::new(io).expect("loop");
    let id = client.connect(url, opts).expect("connect");
    run(&mut client, &mut rec);
    (id, rec)
}

/// Options with 64 MiB limits, for large echoes.
pub fn big_opts() -> ConnectOptions {
    let mut o = ConnectOptions::default();
    o.config.max_received_frame_size = 64 << 20;
    o.config.max_received_message_size = 64 << 20;
    o
}

// ---- tokio-tungstenite echo server --------------------------------------------------------

/// A tokio-tungstenite server on a background thread. Text commands change its behaviour:
/// `close:CODE:REASON` closes with that code, `ping:P` sends a ping with P (the pong it gets
/// is reported back as the text `pong:P`), `drop` drops TCP with no close frame, `big:N`
/// answers a binary message of N bytes in one frame. Everything else is echoed.
pub fn tungstenite_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(serve_tungstenite(stream));
            }
        });
    });
    addr
}

async fn serve_tungstenite(stream: tokio::net::TcpStream) {
    let cfg = WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await else { return };
    while let Some(Ok(m)) = ws.next().await {
        match m {
            TMessage::Text(t) => {
                let t = t.as_str().to_owned();
                if let Some(rest) = t.strip_prefix("close:") {
                    let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
                    let frame =
                        CloseFrame { code: code.parse::<u16>().unwrap().into(), reason: reason.to_owned().into() };
                    let _ = ws.close(Some(frame)).await;
                } else if let Some(p) = t.strip_prefix("ping:") {
                    let _ = ws.send(TMessage::Ping(Bytes::copy_from_slice(p.as_bytes()))).await;
                } else if t == "drop" {
                    return;
                } else if let Some(n) = t.strip_prefix("big:") {
                    let _ = ws.send(TMessage::Binary(vec![7u8; n.parse().unwrap()].into())).await;
                } else {
                    let _ = ws.send(TMessage::text(t)).await;
                }
            }
            TMessage::Binary(b) => {
                let _ = ws.send(TMessage::Binary(b)).await;
            }
            TMessage::Pong(p) => {
                let _ = ws.send(TMessage::text(format!("pong:{}", String::from_utf8_lossy(&p)))).await;
            }
            TMessage::Close(_) => {}
            _ => {}
        }
    }
}

// ---- scripted raw server ------------------------------------------------------------------

/// A raw server that accepts connections one by one on a thread and hands each to `script`.
pub fn raw_server(script: impl Fn(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            script(stream);
        }
    });
    addr
}

/// Reads the upgrade request; returns it and any bytes after it.
pub fn read_request(stream: &mut TcpStream) -> (ringwire_conn::handshake::Request, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read request");
        assert!(n > 0, "client closed before sending the request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((req, used)) = parse_request(&buf, &HandshakeLimits::default()).expect("valid request") {
            return (req, buf.split_off(used));
        }
    }
}

/// Completes the upgrade (choosing `protocol`) and returns the stream and leftover bytes.
pub fn upgrade(stream: &mut TcpStream, protocol: Option<&str>) -> Vec<u8> {
    let (req, rest) = read_request(stream);
    let accept = Accept { protocol: protocol.map(str::to_owned), ..Accept::default() };
    stream.write_all(&req.accept(&accept).expect("accept")).unwrap();
    rest
}
