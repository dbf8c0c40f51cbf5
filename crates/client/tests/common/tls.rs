//! wss:// test support: certificates made at test time (rcgen: a test CA, leaves it signs)
//! and a real ringwire TLS WebSocket echo server (ringwire-io's `EventLoop` with
//! `ringwire_tls::TlsHandler::server` around a small WebSocket echo handler).

#![allow(dead_code, unreachable_pub)]

use ringwire_client::rustls::server::WebPkiClientVerifier;
use ringwire_client::rustls::{self, RootCertStore, ServerConfig};
use ringwire_conn::handshake::{Accept, HandshakeLimits, parse_request};
use ringwire_io::bytes::Bytes;
use ringwire_io::{ConnId, EventLoop, Handler, Io, IoChoice, LoopConfig, RecvBuf};
use ringwire_testkit::{parse_frame, server_frame};
use ringwire_tls::{TlsError, TlsHandler};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use ringwire_testkit::tls::{Ca, Leaf};

pub fn ca() -> Ca {
    Ca::new()
}

/// A server config presenting `leaf` (and the CA), ALPN http/1.1, no client certificate.
pub fn server_config(ca: &Ca, leaf: &Leaf) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder().with_no_client_auth();
    finish(builder, ca, leaf)
}

/// Like [`server_config`] but requires a client certificate signed by `client_ca`.
pub fn server_config_mtls(ca: &Ca, leaf: &Leaf, client_ca: &Ca) -> Arc<ServerConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(client_ca.cert.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
    finish(ServerConfig::builder().with_client_cert_verifier(verifier), ca, leaf)
}

fn finish(
    builder: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>,
    ca: &Ca,
    leaf: &Leaf,
) -> Arc<ServerConfig> {
    let mut c = builder.with_single_cert(vec![leaf.cert.clone(), ca.cert.clone()], leaf.key_der()).unwrap();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// What the echo server saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Connections upgraded.
    pub upgraded: usize,
    /// Data frames received.
    pub frames: usize,
    /// How each connection the inner handler saw ended: `None` a clean close (close_notify
    /// seen), else the error's text (`TlsError::Truncated`: no close_notify).
    pub closed: Vec<Option<String>>,
}

#[derive(Default)]
struct Conn {
    buf: Vec<u8>,
    upgraded: bool,
}

/// A small WebSocket echo server at the io level: answers the upgrade, echoes each data
/// frame as it came (fragments stay fragments), answers pings and the close.
struct WsEcho {
    conns: HashMap<ConnId, Conn>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

impl Handler for WsEcho {
    fn on_accept(&mut self, _io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        self.conns.insert(conn, Conn::default());
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.buf.extend_from_slice(&data);
        if !c.upgraded {
            match parse_request(&c.buf, &HandshakeLimits::default()) {
                Ok(Some((req, used))) => {
                    io.send(conn, Bytes::from(req.accept(&Accept::default()).unwrap()));
                    c.buf.drain(..used);
                    c.upgraded = true;
                    self.seen.lock().unwrap().upgraded += 1;
                }
                Ok(None) => return,
                Err(e) => {
                    io.send(conn, Bytes::from(e.response()));
                    return io.close(conn);
                }
            }
        }
        while let Some((f, used)) = parse_frame(&c.buf) {
            c.buf.drain(..used);
            match f.opcode {
                0..=2 => {
                    self.seen.lock().unwrap().frames += 1;
                    io.send(conn, Bytes::from(server_frame(f.fin, f.opcode, &f.payload)));
                }
                8 => {
                    io.send(conn, Bytes::from(server_frame(true, 8u8, &f.payload)));
                    return io.close(conn);
                }
                9 => io.send(conn, Bytes::from(server_frame(true, 10u8, &f.payload))),
                _ => {}
            }
        }
    }
    fn on_closed(&mut self, _io: &mut impl Io, conn: ConnId, error: Option<io::Error>) {
        self.conns.remove(&conn);
        let e = error.map(|e| match e.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
            Some(t) => format!("{t}"),
            None => e.to_string(),
        });
        self.seen.lock().unwrap().closed.push(e);
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.stop.load(Ordering::SeqCst) {
            io.stop();
        }
    }
}

/// A wss echo server on its own thread and loop; stopped when dropped.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    waker: ringwire_io::Waker,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    pub fn start(choice: IoChoice, config: Arc<ServerConfig>) -> TlsServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let backend = ringwire_io::detect(choice).unwrap().backend;
            let (mut ev, waker) = EventLoop::new(backend, &LoopConfig::default()).unwrap();
            let listener = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 128).unwrap().remove(0);
            let addr = listener.local_addr().unwrap();
            ev.add_listener(listener).unwrap();
            tx.send((addr, waker)).unwrap();
            let inner = WsEcho { conns: HashMap::new(), seen: seen2, stop: stop2 };
            ev.run(&mut TlsHandler::server(inner, config)).unwrap();
        });
        let (addr, waker) = rx.recv().unwrap();
        TlsServer { addr, seen, stop, waker, thread: Some(thread) }
    }

    /// Waits (at most 5 s) until `n` connections are closed; returns how they ended.
    pub fn closed(&self, n: usize) -> Vec<Option<String>> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let closed = self.seen.lock().unwrap().closed.clone();
            if closed.len() >= n || std::time::Instant::now() > until {
                return closed;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
