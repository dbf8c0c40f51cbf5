//! Negotiation tables (offers through the real request parser), codec round trips,
//! interop with flate2 used directly, the final-block, bomb and corrupt paths, and the
//! shared codecs.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use proptest::prelude::*;

use super::*;
use crate::handshake::{HandshakeLimits, parse_request};

/// The offers of a request with `Sec-WebSocket-Extensions: value`, as the server parses them.
fn offers(value: &str) -> Vec<crate::handshake::ExtensionOffer> {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {value}\r\n\r\n"
    );
    let (request, _) = parse_request(req.as_bytes(), &HandshakeLimits::default()).unwrap().unwrap();
    request.extensions
}

fn params(snct: bool, cnct: bool, smwb: u8, cmwb: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: smwb,
        client_max_window_bits: cmwb,
    }
}

fn cfg_with(f: impl FnOnce(&mut DeflateConfig)) -> DeflateConfig {
    let mut c = DeflateConfig::default();
    f(&mut c);
    c
}

#[test]
fn negotiate_good_offers() {
    let d = DeflateConfig::default();
    let table: &[(&str, &DeflateConfig, DeflateParams, &str)] = &[
        ("permessage-deflate", &d, params(false, false, 15, 15), "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", &d, params(false, false, 15, 15), "permessage-deflate"),
        (
            "permessage-deflate; client_max_window_bits=10",
            &d,
            params(false, false, 15, 10),
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_max_window_bits=\"9\"",
            &d,
            params(false, false, 15, 9),
            "permessage-deflate; client_max_window_bits=9",
        ),
        // The client says it uses 8: stated back as 8, inflated with 9.
        (
            "permessage-deflate; client_max_window_bits=8",
            &d,
            params(false, false, 15, 8),
            "permessage-deflate; client_max_window_bits=8",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            &d,
            params(false, false, 9, 15),
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            "PerMessage-Deflate; Server_No_Context_Takeover; CLIENT_NO_CONTEXT_TAKEOVER",
            &d,
            params(true, true, 15, 15),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits",
            &d,
            params(false, false, 12, 15),
            "permessage-deflate; server_max_window_bits=12",
        ),
    ];
    for (value, cfg, want, header) in table {
        let got = negotiate(&offers(value), cfg);
        assert_eq!(got, Some(*want), "{value}");
        assert_eq!(got.unwrap().response_header(), *header, "{value}");
    }
}

#[test]
fn negotiate_applies_the_server_config() {
    let cfg = cfg_with(|c| {
        c.server_no_context_takeover = true;
        c.client_no_context_takeover = true;
        c.server_max_window_bits = 10;
        c.client_max_window_bits = 11;
    });
    // The client's param lets the server limit it; its own smaller value wins.
    let p = negotiate(&offers("permessage-deflate; client_max_window_bits"), &cfg).unwrap();
    assert_eq!(p, params(true, true, 10, 11));
    assert_eq!(
        p.response_header(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=11"
    );
    let p = negotiate(&offers("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"), &cfg).unwrap();
    assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (9, 9));
    // Without the client's param the server must not limit the client (7.1.2.2).
    let p = negotiate(&offers("permessage-deflate"), &cfg).unwrap();
    assert_eq!(p.client_max_window_bits, 15);
    assert!(!p.response_header().contains("client_max_window_bits"));
}

#[test]
fn negotiate_declines_each_bad_param() {
    let d = DeflateConfig::default();
    for value in [
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=1x",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=100",
        // zlib cannot deflate with 8: declined rather than claimed and done with 9.
        "permessage-deflate; server_max_window_bits=8",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(negotiate(&offers(value), &d), None, "{value}");
    }
}

#[test]
fn several_offers_first_acceptable_wins() {
    let d = DeflateConfig::default();
    let os = offers(
        "permessage-deflate; server_max_window_bits=8, x-foo, \
         permessage-deflate; client_max_window_bits=12, permessage-deflate",
    );
    assert_eq!(os.len(), 4);
    assert_eq!(negotiate(&os, &d), Some(params(false, false, 15, 12)));
    // Autobahn 13.7's three offers: the first one is taken.
    let os = offers(
        "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=9, \
         permessage-deflate; client_no_context_takeover; client_max_window_bits, \
         permessage-deflate; client_max_window_bits",
    );
    assert_eq!(negotiate(&os, &d), Some(params(false, true, 9, 15)));
    assert_eq!(negotiate(&offers("x-foo, x-bar"), &d), None);
    assert_eq!(negotiate(&[], &d), None);
}

#[test]
fn negotiate_response_echoes_an_offered_15() {
    let d = DeflateConfig::default();
    let (p, header) = negotiate_response(&offers("permessage-deflate; server_max_window_bits=15"), &d).unwrap();
    assert_eq!(p, params(false, false, 15, 15));
    assert_eq!(header, "permessage-deflate; server_max_window_bits=15");
    assert_eq!(p.response_header(), "permessage-deflate");
    let (_, header) = negotiate_response(&offers("permessage-deflate"), &d).unwrap();
    assert_eq!(header, "permessage-deflate");
    // Our own client takes the echo.
    let client = cfg_with(|c| c.server_max_window_bits = 15);
    assert_eq!(accept_response(&header, &client), Ok(p));
}

#[test]
fn client_offer_and_server_agree() {
    for snct in [false, true] {
        for cnct in [false, true] {
            for bits in [9, 12, 15] {
                let cfg = cfg_with(|c| {
                    c.server_no_context_takeover = snct;
                    c.client_no_context_takeover = cnct;
                    c.server_max_window_bits = bits;
                    c.client_max_window_bits = bits;
                });
                let offer = client_offer(&cfg);
                assert!(!offer.contains("=8"), "{offer}");
                let (server, header) = negotiate_response(&offers(&offer), &DeflateConfig::default()).unwrap();
                assert_eq!(accept_response(&header, &cfg), Ok(server), "{offer} -> {header}");
                assert_eq!(server, params(snct, cnct, bits, bits), "{offer}");
            }
        }
    }
}

#[test]
fn accept_response_errors() {
    let d = DeflateConfig::default();
    let asks = cfg_with(|c| {
        c.server_max_window_bits = 10;
        c.server_no_context_takeover = true;
    });
    let table: &[(&str, &DeflateConfig, DeflateError)] = &[
        ("", &d, DeflateError::NoExtension),
        (" , ", &d, DeflateError::NoExtension),
        (
            "permessage-deflate, permessage-deflate",
            &d,
            DeflateError::SeveralExtensions("permessage-deflate, permessage-deflate".into()),
        ),
        ("x-webkit-deflate-frame", &d, DeflateError::NotOffered("x-webkit-deflate-frame".into())),
        ("permessage-deflate; foo", &d, DeflateError::UnknownParam("foo".into())),
        (
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            &d,
            DeflateError::DuplicateParam("client_no_context_takeover".into()),
        ),
        (
            "permessage-deflate; server_no_context_takeover=yes",
            &d,
            DeflateError::UnexpectedValue { param: "server_no_context_takeover", value: "yes".into() },
        ),
        ("permessage-deflate; client_max_window_bits", &d, DeflateError::MissingValue("client_max_window_bits")),
        ("permessage-deflate; server_max_window_bits", &d, DeflateError::MissingValue("server_max_window_bits")),
        (
            "permessage-deflate; server_max_window_bits=16",
            &d,
            DeflateError::InvalidWindowBits { param: "server_max_window_bits", value: "16".into() },
        ),
        (
            "permessage-deflate; client_max_window_bits=abc",
            &d,
            DeflateError::InvalidWindowBits { param: "client_max_window_bits", value: "abc".into() },
        ),
        ("permessage-deflate; client_max_window_bits=8", &d, DeflateError::ClientWindowEight),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            &asks,
            DeflateError::ServerWindowTooLarge { asked: 10, got: 11 },
        ),
        ("permessage-deflate; server_no_context_takeover", &asks, DeflateError::ServerWindowNotConfirmed { asked: 10 }),
        ("permessage-deflate; server_max_window_bits=10", &asks, DeflateError::ServerContextTakeoverNotConfirmed),
    ];
    for (value, cfg, err) in table {
        assert_eq!(accept_response(value, cfg).as_ref(), Err(err), "{value}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn accept_response_good() {
    let d = DeflateConfig::default();
    let mine = cfg_with(|c| c.client_max_window_bits = 11);
    let table: &[(&str, &DeflateConfig, DeflateParams)] = &[
        ("permessage-deflate", &d, params(false, false, 15, 15)),
        (" Permessage-Deflate ; Client_Max_Window_Bits=\"12\" ", &d, params(false, false, 15, 12)),
        // The server may state its own window and flags unasked; 8 is inflated with 9.
        (
            "permessage-deflate; server_max_window_bits=8; server_no_context_takeover; client_no_context_takeover",
            &d,
            params(true, true, 8, 15),
        ),
        // We compress with the smaller of what the server allows and our own most.
        ("permessage-deflate; client_max_window_bits=13", &mine, params(false, false, 15, 11)),
        ("permessage-deflate; client_max_window_bits=9", &mine, params(false, false, 15, 9)),
        ("permessage-deflate", &mine, params(false, false, 15, 11)),
    ];
    for (value, cfg, want) in table {
        assert_eq!(accept_response(value, cfg), Ok(*want), "{value}");
    }
    let asks_cnct = cfg_with(|c| c.client_no_context_takeover = true);
    assert!(accept_response("permessage-deflate", &asks_cnct).unwrap().client_no_context_takeover);
}

#[test]
fn ours_and_theirs() {
    let p = params(true, false, 10, 8);
    assert_eq!(p.ours(Role::Server), (10, false));
    assert_eq!(p.theirs(Role::Server), (9, true));
    assert_eq!(p.ours(Role::Client), (9, true));
    assert_eq!(p.theirs(Role::Client), (10, false));
    assert!(size_of::<DeflateParams>() <= 4);
}

#[test]
fn config_validation() {
    assert_eq!(DeflateConfig::default().validate(), Ok(()));
    let bad: [(DeflateConfig, DeflateError); 6] = [
        (
            cfg_with(|c| c.server_max_window_bits = 8),
            DeflateError::WindowBitsOutOfRange { param: "server_max_window_bits", value: 8 },
        ),
        (
            cfg_with(|c| c.client_max_window_bits = 16),
            DeflateError::WindowBitsOutOfRange { param: "client_max_window_bits", value: 16 },
        ),
        (cfg_with(|c| c.mem_level = 0), DeflateError::MemLevelOutOfRange(0)),
        (cfg_with(|c| c.mem_level = 10), DeflateError::MemLevelOutOfRange(10)),
        (cfg_with(|c| c.level = 10), DeflateError::LevelOutOfRange(10)),
        (
            cfg_with(|c| c.client_max_window_bits = 0),
            DeflateError::WindowBitsOutOfRange { param: "client_max_window_bits", value: 0 },
        ),
    ];
    for (cfg, err) in bad {
        assert_eq!(cfg.validate(), Err(err));
    }
    let t = cfg_with(|c| c.threshold = 10);
    assert!(!t.compresses(9) && t.compresses(10));
}

/// A JSON-like message, different for each `seed`, repetitive like real traffic.
fn json(seed: usize, len: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"tags\":[\"a\",\"b{}\"]}},",
            i % 97,
            i * 31 % 1000,
            i % 7
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn inflate_all(d: &mut Decompressor, compressed: &[u8], reset: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    d.decompress(compressed, &mut out, usize::MAX, reset).unwrap();
    out.to_vec()
}

#[test]
fn round_trips_every_window_with_and_without_takeover() {
    let msgs: Vec<Vec<u8>> = (0..6).map(|i| json(i * 3, [0, 1, 100, 1000, 20_000, 70_000][i])).collect();
    for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
        for takeover in [true, false] {
            for level in [0, 1, 6, 9] {
                let mut c = Compressor::new(bits, level, 8);
                let mut d = Decompressor::new(bits);
                for m in msgs.iter().chain(msgs.iter()) {
                    let mut wire = BytesMut::new();
                    c.compress(m, &mut wire, !takeover);
                    assert!(!wire.ends_with(&TAIL_BYTES) || m.is_empty(), "tail removed");
                    assert_eq!(
                        &inflate_all(&mut d, &wire, !takeover),
                        m,
                        "bits {bits} takeover {takeover} level {level}"
                    );
                }
            }
        }
    }
}

const TAIL_BYTES: [u8; 4] = [0, 0, 0xff, 0xff];

#[test]
fn context_takeover_is_real_and_reset_forgets() {
    let m = json(1, 2000);
    let mut c = Compressor::new(15, 6, 8);
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    c.compress(&m, &mut first, false);
    c.compress(&m, &mut second, false);
    // The repeat refers back to the first message: a few bytes per 258-byte match.
    assert!(second.len() * 5 < first.len(), "{} {}", first.len(), second.len());
    // It inflates only with the first one's context.
    let mut alone = BytesMut::new();
    assert!(Decompressor::new(15).decompress(&second, &mut alone, 1 << 20, false).is_err() || alone[..] != m[..]);
    // With reset, each message is compressed as if it were the first.
    let mut c = Compressor::new(15, 6, 8);
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    c.compress(&m, &mut a, true);
    c.compress(&m, &mut b, true);
    assert_eq!(a, b);
    assert_eq!(inflate_all(&mut Decompressor::new(15), &b, true), m);
}

#[test]
fn empty_message_is_one_zero_byte() {
    let mut c = Compressor::new(15, 6, 8);
    let mut d = Decompressor::new(15);
    for m in [&b""[..], b"abc", b"", b"", b"abc"] {
        let mut wire = BytesMut::new();
        c.compress(m, &mut wire, false);
        if m.is_empty() {
            assert_eq!(&wire[..], &[0]);
        }
        assert_eq!(inflate_all(&mut d, &wire, false), m);
    }
    // An empty compressed payload is an empty message and leaves the stream intact.
    assert_eq!(inflate_all(&mut d, &[], false), b"");
    let mut wire = BytesMut::new();
    c.compress(b"abc", &mut wire, false);
    assert_eq!(inflate_all(&mut d, &wire, false), b"abc");
}

/// flate2 (zlib-rs) raw deflate used directly: a message with the tail stripped.
fn flate2_compress(c: &mut Compress, m: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 64);
    let start = c.total_in();
    loop {
        let consumed = (c.total_in() - start) as usize;
        c.compress_vec(&m[consumed..], &mut out, flush).unwrap();
        if (c.total_in() - start) as usize == m.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out
}

fn flate2_inflate(d: &mut Decompress, wire: &[u8]) -> Vec<u8> {
    let mut input = wire.to_vec();
    input.extend_from_slice(&TAIL_BYTES);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

#[test]
fn interop_with_flate2_raw_deflate() {
    let msgs: Vec<Vec<u8>> = (0..4).map(|i| json(i, 300 + 5000 * i)).collect();
    for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
        // Ours -> plain raw inflate (context kept across messages on both sides).
        let mut c = Compressor::new(bits, 6, 8);
        let mut d = Decompress::new_with_window_bits(false, bits);
        for m in &msgs {
            let mut wire = BytesMut::new();
            c.compress(m, &mut wire, false);
            assert_eq!(&flate2_inflate(&mut d, &wire), m, "bits {bits}");
        }
        // Plain raw deflate with a sync flush, tail stripped -> ours.
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
        let mut d = Decompressor::new(bits);
        for m in &msgs {
            let mut wire = flate2_compress(&mut c, m, FlushCompress::Sync);
            assert!(wire.ends_with(&TAIL_BYTES));
            wire.truncate(wire.len() - 4);
            assert_eq!(&inflate_all(&mut d, &wire, false), m, "bits {bits}");
        }
    }
}

#[test]
fn window_eight_peer_inflates_with_nine() {
    // A zlib-based peer told 8 compresses with 9 (flate2 refuses 8 outright).
    let mut c = Compress::new_with_window_bits(Compression::new(9), false, 9);
    let m = json(5, 40_000);
    let mut wire = flate2_compress(&mut c, &m, FlushCompress::Sync);
    wire.truncate(wire.len() - 4);
    let mut d = Decompressor::new(8);
    assert_eq!(inflate_all(&mut d, &wire, false), m);
    let p = negotiate(&offers("permessage-deflate; client_max_window_bits=8"), &DeflateConfig::default()).unwrap();
    assert_eq!(p.theirs(Role::Server).0, 9);
}

#[test]
fn final_block_message_is_accepted_and_resets() {
    for bits in [9, 15] {
        let mut d = Decompressor::new(bits);
        for i in 0..3 {
            let m = json(i, 3000);
            // Each message a whole stream ending in BFINAL, as 7.2.3.4 allows.
            let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
            let wire = flate2_compress(&mut c, &m, FlushCompress::Finish);
            assert_eq!(inflate_all(&mut d, &wire, false), m);
        }
        // After a final block, a sync-flushed message inflates from a fresh state.
        let mut wire = BytesMut::new();
        Compressor::new(bits, 6, 8).compress(b"after", &mut wire, false);
        assert_eq!(inflate_all(&mut d, &wire, false), b"after");
    }
}

#[test]
fn data_after_the_final_block_is_corrupt() {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut wire = flate2_compress(&mut c, b"hello", FlushCompress::Finish);
    wire.extend_from_slice(b"junk");
    let mut out = BytesMut::new();
    let err = Decompressor::new(15).decompress(&wire, &mut out, 1 << 20, false).unwrap_err();
    assert!(matches!(err, InflateError::Corrupt(ref s) if s.contains("final block")), "{err}");
}

#[test]
fn bomb_stops_at_the_limit() {
    const LIMIT: usize = 1 << 20;
    let zeros = vec![0u8; 100 << 20];
    let mut wire = BytesMut::new();
    Compressor::new(15, 9, 9).compress(&zeros, &mut wire, false);
    assert!(wire.len() < 200 << 10, "{}", wire.len());
    for fresh in [true, false] {
        let mut d = Decompressor::new(15);
        let mut out = BytesMut::new();
        assert_eq!(d.decompress(&wire, &mut out, LIMIT, false), Err(InflateError::TooBig { limit: LIMIT }));
        assert!(out.capacity() <= LIMIT + 1, "capacity {}", out.capacity());
        assert!(out.len() > LIMIT - MAX_ROOM_FOR_TEST);
        if !fresh {
            // The state was reset: the decompressor works for the next message.
            let mut wire = BytesMut::new();
            Compressor::new(15, 6, 8).compress(b"next", &mut wire, false);
            assert_eq!(inflate_all(&mut d, &wire, false), b"next");
        }
    }
    // Exactly the limit is fine, one byte more is not.
    let m = json(0, 5000);
    let mut wire = BytesMut::new();
    Compressor::new(15, 6, 8).compress(&m, &mut wire, false);
    let mut out = BytesMut::new();
    assert_eq!(Decompressor::new(15).decompress(&wire, &mut out, 5000, false), Ok(()));
    assert_eq!(&out[..], &m[..]);
    let mut out = BytesMut::new();
    assert_eq!(
        Decompressor::new(15).decompress(&wire, &mut out, 4999, false),
        Err(InflateError::TooBig { limit: 4999 })
    );
    assert!(out.capacity() <= 5000);
}

const MAX_ROOM_FOR_TEST: usize = 64 << 10;

/// The output room grows from a guess: messages around every power of two, of text that
/// inflates a few times over, of incompressible bytes and of zeros (thousands of times),
/// into buffers of several capacities, with the limit one byte under, at and over the
/// message: each inflates whole or stops with `TooBig`, never growing the buffer past
/// `limit + 1` bytes.
#[test]
fn inflate_room_at_every_boundary() {
    let mut noise = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                noise as u8
            })
            .collect()
    };
    let mut sizes = vec![0, 1, 2, 255, 256, 257];
    for k in 9..=17 {
        sizes.extend([(1usize << k) - 1, 1 << k, (1 << k) + 1]);
    }
    let mut d = Decompressor::new(15);
    for n in sizes {
        for m in [json(n, n), random(n), vec![0u8; n]] {
            let mut wire = BytesMut::new();
            Compressor::new(15, 6, 4).compress(&m, &mut wire, true);
            for cap in [0, n, n + 1, n + 1000] {
                for limit in [n.saturating_sub(1), n, n + 1] {
                    let mut out = BytesMut::with_capacity(cap);
                    let r = d.decompress(&wire, &mut out, limit, true);
                    if n <= limit {
                        assert_eq!(r, Ok(()), "n {n} cap {cap} limit {limit}");
                        assert_eq!(&out[..], &m[..], "n {n} cap {cap} limit {limit}");
                    } else {
                        assert_eq!(r, Err(InflateError::TooBig { limit }), "n {n} cap {cap} limit {limit}");
                        // (8: the smallest allocation a growing buffer makes)
                        let most = cap.max(limit + 1).max(8);
                        assert!(out.capacity() <= most, "n {n} cap {cap}: {}", out.capacity());
                    }
                }
            }
        }
    }
}

#[test]
fn corrupt_input_is_an_error_and_resets() {
    let mut d = Decompressor::new(15);
    let mut out = BytesMut::new();
    // BTYPE 11 is reserved.
    let err = d.decompress(&[0xff, 0xff, 0xff], &mut out, 1 << 20, false).unwrap_err();
    assert!(matches!(err, InflateError::Corrupt(_)), "{err}");
    // A distance before the start of the data.
    let err = d.decompress(&[0x03, 0x00, 0x01, 0x00], &mut out, 1 << 20, false);
    assert!(matches!(err, Err(InflateError::Corrupt(_))), "{err:?}");
    let mut wire = BytesMut::new();
    Compressor::new(15, 6, 8).compress(b"fine", &mut wire, false);
    assert_eq!(inflate_all(&mut d, &wire, false), b"fine");
}

#[test]
fn shared_codecs_reset_between_messages() {
    let m = json(9, 4000);
    let mut wires = Vec::new();
    for _ in 0..3 {
        // Even when `f` asks to keep the context, the shared compressor is reset after it.
        let mut wire = BytesMut::new();
        with_shared_compressor(12, 6, 8, |c| c.compress(&m, &mut wire, false));
        wires.push(wire);
    }
    assert_eq!(wires[0], wires[1]);
    for wire in &wires {
        // Each inflates alone, with a fresh plain inflater.
        let mut d = Decompress::new_with_window_bits(false, 12);
        assert_eq!(flate2_inflate(&mut d, wire), m);
    }
    // The shared decompressor takes messages of any window, one after the other, from
    // different "connections", and forgets each.
    let mut prev = Vec::new();
    for bits in [9, 15, 12] {
        let mut wire = BytesMut::new();
        Compressor::new(bits, 6, 8).compress(&m, &mut wire, false);
        let got = with_shared_decompressor(bits, |d| inflate_all(d, &wire, false));
        assert_eq!(got, m);
        prev = wire.to_vec();
    }
    // A message referring to the previous one's data does not inflate to it.
    let mut c = Compressor::new(15, 6, 8);
    let mut first = BytesMut::new();
    c.compress(&m, &mut first, false);
    with_shared_decompressor(15, |d| assert_eq!(inflate_all(d, &first, false), m));
    let mut second = BytesMut::new();
    c.compress(&m, &mut second, false);
    let r = with_shared_decompressor(15, |d| {
        let mut out = BytesMut::new();
        d.decompress(&second, &mut out, 1 << 20, false).map(|()| out)
    });
    assert!(r.map_or(true, |out| out[..] != m[..]));
    assert!(!prev.is_empty());
    // Nested use gets its own codec.
    let n = with_shared_compressor(15, 6, 8, |_| {
        with_shared_compressor(15, 6, 8, |c| {
            let mut w = BytesMut::new();
            c.compress(b"nested", &mut w, true);
            w.len()
        })
    });
    assert!(n > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_messages_round_trip(
        bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS,
        level in 0u32..=9,
        mem_level in 1u8..=9,
        takeover in any::<bool>(),
        msgs in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..3000),
                (0usize..1000, 0usize..20_000).prop_map(|(s, n)| json(s, n)),
            ],
            1..6,
        ),
        prefix in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut c = Compressor::new(bits, level, mem_level);
        let mut d = Decompressor::new(bits);
        for m in &msgs {
            // Both append: after what the buffers already hold.
            let mut wire = BytesMut::from(&prefix[..]);
            c.compress(m, &mut wire, !takeover);
            prop_assert_eq!(&wire[..prefix.len()], &prefix[..]);
            let mut out = BytesMut::from(&prefix[..]);
            // The limit counts `out` as a whole: exactly enough.
            d.decompress(&wire[prefix.len()..], &mut out, prefix.len() + m.len(), !takeover).unwrap();
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&out[prefix.len()..], &m[..]);
        }
    }
}

#[test]
fn thread_counts_add_up_what_the_codecs_did() {
    let start = super::thread_counts();
    let mut wire = BytesMut::new();
    with_shared_compressor(15, 6, 8, |c| c.compress(&[b'a'; 1000], &mut wire, true));
    let mut text = BytesMut::new();
    Decompressor::new(15).decompress(&wire, &mut text, 4096, true).unwrap();
    let n = super::thread_counts();
    assert_eq!(n.compressed_in - start.compressed_in, 1000);
    assert_eq!(n.compressed_out - start.compressed_out, wire.len() as u64);
    assert_eq!(n.inflated_in - start.inflated_in, wire.len() as u64);
    assert_eq!(n.inflated_out - start.inflated_out, 1000);
    // Another thread's codecs are its own.
    let other = std::thread::spawn(super::thread_counts).join().unwrap();
    assert_eq!(other, super::CodecCounts::default());
}
