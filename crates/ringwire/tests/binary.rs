//! The `ringwire` binary as a user runs it: flags, errors, the start-up line, the
//! io_uring fallback, an echo over a raw socket, graceful exit on SIGTERM within the
//! shutdown deadline, the descriptor limit, and a restart right after SIGKILL.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{RawClient, start_line};

fn ringwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwire"))
}

/// Starts `ringwire echo` on an ephemeral port and returns it with its start-up line.
fn start(extra_env: &[(&str, &str)], args: &[&str]) -> (Child, String) {
    spawn(extra_env, &[&["--addr", "127.0.0.1:0", "--threads", "1"], args].concat())
}

/// Starts `ringwire echo` with exactly `args` and returns it with its start-up line.
fn spawn(extra_env: &[(&str, &str)], args: &[&str]) -> (Child, String) {
    let mut cmd = ringwire();
    cmd.arg("echo").args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let line = start_line(&mut child, String::new);
    (child, line)
}

/// Like [`start`], but the binary gets `soft`/`hard` as its descriptor limits and its
/// stderr (the log) is collected in a thread; join it after the child exits.
fn start_limited(soft: u64, hard: u64, args: &[&str]) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut cmd = ringwire();
    cmd.args(["echo", "--addr", "127.0.0.1:0", "--threads", "1"]).args(args);
    // SAFETY: setrlimit is async-signal-safe and the closure touches no other state.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let line = start_line(&mut child, String::new);
    (child, line, log)
}

fn addr_of(line: &str) -> String {
    line.split("://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// A connection that has completed the upgrade.
fn upgraded(addr: &str) -> TcpStream {
    RawClient::connect(addr.parse().unwrap()).stream
}

/// Upgrade, send one masked text frame, return the echoed payload.
fn echo_once(addr: &str, text: &str) -> String {
    let mut c = RawClient::connect(addr.parse().unwrap());
    c.send(0x1, text.as_bytes());
    let (op, payload) = c.recv();
    assert_eq!(op, 0x1);
    String::from_utf8(payload).unwrap()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Waits for `child` to exit, at most `within`; kills it and fails if it does not.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("no exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    signal(&child, libc::SIGTERM);
    wait_exit(&mut child, Duration::from_secs(10))
}

/// An upgraded connection that neither reads nor answers the server's close, with what the
/// server sent piled up behind it.
fn silent_peer(addr: &str) -> TcpStream {
    support::stuff_until_blocked(addr.parse().unwrap()).stream
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
        (&["echo", "--tls-cert", "c.pem"][..], "--tls-key"),
        (
            &["echo", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "k.pem"][..],
            "--tls-cert/--tls-key: cannot read /nonexistent/c.pem",
        ),
        (&["echo", "--tls-sni", "example.com"][..], "--tls-sni"),
        (&["echo", "--tls-handshakes-per-turn", "0"][..], "--tls-handshakes-per-turn"),
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
    let t0 = Instant::now();
    let out = ringwire().args(["echo", "--addr", &addr, "--bind-retry", "300ms"]).output().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300), "retried first");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("a previous instance may still be releasing the port"), "{err}");
    assert!(err.lines().last().unwrap().contains(&addr) && err.contains("already in use"), "{err}");
}

#[test]
fn restarts_on_the_same_port_right_after_sigkill() {
    // Two workers with clients connected: on io_uring the killed process's listeners
    // linger for a moment while the kernel tears its rings down.
    let (mut child, line) = spawn(&[], &["--addr", "127.0.0.1:0", "--threads", "2"]);
    let addr = addr_of(&line);
    let peers: Vec<TcpStream> = (0..4).map(|_| upgraded(&addr)).collect();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t0 = Instant::now();
    let (child, line) = spawn(&[], &["--addr", &addr, "--threads", "2"]);
    assert!(line.starts_with("ringwire echo listening on ws://"), "not restarted: {line:?}");
    assert_eq!(addr_of(&line), addr);
    assert!(t0.elapsed() < Duration::from_secs(3), "serving within the bind retry: {:?}", t0.elapsed());
    assert_eq!(echo_once(&addr, "back again"), "back again");
    assert!(stop(child).success());
    drop(peers);
}

#[test]
fn sigterm_with_a_silent_peer_exits_0_within_the_shutdown_timeout() {
    let (mut child, line) = start(&[], &["--shutdown-timeout", "1s", "--close-timeout", "60s"]);
    let peer = silent_peer(&addr_of(&line));
    let t0 = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() >= Duration::from_millis(900), "waited for the peer first: {:?}", t0.elapsed());
    drop(peer);
}

#[test]
fn a_second_signal_exits_at_once_with_its_code() {
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let (mut child, line) = start(&[], &["--shutdown-timeout", "60s", "--close-timeout", "60s"]);
        let peer = silent_peer(&addr_of(&line));
        signal(&child, sig);
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "the first signal waits for the peer");
        signal(&child, sig);
        let status = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "{status:?}");
        drop(peer);
    }
}

#[test]
fn raises_the_descriptor_limit_and_warns_when_max_connections_is_above_it() {
    let (child, line, log) = start_limited(1024, 4096, &["--max-connections", "100000"]);
    assert!(line.contains("4096 file descriptors"), "the soft limit was raised to the hard one: {line}");
    assert!(stop(child).success());
    let log = log.join().unwrap();
    assert!(log.contains("--max-connections 100000") && log.contains("RLIMIT_NOFILE 4096"), "{log}");

    let (child, line, log) = start_limited(4096, 4096, &["--max-connections", "1000"]);
    assert!(line.contains("4096 file descriptors"), "{line}");
    assert!(stop(child).success());
    let log = log.join().unwrap();
    assert!(!log.contains("--max-connections"), "no warning when the limit allows it: {log}");
}

#[test]
fn sigterm_still_shuts_down_when_stderr_is_gone() {
    // A log pipe whose reader went away (a crashed log collector): the first signal's log
    // line cannot be written. Before, that took the signal thread with it and SIGTERM
    // was ignored for good.
    let mut child = ringwire()
        .args(["echo", "--addr", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = start_line(&mut child, String::new);
    assert!(line.contains("listening on ws://"), "{line}");
    std::thread::sleep(Duration::from_millis(300)); // the start-up log lines are written
    drop(child.stderr.take()); // no reader any more: the next log write fails
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn serves_wss_and_sighup_rotates_the_certificate_keeping_it_on_a_bad_file() {
    use ringwire_testkit::tls::{Pki, peer_leaf, tls_connect};
    let dir = std::env::temp_dir().join(format!("ringwire-bin-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (Pki::localhost(), Pki::localhost());
    let (cert, key) = first.write(&dir, "site");
    let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    let (child, line) = start(&[], &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(line.starts_with("ringwire echo listening on wss://127.0.0.1:"), "{line}");
    let addr: std::net::SocketAddr = addr_of(&line).parse().unwrap();
    // The leaf a new connection gets, when it verifies against `p`'s CA.
    let leaf = |p: &Pki| tls_connect(addr, "localhost", p.client_config()).ok().map(|s| peer_leaf(&s));
    let mut c = RawClient::over(tls_connect(addr, "localhost", first.client_config()).unwrap(), addr);
    c.send(0x1, b"over tls");
    assert_eq!(c.recv(), (0x1, b"over tls".to_vec()));

    // SIGHUP reads the files again: new connections get the new pair (each worker swaps at
    // its next accept; the signal is handled by another thread, so poll a little).
    assert_eq!(leaf(&second), None, "the old pair first");
    second.write(&dir, "site");
    signal(&child, libc::SIGHUP);
    let t0 = Instant::now();
    while leaf(&second) != Some(second.leaf.clone()) {
        assert!(t0.elapsed() < Duration::from_secs(5), "no new certificate after SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A bad file: SIGHUP keeps the pair in force (and the process).
    std::fs::write(&cert, "garbage").unwrap();
    signal(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(leaf(&second), Some(second.leaf.clone()));
    c.send(0x1, b"still");
    assert_eq!(c.recv(), (0x1, b"still".to_vec()));
    assert!(stop(child).success());
    std::fs::remove_dir_all(&dir).unwrap();
}
