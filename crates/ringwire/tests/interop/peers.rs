//! The real peers (Node `ws`, Python `websockets`, Chromium): finding and installing them,
//! running them bounded in time, and the skip rule when one is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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

/// How long a quick command (a version, an import check) may take.
const QUICK: Duration = Duration::from_secs(30);
/// How long an install from a registry (npm, pip, venv) may take.
const INSTALL: Duration = Duration::from_secs(300);

/// Runs `cmd` to its end within `limit` (killed after it): `Ok(output)` if it exits 0,
/// else `Err` with what it wrote.
fn run(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out = Proc::try_spawn(cmd)?.finish(limit).map_err(|e| format!("{what} failed: {}", e.trim()))?;
    Ok(out.trim().to_owned())
}

/// Node with `ws` installed under `target/peers/node` (npm, from its registry, once).
pub(crate) struct Node {
    modules: PathBuf,
}

impl Node {
    /// Finds `node`, and `npm` if `ws` is not installed yet; installs `ws@8`.
    pub(crate) fn find() -> Result<Node, String> {
        run(Command::new("node").arg("--version"), QUICK).map_err(|e| format!("node not usable: {e}"))?;
        let dir = peers_dir().join("node");
        let _lock = install_lock();
        if !dir.join("node_modules/ws/package.json").exists() {
            run(Command::new("npm").arg("--version"), QUICK).map_err(|e| format!("npm not usable: {e}"))?;
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            // --prefix: npm would otherwise install into the nearest parent with a package.json.
            run(Command::new("npm").args(["install", "--silent", "--no-save", "ws@8", "--prefix"]).arg(&dir), INSTALL)?;
        }
        let node = Node { modules: dir.join("node_modules") };
        eprintln!("interop peer: {}", run(&mut node.command(&["version"]), QUICK)?);
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
        let usable = |p: &Path| run(Command::new(p).args(["-c", "import websockets.sync.server"]), QUICK).is_ok();
        if !usable(&python) {
            run(Command::new("python3").arg("--version"), QUICK).map_err(|e| format!("python3 not usable: {e}"))?;
            // A venv left without pip (python3-venv was missing when it was made) is made anew.
            if !venv.join("bin/pip").exists() {
                let _ = std::fs::remove_dir_all(&venv);
                run(Command::new("python3").arg("-m").arg("venv").arg(&venv), INSTALL)
                    .map_err(|e| format!("cannot make a venv (python3-venv missing?): {e}"))?;
            }
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "websockets>=13"]), INSTALL)?;
        }
        let py = Python { python };
        eprintln!("interop peer: {}", run(&mut py.command(&["version"]), QUICK)?);
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
    eprintln!("interop peer: {}", run(Command::new(&browser).arg("--version"), QUICK)?);
    Ok(browser)
}

/// A peer process in its own process group, all of which is killed on drop (a browser's
/// helpers too); its output lines are collected.
pub(crate) struct Proc {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr: done once both pipes close.
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `cmd`, stdout and stderr piped; panics if it cannot start.
    pub(crate) fn spawn(mut cmd: Command) -> Proc {
        Proc::try_spawn(&mut cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `cmd`, stdout and stderr piped.
    pub(crate) fn try_spawn(cmd: &mut Command) -> Result<Proc, String> {
        let what = format!("{cmd:?}");
        // Its own group (killed whole on drop) shields it from the terminal's Ctrl-C, so
        // it dies with the thread that started it instead: an interrupted `cargo test`
        // leaves no peer behind.
        // SAFETY: prctl is async-signal-safe and only reads its integer arguments.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {what}: {e}"))?;
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        let readers = [out, err]
            .map(|r| {
                let (tx, log) = (tx.clone(), Arc::clone(&log));
                std::thread::spawn(move || {
                    for line in BufReader::new(r).lines().map_while(Result::ok) {
                        log.lock().unwrap().push_str(&format!("{line}\n"));
                        let _ = tx.send(line);
                    }
                })
            })
            .into();
        Ok(Proc { child, lines, log, readers })
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
                // The last lines are in once both pipes close (a helper the process left
                // behind may hold them: wait for that only until the limit).
                while !self.readers.iter().all(JoinHandle::is_finished) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
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

    /// Asks the process itself (not its group) to end with SIGTERM and waits for it at most
    /// `limit` ([`Proc::finish`]): a browser then shuts down in order and its helpers
    /// finish their files.
    pub(crate) fn terminate(self, limit: Duration) -> Result<String, String> {
        // SAFETY: kill takes plain integers; the pid is our child's, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.finish(limit)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill takes plain integers; the group is our child's own (process_group(0)).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
