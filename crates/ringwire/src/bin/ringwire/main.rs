//! The `ringwire` binary: `ringwire echo` and `ringwire broadcast`.

mod cli;

use clap::Parser;
use clap::error::ErrorKind;
use cli::{BroadcastArgs, Cli, Command, LogFormat};
use ringwire::bus::{BusError, ServerBus};
use ringwire::conn::handshake::{PlainRequest, Request};
use ringwire::conn::{Message, PreparedMessage};
use ringwire::metrics::Metrics;
use ringwire::server::{Decision, Handler, HttpResponse, MAX_TOPIC_LEN, Server, Ws};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sends every message back to its sender; answers /metrics and /healthz with
/// `--metrics-on-ws-port`.
#[derive(Clone)]
struct Echo {
    metrics: Option<Metrics>,
}

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        // BufferFull still queues; a peer that never reads is dropped by the buffered limit.
        ws.send(message);
    }

    fn on_http(&mut self, request: &PlainRequest) -> Option<HttpResponse> {
        self.metrics.as_ref()?.answer(request)
    }
}

/// The request path is the topic: every message a client sends goes to every client
/// connected on the same path (on any worker, and on every process on the bus), the
/// sender included unless `--no-echo`.
#[derive(Clone)]
struct Broadcast {
    echo: bool,
    /// With `--metrics-on-ws-port`: answers /metrics and /healthz.
    metrics: Option<Metrics>,
    /// The path of the request just accepted: `on_open` follows at once and subscribes.
    accepted: Option<String>,
    /// When this worker last warned of a publish other workers missed.
    warned: Option<Instant>,
}

impl Broadcast {
    fn new(echo: bool, metrics: Option<Metrics>) -> Self {
        Self { echo, metrics, accepted: None, warned: None }
    }
}

impl Handler for Broadcast {
    fn on_request(&mut self, request: &Request, supported_protocols: &[String]) -> Decision {
        if request.path.len() > MAX_TOPIC_LEN {
            return Decision::reject(414, format!("the path (the topic) is longer than {MAX_TOPIC_LEN} bytes"));
        }
        self.accepted = Some(request.path.clone());
        Decision::by_default(request, supported_protocols)
    }

    fn on_http(&mut self, request: &PlainRequest) -> Option<HttpResponse> {
        self.metrics.as_ref()?.answer(request)
    }

    fn on_open(&mut self, ws: &mut Ws<'_>) {
        if let Some(path) = self.accepted.take() {
            // Cannot fail: one topic, its length checked above.
            let _ = ws.subscribe(&path);
        }
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        let Some(topic) = ws.topics().next().cloned() else { return };
        // With echo, the sender gets its message in the same order as the others on its
        // worker (a send of its own would overtake the turn's earlier publishes).
        let message = PreparedMessage::from(message);
        let published =
            if self.echo { ws.publish_including_self(&topic, message) } else { ws.publish(&topic, message) };
        if let Err(e) = published {
            // Other workers too busy to take it (their mailboxes are full): their clients
            // miss this message. Said at most once a second per worker.
            if self.warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                self.warned = Some(Instant::now());
                tracing::warn!(error = %e, "message not delivered everywhere (see --mailbox-capacity)");
            }
        }
    }
}

/// Descriptors kept for other uses than connections: stdio, and per worker its
/// listener, ring or epoll instance and eventfd, with room to spare.
fn reserved_descriptors(threads: usize) -> u64 {
    64 + 4 * threads as u64
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does (and nginx's
/// `worker_rlimit_nofile`): the usual soft limit of 1,024 would make accept fail long
/// before `--max-connections`. Returns the soft limit in force afterwards.
fn raise_descriptor_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one
        // needs no privilege and affects only this process.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, soft = lim.rlim_cur, hard = lim.rlim_max, "cannot raise the descriptor limit");
            return Ok(lim.rlim_cur);
        }
        return Ok(lim.rlim_max);
    }
    Ok(lim.rlim_cur)
}

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for huge pages on its heap, which then becomes resident in
/// 2 MiB steps: with 10,000 idle connections that is ~0.85 KB of RSS per connection
/// instead of ~0.4 KB (docs/scaling.md, "Huge pages"). Servers holding many small
/// connections are better off without them, as Redis and others advise.
fn disable_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and affects only this process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the main thread before any other thread starts, so
/// that every thread inherits the mask and the signal thread
/// ([`ringwire::server::shutdown_on_signals`]) is the only one that takes them: a thread
/// started with the default actions (the bus's, say) would let SIGTERM kill the process.
fn block_signals() {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it fully, and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn main() -> ExitCode {
    block_signals();
    disable_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // One line naming the flag, e.g. "ringwire: invalid value 'x' for '--threads <N>': ...".
            // A first line ending in ':' ("required arguments were not provided:") is
            // followed by what it names.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            match lines.next().filter(|_| first.ends_with(':')) {
                Some(what) => eprintln!("ringwire: {first} {what}"),
                None => eprintln!("ringwire: {first}"),
            }
            return ExitCode::from(2);
        }
    };
    let (name, args) = match &cli.command {
        Command::Echo(a) => ("echo", a),
        Command::Broadcast(a) => ("broadcast", &a.serve),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    if let Err(e) = args.check() {
        eprintln!("ringwire: {e}");
        return ExitCode::from(2);
    }
    let cfg = args.to_config();
    let threads = cfg.resolved_threads();
    let nofile = match raise_descriptor_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit");
            0
        }
    };
    let usable = nofile.saturating_sub(reserved_descriptors(threads));
    if nofile > 0 && cfg.max_connections as u64 > usable {
        tracing::warn!(
            "--max-connections {} is above what the descriptor limit allows (RLIMIT_NOFILE {nofile}: about \
             {usable} connections); beyond that, accepts fail instead of answering 503. Raise the hard \
             limit (ulimit -Hn, systemd LimitNOFILE=) or lower --max-connections",
            cfg.max_connections
        );
    }
    // For the start-up event: the server takes the config.
    let effective = cfg.clone();
    let server = match Server::bind(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringwire: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signals are handled from here on: a SIGTERM after the port is bound shuts down
    // gracefully rather than killing the process (the threads started below, the bus's
    // and the metrics listener's, inherit the mask `block_signals` set). While --bus-wait
    // waits for the broker, a first SIGTERM is noted and a second exits at once.
    ringwire::server::shutdown_on_signals(server.handle());
    let (server, bus_line, bus) = match &cli.command {
        Command::Broadcast(BroadcastArgs { bus: Some(config), bus_wait, .. }) => {
            let mut config = config.clone();
            config.wait_at_start = *bus_wait;
            match ServerBus::connect(config.clone(), &server) {
                Ok(bus) => (server.with_bus(bus.clone()), format!(", bus {}", config.redacted_url()), Some(bus)),
                Err(BusError::Connect { url, source }) => {
                    eprintln!("ringwire: --bus {url}: cannot connect: {source}");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("ringwire: --bus: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => (server, String::new(), None),
    };
    let metrics = (args.metrics_addr.is_some() || args.metrics_on_ws_port).then(|| match &bus {
        Some(bus) => Metrics::new(&server).with_source(Arc::clone(bus)),
        None => Metrics::new(&server),
    });
    let metrics_server = match (args.metrics_addr, &metrics) {
        (Some(addr), Some(m)) => match m.clone().serve_with(addr, args.io) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("ringwire: --metrics-addr {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let ws_metrics = metrics.filter(|_| args.metrics_on_ws_port);
    let scheme = if effective.tls.is_some() { "wss" } else { "ws" };
    let backend = server.backend().backend;
    let mut metrics_line = String::new();
    if let Some(m) = &metrics_server {
        metrics_line = format!(", metrics http://{}/metrics", m.local_addr());
    }
    if ws_metrics.is_some() {
        metrics_line.push_str(", metrics on the WebSocket port");
    }
    println!(
        "ringwire {name} listening on {scheme}://{} ({backend}, {threads} worker(s), {nofile} file descriptors{bus_line}{metrics_line})",
        server.local_addr(),
    );
    let c = &effective.connection;
    tracing::info!(
        server = name,
        addr = %server.local_addr(),
        tls = effective.tls.is_some(),
        backend = %backend,
        backend_reason = %server.backend().reason,
        workers = threads,
        file_descriptors = nofile,
        max_connections = effective.max_connections,
        max_connections_per_ip = effective.max_connections_per_ip.unwrap_or(0),
        max_message_size = c.max_received_message_size,
        max_frame_size = c.max_received_frame_size,
        max_buffered = c.max_buffered.unwrap_or(0),
        handshake_timeout_ms = effective.handshake_timeout.as_millis() as u64,
        idle_timeout_ms = c.idle_timeout.map_or(0, |d| d.as_millis() as u64),
        keepalive_interval_ms = c.keepalive.as_ref().map_or(0, |k| k.interval.as_millis() as u64),
        deflate = c.deflate.is_some(),
        metrics_addr = metrics_server.as_ref().map(|m| m.local_addr().to_string()),
        metrics_on_ws_port = ws_metrics.is_some(),
        bus = bus.as_ref().map(|b| b.stats().url),
        "started"
    );
    let result = match cli.command {
        Command::Echo(_) => server.run(Echo { metrics: ws_metrics }),
        Command::Broadcast(a) => server.run(Broadcast::new(!a.no_echo, ws_metrics)),
    };
    // The metrics listener answered (503 on /healthz) while the server drained.
    if let Some(m) = metrics_server
        && let Err(e) = m.shutdown()
    {
        tracing::warn!(error = %e, "metrics listener");
    }
    if let Some(bus) = bus {
        let (stats, missed) = (bus.stats(), bus.local_missed());
        tracing::info!(
            published = stats.published,
            publish_dropped = stats.publish_dropped,
            received = stats.received,
            receive_dropped = stats.receive_dropped,
            not_delivered_here = missed,
            reconnects = stats.reconnects,
            "bus {}",
            stats.url
        );
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringwire: {e}");
            ExitCode::FAILURE
        }
    }
}
