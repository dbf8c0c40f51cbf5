//! A panicking handler callback closes its own connection with 1011 and nothing else.

mod common;
use common::*;
use ringwire_conn::handshake::Request;
use ringwire_conn::{CloseCode, Message};
use ringwire_frame::OpCode;
use ringwire_server::{Decision, Handler, Ws};
use std::sync::mpsc;
use std::time::Duration;

/// Echoes; panics on "boom" (in on_message), on a request for `/boom` (in on_request)
/// and on open when the path is `/boom-open` (via a subprotocol marker). Reports every
/// on_close to the test.
#[derive(Clone)]
struct Fragile(mpsc::Sender<String>);

impl Handler for Fragile {
    fn on_request(&mut self, request: &Request, _supported: &[String]) -> Decision {
        assert!(request.path != "/boom", "on_request blew up");
        Decision::accept(request.protocols.first().map(String::as_str))
    }
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        assert!(ws.protocol() != Some("boom-open"), "on_open blew up");
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        if let Message::Text(t) = &message
            && &**t == "boom"
        {
            panic!("handler bug on connection {}", ws.id());
        }
        ws.send(message);
    }
    fn on_close(&mut self, ws: &mut Ws<'_>, code: CloseCode, _description: &str) {
        let _ = self.0.send(format!("close {} {}", ws.id(), code.as_u16()));
    }
}

#[test]
fn a_panic_in_on_message_closes_that_connection_with_1011_only() {
    for io in backends() {
        let (tx, rx) = mpsc::channel();
        let server = start(config(io), Fragile(tx));
        let handle = server.handle();
        let mut victim = Raw::connect(server.local_addr());
        let mut bystander = Raw::connect(server.local_addr());
        victim.frame(true, 0, OpCode::Text, b"boom", true);
        // More input after the panic is read but not handed to the handler.
        victim.frame(true, 0, OpCode::Text, b"after", true);
        let (code, reason) = victim.read_close();
        assert_eq!((code, reason.as_str()), (1011, "internal error"), "{io:?}");
        victim.frame(true, 0, OpCode::Close, &1011u16.to_be_bytes(), true);
        assert!(victim.at_eof(), "{io:?}");
        drop(victim);
        wait_for_connections(&handle, 1); // the victim's admission slot was released
        // The other connection on the same (only) worker goes on.
        for i in 0..3 {
            let text = format!("still here {i}");
            bystander.frame(true, 0, OpCode::Text, text.as_bytes(), true);
            assert_eq!(bystander.read_frame().2, text.as_bytes(), "{io:?}");
        }
        bystander.frame(true, 0, OpCode::Close, &1000u16.to_be_bytes(), true);
        assert_eq!(bystander.read_close().0, 1000);
        wait_for_connections(&handle, 0);
        // on_close came for the bystander only: the victim's later events were not delivered.
        let closes: Vec<String> = rx.try_iter().collect();
        assert_eq!(closes.len(), 1, "{io:?}: {closes:?}");
        assert!(closes[0].ends_with(" 1000"), "{io:?}: {closes:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_panic_in_on_request_answers_500_and_in_on_open_closes_with_1011() {
    for io in backends() {
        let (tx, _rx) = mpsc::channel();
        let server = start(config(io), Fragile(tx));
        let addr = server.local_addr();
        let r = http(
            addr,
            &format!(
                "GET /boom HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        );
        assert!(r.starts_with("HTTP/1.1 500"), "{io:?}: {r}");
        assert!(r.contains("internal error"), "{io:?}: {r}");

        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(
            &mut stream,
            upgrade_request(addr, "Sec-WebSocket-Protocol: boom-open\r\n").as_bytes(),
        )
        .unwrap();
        assert!(read_http_head(&mut stream).starts_with("HTTP/1.1 101"), "{io:?}");
        let mut raw = Raw { stream };
        assert_eq!(raw.read_close().0, 1011, "{io:?}");

        // The worker still serves.
        let mut ok = Raw::connect(addr);
        ok.frame(true, 0, OpCode::Text, b"fine", true);
        assert_eq!(ok.read_frame().2, b"fine", "{io:?}");
        drop((ok, raw));
        wait_for_connections(&server.handle(), 0);
        server.shutdown().unwrap();
    }
}
