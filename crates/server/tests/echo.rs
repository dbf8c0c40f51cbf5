//! Echo over loopback with an independent client (tokio-tungstenite), on both backends.

mod common;
use common::*;
use ringwire_frame::OpCode;
use ringwire_server::Ws;
use tokio_tungstenite::tungstenite::Message as TMessage;

#[test]
fn text_and_binary_from_0_bytes_to_16_mib() {
    for io in backends() {
        let server = start(config(io), Echo);
        let addr = server.local_addr();
        rt().block_on(async {
            let mut ws = connect(addr).await;
            for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20] {
                let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
                send(&mut ws, TMessage::text(text.clone())).await;
                assert_eq!(next(&mut ws).await, TMessage::text(text), "{io:?} text {len}");
                let bin: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                send(&mut ws, TMessage::binary(bin.clone())).await;
                assert_eq!(next(&mut ws).await, TMessage::binary(bin), "{io:?} binary {len}");
            }
            // Many small messages pipelined: order is kept.
            for i in 0..2000 {
                send(&mut ws, TMessage::text(format!("m{i}"))).await;
            }
            for i in 0..2000 {
                assert_eq!(next(&mut ws).await, TMessage::text(format!("m{i}")));
            }
        });
        server.shutdown().unwrap();
    }
}

#[test]
fn fragmented_messages_are_assembled_and_control_frames_interleave() {
    for io in backends() {
        let server = start(config(io), Echo);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(false, 0, OpCode::Text, "κό".as_bytes(), true);
        raw.frame(true, 0, OpCode::Ping, b"mid", true);
        // The split code point: "σ" is 0xCF 0x83, cut between frames.
        raw.frame(false, 0, OpCode::Continuation, &[0xCF], true);
        raw.frame(true, 0, OpCode::Continuation, &[0x83, b'!'], true);
        let (fin, op, p) = raw.read_frame();
        assert_eq!((fin, op, p.as_slice()), (true, 0xA, &b"mid"[..]), "{io:?}: pong first");
        let (fin, op, p) = raw.read_frame();
        assert_eq!((fin, op), (true, 0x1), "{io:?}");
        assert_eq!(String::from_utf8(p).unwrap(), "κόσ!");
        server.shutdown().unwrap();
    }
}

#[test]
fn ping_gets_a_pong_with_its_payload() {
    for io in backends() {
        let server = start(config(io), Echo);
        let addr = server.local_addr();
        rt().block_on(async {
            let mut ws = connect(addr).await;
            send(&mut ws, TMessage::Ping(b"are you there".to_vec().into())).await;
            assert_eq!(next(&mut ws).await, TMessage::Pong(b"are you there".to_vec().into()), "{io:?}");
        });
        server.shutdown().unwrap();
    }
}

/// Cancels every auto-pong (Node's `cancel()` in the ping event) and answers with a text instead.
#[derive(Clone)]
struct NoPong;

impl ringwire_server::Handler for NoPong {
    fn on_ping(&mut self, ws: &mut Ws<'_>, payload: &bytes::Bytes) -> bool {
        ws.send_text(format!("saw ping {}", String::from_utf8_lossy(payload)));
        false
    }
}

#[test]
fn cancelled_auto_pong_sends_no_pong() {
    for io in backends() {
        let server = start(config(io), NoPong);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Ping, b"1", true);
        let (_, op, p) = raw.read_frame();
        assert_eq!((op, p.as_slice()), (0x1, &b"saw ping 1"[..]), "{io:?}: no pong before the text");
        raw.frame(true, 0, OpCode::Close, &1000u16.to_be_bytes(), true);
        let (op_close, _) = (raw.read_frame().1, ());
        assert_eq!(op_close, 0x8, "{io:?}: the close reply follows, no pong in between");
        server.shutdown().unwrap();
    }
}

/// Greets on open, then echoes.
#[derive(Clone)]
struct Greeter;

impl ringwire_server::Handler for Greeter {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        ws.send_text("welcome");
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: ringwire_conn::Message) {
        ws.send(message);
    }
}

#[test]
fn on_open_comes_before_a_message_sent_with_the_upgrade_request() {
    use std::io::Write;
    for io in backends() {
        let server = start(config(io), Greeter);
        let addr = server.local_addr();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        // The upgrade request and the first frame in one write: the frame is parsed from the
        // bytes left after the request, yet the handler hears of the connection first.
        let mut bytes = upgrade_request(addr, "").into_bytes();
        bytes.extend(ringwire_testkit::client_frame(true, 0, OpCode::Text, b"early", Some(KEY)));
        stream.write_all(&bytes).unwrap();
        let head = read_http_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut raw = Raw { stream };
        assert_eq!(raw.read_frame(), (true, 0x1, b"welcome".to_vec()), "{io:?}: on_open first");
        assert_eq!(raw.read_frame(), (true, 0x1, b"early".to_vec()), "{io:?}");
        server.shutdown().unwrap();
    }
}
