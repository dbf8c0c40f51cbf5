//! Test support for attacking a real `ringwire` process: start it, read what it costs
//! (RSS, descriptors), and speak raw WebSocket to it (ringwire-testkit's raw client).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The raw client and its frames.
pub use ringwire_testkit::{RawClient, masked_frame};

/// How long a `ringwire` process may take to print its start-up line (with `--bus-wait`,
/// the tests start the broker within a second).
const START_LINE: Duration = Duration::from_secs(30);

/// The first line `child` writes to its piped stdout (its start-up line; empty if it exits
/// first), within [`START_LINE`]; the rest of its stdout is read and dropped. A child that
/// writes no line in time is killed and the test fails (instead of hanging), with `log()`,
/// what it logged so far, in the message.
pub fn start_line(child: &mut Child, log: impl FnOnce() -> String) -> String {
    let mut out = BufReader::new(child.stdout.take().expect("stdout piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(out.read_line(&mut line).map(|_| line));
        std::io::copy(&mut out, &mut std::io::sink())
    });
    match rx.recv_timeout(START_LINE) {
        Ok(line) => line.expect("stdout readable"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no start-up line within {START_LINE:?}\nlog: {}", log());
        }
    }
}

/// A running `ringwire` process, killed on drop.
pub struct Ringwire {
    child: Child,
    pub addr: SocketAddr,
    /// The start-up line on stdout.
    pub line: String,
    stderr: Arc<Mutex<String>>,
}

impl Ringwire {
    /// Starts `ringwire <mode> --io <io> --threads 1 --addr 127.0.0.1:0 <args>` (`--threads`
    /// in `args` replaces the 1) and waits for its start-up line. `None` (after a printed line) when `io` is `uring` and io_uring is
    /// unavailable here.
    pub fn start(mode: &str, io: &str, args: &[&str]) -> Option<Ringwire> {
        if io == "uring" && !ringwire_testkit::uring_usable() {
            return None;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
            .args([mode, "--io", io, "--addr", "127.0.0.1:0"])
            .args(if args.contains(&"--threads") { &[][..] } else { &["--threads", "1"][..] })
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringwire");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let line = start_line(&mut child, || stderr.lock().unwrap().clone());
        let Some(addr) = line.split("ws://").nth(1).and_then(|s| s.split_whitespace().next()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no start-up line: {line:?}\nstderr: {}", stderr.lock().unwrap());
        };
        let addr = addr.trim_end_matches('/').parse().expect("listening address");
        let server = Ringwire { child, addr, line, stderr };
        // The line comes before the worker threads set up their loops: one upgrade makes
        // sure they did, so descriptor and memory baselines are taken from a serving process.
        drop(RawClient::connect(addr));
        std::thread::sleep(Duration::from_millis(200));
        Some(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Open descriptors.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    pub fn signal(&mut self, sig: i32) {
        // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the process logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Ringwire {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client with a 2 KiB receive buffer that sends 60 KB binary frames to echo until its
/// own send buffer stays full, then is left alone: it never reads and never sends again.
pub fn stuff_until_blocked(addr: SocketAddr) -> RawClient {
    let mut c = RawClient::connect_with_rcvbuf(addr, 2048);
    let frame = masked_frame(0x2, &vec![0x5a; 60_000]);
    c.stream.set_nonblocking(true).unwrap();
    let mut blocked_since: Option<Instant> = None;
    let mut off = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.stream.write(&frame[off..]) {
            Ok(n) => {
                off = (off + n) % frame.len();
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break,
        }
    }
    c
}

/// `n` clients stuffed at once (see [`stuff_until_blocked`]), so that all of them are
/// silent from about the same moment.
pub fn stuff_in_parallel(addr: SocketAddr, n: usize) -> Vec<RawClient> {
    let threads: Vec<_> = (0..n).map(|_| std::thread::spawn(move || stuff_until_blocked(addr))).collect();
    threads.into_iter().map(|t| t.join().expect("a stuffing client")).collect()
}

/// Serialises the attacks of one test binary: each measures one server process's memory,
/// descriptors and timing, which other attacks running at the same time on two cores
/// would distort (and slow past their deadlines).
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
