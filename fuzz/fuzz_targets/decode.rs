//! Chunked input through the frame decoder, the unmask kernels and the streaming UTF-8
//! validator, checked against oracles:
//!
//! - `decode_header` never asks for more than a 14-byte header, and a decoded header
//!   re-encodes to exactly the bytes it came from (lengths are minimal, so the encoding
//!   is unique);
//! - every error maps to 1002 or 1009;
//! - a payload unmasked piece by piece (the key continuing at the running offset) equals
//!   the byte loop over the whole payload;
//! - the streamed validator accepts exactly what `std::str::from_utf8` accepts: it fails
//!   in a piece only if the message so far can no longer be valid, and `finish` fails
//!   only on an incomplete code point.
//!
//! Input layout: byte 0 picks the config (role, RSV1, frame limit), byte 1 seeds the
//! chunk sizes, the rest is the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwire_frame::mask::apply_mask_bytewise;
use ringwire_frame::{
    DecodeConfig, Decoded, FrameHeader, MAX_HEADER_LEN, OpCode, RSV1, Role, Utf8Validator, apply_mask, decode_header,
};

/// A text message being received: its validator and every byte so far (unmasked).
struct Text {
    validator: Utf8Validator,
    bytes: Vec<u8>,
    failed: bool,
}

/// The frame being received.
struct Current {
    header: FrameHeader,
    masked: Vec<u8>,
    unmasked: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let [ctl, seed, wire @ ..] = data else { return };
    let cfg = DecodeConfig {
        role: if ctl & 1 == 0 { Role::Server } else { Role::Client },
        allowed_rsv: if ctl & 2 == 0 { 0 } else { RSV1 },
        max_frame_size: if ctl & 4 == 0 { 1 << 16 } else { u64::from(ctl >> 3) * 17 },
    };
    let mut chunk_state = u32::from(*seed) | 0x100;
    let mut next_chunk = move || {
        chunk_state ^= chunk_state << 13;
        chunk_state ^= chunk_state >> 17;
        chunk_state ^= chunk_state << 5;
        1 + (chunk_state % 40) as usize
    };

    let mut pending: Vec<u8> = Vec::new();
    let mut current: Option<Current> = None;
    let mut text: Option<Text> = None;
    let mut rest = wire;
    while !rest.is_empty() {
        let n = next_chunk().min(rest.len());
        pending.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut at = 0;
        loop {
            if let Some(cur) = &mut current {
                let want = cur.header.payload_len as usize - cur.unmasked.len();
                let take = want.min(pending.len() - at);
                let piece_at = cur.unmasked.len();
                cur.masked.extend_from_slice(&pending[at..at + take]);
                cur.unmasked.extend_from_slice(&pending[at..at + take]);
                if let Some(key) = cur.header.mask {
                    apply_mask(&mut cur.unmasked[piece_at..], key, piece_at);
                }
                at += take;
                let in_text =
                    cur.header.opcode == OpCode::Text || (cur.header.opcode == OpCode::Continuation && text.is_some());
                if in_text && let Some(t) = &mut text {
                    feed_text(t, &cur.unmasked[piece_at..]);
                }
                if take < want {
                    break;
                }
                let done = current.take().expect("in progress");
                let mut whole = done.masked.clone();
                if let Some(key) = done.header.mask {
                    apply_mask_bytewise(&mut whole, key, 0);
                }
                assert_eq!(whole, done.unmasked, "piecewise unmask differs from the byte loop");
                if in_text && done.header.fin {
                    let mut t = text.take().expect("text message in progress");
                    if !t.failed {
                        let finished = t.validator.finish().is_ok();
                        assert_eq!(finished, std::str::from_utf8(&t.bytes).is_ok(), "finish disagrees with std");
                    }
                }
            } else {
                match decode_header(&pending[at..], &cfg) {
                    Err(e) => {
                        let code = e.close_code().as_u16();
                        assert!(code == 1002 || code == 1009, "{e}: close code {code}");
                        assert!(!e.to_string().is_empty());
                        return;
                    }
                    Ok(Decoded::NeedMore(more)) => {
                        assert!(more > 0 && pending.len() - at + more <= MAX_HEADER_LEN);
                        break;
                    }
                    Ok(Decoded::Header(h, used)) => {
                        assert_eq!(h.encode().as_bytes(), &pending[at..at + used], "re-encoding {h:?}");
                        assert!(h.payload_len <= cfg.max_frame_size);
                        at += used;
                        if h.opcode == OpCode::Text {
                            text = Some(Text { validator: Utf8Validator::new(), bytes: Vec::new(), failed: false });
                        } else if matches!(h.opcode, OpCode::Binary) {
                            text = None;
                        }
                        current = Some(Current { header: h, masked: Vec::new(), unmasked: Vec::new() });
                    }
                }
            }
        }
        pending.drain(..at);
    }
});

/// Feeds one piece of a text message and checks the verdict against std.
fn feed_text(t: &mut Text, piece: &[u8]) {
    if t.failed {
        return;
    }
    t.bytes.extend_from_slice(piece);
    let ok = t.validator.feed(piece).is_ok();
    // Valid so far means: valid, or invalid only because it ends inside a code point.
    let valid_so_far = match std::str::from_utf8(&t.bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    assert_eq!(ok, valid_so_far, "feed disagrees with std on {:?}", t.bytes);
    t.failed = !ok;
}
