//! SIGINT / SIGTERM: a dedicated thread waits for them and starts a graceful shutdown.
//! SIGHUP: the same thread starts a reload of the TLS certificates.

use crate::ServerHandle;

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (so every thread spawned after
/// it inherits the mask: call it before starting the server, as
/// [`Server::run_until_signal`](crate::Server::run_until_signal) does; a thread started
/// earlier still has the default actions, and SIGHUP's kills the process) and starts a
/// thread that waits for them with `sigwait`. The first SIGINT or SIGTERM calls
/// [`ServerHandle::shutdown`] (bounded by
/// [`ServerConfig::shutdown_timeout`](crate::ServerConfig::shutdown_timeout)). A second
/// signal exits the process at once, with the shell's code for the signal: 130 for
/// SIGINT, 143 for SIGTERM.
///
/// SIGHUP: a server with TLS reads its certificate and key files again
/// ([`ServerHandle::reload_tls`], on a thread of its own, so a slow file system cannot hold
/// up a shutdown signal) and logs the outcome in one line (on an error the certificates in
/// force stay); a server without TLS logs that it ignores it.
pub fn shutdown_on_signals(handle: ServerHandle) {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it fully.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    };
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let spawned = std::thread::Builder::new().name("ringwire-signals".into()).spawn(move || {
        let mut first = true;
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is valid and `sig` is a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            if sig == libc::SIGHUP {
                let handle = handle.clone();
                let started = std::thread::Builder::new().name("ringwire-reload".into()).spawn(move || reload(&handle));
                if let Err(e) = started {
                    log(|| tracing::warn!(signal = "SIGHUP", error = %e, "cannot start the reload thread"));
                }
                continue;
            }
            let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            if first {
                handle.shutdown();
                first = false;
                log(|| tracing::info!(signal = name, "shutting down gracefully (send again to exit now)"));
            } else {
                let code = 128 + sig;
                log(|| tracing::warn!(signal = name, code, "second signal: exiting now"));
                std::process::exit(code);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the signal thread; SIGINT/SIGTERM will kill the process");
    }
}

/// SIGHUP: reloads the TLS files, one log line either way.
fn reload(handle: &ServerHandle) {
    match handle.reload_tls() {
        Ok(()) => log(|| tracing::info!(signal = "SIGHUP", "tls: certificates reloaded for new connections")),
        Err(ringwire_tls::TlsConfigError::Empty) => {
            log(|| tracing::info!(signal = "SIGHUP", "no tls configured: nothing to reload"))
        }
        Err(e) => log(
            || tracing::warn!(signal = "SIGHUP", error = %e, "tls: reload failed, keeping the certificates in force"),
        ),
    }
}

/// Logs from the signal thread. A log line that cannot be written (stderr is a pipe whose
/// reader is gone) panics inside the subscriber; caught here, so the thread lives on to act
/// on the next signal instead of leaving SIGINT and SIGTERM blocked with no one waiting.
fn log(line: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(line));
}
