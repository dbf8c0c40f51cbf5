//! The close handshake, every state transition, and the close-code constants.

use super::*;
use crate::{CloseCode, ConnError, Message, SendError, SendToken, State, Utf8Bytes};

#[test]
fn local_close_goes_open_ending_closed_and_peer_goes_through_peer_requested_close() {
    let mut p = Pair::std();
    p.client.close(CloseCode::NORMAL, "Normal closure").unwrap();
    assert_eq!(p.client.state(), State::Ending);
    assert_eq!(p.client.state().as_str(), "ending");
    assert!(!p.client.connected());
    assert_eq!(p.client.close_reason_code(), Some(CloseCode::NORMAL));
    // Deliver the close frame to the server only.
    let wire: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit()).flat_map(|b| b.to_vec()).collect();
    p.client.handle_written(wire.len(), p.now);
    p.server.handle_read(&wire, p.now);
    assert_eq!(p.server.state(), State::PeerRequestedClose);
    assert_eq!(p.server.state().as_str(), "peer_requested_close");
    assert!(!p.server.wants_read());
    assert!(p.server_events().is_empty(), "Close comes once the echo is written");
    p.drive();
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server.state().as_str(), "closed");
    assert_eq!(p.server_events(), [close_event(1000, "Normal closure")]);
    assert_eq!(p.client_events(), [close_event(1000, "Normal closure")]);
    assert_eq!(p.client.state(), State::Closed);
    assert!(p.client.is_finished() && p.server.is_finished());
    // The server echoed the code (without the reason, as WebSocket-Node does).
    assert_eq!(
        frames(&p.server_wire, Role::Server),
        [F { fin: true, op: OpCode::Close, payload: close_payload(1000, "") }]
    );
}

#[test]
fn peer_code_is_echoed_and_reported() {
    let mut p = Pair::std();
    p.inject_to_server(&cframe(OpCode::Close, true, &close_payload(4001, "app says bye")));
    assert_eq!(p.server_events(), [close_event(4001, "app says bye")]);
    assert_eq!(p.server.close_reason_code(), Some(CloseCode(4001)));
    assert_eq!(p.server.close_description(), Some("app says bye"));
    assert_eq!(frames(&p.server_wire, Role::Server)[0].payload, close_payload(4001, ""));
}

#[test]
fn empty_close_frame_reports_1005_and_is_echoed_empty() {
    let mut p = Pair::std();
    p.inject_to_server(&cframe(OpCode::Close, true, b""));
    assert_eq!(p.server_events(), [close_event(1005, "")]);
    assert_eq!(frames(&p.server_wire, Role::Server)[0].payload, b"");
}

#[test]
fn tcp_loss_without_close_frame_reports_1006() {
    let mut p = Pair::std();
    p.server.handle_eof(p.now);
    assert_eq!(p.server_events(), [close_event(1006, "Connection dropped by remote peer.")]);
    assert_eq!(p.server.close_reason_code(), Some(CloseCode::ABNORMAL));
    assert!(p.server.is_finished());
    p.server.handle_eof(p.now);
    assert!(p.server_events().is_empty(), "Close is emitted once");
}

#[test]
fn close_flushes_data_queued_before_it() {
    let mut p = Pair::std();
    p.splits = vec![5];
    let _ = p.server.send_binary(vec![1u8; 50_000], None).unwrap();
    let _ = p.server.send_text("goodbye", None).unwrap();
    p.server.close(CloseCode::GOING_AWAY, "Server shutting down").unwrap();
    assert_eq!(p.server.send_text("late", None), Err(SendError::NotOpen(State::Ending)));
    p.drive();
    let ev = p.client_events();
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[1], Event::Message(Message::Text(Utf8Bytes::from("goodbye"))));
    assert_eq!(ev[2], close_event(1001, "Server shutting down"));
    let f = frames(&p.server_wire, Role::Server);
    assert_eq!(f.last().unwrap().op, OpCode::Close);
    assert_eq!(f.iter().filter(|f| f.op == OpCode::Close).count(), 1);
}

#[test]
fn close_rejects_codes_that_may_not_be_sent_and_long_reasons() {
    let mut p = Pair::std();
    for bad in [1004, 1005, 1006, 1015, 999, 2000, 5000] {
        assert_eq!(p.server.close(CloseCode(bad), ""), Err(SendError::InvalidCloseCode(bad)));
    }
    assert_eq!(p.server.close(CloseCode::NORMAL, "x".repeat(124).as_str()), Err(SendError::CloseReasonTooLong(124)));
    assert_eq!(p.server.state(), State::Open);
    p.server.close(CloseCode(4000), "x".repeat(123).as_str()).unwrap();
    p.server.close(CloseCode::NORMAL, "again").unwrap(); // a no-op once closing
    assert_eq!(p.server.close_reason_code(), Some(CloseCode(4000)));
}

#[test]
fn close_timeout_drops_a_peer_that_never_answers() {
    let mut p = Pair::std();
    p.client_write_blocked = true; // the client never answers
    p.server.close(CloseCode::NORMAL, "").unwrap();
    p.drive();
    assert_eq!(p.server.state(), State::Ending);
    let deadline = p.server.poll_timeout().unwrap();
    assert_eq!(deadline, p.now + p.server.config().close_timeout);
    p.advance(std::time::Duration::from_millis(4_999));
    assert_eq!(p.server.state(), State::Ending);
    p.advance(std::time::Duration::from_millis(1));
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server_events(), [close_event(1000, "")]);
}

#[test]
fn drop_sends_close_frame_and_closes_at_once() {
    let mut p = Pair::std();
    let _ = p.server.send_text("discarded", Some(SendToken(1))).unwrap();
    p.server.drop_connection(CloseCode::POLICY_VIOLATION, "go away", false);
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server_events(), [Event::SendFailed(SendToken(1)), close_event(1008, "go away")]);
    p.drive();
    assert_eq!(
        frames(&p.server_wire, Role::Server),
        [F { fin: true, op: OpCode::Close, payload: close_payload(1008, "go away") }]
    );
    assert_eq!(p.client_events(), [close_event(1008, "go away")]);
    assert_eq!(p.client.close_reason_code(), Some(CloseCode::POLICY_VIOLATION));
}

#[test]
fn drop_can_skip_the_close_frame() {
    let mut p = Pair::std();
    p.server.drop_connection(CloseCode::ABNORMAL, "Peer not responding.", true);
    assert!(p.server.is_finished());
    p.drive();
    assert!(p.server_wire.is_empty());
    assert_eq!(p.client_events(), [close_event(1006, "Connection dropped by remote peer.")]);
}

#[test]
fn nothing_is_sent_after_our_close_frame() {
    let mut p = Pair::std();
    p.server.close(CloseCode::NORMAL, "").unwrap();
    assert_eq!(p.server.ping(b""), Err(SendError::NotOpen(State::Ending)));
    assert_eq!(p.server.pong(b""), Err(SendError::NotOpen(State::Ending)));
    // A ping arriving while we wait is reported but not answered.
    p.inject_to_server(&cframe(OpCode::Ping, true, b"late"));
    let f = frames(&p.server_wire, Role::Server);
    assert_eq!(f.iter().map(|f| f.op).collect::<Vec<_>>(), [OpCode::Close]);
}

#[test]
fn messages_arriving_while_ending_are_still_delivered() {
    let mut p = Pair::std();
    let _ = p.client.send_text("in flight", None).unwrap();
    p.server.close(CloseCode::NORMAL, "").unwrap();
    p.drive();
    let ev = p.server_events();
    assert_eq!(ev[0], Event::Message(Message::Text(Utf8Bytes::from("in flight"))));
    assert_eq!(ev[1], close_event(1000, ""));
}

#[test]
fn error_then_close_on_a_protocol_error() {
    let mut p = Pair::std();
    p.inject_to_server(&cframe(OpCode::Continuation, true, b"x"));
    let ev = p.server_events();
    assert!(matches!(&ev[0], Event::Error(ConnError::Protocol(crate::ProtocolError::UnexpectedContinuation))));
    assert_eq!(ev[1], close_event(1002, "unexpected continuation frame"));
    assert_eq!(
        frames(&p.server_wire, Role::Server),
        [F { fin: true, op: OpCode::Close, payload: close_payload(1002, "unexpected continuation frame") }]
    );
}

#[test]
fn close_constants_and_descriptions_match_the_spec() {
    let table = [
        (CloseCode::NORMAL, 1000, "Normal connection closure"),
        (CloseCode::GOING_AWAY, 1001, "Remote end going away"),
        (CloseCode::PROTOCOL_ERROR, 1002, "Protocol error"),
        (CloseCode::UNPROCESSABLE_INPUT, 1003, "Unprocessable input"),
        (CloseCode::RESERVED, 1004, "Reserved"),
        (CloseCode::NOT_PROVIDED, 1005, "Reason not provided"),
        (CloseCode::ABNORMAL, 1006, "Abnormal closure, no close frame"),
        (CloseCode::INVALID_DATA, 1007, "Invalid frame payload data"),
        (CloseCode::POLICY_VIOLATION, 1008, "Policy violation"),
        (CloseCode::MESSAGE_TOO_BIG, 1009, "Message too big"),
        (CloseCode::EXTENSION_REQUIRED, 1010, "Extension required"),
        (CloseCode::INTERNAL_SERVER_ERROR, 1011, "Internal server error"),
        (CloseCode::TLS_HANDSHAKE_FAILED, 1015, "TLS handshake failed"),
    ];
    for (c, n, d) in table {
        assert_eq!((c.as_u16(), c.description()), (n, Some(d)));
        // Each sendable constant goes through a real close handshake unchanged.
        if c.is_allowed_on_wire() {
            let mut p = Pair::std();
            p.client.close(c, d).unwrap();
            p.drive();
            assert_eq!(p.server_events(), [close_event(n, d)], "{n}");
        }
    }
}

#[test]
fn output_a_closed_peer_never_reads_is_given_up_after_close_timeout() {
    let mut p = Pair::std();
    p.server_write_blocked = true; // the client stopped reading: nothing gets out
    let _ = p.server.send_binary(vec![0u8; 1000], Some(SendToken(5))).unwrap();
    p.inject_to_server(&cframe(OpCode::Continuation, true, b"x")); // a protocol error
    assert_eq!(p.server.state(), State::Closed);
    assert!(!p.server.is_finished(), "data and close frame still queued");
    assert_eq!(p.server.poll_timeout(), Some(p.now + p.server.config().close_timeout));
    p.advance(std::time::Duration::from_secs(5));
    assert!(p.server.is_finished());
    assert_eq!(p.server.poll_timeout(), None);
    assert!(p.server_events().contains(&Event::SendFailed(SendToken(5))));
}

#[test]
fn tcp_loss_while_closing_keeps_the_known_code() {
    // Ending: we sent 1001 and the peer hung up without answering: ours (as Node).
    let mut p = Pair::std();
    p.server.close(CloseCode::GOING_AWAY, "restart").unwrap();
    p.server.handle_eof(p.now);
    assert_eq!(p.server_events(), [close_event(1001, "restart")]);
    // PeerRequestedClose: the peer's code arrived, our echo could not be written.
    let mut p = Pair::std();
    p.server_write_blocked = true;
    p.inject_to_server(&cframe(OpCode::Close, true, &close_payload(4002, "later")));
    assert_eq!(p.server.state(), State::PeerRequestedClose);
    p.server.handle_eof(p.now);
    assert_eq!(p.server_events(), [close_event(4002, "later")]);
    assert!(p.server.is_finished());
}

#[test]
fn handle_written_beyond_what_was_handed_out_is_clamped() {
    let mut p = Pair::std();
    let _ = p.server.send_text("abc", Some(SendToken(1))).unwrap();
    let _ = p.server.send_text("def", Some(SendToken(2))).unwrap();
    let first = p.server.poll_transmit().unwrap();
    p.server.handle_written(first.len() + 100, p.now);
    assert_eq!(p.server_events(), [Event::SendComplete(SendToken(1))]);
    assert_eq!(p.server.buffered_amount(), 5, "the second frame was not handed out, so not written");
}

/// The states a connection can be in when its handler fails, each with what makes a
/// close hard: output the peer does not take, input held, a pong owed, a message half
/// received, a close handshake under way, or over.
fn in_state(setup: usize) -> Pair {
    let mut p = Pair::std();
    match setup {
        0 => {}
        1 => {
            // Open, paused, output above the high-water mark and not taken, a ping
            // answered but not written, a fragmented message half in.
            p.server_write_blocked = true;
            p.server.pause();
            let _ = p.server.send_binary(vec![0u8; 100_000], Some(SendToken(1))).unwrap();
            p.inject_to_server(&[cframe(OpCode::Ping, true, b"p"), cframe(OpCode::Text, false, b"half")].concat());
        }
        2 => {
            // Open, the output handed out and never written.
            let _ = p.server.send_binary(vec![0u8; 100_000], None).unwrap();
            let _ = std::iter::from_fn(|| p.server.poll_transmit()).count();
            p.server_write_blocked = true;
        }
        3 => {
            p.server_write_blocked = true;
            p.server.close(CloseCode::NORMAL, "").unwrap(); // Ending, close frame not handed out
        }
        4 => {
            p.server_write_blocked = true;
            p.inject_to_server(&cframe(OpCode::Close, true, &close_payload(4002, "bye")));
            assert_eq!(p.server.state(), State::PeerRequestedClose);
        }
        _ => {
            p.server.drop_connection(CloseCode::GOING_AWAY, "", false);
            p.drive();
            assert_eq!(p.server.state(), State::Closed);
        }
    }
    p
}

#[test]
fn internal_error_1011_closes_from_any_state() {
    // What a server does when a handler panics: close or drop with 1011, whatever the
    // connection was doing. Either way it reaches Closed and is_finished, within two
    // close timeouts at most even if the peer takes nothing, without a panic.
    for setup in 0..6 {
        for drop in [false, true] {
            // Setup 2 handed its output to a socket that lost it: the peer never reads.
            for peer_reads in [false, true].into_iter().filter(|r| !*r || setup != 2) {
                let case = format!("setup {setup} drop {drop} peer_reads {peer_reads}");
                let mut p = in_state(setup);
                let before = p.server.state();
                let _ = p.server_events();
                p.server_write_blocked = !peer_reads;
                if drop {
                    p.server.drop_connection(CloseCode::INTERNAL_SERVER_ERROR, "handler panicked", false);
                    assert_eq!(p.server.state(), State::Closed, "{case}: dropped at once");
                } else {
                    assert_eq!(p.server.close(CloseCode::INTERNAL_SERVER_ERROR, "handler panicked"), Ok(()));
                }
                p.drive();
                let mut closes: Vec<Event> = p.server_events();
                p.advance(std::time::Duration::from_secs(5));
                p.advance(std::time::Duration::from_secs(5));
                closes.extend(p.server_events());
                closes.retain(|e| matches!(e, Event::Close { .. }));
                assert_eq!(p.server.state(), State::Closed, "{case}");
                assert!(p.server.is_finished(), "{case}");
                // 1011 wins whenever the connection was still open; once closing, a
                // close() is a no-op while a drop still reports 1011; once closed, both
                // are no-ops (Close was reported before).
                let want_1011 = before == State::Open || (drop && before != State::Closed);
                if want_1011 {
                    assert_eq!(closes, [close_event(1011, "handler panicked")], "{case}");
                } else if before == State::Closed {
                    assert_eq!(closes, [], "{case}");
                } else {
                    assert_eq!(closes.len(), 1, "{case}");
                }
                if peer_reads {
                    // One close frame on the wire, last: 1011 if the call took effect.
                    let sent = frames(&p.server_wire, Role::Server);
                    assert_eq!(sent.iter().filter(|f| f.op == OpCode::Close).count(), 1, "{case}");
                    let last = sent.last().expect("a close frame");
                    assert_eq!(last.op, OpCode::Close, "{case}");
                    if want_1011 {
                        assert_eq!(last.payload, close_payload(1011, "handler panicked"), "{case}");
                    }
                }
            }
        }
    }
}
