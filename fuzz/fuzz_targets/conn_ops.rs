//! A client and a server `Connection` driven by arbitrary operations and bytes, with
//! permessage-deflate agreed or not (the first byte picks: off, shared mode, dedicated
//! mode, or windows of 9-15 bits with mixed context takeover). Oracles: nothing panics, the state never moves backwards, `Close` is reported
//! exactly once and only when closed, and everything ends finished after a final
//! close and enough time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwire_conn::deflate::{DeflateConfig, DeflateParams};
use ringwire_conn::{CloseCode, Config, ConnInfo, Connection, Event, Role, State};
use std::time::{Duration, Instant};

struct Side {
    conn: Connection,
    last: State,
    closes: usize,
    blocked: bool,
    inbox: Vec<u8>,
}

impl Side {
    fn check(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            if matches!(e, Event::Close { .. }) {
                self.closes += 1;
            }
        }
        let st = self.conn.state();
        assert!(st >= self.last, "state went from {:?} to {st:?}", self.last);
        self.last = st;
        assert!(self.closes <= 1);
        assert_eq!(self.closes == 1, st == State::Closed);
    }
}

/// Writes what `from` has into `to`'s inbox and lets `to` read one split.
fn transfer(from: &mut Side, to: &mut Side, now: Instant, split: usize) -> bool {
    let mut moved = false;
    if !from.blocked {
        let mut n = 0;
        while let Some(c) = from.conn.poll_transmit() {
            to.inbox.extend_from_slice(&c);
            n += c.len();
        }
        if n > 0 {
            from.conn.handle_written(n, now);
            moved = true;
        }
    }
    if !to.inbox.is_empty() && to.conn.wants_read() {
        let take = split.clamp(1, to.inbox.len());
        let chunk: Vec<u8> = to.inbox.drain(..take).collect();
        to.conn.handle_read(&chunk, now);
        moved = true;
    }
    moved
}

fn pump(a: &mut Side, b: &mut Side, now: Instant, split: usize) {
    for _ in 0..64 {
        a.check();
        b.check();
        let mut moved = false;
        moved |= transfer(a, b, now, split);
        moved |= transfer(b, a, now, split);
        if !moved {
            break;
        }
    }
    a.check();
    b.check();
}

/// The deflate parameters byte `b` picks, if any.
fn deflate(b: u8) -> Option<DeflateParams> {
    let bits = |x: u8| 9 + x % 7;
    match b & 3 {
        0 => None,
        1 => Some(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }),
        2 => Some(DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }),
        _ => Some(DeflateParams {
            server_no_context_takeover: b & 4 != 0,
            client_no_context_takeover: b & 8 != 0,
            server_max_window_bits: bits(b >> 4),
            client_max_window_bits: bits(b >> 5),
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let params = data.first().and_then(|&b| deflate(b));
    let data = data.get(1..).unwrap_or_default();
    let config = |role| {
        let mut c = Config::for_role(role);
        c.deflate = params.map(|_| DeflateConfig::default());
        c
    };
    let mut info = ConnInfo::new();
    info.deflate = params;
    let side = |role| Side {
        conn: Connection::new(role, config(role), info.clone(), now),
        last: State::Open,
        closes: 0,
        blocked: false,
        inbox: Vec::new(),
    };
    let (mut c, mut s) = (side(Role::Client), side(Role::Server));
    let mut it = data.iter().copied();
    let mut split = 7usize;
    while let Some(op) = it.next() {
        let arg = usize::from(it.next().unwrap_or(0));
        let who = if op & 0x80 != 0 { &mut c } else { &mut s };
        match op & 0x0F {
            0 => {
                let _ = who.conn.send_text("é".repeat(arg * 37), None);
            }
            1 => {
                let _ = who.conn.send_binary(vec![arg as u8; arg * arg], None);
            }
            2 => {
                let _ = who.conn.ping(&vec![1; arg]);
            }
            3 => {
                let _ = who.conn.close(CloseCode(990 + arg as u16 * 13), "bye");
            }
            4 => who.conn.drop_connection(CloseCode::GOING_AWAY, "drop", arg & 1 == 0),
            5 => who.conn.pause(),
            6 => who.conn.resume(),
            7 => who.conn.cancel_pong(),
            8 => who.conn.handle_eof(now),
            9 => {
                // Raw bytes from the wire, straight into this side.
                let raw: Vec<u8> = it.by_ref().take(arg % 48).collect();
                who.conn.handle_read(&raw, now);
            }
            10 => {
                now += Duration::from_millis(arg as u64 * 250);
                c.conn.handle_timeout(now);
                s.conn.handle_timeout(now);
            }
            11 => who.blocked = !who.blocked,
            12 => split = arg.max(1) * 13,
            _ => pump(&mut c, &mut s, now, split),
        }
        c.check();
        s.check();
    }
    c.blocked = false;
    s.blocked = false;
    c.conn.resume();
    s.conn.resume();
    let _ = c.conn.close(CloseCode::NORMAL, "");
    for _ in 0..4 {
        pump(&mut c, &mut s, now, 1 << 16);
        now += Duration::from_secs(30);
        c.conn.handle_timeout(now);
        s.conn.handle_timeout(now);
    }
    pump(&mut c, &mut s, now, 1 << 16);
    assert_eq!(c.conn.state(), State::Closed);
    assert_eq!(s.conn.state(), State::Closed);
});
