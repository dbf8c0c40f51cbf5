//! Sends counted per thread: every data message a [`Connection`](crate::Connection) on
//! this thread queued, whatever path queued it ([`thread_sent`]).

use std::cell::Cell;

/// Data messages queued to send by the connections of one thread since it started, and
/// their payload bytes (before compression). Sends refused (not open, over
/// `max_buffered`) are not counted; a message prepared once for many connections counts
/// once per connection it is queued on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentCounts {
    /// Text messages.
    pub text_messages: u64,
    /// Binary messages.
    pub binary_messages: u64,
    /// Payload bytes of the text messages.
    pub text_bytes: u64,
    /// Payload bytes of the binary messages.
    pub binary_bytes: u64,
}

thread_local! {
    static SENT: Cell<SentCounts> = const {
        Cell::new(SentCounts { text_messages: 0, binary_messages: 0, text_bytes: 0, binary_bytes: 0 })
    };
}

/// What this thread's connections queued to send so far. An event loop's thread (a
/// server worker) reads its own: a plain thread-local, so counting costs a send two adds
/// and nothing is shared between threads.
pub fn thread_sent() -> SentCounts {
    SENT.with(Cell::get)
}

/// A data message of `len` payload bytes was queued.
#[inline(always)]
pub(crate) fn count(text: bool, len: usize) {
    SENT.with(|c| {
        let mut n = c.get();
        if text {
            n.text_messages += 1;
            n.text_bytes += len as u64;
        } else {
            n.binary_messages += 1;
            n.binary_bytes += len as u64;
        }
        c.set(n);
    });
}
