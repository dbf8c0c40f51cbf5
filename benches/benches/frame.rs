//! The frame path, side by side with the peers: unmask, UTF-8 (whole and streamed),
//! header decode, full frame decode and encode, for every size in `SIZES`.
//!
//! Run pinned to one core: `taskset -c 1 cargo bench -p ringwire-benches`, then
//! `python3 benches/report.py` for the markdown table.

use std::hint::black_box;
use std::io::{Cursor, IoSlice};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringwire_benches::{ALIGNS, KEY, Placed, Replay, SIZES, ascii_text, encode_frame, mixed_text};
use ringwire_frame::mask::{apply_mask_bytewise, kernels};
use ringwire_frame::{
    DecodeConfig, Decoded, FrameHeader, OpCode, Role, Utf8Validator, apply_mask, decode_header, validate_utf8,
};
use tungstenite::protocol::frame::coding::{Data, OpCode as TOpCode};
use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader as TFrameHeader};
use tungstenite::protocol::{Role as TRole, WebSocket, WebSocketConfig};

/// Short runs: the machine is shared, and ratios within one run are what we report.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50)
        .without_plots()
        .configure_from_args()
}

/// Unmask in place: every ringwire kernel this CPU has, the byte loop, and
/// fastwebsockets' `unmask`. (tungstenite's `apply_mask` is private; it is the same
/// `align_to_mut::<u32>` loop as fastwebsockets' `unmask`.)
fn unmask(c: &mut Criterion) {
    for align in ALIGNS {
        let mut g = c.benchmark_group(format!("unmask_off{align}"));
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let mut buf = Placed::new(&mixed_text(size), align);
            g.bench_with_input(BenchmarkId::new("ringwire", size), &size, |b, _| {
                b.iter(|| apply_mask(black_box(buf.bytes_mut()), black_box(KEY), 0))
            });
            for k in kernels() {
                let name = match k.name() {
                    "bytewise" => "byte loop".to_string(),
                    n => format!("ringwire {n}"),
                };
                g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                    b.iter(|| k.apply(black_box(buf.bytes_mut()), black_box(KEY), 0))
                });
            }
            g.bench_with_input(BenchmarkId::new("fastwebsockets", size), &size, |b, _| {
                b.iter(|| fastwebsockets::unmask(black_box(buf.bytes_mut()), black_box(KEY)))
            });
        }
        g.finish();
    }
}

/// Cut points for the streamed UTF-8 bench: three uneven chunks (1/7, then 3/5).
fn three_chunks(len: usize) -> (usize, usize) {
    (len / 7, len * 3 / 5)
}

/// Makes `len` bytes of text.
type TextMaker = fn(usize) -> Vec<u8>;

/// UTF-8 validation of text, whole and streamed in three uneven chunks, against std.
fn utf8(c: &mut Criterion) {
    let inputs: [(&str, TextMaker, &[usize]); 2] =
        [("utf8_mixed", mixed_text, &ALIGNS), ("utf8_ascii", ascii_text, &ALIGNS[..1])];
    for (group, make, aligns) in inputs {
        for &align in aligns {
            let mut g = c.benchmark_group(format!("{group}_off{align}"));
            for size in SIZES {
                g.throughput(Throughput::Bytes(size as u64));
                let text = Placed::new(&make(size), align);
                let t = text.bytes();
                assert!(validate_utf8(t).is_ok());
                g.bench_with_input(BenchmarkId::new("ringwire", size), &size, |b, _| {
                    b.iter(|| validate_utf8(black_box(t)).is_ok())
                });
                let (c1, c2) = three_chunks(size);
                g.bench_with_input(BenchmarkId::new("ringwire streamed", size), &size, |b, _| {
                    b.iter(|| {
                        let t = black_box(t);
                        let mut v = Utf8Validator::new();
                        v.feed(&t[..c1]).is_ok()
                            && v.feed(&t[c1..c2]).is_ok()
                            && v.feed(&t[c2..]).is_ok()
                            && v.finish().is_ok()
                    })
                });
                g.bench_with_input(BenchmarkId::new("std", size), &size, |b, _| {
                    b.iter(|| std::str::from_utf8(black_box(t)).is_ok())
                });
            }
            g.finish();
        }
    }
}

/// Header decode: one header per iteration (reported per header, not per byte),
/// masked, for the length class each size needs; against tungstenite's `FrameHeader::parse`.
fn header(c: &mut Criterion) {
    let cfg = DecodeConfig::new(Role::Server, u64::MAX >> 1);
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    for size in SIZES {
        let h = FrameHeader { mask: Some(KEY), ..FrameHeader::new(OpCode::Binary, size as u64) };
        let hdr = h.encode();
        let bytes = Placed::new(hdr.as_bytes(), 0);
        let bytes = bytes.bytes();
        g.bench_with_input(BenchmarkId::new("ringwire", size), &size, |b, _| {
            b.iter(|| match decode_header(black_box(bytes), &cfg) {
                Ok(Decoded::Header(h, n)) => h.payload_len as usize + n,
                other => panic!("{other:?}"),
            })
        });
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &size, |b, _| {
            b.iter(|| {
                let mut cur = Cursor::new(black_box(bytes));
                match TFrameHeader::parse(&mut cur) {
                    Ok(Some((_, len))) => len as usize + cur.position() as usize,
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    g.finish();
}

/// Full decode of one masked text frame (mixed UTF-8) as a server receives it:
/// parse the header, unmask the payload in place, validate it. Each iteration gets a
/// fresh copy of the frame (made outside the timed region). Baselines: the same with
/// the byte loop and `std::str::from_utf8`, and tungstenite's `WebSocket::read` over an
/// in-memory stream that repeats the frame (its read copies the bytes in, unmasks,
/// validates).
fn decode(c: &mut Criterion) {
    let cfg = DecodeConfig::new(Role::Server, u64::MAX >> 1);
    for align in ALIGNS {
        let mut g = c.benchmark_group(format!("decode_off{align}"));
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let text = mixed_text(size);
            let wire = encode_frame(OpCode::Text, &text, Some(KEY));
            let placed = Placed::new(&wire, align);
            let ours = |f: &mut Placed, fast: bool| -> usize {
                let buf = f.bytes_mut();
                let Ok(Decoded::Header(h, n)) = decode_header(buf, &cfg) else { panic!("bad frame") };
                let payload = &mut buf[n..n + h.payload_len as usize];
                let key = h.mask.expect("masked");
                if fast {
                    apply_mask(payload, key, 0);
                    validate_utf8(payload).expect("valid text").len()
                } else {
                    apply_mask_bytewise(payload, key, 0);
                    std::str::from_utf8(payload).expect("valid text").len()
                }
            };
            g.bench_with_input(BenchmarkId::new("ringwire", size), &size, |b, _| {
                b.iter_batched_ref(|| placed.clone(), |f| ours(f, true), BatchSize::LargeInput)
            });
            g.bench_with_input(BenchmarkId::new("byte loop + std", size), &size, |b, _| {
                b.iter_batched_ref(|| placed.clone(), |f| ours(f, false), BatchSize::LargeInput)
            });
            let config = WebSocketConfig::default()
                .max_frame_size(Some(usize::MAX))
                .max_message_size(Some(usize::MAX))
                .read_buffer_size(128 << 10);
            let mut ws = WebSocket::from_raw_socket(Replay::new(wire.clone()), TRole::Server, Some(config));
            g.bench_with_input(BenchmarkId::new("tungstenite", size), &size, |b, _| {
                b.iter(|| match ws.read() {
                    Ok(tungstenite::Message::Text(t)) => t.len(),
                    other => panic!("{other:?}"),
                })
            });
        }
        g.finish();
    }
}

/// Encode one final binary frame into an output chunk list (an iovec for writev or
/// io_uring): ringwire writes the header on the stack and points at the payload;
/// as a client it masks the payload in place first. tungstenite's `Frame::format`
/// writes header and payload into a `Vec` (as a client, masking a copy).
fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let mut payload = Placed::new(&ascii_text(size), 0);
        let shared = tungstenite::Bytes::from(ascii_text(size));
        let mut out: Vec<u8> = Vec::with_capacity(size + 14);
        g.bench_with_input(BenchmarkId::new("ringwire server", size), &size, |b, _| {
            b.iter(|| {
                let p = black_box(payload.bytes());
                let h = FrameHeader::new(OpCode::Binary, p.len() as u64).encode();
                let iov = [IoSlice::new(h.as_bytes()), IoSlice::new(p)];
                black_box(&iov);
                iov[0].len() + iov[1].len()
            })
        });
        g.bench_with_input(BenchmarkId::new("tungstenite server", size), &size, |b, _| {
            b.iter(|| {
                out.clear();
                let f = TFrame::message(black_box(shared.clone()), TOpCode::Data(Data::Binary), true);
                f.format(&mut out).expect("Vec writes cannot fail");
                black_box(&out);
                out.len()
            })
        });
        g.bench_with_input(BenchmarkId::new("ringwire client", size), &size, |b, _| {
            b.iter(|| {
                let p = black_box(payload.bytes_mut());
                let h = FrameHeader { mask: Some(KEY), ..FrameHeader::new(OpCode::Binary, p.len() as u64) }.encode();
                apply_mask(p, KEY, 0);
                let iov = [IoSlice::new(h.as_bytes()), IoSlice::new(p)];
                black_box(&iov);
                iov[0].len() + iov[1].len()
            })
        });
        g.bench_with_input(BenchmarkId::new("tungstenite client", size), &size, |b, _| {
            b.iter(|| {
                out.clear();
                let mut f = TFrame::message(black_box(shared.clone()), TOpCode::Data(Data::Binary), true);
                f.header_mut().mask = Some(KEY);
                f.format(&mut out).expect("Vec writes cannot fail");
                black_box(&out);
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = frame;
    config = config();
    targets = unmask, utf8, header, decode, encode
}
criterion_main!(frame);
