//! Real brokers for the bus tests: `redis-server` and `nats-server` started on a free
//! loopback port, killed on drop.
//!
//! When the program is missing, [`Redis::start`] / [`Nats::start`] write
//! `SKIPPED <test>: <why>` to stderr and return `None`, unless
//! [`REQUIRE_BROKERS_ENV`]`=1` (set by `.ci/run`) makes that a panic naming the program.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to `1`, a test whose broker program is missing fails instead of skipping.
pub const REQUIRE_BROKERS_ENV: &str = "RINGWIRE_REQUIRE_BROKERS";

/// How long a broker may take to accept connections after it was spawned.
const START: Duration = Duration::from_secs(10);

/// A running `redis-server` (no persistence) on `127.0.0.1`.
pub struct Redis(Server);

/// A running `nats-server` on `127.0.0.1`.
pub struct Nats(Server);

impl Redis {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no` on a free
    /// port; `None` (after a `SKIPPED` line) when the program is missing.
    pub fn start() -> Option<Redis> {
        Server::start("redis-server", |port| {
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .map(String::from)
                .to_vec()
        })
        .map(Redis)
    }
}

impl Nats {
    /// Starts `nats-server -a 127.0.0.1 -p P` on a free port; `None` (after a `SKIPPED`
    /// line) when the program is missing.
    pub fn start() -> Option<Nats> {
        Server::start("nats-server", |port| ["-a", "127.0.0.1", "-p", &port.to_string()].map(String::from).to_vec())
            .map(Nats)
    }
}

/// A running broker, as the bus tests use one (implemented by [`Redis`] and [`Nats`]).
pub trait Broker {
    /// The bus URL of this broker (`redis://127.0.0.1:PORT`, `nats://127.0.0.1:PORT`).
    fn url(&self) -> String;
    /// The port it listens on (the same after [`Broker::restart`]).
    fn port(&self) -> u16;
    /// Kills the server (SIGKILL) and waits for it to exit.
    fn stop(&mut self);
    /// Starts it again on the same port (after [`Broker::stop`]) and waits until it accepts.
    fn start_again(&mut self);
    /// Freezes the server (SIGSTOP) with `true`, lets it go on (SIGCONT) with `false`: its
    /// connections stay open and its port accepts, but it answers nothing meanwhile, as a
    /// broker host that died behind a NAT would look.
    fn freeze(&mut self, frozen: bool);
    /// [`Broker::stop`] then [`Broker::start_again`].
    fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

macro_rules! broker {
    ($t:ty, $scheme:literal) => {
        impl Broker for $t {
            fn url(&self) -> String {
                format!(concat!($scheme, "://127.0.0.1:{}"), self.0.port)
            }
            fn port(&self) -> u16 {
                self.0.port
            }
            fn stop(&mut self) {
                self.0.stop();
            }
            fn start_again(&mut self) {
                self.0.spawn();
            }
            fn freeze(&mut self, frozen: bool) {
                self.0.freeze(frozen);
            }
        }
    };
}
broker!(Redis, "redis");
broker!(Nats, "nats");

struct Server {
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    child: Option<Child>,
    /// While the server is not running: a socket bound to its port, not listening (a
    /// connect is refused, as with nothing there), so that no other test's `bind(0)` is
    /// given the port before [`Server::spawn`] starts the server on it again.
    reserved: Option<socket2::Socket>,
}

impl Server {
    fn start(name: &str, args: impl Fn(u16) -> Vec<String>) -> Option<Server> {
        let program = program(name)?;
        let reserved = reserve(0).expect("a free loopback port");
        let port = reserved.local_addr().ok().and_then(|a| a.as_socket()).expect("a bound address").port();
        let mut server = Server { program, args: args(port), port, child: None, reserved: Some(reserved) };
        server.spawn();
        Some(server)
    }

    /// Spawns the program and waits until it listens on the port. A listener is taken for
    /// the server only when it is the server's own socket, and a server that exits at start
    /// (its port taken by another process meanwhile) is started again until [`START`] ends.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.program.display());
        let deadline = Instant::now() + START;
        let mut last_exit = None;
        while self.child.is_none() {
            assert!(
                Instant::now() < deadline,
                "{} {:?} does not listen on port {} after {START:?} (last exit: {last_exit:?})",
                self.program.display(),
                self.args,
                self.port
            );
            self.reserved = None;
            let mut child = Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
            match wait_listening(&mut child, self.port, deadline) {
                Ok(()) => self.child = Some(child),
                Err(exit) => {
                    if exit.is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    last_exit = exit;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("the broker is running");
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill with our own, not yet reaped child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.reserved = reserve(self.port).ok();
        }
    }
}

/// Waits until `child` listens on `port`: `Err` with its exit status if it exits first,
/// `Err(None)` at the deadline.
fn wait_listening(child: &mut Child, port: u16, deadline: Instant) -> Result<(), Option<std::process::ExitStatus>> {
    while Instant::now() < deadline {
        if listens(child.id(), port) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Some(status));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(None)
}

/// A TCP socket bound to `127.0.0.1:port` (0: any free port), with `SO_REUSEADDR` (the
/// server's old connections may still be in `TIME_WAIT`), not listening.
fn reserve(port: u16) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(socket)
}

/// Process `pid` holds a socket listening on `127.0.0.1:port` (found in `/proc/net/tcp`
/// by its inode, then among the process's descriptors).
fn listens(pid: u32, port: u16) -> bool {
    const LISTEN: u8 = 0x0A;
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let sockets: Vec<String> = crate::tcp_table()
        .into_iter()
        .filter(|row| row.local == local && row.state == LISTEN)
        .map(|row| format!("socket:[{}]", row.inode))
        .collect();
    !sockets.is_empty()
        && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
            })
        })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of the broker program `name` (see [`find`]); when it is missing, `None` after
/// a `SKIPPED` line (a panic with [`REQUIRE_BROKERS_ENV`]`=1`).
pub fn program(name: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        skip_or_fail(
            REQUIRE_BROKERS_ENV,
            &format!("{name} not found in PATH nor in /usr/sbin, /usr/local/sbin, /sbin"),
        );
    }
    found
}

/// Says that the running test skips its work because of `why`: `SKIPPED <test>: <why>` on
/// stderr, or a panic when the environment variable `require` is `1` (CI must not skip).
pub fn skip_or_fail(require: &str, why: &str) {
    let test = std::thread::current().name().unwrap_or("this test").to_owned();
    if std::env::var(require).is_ok_and(|v| v.trim() == "1") {
        panic!("{test}: required here ({require}=1) but cannot run: {why}");
    }
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
}

/// `name` in `PATH`, else in the sbin directories (where Debian puts `nats-server`, and
/// which a non-root `PATH` often leaves out).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// While stopped, the port stays ours (refusing connections); started again, the broker
    /// is the one listening, not another process that took the port meanwhile.
    #[test]
    fn a_restart_gets_the_port_back_and_takes_no_other_listener_for_the_broker() {
        let Some(Redis(mut server)) = Redis::start() else { return };
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
        assert!(listens(server.child.as_ref().unwrap().id(), server.port));
        server.stop();
        assert!(server.reserved.is_some(), "the port is reserved while stopped");
        assert!(TcpStream::connect(addr).is_err(), "nothing accepts while stopped");
        // Another process's listener on the port (SO_REUSEADDR, as servers set it, may
        // bind beside a socket that does not listen): the restart waits it out.
        let other = TcpListener::bind(addr).expect("a listener beside the reservation");
        std::thread::scope(|s| {
            let restart = s.spawn(|| server.spawn());
            std::thread::sleep(Duration::from_millis(500));
            assert!(!restart.is_finished(), "another process's listener was taken for the broker");
            drop(other);
            restart.join().unwrap();
        });
        assert!(listens(server.child.as_ref().unwrap().id(), server.port));
        assert!(server.reserved.is_none());
    }
}
