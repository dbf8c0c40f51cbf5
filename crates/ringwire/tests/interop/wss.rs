//! Interop over TLS (wss://): Node `ws`, Python `websockets` and headless Chromium as clients
//! of `ringwire echo --tls-cert --tls-key`, with a test CA and a leaf for `localhost` and
//! `127.0.0.1` made at test time (testkit's [`Pki`]). Every peer trusts that CA and nothing
//! else (no peer skips verification): `websockets` through an `ssl` context loading the CA
//! file, `ws` through its `ca` option, Chromium through an NSS database holding the CA in a
//! temporary `HOME` (`certutil`, Debian's libnss3-tools), where Chromium on Linux looks for
//! its trust store.
//!
//! The relay of the plain tests cannot read frames inside TLS, so what crosses is checked
//! from the peers' side: each echo byte for byte, the extensions the server answered with
//! (`permessage-deflate` with `--deflate shared`, none without it), a clean close with 1000,
//! and the TLS version and ALPN (`http/1.1`, required): from the peer's socket for `ws` and
//! `websockets`, from the net log for Chromium.

use super::{Echo, PEER_LIMIT, echo_server, page_server, peers};
use peers::{Node, Proc, Python, or_skip};
use ringwire_testkit::tls::Pki;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Short text and binary, then 1 MiB of JSON-like text and 1 MiB of random bytes, each
/// echoed: small and large messages both ways.
const SPEC: &str = "t:16,b:16,t:1048576,r:1048576";

/// The servers each peer runs against: `--deflate shared` or none, on the backend `--io
/// auto` picks (io_uring where usable) and on epoll.
const MODES: [(Option<&str>, &str); 4] =
    [(Some("shared"), "auto"), (None, "auto"), (Some("shared"), "epoll"), (None, "epoll")];

/// The test CA and leaf, written to a directory of their own (removed on drop).
struct Certs {
    dir: PathBuf,
    /// The CA certificate, PEM: what the peers trust.
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn new(test: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("ringwire-interop-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki::localhost();
        let (cert, key) = pki.write(&dir, "server");
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        Certs { dir, ca, cert, key }
    }

    /// `ringwire echo` over TLS with this leaf, `--deflate shared` or without deflate, on
    /// `io`, limits raised for the 1 MiB messages, and `extra`.
    fn echo(&self, (deflate, io): (Option<&str>, &str), extra: &[&str]) -> Echo {
        let [cert, key] = [&self.cert, &self.key].map(|p| p.to_str().unwrap());
        let deflate: &[&str] = match deflate {
            Some(mode) => &["--deflate", mode],
            None => &[],
        };
        let server = echo_server(&[
            &["--tls-cert", cert, "--tls-key", key, "--io", io],
            &["--max-frame-size", "4MiB", "--max-message-size", "4MiB"],
            deflate,
            extra,
        ]);
        // The start-up line names the scheme: a server that fell back to plain ws:// fails here.
        assert!(server.proc.log().contains("listening on wss://"), "not over TLS:\n{}", server.proc.log());
        server
    }

    fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a peer client (`cmd` gets the URL and whether deflate is expected) against
/// `ringwire echo` over TLS in each of [`MODES`]; checks its verdict and its TLS line, which
/// must name `tls_version` (ALPN `http/1.1`).
fn client_over_wss(who: &str, tls_version: &str, cmd: impl Fn(&str, &Certs, bool) -> Command) {
    let certs = Certs::new(&who.replace(' ', "-"));
    for m @ (deflate, io) in MODES {
        let server = certs.echo(m, &[]);
        // By name for the one, by address for the other: the leaf has both.
        let host = if io == "auto" { "localhost" } else { "127.0.0.1" };
        let url = format!("wss://{host}:{}/", server.addr.port());
        let who = format!("{who} -> {url} (--deflate {} --io {io})", deflate.unwrap_or("off"));
        let out = Proc::spawn(cmd(&url, &certs, deflate.is_some())).finish(PEER_LIMIT);
        let out = out.unwrap_or_else(|e| panic!("{who}: {e}\nringwire log:\n{}", server.proc.log()));
        let want = if deflate.is_some() { "ok permessage-deflate" } else { "ok no extensions" };
        assert!(out.lines().any(|l| l.starts_with(want)), "{who}: wanted {want:?}:\n{out}");
        let tls = format!("tls {tls_version} alpn http/1.1");
        assert!(out.lines().any(|l| l == tls), "{who}: wanted {tls:?}:\n{out}");
        eprintln!(
            "{who}: {}",
            out.lines().filter(|l| l.starts_with("tls") || l.starts_with("ok")).collect::<Vec<_>>().join("; ")
        );
    }
}

#[test]
fn node_ws_client_echoes_over_wss_trusting_the_test_ca() {
    let Some(node) = or_skip(Node::find()) else { return };
    client_over_wss("node ws", "TLSv1.3", |url, certs, deflate| {
        let mut cmd = node.command(&["client", url, SPEC, "--ca", certs.ca()]);
        cmd.args((!deflate).then_some("--no-deflate"));
        cmd
    });
}

#[test]
fn python_websockets_client_echoes_over_wss_trusting_the_test_ca() {
    let Some(py) = or_skip(Python::find()) else { return };
    for (version, cap) in [("TLSv1.3", None), ("TLSv1.2", Some("--tls1.2"))] {
        client_over_wss("python websockets", version, |url, certs, deflate| {
            let mut cmd = py.command(&["client", url, SPEC, "--ca", certs.ca()]);
            cmd.args(cap).args((!deflate).then_some("--no-deflate"));
            cmd
        });
    }
}

/// What the Autobahn sections check, over TLS through a real peer (see `checks` in
/// `peer-websockets.py`): fragmented messages, ping/pong, a clean close with 4000, and the
/// server's close codes 1002, 1007 and 1009, on both backends.
#[test]
fn python_websockets_over_wss_fragments_pings_and_close_codes() {
    let Some(py) = or_skip(Python::find()) else { return };
    let certs = Certs::new("checks");
    for io in ["auto", "epoll"] {
        let server = echo_server(&[
            &["--tls-cert", certs.cert.to_str().unwrap(), "--tls-key", certs.key.to_str().unwrap()],
            &["--io", io, "--max-frame-size", "64KiB", "--max-message-size", "64KiB"],
        ]);
        let url = format!("wss://localhost:{}/", server.addr.port());
        let out = Proc::spawn(py.command(&["checks", &url, "--ca", certs.ca()])).finish(PEER_LIMIT);
        let out = out.unwrap_or_else(|e| panic!("{url} --io {io}: {e}\nringwire log:\n{}", server.proc.log()));
        for line in ["tls TLSv1.3 alpn http/1.1", "ok fragments, ping", "close 4000", "ok checks"] {
            assert!(out.lines().any(|l| l == line), "--io {io}: no line {line:?}:\n{out}");
        }
        for code in ["1002", "1007", "1009"] {
            assert!(
                out.lines().any(|l| l.starts_with(&format!("close {code} "))),
                "--io {io}: no close {code}:\n{out}"
            );
        }
        eprintln!("python websockets checks over {url} --io {io}:\n{out}");
    }
}

/// An NSS database in `home/.pki/nssdb` (where Chromium on Linux reads its trust store)
/// with `ca` trusted to identify servers; `Err` if `certutil` is missing or fails.
fn nss_trust(home: &Path, ca: &Path) -> Result<(), String> {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    let sql = format!("sql:{}", db.display());
    let certutil = |args: &[&str]| -> Result<(), String> {
        let out = Proc::try_spawn(Command::new("certutil").arg("-d").arg(&sql).args(args))
            .map_err(|e| format!("certutil not usable (Debian: libnss3-tools): {e}"))?
            .finish(Duration::from_secs(30));
        out.map(drop).map_err(|e| format!("certutil {args:?}: {e}"))
    };
    certutil(&["-N", "--empty-password"])?;
    certutil(&["-A", "-t", "C,,", "-n", "ringwire interop test CA", "-i", ca.to_str().unwrap()])
}

#[test]
fn chromium_echoes_over_wss_trusting_the_test_ca() {
    let Some(browser) = or_skip(peers::chromium()) else { return };
    let certs = Certs::new("chromium");
    let home = certs.dir.join("home");
    let Some(()) = or_skip(nss_trust(&home, &certs.ca)) else { return };
    let netlog = certs.dir.join("netlog.json");
    let (page, results) = page_server();
    // A browser sends the page's Origin: ringwire lets exactly that one in.
    let origin = format!("http://{page}");
    let servers: Vec<Echo> = MODES.iter().map(|&m| certs.echo(m, &["--allow-origin", &origin])).collect();
    let urls: String = MODES
        .iter()
        .zip(&servers)
        .map(|((deflate, _), s)| {
            let param = if deflate.is_some() { "ws" } else { "ws-nodeflate" };
            format!("&{param}=wss://localhost:{}/", s.addr.port())
        })
        .collect();
    let mut cmd = Command::new(&browser);
    cmd.args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--no-default-browser-check", "--disable-extensions", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-proxy-server"])
        .arg(format!("--user-data-dir={}", certs.dir.join("profile").display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("{origin}/interop.html?spec={SPEC}{urls}"))
        .env("HOME", &home);
    let chromium = Proc::spawn(cmd);
    let verdict = results.recv_timeout(Duration::from_secs(60));
    let log = chromium.log();
    // An orderly exit, so that the net log is complete; killed with its helpers if it
    // does not come within 15 s (the net log check then says so).
    let _ = chromium.terminate(Duration::from_secs(15));
    let verdict = verdict.unwrap_or_else(|_| panic!("no verdict from the page within 60 s; chromium said:\n{log}"));
    assert!(verdict.starts_with(r#"{"ok":true"#), "the page failed: {verdict}");
    eprintln!("chromium over wss: {verdict}");
    // Each server saw its one connection through: the page ran every URL to a clean close.
    for (m, s) in MODES.iter().zip(&servers) {
        assert!(verdict.contains(&format!("wss://localhost:{}/", s.addr.port())), "{m:?}: not in {verdict}");
    }
    // The TLS version and ALPN, from the browser's net log: each finished TLS handshake is
    // an SSL_CONNECT event with both in its parameters (the page cannot see them).
    let netlog = std::fs::read_to_string(&netlog).unwrap_or_default();
    let handshakes: Vec<&str> =
        netlog.match_indices(r#""next_proto":""#).map(|(i, _)| event_params(&netlog, i)).collect();
    let ours =
        handshakes.iter().filter(|p| p.contains(r#""next_proto":"http/1.1""#) && p.contains(r#""version":"TLS 1.3""#));
    assert!(
        ours.count() >= MODES.len(),
        "not a TLS 1.3 handshake with ALPN http/1.1 per server in the net log: {handshakes:?}"
    );
}

/// The `{...}` object around byte `at` of the net log (one event's parameters).
fn event_params(log: &str, at: usize) -> &str {
    let start = log[..at].rfind('{').unwrap_or(0);
    let end = log[at..].find('}').map_or(log.len(), |e| at + e + 1);
    &log[start..end]
}
