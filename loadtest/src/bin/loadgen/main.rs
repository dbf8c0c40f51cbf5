//! `loadgen`: a WebSocket load generator on mio (epoll), built not to be the bottleneck.
//!
//! Why epoll via mio and not io_uring: the generator spends its time in the kernel's
//! loopback TCP path, which is the same either way; readiness + non-blocking
//! read/write with one syscall per batch is simple, well understood, and keeps the
//! generator independent of the io_uring code it is meant to judge.
//!
//! Each worker thread owns a slice of the connections and one `mio::Poll`. Frames are
//! pre-built and pre-masked; every echoed byte is checked against what was sent; latency
//! goes into an HDR histogram (nanoseconds). With `--deflate` the frames are compressed
//! once up front and what the server sends is inflated per connection before the check.
//! With `--tls` every connection is wss: a rustls client session (aws-lc-rs) between the
//! socket and the WebSocket bytes.
//! The result is one JSON object on stdout; a progress line is printed on stderr each
//! second.

mod conn;
mod worker;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use ringwire_loadtest::procfs;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use worker::{Shared, ThreadStats, WorkerResult};

/// What the generator does once connections are open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Each connection sends one message and waits for its echo.
    Closed,
    /// Each connection keeps `--depth` messages in flight.
    Pipelined,
    /// A fixed total rate (`--rate`), latency from the intended send time.
    OpenLoop,
    /// `--conns` subscribers plus one publisher; counts deliveries.
    Broadcast,
    /// Open `--conns` connections, hold them, report server RSS per connection.
    Idle,
    /// `--conns` connections in flight, each one cycle: TCP connect, TLS handshake
    /// (`--tls`), upgrade, one echo, close handshake, the server's end of stream; then a new
    /// connection takes its place. Messages are finished cycles; latency is from the
    /// connect to the echo.
    Handshake,
}

/// What the messages contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Payload {
    /// Pseudo-random bytes (printable ASCII for text).
    Pattern,
    /// JSON-like text records.
    Json,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "WebSocket load generator (mio/epoll); JSON result on stdout, progress on stderr")]
pub(crate) struct Args {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Request path for the upgrade.
    #[arg(long, default_value = "/")]
    path: String,
    /// Load mode.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    mode: Mode,
    /// Connections (subscribers in broadcast mode).
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Send binary frames instead of text.
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection (pipelined mode; closed is 1).
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Target messages per second across all connections (open-loop mode).
    #[arg(long)]
    rate: Option<u64>,
    /// Broadcast: messages the publisher may have ahead of the subscribers, on average:
    /// message k goes once (k - window + 1) x subscribers deliveries have been counted.
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Idle: seconds to hold the connections after they are all open; the server's RSS is
    /// read at the end of the hold (at least 0.5 s).
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// Idle: every connection echoes N messages (default 1, all sent at once) before the
    /// hold instead of one after it, so the server's memory is read with whatever state
    /// messages leave behind (compression contexts: 64 x 1 KiB fills a 32 KiB window).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    echo_first: Option<usize>,
    /// Seconds allowed for opening all connections.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Connection attempts in progress at once, across all threads.
    #[arg(long, default_value_t = 256)]
    connect_window: usize,
    /// Local source addresses, comma-separated (bind before connect). Default: one
    /// address per 20,000 connections from 127.0.0.1 up.
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Server PID: report its CPU time per message and its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// What the messages contain: `pattern` (pseudo-random, incompressible) or `json`
    /// (JSON-like text records, compressible like application data; text only).
    #[arg(long, value_enum, default_value_t = Payload::Pattern)]
    payload: Payload,
    /// Offer permessage-deflate ("permessage-deflate; client_no_context_takeover;
    /// client_max_window_bits"): every message is compressed once, up front, and sent
    /// with RSV1; the server's messages are inflated with the window and context takeover
    /// it chose, then checked. The server must accept, confirming client_no_context_takeover.
    #[arg(long)]
    deflate: bool,
    /// Raw TCP: no handshake and no framing; the same bytes must come back (the floor).
    #[arg(long)]
    raw: bool,
    /// wss: TLS (rustls, aws-lc-rs) on every connection, trusting only `--tls-ca`.
    #[arg(long, requires = "tls_ca")]
    tls: bool,
    /// PEM file of the certificate(s) to trust (the test CA).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<std::path::PathBuf>,
    /// Name sent as SNI and checked against the server's certificate.
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
    /// The one key exchange group offered.
    #[arg(long, value_enum, default_value_t)]
    tls_kx: ringwire_loadtest::tls::Kx,
    /// The one cipher offered.
    #[arg(long, value_enum, default_value_t)]
    tls_cipher: ringwire_loadtest::tls::Cipher,
    /// The protocol version offered.
    #[arg(long, value_enum, default_value_t)]
    tls_version: ringwire_loadtest::tls::Version,
    /// Resume TLS sessions (off: every handshake is a full one).
    #[arg(long)]
    tls_resume: bool,
    /// Delayed ACKs on the receiving side: after each read that returned bytes, the socket
    /// is put back into delayed-ACK mode (`TCP_QUICKACK` 0). A Linux receiver that never
    /// sends leaves that mode and ACKs every read at once; on loopback that ACK (and the
    /// server socket's processing of it) runs on the generator's core and was 60% of its
    /// CPU in a 1,000-subscriber broadcast. With it, the kernel ACKs every ~536 bytes or on
    /// its delayed-ACK timer, as it does for a client that also sends.
    #[arg(long)]
    delayed_ack: bool,
    /// Do not print the per-second progress line.
    #[arg(long)]
    quiet: bool,
}

pub(crate) const PHASE_CONNECT: u8 = 0;
pub(crate) const PHASE_RUN: u8 = 1;
pub(crate) const PHASE_STOP: u8 = 2;

#[derive(Serialize, Default)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    mean_us: f64,
    samples: u64,
}

/// Data-frame payload bytes over the whole run (warm-up included): as on the wire
/// (compressed or not, frame headers excluded) and as the messages' own payloads.
#[derive(Serialize)]
struct Bytes {
    sent_wire: u64,
    sent_payload: u64,
    /// sent_payload / sent_wire (1.0 without compression).
    sent_ratio: Option<f64>,
    recv_wire: u64,
    recv_payload: u64,
    /// recv_payload / recv_wire: how much the server's compression saved.
    recv_ratio: Option<f64>,
    /// Messages from the server that arrived compressed (RSV1) and uncompressed.
    recv_compressed_msgs: u64,
    recv_plain_msgs: u64,
}

#[derive(Serialize)]
struct Output {
    mode: Mode,
    addr: String,
    raw_tcp: bool,
    conns: usize,
    conns_open: u64,
    threads: usize,
    payload_bytes: usize,
    binary: bool,
    depth: usize,
    target_rate: Option<u64>,
    duration_s: f64,
    messages: u64,
    msgs_per_s: f64,
    sent_per_s: f64,
    deliveries_per_s: Option<f64>,
    latency: Latency,
    errors: u64,
    error_samples: Vec<String>,
    server_pid: Option<u32>,
    server_cpu_s: Option<f64>,
    server_cpu_us_per_msg: Option<f64>,
    server_cpu_util: Option<f64>,
    loadgen_cpu_us_per_msg: Option<f64>,
    loadgen_cpu_util: Option<f64>,
    /// Socket reads returning bytes per second, and messages (broadcast: deliveries) per read:
    /// each read of a loopback socket can cost the generator a TCP ACK.
    reads_per_s: f64,
    msgs_per_read: Option<f64>,
    /// Wakeups (poll returns with events) per second.
    polls_per_s: f64,
    payload: Payload,
    deflate: bool,
    /// What the server agreed to (`--deflate`; the first connection's answer).
    deflate_agreed: Option<ringwire_loadtest::deflate::Agreement>,
    bytes: Bytes,
    server_rss_before_kb: Option<u64>,
    server_rss_after_kb: Option<u64>,
    server_hwm_kb: Option<u64>,
    rss_bytes_per_conn: Option<f64>,
    idle_verified: Option<u64>,
    /// `--tls`: what was offered and what the sessions negotiated.
    tls: Option<TlsOut>,
}

#[derive(Serialize)]
struct TlsOut {
    offered_kx: ringwire_loadtest::tls::Kx,
    offered_cipher: ringwire_loadtest::tls::Cipher,
    offered_version: ringwire_loadtest::tls::Version,
    resumption: bool,
    server_name: String,
    /// The first session's parameters and the count of each kind of handshake.
    negotiated: worker::TlsSeen,
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(out) => {
            use std::io::Write as _;
            let json = serde_json::to_string_pretty(&out).expect("serialize result");
            if writeln!(std::io::stdout().lock(), "{json}").is_err() {
                std::process::exit(3);
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}

/// `a / b`, `None` when nothing was counted.
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A finite number of seconds, > 0 (or >= 0 when `zero_ok`).
fn valid_secs(v: f64, zero_ok: bool) -> bool {
    v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0))
}

fn validate(args: &mut Args) -> Result<(), String> {
    if args.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    if !valid_secs(args.duration, false) || !valid_secs(args.warmup, true) {
        return Err("--duration must be > 0 and --warmup >= 0".into());
    }
    if args.size == 0 && args.raw {
        return Err("--raw needs --size > 0".into());
    }
    if args.echo_first.is_some() && args.mode != Mode::Idle {
        return Err("--echo-first only applies to --mode idle".into());
    }
    if args.echo_first == Some(0) {
        return Err("--echo-first needs at least 1 message".into());
    }
    if args.tls && args.raw {
        return Err("--tls needs WebSocket (not --raw)".into());
    }
    if args.deflate && args.raw {
        return Err("--deflate needs WebSocket (not --raw)".into());
    }
    if args.payload == Payload::Json && args.binary {
        return Err("--payload json is text (drop --binary)".into());
    }
    if args.size > ringwire_loadtest::peer::MAX_MESSAGE {
        return Err("--size above 64 MiB (the limit every server gets)".into());
    }
    match args.mode {
        Mode::Closed => args.depth = 1,
        Mode::Pipelined if args.depth == 0 => return Err("--depth must be at least 1".into()),
        Mode::OpenLoop if args.rate.unwrap_or(0) == 0 => {
            return Err("open-loop mode needs --rate <msgs/s> > 0".into());
        }
        Mode::Broadcast => {
            if args.raw {
                return Err("--raw only works with closed, pipelined and open-loop modes".into());
            }
            if args.size < conn::BCAST_HEADER {
                return Err(format!(
                    "broadcast needs --size >= {} (sequence number and timestamp)",
                    conn::BCAST_HEADER
                ));
            }
            if args.window == 0 {
                return Err("--window must be at least 1".into());
            }
        }
        Mode::Idle if args.raw => return Err("--raw does not apply to idle mode".into()),
        Mode::Handshake if args.raw => return Err("--raw does not apply to handshake mode".into()),
        Mode::Handshake => args.depth = 1,
        // Idle: what each connection sends at once when it echoes (see --echo-first).
        Mode::Idle => args.depth = args.echo_first.unwrap_or(1),
        _ => {}
    }
    if args.connect_window == 0 {
        return Err("--connect-window must be at least 1".into());
    }
    if args.sources.is_empty() && args.conns > 20_000 {
        let n = args.conns.div_ceil(20_000);
        if n > 250 {
            return Err("too many connections for automatic source addresses".into());
        }
        args.sources = (1..=n as u8).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect();
    }
    let need = (args.conns + 64) as u64;
    let have = procfs::open_files_limit().map_err(|e| e.to_string())?;
    if have < need {
        return Err(format!(
            "open-file limit is {have}, {need} needed for {} connections: raise it (ulimit -n {need})",
            args.conns
        ));
    }
    Ok(())
}

fn run(mut args: Args) -> Result<Output, String> {
    validate(&mut args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .clamp(1, args.conns.max(1));
    let total_conns = args.conns + usize::from(args.mode == Mode::Broadcast);
    let kind = match args.payload {
        Payload::Pattern => ringwire_loadtest::wire::PayloadKind::Pattern,
        Payload::Json => ringwire_loadtest::wire::PayloadKind::Json,
    };
    let tls = match &args.tls_ca {
        Some(ca) if args.tls => {
            let opts = ringwire_loadtest::tls::ClientOptions {
                kx: args.tls_kx,
                cipher: args.tls_cipher,
                version: args.tls_version,
                resume: args.tls_resume,
            };
            let config = ringwire_loadtest::tls::client_config(ca, &opts)?;
            let name = rustls::pki_types::ServerName::try_from(args.tls_server_name.clone())
                .map_err(|e| format!("--tls-server-name {:?}: {e}", args.tls_server_name))?;
            Some((config, name))
        }
        _ => None,
    };
    let frames = Arc::new(ringwire_loadtest::wire::prebuilt_frames(64, args.size, !args.binary, kind, args.deflate));
    let stats: Arc<Vec<ThreadStats>> = Arc::new((0..threads).map(|_| ThreadStats::default()).collect());
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_CONNECT),
        measuring: AtomicBool::new(false),
        ready: AtomicUsize::new(0),
        connect_slots: AtomicUsize::new(args.connect_window),
        deliveries: AtomicU64::new(0),
        epoch: Instant::now(),
        subscribers: args.conns as u64,
        stats: stats.clone(),
        frames,
        tls,
    });
    let clk_tck = procfs::clock_ticks_per_sec();
    let rss_before = match args.server_pid {
        Some(pid) => Some(procfs::memory(pid).map_err(|e| format!("server pid {pid}: {e}"))?.rss_kb),
        None => None,
    };

    // Hand out connections round robin; in broadcast mode connection 0 (thread 0) publishes.
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..total_conns).step_by(threads).collect();
        let (w, waker) = worker::Worker::new(t, ids, args.clone(), shared.clone()).map_err(|e| e.to_string())?;
        wakers.push(waker);
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || w.run())
                .map_err(|e| e.to_string())?,
        );
    }
    let wake_all = || {
        for w in &wakers {
            let _ = w.wake();
        }
    };
    let sum = |f: fn(&ThreadStats) -> &AtomicU64| stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum::<u64>();

    // Connect phase.
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.connect_timeout);
    let mut last_print = Instant::now();
    while shared.ready.load(Ordering::Acquire) < threads {
        if Instant::now() > deadline {
            shared.phase.store(PHASE_STOP, Ordering::Release);
            wake_all();
            let results: Vec<WorkerResult> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
            let samples: Vec<String> = results.iter().flat_map(|r| r.error_samples.clone()).take(5).collect();
            return Err(format!(
                "only {} of {} connections open after {}s; errors: {samples:?}",
                sum(|s| &s.open),
                total_conns,
                args.connect_timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
        if !args.quiet && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!("[loadgen] connecting: {}/{} open, {} errors", sum(|s| &s.open), total_conns, sum(|s| &s.errors));
        }
    }
    let opened = sum(|s| &s.open);
    if !args.quiet {
        eprintln!("[loadgen] {opened}/{total_conns} open in {:.2}s", start.elapsed().as_secs_f64());
    }

    let mut idle_rss_after = None;
    if args.mode == Mode::Idle {
        // Hold the connections idle, read the server's memory at the end of the hold (idle
        // memory, not what a server still holds right after the burst of handshakes), then
        // check every connection still echoes. With --echo-first every connection echoes
        // once before the hold instead, so the server holds whatever state a message leaves
        // (compression contexts), and the memory read includes it.
        // Every echo must arrive (20 s, plus 0.5 ms per echo for --echo-first N); a run
        // that ran out of time fails, so no memory figure is read with echoes in flight.
        let expected = opened * args.depth as u64;
        let verify = || -> Result<(), String> {
            shared.phase.store(PHASE_RUN, Ordering::Release);
            wake_all();
            let verify_deadline = Instant::now() + Duration::from_secs(20) + Duration::from_micros(500 * expected);
            while sum(|s| &s.msgs) + sum(|s| &s.errors) < expected && Instant::now() < verify_deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let (got, errors) = (sum(|s| &s.msgs), sum(|s| &s.errors));
            if got + errors < expected {
                return Err(format!("idle: only {got} of {expected} echoes arrived before the deadline"));
            }
            Ok(())
        };
        if args.echo_first.is_some() {
            verify()?;
        }
        sleep_with_progress(args.hold.max(0.5), &args, &stats, "holding");
        if let Some(pid) = args.server_pid {
            idle_rss_after = Some(procfs::memory(pid).map_err(|e| format!("server pid {pid}: {e}"))?.rss_kb);
        }
        if args.echo_first.is_none() {
            verify()?;
        }
    }

    let mut window = Window::default();
    if args.mode != Mode::Idle {
        shared.phase.store(PHASE_RUN, Ordering::Release);
        wake_all();
        sleep_with_progress(args.warmup, &args, &stats, "warmup");
        shared.measuring.store(true, Ordering::Release);
        window.begin(&stats, &shared, args.server_pid);
        sleep_with_progress(args.duration, &args, &stats, "run");
        window.end(&stats, &shared, args.server_pid);
        shared.measuring.store(false, Ordering::Release);
    }
    shared.phase.store(PHASE_STOP, Ordering::Release);
    wake_all();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds");
    let mut error_samples = Vec::new();
    let mut bytes = conn::ByteCounts::default();
    let mut agreement = None;
    let mut tls_seen = worker::TlsSeen::default();
    for h in handles {
        let r = h.join().map_err(|_| "worker thread panicked".to_string())?;
        bytes.add(&r.bytes);
        tls_seen.add(&r.tls);
        agreement = agreement.or(r.agreement);
        hist.add(&r.hist).map_err(|e| format!("merging histograms: {e}"))?;
        for s in r.error_samples {
            if error_samples.len() < 10 {
                error_samples.push(s);
            }
        }
    }
    let errors = sum(|s| &s.errors);
    let us = |ns: u64| ns as f64 / 1000.0;
    let latency = if hist.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50_us: us(hist.value_at_quantile(0.5)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            max_us: us(hist.max()),
            mean_us: hist.mean() / 1000.0,
            samples: hist.len(),
        }
    };
    let mem_after = args.server_pid.and_then(|pid| procfs::memory(pid).ok());
    let (messages, secs) = (window.msgs, window.secs.max(1e-9));
    let cpu_s = window.cpu_ticks.map(|t| t as f64 / clk_tck as f64);
    let counted = if args.mode == Mode::Broadcast { window.deliveries } else { messages };
    let out = Output {
        mode: args.mode,
        addr: args.addr.to_string(),
        raw_tcp: args.raw,
        conns: args.conns,
        conns_open: opened,
        threads,
        payload_bytes: args.size,
        binary: args.binary,
        depth: args.depth,
        target_rate: args.rate,
        duration_s: window.secs,
        messages,
        msgs_per_s: messages as f64 / secs,
        sent_per_s: window.sent as f64 / secs,
        deliveries_per_s: (args.mode == Mode::Broadcast).then(|| window.deliveries as f64 / secs),
        latency,
        errors,
        error_samples,
        server_pid: args.server_pid,
        server_cpu_s: cpu_s,
        server_cpu_us_per_msg: cpu_s.filter(|_| counted > 0).map(|c| c * 1e6 / counted as f64),
        server_cpu_util: cpu_s.map(|c| c / secs),
        loadgen_cpu_us_per_msg: window
            .own_ticks
            .filter(|_| counted > 0)
            .map(|t| t as f64 / clk_tck as f64 * 1e6 / counted as f64),
        loadgen_cpu_util: window.own_ticks.map(|t| t as f64 / clk_tck as f64 / secs),
        reads_per_s: window.reads as f64 / secs,
        msgs_per_read: (window.reads > 0).then(|| counted as f64 / window.reads as f64),
        polls_per_s: window.polls as f64 / secs,
        payload: args.payload,
        deflate: args.deflate,
        deflate_agreed: agreement,
        bytes: Bytes {
            sent_wire: bytes.sent_wire,
            sent_payload: bytes.sent_payload,
            sent_ratio: ratio(bytes.sent_payload, bytes.sent_wire),
            recv_wire: bytes.recv_wire,
            recv_payload: bytes.recv_payload,
            recv_ratio: ratio(bytes.recv_payload, bytes.recv_wire),
            recv_compressed_msgs: bytes.recv_compressed,
            recv_plain_msgs: bytes.recv_plain,
        },
        server_rss_before_kb: rss_before,
        server_rss_after_kb: idle_rss_after.or(mem_after.map(|m| m.rss_kb)),
        server_hwm_kb: mem_after.map(|m| m.hwm_kb),
        rss_bytes_per_conn: match (rss_before, idle_rss_after) {
            (Some(b), Some(a)) if opened > 0 => Some((a as f64 - b as f64) * 1024.0 / opened as f64),
            _ => None,
        },
        idle_verified: (args.mode == Mode::Idle).then(|| sum(|s| &s.msgs)),
        tls: args.tls.then(|| TlsOut {
            offered_kx: args.tls_kx,
            offered_cipher: args.tls_cipher,
            offered_version: args.tls_version,
            resumption: args.tls_resume,
            server_name: args.tls_server_name.clone(),
            negotiated: tls_seen,
        }),
    };
    Ok(out)
}

/// Counters snapshotted at the start and end of the measured window.
#[derive(Default)]
struct Window {
    t0: Option<Instant>,
    msgs0: u64,
    sent0: u64,
    del0: u64,
    cpu0: Option<u64>,
    secs: f64,
    msgs: u64,
    sent: u64,
    deliveries: u64,
    cpu_ticks: Option<u64>,
    own0: Option<u64>,
    own_ticks: Option<u64>,
    io0: (u64, u64),
    /// Socket reads that returned bytes, and poll returns, over the window.
    reads: u64,
    polls: u64,
}

impl Window {
    fn counters(stats: &[ThreadStats], shared: &Shared) -> (u64, u64, u64) {
        let m = stats.iter().map(|s| s.msgs.load(Ordering::Relaxed)).sum();
        let s = stats.iter().map(|s| s.sent.load(Ordering::Relaxed)).sum();
        (m, s, shared.deliveries.load(Ordering::Relaxed))
    }

    fn io(stats: &[ThreadStats]) -> (u64, u64) {
        let r = stats.iter().map(|s| s.reads.load(Ordering::Relaxed)).sum();
        let p = stats.iter().map(|s| s.polls.load(Ordering::Relaxed)).sum();
        (r, p)
    }

    fn begin(&mut self, stats: &[ThreadStats], shared: &Shared, pid: Option<u32>) {
        self.cpu0 = pid.and_then(|p| procfs::cpu_ticks(p).ok()).map(|c| c.total());
        self.own0 = procfs::cpu_ticks(std::process::id()).ok().map(|c| c.total());
        (self.msgs0, self.sent0, self.del0) = Self::counters(stats, shared);
        self.io0 = Self::io(stats);
        self.t0 = Some(Instant::now());
    }

    fn end(&mut self, stats: &[ThreadStats], shared: &Shared, pid: Option<u32>) {
        let (m, s, d) = Self::counters(stats, shared);
        self.secs = self.t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let cpu1 = pid.and_then(|p| procfs::cpu_ticks(p).ok()).map(|c| c.total());
        let own1 = procfs::cpu_ticks(std::process::id()).ok().map(|c| c.total());
        self.own_ticks = match (self.own0, own1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        (self.msgs, self.sent, self.deliveries) = (m - self.msgs0, s - self.sent0, d - self.del0);
        let (r, p) = Self::io(stats);
        (self.reads, self.polls) = (r - self.io0.0, p - self.io0.1);
        self.cpu_ticks = match (self.cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
    }
}

fn sleep_with_progress(secs: f64, args: &Args, stats: &[ThreadStats], label: &str) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let total = |f: fn(&ThreadStats) -> &AtomicU64| stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum::<u64>();
    let mut last = (Instant::now(), total(|s| &s.msgs), total(|s| &s.deliveries));
    let started = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_secs(1)));
        if args.quiet {
            continue;
        }
        let (t, m, d) = (Instant::now(), total(|s| &s.msgs), total(|s| &s.deliveries));
        let dt = (t - last.0).as_secs_f64().max(1e-9);
        if dt >= 0.5 {
            let extra = if args.mode == Mode::Broadcast {
                format!(" deliveries/s={:.0}", (d - last.2) as f64 / dt)
            } else {
                String::new()
            };
            eprintln!(
                "[loadgen] {label} {:>5.1}s open={} msgs/s={:.0}{extra} errors={}",
                started.elapsed().as_secs_f64(),
                total(|s| &s.open),
                (m - last.1) as f64 / dt,
                total(|s| &s.errors)
            );
            last = (t, m, d);
        }
    }
}
