//! Flow control (buffered amount, watermarks, drain, buffer limit), outgoing
//! fragmentation, keepalive and idle timeout: one transcript per config field.

use super::*;
use crate::{BufferedLimitPolicy, CloseCode, ConnError, Keepalive, SendError, SendStatus, State};
use bytes::Bytes;

#[test]
fn defaults_are_websocket_nodes() {
    let s = Config::server();
    assert_eq!((s.max_received_frame_size, s.max_received_message_size), (64 << 10, 1 << 20));
    assert!(s.fragment_outgoing_messages && s.assemble_fragments && s.disable_nagle_algorithm && s.auto_pong);
    assert_eq!(s.fragmentation_threshold, 16 << 10);
    assert_eq!(s.close_timeout, Duration::from_secs(5));
    let k = s.keepalive.unwrap();
    assert_eq!(
        (k.interval, k.grace_period, k.drop_on_timeout),
        (Duration::from_secs(20), Duration::from_secs(10), true)
    );
    assert_eq!((s.high_water_mark, s.low_water_mark, s.max_buffered), (64 << 10, 16 << 10, Some(64 << 20)));
    assert_eq!(s.buffered_limit_policy, BufferedLimitPolicy::Drop);
    assert_eq!(s.idle_timeout, None);
    let c = Config::client();
    assert_eq!((c.max_received_frame_size, c.max_received_message_size), (1 << 20, 8 << 20));
    assert_eq!(c.keepalive, None);
    assert_eq!(Config::for_role(Role::Client), c);
    assert_eq!(Config::default(), s);
}

#[test]
fn buffered_amount_counts_queued_unwritten_bytes() {
    let mut p = Pair::std();
    let _ = p.server.send_text("hello", None).unwrap();
    assert_eq!(p.server.buffered_amount(), 7);
    let chunk = p.server.poll_transmit().unwrap();
    assert_eq!(p.server.buffered_amount(), 7, "handed out is not written");
    p.server.handle_written(3, p.now);
    assert_eq!(p.server.buffered_amount(), 4);
    p.server.handle_written(chunk.len() - 3, p.now);
    assert_eq!(p.server.buffered_amount(), 0);
}

#[test]
fn buffer_full_above_high_water_then_drain_at_low_water() {
    let mut cfg = Config::server();
    cfg.fragment_outgoing_messages = false;
    cfg.high_water_mark = 1000;
    cfg.low_water_mark = 700;
    let mut p = Pair::new(Config::client(), cfg);
    assert_eq!(p.server.send_binary(vec![0u8; 600], None), Ok(SendStatus::Queued));
    assert_eq!(p.server.send_binary(vec![0u8; 600], None), Ok(SendStatus::BufferFull), "still queued");
    assert_eq!(p.server.buffered_amount(), 1208);
    let hdr = p.server.poll_transmit().unwrap();
    let body = p.server.poll_transmit().unwrap();
    p.to_client.extend([hdr.clone(), body.clone()].concat());
    p.server.handle_written(hdr.len() + body.len() - 100, p.now);
    assert!(p.server_events().is_empty(), "704 > 700: no drain yet");
    p.server.handle_written(100, p.now);
    assert_eq!(p.server_events(), [Event::Drain]);
    p.drive();
    assert!(p.server_events().is_empty(), "one Drain per BufferFull");
    assert_eq!(p.client_events().len(), 2);
}

#[test]
fn max_buffered_drops_a_peer_that_never_reads_with_1008() {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(100_000);
    let mut p = Pair::new(Config::client(), cfg);
    p.server_write_blocked = true;
    let mut refused = None;
    for _ in 0..10 {
        match p.server.send_binary(vec![0u8; 30_000], None) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(matches!(refused, Some(SendError::BufferLimitExceeded { limit: 100_000, .. })));
    let ev = p.server_events();
    assert!(matches!(ev[0], Event::Error(ConnError::BufferLimitExceeded { limit: 100_000, .. })));
    assert_eq!(ev[1], close_event(1008, "Send buffer limit exceeded."));
    assert_eq!(p.server.state(), State::Closed);
    assert!(p.server.buffered_amount() < 100, "queued data was discarded, only the close frame is left");
}

#[test]
fn max_buffered_report_policy_refuses_without_dropping() {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(1000);
    cfg.buffered_limit_policy = BufferedLimitPolicy::Report;
    let mut p = Pair::new(Config::client(), cfg);
    let _ = p.server.send_binary(vec![0u8; 900], None).unwrap();
    assert_eq!(
        p.server.send_binary(vec![0u8; 200], None),
        Err(SendError::BufferLimitExceeded { buffered: 904, len: 204, limit: 1000 })
    );
    assert_eq!(p.server.state(), State::Open);
    assert!(p.server_events().is_empty());
    p.drive();
    assert_eq!(p.client_events().len(), 1);
}

#[test]
fn pings_and_pongs_are_held_to_max_buffered_like_data() {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(1000);
    cfg.buffered_limit_policy = BufferedLimitPolicy::Report;
    let mut p = Pair::new(Config::client(), cfg.clone());
    let _ = p.server.send_binary(vec![0u8; 900], None).unwrap();
    p.server.ping(&[0; 90]).unwrap();
    assert_eq!(p.server.buffered_amount(), 904 + 92, "counted like data");
    let refused = SendError::BufferLimitExceeded { buffered: 996, len: 7, limit: 1000 };
    assert_eq!(p.server.ping(b"12345"), Err(refused.clone()));
    assert_eq!(p.server.pong(b"12345"), Err(refused));
    assert_eq!(p.server.state(), State::Open);
    // With the Drop policy, a control frame over the limit drops the peer as data does.
    cfg.buffered_limit_policy = BufferedLimitPolicy::Drop;
    let mut p = Pair::new(Config::client(), cfg);
    let _ = p.server.send_binary(vec![0u8; 995], None).unwrap();
    assert!(p.server.ping(b"").is_err());
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server_events().last(), Some(&close_event(1008, "Send buffer limit exceeded.")));
}

#[test]
fn an_auto_pong_over_max_buffered_waits_until_it_fits() {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(1000);
    cfg.high_water_mark = 2000; // reading goes on: only the limit holds the pong back
    let mut p = Pair::new(Config::client(), cfg);
    p.server_write_blocked = true;
    let _ = p.server.send_binary(vec![0u8; 991], None).unwrap();
    p.client.ping(b"late").unwrap();
    p.drive();
    assert_eq!(p.server_events(), [Event::Ping(Bytes::from_static(b"late"))]);
    let handed: usize = std::iter::from_fn(|| p.server.poll_transmit()).map(|c| c.len()).sum();
    assert_eq!((handed, p.server.buffered_amount()), (995, 995), "the 6-byte pong does not fit");
    assert!(!p.server.wants_write());
    p.server.handle_written(995, p.now);
    assert!(p.server.wants_write());
    assert_eq!(&p.server.poll_transmit().unwrap()[..], b"\x8a\x04late");
}

#[test]
fn a_keepalive_ping_over_max_buffered_is_skipped_and_the_grace_period_runs() {
    let mut cfg = Config::server();
    cfg.max_buffered = Some(1000);
    cfg.keepalive = Some(Keepalive::new(Duration::from_secs(20), Duration::from_secs(10)));
    let mut p = Pair::new(Config::client(), cfg);
    p.server_write_blocked = true;
    p.client_write_blocked = true;
    let _ = p.server.send_binary(vec![0u8; 995], None).unwrap();
    p.advance(Duration::from_secs(20));
    assert_eq!(p.server.buffered_amount(), 999, "no ping queued");
    p.advance(Duration::from_secs(10));
    let ev = p.server_events();
    assert_eq!(ev, [Event::Error(ConnError::KeepaliveTimeout), close_event(1006, "Peer not responding.")]);
}

#[test]
fn fragment_outgoing_messages_at_the_threshold() {
    let mut cfg = Config::server();
    cfg.fragmentation_threshold = 4;
    let mut p = Pair::new(Config::client(), cfg.clone());
    let _ = p.server.send_binary(Bytes::from_static(b"0123456789"), None).unwrap();
    p.drive();
    let f = frames(&p.server_wire, Role::Server);
    let shape: Vec<(bool, OpCode, usize)> = f.iter().map(|f| (f.fin, f.op, f.payload.len())).collect();
    assert_eq!(shape, [(false, OpCode::Binary, 4), (false, OpCode::Continuation, 4), (true, OpCode::Continuation, 2)]);
    assert_eq!(p.client_events().len(), 1, "reassembled");
    cfg.fragment_outgoing_messages = false;
    let mut p = Pair::new(Config::client(), cfg);
    let _ = p.server.send_binary(Bytes::from_static(b"0123456789"), None).unwrap();
    p.drive();
    assert_eq!(frames(&p.server_wire, Role::Server).len(), 1);
}

#[test]
fn keepalive_pings_a_silent_peer_and_drops_it_after_the_grace_period() {
    let mut cfg = Config::server();
    cfg.keepalive = Some(Keepalive::new(Duration::from_secs(20), Duration::from_secs(10)));
    let mut p = Pair::new(Config::client(), cfg);
    p.client_write_blocked = true; // a dead peer: it never answers
    p.advance(Duration::from_secs(19));
    assert!(p.server_wire.is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(frames(&p.server_wire, Role::Server), [F { fin: true, op: OpCode::Ping, payload: vec![] }]);
    p.advance(Duration::from_secs(9));
    assert_eq!(p.server.state(), State::Open);
    p.advance(Duration::from_secs(1));
    let ev = p.server_events();
    assert_eq!(ev, [Event::Error(ConnError::KeepaliveTimeout), close_event(1006, "Peer not responding.")]);
    assert_eq!(frames(&p.server_wire, Role::Server).len(), 1, "dropped without a close frame");
}

#[test]
fn keepalive_is_satisfied_by_the_auto_pong() {
    let mut p = Pair::std();
    p.advance(Duration::from_secs(100));
    assert_eq!(p.server.state(), State::Open);
    let pings = frames(&p.server_wire, Role::Server).iter().filter(|f| f.op == OpCode::Ping).count();
    assert_eq!(pings, 5, "one ping per 20 s of silence");
    assert_eq!(p.server_events().iter().filter(|e| matches!(e, Event::Pong(_))).count(), 5);
}

#[test]
fn keepalive_without_drop_keeps_pinging() {
    let mut cfg = Config::server();
    let mut k = Keepalive::new(Duration::from_secs(1), Duration::from_secs(1));
    k.drop_on_timeout = false;
    cfg.keepalive = Some(k);
    let mut p = Pair::new(Config::client(), cfg);
    p.client_write_blocked = true;
    p.advance(Duration::from_secs(10));
    assert_eq!(p.server.state(), State::Open);
    assert_eq!(frames(&p.server_wire, Role::Server).len(), 10);
}

#[test]
fn idle_timeout_closes_with_1001() {
    let mut cfg = Config::server();
    cfg.idle_timeout = Some(Duration::from_secs(30));
    cfg.keepalive = None;
    let mut p = Pair::new(Config::client(), cfg);
    p.advance(Duration::from_secs(20));
    let _ = p.client.send_text("activity", None).unwrap();
    p.drive();
    p.advance(Duration::from_secs(29));
    assert_eq!(p.server.state(), State::Open, "the message reset the idle timer");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.server.close_reason_code(), Some(CloseCode::GOING_AWAY));
    assert_eq!(p.client_events().last(), Some(&close_event(1001, "Idle timeout")));
}

#[test]
fn poll_timeout_is_none_without_timers_and_after_close() {
    let mut p = Pair::std();
    assert_eq!(p.client.poll_timeout(), None, "client: no keepalive by default");
    assert!(p.server.poll_timeout().is_some());
    p.server.drop_connection(CloseCode::NORMAL, "", true);
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn zero_durations_do_not_spin() {
    let mut cfg = Config::server();
    cfg.keepalive = Some(Keepalive::new(Duration::ZERO, Duration::ZERO));
    cfg.fragmentation_threshold = 0;
    let mut p = Pair::new(Config::client(), cfg);
    let _ = p.server.send_binary(vec![0u8; 100], None).unwrap();
    p.advance(Duration::from_millis(3));
    assert!(frames(&p.server_wire, Role::Server).iter().filter(|f| f.op == OpCode::Ping).count() <= 3);
    let data: Vec<F> = frames(&p.server_wire, Role::Server).into_iter().filter(|f| f.op == OpCode::Binary).collect();
    assert_eq!(data.len(), 1, "a zero threshold means no fragmentation");
    assert!(data[0].fin);
}
