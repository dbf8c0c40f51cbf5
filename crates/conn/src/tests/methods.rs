//! One transcript per method, property and event of WebSocket-Node's
//! `WebSocketConnection`.

use super::*;
use crate::{CloseCode, Frame, Message, SendError, SendStatus, SendToken, State, Utf8Bytes};
use bytes::Bytes;

fn text(s: &str) -> Event {
    Event::Message(Message::Text(Utf8Bytes::from(s)))
}

fn binary(b: &[u8]) -> Event {
    Event::Message(Message::Binary(Bytes::copy_from_slice(b)))
}

#[test]
fn send_auto_detects_text_and_binary() {
    let mut p = Pair::std();
    let _ = p.client.send("text message", None).unwrap();
    let _ = p.client.send(String::from("owned"), None).unwrap();
    let _ = p.client.send(vec![1u8, 2, 3], None).unwrap();
    let _ = p.client.send(Bytes::from_static(b"\xff"), None).unwrap();
    let _ = p.client.send(&b"sl"[..], None).unwrap();
    p.drive();
    assert_eq!(
        p.server_events(),
        [text("text message"), text("owned"), binary(&[1, 2, 3]), binary(b"\xff"), binary(b"sl")]
    );
}

#[test]
fn send_utf_sends_text_both_ways() {
    let mut p = Pair::std();
    assert_eq!(p.client.send_text("Hello Server!", None), Ok(SendStatus::Queued));
    assert_eq!(p.server.send_text(Utf8Bytes::from_static("Echo: κόσμε"), None), Ok(SendStatus::Queued));
    p.drive();
    assert_eq!(p.server_events(), [text("Hello Server!")]);
    assert_eq!(p.client_events(), [text("Echo: κόσμε")]);
    // Servers send unmasked frames, clients masked ones (the decoder checks both).
    assert_eq!(frames(&p.server_wire, Role::Server)[0].payload, "Echo: κόσμε".as_bytes());
    assert_eq!(frames(&p.client_wire, Role::Client)[0].payload, b"Hello Server!");
}

#[test]
fn send_bytes_sends_binary() {
    let mut p = Pair::std();
    let _ = p.client.send_binary(vec![1u8, 2, 3, 4], None).unwrap();
    let _ = p.server.send_binary(Bytes::new(), None).unwrap();
    p.drive();
    assert_eq!(p.server_events(), [binary(&[1, 2, 3, 4])]);
    assert_eq!(p.client_events(), [binary(b"")]);
}

#[test]
fn send_prepared_frames_once_for_many_servers_and_reframes_for_clients() {
    let long = "broadcast ".repeat(100);
    let msg = crate::PreparedMessage::text(long.clone());
    let mut a = Pair::std();
    let mut b = Pair::std();
    let _ = a.server.send_prepared(&msg, Some(SendToken(1))).unwrap();
    let _ = b.server.send_prepared(&msg, None).unwrap();
    let chunk = a.server.poll_transmit().unwrap();
    assert_eq!(chunk.as_ptr(), msg.wire().as_ptr(), "a large message: the same bytes, not a copy");
    a.server.handle_written(chunk.len(), a.now);
    a.to_client.extend(&chunk[..]);
    a.drive();
    b.drive();
    assert_eq!(a.client_events(), [text(&long)]);
    assert_eq!(b.client_events(), [text(&long)]);
    assert_eq!(a.server_events(), [Event::SendComplete(SendToken(1))]);
    let _ = a.client.send_prepared(&msg, None).unwrap();
    a.drive();
    assert_eq!(a.server_events(), [text(&long)]);
}

#[test]
fn small_prepared_messages_are_copied_next_to_each_other() {
    let msg = crate::PreparedMessage::text("tick");
    let mut p = Pair::std();
    for _ in 0..3 {
        let _ = p.server.send_prepared(&msg, None).unwrap();
    }
    let chunk = p.server.poll_transmit().unwrap();
    assert_eq!(&chunk[..], &msg.wire().repeat(3)[..], "one write for the burst");
    assert!(p.server.poll_transmit().is_none());
    p.server.handle_written(chunk.len(), p.now);
    p.to_client.extend(&chunk[..]);
    p.drive();
    assert_eq!(p.client_events(), [text("tick"), text("tick"), text("tick")]);
}

#[test]
fn send_callback_is_a_token_reported_when_written() {
    let mut p = Pair::std();
    let _ = p.client.send_text("a", Some(SendToken(7))).unwrap();
    let _ = p.client.send_binary(vec![0u8; 40_000], Some(SendToken(8))).unwrap();
    assert!(p.client_events().is_empty(), "nothing written yet");
    p.drive();
    assert_eq!(p.client_events(), [Event::SendComplete(SendToken(7)), Event::SendComplete(SendToken(8))]);
}

#[test]
fn send_token_fails_when_the_connection_ends_first() {
    let mut p = Pair::std();
    p.client_write_blocked = true;
    let _ = p.client.send_text("never written", Some(SendToken(3))).unwrap();
    p.client.drop_connection(CloseCode::GOING_AWAY, "bye", false);
    assert_eq!(p.client_events(), [Event::SendFailed(SendToken(3)), close_event(1001, "bye")]);
}

#[test]
fn ping_is_answered_with_pong_and_payload_over_125_is_an_error() {
    let mut p = Pair::std();
    p.client.ping(b"ping-data").unwrap();
    p.drive();
    assert_eq!(p.server_events(), [Event::Ping(Bytes::from_static(b"ping-data"))]);
    assert_eq!(p.client_events(), [Event::Pong(Bytes::from_static(b"ping-data"))]);
    p.client.ping(&[]).unwrap();
    p.drive();
    assert_eq!(p.client_events(), [Event::Pong(Bytes::new())]);
    assert_eq!(p.client.ping(&[0; 126]), Err(SendError::ControlPayloadTooLong(126)));
    assert!(p.client.ping(&[0; 125]).is_ok(), "125 is allowed (Node cuts at 124)");
}

#[test]
fn pong_sends_an_unsolicited_pong() {
    let mut p = Pair::std();
    p.server.pong(b"heartbeat").unwrap();
    assert_eq!(p.server.pong(&[0; 200]), Err(SendError::ControlPayloadTooLong(200)));
    p.drive();
    assert_eq!(p.client_events(), [Event::Pong(Bytes::from_static(b"heartbeat"))]);
}

#[test]
fn ping_event_cancel_suppresses_the_auto_pong() {
    let mut p = Pair::std();
    p.client.ping(b"1").unwrap();
    p.drive();
    assert_eq!(p.server.poll_event(), None, "drive() took the Ping event");
    // Act as the handler of the next ping: cancel its pong.
    p.client.ping(b"2").unwrap();
    let wire: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit()).flat_map(|b| b.to_vec()).collect();
    p.server.handle_read(&wire, p.now);
    assert_eq!(p.server.poll_event(), Some(Event::Ping(Bytes::from_static(b"2"))));
    p.server.cancel_pong();
    p.drive();
    assert_eq!(frames(&p.server_wire, Role::Server), [F { fin: true, op: OpCode::Pong, payload: b"1".to_vec() }]);
}

#[test]
fn each_of_pings_read_together_is_answered_unless_cancelled() {
    // Two pings in one read: a pong each, in order; cancel_pong after a Ping event
    // cancels that ping's pong only.
    for cancel_first in [false, true] {
        let mut p = Pair::std();
        p.client.ping(b"1").unwrap();
        p.client.ping(b"2").unwrap();
        let wire: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit()).flat_map(|b| b.to_vec()).collect();
        p.server.handle_read(&wire, p.now);
        assert_eq!(p.server.poll_event(), Some(Event::Ping(Bytes::from_static(b"1"))));
        if cancel_first {
            p.server.cancel_pong();
        }
        assert_eq!(p.server.poll_event(), Some(Event::Ping(Bytes::from_static(b"2"))));
        p.drive();
        let pong = |b: &[u8]| F { fin: true, op: OpCode::Pong, payload: b.to_vec() };
        let want = if cancel_first { vec![pong(b"2")] } else { vec![pong(b"1"), pong(b"2")] };
        assert_eq!(frames(&p.server_wire, Role::Server), want, "cancel_first {cancel_first}");
    }
}

#[test]
fn auto_pong_off_sends_no_pong() {
    let mut cfg = Config::server();
    cfg.auto_pong = false;
    let mut p = Pair::new(Config::client(), cfg);
    p.client.ping(b"x").unwrap();
    p.drive();
    assert_eq!(p.server_events(), [Event::Ping(Bytes::from_static(b"x"))]);
    assert!(p.server_wire.is_empty());
}

#[test]
fn pause_stops_reading_and_resume_restarts_it() {
    let mut p = Pair::std();
    p.server.pause();
    assert!(!p.server.wants_read());
    assert_eq!(p.server_events(), [Event::Pause]);
    p.server.pause(); // idempotent
    let _ = p.client.send_text("held", None).unwrap();
    p.drive();
    assert!(p.server_events().is_empty(), "nothing read while paused");
    p.server.resume();
    assert!(p.server.wants_read());
    p.drive();
    assert_eq!(p.server_events(), [Event::Resume, text("held")]);
}

#[test]
fn bytes_given_while_paused_are_kept_until_resume() {
    let mut p = Pair::std();
    p.server.pause();
    p.server.handle_read(&cframe(OpCode::Text, true, b"early"), p.now);
    assert_eq!(p.server.received_held(), 11);
    assert_eq!(p.server_events(), [Event::Pause]);
    p.server.resume();
    assert_eq!(p.server_events(), [Event::Resume, text("early")]);
}

#[test]
fn frame_events_replace_messages_without_assembly() {
    let mut cfg = Config::server();
    cfg.assemble_fragments = false;
    let mut p = Pair::new(Config::client(), cfg);
    p.inject_to_server(&[cframe(OpCode::Text, false, b"he"), cframe(OpCode::Continuation, true, b"llo")].concat());
    assert_eq!(
        p.server_events(),
        [
            Event::Frame(Frame { fin: false, opcode: OpCode::Text, payload: Bytes::from_static(b"he") }),
            Event::Frame(Frame { fin: true, opcode: OpCode::Continuation, payload: Bytes::from_static(b"llo") }),
        ]
    );
}

#[test]
fn properties_come_from_conn_info() {
    let info = ConnInfo {
        protocol: Some("echo-protocol".into()),
        extensions: vec![],
        deflate: None,
        version: 8,
        remote_address: Some("203.0.113.9".into()),
        remote_addresses: vec!["203.0.113.9".into(), "10.0.0.1".into()],
    };
    let c = Connection::new(Role::Server, Config::server(), info, Instant::now());
    assert_eq!(c.protocol(), Some("echo-protocol"));
    assert!(c.extensions().is_empty());
    assert_eq!(c.version(), 8);
    assert_eq!(c.remote_address(), Some("203.0.113.9"));
    assert_eq!(c.remote_addresses(), ["203.0.113.9", "10.0.0.1"]);
    assert_eq!(c.role(), Role::Server);
    assert!(c.config().disable_nagle_algorithm, "read by the driver: TCP_NODELAY");
    let d = Connection::new(Role::Client, Config::client(), ConnInfo::new().with_protocol("p"), Instant::now());
    assert_eq!((d.protocol(), d.version(), d.remote_address()), (Some("p"), 13, None));
}

#[test]
fn connected_state_and_close_reason_while_open() {
    let p = Pair::std();
    assert!(p.server.connected());
    assert_eq!(p.server.state(), State::Open);
    assert_eq!(p.server.state().as_str(), "open");
    assert_eq!(p.server.close_reason_code(), None, "Node: -1 while open");
    assert_eq!(p.server.close_description(), None, "Node: null while open");
    assert_eq!(p.server.buffered_amount(), 0);
    assert!(!p.server.is_finished());
}

#[test]
fn large_messages_cross_in_any_split() {
    for splits in [vec![], vec![1], vec![3, 7, 100], vec![65_536]] {
        let mut p = Pair::std();
        p.splits = splits.clone();
        let big: String = "ab€".repeat(100_000);
        let _ = p.client.send_text(big.clone(), None).unwrap();
        let _ = p.server.send_binary(vec![9u8; 300_000], None).unwrap();
        p.drive();
        let no_drain = |v: Vec<Event>| v.into_iter().filter(|e| *e != Event::Drain).collect::<Vec<_>>();
        let got = no_drain(p.server_events());
        assert!(got == [text(&big)], "splits {splits:?}: {} events", got.len());
        let got = no_drain(p.client_events());
        assert!(got == [binary(&vec![9u8; 300_000])], "splits {splits:?}: {} events", got.len());
    }
}

#[test]
fn connection_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection>();
    assert_send_sync::<Event>();
    assert_send_sync::<crate::PreparedMessage>();
}
