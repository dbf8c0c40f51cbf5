//! The skip rule: which backends a test runs on here.

use ringwire_io::IoChoice;
use std::cell::Cell;
use std::io::Write;

/// Set to `1` (as `.ci/run` does), a test that would skip its io_uring variant fails instead.
pub const REQUIRE_URING_ENV: &str = "RINGWIRE_REQUIRE_URING";

thread_local! {
    /// Whether this thread (libtest runs each test on its own) already printed its skip line.
    static SAID: Cell<bool> = const { Cell::new(false) };
}

/// The name of the running test: libtest names each test's thread after it.
fn test_name() -> String {
    std::thread::current().name().unwrap_or("this test").to_owned()
}

/// Whether io_uring can be used here, checked with `ringwire_io::detect(IoChoice::Uring)`.
///
/// When it cannot: with `RINGWIRE_REQUIRE_URING=1` this panics, naming `what` and the reason;
/// otherwise it writes `SKIPPED <what>: io_uring unavailable (<reason>)` to stderr (past
/// libtest's capture, so the line shows in `cargo test`'s output; once per test thread) and
/// returns false.
pub fn uring_or_skip(what: &str) -> bool {
    match ringwire_io::detect(IoChoice::Uring) {
        Ok(_) => true,
        Err(e) if std::env::var(REQUIRE_URING_ENV).is_ok_and(|v| v.trim() == "1") => {
            panic!("{what}: io_uring is required here ({REQUIRE_URING_ENV}=1) but unavailable: {e}")
        }
        Err(e) => {
            if !SAID.replace(true) {
                // Straight to the descriptor: libtest captures print!/eprint! of passing tests.
                // One write, so that lines of tests running at once do not interleave.
                let line = format!("SKIPPED {what}: io_uring unavailable ({e})\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            false
        }
    }
}

/// [`uring_or_skip`] for the io_uring variant of the running test.
pub fn uring_usable() -> bool {
    uring_or_skip(&format!("{} on io_uring", test_name()))
}

/// The backends a test runs each behaviour on: io_uring (when [`uring_usable`]), then epoll.
pub fn backends() -> Vec<IoChoice> {
    let mut v = Vec::with_capacity(2);
    if uring_usable() {
        v.push(IoChoice::Uring);
    }
    v.push(IoChoice::Epoll);
    v
}
