//! Turning runs into results: medians per scenario and server, ratios to the best peer
//! and to the raw TCP floor, the markdown section for `docs/benchmarks.md`, and an SVG
//! bar chart written by hand.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a server is in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// A server under test: the native ringwire, or its tokio adapter (ringwire-tokio).
    Ringwire,
    /// A peer server: the "best peer" is chosen among these.
    Peer,
    /// Raw TCP echo, no WebSocket: the floor.
    Floor,
}

/// The figures taken from one `loadgen` result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Messages (broadcast: deliveries) per second.
    pub msgs_per_s: Option<f64>,
    /// Median latency in microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile latency in microseconds.
    pub p99_us: Option<f64>,
    /// Server CPU time per message (broadcast: per delivery) in microseconds.
    pub cpu_us_per_msg: Option<f64>,
    /// Server resident memory at the end of the run, KiB.
    pub rss_kb: Option<f64>,
    /// Idle scenarios: server RSS growth per open connection, bytes.
    pub rss_bytes_per_conn: Option<f64>,
    /// Share of a CPU the generator used over the window (near 1.0: the generator is the limit;
    /// see [`GENERATOR_BOUND`]).
    pub loadgen_cpu_util: Option<f64>,
    /// Share of a CPU the server used over the window.
    #[serde(default)]
    pub server_cpu_util: Option<f64>,
    /// Errors the generator saw.
    pub errors: f64,
    /// With permessage-deflate: the server's messages' payload bytes over their bytes on
    /// the wire (how much its compression saved).
    #[serde(default)]
    pub recv_ratio: Option<f64>,
}

/// Above this share of its core (`loadgen_cpu_util`) a run is *generator-bound*: the
/// generator had no room left, so its msgs/s is the generator's limit as much as the
/// server's (a faster server could not show), and so is any msgs/s ratio it enters. Why
/// 85%: the generator is one epoll thread on its own core and sleeps whenever every socket
/// is drained. A server that is the limit leaves it idle time, but not in proportion to
/// how slow the server is (a slow server makes each read carry fewer messages, each with
/// its own ACK and wakeup): in the 1,000-subscriber broadcast the generator read 72% with
/// Node ws (117k deliveries/s), 81% with fastwebsockets and tokio-tungstenite (~1M/s), and
/// 71-72% with ringwire at 10,000 subscribers with ringwire's core at 92%; with the
/// fastest servers it read 86-97%. 85% sits above the first group with the 100 Hz ticks
/// of `/proc/PID/stat` (±0.2% over a 5 s window) well inside the margin.
pub const GENERATOR_BOUND: f64 = 0.85;

impl Metrics {
    /// Whether the generator was the limit ([`GENERATOR_BOUND`]).
    pub fn generator_bound(&self) -> bool {
        self.loadgen_cpu_util.is_some_and(|u| u > GENERATOR_BOUND)
    }

    /// Reads the figures out of a `loadgen` JSON result.
    pub fn from_loadgen(v: &serde_json::Value) -> Metrics {
        let f = |ptr: &str| v.pointer(ptr).and_then(serde_json::Value::as_f64);
        let idle = v.get("mode").and_then(|m| m.as_str()) == Some("idle");
        let has_latency = f("/latency/samples").is_some_and(|s| s > 0.0);
        Metrics {
            msgs_per_s: if idle { None } else { f("/msgs_per_s") },
            p50_us: f("/latency/p50_us").filter(|_| has_latency),
            p99_us: f("/latency/p99_us").filter(|_| has_latency),
            cpu_us_per_msg: f("/server_cpu_us_per_msg"),
            rss_kb: f("/server_rss_after_kb"),
            rss_bytes_per_conn: f("/rss_bytes_per_conn"),
            loadgen_cpu_util: f("/loadgen_cpu_util").filter(|_| !idle),
            server_cpu_util: f("/server_cpu_util").filter(|_| !idle),
            errors: f("/errors").unwrap_or(0.0),
            recv_ratio: f("/bytes/recv_ratio").filter(|_| v.get("deflate").and_then(|d| d.as_bool()) == Some(true)),
        }
    }
}

/// One run of one scenario against one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// Server name.
    pub server: String,
    /// What the server is.
    pub kind: ServerKind,
    /// permessage-deflate mode of the server (`shared`, `dedicated`), when compressing.
    #[serde(default)]
    pub deflate: Option<String>,
    /// Repetition, from 1.
    pub rep: u32,
    /// `None` when the run completed without errors; what went wrong otherwise.
    pub failure: Option<String>,
    /// The figures (absent when the generator produced no result).
    pub metrics: Option<Metrics>,
    /// The generator's JSON, as it printed it.
    pub loadgen: Option<serde_json::Value>,
}

/// Medians over the successful repetitions of one scenario for one server, and ratios.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Scenario name.
    pub scenario: String,
    /// Server name.
    pub server: String,
    /// What the server is (`None` only in `Default`).
    pub kind: Option<ServerKind>,
    /// permessage-deflate mode, when compressing.
    #[serde(default)]
    pub deflate: Option<String>,
    /// Repetitions that completed without errors.
    pub ok_runs: usize,
    /// Repetitions attempted.
    pub runs: usize,
    /// Median figures.
    pub median: Metrics,
    /// msgs/s divided by the best peer's (higher is better).
    pub msgs_vs_best_peer: Option<f64>,
    /// Median latency divided by the best (lowest) peer's.
    pub p50_vs_best_peer: Option<f64>,
    /// 99th percentile latency divided by the best (lowest) peer's.
    pub p99_vs_best_peer: Option<f64>,
    /// CPU per message divided by the best peer's (lower is better).
    pub cpu_vs_best_peer: Option<f64>,
    /// RSS per idle connection divided by the best peer's (lower is better).
    pub rss_conn_vs_best_peer: Option<f64>,
    /// CPU per message divided by the raw TCP floor's.
    pub cpu_vs_floor: Option<f64>,
    /// Deflate scenarios: msgs/s divided by Bun's in the same mode (`bun-<mode>`).
    #[serde(default)]
    pub msgs_vs_bun: Option<f64>,
    /// Deflate scenarios: CPU per message divided by Bun's in the same mode.
    #[serde(default)]
    pub cpu_vs_bun: Option<f64>,
    /// Deflate scenarios: RSS per idle connection divided by Bun's in the same mode.
    #[serde(default)]
    pub rss_conn_vs_bun: Option<f64>,
    /// msgs/s divided by the raw TCP floor's.
    pub msgs_vs_floor: Option<f64>,
    /// Successful repetitions whose generator was above [`GENERATOR_BOUND`].
    #[serde(default)]
    pub generator_bound_runs: usize,
    /// The msgs/s ratio to the best peer (or to Bun) involves a generator-bound median: this
    /// row's or the other's.
    #[serde(default)]
    pub ratio_generator_bound: bool,
}

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Medians and ratios per (scenario, server), in the order the runs first appear.
pub fn summarize(runs: &[RunRecord]) -> Vec<SummaryRow> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        let key = (r.scenario.clone(), r.server.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    let mut rows: Vec<SummaryRow> = order
        .iter()
        .map(|key| {
            let rs = &groups[key];
            let ok: Vec<&Metrics> =
                rs.iter().filter(|r| r.failure.is_none()).filter_map(|r| r.metrics.as_ref()).collect();
            let med = |f: fn(&Metrics) -> Option<f64>| median(ok.iter().filter_map(|m| f(m)).collect());
            SummaryRow {
                scenario: key.0.clone(),
                server: key.1.clone(),
                kind: Some(rs[0].kind),
                deflate: rs[0].deflate.clone(),
                ok_runs: ok.len(),
                runs: rs.len(),
                generator_bound_runs: ok.iter().filter(|m| m.generator_bound()).count(),
                median: Metrics {
                    msgs_per_s: med(|m| m.msgs_per_s),
                    p50_us: med(|m| m.p50_us),
                    p99_us: med(|m| m.p99_us),
                    cpu_us_per_msg: med(|m| m.cpu_us_per_msg),
                    rss_kb: med(|m| m.rss_kb),
                    rss_bytes_per_conn: med(|m| m.rss_bytes_per_conn),
                    loadgen_cpu_util: med(|m| m.loadgen_cpu_util),
                    server_cpu_util: med(|m| m.server_cpu_util),
                    recv_ratio: med(|m| m.recv_ratio),
                    errors: rs.iter().filter_map(|r| r.metrics.map(|m| m.errors)).sum(),
                },
                ..SummaryRow::default()
            }
        })
        .collect();
    let scenarios: Vec<String> = dedup(rows.iter().map(|r| r.scenario.clone()));
    for s in scenarios {
        let of = |kind: ServerKind, f: fn(&Metrics) -> Option<f64>| -> Vec<f64> {
            rows.iter().filter(|r| r.scenario == s && r.kind == Some(kind)).filter_map(|r| f(&r.median)).collect()
        };
        let best_msgs = of(ServerKind::Peer, |m| m.msgs_per_s).into_iter().reduce(f64::max);
        let best_msgs_bound = rows
            .iter()
            .filter(|r| r.scenario == s && r.kind == Some(ServerKind::Peer))
            .max_by(|a, b| a.median.msgs_per_s.unwrap_or(0.0).total_cmp(&b.median.msgs_per_s.unwrap_or(0.0)))
            .is_some_and(|r| r.median.generator_bound());
        let best_cpu = of(ServerKind::Peer, |m| m.cpu_us_per_msg).into_iter().reduce(f64::min);
        let best_rss = of(ServerKind::Peer, |m| m.rss_bytes_per_conn).into_iter().reduce(f64::min);
        let best_p50 = of(ServerKind::Peer, |m| m.p50_us).into_iter().reduce(f64::min);
        let best_p99 = of(ServerKind::Peer, |m| m.p99_us).into_iter().reduce(f64::min);
        let floor_cpu = of(ServerKind::Floor, |m| m.cpu_us_per_msg).into_iter().next();
        let floor_msgs = of(ServerKind::Floor, |m| m.msgs_per_s).into_iter().next();
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        // Compressing servers compare with Bun in the same mode.
        let bun: Vec<(String, Metrics)> = rows
            .iter()
            .filter(|r| r.scenario == s)
            .filter_map(|r| {
                r.deflate.as_ref().filter(|m| r.server == format!("bun-{m}")).map(|m| (m.clone(), r.median))
            })
            .collect();
        for r in rows.iter_mut().filter(|r| r.scenario == s) {
            r.ratio_generator_bound = r.median.generator_bound() || best_msgs_bound;
            if let Some((_, b)) = bun.iter().find(|(m, _)| Some(m) == r.deflate.as_ref()) {
                r.ratio_generator_bound = r.median.generator_bound() || b.generator_bound();
                r.msgs_vs_bun = ratio(r.median.msgs_per_s, b.msgs_per_s);
                r.cpu_vs_bun = ratio(r.median.cpu_us_per_msg, b.cpu_us_per_msg);
                r.rss_conn_vs_bun = ratio(r.median.rss_bytes_per_conn, b.rss_bytes_per_conn);
            }
            r.msgs_vs_best_peer = ratio(r.median.msgs_per_s, best_msgs);
            r.cpu_vs_best_peer = ratio(r.median.cpu_us_per_msg, best_cpu);
            r.p50_vs_best_peer = ratio(r.median.p50_us, best_p50);
            r.p99_vs_best_peer = ratio(r.median.p99_us, best_p99);
            r.rss_conn_vs_best_peer = ratio(r.median.rss_bytes_per_conn, best_rss);
            if r.kind != Some(ServerKind::Floor) {
                r.cpu_vs_floor = ratio(r.median.cpu_us_per_msg, floor_cpu);
                r.msgs_vs_floor = ratio(r.median.msgs_per_s, floor_msgs);
            }
        }
    }
    rows
}

/// Per scenario, a sentence on ringwire's CPU per message paired within each repetition:
/// over the best peer's (by median CPU) and over the TCP floor's, run back to back in the
/// same repetition. On a host whose speed drifts between minutes, a slow spell hits both
/// servers of a pair alike more often than it hits the medians of two separate sets.
pub fn paired_notes(runs: &[RunRecord], rows: &[SummaryRow]) -> BTreeMap<String, String> {
    let cpu = |scenario: &str, server: &str, rep: u32| -> Option<f64> {
        runs.iter()
            .filter(|r| r.scenario == scenario && r.server == server && r.rep == rep && r.failure.is_none())
            .find_map(|r| r.metrics.and_then(|m| m.cpu_us_per_msg))
    };
    let mut notes = BTreeMap::new();
    for s in dedup(rows.iter().map(|r| r.scenario.clone())) {
        let sc = s.as_str();
        let in_s = |kind: ServerKind| rows.iter().filter(move |r| r.scenario == sc && r.kind == Some(kind));
        let best_peer = in_s(ServerKind::Peer)
            .filter(|r| r.median.cpu_us_per_msg.is_some())
            .min_by(|a, b| a.median.cpu_us_per_msg.partial_cmp(&b.median.cpu_us_per_msg).expect("finite"));
        let floor = in_s(ServerKind::Floor).next();
        let mut reps: Vec<u32> = runs.iter().filter(|r| r.scenario == s).map(|r| r.rep).collect();
        reps.sort_unstable();
        reps.dedup();
        let mut sentences = Vec::new();
        for rw in in_s(ServerKind::Ringwire) {
            // A compressing ringwire pairs with Bun in the same mode, otherwise the best peer.
            let peer = match &rw.deflate {
                Some(m) => in_s(ServerKind::Peer).find(|r| r.server == format!("bun-{m}")),
                None => best_peer,
            };
            let mut parts = Vec::new();
            for (other, what) in [(peer, None), (floor, Some("the TCP floor's"))] {
                let Some(other) = other else { continue };
                let ratios: Vec<f64> = reps
                    .iter()
                    .filter_map(|&rep| Some(cpu(&s, &rw.server, rep)? / cpu(&s, &other.server, rep)?))
                    .collect();
                let Some(med) = median(ratios.clone()) else { continue };
                let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
                let whose = what.map_or_else(|| possessive(&other.server), String::from);
                parts.push(format!("over {whose} {} (median {med:.2}x)", list.join(", ")));
            }
            if !parts.is_empty() {
                sentences.push(format!(
                    "Paired by repetition, {} server CPU per message {}.",
                    possessive(&rw.server),
                    parts.join("; ")
                ));
            }
        }
        if !sentences.is_empty() {
            notes.insert(s, sentences.join(" "));
        }
    }
    notes
}

/// `bun's`, `fastwebsockets'`.
fn possessive(name: &str) -> String {
    if name.ends_with('s') { format!("{name}'") } else { format!("{name}'s") }
}

fn dedup(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x >= 1e6 => format!("{:.2}M", x / 1e6),
        Some(x) if x >= 1e3 => format!("{:.1}k", x / 1e3),
        Some(x) => format!("{x:.0}"),
    }
}

fn with_ratio(v: Option<f64>, r: Option<f64>) -> String {
    match (v, r) {
        (Some(_), Some(r)) => format!("{} ({r:.2}x)", num(v, 1)),
        _ => num(v, 1),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |u| format!("{:.0}%", u * 100.0))
}

/// A msgs/s ratio, marked when a generator-bound median enters it.
fn bound_ratio(v: Option<f64>, bound: bool) -> String {
    match v {
        Some(_) if bound => format!("{} (gen-bound)", ratio_cell(v)),
        _ => ratio_cell(v),
    }
}

/// The generator's median share of its core, with how many runs were generator-bound.
fn loadgen_cell(r: &SummaryRow) -> String {
    let p = percent(r.median.loadgen_cpu_util);
    if r.generator_bound_runs == 0 { p } else { format!("{p} (gen-bound {}/{})", r.generator_bound_runs, r.ok_runs) }
}

fn ratio_cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.2}x"))
}

/// The markdown section: a heading, `preamble` (machine facts and method, already
/// formatted), then one table per scenario. `descriptions` maps scenario names to a
/// one-line description; `notes` a line to print under a scenario's table (see
/// [`paired_notes`]); `chart` is the SVG's file name, linked when given.
pub fn markdown(
    preamble: &str,
    rows: &[SummaryRow],
    descriptions: &BTreeMap<String, String>,
    notes: &BTreeMap<String, String>,
    chart: Option<&str>,
) -> String {
    let mut md = String::new();
    md.push_str(preamble);
    if !preamble.ends_with('\n') {
        md.push('\n');
    }
    for s in dedup(rows.iter().map(|r| r.scenario.clone())) {
        let rs: Vec<&SummaryRow> = rows.iter().filter(|r| r.scenario == s).collect();
        let _ = writeln!(md, "\n### {s}\n");
        if let Some(d) = descriptions.get(&s) {
            let _ = writeln!(md, "{d}\n");
        }
        let idle = rs.iter().all(|r| r.median.msgs_per_s.is_none() && r.median.rss_bytes_per_conn.is_some());
        if rs.iter().any(|r| r.deflate.is_some()) {
            deflate_table(&mut md, &rs, idle);
        } else if idle {
            md.push_str(
                "| server | RSS per connection (bytes) | vs best peer | server RSS (MiB) | ok runs | errors |\n",
            );
            md.push_str("|---|---:|---:|---:|---:|---:|\n");
            for r in &rs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {}/{} | {} |",
                    r.server,
                    num(r.median.rss_bytes_per_conn, 0),
                    ratio_cell(r.rss_conn_vs_best_peer),
                    num(r.median.rss_kb.map(|k| k / 1024.0), 1),
                    r.ok_runs,
                    r.runs,
                    r.median.errors
                );
            }
        } else {
            md.push_str(
                "| server | msgs/s | vs best peer | p50 µs (vs best peer) | p99 µs (vs best peer) | server CPU µs/msg | vs best peer | vs TCP floor | RSS MiB | server core | loadgen CPU | ok runs | errors |\n",
            );
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for r in &rs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
                    r.server,
                    rate(r.median.msgs_per_s),
                    bound_ratio(r.msgs_vs_best_peer, r.ratio_generator_bound),
                    with_ratio(r.median.p50_us, r.p50_vs_best_peer),
                    with_ratio(r.median.p99_us, r.p99_vs_best_peer),
                    num(r.median.cpu_us_per_msg, 2),
                    ratio_cell(r.cpu_vs_best_peer),
                    ratio_cell(r.cpu_vs_floor),
                    num(r.median.rss_kb.map(|k| k / 1024.0), 1),
                    percent(r.median.server_cpu_util),
                    loadgen_cell(r),
                    r.ok_runs,
                    r.runs,
                    r.median.errors
                );
            }
        }
        if let Some(n) = notes.get(&s) {
            let _ = writeln!(md, "\n{n}");
        }
        let bound: Vec<String> = rs
            .iter()
            .filter(|r| r.generator_bound_runs > 0)
            .map(|r| format!("{} ({} of {} runs)", r.server, r.generator_bound_runs, r.ok_runs))
            .collect();
        if !bound.is_empty() {
            let _ = writeln!(
                md,
                "\n**Generator-bound** (loadgen above {:.0}% of its core): {}. There msgs/s is the generator's limit \
                 more than the server's, and a msgs/s ratio marked \"gen-bound\" compares generator limits; server \
                 CPU per message is the figure to compare.",
                GENERATOR_BOUND * 100.0,
                bound.join(", ")
            );
        }
    }
    if let Some(c) = chart {
        let _ = writeln!(md, "\n![messages per second and server CPU per message]({c})");
    }
    md
}

/// A table's cells for one row, after its server and mode.
type Cells = fn(&SummaryRow) -> Vec<String>;

/// A deflate scenario's table: each server with its mode, ratios to Bun in the same
/// mode, and how much the server's compression saved.
fn deflate_table(md: &mut String, rs: &[&SummaryRow], idle: bool) {
    let (header, cells): (&[&str], Cells) = if idle {
        (&["RSS per connection (bytes)", "vs Bun", "server RSS (MiB)"], |r| {
            vec![
                num(r.median.rss_bytes_per_conn, 0),
                ratio_cell(r.rss_conn_vs_bun),
                num(r.median.rss_kb.map(|k| k / 1024.0), 1),
            ]
        })
    } else {
        (
            &[
                "msgs/s",
                "vs Bun",
                "server CPU µs/msg",
                "vs Bun",
                "p50 µs",
                "p99 µs",
                "server's compression",
                "server core",
                "loadgen CPU",
            ],
            |r| {
                vec![
                    rate(r.median.msgs_per_s),
                    bound_ratio(r.msgs_vs_bun, r.ratio_generator_bound),
                    num(r.median.cpu_us_per_msg, 2),
                    ratio_cell(r.cpu_vs_bun),
                    num(r.median.p50_us, 1),
                    num(r.median.p99_us, 1),
                    ratio_cell(r.median.recv_ratio),
                    percent(r.median.server_cpu_util),
                    loadgen_cell(r),
                ]
            },
        )
    };
    let _ = writeln!(md, "| server | mode | {} | ok runs | errors |", header.join(" | "));
    let _ = writeln!(md, "|---|---|{}---:|---:|", "---:|".repeat(header.len()));
    for r in rs {
        let mode = r.deflate.as_deref().unwrap_or("–");
        let _ = writeln!(
            md,
            "| {} | {mode} | {} | {}/{} | {} |",
            r.server,
            cells(r).join(" | "),
            r.ok_runs,
            r.runs,
            r.median.errors
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn color(kind: Option<ServerKind>) -> &'static str {
    match kind {
        Some(ServerKind::Ringwire) => "#e6711b",
        Some(ServerKind::Floor) => "#8c8c8c",
        _ => "#3b75af",
    }
}

/// A horizontal bar chart: per scenario, messages per second (left) and server CPU per
/// message (right); idle scenarios show RSS per connection on the left. Bars are scaled
/// to the largest value of their scenario.
pub fn svg(rows: &[SummaryRow]) -> String {
    const W: f64 = 960.0;
    const LABEL: f64 = 150.0;
    const BAR: f64 = 300.0;
    const ROW: f64 = 20.0;
    let scenarios = dedup(rows.iter().map(|r| r.scenario.clone()));
    let height = 40.0
        + scenarios.iter().map(|s| 30.0 + ROW * rows.iter().filter(|r| &r.scenario == s).count() as f64).sum::<f64>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        out,
        r#"<text x="{LABEL}" y="20" font-weight="bold">messages/s (idle: RSS bytes per connection)</text><text x="{}" y="20" font-weight="bold">server CPU µs per message (lower is better)</text>"#,
        LABEL + BAR + 170.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{LABEL}" y="34" font-size="10" fill="#555">orange: ringwire · blue: peers · grey: raw TCP echo floor; bars scaled per scenario</text>"##
    );
    let mut y = 44.0;
    for s in &scenarios {
        let rs: Vec<&SummaryRow> = rows.iter().filter(|r| &r.scenario == s).collect();
        let left = |r: &SummaryRow| r.median.msgs_per_s.or(r.median.rss_bytes_per_conn);
        let max_l = rs.iter().filter_map(|r| left(r)).fold(0.0, f64::max);
        let max_r = rs.iter().filter_map(|r| r.median.cpu_us_per_msg).fold(0.0, f64::max);
        let _ = writeln!(out, r#"<text x="4" y="{}" font-weight="bold">{}</text>"#, y + 14.0, esc(s));
        y += 22.0;
        for r in rs {
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LABEL - 6.0,
                y + 12.0,
                esc(&r.server)
            );
            let c = color(r.kind);
            if let Some(v) = left(r).filter(|_| max_l > 0.0) {
                let w = (v / max_l * BAR).max(1.0);
                let label = if r.median.msgs_per_s.is_some() { rate(Some(v)) } else { format!("{v:.0} B") };
                let _ = writeln!(
                    out,
                    r#"<rect x="{LABEL}" y="{y}" width="{w:.1}" height="{}" fill="{c}"/><text x="{:.1}" y="{}">{label}</text>"#,
                    ROW - 4.0,
                    LABEL + w + 4.0,
                    y + 12.0
                );
            }
            if let Some(v) = r.median.cpu_us_per_msg.filter(|_| max_r > 0.0) {
                let x0 = LABEL + BAR + 170.0;
                let w = (v / max_r * BAR).max(1.0);
                let _ = writeln!(
                    out,
                    r#"<rect x="{x0}" y="{y}" width="{w:.1}" height="{}" fill="{c}"/><text x="{:.1}" y="{}">{v:.2}</text>"#,
                    ROW - 4.0,
                    x0 + w + 4.0,
                    y + 12.0
                );
            }
            y += ROW;
        }
        y += 8.0;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, server: &str, kind: ServerKind, msgs: f64, cpu: f64, failure: Option<&str>) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            server: server.into(),
            kind,
            deflate: None,
            rep: 1,
            failure: failure.map(String::from),
            metrics: Some(Metrics { msgs_per_s: Some(msgs), cpu_us_per_msg: Some(cpu), ..Metrics::default() }),
            loadgen: None,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratios_use_best_peer_and_floor_and_skip_failed_runs() {
        let runs = vec![
            run("s", "a", ServerKind::Peer, 100.0, 4.0, None),
            run("s", "b", ServerKind::Peer, 200.0, 5.0, None),
            run("s", "b", ServerKind::Peer, 1000.0, 0.1, Some("errors")),
            run("s", "rw", ServerKind::Ringwire, 300.0, 2.0, None),
            run("s", "tcp", ServerKind::Floor, 400.0, 1.0, None),
        ];
        let rows = summarize(&runs);
        assert_eq!(rows.len(), 4);
        let rw = rows.iter().find(|r| r.server == "rw").unwrap();
        assert_eq!(rw.msgs_vs_best_peer, Some(1.5)); // 300 / 200
        assert_eq!(rw.cpu_vs_best_peer, Some(0.5)); // 2 / 4
        assert_eq!(rw.cpu_vs_floor, Some(2.0));
        let b = rows.iter().find(|r| r.server == "b").unwrap();
        assert_eq!((b.ok_runs, b.runs), (1, 2));
        assert_eq!(b.median.msgs_per_s, Some(200.0));
        let md = markdown("## results\n", &rows, &BTreeMap::new(), &BTreeMap::new(), Some("x.svg"));
        assert!(md.contains("| rw | 300 | 1.50x |"), "{md}");
        assert!(md.contains("![messages per second and server CPU per message](x.svg)"));
        let chart = svg(&rows);
        assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
        assert_eq!(chart.matches("<rect").count(), 1 + 4 * 2);
    }

    #[test]
    fn generator_bound_runs_and_ratios_are_flagged() {
        let at = |rep: u32, server: &str, kind: ServerKind, msgs: f64, util: f64| RunRecord {
            rep,
            metrics: Some(Metrics {
                msgs_per_s: Some(msgs),
                cpu_us_per_msg: Some(1.0),
                loadgen_cpu_util: Some(util),
                server_cpu_util: Some(0.95),
                ..Metrics::default()
            }),
            ..run("bc", server, kind, msgs, 1.0, None)
        };
        // The peer's generator was saturated in two of three runs; ringwire's never.
        let runs = vec![
            at(1, "rw", ServerKind::Ringwire, 100.0, 0.60),
            at(1, "bun", ServerKind::Peer, 120.0, 0.97),
            at(2, "rw", ServerKind::Ringwire, 110.0, 0.70),
            at(2, "bun", ServerKind::Peer, 125.0, 0.90),
            at(3, "rw", ServerKind::Ringwire, 105.0, 0.65),
            at(3, "bun", ServerKind::Peer, 110.0, 0.80),
        ];
        let rows = summarize(&runs);
        let rw = rows.iter().find(|r| r.server == "rw").unwrap();
        let bun = rows.iter().find(|r| r.server == "bun").unwrap();
        assert_eq!((rw.generator_bound_runs, bun.generator_bound_runs), (0, 2));
        // Ringwire's ratio is flagged: the peer it divides by was generator-bound.
        assert!(rw.ratio_generator_bound && bun.ratio_generator_bound);
        let md = markdown("", &rows, &BTreeMap::new(), &BTreeMap::new(), None);
        assert!(md.contains("| rw | 105 | 0.88x (gen-bound) |"), "{md}");
        assert!(md.contains("| 90% (gen-bound 2/3) |"), "{md}");
        // The server's share of its core sits beside the generator's.
        assert!(md.contains("| 95% | 90% (gen-bound 2/3) |"), "{md}");
        assert!(md.contains("**Generator-bound** (loadgen above 85% of its core): bun (2 of 3 runs)"), "{md}");
        // Below the threshold everywhere: nothing is flagged.
        let calm: Vec<RunRecord> = runs
            .into_iter()
            .map(|mut r| {
                r.metrics.as_mut().unwrap().loadgen_cpu_util = Some(0.5);
                r
            })
            .collect();
        let rows = summarize(&calm);
        assert!(rows.iter().all(|r| r.generator_bound_runs == 0 && !r.ratio_generator_bound));
        let md = markdown("", &rows, &BTreeMap::new(), &BTreeMap::new(), None);
        assert!(!md.contains("gen-bound") && !md.contains("Generator-bound"), "{md}");
    }

    #[test]
    fn paired_ratios_divide_within_each_repetition() {
        let at = |rep: u32, server: &str, kind: ServerKind, cpu: f64| RunRecord {
            rep,
            ..run("s", server, kind, 1.0, cpu, None)
        };
        let runs = vec![
            at(1, "rw", ServerKind::Ringwire, 2.0),
            at(1, "p", ServerKind::Peer, 4.0),
            at(1, "q", ServerKind::Peer, 10.0),
            at(1, "tcp", ServerKind::Floor, 1.0),
            // A slow spell in rep 2 hits ringwire and its peer alike.
            at(2, "rw", ServerKind::Ringwire, 6.0),
            at(2, "p", ServerKind::Peer, 10.0),
            at(2, "q", ServerKind::Peer, 1.0),
            at(2, "tcp", ServerKind::Floor, 6.0),
            at(3, "rw", ServerKind::Ringwire, 3.0),
            RunRecord { failure: Some("errors".into()), ..at(3, "p", ServerKind::Peer, 1.0) },
        ];
        let rows = summarize(&runs);
        let notes = paired_notes(&runs, &rows);
        // The best peer by median CPU is q (5.5 against p's 7.0, whose rep 3 failed).
        assert_eq!(
            notes["s"],
            "Paired by repetition, rw's server CPU per message over q's 0.20x, 6.00x (median 3.10x); \
             over the TCP floor's 2.00x, 1.00x (median 1.50x)."
        );
        let md = markdown("", &rows, &BTreeMap::new(), &notes, None);
        assert!(md.contains(&notes["s"]));
    }

    #[test]
    fn deflate_rows_compare_with_bun_in_the_same_mode() {
        let d = |server: &str, kind: ServerKind, mode: &str, msgs: f64, cpu: f64| RunRecord {
            deflate: Some(mode.into()),
            ..run("deflate-1k", server, kind, msgs, cpu, None)
        };
        let runs = vec![
            d("ringwire-shared", ServerKind::Ringwire, "shared", 300.0, 2.0),
            d("ringwire-dedicated", ServerKind::Ringwire, "dedicated", 200.0, 3.0),
            d("bun-shared", ServerKind::Peer, "shared", 100.0, 4.0),
            d("bun-dedicated", ServerKind::Peer, "dedicated", 100.0, 6.0),
            d("node-ws-dedicated", ServerKind::Peer, "dedicated", 50.0, 12.0),
        ];
        let rows = summarize(&runs);
        let get = |n: &str| rows.iter().find(|r| r.server == n).unwrap();
        assert_eq!((get("ringwire-shared").msgs_vs_bun, get("ringwire-shared").cpu_vs_bun), (Some(3.0), Some(0.5)));
        assert_eq!(
            (get("ringwire-dedicated").msgs_vs_bun, get("ringwire-dedicated").cpu_vs_bun),
            (Some(2.0), Some(0.5))
        );
        assert_eq!(get("node-ws-dedicated").cpu_vs_bun, Some(2.0));
        let md = markdown("", &rows, &BTreeMap::new(), &BTreeMap::new(), None);
        assert!(md.contains("| server | mode | msgs/s | vs Bun |"), "{md}");
        assert!(md.contains("| ringwire-shared | shared | 300 | 3.00x | 2.00 | 0.50x |"), "{md}");
        let notes = paired_notes(&runs, &rows);
        assert_eq!(
            notes["deflate-1k"],
            "Paired by repetition, ringwire-shared's server CPU per message over bun-shared's 0.50x (median 0.50x). \
             Paired by repetition, ringwire-dedicated's server CPU per message over bun-dedicated's 0.50x (median 0.50x)."
        );
    }

    #[test]
    fn loadgen_json_to_metrics() {
        let v = serde_json::json!({
            "mode": "idle", "msgs_per_s": 0.0, "latency": {"samples": 0, "p50_us": 0.0},
            "server_rss_after_kb": 2048, "rss_bytes_per_conn": 5000.0, "errors": 1
        });
        let m = Metrics::from_loadgen(&v);
        assert_eq!(m.msgs_per_s, None);
        assert_eq!(m.p50_us, None);
        assert_eq!(m.rss_bytes_per_conn, Some(5000.0));
        assert_eq!(m.errors, 1.0);
        assert_eq!(m.recv_ratio, None);
        let v = serde_json::json!({"mode": "closed", "deflate": true, "bytes": {"recv_ratio": 2.5}});
        assert_eq!(Metrics::from_loadgen(&v).recv_ratio, Some(2.5));
    }
}
