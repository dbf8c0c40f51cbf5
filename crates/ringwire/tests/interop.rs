//! Interop with real peers, permessage-deflate on: headless Chromium, Node's `ws` and
//! Python's `websockets` as clients of `ringwire echo --deflate shared|dedicated`, and
//! `ws` and `websockets` as servers for the ringwire client offering deflate.
//!
//! Every message is echoed and checked byte for byte by whoever sent it, and a relay
//! between the two sides reads the frames ([`relay`]): permessage-deflate must be in the
//! server's answer, the large compressible messages must cross compressed (RSV1, a quarter
//! of their size or less) both ways, and a message sent again must show context takeover
//! where it was negotiated (the repeat takes a fraction of the first's bytes) and its
//! absence where it was not (the repeat takes as many).
//!
//! The same peers as clients over TLS (wss://), each trusting a test CA: [`wss`].
//!
//! Peers install under `target/peers` (npm, pip). A missing `node`/`npm`, `python3` (with
//! venv), `chromium` (or `certutil`, for the wss test) skips its test with a line
//! `SKIPPED <test>: <why>`; with `RINGWIRE_REQUIRE_INTEROP=1` (CI) it fails instead.

#[path = "interop/peers.rs"]
mod peers;
#[path = "interop/relay.rs"]
mod relay;
#[path = "interop/wss.rs"]
mod wss;

use peers::{Node, Proc, Python, or_skip};
use relay::{Capture, Relay};
use ringwire::client::{ConnectOptions, connect_with};
use ringwire::conn::deflate::DeflateConfig;
use ringwire::conn::{CloseCode, Message};
use ringwire::io::IoChoice;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// The message set (the format is in `interop/messages.js`): short text and binary under
/// the server's threshold, 64 KiB and 1 MiB of JSON-like text, 64 KiB of it as binary,
/// 256 KiB of random bytes, and 2000 random letters sent four times.
const SPEC: &str = "t:16,b:16,t:65536,t:1048576,b:65536,r:262144,a:2000x4";

/// How long a peer may take for the whole set.
const PEER_LIMIT: Duration = Duration::from_secs(30);

/// One message of [`SPEC`]: its kind letter, length, and which send of it this is.
#[derive(Debug, Clone, Copy)]
struct Item {
    kind: char,
    len: usize,
    nth: usize,
}

fn items() -> Vec<Item> {
    SPEC.split(',')
        .flat_map(|item| {
            let (kind, rest) = item.split_once(':').unwrap();
            let (len, count) = rest.split_once('x').unwrap_or((rest, "1"));
            let (kind, len) = (kind.chars().next().unwrap(), len.parse().unwrap());
            (0..count.parse().unwrap()).map(move |nth| Item { kind, len, nth })
        })
        .collect()
}

/// The messages of [`SPEC`], the same bytes as `messages.js` and `peer-websockets.py` build.
fn messages() -> Vec<Message> {
    let mut x: u32 = 0x9e37_79b9;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let json = |n: usize| {
        let mut s = String::new();
        for i in 0.. {
            if s.len() >= n {
                break;
            }
            s += &format!(
                r#"{{"id":{i},"user":"user-{}","tags":["ringwire","deflate"],"score":{}}},"#,
                i % 97,
                (i * 7919) % 1000
            );
        }
        s.truncate(n);
        s
    };
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Vec::new();
    let mut last: Option<Message> = None;
    for it in items() {
        let m = match (it.kind, it.nth) {
            (_, 1..) => last.clone().unwrap(),
            ('t', _) => Message::Text(json(it.len).into()),
            ('b', _) => Message::Binary(json(it.len).into_bytes().into()),
            ('r', _) => Message::Binary((0..it.len).map(|_| next() as u8).collect::<Vec<u8>>().into()),
            _ => Message::Text(
                (0..it.len).map(|_| ALNUM[next() as usize % ALNUM.len()] as char).collect::<String>().into(),
            ),
        };
        last = Some(m.clone());
        out.push(m);
    }
    out
}

/// What the wire must show for one echo run of [`SPEC`] (see the crate docs). `takeover`:
/// context takeover negotiated both ways; `threshold_down`: the server sends messages under
/// 64 bytes uncompressed (ringwire's `--deflate-threshold 64`, ws's default 1024).
fn check_wire(cap: &Capture, takeover: bool, threshold_down: bool, who: &str) {
    assert!(cap.request.to_ascii_lowercase().contains("permessage-deflate"), "{who}: no offer:\n{}", cap.request);
    let ext = cap.extensions().unwrap_or_else(|| panic!("{who}: no extension negotiated:\n{}", cap.response));
    assert!(ext.starts_with("permessage-deflate"), "{who}: {ext}");
    let items = items();
    let sizes = |w: &[relay::WireMessage]| {
        w.iter().map(|m| format!("{}{}", m.wire_len, if m.compressed { "z" } else { "" })).collect::<Vec<_>>().join(" ")
    };
    eprintln!("{who}: {ext}\n  up (bytes, z: RSV1): {}\n  down: {}", sizes(&cap.up), sizes(&cap.down));
    for (dir, wire) in [("client to server", &cap.up), ("server to client", &cap.down)] {
        let who = format!("{who}, {dir}");
        assert_eq!(wire.len(), items.len(), "{who}: messages on the wire {wire:?}");
        let mut first = 0;
        for (it, m) in items.iter().zip(wire) {
            let text = matches!(it.kind, 't' | 'a');
            assert_eq!(m.opcode, if text { 1 } else { 2 }, "{who}: {it:?} {m:?}");
            if matches!(it.kind, 't' | 'b') && it.len >= 65536 {
                assert!(m.compressed && m.wire_len * 4 < it.len, "{who}: {it:?} crossed as {m:?}");
            }
            if it.kind == 'a' {
                assert!(m.compressed, "{who}: {it:?} crossed as {m:?}");
                if it.nth == 0 {
                    first = m.wire_len;
                } else if takeover {
                    assert!(m.wire_len * 4 < first, "{who}: {it:?} took {m:?}, the first {first}: no context takeover");
                } else {
                    assert!(m.wire_len * 4 >= first * 3, "{who}: {it:?} took {m:?}, the first {first}: context kept");
                }
            }
        }
    }
    if threshold_down {
        for (it, m) in items.iter().zip(&cap.down).filter(|(it, _)| it.len < 64) {
            assert!(!m.compressed && m.wire_len == it.len, "{who}: {it:?} under the threshold crossed as {m:?}");
        }
    }
}

/// A running `ringwire echo --deflate <mode>` (limits raised for the 1 MiB message,
/// threshold 64) and its address; killed on drop.
struct Echo {
    addr: SocketAddr,
    proc: Proc,
}

/// The server modes each client is run against: shared on the backend `--io auto` picks
/// (io_uring where usable), dedicated on epoll, as the Autobahn gate runs them; the bool
/// is context takeover.
const MODES: [(&str, bool, &str); 2] = [("shared", false, "auto"), ("dedicated", true, "epoll")];

fn ringwire_echo((mode, _, io): (&str, bool, &str), extra: &[&str]) -> Echo {
    echo_server(&[&["--io", io, "--deflate", mode, "--max-frame-size", "4MiB", "--max-message-size", "4MiB"], extra])
}

/// `ringwire echo` on an ephemeral loopback port, one worker, `--deflate-threshold 64`,
/// with the arguments in `args`; waits for its `listening on ws://` (or `wss://`) line.
fn echo_server(args: &[&[&str]]) -> Echo {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwire"));
    cmd.args(["echo", "--addr", "127.0.0.1:0", "--threads", "1", "--deflate-threshold", "64"]).args(args.concat());
    let proc = Proc::spawn(cmd);
    let addr = proc.wait_line("ringwire echo listening on ", PEER_LIMIT);
    let addr = addr.split_once("://").expect("a URL").1.split(['/', ' ']).next().unwrap();
    Echo { addr: addr.parse().expect("the listening address"), proc }
}

/// Runs a peer client (`cmd` gets the URL and [`SPEC`]) against both modes of
/// `ringwire echo --deflate`, through a relay, and checks the wire.
fn client_against_ringwire(who: &str, cmd: impl Fn(&str) -> Command) {
    for m @ (mode, takeover, io) in MODES {
        let server = ringwire_echo(m, &[]);
        let relay = Relay::start(server.addr);
        let who = format!("{who} -> ringwire --deflate {mode} --io {io}");
        let out = Proc::spawn(cmd(&format!("ws://{}/", relay.addr))).finish(PEER_LIMIT);
        let out = out.unwrap_or_else(|e| panic!("{who}: {e}\nringwire log:\n{}", server.proc.log()));
        assert!(out.lines().any(|l| l.starts_with("ok permessage-deflate")), "{who}: {out}");
        let caps = relay.captures();
        assert_eq!(caps.len(), 1, "{who}: connections {caps:?}");
        check_wire(&caps[0], takeover, true, &who);
    }
}

/// The ringwire client offering deflate (with context takeover on the backend `Auto` picks,
/// without it on epoll) echoes [`SPEC`] through a relay to the echo server at `server`, and
/// the wire is checked (`threshold_down` given takeover: see [`check_wire`]).
fn ringwire_client_against(who: &str, server: SocketAddr, threshold_down: fn(bool) -> bool) {
    let want = messages();
    for (takeover, io) in [(true, IoChoice::Auto), (false, IoChoice::Epoll)] {
        let who = format!("ringwire client ({io:?}) -> {who}, context takeover {takeover}");
        let relay = Relay::start(server);
        let mut offer = DeflateConfig::default();
        offer.server_no_context_takeover = !takeover;
        offer.client_no_context_takeover = !takeover;
        let mut opts = ConnectOptions::default();
        opts.config.deflate = Some(offer);
        opts.config.max_received_frame_size = 4 << 20;
        opts.config.max_received_message_size = 4 << 20;
        let mut ws = connect_with(&format!("ws://{}/", relay.addr), opts, io).unwrap();
        assert!(ws.response().deflate.is_some(), "{who}: {:?}", ws.response().headers);
        for (i, m) in want.iter().enumerate() {
            ws.send(m.clone()).unwrap();
            let got = ws.recv_timeout(Duration::from_secs(10)).unwrap().unwrap_or_else(|| panic!("{who}: no echo {i}"));
            assert!(got == *m, "{who}: echo {i} differs ({:?})", items()[i]);
        }
        assert_eq!(ws.close(CloseCode::NORMAL, "done").unwrap().0, CloseCode::NORMAL, "{who}");
        let caps = relay.captures();
        assert_eq!(caps.len(), 1, "{who}: connections {caps:?}");
        check_wire(&caps[0], takeover, threshold_down(takeover), &who);
    }
}

#[test]
fn node_ws_client_echoes_through_ringwire_deflate_both_modes() {
    let Some(node) = or_skip(Node::find()) else { return };
    client_against_ringwire("node ws", |url| node.command(&["client", url, SPEC]));
}

#[test]
fn python_websockets_client_echoes_through_ringwire_deflate_both_modes() {
    let Some(py) = or_skip(Python::find()) else { return };
    client_against_ringwire("python websockets", |url| py.command(&["client", url, SPEC]));
}

#[test]
fn ringwire_client_echoes_through_node_ws_server_with_deflate() {
    let Some(node) = or_skip(Node::find()) else { return };
    let server = Proc::spawn(node.command(&["server"]));
    let port = server.wait_line("listening ", PEER_LIMIT);
    // ws applies its threshold (1024) only where it does not keep its context.
    ringwire_client_against("node ws server", format!("127.0.0.1:{port}").parse().unwrap(), |takeover| !takeover);
}

#[test]
fn ringwire_client_echoes_through_python_websockets_server_with_deflate() {
    let Some(py) = or_skip(Python::find()) else { return };
    let server = Proc::spawn(py.command(&["server"]));
    let port = server.wait_line("listening ", PEER_LIMIT);
    // websockets has no threshold: it compresses every message.
    ringwire_client_against("python websockets server", format!("127.0.0.1:{port}").parse().unwrap(), |_| false);
}

/// Serves `interop.html` and `messages.js`, and sends each body POSTed to `/result` to
/// the returned channel. The thread lives as long as the test process.
fn page_server() -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                head.push(std::mem::take(&mut line));
            }
            let Some(first) = head.first() else { continue };
            let path = first.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_owned();
            let len: usize = head
                .iter()
                .find_map(|h| h.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
                .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let (status, kind, content) = match path.as_str() {
                "/interop.html" | "/messages.js" => {
                    let kind = if path.ends_with(".js") { "text/javascript" } else { "text/html" };
                    ("200 OK", kind, std::fs::read(peers::asset(&path[1..])).unwrap())
                }
                "/result" => {
                    let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                    ("200 OK", "text/plain", b"thanks".to_vec())
                }
                _ => ("404 Not Found", "text/plain", b"not here".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content.len()
            );
            let _ = stream.write_all(&content);
        }
    });
    (addr, rx)
}

#[test]
fn chromium_echoes_through_ringwire_deflate_both_modes() {
    let Some(browser) = or_skip(peers::chromium()) else { return };
    let (page, results) = page_server();
    // A browser sends the page's Origin: ringwire lets exactly that one in.
    let origin = format!("http://{page}");
    let servers: Vec<Echo> = MODES.iter().map(|&m| ringwire_echo(m, &["--allow-origin", &origin])).collect();
    let relays: Vec<Relay> = servers.iter().map(|s| Relay::start(s.addr)).collect();
    let ws: String = relays.iter().map(|r| format!("&ws=ws://{}/", r.addr)).collect();
    let profile = std::env::temp_dir().join(format!("ringwire-interop-chromium-{}", std::process::id()));
    let mut cmd = Command::new(&browser);
    cmd.args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--no-default-browser-check", "--disable-extensions", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-proxy-server"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("{origin}/interop.html?spec={SPEC}{ws}"));
    let chromium = Proc::spawn(cmd);
    let verdict = results.recv_timeout(Duration::from_secs(60));
    let log = chromium.log();
    drop(chromium); // kills the browser and its helpers
    let _ = std::fs::remove_dir_all(&profile);
    let verdict = verdict.unwrap_or_else(|_| panic!("no verdict from the page within 60 s; chromium said:\n{log}"));
    assert!(verdict.starts_with(r#"{"ok":true"#), "the page failed: {verdict}");
    for ((mode, takeover, io), relay) in MODES.iter().zip(&relays) {
        let caps = relay.captures();
        assert_eq!(caps.len(), 1, "chromium -> ringwire --deflate {mode} --io {io}: connections {caps:?}");
        check_wire(&caps[0], *takeover, true, &format!("chromium -> ringwire --deflate {mode} --io {io}"));
    }
}
