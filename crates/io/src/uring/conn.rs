//! A connection of the io_uring loop and its state machine: [`UConn`], this backend's part of
//! the loop state handlers act on ([`Uring`], in [`Core`]), how a connection moves forward at
//! the end of a turn ([`Core::advance`]: arm recv, start a send, shut down, cancel, close),
//! and what each of its completions does ([`UringLoop::on_conn_cqe`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{cqueue, opcode, squeue};

use bytes::BytesMut;

use super::lent::{BGID, ConnectAddr, Lend, RecvTarget, SendPool, SendSlot};
use super::ops::{
    KIND_ACCEPT, KIND_CANCEL, KIND_CLOSE, KIND_CONNECT, KIND_LISTENER_CANCEL, KIND_RECV, KIND_RECV_INTO, KIND_SEND,
    NO_SLOT, user_data,
};
use super::{Listener, UringLoop};
use crate::common::{Closing, LoopBackend, LoopConn, Rare, SendQueue, TimerSlot, conn_fields};
use crate::{ConnId, Handler};

/// One connection of the io_uring loop, in its slab (the fields [`ConnFields`] names are the
/// ones both backends have).
///
/// [`ConnFields`]: crate::common::ConnFields
pub(crate) struct UConn {
    pub(super) fd: RawFd,
    /// The connection's slot in the ring's registered file table ([`NO_SLOT`]: none); ops
    /// name it instead of `fd`, which spares the kernel an fget/fput per op.
    pub(super) slot: u32,
    pub(super) connecting: bool,
    pub(super) closing: Closing,
    /// SQEs of this connection whose last CQE has not arrived.
    pub(super) ops: u32,
    pub(super) recv_armed: bool,
    pub(super) recv_cancel: bool,
    pub(super) paused: bool,
    pub(super) eof: bool,
    pub(super) queue: SendQueue,
    pub(super) send: SendSlot,
    pub(super) send_inflight: bool,
    pub(super) teardown_cancel: bool,
    pub(super) close_sent: bool,
    pub(super) dirty: bool,
    pub(super) timer: TimerSlot,
    /// The peer, and what an open, unpaused connection never needs (see [`Rare`]).
    pub(super) rare: Rare<UringCold>,
}

/// This backend's part of a connection's rarely used state.
#[derive(Default)]
pub(super) struct UringCold {
    /// The address a CONNECT op in flight points to (so it must not move until it completes).
    pub(super) connect_addr: Option<ConnectAddr>,
    /// Input received while paused (or while older kept input waits), delivered on resume.
    pub(super) stash: Vec<u8>,
    /// The handler's buffer the next bytes go into ([`crate::Io::recv_into`]).
    pub(super) target: Option<RecvTarget>,
}

impl UConn {
    pub(super) fn new(fd: RawFd, peer: Option<SocketAddr>) -> UConn {
        UConn {
            fd,
            slot: NO_SLOT,
            connecting: false,
            closing: Closing::Open,
            ops: 0,
            recv_armed: false,
            recv_cancel: false,
            paused: false,
            eof: false,
            queue: SendQueue::default(),
            send: SendSlot::empty(),
            send_inflight: false,
            teardown_cancel: false,
            close_sent: false,
            dirty: false,
            timer: TimerSlot::default(),
            rare: Rare::new(peer),
        }
    }

    pub(super) fn stash_is_empty(&self) -> bool {
        self.rare.cold().is_none_or(|c| c.more.stash.is_empty())
    }

    pub(super) fn target(&self) -> Option<&RecvTarget> {
        self.rare.cold().and_then(|c| c.more.target.as_ref())
    }

    fn target_mut(&mut self) -> Option<&mut RecvTarget> {
        self.rare.cold_if_any().and_then(|c| c.more.target.as_mut())
    }

    /// A RECV into the handler's buffer is in flight.
    fn target_inflight(&self) -> bool {
        self.target().is_some_and(RecvTarget::inflight)
    }

    /// After the peer's EOF, once nothing received waits for the handler (no stash, no
    /// target) and it is not paused, the graceful close starts.
    pub(super) fn close_after_eof(&mut self) {
        if self.eof && self.closing == Closing::Open && !self.paused && self.stash_is_empty() && self.target().is_none()
        {
            self.closing = Closing::Graceful;
        }
    }

    /// Whether a target waits to be handed back (see [`UringLoop::settle_target`]).
    pub(super) fn target_ready(&self) -> bool {
        self.target().is_some_and(RecvTarget::ready)
    }
}

conn_fields!(UConn);

impl LoopConn for UConn {
    fn fd(&self) -> Option<RawFd> {
        (!self.close_sent).then_some(self.fd)
    }

    fn queue_lent(&self) -> bool {
        self.send_inflight
    }
}

/// This backend's part of the loop state (see [`Core`]).
pub(crate) struct Uring {
    /// SQEs to submit at the end of the turn.
    pub(super) sqes: Vec<squeue::Entry>,
    /// Connections resumed with input kept while they were paused.
    pub(super) deliver: Vec<ConnId>,
    pub(super) listeners: Vec<Listener>,
    /// Send buffers not lent to any connection (see [`SendSlot`]).
    pub(super) send_pool: SendPool,
}

/// The loop state handlers act on (the [`Io`](crate::Io) of this backend).
pub(crate) type Core = crate::common::Core<Uring>;

impl Core {
    /// Moves a connection forward at the end of a turn: arm recv, start a send, shut down,
    /// cancel, close.
    pub(super) fn advance(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else { return };
        c.dirty = false;
        if !c.send_inflight && !c.queue.is_empty() {
            self.own.send_pool.lend(&mut c.send);
        }
        let sqes = &mut self.own.sqes;
        let reading = c.closing == Closing::Open && !c.connecting && !c.paused && c.stash_is_empty();
        if c.closing != Closing::Open
            && !c.target_inflight()
            && let Some(cold) = c.rare.cold_if_any()
        {
            // No input is wanted any more: the handler does not get it back.
            cold.more.target = None;
        }
        let want_recv = match c.closing {
            Closing::Open => reading && c.target().is_none(),
            Closing::Lingering => true,
            Closing::Graceful | Closing::Teardown => false,
        };
        if want_recv {
            arm_recv(c, id, sqes);
        }
        // Once the multishot RECV is gone (its last CQE read: nothing it received can come
        // after), the single RECV into the target; not after the peer's EOF (the target goes
        // back as it is, see settle_target).
        if reading
            && !c.recv_armed
            && !c.eof
            && let (slot, fd) = (c.slot, c.fd)
            && let Some(t) = c.target_mut()
            && !t.inflight()
            && !t.ready()
        {
            sqes.push(t.sqe(slot, fd).user_data(user_data(KIND_RECV_INTO, id.idx, id.generation)));
            c.ops += 1;
        }
        if c.closing == Closing::Open && !c.connecting {
            start_send(c, id, sqes);
        }
        if c.closing == Closing::Graceful {
            self.close_timers.flushing(id, c, self.now);
        }
        if c.closing == Closing::Graceful && !c.connecting {
            if c.queue.is_empty() && !c.send_inflight {
                if self.close_timers.written(id, c, self.now) {
                    arm_recv(c, id, sqes);
                }
            } else {
                start_send(c, id, sqes);
            }
        }
        if c.closing == Closing::Teardown {
            if (c.recv_armed || c.send_inflight || c.connecting || c.target_inflight()) && !c.teardown_cancel {
                let e = on_socket!(c.slot, c.fd, t => opcode::AsyncCancel2::new(CancelBuilder::fd(t).all()))
                    .build()
                    .user_data(user_data(KIND_CANCEL, id.idx, id.generation));
                sqes.push(e);
                c.teardown_cancel = true;
                c.ops += 1;
            }
            if c.ops == 0 && !c.close_sent {
                let e = opcode::Close::new(Fd(c.fd)).build().user_data(user_data(KIND_CLOSE, id.idx, id.generation));
                sqes.push(e);
                c.close_sent = true;
                c.ops += 1;
            }
        }
    }
}

/// Arms the multishot recv of `c` unless it is armed, the peer already closed, or a RECV into
/// a target is in flight (two reads would race for the bytes).
fn arm_recv(c: &mut UConn, id: ConnId, sqes: &mut Vec<squeue::Entry>) {
    if c.recv_armed || c.eof || c.target_inflight() {
        return;
    }
    let e = on_socket!(c.slot, c.fd, t => opcode::RecvMulti::new(t, BGID).build()).user_data(user_data(
        KIND_RECV,
        id.idx,
        id.generation,
    ));
    sqes.push(e);
    c.recv_armed = true;
    c.ops += 1;
}

/// Cancels the multishot recv of `c` if it is armed; its last CQE says when it is gone.
fn cancel_recv(c: &mut UConn, id: ConnId, sqes: &mut Vec<squeue::Entry>) {
    if c.recv_armed && !c.recv_cancel {
        let target = user_data(KIND_RECV, id.idx, id.generation);
        let e = opcode::AsyncCancel::new(target).build().user_data(user_data(KIND_CANCEL, id.idx, id.generation));
        sqes.push(e);
        c.recv_cancel = true;
        c.ops += 1;
    }
}

fn start_send(c: &mut UConn, id: ConnId, sqes: &mut Vec<squeue::Entry>) {
    if c.send_inflight || c.queue.is_empty() {
        return;
    }
    let ud = user_data(KIND_SEND, id.idx, id.generation);
    let e = c.send.sqe(&c.queue, c.slot, c.fd);
    sqes.push(e.user_data(ud));
    c.send_inflight = true;
    c.ops += 1;
}

impl LoopBackend for Uring {
    type Conn = UConn;

    fn pause_read(core: &mut Core, conn: ConnId) {
        if let Some(c) = core.conns.get_mut(conn)
            && !c.paused
        {
            // The multishot RECV stays armed: it is cancelled only if something arrives
            // while paused (then kept in the stash). A pause that ends before the peer sends
            // again, as a write that crosses the high-water mark and completes at once
            // does, costs no cancel and no new RECV. A RECV into a target in flight goes
            // on; what it brings is handed back on resume.
            c.paused = true;
        }
    }

    fn resume_read(core: &mut Core, conn: ConnId) {
        if let Some(c) = core.conns.get_mut(conn)
            && c.paused
        {
            c.paused = false;
            if !c.stash_is_empty() || c.eof || c.target_ready() {
                core.own.deliver.push(conn);
            }
            core.mark_dirty(conn);
        }
    }

    fn recv_into(core: &mut Core, conn: ConnId, buf: BytesMut, max: usize) -> Result<(), BytesMut> {
        let Some(c) = core.conns.get_mut(conn) else { return Err(buf) };
        if c.closing != Closing::Open
            || c.connecting
            || c.paused
            || c.eof
            || !c.stash_is_empty()
            || c.target().is_some()
            || max == 0
            || buf.capacity() - buf.len() < max
        {
            return Err(buf);
        }
        c.rare.cold_mut().more.target = Some(RecvTarget::new(buf, max));
        // What the multishot RECV still brings before it is gone goes into the target first.
        cancel_recv(c, conn, &mut core.own.sqes);
        core.mark_dirty(conn);
        Ok(())
    }

    fn connect(core: &mut Core, addr: SocketAddr) -> io::Result<ConnId> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
        if core.nodelay {
            s.set_tcp_nodelay(true)?;
        }
        let mut c = UConn::new(s.into_raw_fd(), Some(addr));
        let sa = ConnectAddr::new(addr);
        let e = sa.sqe(c.fd);
        c.rare.cold_mut().more.connect_addr = Some(sa);
        c.connecting = true;
        c.ops = 1;
        let id = core.conns.insert(c);
        core.own.sqes.push(e.user_data(user_data(KIND_CONNECT, id.idx, id.generation)));
        Ok(id)
    }

    fn stop_accepting(core: &mut Core) {
        for (i, l) in core.own.listeners.iter_mut().enumerate() {
            if l.armed {
                let e = opcode::AsyncCancel::new(user_data(KIND_ACCEPT, i as u32, 0)).build().user_data(user_data(
                    KIND_LISTENER_CANCEL,
                    i as u32,
                    0,
                ));
                core.own.sqes.push(e);
            } else {
                l.sock = None;
            }
        }
    }
}

impl UringLoop {
    pub(super) fn on_conn_cqe<H: Handler>(
        &mut self,
        handler: &mut H,
        id: ConnId,
        kind: u64,
        res: i32,
        more: bool,
        flags: u32,
    ) {
        let core = &mut self.core;
        let c = core.conns.get_mut(id).expect("live id");
        if !more {
            c.ops -= 1;
        }
        match kind {
            KIND_RECV => {
                if !more {
                    c.recv_armed = false;
                    c.recv_cancel = false;
                }
                // A CQE that carries a buffer names it whatever its result (an EOF or an error
                // can carry one too): the piece is done with below.
                let piece = cqueue::buffer_select(flags).map(|bid| self.bufs.received(bid, res, flags));
                if res > 0 {
                    let piece = piece.as_ref().expect("recv CQE with data but without a buffer");
                    let mut data: &[u8] = self.bufs.slice(piece);
                    if c.closing == Closing::Open
                        && let Some(t) = c.target_mut()
                    {
                        // Received before the multishot RECV was gone: into the target first,
                        // the rest (once it is full) kept for on_data, in order.
                        data = &data[t.fill(data)..];
                        if !data.is_empty() {
                            c.rare.cold_mut().more.stash.extend_from_slice(data);
                            core.own.deliver.push(id);
                        }
                        data = &[];
                    }
                    // While closing, input is no longer wanted; while paused (or while older
                    // kept data waits for delivery) it is kept, in order.
                    let direct = c.closing == Closing::Open && !c.paused && c.stash_is_empty();
                    if !direct && c.closing == Closing::Open {
                        c.rare.cold_mut().more.stash.extend_from_slice(data);
                    }
                    if c.paused {
                        // Nothing more until resumed: what the peer sends now stays in the
                        // socket (pause_read leaves the RECV armed until this happens).
                        cancel_recv(c, id, &mut core.own.sqes);
                    }
                    if direct && !data.is_empty() {
                        handler.on_data(core, id, Lend::recv_buf(&mut self.bufs, piece));
                    }
                } else if res == 0 {
                    // A target or stash waiting is handed over first (settle_target,
                    // deliver_stashes), and then the close starts.
                    let start_close = !c.paused && c.stash_is_empty() && c.target().is_none();
                    c.peer_eof(start_close);
                } else if -res == libc::ENOBUFS {
                    self.bufs.exhausted();
                    core.stats.recv_buffers_exhausted += 1;
                } else if -res != libc::ECANCELED {
                    c.teardown(Some(io::Error::from_raw_os_error(-res)));
                }
                if let Some(piece) = piece {
                    self.bufs.done(piece);
                }
                // ENOBUFS / ECANCELED / the end of a multishot: advance() re-arms if wanted.
            }
            KIND_RECV_INTO => {
                let t = c.target_mut().expect("a RECV into a target has its target until it completes");
                t.completed(res);
                if res == 0 {
                    // settle_target hands the target back as it is, then the close starts.
                    c.peer_eof(false);
                } else if res < 0 && -res != libc::ECANCELED {
                    c.teardown(Some(io::Error::from_raw_os_error(-res)));
                }
            }
            KIND_SEND => {
                c.send_inflight = false;
                // The kernel is done with the msghdr and iovecs: back to the pool.
                core.own.send_pool.give_back(&mut c.send);
                if res == 0 && c.closing != Closing::Teardown {
                    // A stream socket that takes no bytes of a non-empty send would loop forever.
                    c.teardown(Some(io::Error::new(io::ErrorKind::WriteZero, "send wrote 0 bytes")));
                } else if res >= 0 {
                    c.queue.advance(res as usize);
                    if c.closing == Closing::Teardown {
                        c.queue.clear();
                    } else if res > 0 {
                        handler.on_sent(core, id, res as usize);
                    }
                } else {
                    c.queue.clear();
                    if -res != libc::ECANCELED {
                        c.teardown(Some(io::Error::from_raw_os_error(-res)));
                    }
                }
            }
            KIND_CONNECT => {
                c.connecting = false;
                if let Some(cold) = c.rare.cold_if_any() {
                    cold.more.connect_addr = None;
                }
                if c.closing == Closing::Teardown {
                    // Aborted while connecting: no on_connect, on_closed follows.
                } else if res == 0 {
                    handler.on_connect(core, id, Ok(()));
                } else {
                    let code = -res;
                    c.teardown(Some(io::Error::from_raw_os_error(code)));
                    handler.on_connect(core, id, Err(io::Error::from_raw_os_error(code)));
                }
            }
            KIND_CANCEL => {}
            KIND_CLOSE => {
                let c = core.conns.remove(id).expect("live id");
                if c.slot != NO_SLOT {
                    // The descriptor is closed; drop the table's reference too, which is what
                    // releases the socket. The slot is reused with the slab index.
                    let _ = self.ring.submitter().register_files_update(c.slot, &[-1]);
                }
                handler.on_closed(core, id, c.rare.into_error());
                return;
            }
            _ => {}
        }
        core.mark_dirty(id);
        if matches!(kind, KIND_RECV | KIND_RECV_INTO) {
            self.settle_target(handler, id);
        }
    }

    /// Hands the target of `id` back to the handler ([`Handler::on_data_into`]) once it holds
    /// bytes for it or the peer's EOF came, unless the connection is paused (then on resume).
    /// After the EOF, once nothing received waits, the close starts.
    pub(super) fn settle_target<H: Handler>(&mut self, handler: &mut H, id: ConnId) {
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(id) else { return };
        let eof = c.eof;
        if c.closing != Closing::Open || c.paused || !c.target().is_some_and(|t| !t.inflight() && (t.ready() || eof)) {
            return;
        }
        let buf = c.rare.cold_mut().more.target.take().expect("checked above").into_buf();
        handler.on_data_into(core, id, buf);
        if eof && let Some(c) = core.conns.get_mut(id) {
            c.close_after_eof();
            core.mark_dirty(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_state_is_small() {
        // One per connection, in the loop's slab; see docs/scaling.md before raising it.
        let n = std::mem::size_of::<UConn>();
        assert!(n <= 104, "UConn is {n} bytes");
        assert_eq!(std::mem::size_of::<TimerSlot>(), 16);
        // An idle connection lends no send buffer.
        assert!(!UConn::new(-1, None).send.is_lent());
    }
}
