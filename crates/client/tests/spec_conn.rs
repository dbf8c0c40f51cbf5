//! WebSocket-Node's connection behaviours seen from the ringwire client against the
//! ringwire server: without assembly the client's `on_frame` sees control frames too,
//! then handles them (the automatic pong, `on_ping`, the close handshake), and a
//! `close(CloseCode::default(), None)` carries the code's description both ways.

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
