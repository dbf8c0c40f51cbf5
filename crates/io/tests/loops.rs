//! Loop behaviour over loopback, run on both backends.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Echo, echo_each, echo_scenario, pattern, small_config, start};
use ringwire_io::bytes::Bytes;
use ringwire_io::{Backend, ConnId, Handler, Io, LoopConfig, RecvBuf};

fn echo_many(backend: Backend) {
    let r = start(backend, small_config(), Echo::default());
    echo_scenario(&r);
    let h = r.finish();
    assert_eq!(h.accepted, 7);
    assert!(h.sent >= (16 << 20), "on_sent reported {} bytes", h.sent);
}
both!(echo_many);

fn echo_default_config(backend: Backend) {
    let r = start(backend, LoopConfig::default(), Echo::default());
    let mut s = r.client();
    let data = pattern(3 << 20, 7);
    let back = common::echo_roundtrip(&mut s, &data, 100_000);
    assert!(back == data);
    drop(s);
    r.finish();
}
both!(echo_default_config);

/// More connections with data at once than the initial io_uring buffer window (32): recvs end
/// with ENOBUFS until the window has grown, and every byte still comes back in order, also
/// after a quiet spell that shrinks the window again.
fn echo_bursts_past_the_buffer_window(backend: Backend) {
    let cfg = LoopConfig { buf_count: 512, buf_size: 1024, ..LoopConfig::default() };
    let r = start(backend, cfg, Echo::default());
    let mut conns: Vec<_> = (0..150).map(|_| r.client()).collect();
    for round in 0..5u8 {
        if round == 3 {
            // Quiet for over two window periods: the io_uring loop shrinks the buffer window
            // (re-registering its ring) before the next burst grows it again.
            std::thread::sleep(Duration::from_millis(1200));
        }
        let msgs: Vec<_> = (0..conns.len()).map(|i| pattern(3000 + i, round ^ i as u8)).collect();
        echo_each(&mut conns, &msgs, round);
    }
    drop(conns);
    let h = r.finish();
    assert_eq!(h.accepted, 150);
}
both!(echo_bursts_past_the_buffer_window);

/// Queues `total` bytes in many chunks on accept, then close() or abort().
struct SendThenClose {
    total: usize,
    abort: bool,
    closed: Vec<Option<String>>,
    /// Input is allowed (and ignored).
    quiet: bool,
}

impl Handler for SendThenClose {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        let data = Bytes::from(pattern(self.total, 3));
        let mut off = 0;
        while off < data.len() {
            let end = (off + 7919).min(data.len());
            io.send(conn, data.slice(off..end));
            off = end;
        }
        assert_eq!(io.queued(conn), self.total);
        if self.abort {
            io.abort(conn);
            assert_eq!(io.queued(conn), 0, "abort discards queued output");
        } else {
            io.close(conn);
        }
        // Sends after close are dropped, not queued.
        io.send(conn, Bytes::from_static(b"late"));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {
        assert!(self.quiet, "no data expected");
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.closed.push(error.map(|e| e.to_string()));
        io.stop();
        // The id is dead now: everything on it is a no-op.
        io.send(conn, Bytes::from_static(b"x"));
        assert_eq!(io.queued(conn), 0);
        assert_eq!(io.peer_addr(conn), None);
        io.close(conn);
    }
}

fn close_delivers_everything(backend: Backend) {
    let total = 6 << 20;
    let r = start(backend, small_config(), SendThenClose { total, abort: false, closed: vec![], quiet: false });
    let mut s = r.client();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to EOF");
    assert_eq!(got.len(), total);
    assert!(got == pattern(total, 3));
    drop(s); // ends the server's linger
    let h = r.join();
    assert_eq!(h.closed, vec![None]);
}
both!(close_delivers_everything);

fn abort_discards(backend: Backend) {
    let total = 8 << 20;
    let r = start(backend, small_config(), SendThenClose { total, abort: true, closed: vec![], quiet: false });
    let mut s = r.client();
    let mut got = Vec::new();
    // EOF or reset, but never the queued data.
    let _ = s.read_to_end(&mut got);
    assert!(got.len() < total, "abort delivered everything");
    let h = r.join();
    assert_eq!(h.closed, vec![None]);
}
both!(abort_discards);

/// Pauses after the first data arrives (and once more when `again_at` bytes are in) and
/// resumes from a timer `hold` later; records everything.
#[derive(Default)]
struct PauseResume {
    hold: Duration,
    again_at: Option<usize>,
    paused: bool,
    pauses: usize,
    got: Vec<u8>,
    violations: usize,
    closed: usize,
}

impl PauseResume {
    fn new(hold: Duration, again_at: Option<usize>) -> Self {
        Self { hold, again_at, ..Self::default() }
    }
}

impl Handler for PauseResume {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        if self.paused {
            self.violations += 1;
        }
        self.got.extend_from_slice(&data);
        if self.pauses == 0 || (self.pauses == 1 && self.again_at.is_some_and(|n| self.got.len() >= n)) {
            self.pauses += 1;
            self.paused = true;
            io.pause_read(conn);
            io.pause_read(conn); // idempotent
            io.set_timer(conn, Some(io.now() + self.hold));
            // Tell the peer it may send the rest now.
            io.send(conn, Bytes::from_static(b"P"));
        }
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.paused = false;
        io.resume_read(conn);
    }
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        assert!(error.is_none(), "{error:?}");
        self.closed += 1;
        io.stop();
    }
}

fn pause_resume_loses_nothing(backend: Backend) {
    let r = start(backend, small_config(), PauseResume::new(Duration::from_millis(150), Some(1 << 20)));
    let mut s = r.client();
    let data = pattern(3 << 20, 9);
    s.write_all(&data[..100]).unwrap();
    let mut p = [0u8; 1];
    s.read_exact(&mut p).unwrap(); // paused now
    // Everything else arrives while the server is paused (and again after 1 MiB).
    let mut w = s.try_clone().unwrap();
    let rest = data[100..].to_vec();
    let writer = std::thread::spawn(move || {
        for piece in rest.chunks(65_536) {
            w.write_all(piece).unwrap();
        }
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    s.read_exact(&mut p).unwrap(); // second pause
    writer.join().unwrap();
    let mut tail = Vec::new();
    s.read_to_end(&mut tail).unwrap(); // the server closes after our EOF
    let h = r.join();
    assert_eq!(h.violations, 0, "on_data while paused");
    assert_eq!(h.pauses, 2);
    assert_eq!(h.got.len(), data.len());
    assert!(h.got == data, "bytes lost or reordered");
    assert_eq!(h.closed, 1);
}
both!(pause_resume_loses_nothing);

/// Timer semantics on one connection per scenario.
#[derive(Default)]
struct TimerCheck {
    conns: Vec<ConnId>,
    set_at: Option<Instant>,
    fired: Vec<(usize, Instant)>,
}

impl Handler for TimerCheck {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        let n = self.conns.len();
        self.conns.push(conn);
        let now = io.now();
        self.set_at.get_or_insert(now);
        match n {
            // Cleared: must never fire.
            0 => {
                io.set_timer(conn, Some(now + Duration::from_millis(20)));
                io.set_timer(conn, None);
            }
            // Moved later: fires once, not before 80 ms.
            1 => {
                io.set_timer(conn, Some(now + Duration::from_millis(20)));
                io.set_timer(conn, Some(now + Duration::from_millis(80)));
            }
            // Moved earlier: fires once, at 30 ms or later.
            _ => {
                io.set_timer(conn, Some(now + Duration::from_millis(200)));
                io.set_timer(conn, Some(now + Duration::from_millis(30)));
            }
        }
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        let i = self.conns.iter().position(|c| *c == conn).unwrap();
        self.fired.push((i, io.now()));
        if self.fired.len() == 2 {
            // Give stale entries (20 ms, 200 ms) the chance to misfire, then stop.
            io.set_timer(self.conns[0], Some(io.now() + Duration::from_millis(250)));
        } else if self.fired.len() == 3 {
            io.stop();
        }
    }
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
}

fn timers_fire_and_clear(backend: Backend) {
    let r = start(backend, small_config(), TimerCheck::default());
    let c0 = r.client();
    std::thread::sleep(Duration::from_millis(5));
    let c1 = r.client();
    let c2 = r.client();
    let h = r.join();
    drop((c0, c1, c2));
    let order: Vec<usize> = h.fired.iter().map(|f| f.0).collect();
    assert_eq!(order, vec![2, 1, 0], "fired: {order:?}");
    let t0 = h.set_at.unwrap();
    assert!(h.fired[0].1 >= t0 + Duration::from_millis(30));
    assert!(h.fired[1].1 >= t0 + Duration::from_millis(80));
}
both!(timers_fire_and_clear);

/// Counts wakes; stops once every sender is done.
struct WakeCount {
    done: Arc<AtomicUsize>,
    wakes: usize,
}

impl Handler for WakeCount {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
    fn on_wake(&mut self, io: &mut impl Io) {
        self.wakes += 1;
        if self.done.load(Ordering::SeqCst) == 4 {
            io.stop();
        }
    }
}

fn waker_from_other_threads(backend: Backend) {
    let done = Arc::new(AtomicUsize::new(0));
    let r = start(backend, small_config(), WakeCount { done: done.clone(), wakes: 0 });
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let w = r.waker.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    w.wake().unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
                w.wake().unwrap();
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let h = r.join();
    assert!(h.wakes >= 1 && h.wakes <= 2004, "wakes = {}", h.wakes);
}
both!(waker_from_other_threads);

/// Connects to the loop's own listener and to a refused port.
#[derive(Default)]
struct Connector {
    target: Option<SocketAddr>,
    refused: Option<SocketAddr>,
    out_ok: Option<ConnId>,
    out_refused: Option<ConnId>,
    connect_results: Vec<(bool, Option<std::io::ErrorKind>)>,
    echoed: Vec<u8>,
    closed: Vec<(ConnId, Option<std::io::ErrorKind>)>,
}

impl Handler for Connector {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        let ok = Some(conn) == self.out_ok;
        self.connect_results.push((ok, result.as_ref().err().map(|e| e.kind())));
        if result.is_ok() {
            assert_eq!(io.peer_addr(conn), self.target);
            io.send(conn, Bytes::from_static(b"hello "));
            io.send(conn, Bytes::from_static(b"loop"));
        }
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        if Some(conn) == self.out_ok {
            self.echoed.extend_from_slice(&data);
            if self.echoed == b"hello loop" {
                io.close(conn);
            }
        } else {
            io.send(conn, Bytes::copy_from_slice(&data)); // accepted side echoes
        }
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        if self.out_ok.is_none() {
            self.out_ok = Some(io.connect(self.target.unwrap()).unwrap());
            self.out_refused = Some(io.connect(self.refused.unwrap()).unwrap());
            assert_eq!(io.conn_count(), 2);
        }
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.closed.push((conn, error.map(|e| e.kind())));
        if self.closed.len() == 3 {
            io.stop();
        }
    }
}

fn connect_ok_and_refused(backend: Backend) {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = start_connector(backend, refused);
    let h = r.join();
    let mut results = h.connect_results.clone();
    results.sort();
    assert_eq!(results, vec![(false, Some(std::io::ErrorKind::ConnectionRefused)), (true, None)]);
    assert_eq!(h.echoed, b"hello loop");
    let refused_close = h.closed.iter().find(|c| Some(c.0) == h.out_refused).unwrap();
    assert_eq!(refused_close.1, Some(std::io::ErrorKind::ConnectionRefused));
    let ok_close = h.closed.iter().find(|c| Some(c.0) == h.out_ok).unwrap();
    assert_eq!(ok_close.1, None);
}
both!(connect_ok_and_refused);

/// Starts a loop whose connector targets its own listener, then kicks it with a wake.
fn start_connector(backend: Backend, refused: SocketAddr) -> common::Running<Connector> {
    let l = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap().remove(0);
    let target = l.local_addr().unwrap();
    let r = common::start_with_listener(
        backend,
        LoopConfig { nodelay: false, ..small_config() },
        Connector { target: Some(target), refused: Some(refused), ..Default::default() },
        l,
    );
    r.waker.wake().unwrap();
    r
}

/// Echoes, and stops accepting after the first connection.
#[derive(Default)]
struct AcceptOnce {
    echo: Echo,
}

impl Handler for AcceptOnce {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        self.echo.on_accept(io, conn, peer);
        io.stop_accepting();
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.echo.on_data(io, conn, data);
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.echo.on_closed(io, conn, error);
    }
}

fn stop_accepting_keeps_connections(backend: Backend) {
    let r = start(backend, small_config(), AcceptOnce::default());
    let mut s = r.client();
    assert_eq!(common::echo_roundtrip(&mut s, b"one", 3), b"one");
    // The listener closes shortly after the first accept; then connects are refused.
    let mut refused = false;
    for _ in 0..200 {
        match std::net::TcpStream::connect(r.addr) {
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
                refused = true;
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(refused, "listener still accepting");
    assert_eq!(common::echo_roundtrip(&mut s, b"still here", 4), b"still here");
    let h = r.finish();
    assert_eq!(h.echo.accepted, 1);
}
both!(stop_accepting_keeps_connections);

#[test]
fn bind_reuseport_refuses_a_busy_port() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let e = ringwire_io::bind_reuseport(other.local_addr().unwrap(), 2, 16).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    let ls = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
    let port = ls[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    // Another group cannot join ours either.
    let e = ringwire_io::bind_reuseport(ls[0].local_addr().unwrap(), 1, 16).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    let e = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 0, 16).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn bad_config_is_an_error() {
    for backend in [Backend::Uring, Backend::Epoll] {
        let cfg = LoopConfig { buf_count: 3, ..LoopConfig::default() };
        let e = ringwire_io::EventLoop::new(backend, &cfg).err().expect("must fail");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}

/// Answers every request with `reply` bytes; the peer half-closes right after its request.
struct Reply {
    reply: usize,
    closed: Vec<Option<std::io::ErrorKind>>,
}

impl Handler for Reply {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        assert_eq!(&*data, b"GET");
        let body = Bytes::from(pattern(self.reply, 1));
        for piece in body.chunks(10_000) {
            io.send(conn, body.slice_ref(piece));
        }
    }
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        self.closed.push(error.map(|e| e.kind()));
        io.stop();
    }
}

fn peer_eof_flushes_queued_output(backend: Backend) {
    let reply = 5 << 20;
    let r = start(backend, small_config(), Reply { reply, closed: vec![] });
    let mut s = r.client();
    s.write_all(b"GET").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), reply);
    assert!(got == pattern(reply, 1));
    let h = r.join();
    assert_eq!(h.closed, vec![None]);
}
both!(peer_eof_flushes_queued_output);

/// Queues a lot on accept and records how the connection ended.
struct Flood {
    closed: Vec<Option<std::io::ErrorKind>>,
}

impl Handler for Flood {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        io.send(conn, Bytes::from(vec![7u8; 32 << 20]));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        self.closed.push(error.map(|e| e.kind()));
        io.stop();
    }
}

fn peer_reset_reports_an_error(backend: Backend) {
    let r = start(backend, small_config(), Flood { closed: vec![] });
    let mut s = r.client();
    let mut first = [0u8; 1000];
    s.read_exact(&mut first).unwrap();
    // Close with unread data and SO_LINGER 0: the server's send fails with a reset.
    let sock = socket2::Socket::from(s);
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock);
    let h = r.join();
    assert_eq!(h.closed.len(), 1);
    let kind = h.closed[0].expect("a reset is an error");
    assert!(
        matches!(kind, std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
        "unexpected error kind {kind:?}"
    );
}
both!(peer_reset_reports_an_error);

/// Echoes; stops the loop once `until` connections were reported closed.
struct EchoUntilClosed {
    echo: Echo,
    until: usize,
}

impl Handler for EchoUntilClosed {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        self.echo.on_accept(io, conn, peer);
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.echo.on_data(io, conn, data);
    }
    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.echo.on_closed(io, conn, error);
        if self.echo.closed == self.until {
            assert_eq!(io.conn_count(), 0);
            io.stop();
        }
    }
}

fn many_connections(backend: Backend) {
    let n = 300;
    let r = start(backend, small_config(), EchoUntilClosed { echo: Echo::default(), until: n });
    let mut conns: Vec<_> = (0..n).map(|_| r.client()).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(format!("message {i};").as_bytes()).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let want = format!("message {i};");
        let mut back = vec![0u8; want.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, want.as_bytes());
    }
    // Peers close: every connection reports on_closed(None), then the handler stops.
    drop(conns);
    let h = r.join();
    assert_eq!(h.echo.accepted, n);
    assert_eq!(h.echo.closed, n);
    assert_eq!(h.echo.errors, 0);
}
both!(many_connections);

fn close_while_peer_sends(backend: Backend) {
    let total = 4 << 20;
    let r = start(backend, small_config(), SendThenClose { total, abort: false, closed: vec![], quiet: true });
    let mut s = r.client();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let junk = vec![0u8; 64 << 10];
        // The server drops this input; errors once it has closed are expected.
        for _ in 0..16 {
            if w.write_all(&junk).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("all queued output, then EOF");
    assert_eq!(got.len(), total);
    writer.join().unwrap();
    drop(s);
    let h = r.join();
    assert_eq!(h.closed, vec![None]);
}
both!(close_while_peer_sends);

fn linger_ends_without_peer_eof(backend: Backend) {
    let cfg = LoopConfig { close_linger: Duration::from_millis(100), ..small_config() };
    let r = start(backend, cfg, SendThenClose { total: 1000, abort: false, closed: vec![], quiet: true });
    let mut s = r.client();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap(); // our FIN arrives; we keep the socket open
    assert_eq!(got.len(), 1000);
    let h = r.join(); // the server closes after the linger without our EOF
    assert_eq!(h.closed, vec![None]);
    drop(s);
}
both!(linger_ends_without_peer_eof);

/// Fills the socket (the peer does not read), then aborts from a timer while a send is stuck
/// in flight; or pauses reading and closes gracefully while paused.
struct Stuck {
    abort: bool,
    closed: Vec<Option<std::io::ErrorKind>>,
    queued_after: Option<usize>,
}

impl Handler for Stuck {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        if self.abort {
            io.send(conn, Bytes::from(vec![1u8; 32 << 20]));
        } else {
            io.pause_read(conn);
            io.send(conn, Bytes::from_static(b"bye"));
        }
        io.set_timer(conn, Some(io.now() + Duration::from_millis(50)));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {
        panic!("paused or never read");
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        if self.abort {
            io.abort(conn);
        } else {
            io.close(conn);
        }
        self.queued_after = Some(io.queued(conn));
    }
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        self.closed.push(error.map(|e| e.kind()));
        io.stop();
    }
}

fn abort_with_a_send_in_flight(backend: Backend) {
    let r = start(backend, small_config(), Stuck { abort: true, closed: vec![], queued_after: None });
    let mut s = r.client();
    let h = r.join(); // on_closed follows the abort although the send never finished
    assert_eq!(h.closed, vec![None]);
    assert_eq!(h.queued_after, Some(0));
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got); // what was written before the abort, then EOF or reset
    assert!(got.len() < 32 << 20);
}
both!(abort_with_a_send_in_flight);

fn close_while_paused(backend: Backend) {
    let r = start(backend, small_config(), Stuck { abort: false, closed: vec![], queued_after: None });
    let mut s = r.client();
    s.write_all(&[5u8; 100_000]).unwrap(); // never delivered: the server is paused
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    drop(s);
    let h = r.join();
    assert_eq!(h.closed, vec![None]);
}
both!(close_while_paused);

/// Queues more than the socket takes, then stops the loop from a timer with the send still in
/// flight; the loop is then dropped.
struct StopWithSendInFlight;

impl Handler for StopWithSendInFlight {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        io.send(conn, Bytes::from(vec![2u8; 32 << 20]));
        io.set_timer(conn, Some(io.now() + Duration::from_millis(50)));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_timer(&mut self, io: &mut impl Io, _conn: ConnId) {
        io.stop();
    }
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
}

fn drop_with_live_connections(backend: Backend) {
    let r = start(backend, small_config(), StopWithSendInFlight);
    let mut s = r.client();
    r.join(); // run() returned and the EventLoop was dropped on its thread
    // The connection was closed by the drop: EOF or reset, not a read timeout.
    let mut got = Vec::new();
    if let Err(e) = s.read_to_end(&mut got) {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    assert!(got.len() < 32 << 20);
}
both!(drop_with_live_connections);

/// Echoes; stops the loop after each piece of data.
struct StopEvery {
    seen: usize,
}

impl Handler for StopEvery {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        self.seen += data.len();
        io.send(conn, Bytes::copy_from_slice(&data));
        io.stop();
    }
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
}

fn run_again_after_stop(backend: Backend) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let (mut ev, _w) = ringwire_io::EventLoop::new(backend, &small_config()).unwrap();
        let l = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap().remove(0);
        tx.send(l.local_addr().unwrap()).unwrap();
        ev.add_listener(l).unwrap();
        let mut h = StopEvery { seen: 0 };
        let mut runs = 0;
        while h.seen < 3 {
            ev.run(&mut h).unwrap();
            runs += 1;
        }
        // Each run returned after one piece; the connection survived between runs.
        runs
    });
    let addr = rx.recv().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for b in [b"a", b"b", b"c"] {
        s.write_all(b).unwrap();
        let mut back = [0u8; 1];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b);
    }
    let runs = t.join().unwrap();
    assert_eq!(runs, 3);
}
both!(run_again_after_stop);

/// Pauses for ~1 ms after every third delivery; records everything; echoes the byte count
/// at the peer's EOF.
#[derive(Default)]
struct Churn {
    calls: usize,
    paused: bool,
    violations: usize,
    got: Vec<u8>,
    closed: usize,
}

impl Handler for Churn {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        if self.paused {
            self.violations += 1;
        }
        self.got.extend_from_slice(&data);
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            self.paused = true;
            io.pause_read(conn);
            io.set_timer(conn, Some(io.now() + Duration::from_millis(1)));
        }
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.paused = false;
        io.resume_read(conn);
        if self.calls.is_multiple_of(2) {
            // Pause and resume again in the same turn: must be harmless.
            io.pause_read(conn);
            io.resume_read(conn);
        }
    }
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        assert!(error.is_none(), "{error:?}");
        self.closed += 1;
        io.stop();
    }
}

fn pause_resume_churn_keeps_order(backend: Backend) {
    let r = start(backend, small_config(), Churn::default());
    let mut s = r.client();
    let data = pattern(2 << 20, 11);
    for piece in data.chunks(1500) {
        s.write_all(piece).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let h = r.join();
    assert_eq!(h.violations, 0);
    assert_eq!(h.got.len(), data.len());
    assert!(h.got == data, "bytes lost or reordered");
    assert!(h.calls >= 3);
    assert_eq!(h.closed, 1);
}
both!(pause_resume_churn_keeps_order);

/// A paused connection stops taking the peer's bytes: on io_uring the multishot RECV is
/// left armed at the pause (so a pause that ends before the peer sends again costs
/// nothing) and cancelled by the first data that arrives while paused, so the peer can push
/// no more than the socket buffers and that one batch, kept for the resume. Then the rest
/// arrives, whole and in order.
fn a_paused_connection_stops_taking_input(backend: Backend) {
    let r = start(backend, LoopConfig::default(), PauseResume::new(Duration::from_secs(1), None));
    let mut s = r.client();
    let data = pattern(64 << 20, 13);
    s.write_all(&data[..100]).unwrap();
    let mut p = [0u8; 1];
    s.read_exact(&mut p).unwrap(); // paused now
    // 64 KiB a millisecond for 400 ms, without blocking: paced, so a RECV left armed would
    // take each piece as it comes (its buffers go back to the ring between turns) and
    // never run out of buffers, where the cancel leaves it all to the socket buffers.
    s.set_nonblocking(true).unwrap();
    let mut at = 100;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(400) {
        match s.write(&data[at..at + (64 << 10)]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let taken_while_paused = at;
    s.set_nonblocking(false).unwrap();
    s.write_all(&data[at..]).unwrap(); // resumed meanwhile: the rest goes through
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let h = r.join();
    println!("{taken_while_paused} bytes taken from the peer while paused");
    // Up to 25 MiB offered; the socket buffers (the peer's send buffer grows to 4 MiB
    // here) and what one receive took are all that may go.
    assert!(taken_while_paused < 12 << 20, "{taken_while_paused} bytes taken while paused");
    assert_eq!(h.violations, 0, "on_data while paused");
    assert_eq!(h.got.len(), data.len());
    assert!(h.got == data, "bytes lost or reordered");
    assert_eq!(h.closed, 1);
}
both!(a_paused_connection_stops_taking_input);
