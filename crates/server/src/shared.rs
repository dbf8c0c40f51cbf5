//! State shared by all workers of one server: mailboxes, the connection count, shutdown.

use ringwire_conn::{CloseCode, Payload, PreparedMessage};
use ringwire_io::{ConnId, Waker};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Work handed to a worker from another thread.
pub(crate) enum Command {
    Send(ConnId, Payload),
    Close(ConnId, CloseCode, String),
    Broadcast(PreparedMessage),
    /// `true`: pause reading; `false`: resume.
    Pause(ConnId, bool),
    Shutdown,
}

/// One worker's inbox. A push wakes the worker's loop (eventfd), coalesced.
pub(crate) struct Mailbox {
    queue: Mutex<Vec<Command>>,
    waker: OnceLock<Waker>,
}

impl Mailbox {
    pub(crate) fn new() -> Self {
        Self { queue: Mutex::new(Vec::new()), waker: OnceLock::new() }
    }

    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
        self.wake();
    }

    pub(crate) fn push(&self, cmd: Command) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.push(cmd);
            q.len() == 1
        };
        if was_empty {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
    }

    /// Moves every queued command into `out` (swapping buffers, no allocation in steady state).
    pub(crate) fn drain_into(&self, out: &mut Vec<Command>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *q, out);
    }
}

pub(crate) struct Shared {
    pub(crate) workers: Vec<Mailbox>,
    pub(crate) connections: AtomicUsize,
    pub(crate) max_connections: usize,
    pub(crate) shutting_down: AtomicBool,
}

impl Shared {
    pub(crate) fn new(workers: usize, max_connections: usize) -> Self {
        Self {
            workers: (0..workers).map(|_| Mailbox::new()).collect(),
            connections: AtomicUsize::new(0),
            max_connections,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Reserves a connection slot; false when the limit is reached.
    pub(crate) fn try_admit(&self) -> bool {
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_connections).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn release(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn shutdown(&self) {
        if !self.shutting_down.swap(true, Ordering::AcqRel) {
            for w in &self.workers {
                w.push(Command::Shutdown);
            }
        }
    }
}
