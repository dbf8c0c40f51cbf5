//! The blocking one-connection API: `connect` -> `WebSocket` with send / recv / close.

mod common;

use bytes::Bytes;
use common::*;
use ringwire_client::{ConnectError, ConnectOptions, Received, WsError, connect, connect_with};
use ringwire_conn::{CloseCode, Message, SendError};
use std::time::Duration;

#[test]
fn echo_and_clean_close() {
    let addr = tungstenite_server();
    for io in backends() {
        let mut ws = connect_with(&format!("ws://{addr}/"), ConnectOptions::default(), io).unwrap();
        assert_eq!(ws.protocol(), None);
        ws.send("hello").unwrap();
        ws.send(vec![1u8, 2, 3]).unwrap();
        assert_eq!(ws.recv().unwrap(), Message::Text("hello".into()), "{io:?}");
        assert_eq!(ws.recv().unwrap(), Message::Binary(Bytes::from_static(&[1, 2, 3])));
        assert_eq!(ws.recv_timeout(Duration::from_millis(50)).unwrap(), None);
        let (code, reason) = ws.close(CloseCode::NORMAL, "done").unwrap();
        assert_eq!((code, reason.as_str()), (CloseCode::NORMAL, "done"), "{io:?}");
        assert_eq!(ws.close_status(), Some((CloseCode::NORMAL, "done")));
        assert!(matches!(ws.send("late"), Err(WsError::Closed { code: CloseCode::NORMAL, .. })));
        assert!(matches!(ws.recv(), Err(WsError::Closed { .. })));
    }
}

#[test]
fn server_close_ends_recv_with_its_code() {
    let addr = tungstenite_server();
    for io in backends() {
        let mut ws = connect_with(&format!("ws://{addr}/"), ConnectOptions::default(), io).unwrap();
        ws.send("close:4002:over").unwrap();
        match ws.recv() {
            Err(WsError::Closed { code, reason }) => assert_eq!((code.as_u16(), reason.as_str()), (4002, "over")),
            r => panic!("{io:?}: {r:?}"),
        }
        assert!(matches!(ws.send("x"), Err(WsError::Closed { .. })));
    }
}

#[test]
fn ping_gives_a_pong_and_bad_calls_are_refused_locally() {
    let addr = tungstenite_server();
    let mut ws = connect(&format!("ws://{addr}/")).unwrap();
    ws.ping(b"are you there").unwrap();
    assert_eq!(
        ws.recv_event(Some(Duration::from_secs(10))).unwrap(),
        Received::Pong(Bytes::from_static(b"are you there"))
    );
    assert!(matches!(ws.ping(&[0; 200]), Err(WsError::Invalid(SendError::ControlPayloadTooLong(200)))));
    assert!(matches!(ws.close(CloseCode(1006), ""), Err(WsError::Invalid(SendError::InvalidCloseCode(1006)))));
    assert!(matches!(ws.close(CloseCode::NORMAL, &"x".repeat(124)), Err(WsError::Invalid(_))));
    assert_eq!(ws.close(CloseCode::NORMAL, "").unwrap().0, CloseCode::NORMAL);
}

#[test]
fn connect_failures_are_returned() {
    let dead = dead_port();
    for io in backends() {
        let e = connect_with(&format!("ws://{dead}/"), ConnectOptions::default(), io).unwrap_err();
        assert!(matches!(e, ConnectError::Refused { .. }), "{io:?}: {e:?}");
    }
    assert!(matches!(connect("https://localhost/"), Err(ConnectError::Url(_))));
}

#[test]
fn dropping_the_socket_closes_with_1000() {
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = raw_server(move |mut s| {
        let mut wire = upgrade(&mut s, None);
        let mut chunk = [0u8; 4096];
        // Read until the client's close frame, answer it, then wait for the TCP close.
        while !parse_frames(&wire).iter().any(|f| f.opcode == 0x8) {
            let n = std::io::Read::read(&mut s, &mut chunk).unwrap();
            assert!(n > 0, "closed without a close frame");
            wire.extend_from_slice(&chunk[..n]);
        }
        std::io::Write::write_all(&mut s, &server_close(1000, "")).unwrap();
        read_to_close(&mut s, &mut wire);
        let _ = tx.send(parse_frames(&wire));
    });
    for io in backends() {
        let ws = connect_with(&format!("ws://{addr}/"), ConnectOptions::default(), io).unwrap();
        drop(ws);
        let frames = rx.recv_timeout(Duration::from_secs(10)).expect("server saw no close");
        assert_eq!(frames.len(), 1, "{io:?}: {frames:?}");
        assert_eq!((frames[0].opcode, frames[0].payload.as_slice()), (0x8, &1000u16.to_be_bytes()[..]));
    }
}
