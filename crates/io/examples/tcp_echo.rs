//! A raw TCP echo server on ringwire-io: the floor the load harness compares WebSocket
//! servers against (same loop, same threads, no WebSocket work).
//!
//! ```text
//! cargo run --release -p ringwire-io --example tcp_echo -- --addr 127.0.0.1:9000 --io auto --threads 1
//! ```
//!
//! `--threads` defaults to 1, like `ringwire --threads 1` in the benchmark harness. What
//! arrives goes back as it is: on io_uring a large receive is sent from its receive buffer,
//! lent out of the ring without a copy (`RecvBuf::into_bytes`).

use std::net::SocketAddr;

use ringwire_io::{ConnId, EventLoop, Handler, Io, IoChoice, LoopConfig, RecvBuf, bind_reuseport, detect};

struct Echo;

impl Handler for Echo {
    fn on_accept(&mut self, _io: &mut impl Io, _conn: ConnId, _peer: SocketAddr) {}
    fn on_data(&mut self, io: &mut impl Io, conn: ConnId, data: RecvBuf<'_>) {
        io.send(conn, data.into_bytes());
    }
    fn on_closed(&mut self, _io: &mut impl Io, _conn: ConnId, _error: Option<std::io::Error>) {}
}

struct Args {
    addr: SocketAddr,
    io: IoChoice,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { addr: "127.0.0.1:9000".parse().unwrap(), io: IoChoice::Auto, threads: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = value("--addr")?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--io" => a.io = value("--io")?.parse().map_err(|e| format!("--io: {e}"))?,
            "--threads" => {
                a.threads = value("--threads")?.parse().map_err(|e| format!("--threads: {e}"))?;
                if a.threads == 0 {
                    return Err("--threads must be at least 1".into());
                }
            }
            "-h" | "--help" => {
                return Err("usage: tcp_echo [--addr IP:PORT] [--io auto|uring|epoll] [--threads N]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let detected = match detect(args.io) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("io backend: {} ({})", detected.backend, detected.reason);
    let listeners = match bind_reuseport(args.addr, args.threads, 1024) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("tcp echo on {} with {} thread(s)", listeners[0].local_addr().unwrap(), args.threads);
    let workers: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let backend = detected.backend;
            std::thread::Builder::new()
                .name(format!("echo-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let (mut ev, _waker) = EventLoop::new(backend, &LoopConfig::default())?;
                    ev.add_listener(l)?;
                    ev.run(&mut Echo)
                })
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        if let Err(e) = w.join().expect("worker panicked") {
            eprintln!("worker failed: {e}");
            std::process::exit(1);
        }
    }
}
