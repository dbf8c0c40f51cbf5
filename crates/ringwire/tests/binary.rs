//! The `ringwire` binary as a user runs it: flags, errors, the start-up line, the
//! io_uring fallback, an echo over a raw socket, and graceful exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ringwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwire"))
}

/// Starts `ringwire echo` on an ephemeral port and returns it with its start-up line.
fn start(extra_env: &[(&str, &str)], args: &[&str]) -> (Child, String) {
    let mut cmd = ringwire();
    cmd.args(["echo", "--addr", "127.0.0.1:0", "--threads", "1"]).args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

fn addr_of(line: &str) -> String {
    line.split("ws://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// Upgrade, send one masked text frame, return the echoed payload.
fn echo_once(addr: &str, text: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, c)| c ^ key[i % 4]));
    s.write_all(&frame).unwrap();
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[0], 0x81);
    let mut p = vec![0u8; (h[1] & 0x7F) as usize];
    s.read_exact(&mut p).unwrap();
    String::from_utf8(p).unwrap()
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serves_echo_prints_its_address_and_exits_cleanly_on_sigterm() {
    let (child, line) = start(&[], &[]);
    assert!(line.starts_with("ringwire echo listening on ws://127.0.0.1:"), "{line}");
    assert_eq!(echo_once(&addr_of(&line), "hello ringwire"), "hello ringwire");
    assert!(stop(child).success(), "graceful shutdown exits 0");
}

#[test]
fn falls_back_to_epoll_when_io_uring_is_denied() {
    let (child, line) = start(&[("RINGWIRE_IO_URING_DENY", "1")], &["--io", "auto"]);
    assert!(line.contains("(epoll,"), "{line}");
    assert_eq!(echo_once(&addr_of(&line), "via epoll"), "via epoll");
    assert!(stop(child).success());
    // Requiring io_uring where it is denied is a clear error, not a fallback.
    let out = ringwire()
        .args(["echo", "--addr", "127.0.0.1:0", "--io", "uring"])
        .env("RINGWIRE_IO_URING_DENY", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("io backend") && err.contains("io_uring"), "{err}");
}

#[test]
fn bad_flags_give_one_line_naming_the_flag() {
    for (args, flag) in [
        (&["echo", "--threads", "many"][..], "--threads"),
        (&["echo", "--max-frame-size", "12 parsecs"][..], "--max-frame-size"),
        (&["echo", "--io", "kqueue"][..], "--io"),
        (&["broadcast", "--addr", "nowhere"][..], "--addr"),
        (&["echo", "--no-such-flag"][..], "--no-such-flag"),
    ] {
        let out = ringwire().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn a_busy_port_says_so() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ringwire().args(["echo", "--addr", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&addr) && err.contains("already in use"), "{err}");
}
