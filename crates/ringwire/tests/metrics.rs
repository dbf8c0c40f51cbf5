//! `--metrics-addr`, `--metrics-on-ws-port` and `--log-format json` on the real binary:
//! the counters read exactly what was sent, the exposition passes Prometheus' own
//! `promtool check metrics` (skipped with a line when it is missing, unless
//! `RINGWIRE_REQUIRE_PROMTOOL=1`), `/healthz` turns 503 on SIGTERM while the server
//! drains, the bus's counters are there with `--bus`, and every metric the Grafana
//! dashboard in `docs/` queries exists.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::{RawClient, Ringwire, wait_until};

/// Set to 1 by `.ci/run`: a missing `promtool` fails the test instead of skipping it.
const REQUIRE_PROMTOOL_ENV: &str = "RINGWIRE_REQUIRE_PROMTOOL";

/// The backends to run on (io_uring only where it works; `Ringwire::start` says so).
const BACKENDS: [&str; 2] = ["epoll", "uring"];

/// The metrics listener's address, from the start-up line's `metrics http://ADDR/metrics`.
fn metrics_addr(line: &str) -> SocketAddr {
    let addr = line.split("metrics http://").nth(1).and_then(|s| s.split('/').next());
    addr.unwrap_or_else(|| panic!("no metrics address in {line:?}")).parse().unwrap()
}

/// `GET path` with `accept` (if any): the status, the head, and the body (read to the close).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The series of an exposition: `name{labels}` to value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

/// Scrapes `/metrics` as Prometheus does (OpenMetrics), checks the format's frame.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, head, body) = get(addr, "/metrics", Some("application/openmetrics-text;version=1.0.0,*/*;q=0.1"));
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: application/openmetrics-text; version=1.0.0"), "{head}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    parse(&body)
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| panic!("no series {series}"))
}

/// Runs `promtool check metrics` on `text`; false (after a SKIPPED line) without promtool.
fn promtool_check(text: &str) -> bool {
    let Some(promtool) = ringwire_testkit::brokers::find("promtool") else {
        ringwire_testkit::brokers::skip_or_fail(REQUIRE_PROMTOOL_ENV, "promtool not found (Debian package prometheus)");
        return false;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
    true
}

#[test]
fn counters_read_exactly_what_was_sent_and_promtool_accepts_them() {
    for io in BACKENDS {
        let Some(rw) = Ringwire::start("echo", io, &["--metrics-addr", "127.0.0.1:0", "--log-format", "json"]) else {
            continue;
        };
        let maddr = metrics_addr(&rw.line);
        let before = scrape(maddr);
        let mut c = RawClient::connect(rw.addr);
        let (mut text_bytes, mut binary_bytes) = (0, 0);
        for i in 0..25 {
            let payload = "x".repeat(i * 7);
            c.send(0x1, payload.as_bytes());
            assert_eq!(c.recv(), (0x1, payload.clone().into_bytes()));
            text_bytes += payload.len();
        }
        for i in 0..7 {
            let payload = vec![i as u8; 100 + i * 1000];
            c.send(0x2, &payload);
            assert_eq!(c.recv().1, payload);
            binary_bytes += payload.len();
        }
        c.send(0x8, &1000u16.to_be_bytes());
        assert_eq!(c.read_close().0, 1000);
        // A second client breaks the protocol (an unmasked frame): 1002.
        let mut bad = RawClient::connect(rw.addr);
        bad.frame(true, 0, 0x1, b"bare", false);
        assert_eq!(bad.read_close().0, 1002);

        let mut m = HashMap::new();
        let done = wait_until(Duration::from_secs(10), || {
            m = scrape(maddr);
            m.get("ringwire_connections_open") == Some(&0.0)
                && m.get("ringwire_protocol_errors_total{code=\"1002\"}") == Some(&1.0)
        });
        assert!(done, "{io}: the closes were not counted: {m:?}");
        let d = |series: &str| value(&m, series) - before.get(series).copied().unwrap_or(0.0);
        assert_eq!(d("ringwire_messages_received_total{type=\"text\"}"), 25.0, "{io}");
        assert_eq!(d("ringwire_messages_received_total{type=\"binary\"}"), 7.0, "{io}");
        assert_eq!(d("ringwire_messages_sent_total{type=\"text\"}"), 25.0, "{io}");
        assert_eq!(d("ringwire_messages_sent_total{type=\"binary\"}"), 7.0, "{io}");
        assert_eq!(d("ringwire_received_payload_bytes_total{type=\"text\"}"), text_bytes as f64, "{io}");
        assert_eq!(d("ringwire_sent_payload_bytes_total{type=\"binary\"}"), binary_bytes as f64, "{io}");
        assert_eq!(d("ringwire_close_frames_received_total{code=\"1000\"}"), 1.0, "{io}");
        assert_eq!(d("ringwire_close_frames_sent_total{code=\"1000\"}"), 1.0, "{io}");
        assert_eq!(d("ringwire_close_frames_sent_total{code=\"1002\"}"), 1.0, "{io}");
        assert_eq!(d("ringwire_connections_accepted_total"), 2.0, "{io}");
        let backend = if io == "uring" { "io_uring" } else { "epoll" };
        let info = m.keys().find(|k| k.starts_with("ringwire_io_info{")).expect("ringwire_io_info");
        assert!(info.contains(&format!("backend=\"{backend}\"")), "{info}");
        if io == "uring" {
            assert!(value(&m, "ringwire_uring_recv_buffer_window") > 0.0, "{m:?}");
        }
        assert!(value(&m, "process_open_fds") > 0.0);

        // Prometheus' own linter on what curl (no OpenMetrics in Accept) gets.
        let (status, head, text) = get(maddr, "/metrics", None);
        assert_eq!(status, 200);
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        promtool_check(&text);

        // The log is JSON, one object per line, and the start-up event holds the config.
        let log = rw.stderr();
        let events: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        let started = events.iter().find(|e| e["message"] == "started").expect("a started event");
        assert_eq!(started["max_connections"], 100_000, "{started}");
        assert_eq!(started["backend"], backend, "{started}");
        assert_eq!(started["metrics_addr"], maddr.to_string(), "{started}");
        assert!(started["file_descriptors"].as_u64().unwrap() > 0, "{started}");
    }
}

#[test]
fn healthz_turns_503_on_sigterm_while_the_server_drains() {
    let Some(mut rw) =
        Ringwire::start("echo", "epoll", &["--metrics-addr", "127.0.0.1:0", "--shutdown-timeout", "10s"])
    else {
        return;
    };
    let maddr = metrics_addr(&rw.line);
    let (status, _, body) = get(maddr, "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(value(&scrape(maddr), "ringwire_draining"), 0.0);
    // A client that does not answer the server's close keeps the server draining.
    let mut c = RawClient::connect(rw.addr);
    rw.signal(libc::SIGTERM);
    assert_eq!(c.read_close().0, 1001);
    let (status, _, body) = get(maddr, "/healthz", None);
    assert_eq!((status, body.as_str()), (503, "draining\n"));
    assert_eq!(value(&scrape(maddr), "ringwire_draining"), 1.0);
    assert!(rw.wait_exit(Duration::from_millis(300)).is_none(), "exited before its client answered");
    c.send(0x8, &1001u16.to_be_bytes());
    let status = rw.wait_exit(Duration::from_secs(10)).expect("exit once drained");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_metrics_address_in_use_is_a_one_line_error_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["echo", "--addr", "127.0.0.1:0", "--threads", "1", "--metrics-addr", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("ringwire: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.starts_with(&format!("ringwire: --metrics-addr {addr}: ")), "{line}");
    assert!(line.to_lowercase().contains("in use"), "{line}");
}

#[test]
fn metrics_and_healthz_on_the_websocket_port_only_when_asked() {
    let Some(rw) = Ringwire::start("echo", "epoll", &["--metrics-on-ws-port"]) else { return };
    let (status, head, body) = get(rw.addr, "/metrics", None);
    assert_eq!(status, 200, "{head}");
    assert!(parse(&body).contains_key("ringwire_connections_open"), "{body}");
    assert_eq!(get(rw.addr, "/healthz", None).0, 200);
    assert_eq!(get(rw.addr, "/other", None).0, 400, "not a path it serves: refused as before");
    let mut c = RawClient::connect(rw.addr);
    c.send(0x1, b"still a websocket server");
    assert_eq!(c.recv(), (0x1, b"still a websocket server".to_vec()));
    // The plain requests are not refused upgrades; the one for /other is.
    let m = parse(&get(rw.addr, "/metrics", None).2);
    assert_eq!(value(&m, "ringwire_upgrades_rejected_total{status=\"400\"}"), 1.0);

    let Some(plain) = Ringwire::start("echo", "epoll", &[]) else { return };
    assert_eq!(get(plain.addr, "/metrics", None).0, 400, "off by default");
    assert!(!plain.line.contains("metrics"), "{}", plain.line);
}

#[test]
fn the_bus_counts_are_exported_with_bus() {
    let Some(redis) = ringwire_testkit::brokers::Redis::start() else { return };
    use ringwire_testkit::brokers::Broker as _;
    let args = ["--bus", &redis.url(), "--metrics-addr", "127.0.0.1:0"];
    let Some(rw) = Ringwire::start("broadcast", "epoll", &args) else { return };
    let maddr = metrics_addr(&rw.line);
    let mut c = RawClient::connect_to(rw.addr, "/room");
    let mut m = HashMap::new();
    let subscribed = wait_until(Duration::from_secs(10), || {
        m = scrape(maddr);
        m.get("ringwire_bus_subscriptions") == Some(&1.0)
    });
    assert!(subscribed, "{m:?}");
    for _ in 0..3 {
        c.send(0x1, b"hello");
        assert_eq!(c.recv(), (0x1, b"hello".to_vec()));
    }
    let published = wait_until(Duration::from_secs(10), || {
        m = scrape(maddr);
        m.get("ringwire_bus_published_total") == Some(&3.0)
    });
    assert!(published, "{m:?}");
    assert_eq!(value(&m, "ringwire_bus_connected"), 1.0);
    assert_eq!(value(&m, "ringwire_bus_publish_dropped_total"), 0.0);
    assert_eq!(value(&m, "ringwire_topics"), 1.0);
    assert_eq!(value(&m, "ringwire_subscriptions"), 1.0);
    assert!(m.contains_key(&format!("ringwire_bus_info{{url=\"{}\"}}", redis.url())), "{m:?}");

    // SIGTERM drains gracefully: no thread (the bus's, the metrics listener's) was started
    // with the default action, which would let the signal kill the process.
    let mut rw = rw;
    rw.signal(libc::SIGTERM);
    assert_eq!(c.read_close().0, 1001);
    c.send(0x8, &1001u16.to_be_bytes());
    let status = rw.wait_exit(Duration::from_secs(10)).expect("exit once drained");
    assert!(status.success(), "{status:?}: {}", rw.stderr());
}

/// Metric names in a PromQL expression: identifiers starting with `ringwire_` or `process_`.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = expr[i..].starts_with("ringwire_") || expr[i..].starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = expr[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(expr.len(), |n| i + n);
            names.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every string under a key `expr`.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "the dashboard has {} queries", queries.len());
    let Some(redis) = ringwire_testkit::brokers::Redis::start() else { return };
    use ringwire_testkit::brokers::Broker as _;
    let args = ["--bus", &redis.url(), "--metrics-addr", "127.0.0.1:0"];
    let Some(rw) = Ringwire::start("broadcast", "epoll", &args) else { return };
    let families: std::collections::HashSet<String> =
        scrape(metrics_addr(&rw.line)).keys().map(|s| s.split('{').next().unwrap().to_owned()).collect();
    for q in &queries {
        let names = names_in(q);
        assert!(!names.is_empty(), "a query without a ringwire metric: {q}");
        for name in names {
            assert!(families.contains(&name), "the dashboard queries {name}, which is not exported ({q})");
        }
    }
}
