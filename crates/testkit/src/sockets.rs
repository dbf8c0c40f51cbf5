//! The socket options of this process's own TCP sockets, found by their addresses: how a
//! test checks what the server or client under test set on a socket it owns.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

/// The options of one socket that tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `TCP_KEEPIDLE`.
    pub keepalive_idle: Duration,
}

/// The options of this process's TCP socket whose peer is `peer` and, if given, whose
/// local address is `local`; `None` if there is none (or none yet). Reads `/proc/self/fd`.
pub fn socket_options(peer: SocketAddr, local: Option<SocketAddr>) -> Option<SocketOptions> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for these few getsockopt calls; if another
        // thread closes it meanwhile they fail (EBADF), and a number reused by then is
        // told apart by its addresses.
        #[allow(unsafe_code)]
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = socket2::SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if addr(s.peer_addr()) != Some(peer) || local.is_some_and(|l| addr(s.local_addr()) != Some(l)) {
            continue;
        }
        return Some(SocketOptions {
            nodelay: s.tcp_nodelay().ok()?,
            keepalive: s.keepalive().ok()?,
            keepalive_idle: s.tcp_keepalive_time().ok()?,
        });
    }
    None
}

/// Something listens on `addr`: a TCP connection to it succeeds and is not to itself. A
/// loopback port in the ephemeral range that nothing listens on can be given to a connect
/// as its own source port, and the socket then connects to itself (TCP simultaneous open;
/// Linux gives connects even ports and `bind(0)` odd ones first, so it is rare for a port
/// a server was given, and took 56 connects to port 40000 here), so "connect succeeded"
/// alone does not say a server is there.
pub fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}
