//! A panicking client handler, a bounded inbox, and `drop_connection` destroying the
//! socket, on both backends.

mod common;

use common::*;
use ringwire_client::{
    ClientHandler, ClientLoop, ClientWs, ConnectError, ConnectOptions, QueueError, WebSocket, WsError,
};
use ringwire_conn::{CloseCode, Message};
use ringwire_server::{Handler, Server, ServerConfig, Ws};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Echoes and reports each on_close code.
#[derive(Clone)]
struct Echo(mpsc::Sender<u16>);

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        ws.send(message);
    }
    fn on_close(&mut self, _ws: &mut Ws<'_>, code: CloseCode, _description: &str) {
        let _ = self.0.send(code.as_u16());
    }
}

fn echo_server(io: ringwire_client::IoChoice) -> (ringwire_server::RunningServer, mpsc::Receiver<u16>) {
    let (tx, rx) = mpsc::channel();
    let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap()).with_threads(1).with_io(io);
    (Server::bind(cfg).unwrap().spawn(Echo(tx)), rx)
}

/// Sends "boom" on its first connection and "hi" on the others; panics when "boom" comes
/// back; closes the others after 3 echoes. Counts what it sees.
#[derive(Default)]
struct Fragile {
    echoes: usize,
    closes: Vec<(ringwire_client::ClientId, u16)>,
}

impl ClientHandler for Fragile {
    fn on_open(&mut self, ws: &mut ClientWs<'_>) {
        let text = if ws.id().get() == 1 { "boom" } else { "hi" };
        ws.send(text);
    }
    fn on_message(&mut self, ws: &mut ClientWs<'_>, message: Message) {
        assert!(message != Message::Text("boom".into()), "client handler bug");
        self.echoes += 1;
        if self.echoes < 3 {
            ws.send("hi");
        } else {
            let _ = ws.close(CloseCode::NORMAL, "done");
        }
    }
    fn on_close(&mut self, ws: &mut ClientWs<'_>, code: CloseCode, _description: &str) {
        self.closes.push((ws.id(), code.as_u16()));
    }
}

#[test]
fn a_panic_in_a_client_callback_closes_that_connection_with_1011_only() {
    for io in backends() {
        let (server, server_closes) = echo_server(io);
        let url = format!("ws://{}/", server.local_addr());
        let mut client = ClientLoop::new(io).unwrap();
        let victim = client.connect(&url, ConnectOptions::default()).unwrap();
        let other = client.connect(&url, ConnectOptions::default()).unwrap();
        assert_eq!(victim.get(), 1);
        let mut h = Fragile::default();
        run(&mut client, &mut h); // returns: both connections ended, the loop went on
        assert_eq!(h.echoes, 3, "{io:?}: the other connection kept working");
        assert_eq!(h.closes, [(other, 1000)], "{io:?}: no callback for the victim after its panic");
        let mut codes: Vec<u16> =
            (0..2).map(|_| server_closes.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        codes.sort_unstable();
        assert_eq!(codes, [1000, 1011], "{io:?}: the server saw the victim close with 1011");
        server.shutdown().unwrap();
    }
}

struct Nothing;
impl ClientHandler for Nothing {}

#[test]
fn the_inbox_is_bounded_and_a_stop_still_gets_through() {
    for io in backends() {
        let (server, _) = echo_server(io);
        let url = format!("ws://{}/", server.local_addr());
        let mut client = ClientLoop::new(io).unwrap();
        client.set_inbox_capacity(100);
        let handle = client.handle();
        // The loop is not running: nothing takes the commands.
        let id = handle.connect(&url, ConnectOptions::default()).unwrap();
        for i in 1..100 {
            handle.send(id, format!("m{i}")).unwrap_or_else(|e| panic!("{io:?}: send {i}: {e}"));
        }
        assert_eq!(handle.send(id, "one too many"), Err(QueueError::Full), "{io:?}");
        assert_eq!(handle.pause(id), Err(QueueError::Full), "{io:?}");
        let err = handle.connect(&url, ConnectOptions::default()).unwrap_err();
        assert!(matches!(err, ConnectError::Queue(QueueError::Full)), "{io:?}: {err:?}");
        handle.stop();
        client.set_stop_when_idle(false);
        let t0 = Instant::now();
        client.run(&mut Nothing).unwrap(); // returns: the stop came through
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(handle.send(id, "room again"), Ok(()), "{io:?}: the loop took its inbox");
        drop(client);
        assert_eq!(handle.send(id, "late"), Err(QueueError::Closed), "{io:?}");
        let err = handle.connect(&url, ConnectOptions::default()).unwrap_err();
        assert!(matches!(err, ConnectError::Queue(QueueError::Closed)), "{io:?}: {err:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_blocking_socket_reports_a_gone_loop_as_closed() {
    let (server, _) = echo_server(backends()[0]);
    let mut ws: WebSocket = ringwire_client::connect(&format!("ws://{}/", server.local_addr())).unwrap();
    ws.send("hello").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("hello".into()));
    server.shutdown().unwrap();
    // The server closed with 1001 and the background loop ended. Without a recv to
    // learn of the close, a send finds the loop gone and says the connection is over.
    let t0 = Instant::now();
    loop {
        match ws.send("more") {
            Ok(()) => {}
            Err(WsError::Closed { code, .. }) => {
                assert_eq!(code, CloseCode::ABNORMAL);
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
        assert!(t0.elapsed() < Duration::from_secs(10), "the send never failed");
    }
}

/// Queues 16 MiB on open; drops the connection when the server's first message comes
/// (by then the 16 MiB are handed to the event loop).
struct FloodThenDrop {
    closed: Option<(u16, String)>,
}

impl ClientHandler for FloodThenDrop {
    fn on_open(&mut self, ws: &mut ClientWs<'_>) {
        for _ in 0..16 {
            ws.send_binary(vec![7u8; 1 << 20]);
        }
    }
    fn on_message(&mut self, ws: &mut ClientWs<'_>, _message: Message) {
        ws.drop_connection(CloseCode::NORMAL, "bye", false);
    }
    fn on_close(&mut self, _ws: &mut ClientWs<'_>, code: CloseCode, description: &str) {
        self.closed = Some((code.as_u16(), description.to_owned()));
    }
}

#[test]
fn drop_connection_destroys_the_socket_of_a_server_that_does_not_read() {
    for io in backends() {
        // Upgrades, says "go" a moment later, and neither reads nor closes after that.
        let (held_tx, held) = mpsc::channel::<TcpStream>();
        let addr = raw_server(move |mut s: TcpStream| {
            upgrade(&mut s, None);
            std::thread::sleep(Duration::from_millis(200));
            std::io::Write::write_all(&mut s, &server_frame(true, 0x1, b"go")).unwrap();
            let _ = held_tx.send(s);
        });
        let mut opts = ConnectOptions::default();
        opts.config.close_timeout = Duration::from_secs(60);
        // Keep reading with the 16 MiB queued (above the default high-water mark the
        // connection would stop reading, and never see "go").
        opts.config.high_water_mark = 32 << 20;
        let mut client = ClientLoop::new(io).unwrap();
        client.connect(&format!("ws://{addr}/"), opts).unwrap();
        let mut h = FloodThenDrop { closed: None };
        let t0 = Instant::now();
        run(&mut client, &mut h);
        // Flushing gracefully would wait for the server to read 16 MiB (or 60 s).
        assert!(t0.elapsed() < Duration::from_secs(10), "{io:?}: {:?}", t0.elapsed());
        assert_eq!(h.closed, Some((1000, "bye".to_owned())), "{io:?}");
        let mut s = held.recv_timeout(Duration::from_secs(5)).unwrap();
        let t1 = Instant::now();
        let mut sink = Vec::new();
        read_to_close(&mut s, &mut sink); // ends: reset or EOF, not the 10 s read timeout
        assert!(t1.elapsed() < Duration::from_secs(8), "{io:?}: the socket is gone");
    }
}
