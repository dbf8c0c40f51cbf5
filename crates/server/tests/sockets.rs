//! The spec's socket-level behaviour through the real server, on both backends:
//! `disableNagleAlgorithm` and `useNativeKeepalive` on each accepted socket, and socket
//! errors reaching `on_error` (Node's `error` event) before `on_close`.

mod common;

use common::*;
use ringwire_conn::{CloseCode, ConnError, Keepalive, Message};
use ringwire_server::{Handler, Ws};
use ringwire_testkit::socket_options;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records the handler calls of every connection, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }

    /// Waits until `pred` holds for the log; fails after 10 s.
    fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let log = self.0.lock().unwrap().clone();
            if pred(&log) {
                return log;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no {what}: {log:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Handler for Log {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        self.push(format!("message {message:?}"));
        ws.send(message);
    }
    fn on_error(&mut self, _: &mut Ws<'_>, error: &ConnError) {
        self.push(format!("error {error:?}"));
    }
    fn on_close(&mut self, _: &mut Ws<'_>, code: CloseCode, _: &str) {
        self.push(format!("close {}", code.0));
    }
}

/// The server-side socket of `client`'s connection to `server`, once the server has it.
fn server_socket(server: std::net::SocketAddr, client: &Raw) -> ringwire_testkit::SocketOptions {
    let peer = client.stream.local_addr().unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(o) = socket_options(peer, Some(server)) {
            return o;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no server socket for {peer}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn disable_nagle_algorithm_is_set_on_every_accepted_socket() {
    for io in backends() {
        for nodelay in [true, false] {
            let mut cfg = config(io);
            cfg.connection.disable_nagle_algorithm = nodelay;
            let server = start(cfg, Echo);
            let mut client = Raw::connect(server.local_addr());
            client.send(0x1, b"hi");
            assert_eq!(client.recv(), (0x1, b"hi".to_vec()));
            let o = server_socket(server.local_addr(), &client);
            assert_eq!(o.nodelay, nodelay, "{io:?}: disable_nagle_algorithm = {nodelay}");
            assert!(!o.keepalive, "{io:?}: no SO_KEEPALIVE unless use_native_keepalive");
            server.shutdown().unwrap();
        }
    }
}

#[test]
fn use_native_keepalive_sets_so_keepalive_and_sends_no_pings() {
    for io in backends() {
        for native in [false, true] {
            let mut cfg = config(io);
            cfg.connection.keepalive = Some(Keepalive::new(Duration::from_secs(1), Duration::from_secs(5)));
            cfg.connection.use_native_keepalive = native;
            let server = start(cfg, Echo);
            let mut client = Raw::connect(server.local_addr());
            let o = server_socket(server.local_addr(), &client);
            assert_eq!(o.keepalive, native, "{io:?}: native = {native}");
            if native {
                assert_eq!(o.keepalive_idle, Duration::from_secs(1), "{io:?}: TCP_KEEPIDLE is the keepalive interval");
            }
            // Silent for 1.6 s: the ping keepalive pings after 1 s; the native one leaves
            // it to TCP, so nothing arrives and the connection is still open.
            client.stream.set_read_timeout(Some(Duration::from_millis(1600))).unwrap();
            match ringwire_testkit::read_frame(&mut client.stream) {
                Ok(f) => assert!(!native && f.opcode == 0x9, "{io:?}: native = {native}, got {f:?}"),
                Err(e) => assert!(native, "{io:?}: no keepalive ping ({e})"),
            }
            client.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            client.send(0x1, b"still open");
            let reply = loop {
                let (op, p) = client.recv();
                if op != 0x9 {
                    break (op, p);
                }
            };
            assert_eq!(reply, (0x1, b"still open".to_vec()), "{io:?}");
            server.shutdown().unwrap();
        }
    }
}

/// The handler's log after a client that sent one message goes away: with a reset
/// (`SO_LINGER` 0: the kernel sends RST and the server's read fails with ECONNRESET) or
/// with a plain FIN and no close frame.
fn log_after_peer_leaves(io: ringwire_server::IoChoice, reset: bool) -> Vec<String> {
    let log = Log::default();
    let server = start(config(io), log.clone());
    let mut client = Raw::connect(server.local_addr());
    client.send(0x1, b"open");
    assert_eq!(client.recv(), (0x1, b"open".to_vec()));
    if reset {
        socket2::SockRef::from(&client.stream).set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(client);
    let got = log.wait("close", |l| l.iter().any(|e| e.starts_with("close")));
    server.shutdown().unwrap();
    got[1..].to_vec()
}

#[test]
fn a_reset_by_the_peer_reaches_on_error_then_on_close_1006() {
    let reset = ConnError::Socket { kind: std::io::ErrorKind::ConnectionReset, os_code: Some(ECONNRESET) };
    for io in backends() {
        assert_eq!(log_after_peer_leaves(io, true), [format!("error {reset:?}"), "close 1006".into()], "{io:?}");
    }
}

#[test]
fn a_clean_close_by_the_peer_is_no_error() {
    for io in backends() {
        // FIN without a close frame: 1006, but no socket error.
        assert_eq!(log_after_peer_leaves(io, false), ["close 1006"], "{io:?}");
    }
}

/// `ECONNRESET` on Linux.
const ECONNRESET: i32 = 104;
