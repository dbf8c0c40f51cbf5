//! End-to-end checks of the harness: `loadgen` against the peer servers and against
//! small deliberately broken servers, each run a fraction of a second.

use ringwire_loadtest::peer::parse_upgrade;
use ringwire_loadtest::wire::accept_key;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

struct Peer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a peer on an ephemeral port and reads the port from its first stderr line.
fn peer(exe: &str, mode: &str) -> Peer {
    peer_with(exe, mode, &[])
}

fn peer_with(exe: &str, mode: &str, extra: &[&str]) -> Peer {
    let mut child = Command::new(exe)
        .args(["--addr", "127.0.0.1:0", "--mode", mode])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start peer");
    let mut line = String::new();
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    err.read_line(&mut line).expect("peer banner");
    let addr = line.trim().rsplit(' ').next().expect("address").parse().expect("socket address");
    // Keep draining the peer's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Peer { child, addr }
}

fn loadgen(args: &[&str]) -> (Option<serde_json::Value>, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--quiet", "--threads", "2", "--duration", "0.3", "--warmup", "0.1"])
        .args(args)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (serde_json::from_str(&stdout).ok(), stderr, out.status.code().unwrap_or(-1))
}

fn num(v: &serde_json::Value, ptr: &str) -> f64 {
    v.pointer(ptr).and_then(|x| x.as_f64()).unwrap_or_else(|| panic!("{ptr} missing in {v}"))
}

#[test]
fn closed_and_pipelined_echo_against_both_peers() {
    for exe in [env!("CARGO_BIN_EXE_peer-fastwebsockets"), env!("CARGO_BIN_EXE_peer-tungstenite")] {
        let p = peer(exe, "echo");
        let pid = p.child.id().to_string();
        let addr = p.addr.to_string();
        for extra in
            [&["--mode", "closed", "--conns", "8"][..], &["--mode", "pipelined", "--conns", "4", "--depth", "8"]]
        {
            let mut args = vec!["--addr", &addr, "--server-pid", &pid];
            args.extend_from_slice(extra);
            let (v, err, code) = loadgen(&args);
            let v = v.unwrap_or_else(|| panic!("no JSON from loadgen ({code}): {err}"));
            assert_eq!(num(&v, "/errors"), 0.0, "{v}");
            assert!(num(&v, "/messages") > 0.0 && num(&v, "/latency/samples") > 0.0, "{v}");
            assert!(num(&v, "/latency/p99_us") >= num(&v, "/latency/p50_us"));
            assert!(num(&v, "/server_cpu_s") >= 0.0 && num(&v, "/server_rss_after_kb") > 0.0, "{v}");
        }
        let (v, err, _) = loadgen(&["--addr", &addr, "--conns", "2", "--size", "16384", "--binary"]);
        let v = v.unwrap_or_else(|| panic!("large: {err}"));
        assert_eq!(num(&v, "/errors"), 0.0, "{v}");
        assert!(num(&v, "/messages") > 0.0);
    }
}

#[test]
fn open_loop_keeps_the_offered_rate() {
    let p = peer(env!("CARGO_BIN_EXE_peer-fastwebsockets"), "echo");
    let addr = p.addr.to_string();
    let (v, err, _) = loadgen(&["--addr", &addr, "--mode", "open-loop", "--rate", "2000", "--conns", "4"]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    let sent = num(&v, "/sent_per_s");
    assert!((1000.0..4000.0).contains(&sent), "offered 2000/s, sent {sent}/s");
}

#[test]
fn broadcast_counts_deliveries_to_every_subscriber() {
    for exe in [env!("CARGO_BIN_EXE_peer-fastwebsockets"), env!("CARGO_BIN_EXE_peer-tungstenite")] {
        let p = peer(exe, "broadcast");
        let addr = p.addr.to_string();
        let (v, err, _) = loadgen(&["--addr", &addr, "--mode", "broadcast", "--conns", "10", "--size", "64"]);
        let v = v.unwrap_or_else(|| panic!("{err}"));
        assert_eq!(num(&v, "/errors"), 0.0, "{v}");
        let (d, s) = (num(&v, "/deliveries_per_s"), num(&v, "/sent_per_s"));
        // Each published message reaches all 10 subscribers (the window keeps them close).
        assert!(d > 0.0 && (d / s - 10.0).abs() < 2.0, "deliveries {d}/s for {s} published/s");
        // Reads are counted: a read carries at least one delivery on average and, with the
        // publisher at most 8 ahead, no more than the 8 a subscriber can have queued (plus
        // what the publisher's own copies add).
        let (reads, per_read) = (num(&v, "/reads_per_s"), num(&v, "/msgs_per_read"));
        assert!(reads > 0.0 && (1.0..=9.0).contains(&per_read), "{reads} reads/s, {per_read} per read");
        assert!(num(&v, "/polls_per_s") > 0.0, "{v}");
    }
}

#[test]
fn idle_reports_rss_per_connection_and_verifies_each() {
    let p = peer(env!("CARGO_BIN_EXE_peer-fastwebsockets"), "echo");
    let (addr, pid) = (p.addr.to_string(), p.child.id().to_string());
    let (v, err, _) =
        loadgen(&["--addr", &addr, "--mode", "idle", "--conns", "50", "--hold", "0.1", "--server-pid", &pid]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    assert_eq!(num(&v, "/idle_verified"), 50.0, "{v}");
    assert!(v["rss_bytes_per_conn"].is_number(), "{v}");
    // --echo-first N: every connection echoes N messages before the hold.
    let (v, err, _) = loadgen(&[
        "--addr",
        &addr,
        "--mode",
        "idle",
        "--echo-first",
        "3",
        "--conns",
        "20",
        "--hold",
        "0.1",
        "--server-pid",
        &pid,
    ]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    assert_eq!(num(&v, "/idle_verified"), 60.0, "{v}");
}

/// What a scripted server writes back for one client frame: its first byte and its
/// unmasked payload in, bytes for the socket out.
type Reply = fn(u8, Vec<u8>) -> Vec<u8>;

/// A WebSocket server (short frames only) answering the upgrade with `extensions` in
/// its 101 and every client frame with `reply`.
fn scripted_ws_server(extensions: Option<&'static str>, reply: Reply) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || scripted_conn(s, extensions, reply));
        }
    });
    addr
}

fn scripted_conn(mut s: TcpStream, extensions: Option<&str>, reply: Reply) -> Option<()> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    let key = loop {
        s.read_exact(&mut b).ok()?;
        head.push(b[0]);
        if let Ok(Some((key, _))) = parse_upgrade(&head) {
            break key;
        }
    };
    let ext = extensions.map_or_else(String::new, |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{ext}\r\n",
        accept_key(&key)
    );
    s.write_all(resp.as_bytes()).ok()?;
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).ok()?;
        let len = (h[1] & 0x7F) as usize;
        assert!(len < 126, "test server only handles short frames");
        let mut mask = [0u8; 4];
        s.read_exact(&mut mask).ok()?;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).ok()?;
        for (i, x) in p.iter_mut().enumerate() {
            *x ^= mask[i & 3];
        }
        s.write_all(&reply(h[0], p)).ok()?;
    }
}

/// An unmasked short frame.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![b0, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// A WebSocket echo server that flips one bit of every echoed payload.
fn corrupting_ws_server() -> SocketAddr {
    scripted_ws_server(None, |b0, mut p| {
        let mid = p.len() / 2;
        p[mid] ^= 0x01;
        frame(b0, &p)
    })
}

/// The message split in two frames: RSV1 (from `b0`) on the first, `rsv1_again` on the
/// continuation too.
fn split_echo(b0: u8, p: &[u8], rsv1_again: bool) -> Vec<u8> {
    let (a, b) = p.split_at(p.len() / 2);
    let mut out = frame(b0 & 0x7F, a);
    out.extend(frame(0x80 | if rsv1_again { 0x40 } else { 0 }, b));
    out
}

#[test]
fn deflate_framing_is_checked() {
    const AGREED: Option<&str> = Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    let run = |addr: SocketAddr, deflate: bool| {
        let addr = addr.to_string();
        let mut args = vec!["--addr", &addr, "--conns", "2", "--size", "64", "--payload", "json"];
        if deflate {
            args.push("--deflate");
        }
        let (v, err, _) = loadgen(&args);
        v.unwrap_or_else(|| panic!("{err}"))
    };
    // loadgen's own compressed frames echoed back (whole, or split with RSV1 on the first
    // frame only) inflate to what was sent.
    for reply in [(|b0, p| frame(b0, &p)) as Reply, |b0, p| split_echo(b0, &p, false)] {
        let v = run(scripted_ws_server(AGREED, reply), true);
        assert_eq!(num(&v, "/errors"), 0.0, "{v}");
        assert!(num(&v, "/messages") > 0.0 && num(&v, "/bytes/recv_compressed_msgs") > 0.0, "{v}");
    }
    let cases: [(Option<&'static str>, bool, Reply, &str); 3] = [
        (AGREED, true, |b0, p| split_echo(b0, &p, true), "RSV1 on a continuation frame"),
        (None, false, |b0, p| frame(b0 | 0x40, &p), "reserved bits"),
        (Some("permessage-deflate"), true, |b0, p| frame(b0, &p), "client_no_context_takeover"),
    ];
    for (ext, deflate, reply, want) in cases {
        let v = run(scripted_ws_server(ext, reply), deflate);
        assert!(num(&v, "/errors") >= 1.0, "{want}: {v}");
        assert!(v["error_samples"].to_string().contains(want), "{want}: {v}");
    }
}

#[test]
fn corrupted_echo_is_reported() {
    let addr = corrupting_ws_server().to_string();
    let (v, err, _) = loadgen(&["--addr", &addr, "--conns", "2"]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert!(num(&v, "/errors") >= 1.0, "{v}");
    assert!(v["error_samples"].to_string().contains("differs"), "{v}");
}

#[test]
fn raw_tcp_mode_checks_bytes() {
    // A raw echo server, and one that drops the last byte of each read.
    for broken in [false, true] {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let keep = if broken { n - 1 } else { n };
                        let mut out = buf[..keep].to_vec();
                        if broken {
                            out.push(b'#');
                        }
                        if s.write_all(&out).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let (v, err, _) = loadgen(&["--addr", &addr, "--raw", "--conns", "2"]);
        let v = v.unwrap_or_else(|| panic!("{err}"));
        if broken {
            assert!(num(&v, "/errors") >= 1.0, "{v}");
        } else {
            assert_eq!(num(&v, "/errors"), 0.0, "{v}");
            assert!(num(&v, "/messages") > 0.0);
        }
    }
}

#[test]
fn bad_arguments_get_clear_errors() {
    let (v, err, code) = loadgen(&["--addr", "127.0.0.1:9", "--mode", "open-loop"]);
    assert!(v.is_none() && code == 2 && err.contains("--rate"), "{code} {err}");
    let (_, err, code) = loadgen(&["--addr", "127.0.0.1:9", "--mode", "broadcast", "--size", "8"]);
    assert!(code == 2 && err.contains("--size"), "{err}");
    let (_, err, code) = loadgen(&["--addr", "127.0.0.1:9", "--mode", "idle", "--echo-first", "0"]);
    assert!(code == 2 && err.contains("--echo-first"), "{err}");
    // Nothing listens on port 9: the connect failure is reported, not hidden.
    let (v, err, code) = loadgen(&["--addr", "127.0.0.1:9", "--conns", "1", "--connect-timeout", "2"]);
    assert!(v.is_some() || code == 2, "{err}");
    if let Some(v) = v {
        assert!(num(&v, "/errors") >= 1.0, "{v}");
    }
}

/// The `ringwire` binary: `$RINGWIRE_BIN`, or beside `loadgen` in this target directory
/// (the same profile), or built there now with cargo.
fn ringwire_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("RINGWIRE_BIN") {
        return p.into();
    }
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_loadgen")).parent().expect("target dir").to_path_buf();
    let bin = dir.join("ringwire");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "ringwire", "--bin", "ringwire"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        // The binary goes to this test's own target directory (…/<profile>/ringwire).
        let target = dir.parent().expect("target root");
        let status = cmd.env("CARGO_TARGET_DIR", target).status().expect("run cargo build");
        assert!(status.success(), "cargo build -p ringwire failed");
    }
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// Starts `ringwire <mode> --addr 127.0.0.1:0 <extra>` and reads the address from its banner.
fn ringwire(mode: &str, extra: &[&str]) -> Peer {
    let mut child = Command::new(ringwire_bin())
        .args([mode, "--addr", "127.0.0.1:0", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringwire");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ringwire banner");
    // "ringwire echo listening on ws://127.0.0.1:PORT (...)" (wss:// with TLS)
    let url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ws://").or_else(|| w.strip_prefix("wss://")))
        .unwrap_or_else(|| panic!("banner: {line}"));
    let addr = url.parse().expect("socket address");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Peer { child, addr }
}

#[test]
fn deflate_echo_and_broadcast_against_ringwire_in_both_modes() {
    let mut recv_ratio = Vec::new();
    for mode in ["shared", "dedicated"] {
        let p = ringwire("echo", &["--deflate", mode]);
        let addr = p.addr.to_string();
        let (v, err, code) =
            loadgen(&["--addr", &addr, "--deflate", "--payload", "json", "--size", "2048", "--conns", "4"]);
        let v = v.unwrap_or_else(|| panic!("{mode}: no JSON from loadgen ({code}): {err}"));
        assert_eq!(num(&v, "/errors"), 0.0, "{mode}: {v}");
        assert!(num(&v, "/messages") > 0.0, "{v}");
        assert_eq!(v["deflate_agreed"]["server_no_context_takeover"], mode == "shared", "{v}");
        // Every echo arrived compressed, was inflated and matched; both directions shrank.
        assert!(num(&v, "/bytes/recv_compressed_msgs") > 0.0 && num(&v, "/bytes/recv_plain_msgs") == 0.0, "{v}");
        assert!(num(&v, "/bytes/recv_wire") < num(&v, "/bytes/recv_payload"), "{v}");
        assert!(num(&v, "/bytes/sent_wire") < num(&v, "/bytes/sent_payload"), "{v}");
        recv_ratio.push(num(&v, "/bytes/recv_ratio"));
        // Without --deflate the same server answers with no extension.
        let (v, err, _) = loadgen(&["--addr", &addr, "--payload", "json", "--size", "2048", "--conns", "2"]);
        let v = v.unwrap_or_else(|| panic!("{err}"));
        assert_eq!(num(&v, "/errors"), 0.0, "{v}");
        assert_eq!(num(&v, "/bytes/recv_wire"), num(&v, "/bytes/recv_payload"), "{v}");
    }
    // Context takeover (dedicated) compresses better than a fresh window per message.
    assert!(recv_ratio[1] > recv_ratio[0], "ratios shared/dedicated {recv_ratio:?}");

    let p = ringwire("broadcast", &["--deflate", "shared"]);
    let addr = p.addr.to_string();
    let (v, err, _) = loadgen(&[
        "--addr",
        &addr,
        "--mode",
        "broadcast",
        "--conns",
        "5",
        "--size",
        "1024",
        "--payload",
        "json",
        "--deflate",
    ]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    assert!(num(&v, "/deliveries_per_s") > 0.0 && num(&v, "/bytes/recv_wire") < num(&v, "/bytes/recv_payload"), "{v}");
}

#[test]
fn deflate_refused_by_the_server_is_a_clear_error() {
    let p = ringwire("echo", &[]);
    let addr = p.addr.to_string();
    let (v, err, _) = loadgen(&["--addr", &addr, "--deflate", "--payload", "json", "--size", "256", "--conns", "1"]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert!(num(&v, "/errors") >= 1.0, "{v}");
    assert!(v["error_samples"].to_string().contains("did not accept permessage-deflate"), "{v}");
}

/// A fresh test CA and localhost certificate (ECDSA P-256) in a directory of its own.
fn certs(tag: &str) -> ringwire_loadtest::tls::CertFiles {
    let dir = std::env::temp_dir().join(format!("ringwire-harness-{tag}-{}", std::process::id()));
    ringwire_loadtest::tls::write(&dir, ringwire_loadtest::tls::KeyKind::EcdsaP256).expect("certificates")
}

fn tls_peer(files: &ringwire_loadtest::tls::CertFiles) -> Peer {
    let (chain, key) = (files.chain.display().to_string(), files.key.display().to_string());
    peer_with(env!("CARGO_BIN_EXE_peer-fastwebsockets"), "echo", &["--tls-cert", &chain, "--tls-key", &key])
}

#[test]
fn tls_echo_and_handshakes_against_fastwebsockets() {
    let files = certs("echo");
    let p = tls_peer(&files);
    let (addr, pid, ca) = (p.addr.to_string(), p.child.id().to_string(), files.ca.display().to_string());
    let tls = ["--tls", "--tls-ca", &ca];
    for extra in [
        &["--mode", "closed", "--conns", "8"][..],
        &["--mode", "closed", "--conns", "2", "--size", "40000", "--binary"],
        &["--mode", "handshake", "--conns", "4"],
    ] {
        let mut args = vec!["--addr", &addr, "--server-pid", &pid];
        args.extend_from_slice(&tls);
        args.extend_from_slice(extra);
        let (v, err, code) = loadgen(&args);
        let v = v.unwrap_or_else(|| panic!("no JSON from loadgen ({code}): {err}"));
        assert_eq!(num(&v, "/errors"), 0.0, "{v}");
        assert!(num(&v, "/messages") > 0.0 && num(&v, "/server_cpu_s") >= 0.0, "{v}");
        let neg = &v["tls"]["negotiated"];
        assert_eq!(neg["version"], "TLSv1_3", "{v}");
        assert_eq!(neg["cipher_suite"], "TLS13_AES_128_GCM_SHA256", "{v}");
        assert_eq!(neg["kx_group"], "X25519", "{v}");
        assert_eq!(neg["alpn"], "http/1.1", "{v}");
        assert_eq!(num(&v, "/tls/negotiated/resumed"), 0.0, "resumption is off by default: {v}");
        if extra[1] == "handshake" {
            // Every cycle is a new connection with a full handshake, more than one per slot.
            assert!(num(&v, "/tls/negotiated/full") >= num(&v, "/messages") && num(&v, "/messages") > 8.0, "{v}");
        }
    }
    // TLS 1.2 and P-256 when asked.
    let (v, err, _) = loadgen(&["--addr", &addr, "--tls", "--tls-ca", &ca, "--tls-version", "1.2", "--tls-kx", "p256"]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    assert_eq!(v["tls"]["negotiated"]["version"], "TLSv1_2", "{v}");
    assert_eq!(v["tls"]["negotiated"]["kx_group"], "secp256r1", "{v}");
}

#[test]
fn tls_resumption_is_used_only_when_asked() {
    let files = certs("resume");
    let p = tls_peer(&files);
    let (addr, ca) = (p.addr.to_string(), files.ca.display().to_string());
    let (v, err, _) =
        loadgen(&["--addr", &addr, "--tls", "--tls-ca", &ca, "--mode", "handshake", "--conns", "2", "--tls-resume"]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    assert!(num(&v, "/tls/negotiated/resumed") > 0.0, "{v}");
}

#[test]
fn tls_failures_are_errors() {
    let files = certs("fail");
    let other = certs("other-ca");
    let p = tls_peer(&files);
    let addr = p.addr.to_string();
    // Every connection fails: the errors are counted and the first ones say why.
    let failing = |args: &[&str], why: &str| {
        let mut all = vec!["--conns", "2", "--connect-timeout", "5"];
        all.extend_from_slice(args);
        let (v, err, code) = loadgen(&all);
        let v = v.unwrap_or_else(|| panic!("no JSON ({code}): {err}"));
        assert!(num(&v, "/errors") >= 2.0 && num(&v, "/messages") == 0.0, "{v}");
        assert!(v["error_samples"].to_string().contains(why), "want {why:?}: {v}");
    };
    let (ca, wrong) = (files.ca.display().to_string(), other.ca.display().to_string());
    // A CA that did not sign the server's certificate.
    failing(&["--addr", &addr, "--tls", "--tls-ca", &wrong], "invalid peer certificate");
    // The right CA but a name the certificate does not carry.
    failing(&["--addr", &addr, "--tls", "--tls-ca", &ca, "--tls-server-name", "example.com"], "not valid for name");
    // wss to a plain server, and ws to a TLS one.
    let plain = peer(env!("CARGO_BIN_EXE_peer-fastwebsockets"), "echo");
    failing(&["--addr", &plain.addr.to_string(), "--tls", "--tls-ca", &ca], "tls");
    failing(&["--addr", &addr], "handshake");
    let (_, err, code) = loadgen(&["--addr", &addr, "--tls", "--tls-ca", &ca, "--raw"]);
    assert!(code == 2 && err.contains("--raw"), "{err}");
    let (_, err, code) = loadgen(&["--addr", &addr, "--tls"]);
    assert!(code == 2 && err.contains("--tls-ca"), "{err}");
}

#[test]
fn handshake_mode_without_tls_cycles_connections() {
    let p = peer(env!("CARGO_BIN_EXE_peer-fastwebsockets"), "echo");
    let (v, err, _) = loadgen(&["--addr", &p.addr.to_string(), "--mode", "handshake", "--conns", "4"]);
    let v = v.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(num(&v, "/errors"), 0.0, "{v}");
    assert!(num(&v, "/messages") > 8.0 && num(&v, "/latency/samples") > 0.0, "{v}");
    assert!(v["tls"].is_null(), "{v}");
}

#[test]
fn tls_echo_and_handshakes_against_ringwire() {
    let files = certs("ringwire");
    let (chain, key, ca) =
        (files.chain.display().to_string(), files.key.display().to_string(), files.ca.display().to_string());
    let p = ringwire("echo", &["--tls-cert", &chain, "--tls-key", &key]);
    let (addr, pid) = (p.addr.to_string(), p.child.id().to_string());
    for extra in [
        &["--mode", "closed", "--conns", "8"][..],
        &["--mode", "closed", "--conns", "2", "--size", "40000", "--binary"],
        &["--mode", "handshake", "--conns", "4"],
        &["--mode", "idle", "--echo-first", "1", "--conns", "20", "--hold", "0.1"],
    ] {
        let mut args = vec!["--addr", &addr, "--server-pid", &pid, "--tls", "--tls-ca", &ca];
        args.extend_from_slice(extra);
        let (v, err, code) = loadgen(&args);
        let v = v.unwrap_or_else(|| panic!("no JSON from loadgen ({code}): {err}"));
        assert_eq!(num(&v, "/errors"), 0.0, "{v}");
        assert_eq!(v["tls"]["negotiated"]["alpn"], "http/1.1", "{v}");
        if extra[1] == "idle" {
            assert_eq!(num(&v, "/idle_verified"), 20.0, "{v}");
        } else {
            assert!(num(&v, "/messages") > 0.0, "{v}");
        }
    }
}
