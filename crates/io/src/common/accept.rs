//! The accept-error policy, the same in both backends.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::errno_name;

/// How long a loop stops accepting on a listener after an accept failed for lack of
/// descriptors or memory, or with an error it does not know.
///
/// 100 ms, not nginx's 500 ms (its `accept_mutex_delay`, reused): while accepting pauses,
/// new connections wait in the listen backlog, so the pause is added to their connect time
/// once descriptors are free again; a retry that fails costs one `accept4` (or one io_uring
/// ACCEPT) of a few microseconds, so ten a second per listener cost nothing measurable, while
/// a loop that retried every turn would spin at 100% CPU on an error that persists.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one accept-error line per loop per this long; the next line says how many were
/// left out.
pub(crate) const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What an accept error means for the listener.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AcceptFailure {
    /// A connection that died in the backlog (or a firewall refusing it), or an interrupted
    /// call: accept the next one at once, log nothing.
    Transient,
    /// Out of descriptors, out of memory, or unknown: logged (rate-limited), and accepting
    /// on that listener pauses for [`ACCEPT_BACKOFF`].
    BackOff,
}

/// Sorts an accept errno. The transient ones are those accept(2) documents for a connection
/// that failed while queued (Linux passes its pending network error to `accept`), plus EPERM
/// (a firewall rule), EINTR and EAGAIN.
pub(crate) fn accept_failure(errno: i32) -> AcceptFailure {
    match errno {
        libc::ECONNABORTED
        | libc::EPROTO
        | libc::EPERM
        | libc::EINTR
        | libc::EAGAIN
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH => AcceptFailure::Transient,
        _ => AcceptFailure::BackOff,
    }
}

/// A log line at most once per [`ACCEPT_LOG_EVERY`]: the events in between are counted, and
/// the next line says how many were left out.
#[derive(Default)]
pub(crate) struct RateLimited {
    last_log: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// Whether to log the event at `now`; `Some(n)`: yes, and `n` were left out since the
    /// last line.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last_log.is_some_and(|t| now.saturating_duration_since(t) < ACCEPT_LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The accept-error policy of one loop (both backends): what to do after a failed accept,
/// and its log lines, at most one per [`ACCEPT_LOG_EVERY`].
#[derive(Default)]
pub(crate) struct AcceptErrors {
    log: RateLimited,
    /// Every failure, counted.
    pub(crate) counts: crate::AcceptErrors,
}

impl AcceptErrors {
    /// An accept on `listener` failed with `errno` at `now`: logs it if it is worth a line
    /// and none was logged lately, and returns when to accept on that listener again (`None`:
    /// at once).
    pub(crate) fn failed(&mut self, now: Instant, errno: i32, listener: Option<SocketAddr>) -> Option<Instant> {
        match errno {
            libc::EMFILE | libc::ENFILE => self.counts.out_of_descriptors += 1,
            _ => self.counts.other += 1,
        }
        if accept_failure(errno) == AcceptFailure::Transient {
            return None;
        }
        if let Some(line) = self.line(now, errno, listener) {
            tracing::warn!("{line}");
        }
        Some(now + ACCEPT_BACKOFF)
    }

    /// The line to log for a failure that backs off, or `None` when one was logged less than
    /// [`ACCEPT_LOG_EVERY`] ago (it is counted, and the next line says how many).
    fn line(&mut self, now: Instant, errno: i32, listener: Option<SocketAddr>) -> Option<String> {
        let suppressed = self.log.admit(now)?;
        let listener = listener.map_or_else(|| "a listener".to_string(), |a| a.to_string());
        let e = io::Error::from_raw_os_error(errno).to_string();
        let e = e.split(" (os error").next().unwrap_or(&e);
        let advice = match errno {
            libc::EMFILE | libc::ENFILE => {
                "out of file descriptors: raise the open-file limit: ulimit -n / LimitNOFILE="
            }
            libc::ENOBUFS | libc::ENOMEM => "out of memory for new sockets",
            _ => "unexpected error",
        };
        let suppressed = match suppressed {
            0 => String::new(),
            n => format!("; {n} more accept errors since the last line were not logged"),
        };
        Some(format!(
            "accept on {listener} failed: {e} ({}, errno {errno}): {advice}; accepting again in {} ms{suppressed}",
            errno_name(errno),
            ACCEPT_BACKOFF.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_log_at_most_once_per_period() {
        let mut a = AcceptErrors::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for e in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM, libc::EINTR, libc::EAGAIN, libc::ENETUNREACH] {
            assert_eq!(a.failed(t0, e, None), None, "errno {e} is transient");
        }
        assert_eq!(a.log.last_log, None, "transient errors are not logged");
        let listener: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let first = a.line(t0, libc::EMFILE, Some(listener)).expect("the first error is logged");
        assert!(
            first.starts_with("accept on 127.0.0.1:8080 failed: Too many open files (EMFILE, errno 24)"),
            "{first}"
        );
        assert!(first.contains("ulimit -n / LimitNOFILE="), "{first}");
        assert!(!first.contains("not logged"), "{first}");
        assert_eq!(a.line(at(1), libc::ENFILE, None), None);
        assert_eq!(a.failed(at(2), libc::EINVAL, None), Some(at(2) + ACCEPT_BACKOFF), "unknown errors back off");
        assert_eq!(a.failed(at(3), libc::ENOMEM, None), Some(at(3) + ACCEPT_BACKOFF));
        assert_eq!(a.log.suppressed, 3);
        let next = a.line(t0 + ACCEPT_LOG_EVERY, libc::EBADF, None).expect("a line per period");
        assert!(next.contains("EBADF") && next.contains("unexpected error"), "{next}");
        assert!(next.ends_with("; 3 more accept errors since the last line were not logged"), "{next}");
        assert_eq!(a.log.suppressed, 0);
    }
}
