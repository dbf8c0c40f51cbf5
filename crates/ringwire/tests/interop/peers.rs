//! The real peers (Node `ws`, Python `websockets`, Chromium): finding and installing them,
//! running them bounded in time, and the skip rule when one is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set to `1` (as `.ci/run` does), a test whose peer is missing fails instead of skipping.
pub(crate) const REQUIRE_ENV: &str = "RINGWIRE_REQUIRE_INTEROP";

/// `Ok(peer)` as `Some`. On `Err(why)`: with [`REQUIRE_ENV`]`=1` this panics; otherwise it
/// writes `SKIPPED <test>: <why>` to stderr (past libtest's capture) and returns `None`.
pub(crate) fn or_skip<T>(peer: Result<T, String>) -> Option<T> {
    let why = match peer {
        Ok(p) => return Some(p),
        Err(why) => why,
    };
    let test = std::thread::current().name().unwrap_or("this test").to_owned();
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1") {
        panic!("{test}: the peer is required here ({REQUIRE_ENV}=1) but unavailable: {why}");
    }
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
    None
}

/// A file of the peers (scripts, the page), in `tests/interop/`.
pub(crate) fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(name)
}

/// Where peers are installed: the workspace's `target/peers`, as `scripts/autobahn-peers.sh`.
fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers")
}

/// One install at a time (tests run in parallel threads).
fn install_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `cmd` to its end: `Ok(stdout)` if it exits 0, else `Err` with what it wrote.
fn run(cmd: &mut Command) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!("{what} failed ({}): {}", out.status, err.trim()))
}

/// Node with `ws` installed under `target/peers/node` (npm, from its registry, once).
pub(crate) struct Node {
    modules: PathBuf,
}

impl Node {
    /// Finds `node`, and `npm` if `ws` is not installed yet; installs `ws@8`.
    pub(crate) fn find() -> Result<Node, String> {
        run(Command::new("node").arg("--version")).map_err(|e| format!("node not usable: {e}"))?;
        let dir = peers_dir().join("node");
        let _lock = install_lock();
        if !dir.join("node_modules/ws/package.json").exists() {
            run(Command::new("npm").arg("--version")).map_err(|e| format!("npm not usable: {e}"))?;
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            // --prefix: npm would otherwise install into the nearest parent with a package.json.
            run(Command::new("npm").args(["install", "--silent", "--no-save", "ws@8", "--prefix"]).arg(&dir))?;
        }
        let node = Node { modules: dir.join("node_modules") };
        eprintln!("interop peer: {}", run(&mut node.command(&["version"]))?);
        Ok(node)
    }

    /// `node tests/interop/peer-ws.js <args>` with `ws` on NODE_PATH.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(asset("peer-ws.js")).args(args).env("NODE_PATH", &self.modules);
        cmd
    }
}

/// A Python venv under `target/peers/venv` with `websockets` (pip, from PyPI, once).
pub(crate) struct Python {
    python: PathBuf,
}

impl Python {
    /// Finds `python3`, makes the venv if it is missing, installs `websockets>=13`.
    pub(crate) fn find() -> Result<Python, String> {
        let venv = peers_dir().join("venv");
        let python = venv.join("bin/python");
        let _lock = install_lock();
        let usable = |p: &Path| run(Command::new(p).args(["-c", "import websockets.sync.server"])).is_ok();
        if !usable(&python) {
            run(Command::new("python3").arg("--version")).map_err(|e| format!("python3 not usable: {e}"))?;
            // A venv left without pip (python3-venv was missing when it was made) is made anew.
            if !venv.join("bin/pip").exists() {
                let _ = std::fs::remove_dir_all(&venv);
                run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
                    .map_err(|e| format!("cannot make a venv (python3-venv missing?): {e}"))?;
            }
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "websockets>=13"]))?;
        }
        let py = Python { python };
        eprintln!("interop peer: {}", run(&mut py.command(&["version"]))?);
        Ok(py)
    }

    /// `python tests/interop/peer-websockets.py <args>` in the venv.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(asset("peer-websockets.py")).args(args);
        cmd
    }
}

/// Debian's `chromium` (or `chromium-browser`, or the program `RINGWIRE_CHROMIUM` names).
pub(crate) fn chromium() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("RINGWIRE_CHROMIUM") {
        Some(p) => vec![p.into()],
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
            .filter(|p| p.is_file())
            .collect(),
    };
    let browser = candidates.into_iter().next().ok_or("chromium not found on PATH")?;
    eprintln!("interop peer: {}", run(Command::new(&browser).arg("--version"))?);
    Ok(browser)
}

/// A peer process in its own process group, all of which is killed on drop (a browser's
/// helpers too); its output lines are collected.
pub(crate) struct Proc {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `cmd`, stdout and stderr piped.
    pub(crate) fn spawn(mut cmd: Command) -> Proc {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for r in [out, err] {
            let (tx, log) = (tx.clone(), Arc::clone(&log));
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, lines, log }
    }

    /// The first output line that starts with `prefix`, the rest of it; panics if the
    /// process ends or `limit` passes first.
    pub(crate) fn wait_line(&self, prefix: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        while let Ok(line) = self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("no line starting with {prefix:?} (the process ended, or {limit:?} passed); output:\n{}", self.log())
    }

    /// Waits for the exit, at most `limit`: `Ok(output)` on exit 0, `Err(output)` on any
    /// other exit or the timeout (then the process group is killed).
    pub(crate) fn finish(mut self, limit: Duration) -> Result<String, String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads have the last lines once the pipes close.
                std::thread::sleep(Duration::from_millis(50));
                return if status.success() { Ok(self.log()) } else { Err(format!("{status}:\n{}", self.log())) };
            }
            if Instant::now() >= end {
                return Err(format!("no exit within {limit:?}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it wrote so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill takes plain integers; the group is our child's own (process_group(0)).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
