//! Criterion bench: masked client frames fed to a server connection in 64 KiB reads,
//! down to Message events.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringwire_conn::{Config, ConnInfo, Connection, Event, Role};
use std::hint::black_box;
use std::time::Instant;

/// `count` masked text frames of `size` bytes, as a client sends them.
fn client_wire(size: usize, count: usize) -> Vec<u8> {
    let now = Instant::now();
    let mut cfg = Config::client();
    cfg.fragment_outgoing_messages = false;
    cfg.max_buffered = None;
    let mut c = Connection::new(Role::Client, cfg, ConnInfo::new(), now);
    let msg = "x".repeat(size);
    let mut wire = Vec::new();
    for _ in 0..count {
        let _ = c.send_text(msg.as_str(), None).expect("open");
        while let Some(chunk) = c.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
    }
    wire
}

fn feed(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_read_64k");
    for (size, count) in [(32usize, 8192usize), (16 << 10, 64)] {
        let wire = client_wire(size, count);
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::new("masked_text_msgs", size), &wire, |b, wire| {
            let now = Instant::now();
            b.iter(|| {
                let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
                let mut n = 0usize;
                for read in wire.chunks(64 << 10) {
                    s.handle_read(read, now);
                    while let Some(e) = s.poll_event() {
                        if let Event::Message(m) = e {
                            n += black_box(m).len();
                        }
                    }
                }
                assert_eq!(n, size * count);
            });
        });
    }
    g.finish();
    let mut g = c.benchmark_group("conn_read_64k_bytes");
    for (size, count) in [(32usize, 8192usize), (16 << 10, 64)] {
        let wire = client_wire(size, count);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_with_input(BenchmarkId::new("masked_text_wire", size), &wire, |b, wire| {
            let now = Instant::now();
            b.iter(|| {
                let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
                for read in wire.chunks(64 << 10) {
                    s.handle_read(read, now);
                    while let Some(e) = s.poll_event() {
                        black_box(e);
                    }
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, feed);
criterion_main!(benches);
