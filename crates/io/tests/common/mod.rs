//! Test harness: runs an event loop on its own thread with one loopback listener.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ringwire_io::{Backend, ConnId, EventLoop, Handler, Io, LoopConfig, RecvBuf, Waker, bind_reuseport};

/// `both!(name)`: the tests `name::uring` and `name::epoll`, which run `name(backend)` on
/// each backend; the io_uring one is skipped with a line where io_uring is blocked (a
/// failure with `RINGWIRE_REQUIRE_URING=1`).
#[allow(unused_macros)] // not every test binary has per-backend tests
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                if ringwire_testkit::uring_usable() {
                    super::$name(ringwire_io::Backend::Uring);
                }
            }
            #[test]
            fn epoll() {
                super::$name(ringwire_io::Backend::Epoll);
            }
        }
    };
}

/// Wraps a handler: `on_wake` with the stop flag set stops the loop.
pub struct Stoppable<H> {
    pub inner: H,
    pub stop: Arc<AtomicBool>,
}

impl<H: Handler> Handler for Stoppable<H> {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        self.inner.on_accept(io, conn, peer)
    }
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        self.inner.on_connect(io, conn, result)
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.inner.on_data(io, conn, data)
    }
    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, bytes: usize) {
        self.inner.on_sent(io, conn, bytes)
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.inner.on_closed(io, conn, error)
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.inner.on_timer(io, conn)
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.stop.load(Ordering::SeqCst) {
            io.stop();
        }
        self.inner.on_wake(io)
    }
    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.inner.on_turn_end(io)
    }
}

pub struct Running<H> {
    pub addr: SocketAddr,
    pub waker: Waker,
    stop: Arc<AtomicBool>,
    join: JoinHandle<H>,
}

pub fn small_config() -> LoopConfig {
    // Few small buffers, so the io_uring buffer ring runs dry (ENOBUFS) under load.
    LoopConfig { buf_count: 8, buf_size: 4096, ring_entries: 64, ..LoopConfig::default() }
}

/// Starts a loop on `backend` with one listener on 127.0.0.1 and runs `h` on it.
pub fn start<H: Handler + Send + 'static>(backend: Backend, cfg: LoopConfig, h: H) -> Running<H> {
    let l = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 1024).expect("bind").remove(0);
    start_with_listener(backend, cfg, h, l)
}

/// Starts a loop on `backend` with listener `l` and runs `h` on it.
pub fn start_with_listener<H: Handler + Send + 'static>(
    backend: Backend,
    cfg: LoopConfig,
    h: H,
    l: TcpListener,
) -> Running<H> {
    start_logged(backend, cfg, h, l, None)
}

/// Like [`start_with_listener`]; with `log`, what the loop logs (tracing events on its
/// thread) is kept there, one line per event.
pub fn start_logged<H: Handler + Send + 'static>(
    backend: Backend,
    cfg: LoopConfig,
    h: H,
    l: TcpListener,
    log: Option<Log>,
) -> Running<H> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let addr = l.local_addr().unwrap();
    let join = std::thread::spawn(move || {
        let _guard = log.map(|log| tracing::subscriber::set_default(capture(log)));
        let (mut ev, waker) = EventLoop::new(backend, &cfg).expect("EventLoop::new");
        assert_eq!(ev.backend(), backend);
        ev.add_listener(l).expect("add_listener");
        tx.send(waker).unwrap();
        let mut s = Stoppable { inner: h, stop: stop2 };
        ev.run(&mut s).expect("run");
        s.inner
    });
    let waker = rx.recv_timeout(Duration::from_secs(10)).expect("loop start");
    Running { addr, waker, stop, join }
}

impl<H> Running<H> {
    /// Stops the loop and returns the handler.
    pub fn finish(self) -> H {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake().expect("wake");
        self.join()
    }

    /// Waits for the loop to stop by itself (a handler called `stop`); a loop that has not
    /// stopped after 20 s fails the test instead of hanging it.
    pub fn join(self) -> H {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while !self.join.is_finished() {
            assert!(std::time::Instant::now() < end, "event loop did not stop");
            std::thread::sleep(Duration::from_millis(2));
        }
        self.join.join().expect("loop thread panicked")
    }

    pub fn client(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

/// Echoes every byte; counts closes.
#[derive(Default)]
pub struct Echo {
    pub accepted: usize,
    pub closed: usize,
    pub errors: usize,
    pub sent: usize,
}

impl Handler for Echo {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, peer: SocketAddr) {
        assert!(peer.ip().is_loopback());
        self.accepted += 1;
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        // Kept as `Bytes`: on io_uring a large receive is sent back from its ring buffer.
        io.send(conn, data.into_bytes());
    }
    fn on_sent(&mut self, _io: &mut impl Io, _conn: ConnId, bytes: usize) {
        self.sent += bytes;
    }
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        self.closed += 1;
        if error.is_some() {
            self.errors += 1;
        }
    }
}

/// A deterministic byte pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ seed).collect()
}

/// Writes `data` on one thread while reading the same amount back on this one.
pub fn echo_roundtrip(s: &mut TcpStream, data: &[u8], write_piece: usize) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let owned = data.to_vec();
    let writer = std::thread::spawn(move || {
        for piece in owned.chunks(write_piece) {
            w.write_all(piece).unwrap();
        }
    });
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).expect("read echo");
    writer.join().unwrap();
    back
}

/// Writes `msgs[i]` on `conns[i]`, on every connection before reading any, then reads each
/// echo back and checks it is that connection's own message (`round` names the round in a
/// failure). Returns the bytes echoed.
pub fn echo_each(conns: &mut [TcpStream], msgs: &[Vec<u8>], round: impl std::fmt::Display) -> usize {
    assert_eq!(conns.len(), msgs.len());
    for (s, m) in conns.iter_mut().zip(msgs) {
        s.write_all(m).unwrap();
    }
    for (i, (s, m)) in conns.iter_mut().zip(msgs).enumerate() {
        let mut back = vec![0u8; m.len()];
        s.read_exact(&mut back).unwrap();
        assert!(back == *m, "round {round}: connection {i} got other bytes back than it sent");
    }
    msgs.iter().map(Vec::len).sum()
}

/// Runs the echo scenario against a started echo loop: many connections, many messages, and
/// one 16 MiB payload.
pub fn echo_scenario(r: &Running<Echo>) {
    let mut threads = Vec::new();
    for t in 0..6u8 {
        let mut s = r.client();
        threads.push(std::thread::spawn(move || {
            for m in 0..150usize {
                let msg = pattern(1 + (m * 37) % 3000, t.wrapping_add(m as u8));
                s.write_all(&msg).unwrap();
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap();
                assert_eq!(back, msg, "conn {t} message {m}");
            }
        }));
    }
    let mut big = r.client();
    let data = pattern(16 << 20, 0xA5);
    let back = echo_roundtrip(&mut big, &data, 1 << 20);
    assert!(back == data, "16 MiB echo differs");
    for t in threads {
        t.join().unwrap();
    }
}

/// Log lines captured from a loop thread.
pub type Log = Arc<std::sync::Mutex<Vec<String>>>;

/// A tracing subscriber that keeps each event in `log` as "LEVEL message".
pub fn capture(log: Log) -> impl tracing::Subscriber + Send + Sync {
    Capture(log)
}

/// See [`capture`].
struct Capture(Log);

/// Takes the `message` field of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0.lock().unwrap().push(format!("{} {}", event.metadata().level(), m.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The TCP state (as in `/proc/net/tcp`, e.g. 1 established, 4 FIN_WAIT1) of the IPv4
/// socket whose local port is `local` and remote port `remote`, if the kernel still has one.
pub fn tcp_state(local: u16, remote: u16) -> Option<u8> {
    ringwire_testkit::tcp_table()
        .into_iter()
        .find(|row| row.local.port() == local && row.remote.port() == remote)
        .map(|row| row.state)
}
