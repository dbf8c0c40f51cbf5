//! What the client puts on the wire and how it takes what a scripted raw server sends:
//! masking, fragmentation both ways, control frames inside fragmented messages, masked or
//! invalid server frames. Both backends.

mod common;

use bytes::Bytes;
use common::*;
use ringwire_client::ConnectOptions;
use ringwire_conn::{CloseCode, Message};
use std::io::Write;
use std::sync::mpsc;

/// Runs a raw server whose script gets the stream after the upgrade and reports the client's
/// frames it read through the returned channel.
fn scripted(
    script: impl Fn(&mut std::net::TcpStream, Vec<u8>) -> Vec<u8> + Send + 'static,
) -> (std::net::SocketAddr, mpsc::Receiver<Vec<WireFrame>>) {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        let rest = upgrade(&mut s, None);
        let wire = script(&mut s, rest);
        let _ = tx.send(parse_frames(&wire));
    });
    (addr, rx)
}

#[test]
fn every_frame_is_masked_with_a_fresh_key() {
    let (addr, frames) = scripted(|s, mut wire| {
        // Wait for the three messages (the last is fragmented), then close.
        loop {
            let f = parse_frames(&wire);
            if f.iter().filter(|f| f.fin && f.opcode != 0x9).count() >= 3 {
                break;
            }
            let mut chunk = [0u8; 65536];
            let n = std::io::Read::read(s, &mut chunk).unwrap();
            assert!(n > 0);
            wire.extend_from_slice(&chunk[..n]);
        }
        s.write_all(&server_close(1000, "bye")).unwrap();
        read_to_close(s, &mut wire);
        wire
    });
    for io in backends() {
        let mut opts = ConnectOptions::default();
        opts.config.fragmentation_threshold = 16 << 10;
        let big: Bytes = (0..40_000u32).map(|i| i as u8).collect::<Vec<_>>().into();
        let b2 = big.clone();
        let rec = Recorder::new().on_open(move |ws| {
            assert!(ws.send("aaaa").is_queued());
            assert!(ws.send("aaaa").is_queued());
            assert!(ws.send(b2.clone()).is_queued());
        });
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, rec);
        assert_eq!(rec.close_of(id), (1000, "bye".into()), "{io:?}");
        let frames = frames.recv().unwrap();
        assert!(frames.iter().all(|f| f.mask.is_some()), "{io:?}: an unmasked frame: {frames:?}");
        let keys: std::collections::HashSet<_> = frames.iter().map(|f| f.mask.unwrap()).collect();
        assert_eq!(keys.len(), frames.len(), "{io:?}: a mask key was reused");
        // Two texts, then 40000 bytes as 16 KiB + 16 KiB + rest, then our close echo.
        let shape: Vec<_> = frames.iter().map(|f| (f.fin, f.opcode, f.payload.len())).collect();
        assert_eq!(
            shape,
            vec![(true, 1, 4), (true, 1, 4), (false, 2, 16384), (false, 0, 16384), (true, 0, 7232), (true, 8, 2)],
            "{io:?}"
        );
        let data: Vec<u8> = frames[2..5].iter().flat_map(|f| f.payload.clone()).collect();
        assert_eq!(data, big);
        assert_eq!(frames[5].payload, 1000u16.to_be_bytes());
    }
}

#[test]
fn fragmented_server_message_with_a_ping_inside_and_data_right_after_the_101() {
    // The 101 and the first frames go out in one write: the client must keep what follows
    // the response head.
    let (tx, frames) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        let (req, _) = read_request(&mut s);
        let mut out = req.accept(&Default::default()).unwrap();
        out.extend(server_frame(false, 0x1, "Hel".as_bytes()));
        out.extend(server_frame(true, 0x9, b"p"));
        out.extend(server_frame(false, 0x0, "lo wörl".as_bytes()));
        out.extend(server_frame(true, 0x0, "d".as_bytes()));
        s.write_all(&out).unwrap();
        let mut wire = Vec::new();
        read_to_close(&mut s, &mut wire);
        let _ = tx.send(parse_frames(&wire));
    });
    for io in backends() {
        let rec = Recorder::new().on_message(|ws, _, _| ws.close(CloseCode::NORMAL, "got it").unwrap());
        let mut opts = ConnectOptions::default();
        opts.config.close_timeout = std::time::Duration::from_millis(200); // the server never answers the close
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, rec);
        assert_eq!(rec.messages(id), vec![Message::Text("Hello wörld".into())], "{io:?}");
        assert!(rec.of(id).contains(&Ev::Ping(Bytes::from_static(b"p"))));
        let frames = frames.recv().unwrap();
        let shape: Vec<_> = frames.iter().map(|f| (f.opcode, f.payload.clone())).collect();
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"got it");
        assert_eq!(shape, vec![(0xA, b"p".to_vec()), (0x8, close)], "{io:?}: the pong, then our close");
    }
}

#[test]
fn a_cancelled_ping_gets_no_pong() {
    let (addr, frames) = scripted(|s, mut wire| {
        let mut out = server_frame(true, 0x9, b"no answer");
        out.extend(server_frame(true, 0x1, b"x"));
        s.write_all(&out).unwrap();
        read_to_close(s, &mut wire);
        wire
    });
    for io in backends() {
        let mut rec = Recorder::new().on_message(|ws, _, _| ws.close(CloseCode::NORMAL, "").unwrap());
        rec.answer_pings = false;
        let mut opts = ConnectOptions::default();
        opts.config.close_timeout = std::time::Duration::from_millis(200);
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, rec);
        assert!(rec.of(id).contains(&Ev::Ping(Bytes::from_static(b"no answer"))));
        let ops: Vec<u8> = frames.recv().unwrap().iter().map(|f| f.opcode).collect();
        assert_eq!(ops, vec![0x8], "{io:?}: only our close, no pong");
    }
}

#[test]
fn a_masked_server_frame_is_a_protocol_error() {
    let (addr, frames) = scripted(|s, mut wire| {
        // "Hi", masked: servers must not mask.
        s.write_all(&ringwire_testkit::client_frame(true, 0, 0x1, b"Hi", Some([1, 2, 3, 4]))).unwrap();
        read_to_close(s, &mut wire);
        wire
    });
    for io in backends() {
        let mut opts = ConnectOptions::default();
        opts.config.close_timeout = std::time::Duration::from_millis(200);
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, Recorder::new());
        assert!(rec.messages(id).is_empty());
        assert_eq!(rec.errors.len(), 1, "{io:?}: {:?}", rec.of(id));
        assert_eq!(rec.close_of(id).0, 1002, "{io:?}");
        let frames = frames.recv().unwrap();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!((frames[0].opcode, &frames[0].payload[..2]), (0x8, &1002u16.to_be_bytes()[..]));
    }
}

#[test]
fn invalid_utf8_from_the_server_closes_with_1007() {
    let (addr, frames) = scripted(|s, mut wire| {
        let mut out = server_frame(false, 0x1, b"ok");
        out.extend(server_frame(true, 0x0, &[0xC3, 0x28]));
        s.write_all(&out).unwrap();
        read_to_close(s, &mut wire);
        wire
    });
    for io in backends() {
        let mut opts = ConnectOptions::default();
        opts.config.close_timeout = std::time::Duration::from_millis(200);
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, Recorder::new());
        assert_eq!(rec.close_of(id).0, 1007, "{io:?}: {:?}", rec.of(id));
        let frames = frames.recv().unwrap();
        assert_eq!(&frames[0].payload[..2], &1007u16.to_be_bytes()[..]);
    }
}

#[test]
fn the_negotiated_protocol_and_response_are_exposed() {
    let addr = raw_server(|mut s| {
        upgrade(&mut s, Some("superchat"));
        s.write_all(&server_close(1001, "going")).unwrap();
        read_to_close(&mut s, &mut Vec::new());
    });
    for io in backends() {
        let rec = Recorder::new().on_open(|ws| {
            assert_eq!(ws.protocol(), Some("superchat"));
            assert_eq!(ws.response().status, 101);
            assert_eq!(ws.version(), 13);
            // The spec's remoteAddress: the server's IP, no port.
            assert_eq!(ws.remote_address(), Some("127.0.0.1"));
            assert_eq!(ws.remote_addresses(), ["127.0.0.1"]);
            assert!(ws.connected());
        });
        let opts = ConnectOptions::default().with_protocols(["chat", "superchat"]);
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, rec);
        assert_eq!(rec.of(id)[0], Ev::Open(Some("superchat".into())), "{io:?}");
        assert_eq!(rec.close_of(id), (1001, "going".into()));
    }
}

#[test]
fn a_reply_to_a_message_goes_out_before_the_failure_a_later_frame_in_the_same_read_causes() {
    // "Hello" then a frame with RSV2 set, in one write (Autobahn 3.2): the echo of "Hello"
    // must precede our 1002 close, as the frames preceded each other on the wire.
    let (addr, frames) = scripted(|s, mut wire| {
        let mut out = server_frame(true, 0x1, b"Hello");
        let mut bad = server_frame(true, 0x1, b"Hello");
        bad[0] |= 0x20;
        out.extend(bad);
        s.write_all(&out).unwrap();
        read_to_close(s, &mut wire);
        wire
    });
    for io in backends() {
        let rec = Recorder::new().on_message(|ws, m, _| {
            assert!(ws.send(m.clone()).is_queued());
        });
        let mut opts = ConnectOptions::default();
        opts.config.close_timeout = std::time::Duration::from_millis(200);
        let (id, rec) = run_one(io, &format!("ws://{addr}/"), opts, rec);
        assert_eq!(rec.close_of(id).0, 1002, "{io:?}");
        let shape: Vec<_> = frames.recv().unwrap().iter().map(|f| (f.opcode, f.payload.clone())).collect();
        assert_eq!(shape[0], (0x1, b"Hello".to_vec()), "{io:?}: {shape:?}");
        assert_eq!((shape[1].0, &shape[1].1[..2]), (0x8, &1002u16.to_be_bytes()[..]), "{io:?}");
    }
}
