//! The `ringwire` command line: flags, their parsing, and the config they build.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringwire::bus::BusConfig;
use ringwire::conn::deflate::DeflateConfig;
use ringwire::conn::{Config as ConnConfig, Keepalive};
use ringwire::io::IoChoice;
use ringwire::server::ServerConfig;
use ringwire::tls::{CertKeyPem, ServerTlsConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// ringwire: a WebSocket server on io_uring, one thread per core.
#[derive(Debug, Parser)]
#[command(name = "ringwire", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// What to serve.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The servers the binary runs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Echo every message back to its sender (text as text, binary as binary).
    Echo(ServeArgs),
    /// Topics by path: every message a client sends goes to every client connected on the
    /// same request path (ws://host/chat/room1 is topic /chat/room1), across all workers.
    Broadcast(BroadcastArgs),
}

/// `broadcast`'s flags: those of `echo`, and its own.
#[derive(Debug, Args)]
pub(crate) struct BroadcastArgs {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Do not send a client's message back to it (the others on its path still get it).
    #[arg(long)]
    pub(crate) no_echo: bool,
    /// Join the other ringwire processes on a message bus: redis://HOST:PORT[/CHANNEL-PREFIX]
    /// (Redis pub/sub) or nats://HOST:PORT[/SUBJECT-PREFIX] (NATS core). Each process
    /// subscribes at the broker to the topics it has clients on (one subscription per
    /// topic, not per client), publishes what its clients send, and delivers what the
    /// others publish to its own clients; at most once. A lost broker is reconnected with
    /// backoff (local clients are served meanwhile); what could not be passed on is
    /// counted, logged at 1, 2, 4, 8, ... and summed up at exit. Unreachable at start: exit 1.
    #[arg(long, value_name = "URL", value_parser = parse_bus)]
    pub(crate) bus: Option<BusConfig>,
    /// With --bus: if the broker cannot be reached at start, wait for it (retrying with
    /// backoff) instead of exiting; the port is bound already, and clients that connect
    /// meanwhile wait in its backlog until the server starts serving.
    #[arg(long, requires = "bus")]
    pub(crate) bus_wait: bool,
}

/// Flags shared by `echo` and `broadcast`. Sizes take K/KiB/M/MiB/G/GiB suffixes
/// (powers of two); durations take ms/s/m suffixes (plain numbers are seconds).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001", value_name = "IP:PORT")]
    pub(crate) addr: SocketAddr,
    /// Port to listen on (overrides the port of --addr).
    #[arg(long, short = 'p')]
    pub(crate) port: Option<u16>,
    /// Worker threads, each with its own event loop (0 = one per core).
    #[arg(long, short = 't', default_value_t = 0, value_name = "N")]
    pub(crate) threads: usize,
    /// I/O backend: auto (io_uring if usable, else epoll), uring (required), epoll.
    #[arg(long, default_value = "auto", value_name = "auto|uring|epoll", value_parser = parse_io)]
    pub(crate) io: IoChoice,
    /// Most open connections across all workers; more get 503. Each needs a file
    /// descriptor: the start-up line gives the limit, and a warning says when this is
    /// above what it allows.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub(crate) max_connections: usize,
    /// Most open connections (handshaking included) from one client IP address, across
    /// all workers; more get 503 (0 = no limit).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) max_connections_per_ip: usize,
    /// Largest frame accepted; larger closes with 1009.
    #[arg(long, default_value = "64KiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_frame_size: usize,
    /// Largest message accepted (all its frames together); larger closes with 1009.
    #[arg(long, default_value = "1MiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_message_size: usize,
    /// Most bytes queued for a peer that does not read; beyond it the peer is dropped
    /// with 1008 (0 = no limit).
    ///
    /// The default is below the library's (64 MiB) on purpose: this server only sends
    /// messages it received, so none it queues is larger than --max-message-size (1 MiB
    /// by default), and 16 MiB holds 16 of those for a slow reader. Raise it with
    /// --max-message-size: the echo of one message needs a little more than its size.
    #[arg(long, default_value = "16MiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_buffered: usize,
    /// Split outgoing messages into frames of this size (0 = never split).
    #[arg(long, default_value = "16KiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) fragment_size: usize,
    /// Time to wait for the peer's close frame after sending ours; then, once the socket
    /// closes, the most it may take to write what is queued before it is reset.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) close_timeout: Duration,
    /// Time a client has to send its upgrade request.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) handshake_timeout: Duration,
    /// Ping a peer that has been silent this long (0 = no keepalive pings).
    #[arg(long, default_value = "20s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) keepalive_interval: Duration,
    /// After a keepalive ping, drop the peer (1006) if nothing arrives within this.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) keepalive_grace: Duration,
    /// Close a connection with no traffic either way for this long (0 = never).
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
    /// A subprotocol to accept (repeat or comma-separate). Of those a client offers, the
    /// first in the client's order that is listed here is chosen; the order here does
    /// not matter.
    #[arg(long = "protocol", value_name = "NAME", value_delimiter = ',')]
    pub(crate) protocols: Vec<String>,
    /// An origin allowed to connect (repeat or comma-separate); others, and requests
    /// without an Origin, get 403. Without this flag a browser may connect only from a
    /// page of the same host[:port] as the Host it asks for (cross-site WebSocket
    /// hijacking would otherwise be open to a site that uses cookies); requests
    /// without Origin (programs, not browsers) pass.
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_delimiter = ',')]
    pub(crate) allowed_origins: Vec<String>,
    /// Accept any Origin, or none: for a server that uses no cookies or other
    /// credentials a browser sends by itself.
    #[arg(long, conflicts_with = "allowed_origins")]
    pub(crate) allow_any_origin: bool,
    /// A host name this server answers to (the Host header without its port; repeat or
    /// comma-separate); other Host values get 403. Without this flag a server on a
    /// loopback address accepts only localhost, *.localhost, 127.0.0.0/8 and [::1], so a
    /// web page cannot reach it through a name it controls that resolves to 127.0.0.1
    /// (DNS rebinding); on any other address every Host is accepted.
    #[arg(long = "allow-host", value_name = "NAME", value_delimiter = ',')]
    pub(crate) allowed_hosts: Vec<String>,
    /// Accept any Host header, even on a loopback address.
    #[arg(long, conflicts_with = "allowed_hosts")]
    pub(crate) allow_any_host: bool,
    /// On SIGINT/SIGTERM, how long to flush and close connections (1001) before
    /// aborting those still open. A second signal exits at once.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) shutdown_timeout: Duration,
    /// How long to keep retrying while the address is in use (a previous instance may
    /// still be releasing the port, e.g. right after a crash); 0 = fail at once.
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) bind_retry: Duration,
    /// Commands each worker queues from other threads (broadcasts) before refusing more.
    #[arg(long, default_value_t = 65_536, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) mailbox_capacity: u32,
    /// io_uring receive buffers per worker (a power of two); shared by all connections.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub(crate) recv_buffers: u16,
    /// io_uring submission queue entries per worker.
    #[arg(long, default_value_t = 4096, value_name = "N", value_parser = clap::value_parser!(u32).range(8..=32768))]
    pub(crate) ring_entries: u32,
    /// io_uring completion queue entries per worker (at least --ring-entries; 0 = sized for
    /// --max-connections, between twice --ring-entries and 65536).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub(crate) cq_entries: u32,
    /// Size of each io_uring receive buffer. On Linux 6.12+ several receives fill one buffer
    /// in turn; before that each receive takes a whole buffer, and buffers over 32 KiB are
    /// split into 32 KiB ones (the same memory). The epoll backend does not use it: it reads
    /// every socket of a worker into one fixed 64 KiB buffer.
    #[arg(long, default_value = "256KiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) recv_buffer_size: usize,
    /// Make every io_uring receive take a whole buffer, as before Linux 6.12, at the sizes
    /// given (with the defaults, 128 receives of 256 KiB: add `--recv-buffers 1024
    /// --recv-buffer-size 32KiB` for the older kernels' geometry).
    #[arg(long)]
    pub(crate) whole_recv_buffers: bool,
    /// A proxy whose X-Forwarded-For is trusted (repeat or comma-separate). Default: none.
    #[arg(long = "trust-proxy", value_name = "IP", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<IpAddr>,
    /// Accept permessage-deflate (RFC 7692) when a client offers it (off by default).
    /// shared: no context takeover either way, so no compression state per connection
    /// (one compressor and one decompressor per worker, a broadcast compressed once);
    /// dedicated: each connection keeps its compression context (better ratio; zlib's
    /// memory per connection, see --deflate-window-bits and --deflate-mem-level).
    #[arg(long, value_name = "shared|dedicated", num_args = 0..=1, default_missing_value = "shared")]
    pub(crate) deflate: Option<DeflateMode>,
    /// Dedicated mode: the most window bits (9-15) either side compresses with; a
    /// connection's compressor takes 2^(bits+2) bytes for its window, a 128 KiB hash
    /// table and the memory level's share (272 KB at 15 bits and memory level 4).
    #[arg(long, default_value_t = 15, value_name = "9-15", value_parser = clap::value_parser!(u8).range(9..=15))]
    pub(crate) deflate_window_bits: u8,
    /// Memory level (1-9) of the compressors: their symbol buffers, 7 * 2^(level+6)
    /// bytes, on top of a 128 KiB hash table and 2^(bits+2) bytes of window.
    #[arg(long, default_value_t = 4, value_name = "1-9", value_parser = clap::value_parser!(u8).range(1..=9))]
    pub(crate) deflate_mem_level: u8,
    /// Compression level (0-9; 1 is fastest, 9 smallest).
    #[arg(long, default_value_t = 6, value_name = "0-9", value_parser = clap::value_parser!(u32).range(0..=9))]
    pub(crate) deflate_level: u32,
    /// Messages shorter than this are sent uncompressed.
    #[arg(long, default_value = "0", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) deflate_threshold: usize,
    /// Serve TLS (wss://) with this certificate chain (PEM, leaf first); needs --tls-key.
    /// SIGHUP reads the files again (new connections get the new pair; on an error the
    /// old one stays, logged).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Another certificate, served to clients asking for NAME by SNI (`example.com` or
    /// `*.example.com`); repeatable. --tls-cert is then the default for other names;
    /// without it, other names are refused.
    #[arg(long, value_name = "NAME=CERT,KEY", value_parser = parse_sni)]
    pub(crate) tls_sni: Vec<(String, PathBuf, PathBuf)>,
    /// TLS handshake steps per worker per loop turn; the rest wait a turn, so a storm of
    /// handshakes cannot stall established connections.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) tls_handshakes_per_turn: u32,
    /// Serve GET /metrics (Prometheus) and GET /healthz (200 while accepting, 503 once
    /// draining) on a listener of their own at IP:PORT. Off by default.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Also answer GET /metrics and GET /healthz on the WebSocket port (plain HTTP
    /// requests, not upgrades), for deployments with one port.
    #[arg(long)]
    pub(crate) metrics_on_ws_port: bool,
    /// Log lines on stderr as text, or as JSON (one object per line, for log pipelines).
    #[arg(long, default_value = "text", value_name = "text|json")]
    pub(crate) log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How `--deflate` keeps compression state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeflateMode {
    /// No context takeover either way: nothing per connection.
    Shared,
    /// Context takeover: each connection keeps its own compressor and decompressor.
    Dedicated,
}

impl ServeArgs {
    /// Checks what one flag's parser cannot: a one-line error naming the flags.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.cq_entries != 0 && self.cq_entries < self.ring_entries {
            return Err(format!(
                "--cq-entries {} is below --ring-entries {} (use 0 to size it for --max-connections)",
                self.cq_entries, self.ring_entries
            ));
        }
        if let Some(tls) = self.tls() {
            tls.build().map_err(|e| format!("{}: {e}", self.tls_flags()))?;
        }
        Ok(())
    }

    /// The TLS flags given, for error lines.
    fn tls_flags(&self) -> &'static str {
        match (self.tls_cert.is_some(), self.tls_sni.is_empty()) {
            (true, true) => "--tls-cert/--tls-key",
            (true, false) => "--tls-cert/--tls-key/--tls-sni",
            (false, _) => "--tls-sni",
        }
    }

    /// The TLS config the flags describe, if any.
    fn tls(&self) -> Option<ServerTlsConfig> {
        let mut tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ServerTlsConfig::new(CertKeyPem::files(cert, key)),
            _ if !self.tls_sni.is_empty() => ServerTlsConfig::sni_only(),
            _ => return None,
        };
        for (name, cert, key) in &self.tls_sni {
            tls = tls.with_sni(name.clone(), CertKeyPem::files(cert, key));
        }
        Some(tls)
    }

    /// The server configuration these flags describe.
    pub(crate) fn to_config(&self) -> ServerConfig {
        let mut addr = self.addr;
        if let Some(port) = self.port {
            addr.set_port(port);
        }
        let mut conn = ConnConfig::server();
        conn.max_received_frame_size = self.max_frame_size;
        conn.max_received_message_size = self.max_message_size;
        conn.max_buffered = (self.max_buffered > 0).then_some(self.max_buffered);
        conn.fragment_outgoing_messages = self.fragment_size > 0;
        if self.fragment_size > 0 {
            conn.fragmentation_threshold = self.fragment_size;
        }
        conn.close_timeout = self.close_timeout;
        conn.keepalive =
            (!self.keepalive_interval.is_zero()).then(|| Keepalive::new(self.keepalive_interval, self.keepalive_grace));
        conn.idle_timeout = (!self.idle_timeout.is_zero()).then_some(self.idle_timeout);
        conn.deflate = self.deflate.map(|mode| {
            let mut d = DeflateConfig::default();
            let shared = mode == DeflateMode::Shared;
            d.server_no_context_takeover = shared;
            d.client_no_context_takeover = shared;
            d.server_max_window_bits = self.deflate_window_bits;
            d.client_max_window_bits = self.deflate_window_bits;
            d.mem_level = self.deflate_mem_level;
            d.level = self.deflate_level;
            d.threshold = self.deflate_threshold;
            d
        });
        let mut cfg = ServerConfig::new(addr)
            .with_threads(self.threads)
            .with_io(self.io)
            .with_connection(conn)
            .with_subprotocols(self.protocols.clone())
            .with_allowed_origins(self.allowed_origins.clone())
            .with_trusted_proxies(self.trusted_proxies.clone());
        cfg.max_connections = self.max_connections;
        cfg.max_connections_per_ip = (self.max_connections_per_ip > 0).then_some(self.max_connections_per_ip);
        cfg.allow_any_origin = self.allow_any_origin;
        cfg.allowed_hosts = self.allowed_hosts.clone();
        cfg.allow_any_host = self.allow_any_host;
        cfg.shutdown_timeout = self.shutdown_timeout;
        cfg.bind_retry = self.bind_retry;
        cfg.mailbox_capacity = self.mailbox_capacity as usize;
        cfg.event_loop.flush_timeout = self.close_timeout;
        cfg.event_loop.ring_entries = self.ring_entries;
        cfg.event_loop.cq_entries = self.cq_entries;
        cfg.event_loop.buf_count = self.recv_buffers;
        cfg.event_loop.buf_size = u32::try_from(self.recv_buffer_size).unwrap_or(u32::MAX);
        cfg.event_loop.buf_incremental = !self.whole_recv_buffers;
        cfg.handshake_timeout = self.handshake_timeout;
        cfg.tls = self.tls();
        cfg.tls_handshakes_per_turn = self.tls_handshakes_per_turn as usize;
        cfg
    }
}

/// `NAME=CERT,KEY` of --tls-sni.
fn parse_sni(s: &str) -> Result<(String, PathBuf, PathBuf), String> {
    let (name, files) = s.split_once('=').ok_or("expected NAME=CERT,KEY")?;
    let (cert, key) = files.split_once(',').ok_or("expected NAME=CERT,KEY")?;
    if name.is_empty() || cert.is_empty() || key.is_empty() {
        return Err("expected NAME=CERT,KEY".to_owned());
    }
    Ok((name.to_owned(), cert.into(), key.into()))
}

fn parse_bus(s: &str) -> Result<BusConfig, String> {
    // BusConfig's errors name the URL already ("bus URL x: ...").
    BusConfig::parse(s).map_err(|e| match e {
        ringwire::bus::BusError::Url { why, .. } => why,
        other => other.to_string(),
    })
}

fn parse_io(s: &str) -> Result<IoChoice, String> {
    s.parse::<IoChoice>().map_err(|_| "expected auto, uring or epoll".to_owned())
}

/// Parses `1024`, `64K`, `64KiB`, `16MiB`, `1G` (powers of two).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 65536, 64KiB, 16MiB)"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use K, KiB, M, MiB, G or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// Parses `5` (seconds), `5s`, `500ms`, `2m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 5s, 500ms, 2m)"))?;
    Ok(match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        other => return Err(format!("unknown duration unit '{other}' (use ms, s or m)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("x").is_err());
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn deflate_flags_build_the_deflate_config() {
        let deflate = |args: &[&str]| {
            let cli = Cli::try_parse_from(["ringwire", "echo"].iter().chain(args)).map_err(|e| e.to_string())?;
            let Command::Echo(a) = cli.command else { panic!("echo") };
            Ok::<_, String>(a.to_config().connection.deflate)
        };
        assert_eq!(deflate(&[]).unwrap(), None, "off by default");
        let shared = deflate(&["--deflate"]).unwrap().expect("on");
        assert!(shared.server_no_context_takeover && shared.client_no_context_takeover);
        let d = deflate(&["--deflate", "dedicated", "--deflate-window-bits", "12", "--deflate-threshold", "1KiB"])
            .unwrap()
            .expect("on");
        assert!(!d.server_no_context_takeover && !d.client_no_context_takeover);
        assert_eq!((d.server_max_window_bits, d.client_max_window_bits, d.threshold), (12, 12, 1024));
        let e = deflate(&["--deflate", "--deflate-window-bits", "8"]).unwrap_err();
        assert!(e.contains("--deflate-window-bits"), "{e}");
        assert!(deflate(&["--deflate", "fast"]).unwrap_err().contains("--deflate"));
    }

    #[test]
    fn flags_build_the_config() {
        let cli = Cli::try_parse_from([
            "ringwire",
            "echo",
            "--port",
            "9100",
            "--max-frame-size",
            "16MiB",
            "--keepalive-interval",
            "0",
            "--protocol",
            "chat,superchat",
            "--io",
            "epoll",
        ])
        .unwrap();
        let Command::Echo(args) = cli.command else { panic!("echo") };
        let cfg = args.to_config();
        assert_eq!(cfg.addr.port(), 9100);
        assert_eq!(cfg.connection.max_received_frame_size, 16 << 20);
        assert!(cfg.connection.keepalive.is_none());
        assert_eq!(cfg.subprotocols, ["chat", "superchat"]);
        assert_eq!(cfg.io, IoChoice::Epoll);
    }

    fn config(args: &[&str]) -> ServerConfig {
        let cli = Cli::try_parse_from(["ringwire", "echo"].iter().chain(args)).unwrap();
        let Command::Echo(args) = cli.command else { panic!("echo") };
        args.to_config()
    }

    #[test]
    fn hardening_flags_build_the_config() {
        let d = config(&[]);
        assert_eq!(d.max_connections_per_ip, None);
        assert!(!d.allow_any_origin && !d.allow_any_host && d.allowed_hosts.is_empty());
        assert_eq!((d.shutdown_timeout, d.bind_retry), (Duration::from_secs(10), Duration::from_secs(3)));
        assert_eq!(d.mailbox_capacity, 65_536);

        let c = config(&[
            "--max-connections-per-ip",
            "8",
            "--allow-host",
            "a.example,b.example",
            "--allow-host",
            "c.example",
            "--allow-any-origin",
            "--shutdown-timeout",
            "2s",
            "--bind-retry",
            "500ms",
            "--mailbox-capacity",
            "1024",
        ]);
        assert_eq!(c.max_connections_per_ip, Some(8));
        assert_eq!(c.allowed_hosts, ["a.example", "b.example", "c.example"]);
        assert!(c.allow_any_origin);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(c.bind_retry, Duration::from_millis(500));
        assert_eq!(c.mailbox_capacity, 1024);

        let c = config(&["--allow-any-host", "--max-connections-per-ip", "0", "--bind-retry", "0"]);
        assert!(c.allow_any_host);
        assert_eq!(c.max_connections_per_ip, None, "0 = no limit");
        assert_eq!(c.bind_retry, Duration::ZERO);
    }

    #[test]
    fn bad_flag_names_the_flag() {
        let err = Cli::try_parse_from(["ringwire", "echo", "--threads", "many"]).unwrap_err();
        assert!(err.to_string().contains("--threads"), "{err}");
        let err = Cli::try_parse_from(["ringwire", "echo", "--io", "kqueue"]).unwrap_err();
        assert!(err.to_string().contains("--io"), "{err}");
        for (args, flag) in [
            (&["--max-connections-per-ip", "lots"][..], "--max-connections-per-ip"),
            (&["--shutdown-timeout", "soon"][..], "--shutdown-timeout"),
            (&["--bind-retry", "5h"][..], "--bind-retry"),
            (&["--mailbox-capacity", "0"][..], "--mailbox-capacity"),
            (&["--allow-any-origin", "--allow-origin", "https://a.example"][..], "--allow-any-origin"),
            (&["--allow-any-host", "--allow-host", "a.example"][..], "--allow-any-host"),
            (&["--ring-entries", "4"][..], "--ring-entries"),
            (&["--cq-entries", "70000"][..], "--cq-entries"),
            (&["--metrics-addr", "localhost"][..], "--metrics-addr"),
            (&["--log-format", "xml"][..], "--log-format"),
        ] {
            let err = Cli::try_parse_from(["ringwire", "echo"].iter().chain(args)).unwrap_err();
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
        Cli::command().debug_assert();
    }

    #[test]
    fn ring_flags_size_the_loop() {
        let parse = |extra: &[&str]| {
            let cli = Cli::try_parse_from(["ringwire", "echo", "--threads", "2"].iter().chain(extra)).unwrap();
            let Command::Echo(args) = cli.command else { panic!("echo") };
            args
        };
        let args = parse(&["--ring-entries", "64", "--cq-entries", "32"]);
        let err = args.check().unwrap_err();
        assert!(err.contains("--cq-entries 32") && err.contains("--ring-entries 64"), "{err}");
        let cfg = parse(&["--ring-entries", "64", "--cq-entries", "128", "--close-timeout", "2s"]).to_config();
        let lc = cfg.resolved_event_loop();
        assert_eq!((lc.ring_entries, lc.cq_entries), (64, 128), "an explicit CQ size is kept");
        assert_eq!(lc.flush_timeout, Duration::from_secs(2), "--close-timeout bounds the flush too");
        // 0: sized for the connections of one worker, within [2 x ring entries, 65536].
        let sized = |m: &str| parse(&["--max-connections", m]).to_config().resolved_event_loop().cq_entries;
        assert_eq!(sized("100000"), 65_536);
        assert_eq!(sized("30000"), 16_384);
        assert_eq!(sized("100"), 8_192, "at least twice the default 4096 ring entries");
    }
}
