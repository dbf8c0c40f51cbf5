//! Shared test support: start a server on an ephemeral port for a backend, connect
//! clients (tokio-tungstenite, or ringwire-testkit's raw client for malformed input).
#![allow(dead_code, unreachable_pub)]

use futures_util::{SinkExt, StreamExt};
use ringwire_conn::Message;
use ringwire_server::{Handler, IoChoice, RunningServer, Server, ServerConfig, ServerHandle, Ws};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as TMessage;

/// The raw client, the HTTP reader and the backends (io_uring skipped where it is blocked).
#[allow(unused_imports)] // each test binary uses some
pub use ringwire_testkit::{KEY, RawClient as Raw, backends, http, read_http_head, upgrade_request};

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
        ws.send(message);
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
