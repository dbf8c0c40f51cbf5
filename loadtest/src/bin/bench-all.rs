//! `bench-all`: runs every scenario against every server that is present, alternating
//! servers within each repetition, the server pinned to CPU 0 and `loadgen` to CPU 1,
//! and writes `latest.json`, `latest.md` (a section for `docs/benchmarks.md`) and
//! `latest.svg` into the output directory. Start it through `loadtest/run.sh`, which
//! builds everything in release and raises the open-file limit first. The TLS scenarios
//! (`*-tls`) run on the servers that serve wss, with a test CA and a `localhost`
//! certificate made for the run in a temporary directory.

use clap::{Parser, ValueEnum as _};
use ringwire_loadtest::report::{self, Metrics, RunRecord, ServerKind};
use ringwire_loadtest::tls::KeyKind;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Side-by-side WebSocket server benchmarks (see loadtest/README.md)")]
struct Args {
    /// Repository root.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Directory holding the release binaries (loadgen, peers, ringwire, examples/tcp_echo).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where results go (default: `<repo>/loadtest/results`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds of load before each run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repetitions (servers alternate within each).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Only these servers (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// A ringwire variant to run beside the others, as `NAME=ARGS`: server `ringwire-NAME`,
    /// ringwire with ARGS (split at spaces) after its usual arguments, paired with the peers
    /// and the floor like ringwire (e.g. `b128=--recv-buffer-size 128KiB`). Repeatable.
    #[arg(long = "ringwire-variant", value_name = "NAME=ARGS")]
    ringwire_variants: Vec<String>,
    /// Idle scenario sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 50_000])]
    idle: Vec<usize>,
    /// Connections in the idle-deflate scenario (dedicated compression, one message each).
    #[arg(long, default_value_t = 2000)]
    idle_deflate: usize,
    /// zlib level ringwire's deflate variants compress at (Bun's is fixed at 6, its zlib
    /// default; Node ws runs at 6 too): to compare at an equal ratio rather than level.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    ringwire_deflate_level: u32,
    /// Connections in the idle-tls scenario (each echoes one message over TLS first).
    #[arg(long, default_value_t = 10_000)]
    idle_tls: usize,
    /// Connections in flight in the handshake-tls scenario.
    #[arg(long, default_value_t = 64)]
    handshake_conns: usize,
    /// Key type of the TLS scenarios' CA and certificate.
    #[arg(long, value_enum, default_value_t = KeyKind::EcdsaP256)]
    tls_key: KeyKind,
    /// The key exchange group loadgen offers in the TLS scenarios (the only one).
    #[arg(long, value_enum, default_value_t)]
    tls_kx: ringwire_loadtest::tls::Kx,
    /// Let loadgen resume TLS sessions (default: every handshake is a full one).
    #[arg(long)]
    tls_resume: bool,
    /// Open-loop rates (messages/s, 100 connections, 32 B).
    #[arg(long, value_delimiter = ',', default_values_t = [50_000u64, 100_000, 200_000])]
    open_rates: Vec<u64>,
    /// First TCP port; each run gets the next one.
    #[arg(long, default_value_t = 21000)]
    port_base: u16,
    /// Short smoke preset: 2 s runs, 1 repetition, idle and idle-tls 2,000, open loop at 50k/s.
    #[arg(long)]
    smoke: bool,
    /// List servers and scenarios, run nothing.
    #[arg(long)]
    list: bool,
    /// Run nothing: rewrite `latest.md` and `latest.svg` in the output directory from its
    /// `latest.json` (after a change to the report).
    #[arg(long)]
    render: bool,
}

#[derive(Clone)]
struct Server {
    name: String,
    /// The server this is a variant of (`ringwire` for `ringwire-shared`); `--servers`
    /// takes either.
    base: &'static str,
    /// permessage-deflate mode (`shared` or `dedicated`): runs only the deflate scenarios
    /// that include this mode. `None`: no compression, runs only the others.
    deflate: Option<&'static str>,
    kind: ServerKind,
    program: PathBuf,
    /// Arguments before `{port}`/`{mode}` substitution.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// How it is told to serve wss (`{cert}`: the full chain, `{key}`: its key, PEM);
    /// `None`: it does not run the TLS scenarios.
    tls_args: Option<Vec<String>>,
    broadcast: bool,
    /// The `{mode}` that makes it serve topics (the request path is the topic and every
    /// message goes to every connection on its path, the sender included); `None`: it has
    /// no topics and does not run the topic scenarios.
    topic_mode: Option<&'static str>,
    /// `Err(reason)` when the server cannot run here.
    available: Result<(), String>,
}

struct Scenario {
    name: String,
    description: String,
    loadgen: Vec<String>,
    broadcast: bool,
    idle: bool,
    floor: bool,
    conns: usize,
    /// Deflate scenario: the compression modes whose server variants run it.
    deflate_modes: Option<&'static [&'static str]>,
    /// Over TLS: runs on the servers with `tls_args`, and loadgen gets `--tls`.
    tls: bool,
    /// Local source addresses loadgen spreads its connections over (fresh ones each run:
    /// the previous run's TIME_WAIT ports stay taken); 0: the default.
    sources: usize,
    /// Every connection on one request path, the path being the topic: runs on the servers
    /// with a `topic_mode` (topics of their own), started in that mode.
    topics: bool,
}

impl Scenario {
    /// Whether `server` runs this scenario.
    fn runs_on(&self, server: &Server) -> bool {
        let mode_fits = match (self.deflate_modes, server.deflate) {
            (None, None) => true,
            (Some(modes), Some(m)) => modes.contains(&m),
            _ => false,
        };
        mode_fits
            && (server.broadcast || !self.broadcast)
            && (server.kind != ServerKind::Floor || self.floor)
            && (!self.tls || server.tls_args.is_some())
            && (!self.topics || server.topic_mode.is_some())
    }

    /// The `{mode}` `server` runs this scenario in.
    fn mode(&self, server: &Server) -> &'static str {
        match (self.topics, server.topic_mode) {
            (true, Some(m)) => m,
            _ if self.broadcast => "broadcast",
            _ => "echo",
        }
    }
}

fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.duration = 2.0;
        args.warmup = 0.5;
        args.reps = 1;
        args.idle = vec![2000];
        args.idle_tls = 2000;
        args.open_rates = vec![50_000];
    }
    if let Err(e) = run(args) {
        eprintln!("bench-all: {e}");
        std::process::exit(1);
    }
}

/// `--render`: the report of a finished run again, from its JSON. The preamble is the
/// JSON's (or, for a run recorded before it was kept there, the old markdown's text
/// before its first scenario); the scenario descriptions are those of the sizes and
/// rates the run used.
fn render(args: &mut Args, out: &Path) -> Result<(), String> {
    let read = |name: &str| {
        let p = out.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&read("latest.json")?).map_err(|e| format!("latest.json: {e}"))?;
    let runs: Vec<report::RunRecord> =
        serde_json::from_value(json["runs"].take()).map_err(|e| format!("latest.json runs: {e}"))?;
    let config = &json["config"];
    if let Some(v) = config.get("idle").and_then(|v| serde_json::from_value(v.clone()).ok()) {
        args.idle = v;
    }
    if let Some(v) = config.get("open_rates").and_then(|v| serde_json::from_value(v.clone()).ok()) {
        args.open_rates = v;
    }
    if let Some(v) = config.get("idle_deflate").and_then(|v| serde_json::from_value(v.clone()).ok()) {
        args.idle_deflate = v;
    }
    if let Some(v) = config.get("idle_tls").and_then(|v| serde_json::from_value(v.clone()).ok()) {
        args.idle_tls = v;
    }
    if let Some(v) = config.get("handshake_conns").and_then(|v| serde_json::from_value(v.clone()).ok()) {
        args.handshake_conns = v;
    }
    if let Some(v) = config.get("ringwire_deflate_level").and_then(|v| serde_json::from_value(v.clone()).ok()) {
        args.ringwire_deflate_level = v;
    }
    let pre = match json.get("preamble").and_then(|p| p.as_str()) {
        Some(p) => p.to_string(),
        None => {
            let md = read("latest.md")?;
            md.split_once("\n### ").map_or(md.clone(), |(p, _)| format!("{p}\n"))
        }
    };
    let rows = report::summarize(&runs);
    let descriptions: BTreeMap<String, String> = scenarios(args).into_iter().map(|s| (s.name, s.description)).collect();
    let md = report::markdown(&pre, &rows, &descriptions, &report::paired_notes(&runs, &rows), Some("latest.svg"));
    for (name, text) in [("latest.md", md), ("latest.svg", report::svg(&rows))] {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    eprintln!("[bench-all] rewrote {}/latest.{{md,svg}} from latest.json ({} runs)", out.display(), runs.len());
    Ok(())
}

fn exists(p: &Path) -> Result<(), String> {
    if p.is_file() { Ok(()) } else { Err(format!("{} not found", p.display())) }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn servers(repo: &Path, bin: &Path) -> Vec<Server> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let peers = repo.join("loadtest/.peers/node_modules");
    let bun = ["bun-linux-x64", "bun-linux-x64-baseline"]
        .iter()
        .map(|p| peers.join("@oven").join(p).join("bin/bun"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| peers.join("@oven/bun-linux-x64/bin/bun"));
    let node = which("node");
    vec![
        Server {
            name: "ringwire".into(),
            base: "ringwire",
            deflate: None,
            kind: ServerKind::Ringwire,
            program: bin.join("ringwire"),
            // the peers' limits (peer::MAX_MESSAGE, 64 MiB), so echo-large-1m is not refused
            args: s(&[
                "{mode}",
                "--addr",
                "127.0.0.1:{port}",
                "--threads",
                "1",
                "--max-frame-size",
                "64MiB",
                "--max-message-size",
                "64MiB",
                "--max-buffered",
                "256MiB",
            ]),
            env: vec![],
            tls_args: Some(s(&["--tls-cert", "{cert}", "--tls-key", "{key}"])),
            broadcast: true,
            topic_mode: Some("broadcast"),
            available: exists(&bin.join("ringwire")),
        },
        Server {
            name: "tcp-floor".into(),
            base: "tcp-floor",
            deflate: None,
            kind: ServerKind::Floor,
            program: bin.join("examples/tcp_echo"),
            args: s(&["--addr", "127.0.0.1:{port}", "--threads", "1"]),
            env: vec![],
            tls_args: None,
            broadcast: false,
            topic_mode: None,
            available: exists(&bin.join("examples/tcp_echo")),
        },
        Server {
            name: "fastwebsockets".into(),
            base: "fastwebsockets",
            deflate: None,
            kind: ServerKind::Peer,
            program: bin.join("peer-fastwebsockets"),
            args: s(&["--addr", "127.0.0.1:{port}", "--mode", "{mode}"]),
            env: vec![],
            tls_args: Some(s(&["--tls-cert", "{cert}", "--tls-key", "{key}"])),
            broadcast: true,
            topic_mode: None,
            available: exists(&bin.join("peer-fastwebsockets")),
        },
        Server {
            name: "ringwire-tokio".into(),
            base: "ringwire-tokio",
            deflate: None,
            // ours: compared with the best peer, never one of them
            kind: ServerKind::Ringwire,
            program: bin.join("peer-ringwire-tokio"),
            args: s(&["--addr", "127.0.0.1:{port}"]),
            env: vec![],
            tls_args: None,
            broadcast: false,
            topic_mode: None,
            available: exists(&bin.join("peer-ringwire-tokio")),
        },
        Server {
            name: "tokio-tungstenite".into(),
            base: "tokio-tungstenite",
            deflate: None,
            kind: ServerKind::Peer,
            program: bin.join("peer-tungstenite"),
            args: s(&["--addr", "127.0.0.1:{port}", "--mode", "{mode}"]),
            env: vec![],
            tls_args: None,
            broadcast: true,
            topic_mode: None,
            available: exists(&bin.join("peer-tungstenite")),
        },
        Server {
            name: "bun".into(),
            base: "bun",
            deflate: None,
            kind: ServerKind::Peer,
            available: exists(&bun).map_err(|e| format!("{e} (npm missing or run.sh did not install it)")),
            program: bun,
            args: vec![repo.join("loadtest/peers/bun-echo.js").display().to_string(), "{port}".into(), "{mode}".into()],
            env: vec![],
            tls_args: Some(s(&["cert={cert}", "key={key}"])),
            broadcast: true,
            topic_mode: Some("topic"),
        },
        Server {
            name: "node-ws".into(),
            base: "node-ws",
            deflate: None,
            kind: ServerKind::Peer,
            available: match &node {
                None => Err("node not in PATH".into()),
                Some(_) => exists(&peers.join("ws/package.json")).map_err(|e| format!("{e} (npm install ws skipped)")),
            },
            program: node.unwrap_or_else(|| PathBuf::from("node")),
            args: vec![
                repo.join("loadtest/peers/node-ws-echo.js").display().to_string(),
                "{port}".into(),
                "{mode}".into(),
            ],
            env: vec![("NODE_PATH".into(), peers.display().to_string())],
            tls_args: None,
            broadcast: true,
            topic_mode: None,
        },
    ]
}

/// The servers with compression, for the deflate scenarios only: ringwire and Bun in
/// both modes, Node ws in its one (a zlib stream per connection; `dedicated`: context
/// kept). Every one compresses messages of 128 bytes and more at zlib level 6 (uWS has
/// no threshold and always uses level 6, its zlib default and its libdeflate level),
/// ringwire at `ringwire_level` (6 unless `--ringwire-deflate-level` says otherwise).
fn deflate_variants(plain: &[Server], ringwire_level: u32) -> Vec<Server> {
    let mut v = Vec::new();
    for s in plain {
        let modes: &[&'static str] = match s.base {
            "ringwire" | "bun" => &["shared", "dedicated"],
            "node-ws" => &["dedicated"],
            _ => continue,
        };
        for &m in modes {
            let mut args = s.args.clone();
            if s.base == "ringwire" {
                let level = ringwire_level.to_string();
                args.extend(
                    ["--deflate", m, "--deflate-threshold", "128", "--deflate-level", &level].map(String::from),
                );
            } else {
                args.push(format!("deflate={m}"));
            }
            v.push(Server { name: format!("{}-{m}", s.base), deflate: Some(m), args, tls_args: None, ..s.clone() });
        }
    }
    v
}

/// The `--ringwire-variant NAME=ARGS` servers: ringwire with ARGS appended, named
/// `ringwire-NAME`.
fn ringwire_variants(plain: &[Server], specs: &[String]) -> Result<Vec<Server>, String> {
    let base = plain.iter().find(|s| s.name == "ringwire").ok_or("no ringwire server to make variants of")?;
    let mut v: Vec<Server> = Vec::new();
    for spec in specs {
        let (name, extra) = spec
            .split_once('=')
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .ok_or_else(|| format!("--ringwire-variant {spec:?}: expected NAME=ARGS, NAME of letters, digits, '-'"))?;
        let name = format!("ringwire-{name}");
        if plain.iter().chain(&v).any(|s| s.name == name) {
            return Err(format!("--ringwire-variant {spec:?}: a server named {name} exists already"));
        }
        let mut args = base.args.clone();
        args.extend(extra.split_whitespace().map(String::from));
        v.push(Server { name, args, ..base.clone() });
    }
    Ok(v)
}

fn scenarios(args: &Args) -> Vec<Scenario> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut v = vec![
        Scenario {
            name: "echo-small".into(),
            description: "100 connections, 32-byte text, closed loop (one message in flight each).".into(),
            loadgen: s(&["--mode", "closed", "--conns", "100", "--size", "32"]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 100,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "echo-many".into(),
            description: "1,000 connections, 32-byte text, closed loop.".into(),
            loadgen: s(&["--mode", "closed", "--conns", "1000", "--size", "32"]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 1000,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "echo-large".into(),
            description: "10 connections, 16 KiB binary, closed loop.".into(),
            loadgen: s(&["--mode", "closed", "--conns", "10", "--size", "16384", "--binary"]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 10,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "echo-large-64k".into(),
            description: "4 connections, 64 KiB binary, closed loop.".into(),
            loadgen: s(&["--mode", "closed", "--conns", "4", "--size", "65536", "--binary"]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 4,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "echo-large-1m".into(),
            description: "2 connections, 1 MiB binary, closed loop.".into(),
            loadgen: s(&["--mode", "closed", "--conns", "2", "--size", "1048576", "--binary"]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 2,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "echo-pipelined".into(),
            description: "100 connections, 32-byte text, 16 messages in flight each.".into(),
            loadgen: s(&["--mode", "pipelined", "--conns", "100", "--depth", "16", "--size", "32"]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 100,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "broadcast".into(),
            description:
                "1,000 subscribers and one publisher, 64-byte text, publisher at most 8 messages ahead of the \
                          subscribers (on average: message k goes once (k - 7) x 1,000 deliveries have been \
                          counted); msgs/s counts deliveries, CPU is per delivery."
                    .into(),
            loadgen: s(&["--mode", "broadcast", "--conns", "1000", "--size", "64", "--window", "8"]),
            broadcast: true,
            idle: false,
            floor: false,
            conns: 1001,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
        Scenario {
            name: "broadcast-16k".into(),
            description: "100 subscribers and one publisher, 16 KiB binary, publisher at most 8 messages ahead of \
                          the subscribers (as in broadcast); msgs/s counts deliveries, CPU is per delivery."
                .into(),
            loadgen: s(&["--mode", "broadcast", "--conns", "100", "--size", "16384", "--binary", "--window", "8"]),
            broadcast: true,
            idle: false,
            floor: false,
            conns: 101,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        },
    ];
    v.push(Scenario {
        name: "fanout-10k".into(),
        description: "Topics: 10,000 subscribers and one publisher (itself a subscriber) on one topic, the request \
                      path /bench/topic; 64-byte text, publisher at most 8 messages ahead of the subscribers \
                      (on average, as in broadcast); msgs/s counts deliveries to the 10,000 (the publisher's own copy is checked, not \
                      counted), CPU is per delivery. Servers with topics only (ringwire broadcast: path = topic; \
                      Bun: ws.subscribe(path), server.publish(path, msg))."
            .into(),
        loadgen: s(&[
            "--mode",
            "broadcast",
            "--conns",
            "10000",
            "--size",
            "64",
            "--window",
            "8",
            "--path",
            "/bench/topic",
            "--connect-timeout",
            "120",
        ]),
        broadcast: true,
        idle: false,
        floor: false,
        conns: 10_001,
        deflate_modes: None,
        tls: false,
        sources: 0,
        topics: true,
    });
    for &rate in &args.open_rates {
        v.push(Scenario {
            name: format!("open-loop-{}k", rate / 1000),
            description: format!(
                "100 connections, 32-byte text, fixed offered load of {rate} msgs/s (open loop; latency from the \
                 intended send time). Compare CPU per message at equal load."
            ),
            loadgen: s(&["--mode", "open-loop", "--conns", "100", "--size", "32", "--rate", &rate.to_string()]),
            broadcast: false,
            idle: false,
            floor: true,
            conns: 100,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        });
    }
    for &n in &args.idle {
        v.push(Scenario {
            name: format!("idle-{n}"),
            description: format!(
                "{n} idle connections (handshake done, then nothing for 2 s): growth of server RSS per connection, read at the end of the 2 s; \
                 each connection then echoes one message to prove it was alive."
            ),
            loadgen: s(&["--mode", "idle", "--conns", &n.to_string(), "--hold", "2", "--connect-timeout", "120"]),
            broadcast: false,
            idle: true,
            floor: false,
            conns: n,
            deflate_modes: None,
            tls: false,
            sources: 0,
            topics: false,
        });
    }
    const BOTH: &[&str] = &["shared", "dedicated"];
    let json = |extra: &[&str]| {
        let mut a = s(&["--deflate", "--payload", "json"]);
        a.extend(s(extra));
        a
    };
    for (size, label, human) in [(1024, "1k", "1 KiB"), (16384, "16k", "16 KiB")] {
        v.push(Scenario {
            name: format!("deflate-{label}"),
            description: format!(
                "permessage-deflate: 100 connections, {human} JSON-like text, closed loop; every message \
                 compressed by loadgen (once, up front) and by the server. Ratios are to Bun in the same mode."
            ),
            loadgen: json(&["--mode", "closed", "--conns", "100", "--size", &size.to_string()]),
            broadcast: false,
            idle: false,
            floor: false,
            conns: 100,
            deflate_modes: Some(BOTH),
            tls: false,
            sources: 0,
            topics: false,
        });
    }
    v.push(Scenario {
        name: "broadcast-deflate".into(),
        description: "permessage-deflate: 1,000 subscribers and one publisher, 1 KiB JSON-like text, publisher at \
                      most 8 messages ahead; msgs/s counts deliveries, CPU is per delivery (a shared compressor can \
                      compress each message once for all recipients)."
            .into(),
        loadgen: json(&["--mode", "broadcast", "--conns", "1000", "--size", "1024", "--window", "8"]),
        broadcast: true,
        idle: false,
        floor: false,
        conns: 1001,
        deflate_modes: Some(BOTH),
        tls: false,
        sources: 0,
        topics: false,
    });
    let n = args.idle_deflate;
    // One message: what a connection holds once its compressor exists (zlib touches its
    // window as data passes, zlib-rs zeroes it at creation); 64 x 1 KiB: with the 32 KiB
    // window full, as on a connection that has been talking for a while.
    for (echoes, name, what) in [
        (1, "idle-deflate", "one 1 KiB JSON message"),
        (64, "idle-deflate-64", "64 1 KiB JSON messages (the window full)"),
    ] {
        v.push(Scenario {
            name: name.into(),
            description: format!(
                "permessage-deflate, dedicated mode: {n} connections each echo {what} first (so each holds its \
                 compression state), then stay idle for 2 s: growth of server RSS per connection."
            ),
            loadgen: json(&[
                "--mode",
                "idle",
                "--echo-first",
                &echoes.to_string(),
                "--conns",
                &n.to_string(),
                "--size",
                "1024",
                "--hold",
                "2",
                "--connect-timeout",
                "120",
            ]),
            broadcast: false,
            idle: true,
            floor: false,
            conns: n,
            deflate_modes: Some(&["dedicated"]),
            tls: false,
            sources: 0,
            topics: false,
        });
    }
    v.extend(tls_scenarios(args));
    v
}

/// The TLS scenarios: wss with full handshakes (TLS 1.3, one key exchange group and
/// AES-128-GCM offered: the same work on every server), on the servers that serve it.
fn tls_scenarios(args: &Args) -> Vec<Scenario> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let plain =
        |name: &str, description: &str, loadgen: Vec<String>, conns: usize, idle: bool, sources: usize| Scenario {
            name: name.into(),
            description: description.into(),
            loadgen,
            broadcast: false,
            idle,
            floor: false,
            conns,
            deflate_modes: None,
            tls: true,
            sources,
            topics: false,
        };
    let n = args.handshake_conns;
    let idle = args.idle_tls;
    vec![
        plain(
            "echo-small-tls",
            "wss: 100 connections, 32-byte text, closed loop (echo-small over TLS 1.3, AES-128-GCM).",
            s(&["--mode", "closed", "--conns", "100", "--size", "32"]),
            100,
            false,
            0,
        ),
        plain(
            "echo-large-tls",
            "wss: 10 connections, 16 KiB binary, closed loop (echo-large over TLS 1.3, AES-128-GCM).",
            s(&["--mode", "closed", "--conns", "10", "--size", "16384", "--binary"]),
            10,
            false,
            0,
        ),
        plain(
            "handshake-tls",
            &format!(
                "wss handshakes: {n} connections in flight, each one cycle (TCP connect, full TLS 1.3 handshake, \
                 upgrade, one 32-byte echo, close frames, the server's end of stream), then a new one; msgs/s \
                 counts finished cycles (handshakes/s), server CPU is per handshake, latency from connect to echo."
            ),
            s(&["--mode", "handshake", "--conns", &n.to_string(), "--size", "32"]),
            n,
            false,
            8,
        ),
        plain(
            "idle-tls",
            &format!(
                "wss: {idle} connections each echo one 32-byte message over TLS first, then stay idle for 2 s: \
                 growth of server RSS per connection (the TLS session and its buffers included)."
            ),
            s(&[
                "--mode",
                "idle",
                "--echo-first",
                "1",
                "--conns",
                &idle.to_string(),
                "--size",
                "32",
                "--hold",
                "2",
                "--connect-timeout",
                "120",
            ]),
            idle,
            true,
            0,
        ),
    ]
}

/// A running server, killed when dropped.
struct Running {
    child: Child,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop sends SIGKILL.
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn taskset(cpu: &str, program: &Path, has_taskset: bool) -> Command {
    if has_taskset {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_server(
    server: &Server,
    mode: &str,
    port: u16,
    tls: Option<&ringwire_loadtest::tls::CertFiles>,
    log: &Path,
    has_taskset: bool,
) -> Result<Running, String> {
    let mut args: Vec<String> =
        server.args.iter().map(|a| a.replace("{port}", &port.to_string()).replace("{mode}", mode)).collect();
    if let Some(f) = tls {
        let tls_args = server.tls_args.as_ref().ok_or_else(|| format!("{} does not serve TLS", server.name))?;
        args.extend(tls_args.iter().map(|a| {
            a.replace("{cert}", &f.chain.display().to_string()).replace("{key}", &f.key.display().to_string())
        }));
    }
    let logf = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let errf = logf.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = taskset("0", &server.program, has_taskset);
    cmd.args(&args).envs(server.env.iter().cloned()).stdin(Stdio::null()).stdout(logf).stderr(errf);
    let child = cmd.spawn().map_err(|e| format!("starting {}: {e}", server.program.display()))?;
    let mut running = Running { child };
    // Ready when the port accepts a TCP connection.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!("{} exited at start ({status}); see {}", server.name, log.display()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
            return Ok(running);
        }
        if Instant::now() > deadline {
            running.stop();
            return Err(format!("{} did not listen on {addr} within 15 s; see {}", server.name, log.display()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct Ctx {
    loadgen: PathBuf,
    has_taskset: bool,
    duration: f64,
    warmup: f64,
    /// The TLS scenarios' certificates and what loadgen offers.
    tls: Option<TlsRun>,
}

struct TlsRun {
    files: ringwire_loadtest::tls::CertFiles,
    kx: ringwire_loadtest::tls::Kx,
    resume: bool,
}

/// The run's certificate directory, removed when dropped.
struct TempCerts {
    dir: PathBuf,
    files: ringwire_loadtest::tls::CertFiles,
}

impl Drop for TempCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_loadgen(
    ctx: &Ctx,
    sc: &Scenario,
    server: &Server,
    port: u16,
    pid: u32,
    run_no: usize,
) -> Result<serde_json::Value, String> {
    let mut cmd = taskset("1", &ctx.loadgen, ctx.has_taskset);
    cmd.arg("--addr").arg(format!("127.0.0.1:{port}")).args(&sc.loadgen);
    cmd.arg("--server-pid").arg(pid.to_string());
    cmd.arg("--duration").arg(ctx.duration.to_string()).arg("--warmup").arg(ctx.warmup.to_string());
    if server.kind == ServerKind::Floor {
        cmd.arg("--raw");
    }
    if let Some(t) = ctx.tls.as_ref().filter(|_| sc.tls) {
        cmd.arg("--tls").arg("--tls-ca").arg(&t.files.ca);
        cmd.arg("--tls-kx").arg(t.kx.to_possible_value().expect("a named value").get_name());
        if t.resume {
            cmd.arg("--tls-resume");
        }
    }
    if sc.idle || sc.sources > 0 {
        // Fresh source addresses per run: the previous run's TIME_WAIT ports stay taken.
        let block = 1 + (run_no % 250);
        let n = sc.conns.div_ceil(20_000).max(sc.sources).max(1);
        let src: Vec<String> = (1..=n).map(|i| format!("127.{block}.0.{i}")).collect();
        cmd.arg("--sources").arg(src.join(","));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("starting loadgen: {e}"))?;
    let limit = Duration::from_secs_f64(ctx.duration + ctx.warmup + 180.0);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("loadgen still running after {:.0} s; killed", limit.as_secs_f64()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for loadgen: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(format!("loadgen failed ({status})"));
    }
    serde_json::from_str(&out).map_err(|e| format!("loadgen output is not JSON: {e}"))
}

fn cmd_output(program: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(program).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn lock_version(repo: &Path, name: &str) -> Option<String> {
    let lock = std::fs::read_to_string(repo.join("Cargo.lock")).ok()?;
    let pat = format!("name = \"{name}\"\nversion = \"");
    let i = lock.find(&pat)? + pat.len();
    Some(lock[i..].split('"').next()?.to_string())
}

fn machine_facts(repo: &Path, servers: &[Server]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string());
    m.insert("cpu".into(), model.unwrap_or_else(|| "unknown".into()));
    m.insert("cpus".into(), cpuinfo.lines().filter(|l| l.starts_with("processor")).count().to_string());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    m.insert("loadavg_at_start".into(), load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    m.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(t) = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")) {
        m.insert("memory".into(), t.trim().to_string());
    }
    for (k, v) in [
        ("rustc", cmd_output("rustc", &["-V"])),
        ("date", cmd_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        ("commit", cmd_output("git", &["-C", &repo.display().to_string(), "rev-parse", "--short", "HEAD"])),
        ("fastwebsockets", lock_version(repo, "fastwebsockets")),
        ("tokio-tungstenite", lock_version(repo, "tokio-tungstenite")),
        ("tokio", lock_version(repo, "tokio")),
    ] {
        m.insert(k.into(), v.unwrap_or_else(|| "unknown".into()));
    }
    // Each base server once, plain or a compressing variant (`--servers bun-dedicated`
    // leaves only the variant).
    let mut seen = std::collections::HashSet::new();
    for s in servers.iter().filter(|s| s.available.is_ok() && seen.insert(s.base)) {
        match s.base {
            "bun" => {
                if let Some(v) = cmd_output(&s.program.display().to_string(), &["--version"]) {
                    m.insert("bun".into(), v);
                }
            }
            "node-ws" => {
                if let Some(v) = cmd_output(&s.program.display().to_string(), &["--version"]) {
                    m.insert("node".into(), v);
                }
                let pj = repo.join("loadtest/.peers/node_modules/ws/package.json");
                let ver = std::fs::read_to_string(pj)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v.get("version").and_then(|x| x.as_str()).map(String::from));
                m.insert("ws".into(), ver.unwrap_or_else(|| "unknown".into()));
            }
            _ => {}
        }
    }
    m
}

fn fact<'a>(machine: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    machine.get(key).map_or("unknown", String::as_str)
}

fn run(mut args: Args) -> Result<(), String> {
    let repo = args.repo.canonicalize().map_err(|e| format!("--repo {}: {e}", args.repo.display()))?;
    let bin = args.bin_dir.clone().unwrap_or_else(|| repo.join("target/release"));
    let out = args.out.clone().unwrap_or_else(|| repo.join("loadtest/results"));
    if args.render {
        return render(&mut args, &out);
    }
    if args.reps == 0
        || !args.duration.is_finite()
        || args.duration <= 0.0
        || !args.warmup.is_finite()
        || args.warmup < 0.0
    {
        return Err("--reps must be >= 1, --duration > 0, --warmup >= 0".into());
    }
    let mut all = servers(&repo, &bin);
    all.extend(deflate_variants(&all, args.ringwire_deflate_level));
    all.extend(ringwire_variants(&all, &args.ringwire_variants)?);
    let named = |s: &Server, n: &String| &s.name == n || s.base == n.as_str();
    let unknown: Vec<&String> = args.servers.iter().filter(|n| !all.iter().any(|s| named(s, n))).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown servers {unknown:?}; known: {:?}",
            all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
        ));
    }
    if !args.servers.is_empty() {
        all.retain(|s| args.servers.iter().any(|n| named(s, n)));
    }
    let mut scs = scenarios(&args);
    let unknown: Vec<&String> = args.scenarios.iter().filter(|n| !scs.iter().any(|s| &s.name == *n)).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown scenarios {unknown:?}; known: {:?}",
            scs.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        ));
    }
    if !args.scenarios.is_empty() {
        scs.retain(|s| args.scenarios.contains(&s.name));
    }
    for s in &all {
        match &s.available {
            Ok(()) => eprintln!("[bench-all] server {:<18} {}", s.name, s.program.display()),
            Err(why) => eprintln!("[bench-all] server {:<18} skipped: {why}", s.name),
        }
    }
    if args.list {
        for s in &scs {
            eprintln!("[bench-all] scenario {:<18} {}", s.name, s.description);
        }
        return Ok(());
    }
    let loadgen = bin.join("loadgen");
    exists(&loadgen).map_err(|e| format!("{e}: build first (loadtest/run.sh does)"))?;
    let has_taskset = which("taskset").is_some();
    if !has_taskset {
        eprintln!("[bench-all] taskset not found: running unpinned (results are not comparable to pinned runs)");
    }
    // Each connection is a descriptor in the server and in loadgen; a scenario that needs more
    // than this process may open (run.sh raises the soft limit up to the hard one) is skipped.
    let limit = ringwire_loadtest::procfs::open_files_limit().map_err(|e| e.to_string())?;
    let mut skipped_scenarios: Vec<String> = Vec::new();
    scs.retain(|s| {
        let need = s.conns as u64 + 64;
        if need > limit {
            let why = format!("{} (needs an open-file limit of {need}, this machine allows {limit})", s.name);
            eprintln!("[bench-all] scenario {why}: skipped");
            skipped_scenarios.push(why);
            false
        } else {
            true
        }
    });
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    // One test CA and certificate for every TLS run, removed at the end.
    let certs = if scs.iter().any(|s| s.tls) {
        let dir = std::env::temp_dir().join(format!("ringwire-bench-tls-{}", std::process::id()));
        let files = ringwire_loadtest::tls::write(&dir, args.tls_key)?;
        eprintln!("[bench-all] TLS: {:?} test CA and localhost certificate in {}", args.tls_key, dir.display());
        Some(TempCerts { dir, files })
    } else {
        None
    };
    let tls = certs.as_ref().map(|c| TlsRun { files: c.files.clone(), kx: args.tls_kx, resume: args.tls_resume });
    let ctx = Ctx { loadgen, has_taskset, duration: args.duration, warmup: args.warmup, tls };
    let machine = machine_facts(&repo, &all);

    let usable: Vec<&Server> = all.iter().filter(|s| s.available.is_ok()).collect();
    if usable.is_empty() {
        return Err("no server to run".into());
    }
    let plan: Vec<(&Scenario, u32, &Server)> = scs
        .iter()
        .flat_map(|sc| {
            let usable = &usable;
            (1..=args.reps)
                .flat_map(move |rep| usable.iter().filter(move |s| sc.runs_on(s)).map(move |s| (sc, rep, *s)))
        })
        .collect();
    let started = Instant::now();
    let mut runs: Vec<RunRecord> = Vec::new();
    for (i, (sc, rep, server)) in plan.iter().enumerate() {
        let port = args.port_base.wrapping_add(i as u16);
        eprintln!(
            "[bench-all] ({}/{}) {} rep {rep}/{} {} on port {port} ({:.0}s elapsed)",
            i + 1,
            plan.len(),
            sc.name,
            args.reps,
            server.name,
            started.elapsed().as_secs_f64()
        );
        let mode = sc.mode(server);
        let log = logs.join(format!("{}-{}-{rep}.log", sc.name, server.name));
        let record = |failure: Option<String>, v: Option<serde_json::Value>| RunRecord {
            scenario: sc.name.clone(),
            server: server.name.clone(),
            kind: server.kind,
            deflate: server.deflate.map(String::from),
            rep: *rep,
            metrics: v.as_ref().map(Metrics::from_loadgen),
            failure,
            loadgen: v,
        };
        let tls_files = ctx.tls.as_ref().filter(|_| sc.tls).map(|t| &t.files);
        let rec = match start_server(server, mode, port, tls_files, &log, has_taskset) {
            Err(e) => record(Some(e), None),
            Ok(running) => {
                let res = run_loadgen(&ctx, sc, server, port, running.pid(), i);
                running.stop();
                match res {
                    Err(e) => record(Some(e), None),
                    Ok(v) => {
                        let errors = v.get("errors").and_then(|e| e.as_u64()).unwrap_or(0);
                        let failure = (errors > 0).then(|| format!("{errors} errors: {}", v["error_samples"]));
                        record(failure, Some(v))
                    }
                }
            }
        };
        match (&rec.failure, &rec.metrics) {
            (Some(f), _) => eprintln!("[bench-all]   FAILED: {f}"),
            (None, Some(m)) => eprintln!(
                "[bench-all]   msgs/s {:.0}  p50 {:.1} us  p99 {:.1} us  cpu {:.2} us/msg  rss/conn {:.0} B  server cpu \
                 {:.0}%  loadgen cpu {:.0}%{}",
                m.msgs_per_s.unwrap_or(f64::NAN),
                m.p50_us.unwrap_or(f64::NAN),
                m.p99_us.unwrap_or(f64::NAN),
                m.cpu_us_per_msg.unwrap_or(f64::NAN),
                m.rss_bytes_per_conn.unwrap_or(f64::NAN),
                m.server_cpu_util.unwrap_or(f64::NAN) * 100.0,
                m.loadgen_cpu_util.unwrap_or(f64::NAN) * 100.0,
                if m.generator_bound() { "  GENERATOR-BOUND" } else { "" }
            ),
            (None, None) => {}
        }
        runs.push(rec);
        // Keep every run on disk as it completes, so an interrupted run loses nothing.
        let partial = out.join("latest.raw.json");
        if let Ok(text) = serde_json::to_string(&runs) {
            let _ = std::fs::write(&partial, text);
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    let rows = report::summarize(&runs);
    let load_end = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mut pre = String::new();
    pre.push_str("## Side-by-side results (generated by `loadtest/run.sh`)\n\n");
    if args.smoke {
        pre.push_str(&format!(
            "> **Smoke run** ({} s per run, {} repetition(s)): proves the harness works; the numbers are not for \
             comparison.\n\n",
            args.duration, args.reps
        ));
    } else if args.duration < 10.0 || args.reps < 3 {
        pre.push_str(&format!(
            "> **Short run** ({} s per run, {} repetition(s), fewer than the default 10 s x 3): the ratios are \
             indicative; repeat with the defaults before quoting small differences.\n\n",
            args.duration, args.reps
        ));
    }
    pre.push_str(&format!(
        "Machine: {} ({} CPUs), Linux {}, {} RAM; {}. Commit {} on {}; load average {} at the start and {} at \
         the end (other work on the machine skews absolute figures).\n\n",
        fact(&machine, "cpu"),
        fact(&machine, "cpus"),
        fact(&machine, "kernel"),
        machine.get("memory").map_or("?", |s| s),
        fact(&machine, "rustc"),
        fact(&machine, "commit"),
        fact(&machine, "date"),
        fact(&machine, "loadavg_at_start"),
        load_end
    ));
    let mut versions = vec![
        format!("fastwebsockets {}", fact(&machine, "fastwebsockets")),
        format!("tokio-tungstenite {} (tokio {})", fact(&machine, "tokio-tungstenite"), fact(&machine, "tokio")),
    ];
    if let Some(b) = machine.get("bun") {
        versions.push(format!("Bun {b}"));
    }
    if let (Some(n), Some(w)) = (machine.get("node"), machine.get("ws")) {
        versions.push(format!("Node {n} + ws {w}"));
    }
    pre.push_str(&format!("Peers: {}.\n\n", versions.join(", ")));
    pre.push_str(&format!(
        "Method: server {} and `loadgen` {}; one server thread; {} repetition(s) of {} s measured after {} s warm-up, \
         servers alternating within each repetition, a fresh server process per run; medians shown. \"vs best peer\" \
         divides by the best peer of the same scenario (highest msgs/s, lowest CPU and memory); server CPU is \
         utime+stime from /proc/PID/stat over the measured window divided by the messages echoed (broadcast: \
         deliveries). \"loadgen CPU\" is the generator's own share of its core: above {:.0}% a run is marked \
         generator-bound (its msgs/s, and any msgs/s ratio it enters, is the generator's limit more than the \
         server's), and CPU per message is the figure to compare. Every echoed byte is checked; a run \
         with any error is excluded from the medians.\n",
        if has_taskset { "pinned to CPU 0" } else { "unpinned" },
        if has_taskset { "to CPU 1" } else { "unpinned" },
        args.reps,
        args.duration,
        args.warmup,
        report::GENERATOR_BOUND * 100.0
    ));
    if let Some(t) = &ctx.tls {
        pre.push_str(&format!(
            "\nTLS scenarios: TLS 1.3 only, loadgen offering one cipher suite (TLS13_AES_128_GCM_SHA256) and one key \
             exchange group ({:?}), ALPN http/1.1, SNI localhost; a {:?} leaf for localhost signed by a test CA made \
             for the run (the servers get the full chain); {}. loadgen is rustls (aws-lc-rs), the classic \
             ClientConnection.\n",
            t.kx,
            args.tls_key,
            if t.resume {
                "sessions resumed where the server allows it"
            } else {
                "no resumption: every handshake is a full one"
            }
        ));
    }
    let skipped: Vec<String> =
        all.iter().filter_map(|s| s.available.as_ref().err().map(|why| format!("{} ({why})", s.name))).collect();
    if !skipped.is_empty() {
        pre.push_str(&format!("\nServers not run: {}.\n", skipped.join("; ")));
    }
    if !skipped_scenarios.is_empty() {
        pre.push_str(&format!("\nScenarios not run: {}.\n", skipped_scenarios.join("; ")));
    }
    let descriptions: BTreeMap<String, String> = scs.iter().map(|s| (s.name.clone(), s.description.clone())).collect();
    let md = report::markdown(&pre, &rows, &descriptions, &report::paired_notes(&runs, &rows), Some("latest.svg"));
    let json = serde_json::json!({
        "preamble": pre,
        "machine": machine,
        "loadavg_at_end": load_end,
        "config": {
            "duration_s": args.duration, "warmup_s": args.warmup, "reps": args.reps, "smoke": args.smoke,
            "pinned": has_taskset, "idle": args.idle, "open_rates": args.open_rates,
            "idle_deflate": args.idle_deflate, "ringwire_deflate_level": args.ringwire_deflate_level,
            "open_file_limit": limit, "skipped_scenarios": skipped_scenarios,
            "idle_tls": args.idle_tls, "handshake_conns": args.handshake_conns,
            "tls": ctx.tls.as_ref().map(|t| serde_json::json!({
                "key": args.tls_key, "kx": t.kx, "resumption": t.resume,
                "version": "1.3", "cipher": "aes128",
            })),
        },
        "servers": all.iter().map(|s| serde_json::json!({
            "name": s.name, "kind": s.kind, "program": s.program.display().to_string(), "deflate": s.deflate,
            "skipped": s.available.as_ref().err(),
        })).collect::<Vec<_>>(),
        "summary": rows,
        "runs": runs,
    });
    let write = |name: &str, text: &str| -> Result<(), String> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("latest.json", &serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?)?;
    write("latest.md", &md)?;
    write("latest.svg", &report::svg(&rows))?;
    let failed = runs.iter().filter(|r| r.failure.is_some()).count();
    eprintln!(
        "[bench-all] done in {:.0}s: {} runs, {failed} failed; wrote {}/latest.{{json,md,svg}}",
        started.elapsed().as_secs_f64(),
        runs.len(),
        out.display()
    );
    if failed > 0 {
        return Err(format!("{failed} run(s) failed (see latest.json and {})", logs.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_scenarios_run_only_on_servers_with_topics_in_their_topic_mode() {
        let args = Args::parse_from(["bench-all"]);
        let all = servers(Path::new("/repo"), Path::new("/bin"));
        let scs = scenarios(&args);
        let find = |n: &str| scs.iter().find(|s| s.name == n).expect("scenario");
        let (fanout, broadcast) = (find("fanout-10k"), find("broadcast"));
        let on: Vec<(&str, &str)> =
            all.iter().filter(|s| fanout.runs_on(s)).map(|s| (s.name.as_str(), fanout.mode(s))).collect();
        assert_eq!(on, [("ringwire", "broadcast"), ("bun", "topic")]);
        assert!(fanout.loadgen.windows(2).any(|w| w == ["--path", "/bench/topic"]), "{:?}", fanout.loadgen);
        assert_eq!(fanout.conns, 10_001);
        // The plain broadcast still runs everywhere that broadcasts, Bun in broadcast mode.
        let bun = all.iter().find(|s| s.name == "bun").expect("bun");
        assert!(broadcast.runs_on(bun) && broadcast.mode(bun) == "broadcast");
        assert_eq!(all.iter().filter(|s| broadcast.runs_on(s)).count(), 5, "every server but the TCP floor");
        let echo = find("echo-small");
        assert_eq!(echo.mode(bun), "echo");
    }

    #[test]
    fn a_ringwire_variant_is_ringwire_with_more_arguments() {
        let all = servers(Path::new("/repo"), Path::new("/bin"));
        let rw = all.iter().find(|s| s.name == "ringwire").expect("ringwire");
        let v = ringwire_variants(&all, &["b128=--recv-buffer-size 128KiB".into()]).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].name.as_str(), v[0].base, v[0].kind), ("ringwire-b128", "ringwire", ServerKind::Ringwire));
        assert_eq!(v[0].args[..rw.args.len()], rw.args[..]);
        assert_eq!(v[0].args[rw.args.len()..], ["--recv-buffer-size", "128KiB"]);
        for bad in ["b128", "=--x", "a b=--x"] {
            assert!(ringwire_variants(&all, &[bad.into()]).is_err(), "{bad}");
        }
        // A name taken already (by a deflate variant, or twice).
        let mut with_deflate = all.clone();
        with_deflate.extend(deflate_variants(&all, 6));
        assert!(ringwire_variants(&with_deflate, &["shared=--x".into()]).is_err());
        assert!(ringwire_variants(&all, &["a=--x".into(), "a=--y".into()]).is_err());
    }
}
