//! Pieces shared by both backends: the fields every connection has and the per-connection
//! rules of `Io::{send, queued, close, abort}` ([`ConnFields`], [`LoopConn`] and [`Slab`]'s
//! methods below), the packed peer address and rare state, and in submodules the loop state
//! handlers act on with the one [`Io`](crate::Io) implementation ([`Core`]), the connection
//! slab and send queue, the timer heap and close deadlines, and the accept-error policy.

mod accept;
mod core_state;
mod slab;
mod timers;

pub(crate) use accept::AcceptErrors;
pub(crate) use accept::RateLimited;
pub(crate) use core_state::{Core, LoopBackend};
pub(crate) use slab::{SendQueue, Slab};
pub(crate) use timers::{CloseTimers, TimerSlot, Timers};

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;
use std::time::Instant;

use bytes::Bytes;

use crate::ConnId;
use crate::sys::reset_on_close;

/// Where a connection is in its shutdown, the same in both backends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Closing {
    Open,
    /// close() or peer EOF: flush the queue, then `shutdown(WR)`.
    Graceful,
    /// Output written and shut down: read and drop input until the peer's EOF or the linger
    /// deadline, then close.
    Lingering,
    /// Stop now: cancel what is in flight, close the fd, report.
    Teardown,
}

/// An IPv4 peer address packed into 8 bytes (a quarter of an `Option<SocketAddr>`): the
/// address in bits 16..48, the port in bits 0..16 and bit 48 set. 0 means no IPv4 address;
/// [`Rare`] keeps any other address (IPv6) in its box.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct PeerV4(u64);

impl PeerV4 {
    const SET: u64 = 1 << 48;

    /// Packs an IPv4 address; returns any other address back to be kept elsewhere.
    pub(crate) fn pack(peer: Option<SocketAddr>) -> (PeerV4, Option<SocketAddr>) {
        match peer {
            Some(SocketAddr::V4(a)) => {
                (PeerV4(Self::SET | u64::from(a.ip().to_bits()) << 16 | u64::from(a.port())), None)
            }
            other => (PeerV4(0), other),
        }
    }

    pub(crate) fn get(self) -> Option<SocketAddr> {
        (self.0 & Self::SET != 0)
            .then(|| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from_bits((self.0 >> 16) as u32), self.0 as u16)))
    }
}

/// A connection's peer address and what it rarely needs, for both backends: an IPv4 peer
/// packed in 8 bytes, and behind one box created on first use any other peer address
/// (IPv6), the error the connection ended with, its close-linger timer slot, and the
/// backend's own rarely used state `X`. An open connection with an IPv4 peer has no box.
pub(crate) struct Rare<X> {
    peer: PeerV4,
    cold: Option<Box<Cold<X>>>,
}

/// The boxed part of [`Rare`].
#[derive(Default)]
pub(crate) struct Cold<X> {
    /// A peer address that is not IPv4.
    peer: Option<SocketAddr>,
    /// The first error the connection ended with.
    error: Option<std::io::Error>,
    /// The deadline of the close in progress (see [`CloseTimers`]).
    pub(crate) close_timer: TimerSlot,
    /// The backend's own rarely used state.
    pub(crate) more: X,
}

impl<X: Default> Rare<X> {
    pub(crate) fn new(peer: Option<SocketAddr>) -> Self {
        let (peer, other) = PeerV4::pack(peer);
        Rare { peer, cold: other.map(|peer| Box::new(Cold { peer: Some(peer), ..Cold::default() })) }
    }

    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer.get().or_else(|| self.cold.as_ref().and_then(|c| c.peer))
    }

    /// The boxed part, if it was ever needed.
    pub(crate) fn cold(&self) -> Option<&Cold<X>> {
        self.cold.as_deref()
    }

    /// The boxed part, if it was ever needed, without creating it.
    pub(crate) fn cold_if_any(&mut self) -> Option<&mut Cold<X>> {
        self.cold.as_deref_mut()
    }

    /// The boxed part, created now if need be.
    pub(crate) fn cold_mut(&mut self) -> &mut Cold<X> {
        self.cold.get_or_insert_with(Box::default)
    }

    /// Keeps `error` unless the connection already ended with one.
    pub(crate) fn keep_first_error(&mut self, error: Option<io::Error>) {
        if let Some(error) = error
            && self.cold.as_ref().is_none_or(|c| c.error.is_none())
        {
            self.cold_mut().error = Some(error);
        }
    }

    /// The error the connection ended with, if any.
    pub(crate) fn into_error(self) -> Option<std::io::Error> {
        self.cold.and_then(|c| c.error)
    }
}

/// The fields every connection has in both backends, under the same names, in the backend's
/// own struct: `closing: Closing`, `dirty: bool`, `eof: bool` (the peer's EOF was read),
/// `queue: SendQueue`, `timer: TimerSlot` (the handler's deadline) and `rare: Rare<_>`. [`conn_fields!`] implements it; the fields
/// stay in the backend's struct (a shared struct nested in it would round its size up to its
/// alignment, 8 bytes more per connection).
pub(crate) trait ConnFields {
    fn closing(&self) -> Closing;
    fn closing_mut(&mut self) -> &mut Closing;
    fn queue(&self) -> &SendQueue;
    fn queue_mut(&mut self) -> &mut SendQueue;
    /// Whether the connection is already on the turn's dirty list.
    fn dirty_mut(&mut self) -> &mut bool;
    /// Whether the peer's EOF was read.
    fn eof_mut(&mut self) -> &mut bool;
    /// The handler's deadline ([`Io::set_timer`](crate::Io::set_timer)).
    fn timer(&mut self) -> &mut TimerSlot;
    /// The deadline of the close in progress (in the connection's boxed rare state).
    fn close_timer(&mut self) -> &mut TimerSlot;
    fn peer(&self) -> Option<SocketAddr>;
    /// Keeps `error` unless the connection already ended with one (see [`Rare`]).
    fn keep_first_error(&mut self, error: Option<io::Error>);
}

/// Implements [`ConnFields`] for a backend's connection type, whose fields have the names it
/// lists.
macro_rules! conn_fields {
    ($conn:ty) => {
        impl $crate::common::ConnFields for $conn {
            #[inline]
            fn closing(&self) -> $crate::common::Closing {
                self.closing
            }
            #[inline]
            fn closing_mut(&mut self) -> &mut $crate::common::Closing {
                &mut self.closing
            }
            #[inline]
            fn queue(&self) -> &$crate::common::SendQueue {
                &self.queue
            }
            #[inline]
            fn queue_mut(&mut self) -> &mut $crate::common::SendQueue {
                &mut self.queue
            }
            #[inline]
            fn dirty_mut(&mut self) -> &mut bool {
                &mut self.dirty
            }
            #[inline]
            fn eof_mut(&mut self) -> &mut bool {
                &mut self.eof
            }
            #[inline]
            fn timer(&mut self) -> &mut $crate::common::TimerSlot {
                &mut self.timer
            }
            fn close_timer(&mut self) -> &mut $crate::common::TimerSlot {
                &mut self.rare.cold_mut().close_timer
            }
            fn peer(&self) -> Option<::std::net::SocketAddr> {
                self.rare.peer()
            }
            fn keep_first_error(&mut self, error: Option<::std::io::Error>) {
                self.rare.keep_first_error(error)
            }
        }
    };
}
pub(crate) use conn_fields;

/// What both backends keep per connection for the rules of `Io::{send, queued, close,
/// abort}` ([`ConnFields`]), and the two places where they differ; [`Slab`]'s methods below
/// apply those rules once for both.
pub(crate) trait LoopConn: ConnFields {
    /// The socket's descriptor while the connection still owns it open (on epoll until its
    /// teardown is carried out, on io_uring until the CLOSE op is submitted). The handler's
    /// timer fires only while there is one.
    fn fd(&self) -> Option<RawFd>;
    /// Whether the kernel may still read the queued output (io_uring: a send of it is in
    /// flight), so a teardown must not drop it yet.
    fn queue_lent(&self) -> bool;

    /// Moves to [`Closing::Teardown`], keeping `error` unless one is kept already; the queued
    /// output is dropped unless the kernel may still read it.
    fn teardown(&mut self, error: Option<io::Error>) {
        self.keep_first_error(error);
        *self.closing_mut() = Closing::Teardown;
        if !self.queue_lent() {
            self.queue_mut().clear();
        }
    }

    /// The peer's EOF was read: an open connection starts its graceful close (unless
    /// `start_close` is false: io_uring holds it back while input kept for a paused handler
    /// waits, and starts it on delivery), a lingering one is done.
    fn peer_eof(&mut self, start_close: bool) {
        *self.eof_mut() = true;
        match self.closing() {
            Closing::Open if start_close => *self.closing_mut() = Closing::Graceful,
            Closing::Lingering => self.teardown(None),
            Closing::Open | Closing::Graceful | Closing::Teardown => {}
        }
    }

    /// Tears down with a reset: `SO_LINGER` {on, 0} first, so closing the descriptor drops
    /// unsent data and sends RST instead of waiting on the peer.
    fn abort(&mut self, error: Option<io::Error>) {
        if let Some(fd) = self.fd() {
            reset_on_close(fd);
        }
        self.teardown(error);
    }
}

impl<C: LoopConn> Slab<C> {
    /// Puts `id` on the turn's `dirty` list once, so the backend moves it forward at the end.
    pub(crate) fn mark_dirty(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && !*c.dirty_mut()
        {
            *c.dirty_mut() = true;
            dirty.push(id);
        }
    }

    /// `Io::send`: output is taken only while the connection is open.
    pub(crate) fn queue_send(&mut self, id: ConnId, chunk: Bytes, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() == Closing::Open
        {
            c.queue_mut().push(chunk);
            self.mark_dirty(id, dirty);
        }
    }

    /// `Io::queued`: after an abort the queue no longer counts, even while a send of it is
    /// still in flight (io_uring frees it when that send completes).
    pub(crate) fn queued(&self, id: ConnId) -> usize {
        self.get(id).map_or(0, |c| if c.closing() == Closing::Teardown { 0 } else { c.queue().len() })
    }

    /// `Io::close`: an open connection starts its graceful close (its flush deadline is armed
    /// when the backend moves it forward, see [`CloseTimers::flushing`]).
    pub(crate) fn begin_close(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() == Closing::Open
        {
            *c.closing_mut() = Closing::Graceful;
            self.mark_dirty(id, dirty);
        }
    }

    /// `Io::set_nodelay`, `Io::set_keepalive`: `f` on the socket of `id` while the connection
    /// still owns it open; nothing (`Ok`) on a dead id.
    pub(crate) fn with_fd(&self, id: ConnId, f: impl FnOnce(RawFd) -> io::Result<()>) -> io::Result<()> {
        match self.get(id).and_then(|c| c.fd()) {
            Some(fd) => f(fd),
            None => Ok(()),
        }
    }

    /// `Io::abort`: tear down now with a reset, whatever the state, once.
    pub(crate) fn abort(&mut self, id: ConnId, dirty: &mut Vec<ConnId>) {
        if let Some(c) = self.get_mut(id)
            && c.closing() != Closing::Teardown
        {
            c.abort(None);
            self.mark_dirty(id, dirty);
        }
    }
}

/// The symbolic name of the errnos the loop reports.
pub(crate) fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIME => "ETIME",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EBADR => "EBADR",
        _ => "errno",
    }
}

/// At most this many iovecs go into one vectored send (Linux `IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_v4_round_trips_and_leaves_other_addresses() {
        for a in ["1.2.3.4:80", "0.0.0.0:0", "255.255.255.255:65535", "127.0.0.1:24111"] {
            let a: SocketAddr = a.parse().unwrap();
            let (p, rest) = PeerV4::pack(Some(a));
            assert_eq!((p.get(), rest), (Some(a), None));
        }
        let v6: SocketAddr = "[::ffff:1.2.3.4]:443".parse().unwrap();
        assert_eq!(PeerV4::pack(Some(v6)), (PeerV4(0), Some(v6)));
        assert_eq!(PeerV4::pack(None), (PeerV4(0), None));
        assert_eq!(PeerV4::default().get(), None);
    }

    #[test]
    fn rare_state_is_boxed_only_when_needed_and_keeps_the_first_error() {
        let v4: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let mut r: Rare<Vec<u8>> = Rare::new(Some(v4));
        assert!(r.cold().is_none(), "an IPv4 peer needs no box");
        assert_eq!(r.peer(), Some(v4));
        r.keep_first_error(None);
        assert!(r.cold().is_none());
        r.keep_first_error(Some(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        r.keep_first_error(Some(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert_eq!(r.into_error().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset));
        let v6: SocketAddr = "[2001:db8::1]:8080".parse().unwrap();
        let r: Rare<()> = Rare::new(Some(v6));
        assert_eq!(r.peer(), Some(v6));
        assert!(r.into_error().is_none());
        assert_eq!(Rare::<()>::new(None).peer(), None);
    }
}
