//! permessage-deflate on a connection pair: what is compressed and how it looks on the
//! wire, what a negotiated connection must still accept, and what it must refuse.

use super::{Pair, cframe, frame_rsv, frames_rsv};
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::{Config, ConnInfo, Connection, Event, Message, OpCode, PreparedMessage, Role};
use bytes::{Bytes, BytesMut};
use ringwire_frame::RSV1;

/// Both sides' parameters: shared mode (no context takeover) or dedicated.
fn params(shared: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: shared,
        client_no_context_takeover: shared,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

fn config(role: Role, threshold: usize) -> Config {
    let mut c = if role == Role::Server { Config::server() } else { Config::client() };
    c.deflate = Some(DeflateConfig { threshold, ..DeflateConfig::default() });
    c
}

/// A pair with deflate agreed.
fn pair(shared: bool, threshold: usize) -> Pair {
    let mut p = Pair::std();
    let info = ConnInfo { deflate: Some(params(shared)), ..ConnInfo::new() };
    p.client = Connection::new(Role::Client, config(Role::Client, threshold), info.clone(), p.now);
    p.server = Connection::new(Role::Server, config(Role::Server, threshold), info, p.now);
    p
}

/// (fin, rsv, opcode, unmasked payload) of every frame `from` wrote.
fn wire_frames(wire: &[u8], from: Role) -> Vec<(bool, u8, OpCode, Vec<u8>)> {
    frames_rsv(wire, from).into_iter().map(|(f, rsv)| (f.fin, rsv, f.op, f.payload)).collect()
}

/// A masked client frame with RSV bits.
fn cframe_rsv(op: OpCode, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    frame_rsv(op, fin, rsv, payload, Some([1, 2, 3, 4]))
}

/// `payload` as a peer without context takeover compresses it.
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut z = BytesMut::new();
    crate::deflate::Compressor::new(15, 6, 8).compress(payload, &mut z, true);
    z.to_vec()
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(s.into()))
}

#[test]
fn messages_round_trip_compressed_both_ways_in_both_modes() {
    for shared in [true, false] {
        let mut p = pair(shared, 0);
        let big = "ringwire ".repeat(4000); // 36 KB, compressed far below the fragment size
        for m in ["hello", "", big.as_str(), "hello"] {
            assert!(p.client.send_text(m, None).is_ok());
            p.drive();
            assert_eq!(p.server_events(), [text(m)], "shared {shared}");
            assert!(p.server.send_text(m, None).is_ok());
            p.drive();
            assert_eq!(p.client_events(), [text(m)], "shared {shared}");
        }
        let sent = wire_frames(&p.server_wire, Role::Server);
        assert!(sent.iter().all(|(_, rsv, op, _)| *rsv == RSV1 && *op == OpCode::Text), "{sent:?}");
        // Context takeover: a message sent right after the same one refers back to it.
        let before = p.server_wire.len();
        for _ in 0..2 {
            assert!(p.server.send_text("context, context, context", None).is_ok());
        }
        p.drive();
        let twice = wire_frames(&p.server_wire[before..], Role::Server);
        assert_eq!(twice[1].3.len() < twice[0].3.len(), !shared, "shared {shared}: {twice:?}");
    }
}

#[test]
fn rsv1_only_on_the_first_frame_and_never_on_control_frames() {
    let mut p = pair(true, 0);
    let mut cfg = Config::server();
    cfg.fragmentation_threshold = 100;
    cfg.deflate = Some(DeflateConfig::default());
    let info = ConnInfo { deflate: Some(params(true)), ..ConnInfo::new() };
    p.server = Connection::new(Role::Server, cfg, info, p.now);
    // Random-ish bytes do not compress: several fragments of 100.
    let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert!(p.server.send_binary(data.clone(), None).is_ok());
    p.server.ping(b"p").unwrap();
    p.drive();
    let got = p.client_events();
    assert!(got.contains(&Event::Message(Message::Binary(data.into()))), "{got:?}");
    assert!(got.contains(&Event::Ping(Bytes::from_static(b"p"))), "{got:?}");
    let frames = wire_frames(&p.server_wire, Role::Server);
    let rsv: Vec<(OpCode, u8)> = frames.iter().map(|f| (f.2, f.1)).collect();
    assert!(rsv.len() > 3, "{rsv:?}");
    assert_eq!(rsv.iter().filter(|(_, r)| *r != 0).count(), 1, "{rsv:?}");
    assert_eq!(rsv.iter().find(|(op, _)| *op == OpCode::Binary), Some(&(OpCode::Binary, RSV1)));
    assert!(rsv.iter().filter(|(op, _)| op.is_control()).all(|(_, r)| *r == 0), "{rsv:?}");
}

#[test]
fn an_uncompressed_message_on_a_negotiated_connection_is_accepted() {
    let mut p = pair(false, 0);
    p.inject_to_server(&cframe(OpCode::Text, true, b"plain"));
    p.drive();
    assert_eq!(p.server_events(), [text("plain")]);
    // A compressed one split into two frames, then a plain one again.
    let z = deflate(b"squeezed");
    let mut wire = cframe_rsv(OpCode::Text, false, RSV1, &z[..3]);
    wire.extend(cframe_rsv(OpCode::Continuation, true, 0, &z[3..]));
    wire.extend(cframe(OpCode::Binary, true, b"raw"));
    p.inject_to_server(&wire);
    p.drive();
    assert_eq!(p.server_events(), [text("squeezed"), Event::Message(Message::Binary(Bytes::from_static(b"raw")))]);
}

#[test]
fn a_message_that_ends_in_a_final_block_is_accepted() {
    let mut p = pair(false, 0);
    // A raw deflate stream finished with BFINAL (Z_FINISH), as RFC 7692 7.2.3.4 allows.
    let mut c = flate2::Compress::new_with_window_bits(flate2::Compression::default(), false, 15);
    let mut out = Vec::with_capacity(64);
    c.compress_vec(b"final block", &mut out, flate2::FlushCompress::Finish).unwrap();
    p.inject_to_server(&cframe_rsv(OpCode::Text, true, RSV1, &out));
    p.inject_to_server(&cframe_rsv(OpCode::Text, true, RSV1, &deflate(b"and after")));
    p.drive();
    assert_eq!(p.server_events(), [text("final block"), text("and after")]);
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_is_a_protocol_error() {
    for wire in [
        [cframe(OpCode::Text, false, b"a"), cframe_rsv(OpCode::Continuation, true, RSV1, b"b")].concat(),
        cframe_rsv(OpCode::Ping, true, RSV1, b""),
    ] {
        let mut p = pair(true, 0);
        p.inject_to_server(&wire);
        p.drive();
        let ev = p.server_events();
        assert!(matches!(ev.last(), Some(Event::Close { code, .. }) if code.0 == 1002), "{ev:?}");
    }
}

#[test]
fn rsv1_without_deflate_agreed_is_still_refused() {
    let mut p = Pair::std();
    p.inject_to_server(&cframe_rsv(OpCode::Text, true, RSV1, &deflate(b"x")));
    p.drive();
    assert!(matches!(p.server_events().last(), Some(Event::Close { code, .. }) if code.0 == 1002));
}

#[test]
fn a_zip_bomb_closes_with_1009_and_corrupt_data_with_1007() {
    let mut p = pair(true, 0);
    let bomb = deflate(&vec![0u8; 64 << 20]); // 64 MiB of zeros: about 64 KiB compressed
    assert!(bomb.len() < Config::server().max_received_message_size);
    p.inject_to_server(&cframe_rsv(OpCode::Binary, true, RSV1, &bomb));
    p.drive();
    assert!(matches!(p.server_events().last(), Some(Event::Close { code, .. }) if code.0 == 1009));

    let mut p = pair(true, 0);
    p.inject_to_server(&cframe_rsv(OpCode::Binary, true, RSV1, &[0xff, 0xff, 0xff, 0x00]));
    p.drive();
    assert!(matches!(p.server_events().last(), Some(Event::Close { code, .. }) if code.0 == 1007));
}

#[test]
fn below_the_threshold_and_send_uncompressed_go_out_plain() {
    let mut p = pair(true, 100);
    assert!(p.server.send_text("short", None).is_ok());
    assert!(p.server.send_text("long ".repeat(40), None).is_ok());
    assert!(p.server.send_uncompressed("long ".repeat(40), None).is_ok());
    p.drive();
    let rsv: Vec<u8> = wire_frames(&p.server_wire, Role::Server).iter().map(|f| f.1).collect();
    assert_eq!(rsv, [0, RSV1, 0]);
    assert_eq!(p.client_events(), [text("short"), text(&"long ".repeat(40)), text(&"long ".repeat(40))]);
}

#[test]
fn a_prepared_message_is_compressed_once_for_every_shared_mode_connection() {
    let m = PreparedMessage::text("to everyone ".repeat(50));
    let (mut a, mut b) = (pair(true, 0), pair(true, 0));
    for p in [&mut a, &mut b] {
        assert!(p.server.send_prepared(&m, None).is_ok());
        p.drive();
        assert_eq!(p.client_events(), [text(&"to everyone ".repeat(50))]);
    }
    let (wa, wb) = (wire_frames(&a.server_wire, Role::Server), wire_frames(&b.server_wire, Role::Server));
    assert_eq!(wa, wb);
    assert_eq!(wa[0].1, RSV1);
    // The same compressed bytes, not two compressions of them.
    let d = DeflateConfig::default();
    let z1 = m.deflated(15, d.level, d.mem_level);
    let z2 = m.clone().deflated(15, d.level, d.mem_level);
    assert_eq!(z1.as_ptr(), z2.as_ptr());
}

#[test]
fn the_connection_reports_the_extension() {
    let p = pair(true, 0);
    assert_eq!(p.server.extensions(), ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"]);
    assert!(Pair::std().server.extensions().is_empty());
}
