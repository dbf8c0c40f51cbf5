//! The plain system calls the loops make on a descriptor or for one: socket options, the
//! write-side shutdown, the descriptor limit, the eventfd. Each lends the kernel nothing
//! beyond the call (memory that io_uring operations point at is `uring::lent`'s).
//!
//! The functions take a `RawFd` the caller owns and keeps open for the call; a closed or
//! wrong descriptor only makes the call fail.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Runs `f` on the socket `fd` names, borrowed for the call.
fn with_socket<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: the caller owns `fd` and keeps it open while this runs (see the module docs);
    // the borrow does not outlive `f`, and a SockRef never closes what it names.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&fd))
}

/// Sets `SO_LINGER` {on, 0} on `fd`: its close then discards unsent data and sends RST (no
/// FIN, no TIME_WAIT, no orphan socket waiting on a peer that does not read). Best effort: a
/// socket the peer already reset refuses nothing that matters here.
pub(crate) fn reset_on_close(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a live local; a bad or closed
    // fd only makes it fail, and the result is deliberately ignored.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// `shutdown(fd, SHUT_WR)`: the peer sees EOF once what was written before is delivered.
/// Best effort, as before: the result is ignored.
pub(crate) fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown takes no memory; a bad or closed fd only makes it fail.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// `TCP_NODELAY` on (`true`: segments go out at once) or off (Nagle's algorithm).
pub(crate) fn set_nodelay(fd: RawFd, on: bool) -> io::Result<()> {
    with_socket(fd, |s| s.set_tcp_nodelay(on))
}

/// The longest `TCP_KEEPIDLE` Linux accepts (`MAX_TCP_KEEPIDLE`), in seconds.
const MAX_KEEPIDLE_SECS: u64 = 32767;

/// The `TCP_KEEPIDLE` seconds for `idle`: rounded up to a whole second, within
/// 1..=[`MAX_KEEPIDLE_SECS`] (what the kernel accepts).
pub(crate) fn keepidle_secs(idle: Duration) -> u64 {
    let secs = idle.as_secs() + u64::from(idle.subsec_nanos() > 0);
    secs.clamp(1, MAX_KEEPIDLE_SECS)
}

/// `Some(idle)`: `SO_KEEPALIVE` on, and `TCP_KEEPIDLE` (the quiet time before the first probe)
/// set to `idle` in whole seconds ([`keepidle_secs`]); the probe interval and count stay the
/// system's. `None`: `SO_KEEPALIVE` off.
pub(crate) fn set_keepalive(fd: RawFd, idle: Option<Duration>) -> io::Result<()> {
    with_socket(fd, |s| match idle {
        Some(idle) => s.set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(keepidle_secs(idle)))),
        None => s.set_keepalive(false),
    })
}

/// The soft `RLIMIT_NOFILE`, or `None` if it cannot be read.
pub(crate) fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(lim.rlim_cur)
}

/// A new nonblocking, close-on-exec eventfd with a count of 0.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory arguments; the result is checked below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `efd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(efd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepidle_is_whole_seconds_within_what_linux_accepts() {
        assert_eq!(keepidle_secs(Duration::from_secs(7)), 7);
        assert_eq!(keepidle_secs(Duration::from_millis(1500)), 2);
        assert_eq!(keepidle_secs(Duration::ZERO), 1);
        assert_eq!(keepidle_secs(Duration::from_millis(1)), 1);
        assert_eq!(keepidle_secs(Duration::from_secs(1 << 40)), MAX_KEEPIDLE_SECS);
    }
}
