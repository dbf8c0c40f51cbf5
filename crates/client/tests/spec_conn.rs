//! WebSocket-Node's connection behaviours seen from the ringwire client against the
//! ringwire server: without assembly the client's `on_frame` sees control frames too,
//! then handles them (the automatic pong, `on_ping`, the close handshake), and a
//! `close(CloseCode::default(), None)` carries the code's description both ways; `on_ping`
//! returning false cancels the pong even after the handler pinged, and with
//! `low_water_mark` 0 `on_drain` comes when nothing is left buffered.

mod common;

use bytes::Bytes;
use common::*;
use ringwire_client::{ClientHandler, ClientLoop, ClientWs, ConnectOptions};
use ringwire_conn::{CloseCode, Frame};
use ringwire_server::{Handler, Server, ServerConfig, Ws};
use std::sync::{Arc, Mutex};

/// The server pings on open and closes with the defaults when the pong comes back.
#[derive(Clone, Default)]
struct PingThenClose {
    closes: Arc<Mutex<Vec<String>>>,
}

impl Handler for PingThenClose {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        ws.ping(b"srv").unwrap();
    }
    fn on_pong(&mut self, ws: &mut Ws<'_>, _payload: &Bytes) {
        ws.close(CloseCode::default(), None).unwrap();
    }
    fn on_close(&mut self, _ws: &mut Ws<'_>, code: CloseCode, description: &str) {
        self.closes.lock().unwrap().push(format!("{} {description}", code.0));
    }
}

/// Logs the client's frames, pings and close.
#[derive(Default)]
struct FrameLog(Vec<String>);

impl ClientHandler for FrameLog {
    fn on_frame(&mut self, _ws: &mut ClientWs<'_>, f: Frame) {
        self.0.push(format!("frame {:?} {} {:?}", f.opcode, f.fin, String::from_utf8_lossy(&f.payload)));
    }
    fn on_ping(&mut self, _ws: &mut ClientWs<'_>, payload: &Bytes) -> bool {
        self.0.push(format!("ping {:?}", String::from_utf8_lossy(payload)));
        true
    }
    fn on_close(&mut self, _ws: &mut ClientWs<'_>, code: CloseCode, description: &str) {
        self.0.push(format!("close {} {description}", code.0));
    }
}

#[test]
fn client_on_frame_sees_ping_and_close_and_the_default_close_description_arrives() {
    for io in backends() {
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
        let server_handler = PingThenClose::default();
        let srv = Server::bind(cfg).expect("bind").spawn(server_handler.clone());
        let mut opts = ConnectOptions::default();
        opts.config.assemble_fragments = false;
        let mut client = ClientLoop::new(io).expect("loop");
        client.connect(&format!("ws://{}/", srv.local_addr()), opts).expect("connect");
        let mut log = FrameLog::default();
        run(&mut client, &mut log);
        assert_eq!(
            log.0,
            [
                "frame Ping true \"srv\"",
                "ping \"srv\"",
                "frame Close true \"\\u{3}\u{fffd}Normal connection closure\"",
                "close 1000 Normal connection closure",
            ],
            "{io:?}"
        );
        srv.shutdown().unwrap();
        assert_eq!(*server_handler.closes.lock().unwrap(), ["1000 Normal connection closure"], "{io:?}");
    }
}

/// The server pings on open and logs what comes back.
#[derive(Clone, Default)]
struct PingAndLog(Arc<Mutex<Vec<String>>>);

impl Handler for PingAndLog {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        ws.ping(b"srv").unwrap();
    }
    fn on_ping(&mut self, _ws: &mut Ws<'_>, payload: &Bytes) -> bool {
        self.0.lock().unwrap().push(format!("ping {}", String::from_utf8_lossy(payload)));
        true
    }
    fn on_pong(&mut self, _ws: &mut Ws<'_>, payload: &Bytes) {
        self.0.lock().unwrap().push(format!("pong {}", String::from_utf8_lossy(payload)));
    }
    fn on_close(&mut self, _ws: &mut Ws<'_>, code: CloseCode, _: &str) {
        self.0.lock().unwrap().push(format!("close {}", code.0));
    }
}

/// Pings back inside `on_ping` and cancels the automatic pong; closes once its own
/// ping is answered.
struct PingBackAndCancel;

impl ClientHandler for PingBackAndCancel {
    fn on_ping(&mut self, ws: &mut ClientWs<'_>, _payload: &Bytes) -> bool {
        ws.ping(b"cli").unwrap();
        false
    }
    fn on_pong(&mut self, ws: &mut ClientWs<'_>, _payload: &Bytes) {
        ws.close(CloseCode::NORMAL, None).unwrap();
    }
}

#[test]
fn the_clients_on_ping_returning_false_cancels_the_pong_after_its_own_ping() {
    for io in backends() {
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
        let server_handler = PingAndLog::default();
        let srv = Server::bind(cfg).expect("bind").spawn(server_handler.clone());
        let mut client = ClientLoop::new(io).expect("loop");
        client.connect(&format!("ws://{}/", srv.local_addr()), ConnectOptions::default()).expect("connect");
        run(&mut client, &mut PingBackAndCancel);
        srv.shutdown().unwrap();
        assert_eq!(*server_handler.0.lock().unwrap(), ["ping cli", "close 1000"], "{io:?}: no pong for srv");
    }
}

/// Sends 64 KiB messages until the buffer is full, then records `buffered_amount` at
/// `on_drain` and ends the connection.
#[derive(Default)]
struct FloodUntilFull(Vec<usize>);

impl ClientHandler for FloodUntilFull {
    fn on_open(&mut self, ws: &mut ClientWs<'_>) {
        while ws.send_binary(vec![7u8; 64 << 10]) == ringwire_client::Sent::Queued {}
    }
    fn on_drain(&mut self, ws: &mut ClientWs<'_>) {
        self.0.push(ws.buffered_amount());
        // The test server never answers a close: drop (nothing is left to discard).
        ws.drop_connection(CloseCode::NORMAL, None, false);
    }
}

#[test]
fn the_clients_drain_with_low_water_mark_zero_comes_when_the_output_is_empty() {
    const LOW: usize = 0;
    // A server that reads slowly through a small receive window, until our close.
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_recv_buffer_size(4 << 10).unwrap();
    listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    listener.listen(8).unwrap();
    let listener: std::net::TcpListener = listener.into();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            upgrade(&mut s, None);
            std::thread::sleep(std::time::Duration::from_millis(100)); // the client's queue backs up
            let mut buf = [0u8; 1024];
            loop {
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => std::thread::sleep(std::time::Duration::from_micros(100)),
                }
            }
        }
    });
    for io in backends() {
        let mut opts = ConnectOptions::default();
        opts.config.high_water_mark = 1 << 20;
        opts.config.low_water_mark = LOW;
        let mut client = ClientLoop::new(io).expect("loop");
        client.connect(&format!("ws://{addr}/"), opts).expect("connect");
        let mut h = FloodUntilFull::default();
        run(&mut client, &mut h);
        assert_eq!(h.0, [0], "{io:?}: one Drain, with nothing left buffered");
    }
}
