//! A connection's life at its edges: the upgrade request read in pieces, the 101
//! response kept apart from the connection's output, `drop_connection` destroying the
//! socket, a shutdown that ends within its deadline whatever the peers do, and `on_open`
//! before anything that came with the request.

mod common;
use common::*;
use ringwire_conn::handshake::{Accept, Request};
use ringwire_conn::{CloseCode, Message, SendToken};
use ringwire_frame::OpCode;
use ringwire_server::{Decision, Handler, SendOutcome, Ws};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A TCP connection to `addr` with a small receive buffer, so that a peer that does not
/// read holds little in the kernel and the server's output stays queued.
fn small_window(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn request(addr: SocketAddr) -> String {
    upgrade_request(addr, "")
}

/// An upgraded connection that will not read unless told to.
fn non_reader(addr: SocketAddr) -> Raw {
    Raw::upgrade(small_window(addr), addr)
}

#[test]
fn a_request_trickled_byte_by_byte_upgrades() {
    for io in backends() {
        let server = start(config(io), Echo);
        let addr = server.local_addr();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for b in request(addr).bytes() {
            stream.write_all(&[b]).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(read_http_head(&mut stream).starts_with("HTTP/1.1 101"), "{io:?}");
        let mut raw = Raw { stream };
        raw.frame(true, 0, OpCode::Text, b"ok", true);
        assert_eq!(raw.read_frame().2, b"ok", "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_head_past_the_limit_without_an_end_gets_431_at_once() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.handshake_timeout = Duration::from_secs(30);
        let server = start(cfg, Echo);
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        write!(stream, "GET / HTTP/1.1\r\nX-Long: {}", "a".repeat(9000)).unwrap();
        let r = read_http_head(&mut stream);
        assert!(r.starts_with("HTTP/1.1 431"), "{io:?}: {}", &r[..r.len().min(80)]);
        assert!(t0.elapsed() < Duration::from_secs(5), "{io:?}: not the 30 s handshake timeout");
        server.shutdown().unwrap();
    }
}

/// Accepts with a response of `RESPONSE_PAD` bytes of headers, then sends "hi" with a
/// token and reports its completion.
#[derive(Clone)]
struct BigResponse(mpsc::Sender<SendOutcome>);

const RESPONSE_PAD: usize = 16 << 20;

impl Handler for BigResponse {
    fn on_request(&mut self, _request: &Request, _supported: &[String]) -> Decision {
        let pad = ("X-Pad".to_owned(), "a".repeat(RESPONSE_PAD));
        Decision::Accept(Accept { extra_headers: vec![pad], ..Accept::default() })
    }
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let _ = ws.send_tracked("hi", SendToken(1));
    }
    fn on_send_complete(&mut self, _ws: &mut Ws<'_>, _token: SendToken, outcome: SendOutcome) {
        let _ = self.0.send(outcome);
    }
}

#[test]
fn send_complete_waits_for_the_message_not_the_101_response() {
    for io in backends() {
        let (tx, done) = mpsc::channel();
        let server = start(config(io), BigResponse(tx));
        let addr = server.local_addr();
        let mut stream = small_window(addr);
        stream.write_all(request(addr).as_bytes()).unwrap();
        // The response alone is more than the socket buffers take while we do not read:
        // the first write is partial and none of "hi" is written.
        std::thread::sleep(Duration::from_millis(500));
        assert!(done.try_recv().is_err(), "{io:?}: SendComplete before the message was written");
        // Read the whole response and the frame after it.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while !got.ends_with(b"\x81\x02hi") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "{io:?}: closed early");
            got.extend_from_slice(&buf[..n]);
            assert!(got.len() <= RESPONSE_PAD + 4096, "{io:?}: no frame after the response");
        }
        assert!(got.starts_with(b"HTTP/1.1 101"), "{io:?}");
        assert!(got[..got.len() - 4].ends_with(b"\r\n\r\n"), "{io:?}: the frame follows the head");
        assert_eq!(done.recv_timeout(Duration::from_secs(10)), Ok(SendOutcome::Written), "{io:?}");
        drop(stream);
        server.shutdown().unwrap();
    }
}

/// "flood": queue 16 MiB; "drop": `drop_connection` (1000, "bye"). Reports on_close.
#[derive(Clone)]
struct Flooder(mpsc::Sender<String>);

impl Handler for Flooder {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        match message {
            Message::Text(t) if &*t == "flood" => {
                for _ in 0..16 {
                    ws.send_binary(vec![7u8; 1 << 20]);
                }
            }
            Message::Text(t) if &*t == "drop" => ws.drop_connection(CloseCode::NORMAL, "bye", false),
            _ => {}
        }
    }
    fn on_close(&mut self, _ws: &mut Ws<'_>, code: CloseCode, description: &str) {
        let _ = self.0.send(format!("{} {description}", code.as_u16()));
    }
}

/// A config where nothing but the mechanism under test can end a stuck connection soon.
fn patient(io: ringwire_server::IoChoice) -> ringwire_server::ServerConfig {
    let mut cfg = config(io);
    cfg.connection.close_timeout = Duration::from_secs(60);
    cfg.connection.keepalive = None;
    cfg
}

#[test]
fn drop_connection_destroys_the_socket_of_a_peer_that_does_not_read() {
    for io in backends() {
        let (tx, closes) = mpsc::channel();
        let mut cfg = patient(io);
        // Keep reading with the 16 MiB queued (above the default high-water mark the
        // connection would stop reading, and never see "drop").
        cfg.connection.high_water_mark = 32 << 20;
        let server = start(cfg, Flooder(tx));
        let handle = server.handle();
        let mut raw = non_reader(server.local_addr());
        raw.frame(true, 0, OpCode::Text, b"flood", true);
        std::thread::sleep(Duration::from_millis(200)); // the flood is handed to the loop
        raw.frame(true, 0, OpCode::Text, b"drop", true);
        assert_eq!(closes.recv_timeout(Duration::from_secs(10)).unwrap(), "1000 bye", "{io:?}");
        // Gracefully flushing would wait for the peer to read 16 MiB (or 60 s).
        wait_for_connections(&handle, 0);
        assert!(raw.at_eof(), "{io:?}: the socket is gone");
        server.shutdown().unwrap();
    }
}

#[test]
fn shutdown_aborts_what_is_left_at_its_deadline() {
    for io in backends() {
        let (tx, closes) = mpsc::channel();
        let mut cfg = patient(io);
        cfg.shutdown_timeout = Duration::from_secs(2);
        let server = start(cfg, Flooder(tx));
        let handle = server.handle();
        let mut stuck = non_reader(server.local_addr());
        stuck.frame(true, 0, OpCode::Text, b"flood", true);
        // A peer that reads and answers the close goes at once.
        let mut polite = Raw::connect(server.local_addr());
        std::thread::sleep(Duration::from_millis(200)); // the flood is queued
        let t0 = Instant::now();
        handle.shutdown();
        assert_eq!(polite.read_close().0, 1001, "{io:?}");
        polite.frame(true, 0, OpCode::Close, &1001u16.to_be_bytes(), true);
        assert!(polite.at_eof(), "{io:?}");
        // Joined on another thread so that a missing deadline fails the test, not hangs it.
        let (joined_tx, joined) = mpsc::channel();
        std::thread::spawn(move || joined_tx.send(server.join()));
        let result = joined.recv_timeout(Duration::from_secs(15)).expect("run did not return");
        result.unwrap();
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(1900), "{io:?}: returned before the deadline ({took:?})");
        assert!(took < Duration::from_secs(8), "{io:?}: the deadline did not end it ({took:?})");
        assert_eq!(handle.connections(), 0);
        let closes: Vec<String> = closes.try_iter().collect();
        assert_eq!(closes.len(), 2, "{io:?}: on_close for both: {closes:?}");
        assert!(closes.iter().all(|c| c == "1001 server shutting down"), "{io:?}: {closes:?}");
        assert!(stuck.at_eof(), "{io:?}");
    }
}

/// Says in `on_open` whether the connection was open then, and echoes.
#[derive(Clone)]
struct OpenState;

impl Handler for OpenState {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let open = ws.connected();
        ws.send(format!("open:{open}"));
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        ws.send(message);
    }
}

#[test]
fn on_open_comes_before_frames_sent_with_the_request() {
    for io in backends() {
        let server = start(config(io), OpenState);
        let addr = server.local_addr();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The request and a close frame in one write: on_open must still see an open
        // connection (and may send), then the close is handled.
        let mut bytes = request(addr).into_bytes();
        bytes.extend(ringwire_testkit::masked_frame(OpCode::Close, &1000u16.to_be_bytes()));
        stream.write_all(&bytes).unwrap();
        assert!(read_http_head(&mut stream).starts_with("HTTP/1.1 101"), "{io:?}");
        let mut raw = Raw { stream };
        assert_eq!(raw.recv(), (0x1, b"open:true".to_vec()), "{io:?}");
        assert_eq!(raw.read_close().0, 1000, "{io:?}");
        drop(raw);
        server.shutdown().unwrap();
    }
}
