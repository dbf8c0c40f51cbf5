//! A peer that means harm (issue 11): it floods pings or messages and never takes what
//! we write. Whatever it sends, the connection holds at most `max_buffered` of output
//! (plus one close frame) and one read of input; ordinary peers see no difference.

use super::*;
use crate::{BufferedLimitPolicy, CloseCode, ConnError, Keepalive, Message, SendStatus, State};
use bytes::Bytes;

/// One socket read in these tests.
const READ: usize = 64 << 10;
/// The largest close frame: a masked header and 125 bytes of payload.
const CLOSE_FRAME: usize = 2 + 4 + 125;

/// What a flood left behind.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    /// Input bytes the connection took before it stopped reading.
    consumed: usize,
    /// Output bytes handed to the socket (never written).
    handed: usize,
    /// Pongs among them.
    pongs: usize,
    buffered: usize,
    received: usize,
}

/// `count` copies of `unit` as a peer streams them, cut into reads of [`READ`] bytes
/// (made as they are read: a large `count` costs nothing unless it is read).
fn stream(unit: &[u8], count: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut left = unit.len() * count;
    let mut bytes = unit.iter().copied().cycle();
    std::iter::from_fn(move || {
        let n = left.min(READ);
        left -= n;
        (n > 0).then(|| bytes.by_ref().take(n).collect())
    })
}

/// Feeds `reads` to a server the way the server's worker does (read while
/// `wants_read`, take every event, hand out every chunk), except that the socket never
/// accepts a byte: `handle_written` is never called. The handler sends every message
/// back `echoes` times (refusals ignored). Checks the bounds after every read.
fn never_written(cfg: Config, reads: impl Iterator<Item = Vec<u8>>, echoes: usize) -> Held {
    let now = Instant::now();
    let limit = cfg.max_buffered.expect("a limit");
    let mut s = Connection::new(Role::Server, cfg, ConnInfo::new(), now);
    let mut held = Held { consumed: 0, handed: 0, pongs: 0, buffered: 0, received: 0 };
    let mut wire = Vec::new();
    for read in reads {
        if !s.wants_read() {
            break;
        }
        s.handle_read(&read, now);
        held.consumed += read.len();
        while let Some(e) = s.poll_event() {
            if let Event::Message(Message::Binary(m)) = e {
                for _ in 0..echoes {
                    let _ = s.send_binary(m.clone(), None);
                }
            }
        }
        while let Some(chunk) = s.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
        assert!(s.buffered_amount() <= limit + CLOSE_FRAME, "{} bytes buffered", s.buffered_amount());
        assert!(s.received_held() <= READ, "{} bytes of input held", s.received_held());
    }
    held.handed = wire.len();
    held.pongs = frames(&wire, Role::Server).iter().filter(|f| f.op == OpCode::Pong).count();
    held.buffered = s.buffered_amount();
    held.received = s.received_held();
    held
}

fn small_limits() -> Config {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(64 << 10);
    cfg.high_water_mark = 16 << 10;
    cfg.low_water_mark = 4 << 10;
    cfg
}

#[test]
fn a_ping_flood_that_never_reads_is_answered_up_to_the_low_water_mark() {
    // Before: one pong queued per ping, not held to max_buffered: 200,000 empty pings
    // left 400 KB of pongs (and 200,000 chunks) against a 64 KiB limit.
    let ping = cframe(OpCode::Ping, true, b"");
    let lwm = small_limits().low_water_mark;
    for n in [10, 1_000, 200_000] {
        let held = never_written(small_limits(), stream(&ping, n), 1);
        assert_eq!(held.consumed, 6 * n, "pings alone never fill the output: reading goes on");
        let reads = (6 * n).div_ceil(READ);
        // Each read's pings owe at most 16 pongs (the newest answers the latest ping);
        // they are queued while at most the low-water mark is unwritten.
        assert_eq!(held.pongs, n.min(16 * reads).min(lwm / 2 + 1), "{n} pings: {held:?}");
        assert_eq!(held.buffered, 2 * held.pongs, "{n} pings");
    }
}

#[test]
fn a_ping_flood_with_payloads_is_held_at_the_low_water_mark() {
    let ping = cframe(OpCode::Ping, true, &[7; 125]);
    let held = never_written(small_limits(), stream(&ping, 50_000), 1);
    assert_eq!(held.consumed, ping.len() * 50_000);
    let lwm = small_limits().low_water_mark;
    // Pongs are queued while the unwritten output is at most the low-water mark: the
    // last one may pass it by one pong.
    assert!(held.buffered > lwm && held.buffered <= lwm + 127, "{held:?}");
    assert_eq!(held.buffered, 127 * held.pongs);
}

#[test]
fn an_echo_flood_that_never_reads_stops_being_read_above_the_high_water_mark() {
    let mut unit = cframe(OpCode::Binary, true, &[1; 60_000]);
    unit.extend(cframe(OpCode::Ping, true, b"p"));
    let mut cfg = Config::server();
    cfg.max_buffered = Some(1 << 20);
    let mut seen = Vec::new();
    for n in [20, 20_000] {
        let held = never_written(cfg.clone(), stream(&unit, n), 1);
        // Two echoes (120 KB) take the output over 64 KiB; the rest of that read is held.
        assert!(held.buffered > cfg.high_water_mark && held.buffered < 2 * cfg.high_water_mark, "{held:?}");
        assert!(held.consumed <= 3 * READ, "{held:?}");
        seen.push(held);
    }
    assert_eq!(seen[0], seen[1], "the same whatever the peer has queued behind");
}

#[test]
fn an_amplifying_handler_is_held_to_max_buffered() {
    // Each message is answered thirty times over: the limit refuses what does not fit.
    let unit = cframe(OpCode::Binary, true, &[1; 10_000]);
    let mut cfg = Config::server();
    cfg.max_buffered = Some(256 << 10);
    cfg.buffered_limit_policy = BufferedLimitPolicy::Report;
    let held = never_written(cfg, stream(&unit, 10_000), 30);
    assert!(held.buffered <= 256 << 10, "{held:?}");
    assert!(held.consumed <= 2 * READ, "{held:?}");
}

#[test]
fn every_ping_is_answered_while_the_output_drains() {
    let mut p = Pair::std();
    for i in 0..100u8 {
        p.client.ping(&[i]).unwrap();
        p.drive();
    }
    let pongs: Vec<Vec<u8>> =
        frames(&p.server_wire, Role::Server).into_iter().filter(|f| f.op == OpCode::Pong).map(|f| f.payload).collect();
    assert_eq!(pongs, (0..100u8).map(|i| vec![i]).collect::<Vec<_>>());
    let client = p.client_events();
    assert_eq!(client.iter().filter(|e| matches!(e, Event::Pong(_))).count(), 100);
}

/// The payloads of the frames a server hands out now (whole frames only).
fn payloads_out(s: &mut Connection) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit()).flat_map(|c| frames(&c, Role::Server)).map(|f| f.payload).collect()
}

#[test]
fn pings_are_all_answered_while_the_output_drains_and_the_latest_sixteen_beyond() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
    let read_pings = |s: &mut Connection, payloads: &[&[u8]]| {
        let wire: Vec<u8> = payloads.iter().flat_map(|p| cframe(OpCode::Ping, true, p)).collect();
        s.handle_read(&wire, now);
        for _ in payloads {
            assert!(matches!(s.poll_event(), Some(Event::Ping(_))));
        }
    };
    // Ten pings in one read (Autobahn 2.10): ten pongs, in order, even while the first
    // ones are not written yet.
    let ten: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
    read_pings(&mut s, &ten.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!(payloads_out(&mut s), ten);
    read_pings(&mut s, &[b"b", b"c"]);
    assert_eq!(payloads_out(&mut s), [&b"b"[..], b"c"], "answered behind unwritten pongs");
    // Backed up (more than the low-water mark unwritten): pongs wait, sixteen at most,
    // the newest answering the latest ping.
    assert_eq!(s.send_binary(vec![0u8; 20 << 10], None), Ok(SendStatus::Queued));
    let handed: usize = std::iter::from_fn(|| s.poll_transmit()).map(|c| c.len()).sum();
    let twenty: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'p', i]).collect();
    read_pings(&mut s, &twenty.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert!(!s.wants_write());
    assert_eq!(s.poll_transmit(), None);
    s.handle_written(handed + 3 * 12, now);
    let mut expected: Vec<Vec<u8>> = twenty[..15].to_vec();
    expected.push(twenty[19].clone());
    assert_eq!(payloads_out(&mut s), expected);
    // A pong owed goes before a later ping of ours, in order.
    read_pings(&mut s, &[b"d"]);
    s.ping(b"mine").unwrap();
    assert_eq!(payloads_out(&mut s), [&b"d"[..], b"mine"]);
}

#[test]
fn a_user_pong_is_not_replaced_by_an_auto_pong() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
    s.pong(b"unsolicited").unwrap();
    s.handle_read(&cframe(OpCode::Ping, true, b"x"), now);
    assert!(matches!(s.poll_event(), Some(Event::Ping(_))));
    assert_eq!(payloads_out(&mut s), [&b"unsolicited"[..], b"x"]);
}

#[test]
fn reading_stops_above_the_high_water_mark_until_the_low_water_mark() {
    let mut cfg = Config::server();
    cfg.fragment_outgoing_messages = false;
    cfg.high_water_mark = 1000;
    cfg.low_water_mark = 300;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, ConnInfo::new(), now);
    assert_eq!(s.send_binary(vec![0u8; 1200], None), Ok(SendStatus::BufferFull));
    assert!(!s.wants_read(), "1204 bytes buffered > 1000");
    let chunks: Vec<Bytes> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 1204);
    // Bytes handed in anyway are held, not parsed.
    s.handle_read(&cframe(OpCode::Text, true, b"held"), now);
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.received_held(), 10);
    s.handle_written(204, now);
    assert!(!s.wants_read(), "1000 left: not yet at the low-water mark");
    assert_eq!(s.poll_event(), None);
    s.handle_written(699, now);
    assert!(!s.wants_read(), "301 left");
    s.handle_written(1, now);
    assert!(s.wants_read(), "300 left: the low-water mark");
    assert_eq!(s.poll_event(), Some(Event::Drain));
    assert_eq!(s.poll_event(), Some(Event::Message(Message::Text("held".into()))));
    // Independent of pause(): both must allow reading.
    s.pause();
    let _ = s.send_binary(vec![0u8; 1200], None).unwrap();
    s.resume();
    assert!(!s.wants_read(), "resumed, but the output is full");
    let _ = std::iter::from_fn(|| s.poll_transmit()).count();
    s.handle_written(2000, now);
    assert!(s.wants_read());
    s.pause();
    assert!(!s.wants_read(), "the output drained, but paused");
}

#[test]
fn control_output_counts_toward_the_high_water_mark() {
    let mut cfg = Config::server();
    cfg.high_water_mark = 100;
    cfg.low_water_mark = 0;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, ConnInfo::new(), now);
    s.ping(&[0; 125]).unwrap();
    assert_eq!(s.buffered_amount(), 127);
    assert!(!s.wants_read());
    let c = s.poll_transmit().unwrap();
    s.handle_written(c.len(), now);
    assert!(s.wants_read());
}

#[test]
fn keepalive_counts_written_bytes_while_reading_is_stopped() {
    let mut cfg = Config::server();
    cfg.keepalive = Some(Keepalive::new(Duration::from_secs(20), Duration::from_secs(10)));
    cfg.high_water_mark = 1000;
    cfg.low_water_mark = 0;
    cfg.fragment_outgoing_messages = false;
    let start = Instant::now();
    let mut s = Connection::new(Role::Server, cfg.clone(), ConnInfo::new(), start);
    let _ = s.send_binary(vec![0u8; 100_000], None).unwrap();
    let total: usize = std::iter::from_fn(|| s.poll_transmit()).map(|c| c.len()).sum();
    // A slow reader: 1 KB a second, for 60 s; we do not read it meanwhile.
    for sec in 1..=60 {
        let now = start + Duration::from_secs(sec);
        s.handle_written(1000, now);
        s.handle_timeout(now);
        let _ = std::iter::from_fn(|| s.poll_transmit()).count();
    }
    assert_eq!(s.state(), State::Open, "its progress shows it is alive");
    assert!(s.buffered_amount() < total);
    // A peer that takes nothing is dropped at the end of the grace period as before.
    let mut s = Connection::new(Role::Server, cfg, ConnInfo::new(), start);
    let _ = s.send_binary(vec![0u8; 100_000], None).unwrap();
    let _ = std::iter::from_fn(|| s.poll_transmit()).count();
    for sec in 1..=30 {
        s.handle_timeout(start + Duration::from_secs(sec));
    }
    let ev: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(ev.contains(&Event::Error(ConnError::KeepaliveTimeout)), "{ev:?}");
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn a_clean_close_loses_nothing_accepted_while_reading_was_stopped() {
    let mut p = Pair::std();
    p.server_write_blocked = true;
    let _ = p.server.send_binary(vec![5u8; 200_000], None).unwrap();
    for i in 0..10u8 {
        let _ = p.client.send_binary(vec![i; 30_000], None).unwrap();
    }
    p.client.close(CloseCode::NORMAL, "done").unwrap();
    p.drive();
    assert!(!p.server.wants_read(), "the server's output is full");
    assert!(p.server_events().is_empty(), "nothing read");
    p.server_write_blocked = false;
    p.drive();
    let got: Vec<Event> = p.server_events().into_iter().filter(|e| *e != Event::Drain).collect();
    assert_eq!(got.len(), 11, "{got:?}");
    for (i, e) in got[..10].iter().enumerate() {
        assert_eq!(*e, Event::Message(Message::Binary(vec![i as u8; 30_000].into())));
    }
    assert_eq!(got[10], close_event(1000, "done"));
    let client: Vec<Event> = p.client_events().into_iter().filter(|e| *e != Event::Drain).collect();
    assert_eq!(client, [Event::Message(Message::Binary(vec![5u8; 200_000].into())), close_event(1000, "done")]);
    assert!(p.client.is_finished() && p.server.is_finished());
}

#[test]
fn the_close_frame_goes_out_over_max_buffered_and_the_close_timeout_runs() {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(1000);
    cfg.buffered_limit_policy = BufferedLimitPolicy::Report;
    let mut p = Pair::new(Config::client(), cfg);
    p.server_write_blocked = true;
    let _ = p.server.send_binary(vec![0u8; 995], None).unwrap();
    assert!(p.server.ping(b"").is_err(), "a ping does not fit");
    p.server.close(CloseCode::GOING_AWAY, "full").unwrap();
    assert_eq!(p.server.state(), State::Ending);
    assert_eq!(p.server.buffered_amount(), 999 + 8, "the close frame is queued over the limit");
    p.advance(Duration::from_secs(5));
    assert_eq!(p.server.state(), State::Closed);
    assert!(p.server.is_finished());
    assert_eq!(p.server_events(), [close_event(1001, "full")]);
}
