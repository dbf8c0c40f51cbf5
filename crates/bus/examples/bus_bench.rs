//! What the bus crate costs: its bus thread's publish rate and CPU per published and per
//! received message, on a real `redis-server` and `nats-server`, against the raw protocol
//! written on plain `TcpStream`s (pipelined, one batch in flight, no client crate); then
//! the latency from `publish` on one bus to `deliver` on the other at a paced rate.
//!
//! `cargo run --release -p ringwire-bus --example bus_bench [MESSAGES]` (default 200,000
//! messages of 64 bytes; the raw baseline sends the same 81 bytes the envelope makes).
//! Figures: docs/scaling.md, "Bus".

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire_bus::{Bus, BusConfig, Kind};
use ringwire_testkit::brokers::{Broker, Nats, Redis};

const PAYLOAD: usize = 64;
const ENVELOPED: usize = PAYLOAD + 17;
const BATCH: usize = 512;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let n: u64 = std::env::args().nth(1).map_or(200_000, |a| a.parse().expect("MESSAGES"));
    println!("{n} messages of {PAYLOAD} bytes, one publisher and one subscriber process-side");
    let redis = Redis::start().expect("redis-server");
    report("redis", crate_run(&redis.url(), n), raw_run(raw_redis_pub, raw_redis_sub, redis.port(), n));
    latency("redis", &redis.url());
    let nats = Nats::start().expect("nats-server");
    report("nats", crate_run(&nats.url(), n), raw_run(raw_nats_pub, raw_nats_sub, nats.port(), n));
    latency("nats", &nats.url());
}

/// Latency from `publish` on one bus to `deliver` on the other: 20,000 messages paced at
/// 20,000 a second, each carrying its send time.
fn latency(broker: &str, url: &str) {
    const COUNT: usize = 20_000;
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(COUNT)));
    let record = seen.clone();
    let sub = Bus::connect(BusConfig::parse(url).unwrap(), move |_: &str, _, p: Bytes| {
        let sent = u64::from_be_bytes(p[..8].try_into().unwrap());
        let now = EPOCH.get().unwrap().elapsed().as_nanos() as u64;
        record.lock().unwrap().push(now - sent);
    })
    .unwrap();
    let publisher = Bus::connect(BusConfig::parse(url).unwrap(), |_: &str, _, _| {}).unwrap();
    sub.subscribe("/latency");
    while sub.stats().subscriptions != 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    for i in 0..COUNT {
        while start.elapsed() < Duration::from_micros(50 * i as u64) {
            std::hint::spin_loop();
        }
        let mut p = (epoch.elapsed().as_nanos() as u64).to_be_bytes().to_vec();
        p.resize(PAYLOAD, b'x');
        publisher.publish("/latency", Kind::Binary, Bytes::from(p));
    }
    wait_for(|| seen.lock().unwrap().len() >= COUNT);
    let mut lat = seen.lock().unwrap().clone();
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{broker:5} crate: latency publish -> deliver at 20,000 msg/s: p50 {:.0} us, p99 {:.0} us, max {:.0} us ({} of {COUNT})",
        at(0.5),
        at(0.99),
        at(1.0),
        lat.len()
    );
}

/// Publish rate (messages/s), CPU per published and per received message (ns).
struct Figures {
    rate: f64,
    pub_ns: f64,
    sub_ns: f64,
    received: u64,
    /// Dropped on the receiving side (the client's slow-consumer drops).
    receive_dropped: u64,
}

fn report(broker: &str, with_crate: Figures, raw: Figures) {
    for (what, f) in [("crate", &with_crate), ("raw  ", &raw)] {
        println!(
            "{broker:5} {what}: publish {:>9.0} msg/s, CPU {:>6.0} ns per published, {:>6.0} ns per received ({} received, {} dropped receiving)",
            f.rate, f.pub_ns, f.sub_ns, f.received, f.receive_dropped
        );
    }
}

fn crate_run(url: &str, n: u64) -> Figures {
    let connect = |deliver: fn(&str, Kind, Bytes)| {
        let before = bus_threads();
        let bus = Bus::connect(BusConfig::parse(url).unwrap(), deliver).unwrap();
        let tid = *bus_threads().iter().find(|t| !before.contains(t)).expect("the new bus thread");
        (bus, tid)
    };
    let (sub, sub_tid) = connect(|_, _, p| assert_eq!(p.len(), PAYLOAD));
    let (publisher, pub_tid) = connect(|_, _, _| {});
    sub.subscribe("/bench");
    while sub.stats().subscriptions != 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let (pub_cpu, sub_cpu) = (thread_cpu(pub_tid), thread_cpu(sub_tid));
    let start = Instant::now();
    for _ in 0..n {
        while !publisher.publish("/bench", Kind::Binary, payload.clone()) {
            std::thread::yield_now();
        }
    }
    while publisher.stats().published < n {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    let pub_cpu = thread_cpu(pub_tid) - pub_cpu;
    wait_for(|| {
        let s = sub.stats();
        s.received + s.receive_dropped >= n
    });
    let s = sub.stats();
    let sub_cpu = thread_cpu(sub_tid) - sub_cpu;
    Figures {
        rate: n as f64 / elapsed.as_secs_f64(),
        pub_ns: pub_cpu / n as f64,
        sub_ns: sub_cpu / s.received.max(1) as f64,
        received: s.received,
        receive_dropped: s.receive_dropped,
    }
}

/// The raw baseline: a subscriber thread and a publisher thread, each timing its own CPU.
fn raw_run(publish: fn(u16, u64), subscribe: fn(TcpStream, u64) -> u64, port: u16, n: u64) -> Figures {
    let (tx, rx) = std::sync::mpsc::channel();
    let sub = std::thread::spawn(move || {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let cpu = own_cpu();
        let got = subscribe(s, n);
        (got, own_cpu() - cpu)
    });
    std::thread::sleep(Duration::from_millis(200)); // the subscription is made
    let publisher = std::thread::spawn(move || {
        let (cpu, start) = (own_cpu(), Instant::now());
        publish(port, n);
        tx.send((start.elapsed(), own_cpu() - cpu)).unwrap();
    });
    publisher.join().unwrap();
    let (elapsed, pub_cpu) = rx.recv().unwrap();
    let (received, sub_cpu) = sub.join().unwrap();
    Figures {
        rate: n as f64 / elapsed.as_secs_f64(),
        pub_ns: pub_cpu / n as f64,
        sub_ns: sub_cpu / received.max(1) as f64,
        received,
        receive_dropped: 0,
    }
}

fn raw_redis_pub(port: u16, n: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let one = format!("*3\r\n$7\r\nPUBLISH\r\n$15\r\nringwire:/bench\r\n${ENVELOPED}\r\n{}\r\n", "x".repeat(ENVELOPED));
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(BATCH as u64);
        s.write_all(one.repeat(batch as usize).as_bytes()).unwrap();
        for _ in 0..batch {
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with(':'), "{line}");
        }
        sent += batch;
    }
}

/// Reads `message` pushes (RESP arrays of 3 bulk strings) until `n` or a second of silence.
fn raw_redis_sub(s: TcpStream, n: u64) -> u64 {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    (&s).write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$15\r\nringwire:/bench\r\n").unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut line = Vec::new();
    let mut count = 0u64;
    let mut bulk = Vec::new();
    while count <= n {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            break;
        }
        // "*3": then three "$len" + data lines; the first is "message" or "subscribe"
        let mut kind = Vec::new();
        for i in 0..3 {
            line.clear();
            r.read_until(b'\n', &mut line).unwrap();
            if line[0] == b':' {
                continue; // the subscribe confirmation's count
            }
            let len: usize = std::str::from_utf8(&line[1..line.len() - 2]).unwrap().parse().unwrap();
            bulk.resize(len + 2, 0);
            r.read_exact(&mut bulk).unwrap();
            if i == 0 {
                kind = bulk[..len].to_vec();
            }
        }
        if kind == b"message" {
            count += 1;
            if count == n {
                break;
            }
        }
    }
    count
}

fn raw_nats_pub(port: u16, n: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"CONNECT {\"verbose\":false,\"echo\":false}\r\n").unwrap();
    let one = format!("PUB ringwire./bench {ENVELOPED}\r\n{}\r\n", "x".repeat(ENVELOPED));
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(BATCH as u64);
        s.write_all(one.repeat(batch as usize).as_bytes()).unwrap();
        sent += batch;
    }
    // all taken by the server once it answers a PING sent after them
    s.write_all(b"PING\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !line.starts_with("PONG") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
}

/// Reads `MSG subject sid len` + payload until `n` or a second of silence.
fn raw_nats_sub(s: TcpStream, n: u64) -> u64 {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    (&s).write_all(b"CONNECT {\"verbose\":false}\r\nSUB ringwire./bench 1\r\n").unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s);
    let (mut line, mut payload, mut count) = (Vec::new(), Vec::new(), 0u64);
    while count < n {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.starts_with(b"MSG ") {
            let head = std::str::from_utf8(&line[..line.len() - 2]).unwrap();
            let len: usize = head.rsplit(' ').next().unwrap().parse().unwrap();
            payload.resize(len + 2, 0);
            r.read_exact(&mut payload).unwrap();
            count += 1;
        } else if line.starts_with(b"PING") {
            r.get_mut().write_all(b"PONG\r\n").unwrap();
        }
    }
    count
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The ids of this process's threads named `ringwire-bus`.
fn bus_threads() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "ringwire-bus").then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// CPU time of thread `tid` of this process, in ns (schedstat's first field).
fn thread_cpu(tid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

/// CPU time of the calling thread, in ns.
fn own_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}
