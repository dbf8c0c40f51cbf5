//! A TCP relay between a peer and a server that keeps every byte it passes on, to read the
//! frames afterwards: whether permessage-deflate was negotiated and really used on the wire
//! (RSV1, and how many bytes each message took), not only whether the echoes came back.

use ringwire_testkit::parse_frames;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What one relayed connection carried, each way.
#[derive(Default)]
struct Pipe {
    up: Mutex<Vec<u8>>,
    down: Mutex<Vec<u8>>,
}

/// Listens on an ephemeral loopback port and relays each connection to `upstream`.
pub(crate) struct Relay {
    /// Where peers connect.
    pub(crate) addr: SocketAddr,
    pipes: Arc<Mutex<Vec<Arc<Pipe>>>>,
}

/// One data message as it crossed the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireMessage {
    /// 1 text, 2 binary.
    pub(crate) opcode: u8,
    /// RSV1 on its first frame: sent compressed.
    pub(crate) compressed: bool,
    /// Payload bytes on the wire, all its frames together.
    pub(crate) wire_len: usize,
}

/// One relayed connection: the HTTP heads, then the data messages each way.
#[derive(Debug)]
pub(crate) struct Capture {
    /// The upgrade request, as the client sent it.
    pub(crate) request: String,
    /// The server's answer.
    pub(crate) response: String,
    /// Client to server.
    pub(crate) up: Vec<WireMessage>,
    /// Server to client.
    pub(crate) down: Vec<WireMessage>,
}

impl Relay {
    /// Starts relaying to `upstream`. The accepting thread lives as long as the test process.
    pub(crate) fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let addr = listener.local_addr().unwrap();
        let pipes = Arc::new(Mutex::new(Vec::new()));
        let all = Arc::clone(&pipes);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(upstream)) else { continue };
                let pipe = Arc::new(Pipe::default());
                all.lock().unwrap().push(Arc::clone(&pipe));
                copy(client.try_clone().unwrap(), server.try_clone().unwrap(), Arc::clone(&pipe), true);
                copy(server, client, pipe, false);
            }
        });
        Relay { addr, pipes }
    }

    /// What each connection carried so far, in the order they came. Call it once the peer has
    /// seen its last echo: everything that reached either side has been recorded by then.
    pub(crate) fn captures(&self) -> Vec<Capture> {
        self.pipes.lock().unwrap().iter().map(|p| capture(&p.up.lock().unwrap(), &p.down.lock().unwrap())).collect()
    }
}

/// Copies `from` to `to` in a thread, recording each chunk before passing it on; at the end
/// of `from`, ends `to`'s writing side.
fn copy(mut from: TcpStream, mut to: TcpStream, pipe: Arc<Pipe>, up: bool) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if up { &pipe.up } else { &pipe.down }.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn capture(up: &[u8], down: &[u8]) -> Capture {
    let (request, up) = split_head(up);
    let (response, down) = split_head(down);
    Capture { request, response, up: messages(up), down: messages(down) }
}

/// The HTTP head (through its blank line) and what follows it.
fn split_head(wire: &[u8]) -> (String, &[u8]) {
    match wire.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => (String::from_utf8_lossy(&wire[..end + 4]).into_owned(), &wire[end + 4..]),
        None => (String::from_utf8_lossy(wire).into_owned(), &[]),
    }
}

/// The data messages in `wire` (control frames left out): a text or binary frame and the
/// continuations up to FIN.
fn messages(wire: &[u8]) -> Vec<WireMessage> {
    let mut out: Vec<WireMessage> = Vec::new();
    for f in parse_frames(wire) {
        match f.opcode {
            1 | 2 => {
                out.push(WireMessage { opcode: f.opcode, compressed: f.rsv & 0b100 != 0, wire_len: f.payload.len() })
            }
            0 => out.last_mut().expect("a continuation with no message before it").wire_len += f.payload.len(),
            _ => {}
        }
    }
    out
}

impl Capture {
    /// The `Sec-WebSocket-Extensions` value of the server's answer, if any.
    pub(crate) fn extensions(&self) -> Option<&str> {
        self.response.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim())
        })
    }
}
