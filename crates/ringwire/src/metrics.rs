//! Prometheus metrics and a health check for a [`Server`], with the
//! official `prometheus-client` crate (feature `metrics`, on by default).
//!
//! [`Metrics`] reads [`ServerHandle::stats`] (and a bus's counters) at scrape time: the
//! workers publish their counters once per loop turn and nothing here touches them
//! otherwise. It answers two paths:
//!
//! - `GET /metrics`: every counter in the OpenMetrics text format, or the Prometheus text
//!   format 0.0.4 for a client whose `Accept` does not ask for OpenMetrics (curl,
//!   `promtool check metrics`). The names are listed in `docs/metrics.md`.
//! - `GET /healthz`: `200 ok` while the server accepts, `503 draining` once a graceful
//!   shutdown has begun, so a load balancer sends new clients elsewhere.
//!
//! Serve them on a listener of their own with [`Metrics::serve`] (`ringwire --metrics-addr`),
//! or on the WebSocket port from [`Handler::on_http`]
//! with [`Metrics::answer`] (`--metrics-on-ws-port`).
//!
//! ```no_run
//! use ringwire::metrics::Metrics;
//! use ringwire::server::{Handler, Server, ServerConfig};
//! # #[derive(Clone)] struct Echo;
//! # impl Handler for Echo {}
//! let server = Server::bind(ServerConfig::new("127.0.0.1:9001".parse()?))?;
//! let metrics = Metrics::new(&server).serve("127.0.0.1:9090".parse()?)?;
//! server.run_until_signal(Echo)?;
//! metrics.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::conn::handshake::PlainRequest;
use crate::server::{
    Decision, Handler, HttpResponse, IoChoice, RunningServer, Server, ServerConfig, ServerError, ServerHandle, Stats,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The OpenMetrics content type, as Prometheus asks for it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format 0.0.4 content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Anything else to export beside the server's counters (a bus's): called at each scrape.
pub trait Source: Send + Sync + 'static {
    /// Writes this source's families with `w`.
    fn encode(&self, w: &mut Families<'_, '_>) -> fmt::Result;
}

/// What a scrape reads: the server's counters, the process, and extra sources.
struct Inner {
    handle: ServerHandle,
    backend: &'static str,
    kernel: String,
    workers: u64,
    started: SystemTime,
    /// Locked once per scrape.
    sources: Mutex<Vec<Box<dyn Source>>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").field("backend", &self.backend).field("workers", &self.workers).finish()
    }
}

/// A server's metrics and health check (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Metrics {
    /// The metrics of `server` (bound, not yet running, or running: only its handle is kept).
    pub fn new(server: &Server) -> Self {
        let backend = match server.backend().backend {
            crate::server::Backend::Uring => "io_uring",
            crate::server::Backend::Epoll => "epoll",
        };
        let inner = Arc::new(Inner {
            handle: server.handle(),
            backend,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            workers: server.workers() as u64,
            started: process_start().unwrap_or_else(SystemTime::now),
            sources: Mutex::new(Vec::new()),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(&inner)));
        Self { registry: Arc::new(registry), inner }
    }

    /// Also exports what `source` counts (for example an `Arc<`[`ServerBus`](crate::bus::ServerBus)`>`),
    /// here and in every clone.
    pub fn with_source(self, source: impl Source) -> Self {
        self.inner.sources.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(source));
        self
    }

    /// Every metric in the OpenMetrics text format (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Every metric in the Prometheus text format 0.0.4: [`render`](Self::render) with
    /// counters' `HELP` and `TYPE` lines naming the `_total` series, and without the
    /// `UNIT` and `EOF` lines that format lacks.
    pub fn render_prometheus_text(&self) -> String {
        to_prometheus_text(&self.render())
    }

    /// `200 ok` while the server accepts, `503 draining` once it is shutting down.
    pub fn health(&self) -> HttpResponse {
        if self.inner.handle.is_shutting_down() {
            HttpResponse::text(503, "draining\n")
        } else {
            HttpResponse::text(200, "ok\n")
        }
    }

    /// The answer to `GET /metrics` (in the format the `Accept` header asks for) and
    /// `GET /healthz`; `None` for anything else. For [`Handler::on_http`].
    pub fn answer(&self, request: &PlainRequest) -> Option<HttpResponse> {
        if request.method != "GET" {
            return None;
        }
        match request.path.split('?').next().unwrap_or("") {
            "/metrics" => {
                let openmetrics = request.header("accept").is_some_and(|a| a.contains("application/openmetrics-text"));
                Some(if openmetrics {
                    HttpResponse::new(200, OPENMETRICS, self.render())
                } else {
                    HttpResponse::new(200, PROMETHEUS_TEXT, self.render_prometheus_text())
                })
            }
            "/healthz" => Some(self.health()),
            _ => None,
        }
    }

    /// Serves `/metrics` and `/healthz` on a listener of its own at `addr`: a one-worker
    /// ringwire server (its own handshake timeout, request size and connection limits
    /// apply: at most 64 at once, 5 s each, 8 KiB of request head) that refuses
    /// WebSocket upgrades with 404. It keeps answering while the main server drains;
    /// shut it down after.
    pub fn serve(self, addr: SocketAddr) -> Result<RunningServer, ServerError> {
        self.serve_with(addr, IoChoice::Auto)
    }

    /// [`serve`](Self::serve) on the given backend.
    pub fn serve_with(self, addr: SocketAddr, io: IoChoice) -> Result<RunningServer, ServerError> {
        let mut cfg = ServerConfig::new(addr).with_threads(1).with_io(io);
        cfg.max_connections = 64;
        cfg.handshake_timeout = Duration::from_secs(5);
        cfg.max_handshake_bytes = 8 * 1024;
        cfg.allow_any_origin = true;
        cfg.allow_any_host = true;
        cfg.shutdown_timeout = Duration::from_secs(1);
        cfg.event_loop.buf_count = 64;
        cfg.event_loop.ring_entries = 256;
        Ok(Server::bind(cfg)?.spawn(Endpoint(self)))
    }
}

/// The handler of [`Metrics::serve`]'s listener.
#[derive(Clone)]
struct Endpoint(Metrics);

impl Handler for Endpoint {
    fn on_request(&mut self, _: &crate::conn::handshake::Request, _: &[String]) -> Decision {
        Decision::reject(404, "metrics listener: GET /metrics or /healthz")
    }

    fn on_http(&mut self, request: &PlainRequest) -> Option<HttpResponse> {
        Some(self.0.answer(request).unwrap_or_else(|| HttpResponse::text(404, "GET /metrics or /healthz\n")))
    }
}

/// The fields of `/proc/self/stat` after the command's closing parenthesis: index 0 is
/// field 3 (the state) of proc(5).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect()
}

/// A field of `stat_fields` as a number (0 if missing).
fn stat_field(fields: &[&str], field: usize) -> u64 {
    fields.get(field - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The start of this process, from `/proc/self/stat` (field 22, in clock ticks since boot).
fn process_start() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks: u64 = stat_fields(&stat).get(22 - 3)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / CLOCK_TICKS))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (the kernel's USER_HZ).
const CLOCK_TICKS: u64 = 100;

/// CPU seconds, resident bytes, open and maximum descriptors of this process.
fn process_figures() -> (f64, u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields = stat_fields(&stat);
    // utime 14, stime 15 (ticks), rss 24 (pages).
    let cpu = (stat_field(&fields, 14) + stat_field(&fields, 15)) as f64 / CLOCK_TICKS as f64;
    let rss = stat_field(&fields, 24) * 4096;
    let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0);
    (cpu, rss, open, max)
}

/// Writes metric families: a thin layer over `prometheus-client`'s encoder.
pub struct Families<'a, 'b> {
    encoder: &'a mut DescriptorEncoder<'b>,
}

impl Families<'_, '_> {
    /// A counter without labels (`name` without `_total`: the encoder appends it).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.counter_unit(name, help, None, value)
    }

    /// A counter in `unit` (the unit is appended to the name).
    pub fn counter_unit(&mut self, name: &str, help: &str, unit: Option<Unit>, value: u64) -> fmt::Result {
        let c = ConstCounter::new(value);
        let m = self.encoder.encode_descriptor(name, help, unit.as_ref(), c.metric_type())?;
        c.encode(m)
    }

    /// A counter with one label, one series per `(label value, count)`.
    pub fn counters(&mut self, name: &str, help: &str, label: &str, series: &[(&str, u64)]) -> fmt::Result {
        self.counters_unit(name, help, None, label, series)
    }

    /// [`counters`](Self::counters) in `unit`.
    pub fn counters_unit(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        label: &str,
        series: &[(&str, u64)],
    ) -> fmt::Result {
        let mut m = self.encoder.encode_descriptor(name, help, unit.as_ref(), ConstCounter::new(0u64).metric_type())?;
        for &(value, count) in series {
            let labels = [(label, value)];
            ConstCounter::new(count).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, value: i64) -> fmt::Result {
        let g = ConstGauge::new(value);
        let m = self.encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?;
        g.encode(m)
    }

    /// A gauge of value 1 whose labels carry information (`*_info`).
    pub fn info(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) -> fmt::Result {
        let g = ConstGauge::new(1i64);
        let mut m = self.encoder.encode_descriptor(name, help, None, g.metric_type())?;
        g.encode(m.encode_family(&labels)?)
    }

    fn gauge_f64(&mut self, name: &str, help: &str, unit: Option<Unit>, value: f64) -> fmt::Result {
        let g = ConstGauge::new(value);
        let m = self.encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?;
        g.encode(m)
    }

    fn counter_f64(&mut self, name: &str, help: &str, unit: Option<Unit>, value: f64) -> fmt::Result {
        let c = ConstCounter::new(value);
        let m = self.encoder.encode_descriptor(name, help, unit.as_ref(), c.metric_type())?;
        c.encode(m)
    }
}

/// Close codes with a series of their own (the rest are `other`).
const CLOSE_CODES: [&str; 16] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012", "1013",
    "1014", "1015",
];

impl Collector for Inner {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let s = self.handle.stats();
        let w = &mut Families { encoder: &mut encoder };
        encode_server(w, self, &s)?;
        for source in self.sources.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            source.encode(w)?;
        }
        Ok(())
    }
}

fn by_type(b: &crate::server::ByType) -> [(&'static str, u64); 2] {
    [("text", b.text), ("binary", b.binary)]
}

fn close_codes(c: &crate::server::CloseCodes) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&str, u64)> = CLOSE_CODES.iter().zip(c.named).map(|(&k, n)| (k, n)).collect();
    v.push(("other", c.other));
    v
}

fn encode_server(w: &mut Families<'_, '_>, inner: &Inner, s: &Stats) -> fmt::Result {
    let t = &s.traffic;
    let bytes = Some(Unit::Bytes);
    w.info("ringwire_build_info", "The ringwire version (value 1).", &[("version", env!("CARGO_PKG_VERSION"))])?;
    w.info(
        "ringwire_io_info",
        "The event-loop backend every worker runs and the kernel it runs on (value 1).",
        &[("backend", inner.backend), ("kernel", &inner.kernel)],
    )?;
    w.gauge("ringwire_workers", "Worker threads (one event loop each).", None, inner.workers as i64)?;
    w.gauge(
        "ringwire_draining",
        "1 once a graceful shutdown has begun (no new connections; /healthz answers 503).",
        None,
        inner.handle.is_shutting_down() as i64,
    )?;
    w.counter(
        "ringwire_connections_accepted",
        "TCP connections accepted, including those refused after.",
        s.connections_accepted,
    )?;
    w.gauge(
        "ringwire_connections_open",
        "WebSocket connections open (upgraded, not yet closed).",
        None,
        s.connections_open as i64,
    )?;
    let u = &s.upgrades_rejected;
    w.counters(
        "ringwire_upgrades_rejected",
        "Upgrade requests refused, by HTTP status (over TLS a 503 is a connection dropped before its handshake).",
        "status",
        &[
            ("400", u.bad_request),
            ("403", u.forbidden),
            ("408", u.timeout),
            ("426", u.upgrade_required),
            ("431", u.too_large),
            ("500", u.internal_error),
            ("503", u.unavailable),
            ("other", u.other),
        ],
    )?;
    w.counters(
        "ringwire_messages_received",
        "Whole messages received, by type.",
        "type",
        &by_type(&t.messages_received),
    )?;
    w.counters(
        "ringwire_messages_sent",
        "Messages queued to send, by type (a broadcast once per connection).",
        "type",
        &by_type(&t.messages_sent),
    )?;
    w.counters_unit(
        "ringwire_received_payload",
        "Payload bytes of the messages received (after inflating), by type.",
        bytes.clone(),
        "type",
        &by_type(&t.bytes_received),
    )?;
    w.counters_unit(
        "ringwire_sent_payload",
        "Payload bytes of the messages queued to send (before compressing), by type.",
        bytes.clone(),
        "type",
        &by_type(&t.bytes_sent),
    )?;
    w.counters(
        "ringwire_close_frames_sent",
        "Close frames sent, by code (1005: a frame without a code).",
        "code",
        &close_codes(&t.close_frames_sent),
    )?;
    w.counters(
        "ringwire_close_frames_received",
        "Close frames received, by code (1005: a frame without a code).",
        "code",
        &close_codes(&t.close_frames_received),
    )?;
    let p = &t.protocol_errors;
    w.counters(
        "ringwire_protocol_errors",
        "Connections failed for a protocol error by the peer, by the close code sent (1002 protocol, 1007 invalid data, 1009 too big).",
        "code",
        &[("1002", p.protocol_error), ("1007", p.invalid_data), ("1009", p.message_too_big), ("other", p.other)],
    )?;
    w.counter(
        "ringwire_keepalive_drops",
        "Connections dropped because the peer stopped answering pings.",
        t.keepalive_drops,
    )?;
    w.counter(
        "ringwire_slow_consumer_drops",
        "Connections closed with 1008 because a send would have gone over max_buffered.",
        t.slow_consumer_drops,
    )?;
    w.gauge(
        "ringwire_queued",
        "Bytes queued for peers and not yet written (refreshed every 250 ms).",
        bytes.clone(),
        s.bytes_queued as i64,
    )?;
    let io = &s.io;
    w.counters(
        "ringwire_accept_errors",
        "Accepts that failed, by reason (out_of_descriptors: EMFILE or ENFILE; raise the open-file limit).",
        "reason",
        &[("out_of_descriptors", io.accept_errors.out_of_descriptors), ("other", io.accept_errors.other)],
    )?;
    w.counter(
        "ringwire_uring_cq_overflows",
        "io_uring: loop turns whose completions overflowed the completion queue (--cq-entries avoids it).",
        io.cq_overflows,
    )?;
    w.gauge(
        "ringwire_uring_recv_buffers",
        "io_uring: receive buffers in the provided-buffer rings, all workers.",
        None,
        io.recv_buffers as i64,
    )?;
    w.gauge(
        "ringwire_uring_recv_buffer_window",
        "io_uring: receive buffers the kernel may fill at once (the window), all workers.",
        None,
        io.recv_buffer_window as i64,
    )?;
    w.gauge(
        "ringwire_uring_recv_buffers_lent",
        "io_uring: receive buffers lent to handlers as messages (no copy) and not back yet, all workers (at most a quarter of the buffers).",
        None,
        io.recv_buffers_lent as i64,
    )?;
    w.counter(
        "ringwire_uring_recv_buffers_exhausted",
        "io_uring: receives that found no buffer in the window (it then doubled).",
        io.recv_buffers_exhausted,
    )?;
    w.counter(
        "ringwire_uring_recv_window_shrinks",
        "io_uring: times a window shrank after a quiet period.",
        io.recv_window_shrinks,
    )?;
    w.counter("ringwire_tls_handshakes", "TLS handshakes completed.", io.tls_handshakes)?;
    w.counter(
        "ringwire_tls_handshake_failures",
        "TLS handshakes failed: TLS errors, timeouts, peers gone before the end.",
        io.tls_handshake_failures,
    )?;
    let z = &s.compression;
    w.counters_unit(
        "ringwire_deflate_uncompressed",
        "permessage-deflate: bytes before compressing (sent) and after inflating (received).",
        bytes.clone(),
        "direction",
        &[("sent", z.compressed_in), ("received", z.inflated_out)],
    )?;
    w.counters_unit(
        "ringwire_deflate_compressed",
        "permessage-deflate: compressed bytes produced (sent) and inflated (received); the ratio is uncompressed / compressed.",
        bytes.clone(),
        "direction",
        &[("sent", z.compressed_out), ("received", z.inflated_in)],
    )?;
    w.gauge("ringwire_topics", "Topics with subscribers, counted per worker.", None, s.topics as i64)?;
    w.gauge(
        "ringwire_subscriptions",
        "Subscriptions (a connection to a topic), all workers.",
        None,
        s.subscriptions as i64,
    )?;
    let started = inner.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let (cpu, rss, open, max) = process_figures();
    w.gauge_f64("process_start_time", "Start time of the process since the Unix epoch.", Some(Unit::Seconds), started)?;
    w.counter_f64("process_cpu", "User and system CPU time spent.", Some(Unit::Seconds), cpu)?;
    w.gauge("process_resident_memory", "Resident memory size.", bytes, rss as i64)?;
    w.gauge("process_open_fds", "Open file descriptors.", None, open as i64)?;
    w.gauge("process_max_fds", "The open-file limit (RLIMIT_NOFILE, soft).", None, max as i64)?;
    Ok(())
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter family's `HELP` and `TYPE` name
/// its `_total` series, `UNIT` and `EOF` lines go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_owned());
        }
    }
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                let _ = writeln!(out, "{prefix}{name}{suffix} {tail}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_become_prometheus_text() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\n# UNIT a_b bytes\na_b_total{t=\"x\"} 1\n# HELP g G.\n# TYPE g gauge\ng 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{t=\"x\"} 1\n# HELP g G.\n# TYPE g gauge\ng 2\n"
        );
    }
}
