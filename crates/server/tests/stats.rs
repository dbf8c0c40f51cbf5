//! `ServerHandle::stats`: the counters read exactly what happened, on both backends.

mod common;
use common::*;
use ringwire_conn::Message;
use ringwire_frame::{CloseCode, OpCode};
use ringwire_server::{Decision, Handler, ServerHandle, Stats, Ws};
use std::time::{Duration, Instant};

/// Waits until `ok` holds of the server's stats (they are published at the end of each
/// loop turn, and a close is counted when the socket is gone); fails after 10 s with
/// the last snapshot.
fn wait_stats(handle: &ServerHandle, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
    let t0 = Instant::now();
    loop {
        let s = handle.stats();
        if ok(&s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}: {s:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Echoes; "close-me" closes with 4000; "sub NAME" subscribes, "unsub NAME" leaves;
/// a request for /missing is refused with 404.
#[derive(Clone)]
struct App;

impl Handler for App {
    fn on_request(&mut self, req: &ringwire_conn::handshake::Request, _: &[String]) -> Decision {
        if req.path == "/missing" { Decision::reject(404, "no such room") } else { Decision::accept(None) }
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        if let Message::Text(t) = &message {
            if &**t == "close-me" {
                ws.close(CloseCode(4000), "asked").unwrap();
                return;
            }
            if let Some(topic) = t.strip_prefix("sub ") {
                ws.subscribe(topic).unwrap();
                return;
            }
            if let Some(topic) = t.strip_prefix("unsub ") {
                ws.unsubscribe(topic);
                return;
            }
        }
        ws.send(message);
    }
}

#[test]
fn echoed_messages_and_bytes_are_counted_exactly_both_ways() {
    for io in backends() {
        let server = start(config(io), App);
        let handle = server.handle();
        let mut raw = Raw::connect(server.local_addr());
        let (mut text_bytes, mut binary_bytes) = (0, 0);
        for i in 0..7 {
            let payload = "t".repeat(i * 10);
            raw.send(OpCode::Text, payload.as_bytes());
            assert_eq!(raw.recv(), (0x1, payload.clone().into_bytes()));
            text_bytes += payload.len() as u64;
        }
        for i in 0..5 {
            let payload = vec![i as u8; 1 + i * 300];
            raw.send(OpCode::Binary, &payload);
            assert_eq!(raw.recv(), (0x2, payload.clone()));
            binary_bytes += payload.len() as u64;
        }
        // A ping is answered but is no message.
        raw.send(OpCode::Ping, b"p");
        assert_eq!(raw.recv(), (0xA, b"p".to_vec()));
        let s = wait_stats(&handle, "12 messages sent", |s| s.traffic.messages_sent.total() == 12);
        let t = &s.traffic;
        assert_eq!((t.messages_received.text, t.messages_received.binary), (7, 5), "{io:?}: {s:#?}");
        assert_eq!((t.messages_sent.text, t.messages_sent.binary), (7, 5), "{io:?}: {s:#?}");
        assert_eq!((t.bytes_received.text, t.bytes_received.binary), (text_bytes, binary_bytes), "{io:?}");
        assert_eq!((t.bytes_sent.text, t.bytes_sent.binary), (text_bytes, binary_bytes), "{io:?}");
        assert_eq!((s.connections_accepted, s.connections_open), (1, 1), "{io:?}: {s:#?}");
        assert_eq!(t.close_frames_sent.total() + t.close_frames_received.total(), 0, "{io:?}");

        // The client closes with 1000: one frame each way, and the gauge goes back to 0.
        raw.send(OpCode::Close, &1000u16.to_be_bytes());
        assert_eq!(raw.read_close().0, 1000);
        let s = wait_stats(&handle, "closed", |s| s.connections_open == 0);
        let t = &s.traffic;
        assert_eq!((t.close_frames_received.get(1000), t.close_frames_received.total()), (1, 1), "{io:?}: {s:#?}");
        assert_eq!((t.close_frames_sent.get(1000), t.close_frames_sent.total()), (1, 1), "{io:?}: {s:#?}");
        assert_eq!(s.upgrades_rejected.total(), 0, "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_server_close_and_its_answer_are_counted_by_code() {
    for io in backends() {
        let server = start(config(io), App);
        let handle = server.handle();
        let mut raw = Raw::connect(server.local_addr());
        raw.send(OpCode::Text, b"close-me");
        assert_eq!(raw.read_close().0, 4000);
        raw.send(OpCode::Close, &4001u16.to_be_bytes());
        let s = wait_stats(&handle, "closed", |s| s.connections_open == 0 && s.connections_accepted == 1);
        let t = &s.traffic;
        assert_eq!((t.close_frames_sent.other, t.close_frames_sent.total()), (1, 1), "{io:?}: {s:#?}");
        assert_eq!((t.close_frames_received.other, t.close_frames_received.total()), (1, 1), "{io:?}: {s:#?}");

        // Shutdown closes with 1001 (a client that answers without a code: 1005).
        let mut raw = Raw::connect(server.local_addr());
        wait_stats(&handle, "second open", |s| s.connections_open == 1);
        handle.shutdown();
        assert_eq!(raw.read_close().0, 1001);
        raw.send(OpCode::Close, b"");
        let s = wait_stats(&handle, "shut down", |s| s.connections_open == 0);
        assert_eq!(s.traffic.close_frames_sent.get(1001), 1, "{io:?}: {s:#?}");
        assert_eq!(s.traffic.close_frames_received.get(1005), 1, "{io:?}: {s:#?}");
        server.join().unwrap();
    }
}

#[test]
fn an_unmasked_frame_counts_as_a_1002_protocol_error() {
    for io in backends() {
        let server = start(config(io), App);
        let handle = server.handle();
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Text, b"bare", false);
        assert_eq!(raw.read_close().0, 1002);
        let s = wait_stats(&handle, "closed", |s| s.connections_open == 0 && s.connections_accepted == 1);
        let t = &s.traffic;
        assert_eq!((t.protocol_errors.protocol_error, t.protocol_errors.total()), (1, 1), "{io:?}: {s:#?}");
        assert_eq!(t.close_frames_sent.get(1002), 1, "{io:?}: {s:#?}");
        assert_eq!(t.messages_received.total(), 0, "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn refused_upgrades_are_counted_by_status() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.max_connections = 2;
        cfg.handshake_timeout = Duration::from_millis(300);
        let server = start(cfg, App);
        let handle = server.handle();
        let addr = server.local_addr();
        let status = |r: String| r.split(' ').nth(1).unwrap_or("").to_string();

        let r = http(addr, &upgrade_request(addr, "Origin: https://evil.example\r\n"));
        assert_eq!(status(r), "403");
        let r = http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(r), "400");
        let r = http(addr, &ringwire_testkit::upgrade_request_to(addr, "/missing", ""));
        assert_eq!(status(r), "404");
        let r = http(addr, "GET / HTTP/1.1\r\n"); // never finished: 408 after 300 ms
        assert_eq!(status(r), "408");
        let held = Raw::connect(addr);
        let _silent = std::net::TcpStream::connect(addr).unwrap(); // the second slot, handshaking
        wait_stats(&handle, "both admitted", |s| s.connections_accepted == 6);
        let r = http(addr, &upgrade_request(addr, ""));
        assert_eq!(status(r), "503");

        let s = wait_stats(&handle, "5 refusals", |s| s.upgrades_rejected.total() == 5);
        let u = &s.upgrades_rejected;
        assert_eq!((u.forbidden, u.bad_request, u.other, u.timeout, u.unavailable), (1, 1, 1, 1, 1), "{io:?}: {s:#?}");
        assert_eq!((u.get(404), u.get(503)), (1, 1));
        assert_eq!((s.connections_accepted, s.connections_open), (7, 1), "{io:?}: {s:#?}");
        drop(held);
        server.shutdown().unwrap();
    }
}

#[test]
fn topics_and_subscriptions_are_gauges() {
    for io in backends() {
        let server = start(config(io), App);
        let handle = server.handle();
        let mut a = Raw::connect(server.local_addr());
        let mut b = Raw::connect(server.local_addr());
        for m in ["sub red", "sub blue"] {
            a.send(OpCode::Text, m.as_bytes());
        }
        b.send(OpCode::Text, b"sub red");
        let s = wait_stats(&handle, "3 subscriptions", |s| s.subscriptions == 3);
        assert_eq!(s.topics, 2, "{io:?}: {s:#?}");

        // A broadcast and a publish are counted once per connection they are queued on.
        handle.broadcast("all").unwrap();
        handle.publish("red", bytes::Bytes::from_static(b"reds")).unwrap();
        for c in [&mut a, &mut b] {
            assert_eq!(c.recv(), (0x1, b"all".to_vec()));
            assert_eq!(c.recv(), (0x2, b"reds".to_vec()));
        }
        let s = wait_stats(&handle, "4 sent", |s| s.traffic.messages_sent.total() == 4);
        let t = &s.traffic;
        assert_eq!((t.messages_sent.text, t.bytes_sent.text), (2, 6), "{io:?}: {s:#?}");
        assert_eq!((t.messages_sent.binary, t.bytes_sent.binary), (2, 8), "{io:?}: {s:#?}");

        a.send(OpCode::Text, b"unsub blue");
        let s = wait_stats(&handle, "blue gone", |s| s.subscriptions == 2);
        assert_eq!(s.topics, 1, "{io:?}: {s:#?}");
        drop(a);
        let s = wait_stats(&handle, "a gone", |s| s.subscriptions == 1 && s.connections_open == 1);
        assert_eq!(s.topics, 1, "{io:?}: {s:#?}");
        drop(b);
        let s = wait_stats(&handle, "b gone", |s| s.connections_open == 0);
        assert_eq!((s.topics, s.subscriptions), (0, 0), "{io:?}: {s:#?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_remote_send_is_counted() {
    #[derive(Clone)]
    struct Keep(std::sync::mpsc::Sender<ringwire_server::Remote>);
    impl Handler for Keep {
        fn on_open(&mut self, ws: &mut Ws<'_>) {
            let _ = self.0.send(ws.remote());
        }
    }
    for io in backends() {
        let (tx, rx) = std::sync::mpsc::channel();
        let server = start(config(io), Keep(tx));
        let handle = server.handle();
        let mut raw = Raw::connect(server.local_addr());
        let remote = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        remote.send(bytes::Bytes::from_static(b"12345")).unwrap();
        assert_eq!(raw.recv(), (0x2, b"12345".to_vec()));
        let s = wait_stats(&handle, "sent", |s| s.traffic.messages_sent.total() == 1);
        assert_eq!((s.traffic.messages_sent.binary, s.traffic.bytes_sent.binary), (1, 5), "{io:?}: {s:#?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn tls_handshakes_and_their_failures_are_counted() {
    use ringwire_testkit::tls::{Pki, tls_connect};
    use ringwire_tls::{CertKeyPem, ServerTlsConfig};
    use std::io::Write;
    let p = Pki::localhost();
    for io in backends() {
        let tls = ServerTlsConfig::new(CertKeyPem::memory(p.leaf_pem.clone(), p.key_pem.clone()));
        let server = start(config(io).with_tls(tls), App);
        let handle = server.handle();
        let addr = server.local_addr();
        for _ in 0..2 {
            let mut c = Raw::over(tls_connect(addr, "localhost", p.client_config()).unwrap(), addr);
            c.send(OpCode::Text, b"hi");
            assert_eq!(c.recv(), (0x1, b"hi".to_vec()));
        }
        // Not TLS at all, and a client gone before its handshake ended: two failures.
        let mut garbage = std::net::TcpStream::connect(addr).unwrap();
        garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        drop(std::net::TcpStream::connect(addr).unwrap());
        let s = wait_stats(&handle, "2 failed", |s| s.io.tls_handshake_failures == 2);
        assert_eq!(s.io.tls_handshakes, 2, "{io:?}: {s:#?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn compressed_bytes_are_counted_on_the_worker_that_compressed_them() {
    use std::io::Write;
    for io in backends() {
        let mut cfg = config(io);
        let mut deflate = ringwire_conn::deflate::DeflateConfig::default();
        deflate.threshold = 0;
        cfg.connection.deflate = Some(deflate);
        let server = start(cfg, App);
        let handle = server.handle();
        let addr = server.local_addr();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = upgrade_request(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let head = read_http_head(&mut stream);
        assert!(head.contains("permessage-deflate"), "{head}");
        let mut c = Raw { stream };
        let payload = "all work and no play ".repeat(50);
        c.send(OpCode::Text, payload.as_bytes()); // sent plain: allowed
        let (fin, op, wire) = c.read_frame();
        assert!(fin && op == 0x1 && wire.len() < payload.len() / 4, "compressed: {} bytes", wire.len());
        let s = wait_stats(&handle, "compressed", |s| s.compression.compressed_in > 0);
        let z = s.compression;
        assert_eq!((z.compressed_in, z.compressed_out), (payload.len() as u64, wire.len() as u64), "{io:?}: {s:#?}");
        assert_eq!((z.inflated_in, z.inflated_out), (0, 0), "{io:?}");
        server.shutdown().unwrap();
    }
}
