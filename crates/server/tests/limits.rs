//! Bounds on what others can make the server hold: worker mailboxes, connections per
//! client address; and the bind retry after a crash.

mod common;
use common::*;
use ringwire_conn::Message;
use ringwire_frame::OpCode;
use ringwire_server::{Handler, QueueError, Remote, Server, ServerError, Ws};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Hands each connection's `Remote` and worker to the test; "block" blocks the worker's
/// loop while the flag is set (telling the test through `blocked`); "who" answers with
/// the worker index.
#[derive(Clone)]
struct Blocker {
    opened: mpsc::Sender<(Remote, usize)>,
    blocked: mpsc::Sender<()>,
    block: Arc<AtomicBool>,
}

impl Handler for Blocker {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let _ = self.opened.send((ws.remote(), ws.worker()));
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        match message {
            Message::Text(t) if &*t == "block" => {
                let _ = self.blocked.send(());
                while self.block.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Message::Text(t) if &*t == "who" => {
                let worker = ws.worker();
                ws.send_text(format!("worker {worker}"));
            }
            _ => {}
        }
    }
}

/// The test's side of a [`Blocker`].
struct Control {
    opened: mpsc::Receiver<(Remote, usize)>,
    blocked: mpsc::Receiver<()>,
    block: Arc<AtomicBool>,
}

impl Control {
    /// Blocks the worker `raw` is on, returning once its loop is inside the handler.
    fn block_worker(&self, raw: &mut Raw) {
        self.block.store(true, Ordering::Release);
        raw.frame(true, 0, OpCode::Text, b"block", true);
        self.blocked.recv_timeout(Duration::from_secs(10)).expect("the worker did not block");
    }

    fn unblock(&self) {
        self.block.store(false, Ordering::Release);
    }

    fn remote(&self) -> Remote {
        self.opened.recv_timeout(Duration::from_secs(10)).unwrap().0
    }
}

fn blocker() -> (Blocker, Control) {
    let (opened_tx, opened) = mpsc::channel();
    let (blocked_tx, blocked) = mpsc::channel();
    let block = Arc::new(AtomicBool::new(false));
    (Blocker { opened: opened_tx, blocked: blocked_tx, block: Arc::clone(&block) }, Control { opened, blocked, block })
}

fn text(raw: &mut Raw) -> String {
    let (_, op, p) = raw.read_frame();
    assert_eq!(op, 0x1);
    String::from_utf8(p).unwrap()
}

#[test]
fn a_remote_flooding_a_blocked_worker_gets_full_at_the_capacity() {
    const CAPACITY: usize = 1000;
    for io in backends() {
        let (h, ctl) = blocker();
        let mut cfg = config(io);
        cfg.mailbox_capacity = CAPACITY;
        let server = start(cfg, h);
        let mut raw = Raw::connect(server.local_addr());
        let remote = ctl.remote();
        ctl.block_worker(&mut raw);
        for i in 0..CAPACITY {
            remote.send(format!("m{i}")).unwrap_or_else(|e| panic!("{io:?}: send {i}: {e}"));
        }
        for _ in 0..3 {
            assert_eq!(remote.send("one too many"), Err(QueueError::Full { missed: 1 }), "{io:?}");
            assert_eq!(remote.pause(), Err(QueueError::Full { missed: 1 }), "{io:?}");
        }
        // Shutdown is not counted against the capacity; the worker takes it once free.
        let handle = server.handle();
        ctl.unblock();
        // Everything queued was kept, in order, and nothing beyond it.
        for i in 0..CAPACITY {
            assert_eq!(text(&mut raw), format!("m{i}"), "{io:?}");
        }
        assert_eq!(remote.send("after"), Ok(()), "{io:?}: room again once the worker caught up");
        assert_eq!(text(&mut raw), "after", "{io:?}");
        handle.shutdown();
        assert_eq!(remote.send("late"), Err(QueueError::Closed), "{io:?}");
        assert_eq!(handle.broadcast("late"), Err(QueueError::Closed), "{io:?}");
        assert_eq!(raw.read_close().0, 1001, "{io:?}");
        raw.frame(true, 0, OpCode::Close, &1001u16.to_be_bytes(), true);
        server.join().unwrap();
    }
}

#[test]
fn shutdown_gets_through_a_full_mailbox() {
    for io in backends() {
        let (h, ctl) = blocker();
        let mut cfg = config(io);
        cfg.mailbox_capacity = 10;
        let server = start(cfg, h);
        let mut raw = Raw::connect(server.local_addr());
        let remote = ctl.remote();
        ctl.block_worker(&mut raw);
        while remote.send("x").is_ok() {}
        let handle = server.handle();
        let t = std::thread::spawn(move || server.shutdown());
        std::thread::sleep(Duration::from_millis(100));
        ctl.unblock();
        drop(raw);
        t.join().unwrap().unwrap();
        assert_eq!(handle.connections(), 0, "{io:?}");
    }
}

/// Connects clients until one is on each of the two workers; returns them by worker.
fn one_per_worker(addr: SocketAddr) -> [Raw; 2] {
    let mut found: [Option<Raw>; 2] = [None, None];
    for _ in 0..64 {
        let mut raw = Raw::connect(addr);
        raw.frame(true, 0, OpCode::Text, b"who", true);
        let w: usize = text(&mut raw).trim_start_matches("worker ").parse().unwrap();
        found[w].get_or_insert(raw);
        if found.iter().all(Option::is_some) {
            return found.map(Option::unwrap);
        }
    }
    panic!("64 connections all landed on one worker");
}

/// Reads text frames until `end`; returns how many came before it.
fn count_until(raw: &mut Raw, end: &str) -> usize {
    let mut n = 0;
    loop {
        let t = text(raw);
        if t == end {
            return n;
        }
        assert_eq!(t, "b", "unexpected message");
        n += 1;
    }
}

#[test]
fn a_broadcast_reports_the_workers_that_missed_it_and_reaches_the_others() {
    const CAPACITY: usize = 200;
    const SENT: usize = 3 * CAPACITY;
    for io in backends() {
        let (h, ctl) = blocker();
        let mut cfg = config(io).with_threads(2);
        cfg.mailbox_capacity = CAPACITY;
        let server = start(cfg, h);
        let handle = server.handle();
        let [mut w0, mut w1] = one_per_worker(server.local_addr());
        ctl.block_worker(&mut w0);
        let mut ok = 0;
        let mut missed = 0;
        for _ in 0..SENT {
            match handle.broadcast("b") {
                Ok(()) => ok += 1,
                Err(QueueError::Full { missed: m }) => missed += m,
                Err(e) => panic!("{io:?}: {e}"),
            }
        }
        assert!(ok <= CAPACITY, "{io:?}: {ok} queued everywhere");
        assert!(missed >= SENT - CAPACITY, "{io:?}: the blocked worker missed all beyond its capacity");
        ctl.unblock();
        // A last broadcast marks the end for both (retried while the mailboxes drain).
        let t0 = Instant::now();
        while handle.broadcast("end").is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{io:?}: mailboxes never drained");
            std::thread::sleep(Duration::from_millis(5));
        }
        let got0 = count_until(&mut w0, "end");
        let got1 = count_until(&mut w1, "end");
        assert_eq!(got0, CAPACITY, "{io:?}: the blocked worker kept exactly its capacity");
        // Every broadcast went to both workers except those reported missed.
        assert_eq!(got0 + got1, 2 * SENT - missed, "{io:?}");
        drop((w0, w1));
        server.shutdown().unwrap();
    }
}

/// A client socket bound to `from` (a loopback address) connected to `to`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn upgrade_from(from: &str, addr: SocketAddr) -> (TcpStream, String) {
    use std::io::Write;
    let mut s = connect_from(from, addr);
    s.write_all(upgrade_request(addr, "").as_bytes()).unwrap();
    let head = read_http_head(&mut s);
    (s, head)
}

#[test]
fn connections_per_address_are_capped_with_503() {
    for io in backends() {
        let mut cfg = config(io).with_threads(2);
        cfg.max_connections_per_ip = Some(2);
        let (h, _ctl) = blocker();
        let server = start(cfg, h);
        let addr = server.local_addr();
        let handle = server.handle();
        let (a, head) = upgrade_from("127.0.0.1", addr);
        assert!(head.starts_with("HTTP/1.1 101"), "{io:?}: {head}");
        // A handshaking connection counts too.
        let b = connect_from("127.0.0.1", addr);
        wait_for_connections(&handle, 2);
        let (_, head) = upgrade_from("127.0.0.1", addr);
        assert!(head.starts_with("HTTP/1.1 503"), "{io:?}: {head}");
        assert!(head.contains("too many connections from this address"), "{io:?}: {head}");
        // Another address is counted apart.
        let (c, head) = upgrade_from("127.0.0.2", addr);
        assert!(head.starts_with("HTTP/1.1 101"), "{io:?}: {head}");
        // A closed connection frees its place.
        drop(b);
        wait_for_connections(&handle, 2);
        let (d, head) = upgrade_from("127.0.0.1", addr);
        assert!(head.starts_with("HTTP/1.1 101"), "{io:?}: {head}");
        drop((a, c, d));
        wait_for_connections(&handle, 0);
        server.shutdown().unwrap();
    }
}

#[test]
fn bind_waits_for_a_port_released_shortly() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(holder);
    });
    let mut cfg = config(ringwire_server::IoChoice::Auto);
    cfg.addr = addr;
    let t0 = Instant::now();
    let server = Server::bind(cfg).expect("bound once the port was released");
    assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
    assert_eq!(server.local_addr(), addr);
    released.join().unwrap();
    let running = server.spawn(Echo);
    drop(Raw::connect(addr));
    running.shutdown().unwrap();
}

#[test]
fn bind_gives_up_on_a_port_held_for_good() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let mut cfg = config(ringwire_server::IoChoice::Auto);
    cfg.addr = addr;
    cfg.bind_retry = Duration::from_millis(500);
    let t0 = Instant::now();
    let err = Server::bind(cfg.clone()).err().expect("the port stays taken");
    assert!(matches!(err, ServerError::AddrInUse(a) if a == addr), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(500), "retried for the whole window: {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    cfg.bind_retry = Duration::ZERO;
    let t0 = Instant::now();
    assert!(matches!(Server::bind(cfg), Err(ServerError::AddrInUse(_))));
    assert!(t0.elapsed() < Duration::from_millis(400), "no retry: {:?}", t0.elapsed());
    drop(holder);
}
