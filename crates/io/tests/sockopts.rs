//! `Io::set_nodelay` and `Io::set_keepalive`, on both backends: each changes the option on the
//! connection's own socket at once (read back with getsockopt on that descriptor, found
//! through /proc/self/fd), from every handler callback, and a dead id, even one whose slot a
//! new connection took, changes nothing.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use ringwire_io::bytes::Bytes;
use ringwire_io::{Backend, ConnId, EventLoop, Handler, Io, LoopConfig, RecvBuf};
use socket2::SockRef;

/// What getsockopt says about the socket `fd`: (`TCP_NODELAY`, `SO_KEEPALIVE`, `TCP_KEEPIDLE`).
fn options(fd: RawFd) -> (bool, bool, Duration) {
    // SAFETY: `fd` is a socket of the loop that runs this (it is only read inside a callback,
    // where the connection is open); the borrow ends with this function.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let s = SockRef::from(&fd);
    (s.tcp_nodelay().unwrap(), s.keepalive().unwrap(), s.tcp_keepalive_time().unwrap())
}

/// The one descriptor of this process whose connected socket's (local, peer) addresses
/// satisfy `which`.
fn socket_fd(which: impl Fn(SocketAddr, SocketAddr) -> bool) -> RawFd {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: as in `options`; a descriptor another test closes meanwhile only makes the
        // calls fail.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = SockRef::from(&b);
        let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if let (Some(local), Some(peer)) = (addr(s.local_addr()), addr(s.peer_addr()))
            && which(local, peer)
        {
            found.push(fd);
        }
    }
    assert_eq!(found.len(), 1, "matching sockets: {found:?}");
    found[0]
}

/// Accepts the test's client (A), checks and changes its options, aborts it; once A is gone,
/// connects (B, in A's old slot), checks that A's stale id reaches nothing, changes B's
/// options, aborts it, and stops when B is closed.
struct Check {
    server: SocketAddr,
    client: SocketAddr,
    a: Option<ConnId>,
    b: Option<ConnId>,
    checked: usize,
}

impl Check {
    /// Changes the options of `conn` (socket `fd`) through `io` and reads each change back.
    fn exercise(&mut self, io: &mut impl Io, conn: ConnId, fd: RawFd) {
        let idle = |o: (bool, bool, Duration)| o.2;
        let system_idle = idle(options(fd));
        assert_eq!(options(fd), (true, false, system_idle), "a new connection: LoopConfig::nodelay, no keepalive");
        io.set_nodelay(conn, false).unwrap();
        assert_eq!(options(fd), (false, false, system_idle));
        io.set_nodelay(conn, true).unwrap();
        assert_eq!(options(fd), (true, false, system_idle));
        io.set_keepalive(conn, Some(Duration::from_secs(7))).unwrap();
        assert_eq!(options(fd), (true, true, Duration::from_secs(7)));
        io.set_keepalive(conn, Some(Duration::from_millis(1500))).unwrap();
        assert_eq!(options(fd), (true, true, Duration::from_secs(2)), "rounded up to whole seconds");
        io.set_keepalive(conn, None).unwrap();
        assert!(!options(fd).1, "None turns SO_KEEPALIVE off");
        io.set_nodelay(conn, false).unwrap();
        assert!(!options(fd).0);
        self.checked += 1;
    }
}

impl Handler for Check {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        if peer != self.client {
            return; // the far end of B
        }
        self.a = Some(conn);
        let fd = socket_fd(|local, p| local == self.server && p == peer);
        self.exercise(io, conn, fd);
        io.abort(conn);
    }

    fn on_connect(&mut self, io: &mut impl Io, conn: ConnId, result: std::io::Result<()>) {
        result.expect("connect");
        let a = self.a.expect("A came first");
        assert_eq!(conn.index(), a.index(), "B did not take A's slot: the stale-id check would test nothing");
        let fd = socket_fd(|local, peer| peer == self.server && local != self.client);
        // A's id is dead and its slot is B's now: setting A's options must not touch B.
        io.set_nodelay(a, false).unwrap();
        io.set_keepalive(a, Some(Duration::from_secs(9))).unwrap();
        assert!(options(fd).0, "a stale id changed the connection in its slot");
        assert!(!options(fd).1, "a stale id changed the connection in its slot");
        self.exercise(io, conn, fd);
        io.abort(conn);
    }

    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, _data: RecvBuf<'_>) {}

    fn on_closed(&mut self, io: &mut impl Io, conn: ConnId, _error: Option<std::io::Error>) {
        if Some(conn) == self.a {
            // Dead now: both calls do nothing and succeed.
            io.set_nodelay(conn, false).unwrap();
            io.set_keepalive(conn, None).unwrap();
            self.b = Some(io.connect(self.server).unwrap());
        } else if Some(conn) == self.b {
            io.stop();
        }
    }
}

fn socket_options_change_at_once(backend: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let (mut ev, _waker) = EventLoop::new(backend, &LoopConfig::default()).unwrap();
    ev.add_listener(listener).unwrap();
    let client = TcpStream::connect(server).unwrap();
    let mut h = Check { server, client: client.local_addr().unwrap(), a: None, b: None, checked: 0 };
    ev.run(&mut h).unwrap();
    assert_eq!(h.checked, 2, "the accepted and the outgoing connection");
}

#[test]
fn uring() {
    if ringwire_testkit::uring_usable() {
        socket_options_change_at_once(Backend::Uring);
    }
}

#[test]
fn epoll() {
    socket_options_change_at_once(Backend::Epoll);
}

/// Flips both options of its one connection from each callback that can reach it, reading
/// each change back, and records the callbacks that did: on_accept sends a byte (on_sent),
/// which arms a timer due at once (on_timer); the test then wakes the loop (on_wake answers
/// with a byte) and sends a byte (on_data answers too), and on_turn_end runs every turn.
#[derive(Default)]
struct EveryCallback {
    server: Option<SocketAddr>,
    conn: Option<(ConnId, RawFd)>,
    on: bool,
    done: BTreeSet<&'static str>,
}

impl EveryCallback {
    fn flip(&mut self, io: &mut impl Io, callback: &'static str) {
        let Some((conn, fd)) = self.conn else { return };
        if !self.done.insert(callback) {
            return;
        }
        self.on = !self.on;
        let idle = Duration::from_secs(if self.on { 5 } else { 6 });
        io.set_nodelay(conn, self.on).unwrap();
        io.set_keepalive(conn, Some(idle)).unwrap();
        assert_eq!(options(fd), (self.on, true, idle), "set from {callback}");
    }
}

impl Handler for EveryCallback {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, peer: SocketAddr) {
        let server = self.server.expect("the listener's address");
        self.conn = Some((conn, socket_fd(|local, p| local == server && p == peer)));
        self.flip(io, "on_accept");
        io.send(conn, Bytes::from_static(b"x"));
    }
    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, _bytes: usize) {
        self.flip(io, "on_sent");
        io.set_timer(conn, Some(io.now()));
    }
    fn on_timer(&mut self, io: &mut impl Io, _conn: ConnId) {
        self.flip(io, "on_timer");
    }
    fn on_wake(&mut self, io: &mut impl Io) {
        self.flip(io, "on_wake");
        if let Some((conn, _)) = self.conn {
            io.send(conn, Bytes::from_static(b"w"));
        }
    }
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, _data: RecvBuf<'_>) {
        self.flip(io, "on_data");
        io.send(conn, Bytes::from_static(b"d"));
    }
    fn on_turn_end(&mut self, io: &mut impl Io) {
        self.flip(io, "on_turn_end");
    }
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {
        self.conn = None;
    }
}

fn options_from_every_callback(backend: Backend) {
    let l = ringwire_io::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap().remove(0);
    let h = EveryCallback { server: Some(l.local_addr().unwrap()), ..EveryCallback::default() };
    let r = common::start_with_listener(backend, LoopConfig::default(), h, l);
    let mut s = r.client();
    let mut got = [0u8; 1];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"x");
    r.waker.wake().unwrap();
    // Written in the turn of the wake, after that turn fired the timer due since "x" went out.
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"w");
    s.write_all(b"y").unwrap();
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"d");
    let h = r.finish();
    let all = ["on_accept", "on_data", "on_sent", "on_timer", "on_turn_end", "on_wake"];
    assert_eq!(h.done, BTreeSet::from(all));
}
both!(options_from_every_callback);
