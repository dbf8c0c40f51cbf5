//! The `ringwire` binary: `ringwire echo` and `ringwire broadcast`.

mod cli;

use clap::Parser;
use clap::error::ErrorKind;
use cli::{BroadcastArgs, Cli, Command};
use ringwire::bus::{BusError, ServerBus};
use ringwire::conn::handshake::Request;
use ringwire::conn::{Message, PreparedMessage};
use ringwire::server::{Decision, Handler, MAX_TOPIC_LEN, Server, Ws};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sends every message back to its sender.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, message: Message) {
        // BufferFull still queues; a peer that never reads is dropped by the buffered limit.
        ws.send(message);
    }
}

/// The request path is the topic: every message a client sends goes to every client
/// connected on the same path (on any worker, and on every process on the bus), the
/// sender included unless `--no-echo`.
#[derive(Clone)]
struct Broadcast {
    echo: bool,
    /// The path of the request just accepted: `on_open` follows at once and subscribes.
    accepted: Option<String>,
    /// When this worker last warned of a publish other workers missed.
    warned: Option<Instant>,
}

impl Broadcast {
    fn new(echo: bool) -> Self {
        Self { echo, accepted: None, warned: None }
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

fn main() -> ExitCode {
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (name, args) = match &cli.command {
        Command::Echo(a) => ("echo", a),
        Command::Broadcast(a) => ("broadcast", &a.serve),
    };
    if let Err(e) = args.check() {
        eprintln!("ringwire: {e}");
        return ExitCode::from(2);
    }
    let cfg = args.to_config();
    let scheme = if cfg.tls.is_some() { "wss" } else { "ws" };
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
    let server = match Server::bind(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringwire: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    // Signals are handled from here on: a SIGTERM right after the start-up line shuts
    // down gracefully rather than killing the process.
    ringwire::server::shutdown_on_signals(server.handle());
    println!(
        "ringwire {name} listening on {scheme}://{} ({}, {threads} worker(s), {nofile} file descriptors{bus_line})",
        server.local_addr(),
        server.backend().backend,
    );
    let result = match cli.command {
        Command::Echo(_) => server.run(Echo),
        Command::Broadcast(a) => server.run(Broadcast::new(!a.no_echo)),
    };
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
