//! What a hostile or broken peer can make the loop do, bounded (issue 11), on both backends.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{echo_each, start};
use ringwire_io::bytes::Bytes;
use ringwire_io::{Backend, ConnId, Handler, Io, LoopConfig, RecvBuf};

/// Bytes that depend on `tag` and their position (splitmix64), so a payload delivered to the
/// wrong connection, out of order or zeroed never matches.
fn tagged(tag: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let mut z = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// What the loop broadcasts to the connection whose peer port is `port` in round `round`.
fn broadcast_payload(port: u16, round: u32) -> Vec<u8> {
    tagged((u64::from(port) << 32) | u64::from(round), 1000 + usize::from(port % 7) * 300)
}

/// Echoes every byte; on each wake sends every connection its own broadcast payload in one
/// turn.
#[derive(Default)]
struct EchoAndBroadcast {
    conns: Vec<ConnId>,
    round: u32,
    errors: usize,
}

impl Handler for EchoAndBroadcast {
    fn on_accept(&mut self, _io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        self.conns.push(conn);
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        io.send(conn, Bytes::copy_from_slice(&data));
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        self.round += 1;
        for &c in &self.conns {
            if let Some(peer) = io.peer_addr(c) {
                io.send(c, Bytes::from(broadcast_payload(peer.port(), self.round)));
            }
        }
    }
    fn on_closed(&mut self, _io: &mut impl Io, conn: ConnId, error: Option<std::io::Error>) {
        self.conns.retain(|c| *c != conn);
        if error.is_some() {
            self.errors += 1;
        }
    }
}

/// A completion queue far smaller than the connection count: every burst of input (all
/// connections at once) and every broadcast overflows it, for several buffer-window periods
/// (so the io_uring loop also shrinks its buffer ring in between). Every byte must still
/// reach the right connection, in order.
fn cq_overflow_keeps_every_byte_in_place(backend: Backend) {
    let cfg = LoopConfig { ring_entries: 8, cq_entries: 16, buf_count: 2048, buf_size: 1024, ..LoopConfig::default() };
    let r = start(backend, cfg, EchoAndBroadcast::default());
    let n = 300;
    let mut conns: Vec<TcpStream> = (0..n).map(|_| r.client()).collect();
    let end = Instant::now() + Duration::from_secs(3);
    let mut round = 0u32;
    let mut bytes = 0usize;
    while Instant::now() < end || round < 4 {
        round += 1;
        // Everyone sends at once; the loop reads them all in the same few turns.
        let msgs: Vec<Vec<u8>> =
            (0..n).map(|i| tagged(u64::from(round) << 16 | i as u64, 1500 + (i * 37) % 3000)).collect();
        bytes += echo_each(&mut conns, &msgs, round);
        // The loop sends to everyone in one turn.
        r.waker.wake().unwrap();
        for (i, s) in conns.iter_mut().enumerate() {
            let port = s.local_addr().unwrap().port();
            let want = broadcast_payload(port, round);
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).unwrap();
            assert!(got == want, "round {round}: broadcast to connection {i} differs");
            bytes += want.len();
        }
    }
    println!("{backend}: {round} rounds, {bytes} bytes checked over {n} connections");
    // Nothing more arrives: no byte was delivered twice.
    std::thread::sleep(Duration::from_millis(100));
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_nonblocking(true).unwrap();
        let mut extra = [0u8; 1];
        match s.read(&mut extra) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("connection {i}: unexpected extra input {other:?}"),
        }
    }
    drop(conns);
    let h = r.finish();
    assert_eq!(h.errors, 0);
}
both!(cq_overflow_keeps_every_byte_in_place);

/// A client that never reads, with a small receive buffer: the server's output piles up.
fn non_reader(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let s = TcpStream::from(s);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// How the server ends a connection it queued `HOARD` bytes on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// `close()` right after queueing.
    Close,
    /// Waits for the peer's EOF, which starts the graceful close.
    PeerEof,
    /// `abort()` from a timer 100 ms later.
    Abort,
}

/// More than the socket buffers on both sides hold.
const HOARD: usize = 16 << 20;

/// Queues [`HOARD`] bytes on accept and ends the connection as `end` says; reports how long
/// after accepting `on_closed` came and with what.
struct Hoard {
    end: End,
    accepted_at: Option<Instant>,
    done: std::sync::mpsc::Sender<(Duration, Option<std::io::ErrorKind>)>,
}

impl Handler for Hoard {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        self.accepted_at = Some(io.now());
        let data = Bytes::from(vec![9u8; HOARD]);
        for piece in data.chunks(1 << 20) {
            io.send(conn, data.slice_ref(piece));
        }
        match self.end {
            End::Close => io.close(conn),
            End::PeerEof => {}
            End::Abort => io.set_timer(conn, Some(io.now() + Duration::from_millis(100))),
        }
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        io.abort(conn);
        assert_eq!(io.queued(conn), 0);
    }
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        let took = io.now() - self.accepted_at.unwrap();
        self.done.send((took, error.map(|e| e.kind()))).unwrap();
    }
}

/// Runs [`Hoard`] against a client that never reads. The connection must end within its
/// bound, the server's socket must be gone from the kernel at once (a reset, not a FIN
/// queued behind megabytes the peer will never read), and the peer sees the reset.
fn hoard_against_a_non_reader(backend: Backend, end: End) -> Duration {
    let flush_timeout = Duration::from_millis(300);
    let cfg = LoopConfig { flush_timeout, ..LoopConfig::default() };
    let (tx, rx) = std::sync::mpsc::channel();
    let r = start(backend, cfg, Hoard { end, accepted_at: None, done: tx });
    let mut s = non_reader(r.addr);
    if end == End::PeerEof {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let (took, error) = rx.recv_timeout(Duration::from_secs(20)).expect("on_closed within 20 s");
    println!("{backend} {end:?}: on_closed after {took:?} with {error:?}");
    match end {
        End::Close | End::PeerEof => {
            assert!(took >= flush_timeout, "aborted before the deadline: {took:?}");
            assert!(took < flush_timeout + Duration::from_secs(5), "{took:?}");
            assert_eq!(error, Some(std::io::ErrorKind::TimedOut));
        }
        End::Abort => {
            assert!(took < Duration::from_secs(5), "{took:?}");
            assert_eq!(error, None);
        }
    }
    // The server's socket is gone at once (the loop is still running, so nothing else
    // closed it): a graceful close would leave it in FIN_WAIT1 behind the unread data.
    let (server, client) = (r.addr.port(), s.local_addr().unwrap().port());
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(state) = common::tcp_state(server, client) {
        assert!(Instant::now() < deadline, "the server's socket is still there, TCP state {state}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let last = loop {
        match s.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => got += n,
            Err(e) => break Some(e.kind()),
        }
    };
    println!("{backend} {end:?}: the peer read {got} bytes, then {last:?}");
    assert!(got < HOARD);
    assert!(matches!(last, None | Some(std::io::ErrorKind::ConnectionReset)), "{last:?}");
    r.finish();
    took
}

fn flush_deadline_aborts_a_close_to_a_non_reader(backend: Backend) {
    hoard_against_a_non_reader(backend, End::Close);
}
both!(flush_deadline_aborts_a_close_to_a_non_reader);

fn flush_deadline_bounds_a_close_started_by_peer_eof(backend: Backend) {
    hoard_against_a_non_reader(backend, End::PeerEof);
}
both!(flush_deadline_bounds_a_close_started_by_peer_eof);

fn abort_resets_at_once_with_output_queued(backend: Backend) {
    hoard_against_a_non_reader(backend, End::Abort);
}
both!(abort_resets_at_once_with_output_queued);

/// Counts loop turns.
#[derive(Default)]
struct Turns {
    turns: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// What `Io::loop_stats` said of the accept errors at the last turn end.
    accept_errors: std::sync::Arc<std::sync::Mutex<ringwire_io::AcceptErrors>>,
}

impl Handler for Turns {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        io.send(conn, Bytes::from_static(b"hi"));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.turns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.accept_errors.lock().unwrap() = io.loop_stats().accept_errors;
    }
}

/// A listener that fails every accept with an error the loop does not expect (EINVAL: the
/// listening socket was shut down under it): the loop logs one line, not one per attempt,
/// and retries on a clock instead of every turn.
fn unknown_accept_error_backs_off(backend: Backend) {
    use std::sync::atomic::Ordering::Relaxed;
    let l = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap().remove(0);
    let same = l.try_clone().unwrap();
    let log = common::Log::default();
    let h = Turns::default();
    let turns = h.turns.clone();
    let accept_errors = h.accept_errors.clone();
    let r = common::start_logged(backend, LoopConfig::default(), h, l, Some(log.clone()));
    std::thread::sleep(Duration::from_millis(100));
    socket2::SockRef::from(&same).shutdown(std::net::Shutdown::Both).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = turns.load(Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    let during = turns.load(Relaxed) - before;
    r.finish();
    let lines = log.lock().unwrap().clone();
    println!("{backend}: {during} turns in 1 s of failing accepts; log: {lines:?}");
    // 100 ms backoff: about 10 retries a second; retrying every turn would be thousands.
    assert!(during <= 60, "{during} turns in one second: accepting does not back off");
    assert_eq!(lines.len(), 1, "one line per 10 s at most: {lines:?}");
    assert!(lines[0].starts_with("WARN") && lines[0].contains("EINVAL"), "{}", lines[0]);
    assert!(lines[0].contains("accepting again in 100 ms"), "{}", lines[0]);
    let counted = *accept_errors.lock().unwrap();
    assert_eq!(counted.out_of_descriptors, 0);
    assert!((1..=60).contains(&counted.other), "every failed accept is counted, one per retry: {counted:?}");
}
both!(unknown_accept_error_backs_off);

/// Set in the child process of [`emfile_backs_off_and_recovers`] to the backend it runs.
const CHILD_ENV: &str = "RINGWIRE_IO_TEST_CHILD";
/// Clients the parent connects while the child is out of descriptors.
const EMFILE_CLIENTS: usize = 8;

/// Runs out of descriptors for real, in a child process (this test binary again, running
/// `emfile_child`) whose RLIMIT_NOFILE is lowered to what it already uses: accepting fails
/// with EMFILE, the loop logs one line with the fix and retries on a clock, not every turn;
/// once the limit is raised again, every waiting client is accepted.
fn emfile_backs_off_and_recovers(backend: Backend) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "emfile_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, backend.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child test");
    let mut to_child = child.stdin.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            println!("child: {line}");
            let _ = tx.send(line);
        }
    });
    let next = |prefix: &str| loop {
        let line = lines.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("child: no {prefix}"));
        // libtest may have started the line ("test emfile_child ... ").
        if let Some((_, rest)) = line.split_once(prefix) {
            break rest.to_string();
        }
    };
    let addr: SocketAddr = next("ADDR ").parse().unwrap();
    let mut clients: Vec<TcpStream> = (0..EMFILE_CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    writeln!(to_child, "connected").unwrap();
    let turns: usize = next("TURNS ").parse().unwrap();
    // The limit is back up: every client is accepted and greeted.
    for (i, s) in clients.iter_mut().enumerate() {
        let mut hi = [0u8; 2];
        s.read_exact(&mut hi).unwrap_or_else(|e| panic!("client {i} was never accepted: {e}"));
        assert_eq!(&hi, b"hi");
    }
    writeln!(to_child, "done").unwrap();
    let counted = next("EMFILE ");
    let log: Vec<String> = (0..next("LOGS ").parse::<usize>().unwrap()).map(|_| next("LOG ")).collect();
    assert!(child.wait().unwrap().success(), "child failed");
    assert!(turns <= 60, "{turns} turns in one second out of descriptors: accepting does not back off");
    assert_eq!(log.len(), 1, "one line per 10 s at most: {log:?}");
    assert!(log[0].contains("EMFILE"), "{}", log[0]);
    // Every failed accept is counted (one per 100 ms retry), as out of descriptors.
    let (emfile, other) = counted.split_once(" OTHER ").unwrap();
    let emfile: u64 = emfile.parse().unwrap();
    assert!((1..=60).contains(&emfile), "{emfile} EMFILE accepts counted in about a second");
    assert_eq!(other, "0");
    assert!(log[0].contains("raise the open-file limit: ulimit -n / LimitNOFILE="), "{}", log[0]);
}
both!(emfile_backs_off_and_recovers);

/// The child half of [`emfile_backs_off_and_recovers`]; does nothing useful on its own.
#[test]
#[ignore = "runs only as a child process of emfile_backs_off_and_recovers"]
fn emfile_child() {
    use std::io::BufRead;
    use std::sync::atomic::Ordering::Relaxed;
    let backend = match std::env::var(CHILD_ENV).expect("run by emfile_backs_off_and_recovers").as_str() {
        "io_uring" => Backend::Uring,
        _ => Backend::Epoll,
    };
    let l = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 64).unwrap().remove(0);
    let addr = l.local_addr().unwrap();
    let log = common::Log::default();
    let h = Turns::default();
    let turns = h.turns.clone();
    let accept_errors = h.accept_errors.clone();
    // The loop is made first (it needs descriptors of its own), and runs only once the limit
    // is down: io_uring takes the limit when an ACCEPT is armed, not when it completes.
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let log2 = log.clone();
    let t = std::thread::spawn(move || {
        let _log = tracing::subscriber::set_default(common::capture(log2));
        let (mut ev, waker) = ringwire_io::EventLoop::new(backend, &LoopConfig::default()).unwrap();
        ev.add_listener(l).unwrap();
        ready_tx.send(waker).unwrap();
        go_rx.recv().unwrap();
        ev.run(&mut common::Stoppable { inner: h, stop: stop2 }).unwrap();
    });
    let waker = ready.recv().unwrap();
    // From here on, no new descriptor fits under the limit (but any lower free number).
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read or write the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let used = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let low = libc::rlimit { rlim_cur: used + 1, rlim_max: lim.rlim_max };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    // Fill the free numbers below the limit too.
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("{e}"),
        }
    }
    go.send(()).unwrap();
    println!("ADDR {addr}");
    let mut input = std::io::stdin().lock().lines();
    assert_eq!(input.next().unwrap().unwrap(), "connected");
    std::thread::sleep(Duration::from_millis(300));
    let before = turns.load(Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    let during = turns.load(Relaxed) - before;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    drop(filler);
    println!("TURNS {during}");
    assert_eq!(input.next().unwrap().unwrap(), "done");
    stop.store(true, Relaxed);
    waker.wake().unwrap();
    t.join().unwrap();
    let log = log.lock().unwrap();
    let counted = *accept_errors.lock().unwrap();
    println!("EMFILE {} OTHER {}", counted.out_of_descriptors, counted.other);
    println!("LOGS {}", log.len());
    for line in log.iter() {
        println!("LOG {line}");
    }
}
