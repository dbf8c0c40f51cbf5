//! Whether io_uring works here the way the loop uses it ([`probe`]), and how a loop's ring is
//! set up: its flags ([`build_ring`]) and its registered file table.

use std::io;
use std::time::Duration;

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, opcode};

use super::lent::{BGID, BufRing, push_nop};
use super::ops::{KIND_NOP, user_data};
use crate::common::errno_name;
use crate::{ENV_URING_DENY, env_flag};

/// `what` failed with `e`, for the start-up line; an EPERM says what refused it.
pub(super) fn describe(what: &str, e: &io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    let msg = io::Error::from_raw_os_error(code).to_string();
    let msg = msg.split(" (os error").next().unwrap_or(&msg).to_string();
    let mut s = if code != 0 { format!("{what}: {msg} ({})", errno_name(code)) } else { format!("{what}: {e}") };
    if code == libc::EPERM {
        let v = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|_| "unreadable".to_string());
        s.push_str(&eperm_cause(&v, env_flag(ENV_URING_DENY)));
    }
    s
}

/// What refused io_uring with EPERM, given the value read from `kernel.io_uring_disabled`
/// (`"unreadable"` when it could not be read: before Linux 6.6 there is no such sysctl) and
/// whether the test switch is set. The sysctl is blamed only when its value refuses: 1
/// (io_uring for root and `kernel.io_uring_group` only) or 2 (for no one); with 0 (allowed)
/// the refusal comes from a seccomp filter or the container's policy.
fn eperm_cause(sysctl: &str, deny_switch: bool) -> String {
    if deny_switch {
        return format!(": refused by {ENV_URING_DENY}=1 (kernel.io_uring_disabled={sysctl})");
    }
    match sysctl {
        "1" => ": kernel.io_uring_disabled=1 allows io_uring only to root and kernel.io_uring_group".to_string(),
        "2" => ": kernel.io_uring_disabled=2 turns io_uring off".to_string(),
        "0" => {
            ": blocked by a seccomp filter or container policy (kernel.io_uring_disabled=0 allows io_uring)".to_string()
        }
        v => format!(": blocked by a seccomp filter or container policy (kernel.io_uring_disabled={v})"),
    }
}

/// How a ring was set up.
#[derive(Clone, Copy)]
pub(super) struct Setup {
    /// The flags, for the start-up line.
    pub(super) label: &'static str,
    /// DEFER_TASKRUN: no recv runs while the loop is in user space (see [`BufRing::reclaim`]).
    pub(super) deferred: bool,
}

/// Creates a ring of `entries` SQEs and `cq` CQEs with the loop's flags, retrying with fewer
/// flags on EINVAL.
pub(super) fn build_ring(entries: u32, cq: u32) -> io::Result<(IoUring, Setup)> {
    if env_flag(ENV_URING_DENY) {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    // DEFER_TASKRUN (6.1+): completions are produced only while this thread waits in
    // io_uring_enter, in one batch, instead of interrupting it; it needs SINGLE_ISSUER, which
    // holds because a loop is created and run on one thread.
    let deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(cq)
        .build(entries);
    match deferred {
        Ok(r) => return Ok((r, Setup { label: "SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN", deferred: true })),
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        Err(_) => {}
    }
    let flagged = IoUring::builder().setup_single_issuer().setup_coop_taskrun().setup_cqsize(cq).build(entries);
    match flagged {
        Ok(r) => Ok((r, Setup { label: "SINGLE_ISSUER|COOP_TASKRUN", deferred: false })),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((
            IoUring::builder().setup_cqsize(cq).build(entries)?,
            Setup { label: "plain flags (SINGLE_ISSUER|COOP_TASKRUN gave EINVAL)", deferred: false },
        )),
        Err(e) => Err(e),
    }
}

/// The opcodes the loop uses.
const NEEDED: &[(u8, &str)] = &[
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Send::CODE, "SEND"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Read::CODE, "READ"),
    (opcode::ProvideBuffers::CODE, "PROVIDE_BUFFERS"),
];

/// Checks that io_uring works here the way the loop uses it. `Ok` is a description for the
/// start-up line; `Err` carries the reason io_uring cannot be used.
pub(crate) fn probe() -> io::Result<String> {
    let fail = |what: &str, e: io::Error| io::Error::new(e.kind(), describe(what, &e));
    let (mut ring, setup) = build_ring(8, 16).map_err(|e| fail("io_uring_setup", e))?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11)"));
    }
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p).map_err(|e| fail("IORING_REGISTER_PROBE", e))?;
    let missing: Vec<&str> = NEEDED.iter().filter(|(c, _)| !p.is_supported(*c)).map(|(_, n)| *n).collect();
    if !missing.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring lacks opcodes: {}", missing.join(", ")),
        ));
    }
    {
        let mut bufs = BufRing::new(8, 512, false)?;
        bufs.register(&ring).map_err(|e| fail("IORING_REGISTER_PBUF_RING", e))?;
        ring.submitter().unregister_buf_ring(BGID).map_err(|e| fail("IORING_UNREGISTER_PBUF_RING", e))?;
    }
    push_nop(&mut ring).map_err(|_| io::Error::other("NOP: submission queue full"))?;
    let ts = Timespec::from(Duration::from_secs(1));
    match ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts)) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => return Err(fail("io_uring_enter (NOP round trip)", e)),
    }
    let done = ring.completion().any(|c| c.user_data() == user_data(KIND_NOP, 0, 0) && c.result() == 0);
    if !done {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "io_uring NOP round trip did not complete within 1 s"));
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
    Ok(format!(
        "kernel {}; {}; multishot accept/recv, pbuf ring (adaptive window), send/sendmsg, registered files",
        kernel.as_deref().unwrap_or("unknown"),
        setup.label
    ))
}

/// Registers a sparse file table as large as RLIMIT_NOFILE allows (at most [`MAX_SLOTS`]);
/// returns its size, 0 when the kernel refuses (before 5.19), and connections then use
/// their plain descriptors.
pub(super) fn register_file_table(ring: &IoUring) -> u32 {
    let Some(limit) = crate::sys::nofile_limit() else { return 0 };
    let n = limit.min(MAX_SLOTS) as u32;
    match ring.submitter().register_files_sparse(n) {
        Ok(()) => n,
        Err(_) => 0,
    }
}
/// Registered file table size at most (also capped by RLIMIT_NOFILE, as the kernel requires).
const MAX_SLOTS: u64 = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eperm_blames_the_sysctl_only_when_its_value_refuses() {
        for v in ["1", "2"] {
            let c = eperm_cause(v, false);
            assert!(c.contains(&format!("kernel.io_uring_disabled={v}")) && !c.contains("seccomp"), "{c}");
        }
        for v in ["0", "unreadable"] {
            let c = eperm_cause(v, false);
            assert!(c.contains("seccomp filter or container policy"), "{c}");
            assert!(c.contains(&format!("kernel.io_uring_disabled={v}")), "{c}");
        }
        let c = eperm_cause("0", true);
        assert!(c.contains("RINGWIRE_IO_URING_DENY=1") && !c.contains("seccomp"), "{c}");
        assert!(c.contains("kernel.io_uring_disabled=0"), "{c}");
    }
}
