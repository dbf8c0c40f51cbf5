//! `TlsHandler` over a real ringwire-io `EventLoop` on loopback, on every backend here.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use ringwire_io::bytes::Bytes;
use ringwire_io::{ConnId, EventLoop, Handler, Io, LoopConfig, RecvBuf, Waker};
use ringwire_testkit::backends;
use ringwire_tls::{TlsError, TlsHandler, TlsOptions};
use rustls::{ClientConnection, StreamOwned};

/// The inner handler: echoes on accepted connections; on connected ones (the loop's own TLS
/// client) sends `to_send` and closes once it is all back. It sees plaintext only.
#[derive(Default)]
struct Echo {
    accepted: Vec<ConnId>,
    closed: Vec<(ConnId, Option<io::ErrorKind>, String)>,
    stop_after: usize,
    abort: Arc<AtomicBool>,
    client: Option<ConnId>,
    to_send: Vec<Vec<u8>>,
    got: Vec<u8>,
    client_sent: usize,
    /// Bytes sent on each accepted connection from `on_accept` (with `accept_early`, before
    /// the TLS handshake is done), then closed.
    greet_and_close: Option<usize>,
}

impl Handler for Echo {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        assert_eq!(io.queued(conn), 0);
        self.accepted.push(conn);
        if let Some(n) = self.greet_and_close {
            io.send(conn, Bytes::from(pattern(n, 7)));
            io.close(conn);
        }
    }
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        result.expect("tls connect");
        self.client = Some(conn);
        for m in &self.to_send {
            io.send(conn, Bytes::from(m.clone()));
        }
        let total: usize = self.to_send.iter().map(Vec::len).sum();
        assert_eq!(io.queued(conn), total, "queued() counts plaintext");
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        if Some(conn) == self.client {
            self.got.extend_from_slice(&data);
            if self.got.len() == self.to_send.iter().map(Vec::len).sum::<usize>() {
                io.close(conn);
            }
        } else {
            io.send(conn, Bytes::copy_from_slice(&data));
        }
    }
    fn on_sent(&mut self, _io: &mut impl Io, conn: ConnId, bytes: usize) {
        if Some(conn) == self.client {
            self.client_sent += bytes;
        }
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<io::Error>) {
        self.closed.push((conn, error.as_ref().map(io::Error::kind), error.map(|e| e.to_string()).unwrap_or_default()));
        if self.closed.len() >= self.stop_after {
            io.stop();
        }
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.abort.load(Ordering::SeqCst) {
            io.stop();
        }
    }
}

/// Stops the loop if the client thread panics (so a failure does not hang the test).
struct StopOnPanic(Waker, Arc<AtomicBool>);
impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.1.store(true, Ordering::SeqCst);
            let _ = self.0.wake();
        }
    }
}

/// Stops a loop that runs past `WATCHDOG` (a regression must fail a test, not hang it): after
/// that long it sets `abort` and wakes the loop, whose inner handler stops on `abort` in
/// `on_wake`. Dropping the returned sender (at the end of the test) ends the watchdog.
fn watchdog(waker: Waker, abort: Arc<AtomicBool>) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(WATCHDOG) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            abort.store(true, Ordering::SeqCst);
            let _ = waker.wake();
        }
    });
    tx
}

const WATCHDOG: Duration = Duration::from_secs(20);

struct Server {
    ev: EventLoop,
    waker: Waker,
    addr: SocketAddr,
}

fn server(choice: ringwire_io::IoChoice) -> Server {
    let backend = ringwire_io::detect(choice).unwrap().backend;
    let (mut ev, waker) = EventLoop::new(backend, &LoopConfig::default()).unwrap();
    let listener = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 128).unwrap().remove(0);
    let addr = listener.local_addr().unwrap();
    ev.add_listener(listener).unwrap();
    Server { ev, waker, addr }
}

/// Runs a fresh loop on `choice` with `tls` (its inner `Echo` stops it) while the client
/// body made by `client(addr)` (here, before the loop runs) runs on another thread.
fn serve<F: FnOnce() + Send + 'static>(
    choice: ringwire_io::IoChoice,
    mut tls: TlsHandler<Echo>,
    client: impl FnOnce(SocketAddr) -> F,
) -> TlsHandler<Echo> {
    let Server { mut ev, waker, addr } = server(choice);
    let abort = tls.inner().abort.clone();
    let body = client(addr);
    let _dog = watchdog(waker.clone(), abort.clone());
    let t = std::thread::spawn(move || {
        let _guard = StopOnPanic(waker, abort);
        body();
    });
    ev.run(&mut tls).unwrap();
    t.join().expect("client thread");
    assert!(!tls.inner().abort.load(Ordering::SeqCst), "the watchdog stopped the loop");
    tls
}

/// An echo server that stops once `stop_after` connections its inner handler saw are closed.
fn echo_server(p: &Pki, stop_after: usize) -> TlsHandler<Echo> {
    TlsHandler::server(Echo { stop_after, ..Echo::default() }, server_config(p))
}

fn tls_stream(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    StreamOwned::new(ClientConnection::new(client_config(ca), localhost()).unwrap(), tcp)
}

/// A TLS client that shook hands and had "ping" echoed; its raw socket, for what follows.
fn handshake_and_ping(addr: SocketAddr, ca: &rustls::pki_types::CertificateDer<'static>) -> TcpStream {
    let mut s = tls_stream(addr, ca);
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    s.sock
}

/// Echo of `msgs` one after the other, then a clean close: close_notify both ways.
fn echo_and_close(mut s: StreamOwned<ClientConnection, TcpStream>, msgs: &[Vec<u8>]) {
    for m in msgs {
        s.write_all(m).unwrap();
        let mut back = vec![0; m.len()];
        s.read_exact(&mut back).unwrap();
        assert!(back == *m, "echo of {} bytes differs", m.len());
    }
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    s.conn.send_close_notify();
    s.flush().unwrap();
    let mut rest = Vec::new();
    // Ok(0) only after the server's close_notify (rustls reports a bare EOF as an error)
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn echo_small_and_1mib_then_clean_close() {
    // the second certificate is larger than one TLS record (its handshake message spans records)
    for p in [pki(), big_pki()] {
        for choice in backends() {
            let ca = p.ca.clone();
            let tls = serve(choice, echo_server(&p, 1), |addr| {
                move || echo_and_close(tls_stream(addr, &ca), &[pattern(32, 1), pattern(1 << 20, 2)])
            });
            let e = tls.inner();
            assert_eq!(e.accepted.len(), 1, "{choice}");
            assert_eq!(e.closed.len(), 1, "{choice}");
            assert_eq!(e.closed[0].1, None, "{choice}: a clean close: {}", e.closed[0].2);
            assert_eq!(tls.sessions(), 0);
        }
    }
}

#[test]
fn the_handlers_own_client_side_echoes_through_its_server_side() {
    let p = pki();
    for choice in backends() {
        let Server { mut ev, waker, addr } = server(choice);
        let conn = ev.connect(addr).unwrap();
        let msgs = vec![pattern(32, 3), pattern(1 << 20, 4)];
        let inner = Echo { stop_after: 2, to_send: msgs.clone(), ..Echo::default() };
        let mut tls = TlsHandler::new(inner, Some(server_config(&p)), Some(client_config(&p.ca)));
        tls.set_server_name(conn, localhost());
        let _dog = watchdog(waker, tls.inner().abort.clone());
        ev.run(&mut tls).unwrap();
        let e = tls.inner();
        assert!(!e.abort.load(Ordering::SeqCst), "{choice}: the watchdog stopped the loop");
        assert_eq!(e.client, Some(conn));
        assert_eq!(e.got, msgs.concat(), "{choice}");
        assert_eq!(e.client_sent, msgs.iter().map(Vec::len).sum::<usize>(), "{choice}: on_sent counts plaintext");
        assert_eq!(e.accepted.len(), 1);
        let errors: Vec<_> = e.closed.iter().map(|c| (c.1, c.2.as_str())).collect();
        assert_eq!(errors, vec![(None, ""), (None, "")], "{choice}: both ends close cleanly");
    }
}

#[test]
fn a_client_with_an_unknown_ca_gets_on_connect_err_and_on_closed() {
    let p = pki();
    let other = pki();
    for choice in backends() {
        let Server { mut ev, waker, addr } = server(choice);
        let conn = ev.connect(addr).unwrap();
        // on_connect(Err) must not be unwrapped: a handler that records instead
        struct Rec(Vec<String>, Arc<AtomicBool>);
        impl Handler for Rec {
            fn on_wake(&mut self, io: &mut impl Io) {
                if self.1.load(Ordering::SeqCst) {
                    self.0.push("watchdog".into());
                    io.stop();
                }
            }
            fn on_accept(&mut self, _: &mut impl Io, _: ConnId, _: SocketAddr) {
                self.0.push("server accept".into());
            }
            fn on_connect(&mut self, _: &mut impl Io, _: ConnId, r: io::Result<()>) {
                // the first callback holds the TlsError too, not a copy of its kind and text
                let unknown_issuer = r.as_ref().err().and_then(|e| e.get_ref()).is_some_and(|e| {
                    matches!(
                        e.downcast_ref::<TlsError>(),
                        Some(TlsError::Protocol(rustls::Error::InvalidCertificate(
                            rustls::CertificateError::UnknownIssuer
                        )))
                    )
                });
                self.0.push(format!("connect {:?} {unknown_issuer}", r.map_err(|e| e.kind())));
            }
            fn on_data(&mut self, _: &mut impl Io, _: ConnId, _: RecvBuf<'_>) {}
            fn on_closed(&mut self, io: &mut impl Io, _: ConnId, e: Option<io::Error>) {
                let tls = e.as_ref().and_then(|e| e.get_ref()).and_then(|e| e.downcast_ref::<TlsError>());
                self.0.push(format!(
                    "closed {:?}",
                    tls.map(|t| matches!(
                        t,
                        TlsError::Protocol(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
                    ))
                ));
                io.stop();
            }
        }
        let abort = Arc::new(AtomicBool::new(false));
        let mut tls =
            TlsHandler::new(Rec(Vec::new(), abort.clone()), Some(server_config(&p)), Some(client_config(&other.ca)))
                .default_server_name(localhost());
        let _dog = watchdog(waker, abort);
        ev.run(&mut tls).unwrap();
        let _ = conn;
        assert_eq!(tls.inner().0, vec!["connect Err(InvalidData) true", "closed Some(true)"], "{choice}");
    }
}

#[test]
fn stalled_and_garbage_clients_are_closed_and_others_still_served() {
    let p = pki();
    for choice in backends() {
        let opts = TlsOptions { handshake_timeout: Duration::from_millis(300), ..TlsOptions::default() };
        let ca = p.ca.clone();
        let tls = serve(choice, echo_server(&p, 1).with_options(opts), |addr| {
            move || {
                let started = Instant::now();
                // a client that stalls mid-handshake: part of a record header, then nothing
                let mut stall = TcpStream::connect(addr).unwrap();
                stall.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                stall.write_all(&[0x16, 0x03, 0x01]).unwrap();
                // a client that sends plaintext HTTP
                let mut garbage = TcpStream::connect(addr).unwrap();
                garbage.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                garbage.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                let mut got = Vec::new();
                let _ = garbage.read_to_end(&mut got); // EOF (or a reset) once the server closes
                assert_eq!(got.first(), Some(&21), "the server answers garbage with an alert record");
                assert!(started.elapsed() < Duration::from_secs(3), "garbage closed at once");
                drop(garbage);
                let mut buf = [0u8; 64];
                let r = stall.read(&mut buf);
                assert!(
                    matches!(r, Ok(0)) || r.is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
                    "stall closed"
                );
                let waited = started.elapsed();
                assert!(waited >= Duration::from_millis(250), "not before the handshake timeout: {waited:?}");
                assert!(waited < Duration::from_secs(4), "the handshake timeout: {waited:?}");
                // the server still serves
                echo_and_close(tls_stream(addr, &ca), &[pattern(32, 9)]);
            }
        });
        let e = tls.inner();
        assert_eq!(e.accepted.len(), 1, "{choice}: the inner handler sees the good client only");
        assert_eq!(e.closed.iter().map(|c| c.1).collect::<Vec<_>>(), vec![None], "{choice}");
    }
}

/// A handler around another, with hooks at `on_data` (before it) and `on_turn_end` (in
/// place of it): for tests that watch or steer a `TlsHandler` from outside.
struct Around<H, K> {
    inner: H,
    hooks: K,
}

trait Hooks<H> {
    fn on_data(&mut self, _inner: &mut H) {}
    /// Runs at the end of a turn; calls `inner.on_turn_end` itself.
    fn on_turn_end(&mut self, inner: &mut H, io: &mut impl Io);
}

impl<H: Handler, K: Hooks<H>> Handler for Around<H, K> {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        self.inner.on_accept(io, conn, peer);
    }
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        self.inner.on_connect(io, conn, result);
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.hooks.on_data(&mut self.inner);
        self.inner.on_data(io, conn, data);
    }
    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        self.inner.on_sent(io, conn, bytes);
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<io::Error>) {
        self.inner.on_closed(io, conn, error);
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.inner.on_timer(io, conn);
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        self.inner.on_wake(io);
    }
    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.hooks.on_turn_end(&mut self.inner, io);
    }
}

/// The most handshake steps a `TlsHandler` ran between two `on_turn_end` calls.
struct StepsPerTurn {
    mark: u64,
    most: u64,
}

impl<H: Handler> Hooks<TlsHandler<H>> for StepsPerTurn {
    fn on_turn_end(&mut self, tls: &mut TlsHandler<H>, io: &mut impl Io) {
        // the cap counts from one on_turn_end (where deferred steps run) to the next
        let steps = tls.handshake_steps();
        self.most = self.most.max(steps - self.mark);
        self.mark = steps;
        tls.on_turn_end(io);
    }
}

#[test]
fn a_handshake_storm_is_spread_over_turns() {
    let p = pki();
    const N: usize = 8;
    for cap in [1, 3] {
        for choice in backends() {
            let Server { mut ev, waker, addr } = server(choice);
            let opts = TlsOptions { handshakes_per_turn: cap, ..TlsOptions::default() };
            let tls = echo_server(&p, N).with_options(opts);
            let abort = tls.inner().abort.clone();
            // every client hello (one write each) is in the server's socket buffers before
            // the loop runs
            let clients: Vec<_> = (0..N)
                .map(|_| {
                    let mut s = tls_stream(addr, &p.ca);
                    assert!(s.conn.write_tls(&mut s.sock).unwrap() > 0);
                    assert!(!s.conn.wants_write(), "the hello in one write");
                    s
                })
                .collect();
            let _dog = watchdog(waker.clone(), abort.clone());
            let t = std::thread::spawn(move || {
                let _guard = StopOnPanic(waker, abort);
                for (i, s) in clients.into_iter().enumerate() {
                    echo_and_close(s, &[pattern(32, i as u8)]);
                }
            });
            let mut counted = Around { inner: tls, hooks: StepsPerTurn { mark: 0, most: 0 } };
            ev.run(&mut counted).unwrap();
            t.join().expect("client thread");
            let tls = counted.inner;
            let e = tls.inner();
            assert!(!e.abort.load(Ordering::SeqCst), "{choice}: the watchdog stopped the loop");
            assert_eq!(e.accepted.len(), N, "{choice}");
            assert!(e.closed.iter().all(|c| c.1.is_none()), "{choice}: {:?}", e.closed);
            assert!(tls.handshake_steps() >= 2 * N as u64, "{choice}: two steps (hello, finished) each");
            assert!(
                counted.hooks.most <= cap as u64,
                "{choice}: {} handshake steps in a turn, cap {cap}",
                counted.hooks.most
            );
            assert!(tls.deferred_handshakes() > 0, "{choice}: the cap of {cap} per turn put some off");
        }
    }
}

/// On each backend: a client shakes hands, has "ping" echoed, then does `then` with its raw
/// socket. Returns how the inner handler saw that one connection close, per backend.
fn closed_after_ping(then: fn(TcpStream)) -> Vec<(ringwire_io::IoChoice, Option<io::ErrorKind>, String)> {
    let p = pki();
    let mut seen = Vec::new();
    for choice in backends() {
        let ca = p.ca.clone();
        let tls = serve(choice, echo_server(&p, 1), |addr| move || then(handshake_and_ping(addr, &ca)));
        let e = tls.inner();
        assert_eq!((e.accepted.len(), e.closed.len()), (1, 1), "{choice}");
        seen.push((choice, e.closed[0].1, e.closed[0].2.clone()));
    }
    seen
}

#[test]
fn a_peer_eof_without_close_notify_is_reported_as_truncation() {
    let seen = closed_after_ping(|mut sock| {
        sock.shutdown(std::net::Shutdown::Write).unwrap(); // EOF, no close_notify
        let _ = sock.read_to_end(&mut Vec::new());
    });
    for (choice, kind, msg) in seen {
        assert_eq!(kind, Some(io::ErrorKind::UnexpectedEof), "{choice}: {msg}");
        assert!(msg.contains("close_notify"), "{msg}");
    }
}

#[test]
fn a_bad_record_after_the_handshake_reaches_the_inner_handler_as_an_error() {
    let seen = closed_after_ping(|mut sock| {
        // an application-data record whose tag cannot verify
        sock.write_all(&[23, 3, 3, 0, 20]).unwrap();
        sock.write_all(&[0x55; 20]).unwrap();
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
        assert!(!rest.is_empty(), "an alert comes back before the close");
    });
    for (choice, kind, msg) in seen {
        assert_eq!(kind, Some(io::ErrorKind::InvalidData), "{choice}: {msg}");
        assert!(msg.starts_with("tls: "), "{msg}");
    }
}

/// The inner handler of a loop of TLS clients: records which finish their handshake and
/// which close; it stops when every connection did one or the other.
struct Clients {
    n: usize,
    connected: Vec<ConnId>,
    closed: Vec<ConnId>,
    abort: Arc<AtomicBool>,
}

impl Clients {
    fn stop_when_done(&mut self, io: &mut impl Io) {
        if self.connected.len() + self.closed.len() == self.n {
            io.stop();
        }
    }
}

impl Handler for Clients {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        if result.is_ok() {
            self.connected.push(conn);
            self.stop_when_done(io);
        }
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, _error: Option<io::Error>) {
        self.closed.push(conn);
        self.stop_when_done(io);
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.abort.load(Ordering::SeqCst) {
            io.stop();
        }
    }
}

/// Hooks around a `TlsHandler` of client connections `ids`: the first `on_data` of the loop
/// waits until `open` is set (the peers sent all they have), so that the handshakes are read
/// in the turns that follow, all at once, and the cap defers most of them. At the end of the
/// first turn where half of the connections were deferred (they come in one burst), every
/// other connection still handshaking is aborted (so live and closed entries alternate in
/// the deferred queue).
struct Gate {
    ids: Vec<ConnId>,
    open: Arc<AtomicBool>,
    waited: bool,
    aborted: Vec<ConnId>,
}

impl Hooks<TlsHandler<Clients>> for Gate {
    fn on_data(&mut self, _tls: &mut TlsHandler<Clients>) {
        if !self.waited {
            let started = Instant::now();
            while !self.open.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20)); // the last bytes reach the socket buffers
            self.waited = true;
        }
    }
    fn on_turn_end(&mut self, tls: &mut TlsHandler<Clients>, io: &mut impl Io) {
        tls.on_turn_end(io);
        if self.aborted.is_empty() && tls.deferred_handshakes() >= (self.ids.len() / 2) as u64 {
            let done = &tls.inner().connected;
            let pending: Vec<_> = self.ids.iter().copied().filter(|id| !done.contains(id)).collect();
            for id in pending.into_iter().skip(1).step_by(2) {
                io.abort(id);
                self.aborted.push(id);
            }
        }
    }
}

#[test]
fn deferred_handshakes_behind_one_that_closed_still_finish() {
    const N: usize = 9;
    let p = big_pki(); // flights of several reads: a deferred step may send nothing
    for choice in backends() {
        // a rustls server on a thread: it reads every client hello, then writes all its
        // flights at once
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = server_config(&p);
        let open = Arc::new(AtomicBool::new(false));
        let written = open.clone();
        let server = std::thread::spawn(move || {
            let mut conns: Vec<_> = (0..N)
                .map(|_| {
                    let (s, _) = listener.accept().unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    (s, rustls::ServerConnection::new(cfg.clone()).unwrap())
                })
                .collect();
            for (s, c) in &mut conns {
                while !c.wants_write() {
                    c.read_tls(s).unwrap();
                    c.process_new_packets().unwrap();
                }
            }
            for (s, c) in &mut conns {
                while c.wants_write() {
                    c.write_tls(s).unwrap();
                }
            }
            written.store(true, Ordering::SeqCst);
            for (s, c) in conns {
                let _ = StreamOwned::new(c, s).read_to_end(&mut Vec::new()); // until the client goes
            }
        });
        let backend = ringwire_io::detect(choice).unwrap().backend;
        let (mut ev, waker) = EventLoop::new(backend, &LoopConfig::default()).unwrap();
        let ids: Vec<_> = (0..N).map(|_| ev.connect(addr).unwrap()).collect();
        let abort = Arc::new(AtomicBool::new(false));
        let inner = Clients { n: N, connected: Vec::new(), closed: Vec::new(), abort: abort.clone() };
        let opts = TlsOptions { handshakes_per_turn: 1, ..TlsOptions::default() };
        let tls = TlsHandler::client(inner, client_config(&p.ca)).default_server_name(localhost()).with_options(opts);
        let mut gate = Around { inner: tls, hooks: Gate { ids, open, waited: false, aborted: Vec::new() } };
        let dog = watchdog(waker, abort.clone());
        ev.run(&mut gate).unwrap();
        assert!(
            !abort.load(Ordering::SeqCst),
            "{choice}: the watchdog stopped the loop (a deferred handshake stalled)"
        );
        drop((dog, ev)); // the connections close: the server thread ends
        server.join().unwrap();
        let e = gate.inner.inner();
        assert!(
            !gate.hooks.aborted.is_empty(),
            "{choice}: the cap of 1 deferred the others ({} deferred, {} connected)",
            gate.inner.deferred_handshakes(),
            e.connected.len()
        );
        let closed: std::collections::HashSet<_> = e.closed.iter().copied().collect();
        assert_eq!(closed, gate.hooks.aborted.iter().copied().collect(), "{choice}: only the aborted ones close");
        assert_eq!(e.connected.len(), N - gate.hooks.aborted.len(), "{choice}: the others finish");
    }
}

/// An inner handler that connects from `on_wake` and sets a timer right after `io.connect`
/// (as a client's connect timeout does); on that timer it aborts the connection if its
/// handshake is not done, else closes it. It stops when that connection is closed.
struct TimerClient {
    addr: SocketAddr,
    after: Duration,
    conn: Option<ConnId>,
    connected: bool,
    events: Vec<String>,
    started: Instant,
    fired: Option<Duration>,
    abort: Arc<AtomicBool>,
}

impl Handler for TimerClient {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_connect(&mut self, _io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        assert_eq!(Some(conn), self.conn);
        self.connected = result.is_ok();
        self.events.push(format!("connect {:?}", result.map_err(|e| e.kind())));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        assert_eq!(Some(conn), self.conn);
        self.events.push("timer".into());
        self.fired = Some(self.started.elapsed());
        if self.connected { io.close(conn) } else { io.abort(conn) }
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, _error: Option<io::Error>) {
        if Some(conn) == self.conn {
            self.events.push("closed".into());
            io.stop();
        }
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.abort.load(Ordering::SeqCst) {
            return io.stop();
        }
        if self.conn.is_none() {
            let id = io.connect(self.addr).unwrap();
            io.set_timer(id, Some(io.now() + self.after));
            self.conn = Some(id);
        }
    }
}

/// Runs a `TimerClient` (timer `after` its connect) against `addr` on `ev` (which may serve
/// TLS itself); returns its events and when its timer fired.
fn timer_client(
    mut ev: EventLoop,
    waker: Waker,
    addr: SocketAddr,
    after: Duration,
    p: &Pki,
) -> (Vec<String>, Option<Duration>) {
    let abort = Arc::new(AtomicBool::new(false));
    let inner = TimerClient {
        addr,
        after,
        conn: None,
        connected: false,
        events: Vec::new(),
        started: Instant::now(),
        fired: None,
        abort: abort.clone(),
    };
    let mut tls =
        TlsHandler::new(inner, Some(server_config(p)), Some(client_config(&p.ca))).default_server_name(localhost());
    waker.wake().unwrap();
    let _dog = watchdog(waker, abort.clone());
    ev.run(&mut tls).unwrap();
    assert!(!abort.load(Ordering::SeqCst), "the watchdog stopped the loop");
    let e = tls.into_inner();
    (e.events, e.fired)
}

#[test]
fn the_inner_handlers_timer_on_a_client_connection_fires_during_and_after_the_handshake() {
    let p = pki();
    for choice in backends() {
        // a peer that accepts (in the kernel's backlog) and never answers: the handshake
        // hangs; the inner timer (not the 10 s handshake timeout) ends it
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = ringwire_io::detect(choice).unwrap().backend;
        let (ev, waker) = EventLoop::new(backend, &LoopConfig::default()).unwrap();
        let (events, fired) = timer_client(ev, waker, silent.local_addr().unwrap(), Duration::from_millis(300), &p);
        assert_eq!(events, ["timer", "connect Err(ConnectionAborted)", "closed"], "{choice}");
        let fired = fired.unwrap();
        assert!(fired >= Duration::from_millis(250) && fired < Duration::from_secs(5), "{choice}: {fired:?}");
        // the loop's own TLS server: the handshake ends first, the inner timer fires after it
        let Server { ev, waker, addr } = server(choice);
        let (events, fired) = timer_client(ev, waker, addr, Duration::from_millis(300), &p);
        assert_eq!(events, ["connect Ok(())", "timer", "closed"], "{choice}");
        let fired = fired.unwrap();
        assert!(fired >= Duration::from_millis(250) && fired < Duration::from_secs(5), "{choice}: {fired:?}");
    }
}

/// Inner handler of the mixed test: echoes on accepted connections; on each connected one
/// sends `payload` and closes once it is all back.
#[derive(Default)]
struct Mixed {
    payload: Vec<u8>,
    plain_to: Option<SocketAddr>,
    tls_to: Option<SocketAddr>,
    plain: Option<ConnId>,
    tls: Option<ConnId>,
    got: std::collections::HashMap<ConnId, Vec<u8>>,
    closed: Vec<(ConnId, Option<io::ErrorKind>)>,
    abort: Arc<AtomicBool>,
}

impl Handler for Mixed {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        result.expect("connect");
        io.send(conn, Bytes::from(self.payload.clone()));
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        if Some(conn) != self.plain && Some(conn) != self.tls {
            return io.send(conn, Bytes::copy_from_slice(&data)); // the loop's own TLS server
        }
        let got = self.got.entry(conn).or_default();
        got.extend_from_slice(&data);
        if got.len() == self.payload.len() {
            io.close(conn);
        }
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<io::Error>) {
        self.closed.push((conn, error.map(|e| e.kind())));
        if self.closed.len() == 3 {
            io.stop();
        }
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.abort.load(Ordering::SeqCst) {
            io.stop();
        }
    }
}

/// Opens the two client connections of [`Mixed`] at the first wake, through
/// `TlsHandler::split`: one plain, one TLS with a config of its own.
struct OpenOnWake(TlsHandler<Mixed>, Arc<rustls::ClientConfig>);

impl Handler for OpenOnWake {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        self.0.on_accept(io, conn, peer);
    }
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: io::Result<()>) {
        self.0.on_connect(io, conn, result);
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.0.on_data(io, conn, data);
    }
    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        self.0.on_sent(io, conn, bytes);
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<io::Error>) {
        self.0.on_closed(io, conn, error);
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.0.on_timer(io, conn);
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        let (m, mut tio) = self.0.split(io);
        if let (Some(plain), Some(tls)) = (m.plain_to.take(), m.tls_to.take()) {
            m.plain = Some(tio.connect_plain(plain).unwrap());
            m.tls = Some(tio.connect_tls_with(tls, localhost(), self.1.clone()).unwrap());
        }
        self.0.on_wake(io);
    }
    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.0.on_turn_end(io);
    }
}

#[test]
fn plain_connections_pass_through_beside_tls_ones_with_their_own_config() {
    let p = pki();
    let payload = pattern(200_000, 7);
    for choice in backends() {
        // a plain TCP echo peer: what it reads must be the payload itself, not TLS records
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let plain_addr = plain.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = plain.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break seen;
                }
                seen.extend_from_slice(&buf[..n]);
                s.write_all(&buf[..n]).unwrap();
            }
        });
        let Server { mut ev, waker, addr } = server(choice);
        let abort = Arc::new(AtomicBool::new(false));
        let inner = Mixed {
            payload: payload.clone(),
            plain_to: Some(plain_addr),
            tls_to: Some(addr),
            abort: abort.clone(),
            ..Mixed::default()
        };
        // no client config of the handler's own: the TLS connection brings one
        let tls = TlsHandler::new(inner, Some(server_config(&p)), None);
        let mut outer = OpenOnWake(tls, client_config(&p.ca));
        waker.wake().unwrap();
        let _dog = watchdog(waker, abort.clone());
        ev.run(&mut outer).unwrap();
        assert!(!abort.load(Ordering::SeqCst), "{choice}: the watchdog stopped the loop");
        let m = outer.0.inner();
        let (pc, tc) = (m.plain.unwrap(), m.tls.unwrap());
        assert!(m.got[&pc] == payload, "{choice}: plain echo");
        assert!(m.got[&tc] == payload, "{choice}: tls echo");
        assert!(peer.join().unwrap() == payload, "{choice}: the plain peer got the bytes as sent");
        let mut closed = m.closed.clone();
        closed.sort_by_key(|c| (c.0 != pc, c.0 != tc));
        assert_eq!(closed.len(), 3, "{choice}: {closed:?}");
        assert!(closed.iter().all(|c| c.1.is_none()), "{choice}: all clean (close_notify on the TLS ones): {closed:?}");
        assert_eq!(outer.0.sessions(), 0, "{choice}");
    }
}

#[test]
fn accept_early_tells_the_inner_handler_at_accept_and_sends_its_answer_after_the_handshake() {
    let p = pki();
    for choice in backends() {
        // 1,000 bytes sent from on_accept, before any TLS: they arrive, encrypted, after the
        // handshake, followed by close_notify.
        let opts = TlsOptions { accept_early: true, ..TlsOptions::default() };
        let inner = Echo { stop_after: 1, greet_and_close: Some(1000), ..Echo::default() };
        let tls = TlsHandler::server(inner, server_config(&p)).with_options(opts.clone());
        let ca = p.ca.clone();
        let tls = serve(choice, tls, move |addr| {
            move || {
                let mut s = tls_stream(addr, &ca);
                let mut got = Vec::new();
                assert_eq!(s.read_to_end(&mut got).unwrap(), 1000, "the answer, then close_notify");
                assert_eq!(got, pattern(1000, 7));
            }
        });
        assert_eq!(tls.inner().closed.len(), 1, "{choice:?}");
        assert_eq!(tls.inner().closed[0].1, None, "{choice:?}: a clean close");

        // More than MAX_SEND_CHUNK before the handshake: refused, the connection fails.
        let inner = Echo { stop_after: 1, greet_and_close: Some(ringwire_tls::MAX_SEND_CHUNK + 1), ..Echo::default() };
        let tls = TlsHandler::server(inner, server_config(&p)).with_options(opts);
        let ca = p.ca.clone();
        let tls = serve(choice, tls, move |addr| {
            move || {
                let mut s = tls_stream(addr, &ca);
                let mut got = Vec::new();
                assert!(s.read_to_end(&mut got).is_err() || got.is_empty(), "{choice:?}: nothing sent");
            }
        });
        let closed = &tls.inner().closed;
        assert_eq!(closed.len(), 1, "{choice:?}");
        assert_eq!(closed[0].1, Some(io::ErrorKind::NotConnected), "{choice:?}: {:?}", closed[0]);
    }
}
