//! Flow control (Drain, the buffered limit), pause/resume, keepalive, broadcast across workers.

mod common;
use common::*;
use ringwire_conn::Message;
use ringwire_frame::OpCode;
use ringwire_server::{Handler, Sent, Ws};
use std::time::{Duration, Instant};

/// "flood": queue 8 MiB in 256 KiB messages, then report "drained" on Drain.
/// "flood-hard": queue 64 MiB at once (over the buffered limit).
/// "pause": pause reading, resume from another thread 300 ms later.
/// "who": answer with the worker index. Anything else: broadcast to everyone.
#[derive(Clone)]
struct Flow;

impl Handler for Flow {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        let Message::Text(t) = message else { return };
        match &*t {
            "flood" => {
                let mut full = false;
                for _ in 0..32 {
                    full |= ws.send_binary(vec![7u8; 256 << 10]) == Sent::BufferFull;
                }
                assert!(full, "8 MiB is above the high-water mark");
            }
            "flood-hard" => {
                for _ in 0..64 {
                    if !ws.send_binary(vec![7u8; 1 << 20]).is_queued() {
                        break;
                    }
                }
            }
            "pause" => {
                ws.pause();
                let remote = ws.remote();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    remote.resume().unwrap();
                });
            }
            "who" => {
                let worker = ws.worker();
                ws.send_text(format!("worker {worker}"));
            }
            other => {
                let other = other.to_owned();
                ws.broadcast(other).unwrap();
            }
        }
    }
    fn on_drain(&mut self, ws: &mut Ws<'_>) {
        ws.send_text("drained");
    }
    fn on_pause(&mut self, ws: &mut Ws<'_>) {
        ws.send_text("on_pause");
    }
    fn on_resume(&mut self, ws: &mut Ws<'_>) {
        ws.send_text("on_resume");
    }
}

fn text(raw: &mut Raw) -> String {
    loop {
        let (_, op, p) = raw.read_frame();
        if op == 0x1 {
            return String::from_utf8(p).unwrap();
        }
    }
}

#[test]
fn slow_reader_gets_drain_after_catching_up() {
    for io in backends() {
        let server = start(config(io), Flow);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Text, b"flood", true);
        std::thread::sleep(Duration::from_millis(200)); // not reading: the queue stays up
        let mut bytes = 0;
        loop {
            let (_, op, p) = raw.read_frame();
            match op {
                0x0 | 0x2 => bytes += p.len(),
                0x1 => {
                    assert_eq!(p, b"drained", "{io:?}");
                    break;
                }
                _ => panic!("{io:?}: unexpected opcode {op}"),
            }
        }
        assert!(bytes > 7 << 20, "{io:?}: Drain comes after most of the data ({bytes})");
        server.shutdown().unwrap();
    }
}

#[test]
fn peer_that_never_reads_is_dropped_at_the_buffered_limit() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.connection.max_buffered = Some(4 << 20);
        let server = start(cfg, Flow);
        let mut raw = Raw::connect(server.local_addr());
        raw.frame(true, 0, OpCode::Text, b"flood-hard", true);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(raw.read_close().0, 1008, "{io:?}");
        assert!(raw.at_eof(), "{io:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn pause_stops_reading_and_resume_delivers_everything_in_order() {
    for io in backends() {
        let server = start(config(io), Flow);
        let mut raw = Raw::connect(server.local_addr());
        let t0 = Instant::now();
        raw.frame(true, 0, OpCode::Text, b"pause", true);
        assert_eq!(text(&mut raw), "on_pause", "{io:?}");
        raw.frame(true, 0, OpCode::Text, b"who", true);
        raw.frame(true, 0, OpCode::Text, b"who", true);
        assert_eq!(text(&mut raw), "on_resume", "{io:?}");
        assert!(t0.elapsed() >= Duration::from_millis(250), "{io:?}: nothing read while paused");
        assert_eq!(text(&mut raw), "worker 0");
        assert_eq!(text(&mut raw), "worker 0");
        server.shutdown().unwrap();
    }
}

#[test]
fn keepalive_drops_a_silent_peer_with_1006() {
    for io in backends() {
        let mut cfg = config(io);
        cfg.connection.keepalive =
            Some(ringwire_conn::Keepalive::new(Duration::from_millis(200), Duration::from_millis(200)));
        let server = start(cfg, Flow);
        let mut raw = Raw::connect(server.local_addr());
        let t0 = Instant::now();
        let (_, op, _) = raw.read_frame();
        assert_eq!(op, 0x9, "{io:?}: a keepalive ping");
        assert!(raw.at_eof(), "{io:?}: dropped without a close frame after the grace period");
        assert!(t0.elapsed() >= Duration::from_millis(350), "{io:?}");
        // A peer that answers stays connected.
        let mut live = Raw::connect(server.local_addr());
        for _ in 0..3 {
            let (_, op, p) = live.read_frame();
            assert_eq!(op, 0x9);
            live.frame(true, 0, OpCode::Pong, &p, true);
        }
        live.frame(true, 0, OpCode::Text, b"who", true);
        assert_eq!(text(&mut live), "worker 0", "{io:?}: still connected after 3 keepalive rounds");
        server.shutdown().unwrap();
    }
}

#[test]
fn broadcast_reaches_every_client_on_both_workers() {
    for io in backends() {
        let server = start(config(io).with_threads(2), Flow);
        let mut clients = Vec::new();
        let mut seen = [false; 2];
        for _ in 0..64 {
            let mut raw = Raw::connect(server.local_addr());
            raw.frame(true, 0, OpCode::Text, b"who", true);
            let w: usize = text(&mut raw).trim_start_matches("worker ").parse().unwrap();
            seen[w] = true;
            clients.push(raw);
            if seen == [true, true] && clients.len() >= 4 {
                break;
            }
        }
        assert_eq!(seen, [true, true], "{io:?}: connections landed on both workers");
        clients[0].frame(true, 0, OpCode::Text, b"hello all", true);
        for c in &mut clients {
            assert_eq!(text(c), "hello all", "{io:?}");
        }
        server.shutdown().unwrap();
    }
}
