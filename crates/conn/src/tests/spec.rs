//! WebSocket-Node behaviours matched exactly (issue 12): every frame as a `Frame` event
//! without assembly, `close()`'s default description, `cancel_pong` after other
//! commands, fragmented broadcasts, and Drain at an empty buffer.

use super::*;
use crate::{CloseCode, Frame, PreparedMessage, SendStatus, State};
use bytes::Bytes;
use std::time::Instant;

fn pong(b: &[u8]) -> F {
    F { fin: true, op: OpCode::Pong, payload: b.to_vec() }
}

/// The server has just polled `Event::Ping(b"x")`, as a handler's `on_ping` sees it.
fn server_polled_a_ping() -> Pair {
    let mut p = Pair::std();
    p.client.ping(b"x").unwrap();
    let wire: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit()).flat_map(|b| b.to_vec()).collect();
    p.server.handle_read(&wire, p.now);
    assert_eq!(p.server.poll_event(), Some(Event::Ping(Bytes::from_static(b"x"))));
    p
}

#[test]
fn cancel_pong_works_after_ping_pong_or_close_in_the_ping_handler() {
    for cancel in [false, true] {
        // ping() and pong() first: they queue the owed pong, cancel takes it back.
        let mut p = server_polled_a_ping();
        p.server.ping(b"mine").unwrap();
        p.server.pong(b"own").unwrap();
        if cancel {
            p.server.cancel_pong();
        }
        p.drive();
        let ping = F { fin: true, op: OpCode::Ping, payload: b"mine".to_vec() };
        let want = if cancel { vec![ping, pong(b"own")] } else { vec![pong(b"x"), ping, pong(b"own")] };
        assert_eq!(frames(&p.server_wire, Role::Server), want, "cancel {cancel}");

        // close() first: the pong goes before our close frame unless cancelled.
        let mut p = server_polled_a_ping();
        p.server.close(CloseCode::NORMAL, "bye").unwrap();
        if cancel {
            p.server.cancel_pong();
        }
        p.drive();
        let close = F { fin: true, op: OpCode::Close, payload: close_payload(1000, "bye") };
        let want = if cancel { vec![close] } else { vec![pong(b"x"), close] };
        assert_eq!(frames(&p.server_wire, Role::Server), want, "cancel {cancel}");
        assert_eq!(p.server.state(), State::Closed);
    }
}

#[test]
fn a_queued_pong_is_cancellable_only_until_the_next_poll() {
    // After the next poll_event the pong queued by ping() is an ordinary pong.
    let mut p = server_polled_a_ping();
    p.server.ping(b"mine").unwrap();
    assert_eq!(p.server.poll_event(), None);
    p.server.cancel_pong();
    p.drive();
    assert_eq!(frames(&p.server_wire, Role::Server)[0], pong(b"x"));
}

#[test]
fn without_assembly_every_frame_is_a_frame_event_and_control_frames_still_work() {
    let mut cfg = Config::server();
    cfg.assemble_fragments = false;
    let mut p = Pair::new(Config::client(), cfg);
    p.splits = vec![3]; // the same events for any split
    let mut wire = cframe(OpCode::Text, false, b"he");
    wire.extend(cframe(OpCode::Ping, true, b"p"));
    wire.extend(cframe(OpCode::Continuation, true, b"llo"));
    wire.extend(cframe(OpCode::Pong, true, b"q"));
    wire.extend(cframe(OpCode::Close, true, &close_payload(1000, "bye")));
    p.inject_to_server(&wire);
    let fr =
        |fin, opcode, payload: &[u8]| Event::Frame(Frame { fin, opcode, payload: Bytes::copy_from_slice(payload) });
    assert_eq!(
        p.server_events(),
        [
            fr(false, OpCode::Text, b"he"),
            fr(true, OpCode::Ping, b"p"),
            Event::Ping(Bytes::from_static(b"p")),
            fr(true, OpCode::Continuation, b"llo"),
            fr(true, OpCode::Pong, b"q"),
            Event::Pong(Bytes::from_static(b"q")),
            fr(true, OpCode::Close, &close_payload(1000, "bye")),
            close_event(1000, "bye"),
        ]
    );
    // The ping was answered and the close echoed.
    let close = F { fin: true, op: OpCode::Close, payload: close_payload(1000, "") };
    assert_eq!(frames(&p.server_wire, Role::Server), [pong(b"p"), close]);
}

#[test]
fn close_without_a_reason_sends_the_codes_description() {
    assert_eq!(CloseCode::default(), CloseCode::NORMAL);
    // None: the description, on the wire and as close_description, both sides.
    let mut p = Pair::std();
    p.server.close(CloseCode::default(), None).unwrap();
    assert_eq!(p.server.close_description(), Some("Normal connection closure"));
    p.drive();
    let sent = close_payload(1000, "Normal connection closure");
    assert_eq!(frames(&p.server_wire, Role::Server), [F { fin: true, op: OpCode::Close, payload: sent }]);
    assert_eq!(p.client_events(), [close_event(1000, "Normal connection closure")]);
    assert_eq!(p.server_events(), [close_event(1000, "Normal connection closure")]);
    // Some(""): no reason; a code without a description: none either.
    for (code, reason, want) in [(1001, Some(""), ""), (4000, None, ""), (1011, None, "Internal server error")] {
        let mut p = Pair::std();
        p.client.close(CloseCode(code), reason).unwrap();
        p.drive();
        assert_eq!(p.server_events(), [close_event(code, want)], "{code} {reason:?}");
    }
}

#[test]
fn drop_connection_without_a_reason_sends_the_codes_description() {
    let mut p = Pair::std();
    p.server.drop_connection(CloseCode::PROTOCOL_ERROR, None, false);
    assert_eq!(p.server_events(), [close_event(1002, "Protocol error")]);
    p.drive();
    assert_eq!(frames(&p.server_wire, Role::Server)[0].payload, close_payload(1002, "Protocol error"));
    let mut p = Pair::std();
    p.server.drop_connection(CloseCode::GOING_AWAY, Some(""), false);
    assert_eq!(p.server_events(), [close_event(1001, "")]);
}

#[test]
fn broadcasts_are_fragmented_like_sends() {
    let mut cfg = Config::server();
    cfg.fragmentation_threshold = 1000;
    let big = PreparedMessage::binary((0..2500u32).map(|i| i as u8).collect::<Vec<u8>>());
    let small = PreparedMessage::text("hi");
    let mut p = Pair::new(Config::client(), cfg.clone());
    assert_eq!(p.server.send_prepared(&big, None), Ok(SendStatus::Queued));
    // The fragments' payloads are slices of the prepared payload, not copies.
    let range = big.payload().as_ptr_range();
    let chunks: Vec<Bytes> = std::iter::from_fn(|| p.server.poll_transmit()).collect();
    let shared = chunks.iter().filter(|c| range.contains(&c.as_ptr())).map(Bytes::len).collect::<Vec<_>>();
    assert_eq!(shared, [1000, 1000], "the 500-byte tail is small enough to be copied");
    let wire: Vec<u8> = chunks.concat();
    assert_eq!(wire.len(), p.server.buffered_amount());
    let got = frames(&wire, Role::Server);
    let ops: Vec<(bool, OpCode, usize)> = got.iter().map(|f| (f.fin, f.op, f.payload.len())).collect();
    assert_eq!(
        ops,
        [(false, OpCode::Binary, 1000), (false, OpCode::Continuation, 1000), (true, OpCode::Continuation, 500)]
    );
    assert_eq!(got.iter().flat_map(|f| f.payload.clone()).collect::<Vec<u8>>(), &big.payload()[..]);
    // A small one keeps the shared wire bytes.
    let _ = p.server.send_prepared(&small, None).unwrap();
    assert_eq!(p.server.poll_transmit().unwrap(), small.wire());
    // Without fragmentation, one frame.
    cfg.fragment_outgoing_messages = false;
    let mut p = Pair::new(Config::client(), cfg.clone());
    let _ = p.server.send_prepared(&big, None).unwrap();
    let wire: Vec<u8> = std::iter::from_fn(|| p.server.poll_transmit()).flat_map(|b| b.to_vec()).collect();
    assert_eq!(wire, &big.wire()[..]);
    // A client fragments too (and masks).
    let mut client = Config::client();
    client.fragmentation_threshold = 1000;
    let mut p = Pair::new(client, Config::server());
    let _ = p.client.send_prepared(&big, None).unwrap();
    p.drive();
    assert_eq!(p.server_events(), [Event::Message(crate::Message::Binary(big.payload().clone()))]);
    assert_eq!(frames(&p.client_wire, Role::Client).len(), 3);
}

/// A server whose application sends until `BufferFull` and again at every `Drain`, as a
/// driver runs it (events, then transmit, after every input), while its peer reads 8 KiB
/// at a time; the peer pinged first. Returns, for each `Drain`, the buffered amount the
/// application saw and whether the pong was written by then.
fn refill_on_every_drain(low_water_mark: usize, drains: usize) -> Vec<(usize, bool)> {
    let mut cfg = Config::server();
    cfg.low_water_mark = low_water_mark;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, cfg, ConnInfo::new(), now);
    let fill = |s: &mut Connection| while s.send_binary(vec![7u8; 16 << 10], None).unwrap() == SendStatus::Queued {};
    let pong: &[u8] = b"\x8a\x04ping";
    let (mut handed, mut wire, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    let mut input = cframe(OpCode::Ping, true, b"ping");
    input.extend(cframe(OpCode::Text, true, b"go"));
    s.handle_read(&input, now);
    loop {
        while let Some(e) = s.poll_event() {
            match e {
                Event::Message(_) => fill(&mut s),
                Event::Drain => {
                    seen.push((s.buffered_amount(), wire.windows(pong.len()).any(|w| w == pong)));
                    if seen.len() < drains {
                        fill(&mut s);
                    }
                }
                _ => {}
            }
        }
        while let Some(chunk) = s.poll_transmit() {
            handed.extend_from_slice(&chunk);
        }
        if handed.is_empty() {
            return seen;
        }
        let n = handed.len().min(8 << 10);
        wire.extend(handed.drain(..n));
        s.handle_written(n, now);
    }
}

#[test]
fn low_water_mark_zero_drains_when_empty_and_pongs_still_go() {
    // Drain comes with the last byte written, not one byte before.
    let mut cfg = Config::server();
    cfg.low_water_mark = 0;
    let mut p = Pair::new(Config::client(), cfg);
    assert_eq!(p.server.send_binary(vec![0u8; 100 << 10], None), Ok(SendStatus::BufferFull));
    let n: usize = std::iter::from_fn(|| p.server.poll_transmit()).map(|c| c.len()).sum();
    p.server.handle_written(n - 1, p.now);
    assert_eq!((p.server.poll_event(), p.server.buffered_amount()), (None, 1));
    p.server.handle_written(1, p.now);
    assert_eq!((p.server.poll_event(), p.server.buffered_amount()), (Some(Event::Drain), 0));

    let seen = refill_on_every_drain(0, 5);
    assert_eq!(seen.len(), 5);
    for (i, (buffered, ponged)) in seen.into_iter().enumerate() {
        assert_eq!(buffered, 0, "Drain {i} comes with nothing buffered");
        assert!(ponged, "Drain {i}: the pong went first, not starved by the refills");
    }
    // The default low-water mark: the pong is not starved either.
    let seen = refill_on_every_drain(16 << 10, 5);
    assert!(seen.iter().all(|&(b, _)| b <= 16 << 10));
    assert!(seen[1..].iter().all(|&(_, ponged)| ponged), "{seen:?}");
}
