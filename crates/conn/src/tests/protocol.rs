//! Protocol faults by the peer: each closes with the right code and a reason, after
//! an Error event.

use super::*;
use crate::{ConnError, Message, ProtocolError, Utf8Bytes};
use bytes::Bytes;

/// Feeds `wire` to a fresh server and returns its events and the frames it sent.
fn server_gets(wire: &[u8]) -> (Vec<Event>, Vec<F>) {
    let mut p = Pair::std();
    p.inject_to_server(wire);
    let ev = p.server_events();
    (ev, frames(&p.server_wire, Role::Server))
}

fn assert_failed(wire: &[u8], code: u16, err: fn(&ProtocolError) -> bool) {
    let (ev, sent) = server_gets(wire);
    let n = ev.len();
    assert!(n >= 2, "{ev:?}");
    match &ev[n - 2] {
        Event::Error(ConnError::Protocol(e)) => assert!(err(e), "{e:?}"),
        other => panic!("expected Error, got {other:?}"),
    }
    let Event::Close { code: c, description } = &ev[n - 1] else { panic!("expected Close, got {:?}", ev[n - 1]) };
    assert_eq!(c.as_u16(), code);
    assert!(!description.is_empty(), "a reason is given");
    let last = sent.last().expect("a close frame");
    assert_eq!(last.op, OpCode::Close);
    assert_eq!(u16::from_be_bytes([last.payload[0], last.payload[1]]), code);
    assert_eq!(&last.payload[2..], description.as_bytes());
}

#[test]
fn invalid_utf8_fails_fast_inside_a_fragmented_message() {
    // "κόσμε" then a first fragment ending in an impossible byte; the message never
    // finishes, yet the server fails at once (Autobahn 6.4.x).
    let wire =
        [cframe(OpCode::Text, false, "κόσμε".as_bytes()), cframe(OpCode::Continuation, false, &[0xED, 0xA0, 0x80])]
            .concat();
    assert_failed(&wire, 1007, |e| *e == ProtocolError::InvalidUtf8);
}

#[test]
fn invalid_utf8_fails_fast_inside_one_frame_split_across_reads() {
    let mut p = Pair::std();
    let mut payload = "hello".as_bytes().to_vec();
    payload.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(&[b'a'; 100]);
    let wire = cframe(OpCode::Text, true, &payload);
    // Only the header and the first 9 payload bytes arrive.
    p.server.handle_read(&wire[..2 + 4 + 9], p.now);
    let ev = p.server_events();
    assert!(matches!(ev[0], Event::Error(ConnError::Protocol(ProtocolError::InvalidUtf8))), "{ev:?}");
    assert_eq!(ev[1], close_event(1007, "invalid UTF-8 in a text message"));
}

#[test]
fn invalid_utf8_in_a_single_frame_and_at_the_end_of_a_message() {
    assert_failed(&cframe(OpCode::Text, true, &[b'a', 0xFF]), 1007, |e| *e == ProtocolError::InvalidUtf8);
    // A code point cut off by the end of the message.
    let wire = [cframe(OpCode::Text, false, b"a"), cframe(OpCode::Continuation, true, &[0xE2, 0x82])].concat();
    assert_failed(&wire, 1007, |e| *e == ProtocolError::InvalidUtf8);
}

#[test]
fn invalid_utf8_in_a_close_reason_is_1007() {
    let mut payload = close_payload(1000, "");
    payload.extend_from_slice(&[0xCE, 0xBA, 0xFF]);
    assert_failed(&cframe(OpCode::Close, true, &payload), 1007, |e| matches!(e, ProtocolError::InvalidClosePayload(_)));
}

#[test]
fn bad_close_codes_and_one_byte_close_are_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let wire = cframe(OpCode::Close, true, &close_payload(code, ""));
        assert_failed(&wire, 1002, |e| matches!(e, ProtocolError::InvalidClosePayload(_)));
    }
    assert_failed(&cframe(OpCode::Close, true, &[3]), 1002, |e| matches!(e, ProtocolError::InvalidClosePayload(_)));
}

#[test]
fn continuation_without_a_start_is_1002() {
    assert_failed(&cframe(OpCode::Continuation, true, b"x"), 1002, |e| *e == ProtocolError::UnexpectedContinuation);
}

#[test]
fn new_data_frame_inside_a_fragmented_message_is_1002() {
    let wire = [cframe(OpCode::Text, false, b"a"), cframe(OpCode::Binary, true, b"b")].concat();
    assert_failed(&wire, 1002, |e| *e == ProtocolError::ExpectedContinuation);
}

#[test]
fn control_frames_interleaved_in_a_fragmented_message_are_handled() {
    let wire = [
        cframe(OpCode::Text, false, b"frag"),
        cframe(OpCode::Ping, true, b"p"),
        cframe(OpCode::Continuation, false, b"men"),
        cframe(OpCode::Pong, true, b"q"),
        cframe(OpCode::Continuation, true, b"ted"),
    ]
    .concat();
    let (ev, sent) = server_gets(&wire);
    assert_eq!(
        ev,
        [
            Event::Ping(Bytes::from_static(b"p")),
            Event::Pong(Bytes::from_static(b"q")),
            Event::Message(Message::Text(Utf8Bytes::from("fragmented"))),
        ]
    );
    assert_eq!(sent, [F { fin: true, op: OpCode::Pong, payload: b"p".to_vec() }]);
}

#[test]
fn frame_rules_from_the_decoder_are_1002() {
    let unmasked = frame(OpCode::Text, true, b"x", None);
    assert_failed(&unmasked, 1002, |e| matches!(e, ProtocolError::Frame(_)));
    assert_failed(&[0x83, 0x80, 1, 2, 3, 4], 1002, |e| matches!(e, ProtocolError::Frame(_))); // opcode 3
    assert_failed(&[0xC1, 0x80, 1, 2, 3, 4], 1002, |e| matches!(e, ProtocolError::Frame(_))); // RSV1
    assert_failed(&[0x09, 0x80, 1, 2, 3, 4], 1002, |e| matches!(e, ProtocolError::Frame(_))); // fragmented ping
    assert_failed(&cframe(OpCode::Ping, true, &[0; 126]), 1002, |e| matches!(e, ProtocolError::Frame(_)));
}

#[test]
fn max_received_frame_size_is_1009_at_the_header() {
    let mut cfg = Config::server();
    cfg.max_received_frame_size = 10;
    let mut p = Pair::new(Config::client(), cfg);
    // Only the header of an 11-byte frame: rejected before the payload arrives.
    p.inject_to_server(&cframe(OpCode::Binary, true, &[0; 11])[..6]);
    let ev = p.server_events();
    assert!(matches!(ev[0], Event::Error(ConnError::Protocol(ProtocolError::Frame(_)))));
    assert_eq!(ev[1], close_event(1009, "frame of 11 bytes exceeds the maximum of 10"));
    let mut p = Pair::new(Config::client(), Config::server());
    p.inject_to_server(&cframe(OpCode::Binary, true, &[0; 65_536]));
    assert!(matches!(p.server_events()[0], Event::Message(_)), "64 KiB is the server default");
}

#[test]
fn max_received_message_size_counts_single_frames_and_running_totals() {
    let mut cfg = Config::server();
    cfg.max_received_message_size = 10;
    let tb = |e: &ProtocolError| matches!(e, ProtocolError::MessageTooBig { .. });
    let mut p = Pair::new(Config::client(), cfg.clone());
    p.inject_to_server(&cframe(OpCode::Binary, true, &[0; 11]));
    let ev = p.server_events();
    assert!(matches!(&ev[0], Event::Error(ConnError::Protocol(e)) if tb(e)));
    assert_eq!(ev[1], close_event(1009, "message of at least 11 bytes exceeds the maximum of 10"));
    let mut p = Pair::new(Config::client(), cfg.clone());
    p.inject_to_server(&[cframe(OpCode::Binary, false, &[0; 6]), cframe(OpCode::Continuation, true, &[0; 5])].concat());
    let ev = p.server_events();
    assert!(matches!(&ev[0], Event::Error(ConnError::Protocol(e)) if tb(e)));
    let mut p = Pair::new(Config::client(), cfg);
    p.inject_to_server(&[cframe(OpCode::Binary, false, &[0; 6]), cframe(OpCode::Continuation, true, &[0; 4])].concat());
    assert_eq!(p.server_events(), [Event::Message(Message::Binary(Bytes::from(vec![0u8; 10])))]);
}

#[test]
fn client_rejects_masked_frames_from_a_server() {
    let mut p = Pair::std();
    p.inject_to_client(&cframe(OpCode::Text, true, b"masked"));
    let ev = p.client_events();
    assert!(matches!(ev[0], Event::Error(ConnError::Protocol(ProtocolError::Frame(_)))));
    assert_eq!(ev[1], close_event(1002, "masked frame from a server"));
}

#[test]
fn nothing_after_a_close_frame_is_read() {
    let wire = [cframe(OpCode::Close, true, &close_payload(1000, "")), cframe(OpCode::Text, true, b"ignored")].concat();
    let (ev, _) = server_gets(&wire);
    assert_eq!(ev, [close_event(1000, "")]);
}

#[test]
fn a_reply_to_a_message_goes_out_before_the_failure_a_later_frame_causes() {
    // Autobahn 3.2 / 5.15: a valid message and a bad frame arrive in one read. The
    // failure is found only once the application has taken the message, so its echo is
    // queued ahead of the close frame.
    let mut p = Pair::std();
    let wire = [cframe(OpCode::Text, true, b"Hello"), vec![0xA1, 0x80, 1, 2, 3, 4]].concat();
    p.server.handle_read(&wire, p.now);
    let Some(Event::Message(Message::Text(t))) = p.server.poll_event() else { panic!("message first") };
    assert_eq!(&*t, "Hello");
    let _ = p.server.send_text(t, None).unwrap();
    assert!(matches!(p.server.poll_event(), Some(Event::Error(_))));
    assert!(matches!(p.server.poll_event(), Some(Event::Close { .. })));
    let mut wire_out = Vec::new();
    while let Some(chunk) = p.server.poll_transmit() {
        wire_out.extend_from_slice(&chunk);
    }
    let sent = frames(&wire_out, Role::Server);
    assert_eq!(sent.iter().map(|f| f.op).collect::<Vec<_>>(), [OpCode::Text, OpCode::Close]);
    assert_eq!(sent[0].payload, b"Hello");
}

#[test]
fn input_after_a_pause_waits_for_resume() {
    let mut p = Pair::std();
    let wire = [cframe(OpCode::Text, true, b"one"), cframe(OpCode::Text, true, b"two")].concat();
    p.server.handle_read(&wire, p.now);
    assert!(matches!(p.server.poll_event(), Some(Event::Message(_))));
    p.server.pause();
    assert_eq!(p.server.poll_event(), Some(Event::Pause));
    assert_eq!(p.server.poll_event(), None, "the second message waits while paused");
    p.server.resume();
    assert_eq!(p.server.poll_event(), Some(Event::Resume));
    let Some(Event::Message(Message::Text(t))) = p.server.poll_event() else { panic!("second message") };
    assert_eq!(&*t, "two");
}
