//! The plain system calls the loops make on a descriptor or for one: the reset on close, the
//! write-side shutdown, the descriptor limit, the eventfd. Each lends the kernel nothing
//! beyond the call (memory that io_uring operations point at is `uring::lent`'s).
//!
//! The functions take a `RawFd` the caller owns and keeps open for the call; a closed or
//! wrong descriptor only makes the call fail.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
