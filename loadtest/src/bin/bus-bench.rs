//! `bus-bench`: topics across two ringwire processes over a real broker (Redis pub/sub or
//! NATS), against the same fan-out inside one process.
//!
//! Each run starts its own broker (`redis-server` or `nats-server`, on a free loopback port,
//! no persistence), then two `ringwire broadcast --threads 1 --no-echo --bus URL`
//! processes: A (the publisher's) and B (the subscribers'). The generator (this program,
//! one thread, mio/epoll) opens `S` subscriber connections on B and one publisher connection
//! on A, all on the path `/bench` (the path is the topic), probes until a message published
//! on A reaches every subscriber on B (the bus subscription is live), then publishes 64-byte
//! text messages for a warm-up and a measured window. The `local` bus is the baseline: one
//! process (B) and no broker, the publisher on B beside its subscribers.
//!
//! Each message is `{seq:016x}{sent:016x}` and 32 bytes of padding, `sent` being
//! CLOCK_MONOTONIC nanoseconds (one clock for every process of the host), so the latency
//! is publish (intended send time, open loop; actual, closed loop) to delivery at B's
//! subscriber. Loads: closed loop (a message goes when the slowest subscriber is at most
//! `--window` messages behind: the capacity) and open loop at fixed rates (`--rates`).
//! Measured: deliveries per second at B's subscribers, latency percentiles (HDR histogram),
//! messages lost (gaps in a subscriber's sequence, or never delivered), and the CPU time
//! per delivery of A, B (B's bus thread apart), the broker and the generator (utime + stime
//! from `/proc`).
//!
//! Every child is killed when the run ends, when this program panics or is interrupted
//! (SIGINT/SIGTERM end the run; the children also get SIGKILL if this process dies
//! outright: `PR_SET_PDEATHSIG`). Loopback only. See `loadtest/README.md` and
//! `loadtest/bus.sh`.

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ringwire_loadtest::procfs::{self, CpuTicks};
use ringwire_loadtest::wire;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: every wait and loop ends the run, the children are killed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The topic (request path) of every connection.
const TOPIC: &str = "/bench";
/// Message size: the hex sequence number and send time, then padding.
const MSG_LEN: usize = 64;
/// Closed loop: a message not delivered to every subscriber this long after it was sent
/// is counted lost and no longer holds the publisher back.
const LOSS_TIMEOUT: Duration = Duration::from_secs(1);
/// After the measured window: how long to wait for messages still in flight.
const DRAIN: Duration = Duration::from_millis(500);
/// Longest wait for a process to listen, for the subscribers to open, for the probe.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Which bus the two processes share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Bus {
    /// No bus: publisher and subscribers on one process (the baseline).
    Local,
    /// Redis pub/sub (`redis-server`).
    Redis,
    /// NATS core (`nats-server`).
    Nats,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Topics across two ringwire processes over Redis / NATS: deliveries/s and latency")]
struct Args {
    /// The ringwire binary.
    #[arg(long, default_value = "target/release/ringwire")]
    ringwire: PathBuf,
    /// Buses to measure (`local`: one process, no broker: the baseline).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "local,redis,nats")]
    buses: Vec<Bus>,
    /// Subscriber counts (connections on process B).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    subs: Vec<usize>,
    /// Open-loop publish rates (messages per second; 0 in the list: none).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    rates: Vec<u64>,
    /// Closed-loop windows: messages the publisher may be ahead of the slowest subscriber
    /// (0 in the list: none). A small window measures the path's latency as much as its
    /// capacity (a message goes when one W back arrived); a large one, the capacity.
    #[arg(long, value_delimiter = ',', default_value = "16,256")]
    windows: Vec<u64>,
    /// Open-loop runs offering more deliveries per second than this (rate x subscribers)
    /// are skipped (they would only fill buffers until subscribers are dropped).
    #[arg(long, default_value_t = 2_000_000)]
    max_offered: u64,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repetitions (each: every configuration once, buses alternating).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// CPU of process A (the publisher's).
    #[arg(long, default_value_t = 0)]
    cpu_a: usize,
    /// CPU of process B (the subscribers'; the local baseline's only process).
    #[arg(long, default_value_t = 1)]
    cpu_b: usize,
    /// CPU of the broker.
    #[arg(long, default_value_t = 0)]
    cpu_broker: usize,
    /// CPU of this generator.
    #[arg(long, default_value_t = 0)]
    cpu_gen: usize,
    /// JSON output (default: loadtest/results/bus-<UTC date>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// An extra argument for both ringwire processes (repeat it: `--ringwire-arg=--io
    /// --ringwire-arg=epoll`).
    #[arg(long = "ringwire-arg", allow_hyphen_values = true)]
    ringwire_args: Vec<String>,
    /// Where the children's output goes (`bus-<name>.log`, appended).
    #[arg(long, default_value = "loadtest/results/logs")]
    logs: PathBuf,
}

/// A publishing discipline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
enum Load {
    /// At most this many messages ahead of the slowest subscriber.
    Closed(u64),
    /// This many messages per second, whatever happens.
    Open(u64),
}

impl Load {
    fn label(&self) -> String {
        match self {
            Load::Closed(w) => format!("closed w={w}"),
            Load::Open(r) => format!("open {}/s", thousands(*r)),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    bus: Bus,
    subs: usize,
    load: Load,
    rep: usize,
    seconds: f64,
    published: u64,
    deliveries: u64,
    deliveries_per_sec: f64,
    published_per_sec: f64,
    /// Deliveries missing (sequence gaps, or never arrived) over the whole run.
    lost: u64,
    latency_us: Latency,
    /// CPU microseconds per delivery during the measured window, per process.
    cpu_us_per_delivery: BTreeMap<String, f64>,
    /// CPU utilisation (CPU seconds / wall seconds) during the window, per process and
    /// per thread of B.
    cpu_util: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn main() {
    let args = Args::parse();
    install_signal_handlers();
    // S subscribers + the publisher + a few: `loadtest/bus.sh` raises `ulimit -n` first.
    let most = args.subs.iter().copied().max().unwrap_or(0) as u64;
    if let Ok(limit) = procfs::open_files_limit()
        && limit < most + 64
    {
        eprintln!(
            "bus-bench: {most} subscribers need more than `ulimit -n` {limit} descriptors: raise it (bus.sh does)"
        );
        std::process::exit(2);
    }
    // The generator's own core (its children set theirs before exec).
    if let Err(e) = pin(0, args.cpu_gen) {
        eprintln!("bus-bench: cannot pin to CPU {}: {e}", args.cpu_gen);
    }
    if !args.ringwire.is_file() {
        eprintln!("bus-bench: {} not found (cargo build --release -p ringwire)", args.ringwire.display());
        std::process::exit(2);
    }
    let mut buses = args.buses.clone();
    for (bus, program) in [(Bus::Redis, "redis-server"), (Bus::Nats, "nats-server")] {
        if buses.contains(&bus) && find_program(program).is_none() {
            eprintln!("bus-bench: {program} not found: {bus:?} skipped");
            buses.retain(|b| *b != bus);
        }
    }
    if let Err(e) = std::fs::create_dir_all(&args.logs) {
        eprintln!("bus-bench: cannot create {}: {e}", args.logs.display());
        std::process::exit(2);
    }
    let mut loads: Vec<Load> = Vec::new();
    loads.extend(args.windows.iter().filter(|&&w| w > 0).map(|&w| Load::Closed(w)));
    loads.extend(args.rates.iter().filter(|&&r| r > 0).map(|&r| Load::Open(r)));

    let mut results = Vec::new();
    let mut skipped = Vec::new();
    'reps: for rep in 0..args.reps {
        for &subs in &args.subs {
            for &load in &loads {
                if let Load::Open(rate) = load
                    && rate * subs as u64 > args.max_offered
                {
                    if rep == 0 {
                        skipped.push(format!("{} subs, {}: offers more than --max-offered", subs, load.label()));
                    }
                    continue;
                }
                for &bus in &buses {
                    eprintln!("bus-bench: rep {} {:?} {} subs {}", rep + 1, bus, subs, load.label());
                    match run(&args, bus, subs, load, rep) {
                        Ok(r) => {
                            eprintln!(
                                "  {:.0} deliveries/s, p50 {:.0} us p99 {:.0} us, lost {}",
                                r.deliveries_per_sec, r.latency_us.p50, r.latency_us.p99, r.lost
                            );
                            results.push(r);
                        }
                        Err(e) => {
                            eprintln!("  FAILED: {e}");
                            skipped.push(format!("rep {} {bus:?} {subs} subs {}: {e}", rep + 1, load.label()));
                        }
                    }
                    if INTERRUPTED.load(Ordering::Relaxed) {
                        break 'reps;
                    }
                }
            }
        }
    }
    let table = markdown(&args, &results, &skipped);
    println!("{table}");
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("loadtest/results/bus-{}.json", utc_date())));
    // Online CPUs (not available_parallelism: this process is pinned to one by now).
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let json = serde_json::json!({
        "what": "topics across two ringwire processes over a broker (bus-bench)",
        "date": utc_date(),
        "machine": { "cpus": cpus,
                     "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim() },
        "brokers": { "redis": program_version("redis-server", "--version"), "nats": program_version("nats-server", "--version") },
        "ringwire_args": args.ringwire_args,
        "pinning": { "a": args.cpu_a, "b": args.cpu_b, "broker": args.cpu_broker, "generator": args.cpu_gen },
        "duration_s": args.duration, "warmup_s": args.warmup, "reps": args.reps,
        "message_bytes": MSG_LEN,
        "skipped": skipped,
        "runs": results,
        "table_md": table,
    });
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&out, serde_json::to_string_pretty(&json).expect("serialisable")) {
        Ok(()) => eprintln!("bus-bench: wrote {}", out.display()),
        Err(e) => eprintln!("bus-bench: cannot write {}: {e}", out.display()),
    }
    if INTERRUPTED.load(Ordering::Relaxed) {
        std::process::exit(130);
    }
}

/// One run: fresh broker and processes, probe, warm-up, measured window, drain.
fn run(args: &Args, bus: Bus, subs: usize, load: Load, rep: usize) -> Result<RunResult, String> {
    // Each child's output: loadtest/results/logs/bus-<name>.log (gitignored), appended.
    let log = |name: &str| args.logs.join(format!("bus-{name}.log"));
    // Dropped (killed) in reverse order of declaration when this returns or unwinds.
    let broker = match bus {
        Bus::Local => None,
        Bus::Redis => {
            let port = free_port();
            let program = find_program("redis-server").ok_or("redis-server not found")?;
            let p = port.to_string();
            let argv = ["--port", &p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
            let mut kid = Kid::spawn("redis", &program, &argv, args.cpu_broker, &log("redis"))?;
            wait_listening(port, &mut kid)?;
            Some((kid, format!("redis://127.0.0.1:{port}")))
        }
        Bus::Nats => {
            let port = free_port();
            let program = find_program("nats-server").ok_or("nats-server not found")?;
            let p = port.to_string();
            let mut kid = Kid::spawn("nats", &program, &["-a", "127.0.0.1", "-p", &p], args.cpu_broker, &log("nats"))?;
            wait_listening(port, &mut kid)?;
            Some((kid, format!("nats://127.0.0.1:{port}")))
        }
    };
    let ringwire = |name: &str, cpu: usize| -> Result<(Kid, SocketAddr), String> {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut argv = vec!["broadcast", "--addr", &addr, "--threads", "1", "--no-echo"];
        if let Some((_, url)) = &broker {
            argv.extend(["--bus", url.as_str()]);
        }
        argv.extend(args.ringwire_args.iter().map(String::as_str));
        let mut kid = Kid::spawn(name, &args.ringwire, &argv, cpu, &log(&format!("{bus:?}-{name}").to_lowercase()))?;
        wait_listening(port, &mut kid)?;
        Ok((kid, SocketAddr::from(([127, 0, 0, 1], port))))
    };
    let (b, b_addr) = ringwire("B", args.cpu_b)?;
    let a = if bus == Bus::Local { None } else { Some(ringwire("A", args.cpu_a)?) };
    let pub_addr = a.as_ref().map_or(b_addr, |(_, addr)| *addr);
    eprintln!(
        "  pids: B {}{}{}",
        b.pid(),
        a.as_ref().map(|(k, _)| format!(", A {}", k.pid())).unwrap_or_default(),
        broker.as_ref().map(|(k, _)| format!(", broker {}", k.pid())).unwrap_or_default()
    );

    let mut watched = vec![("B".to_owned(), b.pid())];
    if let Some((k, _)) = &a {
        watched.push(("A".to_owned(), k.pid()));
    }
    if let Some((k, _)) = &broker {
        watched.push(("broker".to_owned(), k.pid()));
    }
    watched.push(("generator".to_owned(), std::process::id()));

    let mut g = Generator::connect(pub_addr, b_addr, subs, load)?;
    g.probe()?;
    let m = g.measure(args, &watched, b.pid())?;
    let cpu_us_per_delivery = m
        .cpu
        .iter()
        .filter(|(k, _)| !k.contains('/'))
        .map(|(k, secs)| (k.clone(), if m.deliveries > 0 { secs * 1e6 / m.deliveries as f64 } else { 0.0 }))
        .collect();
    let cpu_util = m.cpu.iter().map(|(k, secs)| (k.clone(), secs / m.seconds)).collect();
    let q = |p: f64| m.hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(RunResult {
        bus,
        subs,
        load,
        rep,
        seconds: m.seconds,
        published: m.published,
        deliveries: m.deliveries,
        deliveries_per_sec: m.deliveries as f64 / m.seconds,
        published_per_sec: m.published as f64 / m.seconds,
        lost: m.lost,
        latency_us: Latency { p50: q(0.5), p99: q(0.99), p999: q(0.999), max: m.hist.max() as f64 / 1000.0 },
        cpu_us_per_delivery,
        cpu_util,
    })
}

// ---------------------------------------------------------------------------------------
// Child processes

/// A child process, killed (SIGKILL) and reaped on drop; also killed by the kernel if this
/// process dies first.
struct Kid {
    name: String,
    child: Child,
}

impl Kid {
    /// Starts `program` pinned to `cpu`, its output appended to `log`.
    fn spawn(name: &str, program: &Path, argv: &[&str], cpu: usize, log: &Path) -> Result<Kid, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let out = file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(program);
        cmd.args(argv).stdin(Stdio::null()).stdout(out).stderr(file);
        // SAFETY: between fork and exec only async-signal-safe calls: prctl and
        // sched_setaffinity on the child itself, with valid arguments and no allocation.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                pin(0, cpu)
            });
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {} ({}): {e}", program.display(), name))?;
        Ok(Kid { name: name.to_owned(), child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            _ => None,
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins thread/process `pid` (0: the caller) to `cpu`. Async-signal-safe (used in
/// `pre_exec`).
fn pin(pid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in bounds for cpu <
    // CPU_SETSIZE (checked); sched_setaffinity reads the set we own.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits until `kid` accepts on `port` (it exiting first is an error).
fn wait_listening(port: u16, kid: &mut Kid) -> Result<(), String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        check_interrupted()?;
        if let Some(why) = kid.exited() {
            return Err(why);
        }
        if Instant::now() > deadline {
            return Err(format!("{} does not listen on port {port}", kid.name));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// `name` in PATH or in the sbin directories (Debian's nats-server is in /usr/sbin).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn program_version(name: &str, flag: &str) -> String {
    find_program(name)
        .and_then(|p| Command::new(p).arg(flag).output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::Relaxed) { Err("interrupted".into()) } else { Ok(()) }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the host.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------
// The generator

const PUB: Token = Token(usize::MAX - 1);
const TIMER: Token = Token(usize::MAX - 2);

/// A subscriber connection on B.
struct Sub {
    stream: TcpStream,
    /// Bytes of a frame not complete yet.
    carry: Vec<u8>,
    /// The sequence number expected next.
    next: u64,
    probed: bool,
}

/// What one subscriber's bytes held.
#[derive(Default)]
struct Seen {
    /// (seq, sent ns) of each message, in order.
    messages: Vec<(u64, u64)>,
    probes: usize,
    pings: Vec<Vec<u8>>,
}

struct Generator {
    poll: Poll,
    subs: Vec<Sub>,
    publisher: TcpStream,
    pub_out: Vec<u8>,
    load: Load,
    scratch: Vec<u8>,
    /// Next sequence number to publish.
    seq: u64,
    /// Closed loop: the oldest message not yet delivered to every subscriber, and per
    /// message in the window its deliveries and send time.
    low: u64,
    ring: Vec<(usize, u64)>,
    mask: wire::XorShift,
}

/// What the measured window saw.
struct Measured {
    seconds: f64,
    published: u64,
    deliveries: u64,
    lost: u64,
    hist: Histogram<u64>,
    /// CPU seconds in the window per process (and per thread of B: `B/<thread name>`).
    cpu: BTreeMap<String, f64>,
}

impl Generator {
    fn connect(pub_addr: SocketAddr, sub_addr: SocketAddr, n: usize, load: Load) -> Result<Generator, String> {
        let poll = Poll::new().map_err(|e| e.to_string())?;
        let mut subs = Vec::with_capacity(n);
        for i in 0..n {
            check_interrupted()?;
            let (stream, carry) = upgrade(sub_addr, i as u64)?;
            let mut stream = TcpStream::from_std(stream);
            poll.registry().register(&mut stream, Token(i), Interest::READABLE).map_err(|e| e.to_string())?;
            subs.push(Sub { stream, carry, next: 0, probed: false });
        }
        let (p, _) = upgrade(pub_addr, n as u64 + 1)?;
        let mut publisher = TcpStream::from_std(p);
        poll.registry()
            .register(&mut publisher, PUB, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.to_string())?;
        let window = match load {
            Load::Closed(w) => w as usize,
            Load::Open(_) => 0,
        };
        Ok(Generator {
            poll,
            subs,
            publisher,
            pub_out: Vec::new(),
            load,
            scratch: vec![0; 256 * 1024],
            seq: 0,
            low: 0,
            ring: vec![(0, 0); (window + 1).next_power_of_two().max(2)],
            mask: wire::XorShift::new(7),
        })
    }

    /// Publishes probes every 20 ms until every subscriber got one: the bus
    /// subscriptions are live (what is published before is not delivered: at most once).
    fn probe(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut events = Events::with_capacity(1024);
        let mut next_probe = Instant::now();
        while self.subs.iter().any(|s| !s.probed) {
            check_interrupted()?;
            if Instant::now() > deadline {
                let n = self.subs.iter().filter(|s| s.probed).count();
                return Err(format!("probe: {n} of {} subscribers got one in {SETUP_TIMEOUT:?}", self.subs.len()));
            }
            if Instant::now() >= next_probe {
                let mut p = b"probe".to_vec();
                p.resize(MSG_LEN, b'.');
                self.send(&p)?;
                next_probe += Duration::from_millis(20);
            }
            self.poll.poll(&mut events, Some(Duration::from_millis(5))).map_err(|e| e.to_string())?;
            for ev in events.iter() {
                let t = ev.token();
                if t == PUB {
                    self.pub_event()?;
                } else {
                    let seen = self.read_sub(t.0)?;
                    if seen.probes > 0 {
                        self.subs[t.0].probed = true;
                    }
                    if !seen.messages.is_empty() {
                        return Err("a message before any was published".into());
                    }
                }
            }
        }
        // Probes still in flight are told apart from messages by their first byte.
        Ok(())
    }

    /// Warm-up, measured window, drain. `watched`: (name, pid) whose CPU is read at the
    /// window's start and end; `b_pid`'s threads too.
    fn measure(&mut self, args: &Args, watched: &[(String, u32)], b_pid: u32) -> Result<Measured, String> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
        let mut events = Events::with_capacity(4096);
        let timer = self.start_timer()?;
        let start = Instant::now();
        let start_ns = mono_ns();
        let window_start = start + Duration::from_secs_f64(args.warmup);
        let window_end = window_start + Duration::from_secs_f64(args.duration);
        let mut cpu0 = None;
        let mut t0 = window_start;
        let (mut published, mut deliveries, mut lost) = (0u64, 0u64, 0u64);
        let interval_ns = match self.load {
            Load::Open(rate) => 1e9 / rate as f64,
            Load::Closed(_) => 0.0,
        };
        let mut frozen: Option<(Instant, BTreeMap<String, f64>)> = None;
        let ticks = procfs::clock_ticks_per_sec() as f64;
        loop {
            check_interrupted()?;
            let now = Instant::now();
            let measuring = now >= window_start && now < window_end;
            if cpu0.is_none() && now >= window_start {
                cpu0 = Some(cpu_snapshot(watched, b_pid));
                t0 = now;
            }
            if frozen.is_none() && now >= window_end {
                let cpu1 = cpu_snapshot(watched, b_pid);
                let cpu = cpu_delta(cpu0.as_ref().expect("window started"), &cpu1, ticks);
                frozen = Some((now, cpu));
            }
            if let Some((end, ..)) = &frozen
                && (now >= *end + DRAIN || self.subs.iter().all(|s| s.next >= self.seq))
            {
                break;
            }
            // Publish what is due (nothing after the window).
            if frozen.is_none() {
                let before = self.seq;
                match self.load {
                    Load::Open(_) => {
                        let elapsed = mono_ns() - start_ns;
                        let due = (elapsed as f64 / interval_ns) as u64 + 1;
                        while self.seq < due {
                            let intended = start_ns + (self.seq as f64 * interval_ns) as u64;
                            self.publish(intended)?;
                        }
                    }
                    Load::Closed(w) => {
                        self.advance_low(mono_ns());
                        while self.seq < self.low + w {
                            let s = mono_ns();
                            let slot = self.seq as usize & (self.ring.len() - 1);
                            self.ring[slot] = (0, s);
                            self.publish(s)?;
                        }
                    }
                }
                if measuring {
                    published += self.seq - before;
                }
            }
            self.poll.poll(&mut events, Some(Duration::from_millis(2))).map_err(|e| e.to_string())?;
            let now_ns = mono_ns();
            let now = Instant::now();
            let in_window = now >= window_start && frozen.is_none();
            for ev in events.iter() {
                let t = ev.token();
                if t == PUB {
                    self.pub_event()?;
                    continue;
                }
                if t == TIMER {
                    continue; // the timerfd only wakes the loop; it is drained below
                }
                let seen = self.read_sub(t.0)?;
                for ping in &seen.pings {
                    let m = self.next_mask();
                    let _ = self.subs[t.0].stream.write_all(&wire::client_frame(wire::OP_PONG, ping, m));
                }
                for &(seq, sent) in &seen.messages {
                    let sub = &mut self.subs[t.0];
                    if seq > sub.next {
                        lost += seq - sub.next;
                    }
                    sub.next = sub.next.max(seq + 1);
                    if in_window {
                        deliveries += 1;
                        let _ = hist.record(now_ns.saturating_sub(sent).max(1));
                    }
                    if let Load::Closed(_) = self.load
                        && seq >= self.low
                        && seq < self.seq
                    {
                        let slot = seq as usize & (self.ring.len() - 1);
                        self.ring[slot].0 += 1;
                    }
                }
            }
            drain_timer(&timer);
        }
        // Never delivered: what each subscriber still misses at the end.
        for s in &self.subs {
            lost += self.seq.saturating_sub(s.next);
        }
        let (end, cpu) = frozen.expect("the loop ends after the window");
        Ok(Measured { seconds: (end - t0).as_secs_f64(), published, deliveries, lost, hist, cpu })
    }

    /// Closed loop: moves `low` past the messages every subscriber has, and past those
    /// older than [`LOSS_TIMEOUT`] (their missing deliveries are counted lost by the
    /// subscribers' sequence checks, or at the end).
    fn advance_low(&mut self, now_ns: u64) {
        let n = self.subs.len();
        let mask = self.ring.len() - 1;
        while self.low < self.seq {
            let (got, sent) = self.ring[self.low as usize & mask];
            if got < n && now_ns.saturating_sub(sent) <= LOSS_TIMEOUT.as_nanos() as u64 {
                break;
            }
            self.low += 1;
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        (self.mask.next_u64() as u32).to_le_bytes()
    }

    /// Publishes message `self.seq` stamped `sent_ns`.
    fn publish(&mut self, sent_ns: u64) -> Result<(), String> {
        let mut p = [b'.'; MSG_LEN];
        p[..32].copy_from_slice(format!("{:016x}{:016x}", self.seq, sent_ns).as_bytes());
        self.seq += 1;
        self.send(&p)
    }

    fn send(&mut self, payload: &[u8]) -> Result<(), String> {
        let m = self.next_mask();
        self.pub_out.extend_from_slice(&wire::client_frame(wire::OP_TEXT, payload, m));
        self.flush_pub()
    }

    fn flush_pub(&mut self) -> Result<(), String> {
        let mut done = 0;
        while done < self.pub_out.len() {
            match self.publisher.write(&self.pub_out[done..]) {
                Ok(0) => return Err("publisher: connection closed".into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("publisher: write: {e}")),
            }
        }
        self.pub_out.drain(..done);
        Ok(())
    }

    /// The publisher's socket: readable (nothing is expected with --no-echo: read and drop)
    /// or writable (flush).
    fn pub_event(&mut self) -> Result<(), String> {
        loop {
            match self.publisher.read(&mut self.scratch) {
                Ok(0) => return Err("publisher: the server closed the connection".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("publisher: read: {e}")),
            }
        }
        self.flush_pub()
    }

    /// Reads everything subscriber `i` has and parses its frames.
    fn read_sub(&mut self, i: usize) -> Result<Seen, String> {
        let mut seen = Seen::default();
        let sub = &mut self.subs[i];
        loop {
            let n = match sub.stream.read(&mut self.scratch) {
                Ok(0) => return Err(format!("subscriber {i}: the server closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("subscriber {i}: read: {e}")),
            };
            // A short read emptied the socket: the next bytes bring a new edge (saves the
            // read that would only say WouldBlock: one syscall per delivery at low rates).
            let drained = n < self.scratch.len();
            if sub.carry.is_empty() {
                let used = parse_frames(&self.scratch[..n], &mut seen).map_err(|e| format!("subscriber {i}: {e}"))?;
                sub.carry.extend_from_slice(&self.scratch[used..n]);
            } else {
                sub.carry.extend_from_slice(&self.scratch[..n]);
                let used = parse_frames(&sub.carry, &mut seen).map_err(|e| format!("subscriber {i}: {e}"))?;
                sub.carry.drain(..used);
            }
            if drained {
                break;
            }
        }
        Ok(seen)
    }

    /// A periodic timerfd (the open-loop send interval, at least 50 us; 1 ms closed loop):
    /// wakes the loop on schedule without busy-polling a shared core.
    fn start_timer(&mut self) -> Result<std::os::fd::OwnedFd, String> {
        use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
        use std::os::fd::AsRawFd as _;
        let period = match self.load {
            Load::Open(rate) => Duration::from_nanos(1_000_000_000 / rate).max(Duration::from_micros(50)),
            Load::Closed(_) => Duration::from_millis(1),
        };
        let fd =
            rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)
                .map_err(|e| e.to_string())?;
        let ts = Timespec { tv_sec: period.as_secs() as i64, tv_nsec: period.subsec_nanos() as _ };
        rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &Itimerspec { it_interval: ts, it_value: ts })
            .map_err(|e| e.to_string())?;
        self.poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd.as_raw_fd()), TIMER, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        Ok(fd)
    }
}

fn drain_timer(fd: &std::os::fd::OwnedFd) {
    let mut b = [0u8; 8];
    let _ = rustix::io::read(fd, &mut b);
}

/// Parses the complete frames at the start of `buf` into `seen`; returns the bytes used.
fn parse_frames(buf: &[u8], seen: &mut Seen) -> Result<usize, String> {
    let mut at = 0;
    while let Some((h, hlen)) = wire::parse_server_header(&buf[at..], 1 << 20, false).map_err(|e| e.to_string())? {
        let end = at + hlen + h.len as usize;
        if end > buf.len() {
            break;
        }
        let payload = &buf[at + hlen..end];
        match h.opcode {
            wire::OP_TEXT if h.fin && payload.len() == MSG_LEN => {
                if payload.starts_with(b"probe") {
                    seen.probes += 1;
                } else {
                    let seq = hex(&payload[..16]).ok_or("a message with a bad sequence number")?;
                    let sent = hex(&payload[16..32]).ok_or("a message with a bad send time")?;
                    seen.messages.push((seq, sent));
                }
            }
            wire::OP_PING => seen.pings.push(payload.to_vec()),
            wire::OP_CLOSE => return Err("the server sent a close frame".into()),
            op => return Err(format!("unexpected frame: opcode {op:#x}, {} bytes, fin {}", payload.len(), h.fin)),
        }
        at = end;
    }
    Ok(at)
}

fn hex(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, &c| Some(acc << 4 | (c as char).to_digit(16)? as u64))
}

/// A WebSocket connection to `addr` on [`TOPIC`], upgraded (blocking, then made
/// non-blocking); returns it and any bytes read past the 101.
fn upgrade(addr: SocketAddr, seed: u64) -> Result<(std::net::TcpStream, Vec<u8>), String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, SETUP_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(SETUP_TIMEOUT)).map_err(|e| e.to_string())?;
    let key = wire::client_key(seed);
    s.write_all(&wire::upgrade_request(&addr.to_string(), TOPIC, &key, None)).map_err(|e| e.to_string())?;
    let accept = wire::accept_key(&key);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("upgrade {addr}: {e}"))?;
        if n == 0 {
            return Err(format!("upgrade {addr}: connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(up) = wire::check_upgrade_response(&buf, &accept, false).map_err(|e| e.to_string())? {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            return Ok((s, buf[up.head_len..].to_vec()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// CPU accounting

/// CPU ticks of each watched process, and of each thread of `b_pid` (`B/<name>`).
fn cpu_snapshot(watched: &[(String, u32)], b_pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (name, pid) in watched {
        if let Ok(t) = procfs::cpu_ticks(*pid) {
            out.insert(name.clone(), t.total());
        }
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{b_pid}/task")) {
        for e in dir.flatten() {
            let p = e.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            if let Ok(CpuTicks { utime, stime }) = procfs::parse_stat(&stat) {
                *out.entry(format!("B/{}", comm.trim())).or_insert(0) += utime + stime;
            }
        }
    }
    out
}

fn cpu_delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>, ticks: f64) -> BTreeMap<String, f64> {
    b.iter().map(|(k, &v)| (k.clone(), v.saturating_sub(a.get(k).copied().unwrap_or(0)) as f64 / ticks)).collect()
}

// ---------------------------------------------------------------------------------------
// Report

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The markdown table: one row per (subscribers, load, bus), medians over repetitions.
fn markdown(args: &Args, results: &[RunResult], skipped: &[String]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Medians of {} x {} s (warm-up {} s); CPU pinning: A cpu {}, B cpu {}, broker cpu {}, generator cpu {}.\n\n",
        args.reps, args.duration, args.warmup, args.cpu_a, args.cpu_b, args.cpu_broker, args.cpu_gen
    ));
    s.push_str(
        "| subs | load | bus | deliveries/s | vs local | p50 us | p99 us | p99.9 us | max us | lost | \
         CPU us/delivery: A / B (bus thread) / broker / generator | B bus thread util |\n",
    );
    s.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    let mut keys: Vec<(usize, String, Load)> = Vec::new();
    for r in results {
        let k = (r.subs, r.load.label(), r.load);
        if !keys.iter().any(|x| x.0 == k.0 && x.1 == k.1) {
            keys.push(k);
        }
    }
    for (subs, label, _) in &keys {
        let mut local_rate = None;
        for bus in [Bus::Local, Bus::Redis, Bus::Nats] {
            let runs: Vec<&RunResult> =
                results.iter().filter(|r| r.subs == *subs && &r.load.label() == label && r.bus == bus).collect();
            if runs.is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
            let rate = med(&|r| r.deliveries_per_sec);
            if bus == Bus::Local {
                local_rate = Some(rate);
            }
            let cpu = |k: &str| med(&|r| r.cpu_us_per_delivery.get(k).copied().unwrap_or(f64::NAN));
            let bus_thread = med(&|r| {
                let secs = r.cpu_util.get("B/ringwire-bus").copied().unwrap_or(0.0) * r.seconds;
                if r.deliveries > 0 { secs * 1e6 / r.deliveries as f64 } else { f64::NAN }
            });
            let util = med(&|r| r.cpu_util.get("B/ringwire-bus").copied().unwrap_or(f64::NAN));
            let lost: u64 = runs.iter().map(|r| r.lost).sum();
            let f2 = |x: f64| if x.is_nan() { "-".to_owned() } else { format!("{x:.3}") };
            s.push_str(&format!(
                "| {} | {} | {:?} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} / {} ({}) / {} / {} | {} |\n",
                thousands(*subs as u64),
                label,
                bus,
                thousands(rate as u64),
                local_rate.map_or("-".into(), |l| format!("{:.2}x", rate / l)),
                med(&|r| r.latency_us.p50),
                med(&|r| r.latency_us.p99),
                med(&|r| r.latency_us.p999),
                med(&|r| r.latency_us.max),
                lost,
                f2(cpu("A")),
                f2(cpu("B")),
                f2(bus_thread),
                f2(cpu("broker")),
                f2(cpu("generator")),
                if util.is_nan() { "-".to_owned() } else { format!("{:.0}%", util * 100.0) },
            ));
        }
    }
    if !skipped.is_empty() {
        s.push_str("\nSkipped or failed:\n\n");
        for k in skipped {
            s.push_str(&format!("- {k}\n"));
        }
    }
    s
}

/// Today's UTC date, YYYY-MM-DD (civil from days since the epoch).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
