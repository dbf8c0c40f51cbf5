//! Criterion bench: permessage-deflate's codec against flate2 (same zlib-rs backend)
//! used directly, compress and inflate of 1 KiB and 16 KiB JSON-like text, so the
//! wrapper's overhead shows. Also prints what each codec really allocates (a counting
//! global allocator), next to zlib's formula.
//!
//! `cargo bench -p ringwire-conn --bench deflate`

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use ringwire_conn::deflate::{Compressor, Decompressor, with_shared_compressor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, whose
// contracts are the same; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout` (the caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes still allocated by what `f` returns.
fn live_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Relaxed);
    let t = f();
    (t, LIVE.load(Relaxed).saturating_sub(before))
}

/// What each codec holds after `new` and after a 16 KiB message, against zlib's formula.
fn report_memory() {
    let msg = json(16 << 10);
    eprintln!("deflate memory (bytes live; zlib formula in brackets):");
    for (bits, mem) in [(15u8, 8u8), (15, 4), (15, 9), (12, 8), (12, 4), (9, 8), (9, 1)] {
        let (mut c, at_new) = live_bytes(|| Compressor::new(bits, 6, mem));
        let ((), used) = live_bytes(|| c.compress(&msg, &mut BytesMut::with_capacity(0), false));
        let formula = (1usize << (bits + 2)) + (1usize << (mem + 9));
        eprintln!("  Compressor   bits {bits:2} mem {mem}: {at_new:7} at new, +{used} after a message  [{formula}]");
    }
    for bits in [15u8, 12, 9] {
        let (mut d, at_new) = live_bytes(|| Decompressor::new(bits));
        let mut wire = BytesMut::new();
        Compressor::new(bits, 6, 8).compress(&msg, &mut wire, false);
        let mut out = BytesMut::new();
        let ((), used) = live_bytes(|| d.decompress(&wire, &mut out, usize::MAX, false).expect("inflates"));
        let used = used - out.capacity();
        eprintln!(
            "  Decompressor bits {bits:2}:       {at_new:7} at new, +{used} after a message  [{}]",
            1usize << bits
        );
    }
}

/// JSON-like text of `len` bytes.
fn json(len: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"online\":{},\"tags\":[\"news\",\"t{}\"]}},",
            i % 97,
            i * 31 % 1000,
            i.is_multiple_of(3),
            i % 7
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

/// flate2 raw deflate with a sync flush into `out` (cleared), as a caller would write it.
fn flate2_compress(c: &mut Compress, m: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(m.len() / 2 + 64);
    let start = c.total_in();
    loop {
        let done = (c.total_in() - start) as usize;
        c.compress_vec(&m[done..], out, FlushCompress::Sync).expect("deflate");
        if (c.total_in() - start) as usize == m.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - 4);
}

fn flate2_inflate(d: &mut Decompress, wire: &[u8], out: &mut Vec<u8>, cap: usize) {
    out.clear();
    out.reserve(cap);
    let start = d.total_in();
    for part in [wire, &[0, 0, 0xff, 0xff][..]] {
        let base = d.total_in();
        while ((d.total_in() - base) as usize) < part.len() {
            let done = (d.total_in() - base) as usize;
            d.decompress_vec(&part[done..], out, FlushDecompress::Sync).expect("inflate");
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
        }
    }
    assert!(d.total_in() > start);
}

fn bench(c: &mut Criterion) {
    for size in [1usize << 10, 16 << 10] {
        let msg = json(size);
        let mut g = c.benchmark_group("deflate_compress");
        g.throughput(Throughput::Bytes(size as u64));
        // Dedicated mode: context kept, as a connection with context takeover.
        let mut ours = Compressor::new(15, 6, 8);
        // Both sides reuse one output buffer, so only the wrappers differ.
        g.bench_with_input(BenchmarkId::new("ours_takeover", size), &msg, |b, m| {
            let mut out = BytesMut::new();
            b.iter(|| {
                out.clear();
                ours.compress(black_box(m), &mut out, false);
            })
        });
        let mut theirs = Compress::new_with_window_bits(Compression::new(6), false, 15);
        g.bench_with_input(BenchmarkId::new("flate2_takeover", size), &msg, |b, m| {
            let mut out = Vec::new();
            b.iter(|| flate2_compress(&mut theirs, black_box(m), &mut out))
        });
        // Shared mode: reset after each message.
        g.bench_with_input(BenchmarkId::new("ours_shared", size), &msg, |b, m| {
            let mut out = BytesMut::new();
            b.iter(|| {
                out.clear();
                with_shared_compressor(15, 6, 8, |c| c.compress(black_box(m), &mut out, true));
            })
        });
        let mut theirs = Compress::new_with_window_bits(Compression::new(6), false, 15);
        g.bench_with_input(BenchmarkId::new("flate2_reset", size), &msg, |b, m| {
            let mut out = Vec::new();
            b.iter(|| {
                flate2_compress(&mut theirs, black_box(m), &mut out);
                theirs.reset();
            })
        });
        g.finish();

        // Inflate one message compressed without context, resetting after each.
        let mut wire = BytesMut::new();
        Compressor::new(15, 6, 8).compress(&msg, &mut wire, true);
        let mut g = c.benchmark_group("deflate_inflate");
        g.throughput(Throughput::Bytes(size as u64));
        let mut ours = Decompressor::new(15);
        g.bench_with_input(BenchmarkId::new("ours", size), &wire, |b, w| {
            let mut out = BytesMut::new();
            b.iter(|| {
                out.clear();
                ours.decompress(black_box(w), &mut out, 1 << 20, true).expect("inflates");
            })
        });
        let mut theirs = Decompress::new_with_window_bits(false, 15);
        g.bench_with_input(BenchmarkId::new("flate2", size), &wire, |b, w| {
            let mut out = Vec::new();
            b.iter(|| {
                flate2_inflate(&mut theirs, black_box(w), &mut out, size);
                theirs.reset(false);
            })
        });
        g.finish();
    }
}

fn main() {
    report_memory();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
