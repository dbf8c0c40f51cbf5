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

/// One row of `/proc/net/tcp`: an IPv4 TCP socket of this network namespace, any process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    /// Its local address.
    pub local: SocketAddr,
    /// Its peer's address (`0.0.0.0:0` for a listener).
    pub remote: SocketAddr,
    /// The kernel's TCP state: 1 established, 4 FIN_WAIT1, 10 (0x0A) listen, ...
    pub state: u8,
    /// The socket's inode: `socket:[inode]` is what a descriptor of it links to in
    /// `/proc/PID/fd`.
    pub inode: u64,
}

/// The rows of `/proc/net/tcp` (which every Linux has: a panic if it cannot be read).
pub fn tcp_table() -> Vec<TcpRow> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    // "0100007F:1F90": the address as the kernel's 32-bit word in hex, then the port
    let addr = |a: &str| -> Option<SocketAddr> {
        let (ip, port) = a.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
        Some(SocketAddr::from((ip, u16::from_str_radix(port, 16).ok()?)))
    };
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(TcpRow {
                local: addr(f.get(1)?)?,
                remote: addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table names a listener and both ends of a connection as they are (a parser that
    /// found nothing would make every "the socket is gone" check pass).
    #[test]
    fn the_tcp_table_has_a_listener_and_both_ends_of_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let rows = tcp_table();
        let row = |local, remote| rows.iter().find(|r| r.local == local && r.remote == remote);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        assert_eq!(row(addr, unspecified).map(|r| r.state), Some(0x0A), "{rows:?}");
        assert_eq!(row(client.local_addr().unwrap(), addr).map(|r| r.state), Some(1));
        assert_eq!(row(addr, peer).map(|r| r.state), Some(1));
        assert!(row(addr, peer).is_some_and(|r| r.inode != 0));
    }
}
