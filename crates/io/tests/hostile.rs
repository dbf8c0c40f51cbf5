//! What a hostile or broken peer can make the loop do, bounded (issue 11), on both backends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::start;
use ringwire_io::bytes::Bytes;
use ringwire_io::{Backend, ConnId, Handler, Io, LoopConfig};

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                if super::common::uring_available() {
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
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: &mut [u8]) {
        io.send(conn, Bytes::copy_from_slice(data));
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
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| tagged(u64::from(round) << 16 | i as u64, 1500 + (i * 37) % 3000)).collect();
        for (s, m) in conns.iter_mut().zip(&msgs) {
            s.write_all(m).unwrap();
        }
        for (i, (s, m)) in conns.iter_mut().zip(&msgs).enumerate() {
            let mut back = vec![0u8; m.len()];
            s.read_exact(&mut back).unwrap();
            assert!(back == *m, "round {round}: connection {i} got someone else's bytes");
            bytes += m.len();
        }
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
