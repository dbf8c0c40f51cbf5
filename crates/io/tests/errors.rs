//! Socket errors reach `Handler::on_closed` as `Some(io::Error)` with the kernel's errno, on
//! both backends: a peer that resets while the loop reads (ECONNRESET on recv), and a send to
//! a peer that has reset (ECONNRESET or EPIPE on send).

#[macro_use]
mod common;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::start;
use ringwire_io::bytes::Bytes;
use ringwire_io::{Backend, ConnId, Handler, Io, LoopConfig, RecvBuf};

/// Reads the server's greeting (so the connection is accepted and idle), then closes with
/// `SO_LINGER` 0: the kernel sends RST instead of FIN.
fn reset_after_greeting(mut s: TcpStream) {
    let mut hi = [0u8; 2];
    s.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi");
    let sock = socket2::Socket::from(s);
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock);
}

/// Greets on accept; with `paused`, reads nothing and, once the greeting is written, sends a
/// byte every 10 ms, so that only a send can meet the peer's reset. Records how the
/// connection ended and stops.
struct Greeter {
    paused: bool,
    sends: usize,
    closed: Vec<Option<std::io::Error>>,
}

impl Handler for Greeter {
    fn on_accept(&mut self, io: &mut impl Io, conn: ConnId, _peer: SocketAddr) {
        if self.paused {
            io.pause_read(conn);
        }
        io.send(conn, Bytes::from_static(b"hi"));
    }
    fn on_data(&mut self, _io: &mut impl Io, _conn: ConnId, data: RecvBuf<'_>) {
        panic!("the peer sends nothing, got {data:?}");
    }
    fn on_sent(&mut self, io: &mut impl Io, conn: ConnId, _bytes: usize) {
        if self.paused {
            io.set_timer(conn, Some(io.now() + Duration::from_millis(10)));
        }
    }
    fn on_timer(&mut self, io: &mut impl Io, conn: ConnId) {
        self.sends += 1;
        io.send(conn, Bytes::from_static(b"x"));
    }
    fn on_closed(&mut self, io: &mut impl Io, _conn: ConnId, error: Option<std::io::Error>) {
        self.closed.push(error);
        io.stop();
    }
}

/// The error `on_closed` reported for the one connection of `h`.
fn the_error(h: Greeter) -> std::io::Error {
    let [error]: [Option<std::io::Error>; 1] = h.closed.try_into().expect("one connection, closed once");
    error.expect("a reset is reported as an error, not as a clean close")
}

fn peer_reset_while_reading(backend: Backend) {
    let r = start(backend, LoopConfig::default(), Greeter { paused: false, sends: 0, closed: Vec::new() });
    reset_after_greeting(r.client());
    let e = the_error(r.join());
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
}
both!(peer_reset_while_reading);

fn send_to_a_peer_that_reset(backend: Backend) {
    let r = start(backend, LoopConfig::default(), Greeter { paused: true, sends: 0, closed: Vec::new() });
    reset_after_greeting(r.client());
    let h = r.join();
    assert!(h.sends > 0, "the connection ended before any send after the greeting");
    let e = the_error(h);
    assert!(matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe), "{e}");
    assert!(matches!(e.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE)), "{e}");
}
both!(send_to_a_peer_that_reset);
