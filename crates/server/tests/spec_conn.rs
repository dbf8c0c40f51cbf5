//! WebSocket-Node's connection behaviours, through a real server on a loopback port
//! (each also tested in the connection crate): every frame as `on_frame` without
//! assembly, `close()`'s default description, `cancel_pong` after other commands in
//! `on_ping`, fragmented broadcasts, Drain when empty with `low_water_mark = 0`, and
//! the X-Forwarded-For rule.

mod common;
use bytes::Bytes;
use common::*;
use ringwire_conn::{CloseCode, Frame, Message};
use ringwire_frame::OpCode;
use ringwire_server::{Handler, Sent, Ws};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records what the handler saw, and acts on text commands.
#[derive(Clone, Default)]
struct Spec {
    log: Arc<Mutex<Vec<String>>>,
}

impl Spec {
    fn log(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Handler for Spec {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let text = format!("{}|{}", ws.remote_address().unwrap_or("-"), ws.remote_addresses().join(","));
        ws.send_text(text);
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        let Message::Text(t) = message else { return };
        match &*t {
            "close-default" => ws.close(CloseCode::default(), None).unwrap(),
            "close-empty" => ws.close(CloseCode::GOING_AWAY, Some("")).unwrap(),
            "close" => ws.close(CloseCode::NORMAL, "bye").unwrap(),
            "flood" => while ws.send_binary(vec![7u8; 16 << 10]) == Sent::Queued {},
            _ => {}
        }
    }
    fn on_frame(&mut self, _ws: &mut Ws<'_>, f: Frame) {
        self.log(format!("frame {:?} {} {:?}", f.opcode, f.fin, String::from_utf8_lossy(&f.payload)));
    }
    fn on_ping(&mut self, ws: &mut Ws<'_>, payload: &Bytes) -> bool {
        self.log(format!("ping {:?}", String::from_utf8_lossy(payload)));
        match &payload[..] {
            b"ping-then-cancel" => {
                ws.ping(b"mine").unwrap();
                false
            }
            b"close-then-cancel" => {
                ws.close(CloseCode::NORMAL, "bye").unwrap();
                false
            }
            b"close-then-pong" => {
                ws.close(CloseCode::NORMAL, "bye").unwrap();
                true
            }
            _ => true,
        }
    }
    fn on_pong(&mut self, _ws: &mut Ws<'_>, payload: &Bytes) {
        self.log(format!("pong {:?}", String::from_utf8_lossy(payload)));
    }
    fn on_drain(&mut self, ws: &mut Ws<'_>) {
        self.log(format!("drain {}", ws.buffered_amount()));
        ws.send_text("drained");
    }
    fn on_close(&mut self, _ws: &mut Ws<'_>, code: CloseCode, description: &str) {
        self.log(format!("close {} {description}", code.0));
    }
}

/// Connects, reads the on_open greeting (the addresses), and returns the client.
fn connect(addr: std::net::SocketAddr) -> Raw {
    let mut raw = Raw::connect(addr);
    assert_eq!(raw.recv().0, 0x1, "the greeting");
    raw
}

/// Frames from the server up to and including its close frame: (fin, opcode, payload).
fn frames_to_close(raw: &mut Raw) -> Vec<(bool, u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let f = raw.read_frame();
        let close = f.1 == 0x8;
        out.push(f);
        if close {
            return out;
        }
    }
}

/// Waits until the handler logged `what` (the server runs on its own thread).
fn wait_for(spec: &Spec, what: &str) -> Vec<String> {
    let t0 = std::time::Instant::now();
    loop {
        let log = spec.log.lock().unwrap().clone();
        if log.iter().any(|l| l == what) {
            return spec.take();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no {what:?} in {log:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn without_assembly_on_frame_sees_every_frame_and_control_frames_still_work() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.connection.assemble_fragments = false;
        let spec = Spec::default();
        let server = start(cfg, spec.clone());
        let mut raw = connect(server.local_addr());
        raw.frame(false, 0, OpCode::Text, b"he", true);
        raw.frame(true, 0, OpCode::Ping, b"p", true);
        raw.frame(true, 0, OpCode::Continuation, b"llo", true);
        raw.frame(true, 0, OpCode::Pong, b"q", true);
        raw.frame(true, 0, OpCode::Close, &ringwire_testkit::close_frame(1000, "bye"), true);
        let wire = frames_to_close(&mut raw);
        assert_eq!(wire, [(true, 0xA, b"p".to_vec()), (true, 0x8, vec![0x03, 0xe8])], "{io:?}: pong, close echo");
        let log = wait_for(&spec, "close 1000 bye");
        assert_eq!(
            log,
            [
                "frame Text false \"he\"",
                "frame Ping true \"p\"",
                "ping \"p\"",
                "frame Continuation true \"llo\"",
                "frame Pong true \"q\"",
                "pong \"q\"",
                "frame Close true \"\\u{3}\u{fffd}bye\"",
                "close 1000 bye",
            ],
            "{io:?}"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn close_without_a_reason_sends_the_codes_description() {
    for io in backends() {
        let spec = Spec::default();
        let server = start(config(io), spec.clone());
        let mut raw = connect(server.local_addr());
        raw.send(OpCode::Text, b"close-default");
        assert_eq!(raw.read_close(), (1000, "Normal connection closure".to_owned()), "{io:?}");
        raw.send(OpCode::Close, &ringwire_testkit::close_frame(1000, ""));
        assert_eq!(wait_for(&spec, "close 1000 Normal connection closure"), ["close 1000 Normal connection closure"]);

        let mut raw = connect(server.local_addr());
        raw.send(OpCode::Text, b"close-empty");
        assert_eq!(raw.read_close(), (1001, String::new()), "{io:?}: Some(\"\") sends no reason");
        server.shutdown().unwrap();
    }
}

#[test]
fn on_ping_returning_false_cancels_the_pong_whatever_it_did_first() {
    for io in backends() {
        let spec = Spec::default();
        let server = start(config(io), spec.clone());
        // ping() then cancel: our ping goes, the pong does not.
        let mut raw = connect(server.local_addr());
        raw.send(OpCode::Ping, b"ping-then-cancel");
        raw.send(OpCode::Text, b"close");
        let ops: Vec<(u8, Vec<u8>)> = frames_to_close(&mut raw).into_iter().map(|(_, op, p)| (op, p)).collect();
        assert_eq!(ops[..1], [(0x9, b"mine".to_vec())], "{io:?}");
        assert_eq!(ops.len(), 2, "{io:?}: no pong: {ops:?}");
        // close() then cancel: the close frame only.
        let mut raw = connect(server.local_addr());
        raw.send(OpCode::Ping, b"close-then-cancel");
        assert_eq!(frames_to_close(&mut raw), [(true, 0x8, [&[0x03, 0xe8][..], b"bye"].concat())], "{io:?}");
        // close() and keep the pong: the pong goes first.
        let mut raw = connect(server.local_addr());
        raw.send(OpCode::Ping, b"close-then-pong");
        let ops: Vec<u8> = frames_to_close(&mut raw).into_iter().map(|(_, op, _)| op).collect();
        assert_eq!(ops, [0xA, 0x8], "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn broadcasts_are_fragmented_at_the_threshold() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.connection.fragmentation_threshold = 1000;
        let server = start(cfg, Spec::default());
        let mut raw = connect(server.local_addr());
        wait_for_connections(&server.handle(), 1);
        let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        server.handle().broadcast(payload.clone()).unwrap();
        let frames: Vec<_> = (0..3).map(|_| raw.read_frame()).collect();
        let shape: Vec<(bool, u8, usize)> = frames.iter().map(|(fin, op, p)| (*fin, *op, p.len())).collect();
        assert_eq!(shape, [(false, 0x2, 1000), (false, 0x0, 1000), (true, 0x0, 500)], "{io:?}");
        assert_eq!(frames.into_iter().flat_map(|f| f.2).collect::<Vec<u8>>(), payload, "{io:?}");
        server.handle().broadcast("small").unwrap();
        assert_eq!(raw.read_frame(), (true, 0x1, b"small".to_vec()), "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn low_water_mark_zero_drains_when_the_output_is_empty() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.connection.low_water_mark = 0;
        let spec = Spec::default();
        let server = start(cfg, spec.clone());
        let mut raw = Raw::connect_with_rcvbuf(server.local_addr(), 4 << 10);
        assert_eq!(raw.recv().0, 0x1, "the greeting");
        raw.send(OpCode::Text, b"flood");
        std::thread::sleep(Duration::from_millis(100)); // not reading: the queue backs up
        let mut bytes = 0;
        loop {
            let (op, p) = raw.recv();
            if op == 0x1 {
                assert_eq!(p, b"drained", "{io:?}");
                break;
            }
            bytes += p.len();
            std::thread::sleep(Duration::from_micros(200)); // a slow reader
        }
        assert_eq!(bytes, 4 << 14, "{io:?}: the flood (four 16 KiB messages) came first");
        assert_eq!(spec.take(), ["drain 0"], "{io:?}: Drain when nothing is left buffered");
        server.shutdown().unwrap();
    }
}

#[test]
fn x_forwarded_for_gives_the_right_most_address_no_trusted_proxy_vouches_for() {
    for io in backends() {
        let cfg = config(io).with_trusted_proxies(vec!["127.0.0.1".parse().unwrap()]);
        let server = start(cfg, Spec::default());
        let addr = server.local_addr();
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let xff = "X-Forwarded-For: 6.6.6.6, 198.51.100.3\r\n";
        stream.write_all(upgrade_request(addr, xff).as_bytes()).unwrap();
        assert!(read_http_head(&mut stream).starts_with("HTTP/1.1 101"));
        let mut raw = Raw { stream };
        let greeting = String::from_utf8(raw.recv().1).unwrap();
        assert_eq!(greeting, "198.51.100.3|6.6.6.6,198.51.100.3,127.0.0.1", "{io:?}: not the left-most, 6.6.6.6");
        server.shutdown().unwrap();
    }
}
