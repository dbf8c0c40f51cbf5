//! Every close path and code, protocol errors with their codes, graceful shutdown.

mod common;
use common::*;
use ringwire_conn::Message;
use ringwire_frame::{CloseCode, OpCode};
use ringwire_server::{Handler, Ws};
use std::sync::mpsc;
use std::time::Duration;

/// Echoes, closes on "close-me" after queueing three messages, and reports every
/// on_close (code, description) and on_error to the test.
#[derive(Clone)]
struct Recorder(mpsc::Sender<String>);

impl Handler for Recorder {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        if let Message::Text(t) = &message
            && &**t == "close-me"
        {
            for i in 0..3 {
                ws.send_text(format!("last {i}"));
            }
            ws.close(CloseCode(4000), "asked").unwrap();
            return;
        }
        ws.send(message);
    }
    fn on_error(&mut self, _ws: &mut Ws<'_>, error: &ringwire_conn::ConnError) {
        let _ = self.0.send(format!("error {error}"));
    }
    fn on_close(&mut self, ws: &mut Ws<'_>, code: CloseCode, description: &str) {
        assert!(!ws.connected());
        let _ = self.0.send(format!("close {} {description}", code.as_u16()));
    }
}

fn recorder() -> (Recorder, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    (Recorder(tx), rx)
}

fn close_event(rx: &mpsc::Receiver<String>) -> String {
    loop {
        let e = rx.recv_timeout(Duration::from_secs(10)).expect("no on_close");
        if e.starts_with("close") {
            return e;
        }
    }
}

#[test]
fn peer_close_is_echoed_with_its_code() {
    for io in backends() {
        let (h, rx) = recorder();
        let server = start(config(io), h);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Close, b"\x0f\xa0bye", true); // 4000
        assert_eq!(raw.read_close().0, 4000, "{io:?}");
        assert!(raw.at_eof(), "{io:?}: the server closes TCP after the handshake");
        assert_eq!(close_event(&rx), "close 4000 bye");
        server.shutdown().unwrap();
    }
}

#[test]
fn empty_close_reports_1005_and_dropped_tcp_reports_1006() {
    for io in backends() {
        let (h, rx) = recorder();
        let server = start(config(io), h);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Close, b"", true);
        let (_, op, _) = raw.read_frame();
        assert_eq!(op, 0x8);
        assert!(close_event(&rx).starts_with("close 1005"), "{io:?}");
        let raw = Raw::connect(server.local_addr());
        drop(raw);
        assert!(close_event(&rx).starts_with("close 1006"), "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn server_close_flushes_queued_messages_first() {
    for io in backends() {
        let (h, rx) = recorder();
        let server = start(config(io), h);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Text, b"close-me", true);
        for i in 0..3 {
            let (_, op, p) = raw.read_frame();
            assert_eq!((op, p), (0x1, format!("last {i}").into_bytes()), "{io:?}");
        }
        let (_, op, p) = raw.read_frame();
        assert_eq!((op, &p[..2]), (0x8, &4000u16.to_be_bytes()[..]), "{io:?}");
        assert_eq!(&p[2..], b"asked");
        raw.frame(true, 0, OpCode::Close, &4000u16.to_be_bytes(), true);
        assert!(raw.at_eof());
        assert_eq!(close_event(&rx), "close 4000 asked");
        server.shutdown().unwrap();
    }
}

/// One frame to send: (fin, rsv, opcode, payload, masked).
type RawFrame = (bool, u8, OpCode, Vec<u8>, bool);

/// (name, frames to send, expected close code)
fn protocol_error_cases() -> Vec<(&'static str, Vec<RawFrame>, u16)> {
    vec![
        ("rsv1 without extension", vec![(true, 0b100, OpCode::Text, b"x".to_vec(), true)], 1002),
        ("unmasked client frame", vec![(true, 0, OpCode::Text, b"x".to_vec(), false)], 1002),
        ("fragmented ping", vec![(false, 0, OpCode::Ping, b"x".to_vec(), true)], 1002),
        ("continuation without start", vec![(true, 0, OpCode::Continuation, b"x".to_vec(), true)], 1002),
        (
            "new message inside a fragmented one",
            vec![(false, 0, OpCode::Text, b"a".to_vec(), true), (true, 0, OpCode::Text, b"b".to_vec(), true)],
            1002,
        ),
        ("invalid close code", vec![(true, 0, OpCode::Close, 999u16.to_be_bytes().to_vec(), true)], 1002),
        ("invalid utf-8, fail fast mid-message", vec![(false, 0, OpCode::Text, vec![b'a', 0xFF], true)], 1007),
        ("invalid utf-8 in close reason", vec![(true, 0, OpCode::Close, vec![0x03, 0xE8, 0xFF], true)], 1007),
        ("frame too big", vec![(true, 0, OpCode::Binary, vec![0; 2000], true)], 1009),
        (
            "message too big across fragments",
            vec![(false, 0, OpCode::Binary, vec![0; 900], true), (true, 0, OpCode::Continuation, vec![0; 900], true)],
            1009,
        ),
    ]
}

#[test]
fn protocol_errors_close_with_the_right_code_and_a_reason() {
    for io in backends() {
        let (h, rx) = recorder();
        let mut cfg = config(io);
        cfg.connection.max_received_frame_size = 1000;
        cfg.connection.max_received_message_size = 1500;
        let server = start(cfg, h);
        for (name, frames, code) in protocol_error_cases() {
            let mut raw = Raw::connect(server.local_addr());
            for (fin, rsv, op, payload, masked) in frames {
                raw.frame(fin, rsv, op, &payload, masked);
            }
            let (got, reason) = raw.read_close();
            assert_eq!(got, code, "{io:?} {name}");
            assert!(!reason.is_empty(), "{io:?} {name}: a reason is given");
            assert!(raw.at_eof(), "{io:?} {name}");
            let mut saw_error = false;
            let ev = loop {
                let e = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                if e.starts_with("error") {
                    saw_error = true;
                } else {
                    break e;
                }
            };
            assert!(saw_error, "{io:?} {name}: on_error before on_close");
            assert!(ev.starts_with(&format!("close {code}")), "{io:?} {name}: {ev}");
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn graceful_shutdown_delivers_queued_messages_then_1001() {
    for io in backends() {
        let (h, _rx) = recorder();
        let server = start(config(io), h);
        let handle = server.handle();
        let mut raws: Vec<Raw> = (0..3).map(|_| Raw::connect(server.local_addr())).collect();
        for r in &mut raws {
            r.frame(true, 0, OpCode::Text, b"hello", true);
            assert_eq!(r.read_frame().2, b"hello");
        }
        handle.broadcast("last words").unwrap();
        handle.shutdown();
        for r in &mut raws {
            let (_, op, p) = r.read_frame();
            assert_eq!((op, p.as_slice()), (0x1, &b"last words"[..]), "{io:?}");
            assert_eq!(r.read_close().0, 1001, "{io:?}");
            r.frame(true, 0, OpCode::Close, &1001u16.to_be_bytes(), true);
        }
        server.join().unwrap();
        assert!(!ringwire_testkit::accepts(raws[0].stream.peer_addr().unwrap()), "stopped accepting");
    }
}
