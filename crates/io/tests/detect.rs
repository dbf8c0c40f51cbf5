//! Backend detection and the epoll fallback, including a real seccomp filter.
//!
//! Scenarios that need a different environment (env vars, a seccomp filter) run in a child
//! process: this test binary re-executes itself with `--ignored --exact child` and
//! `RINGWIRE_IO_TEST_CHILD=<mode>`.

mod common;

use std::process::Command;

use ringwire_io::{Backend, EventLoop, IoChoice, LoopConfig, detect};

const CHILD_ENV: &str = "RINGWIRE_IO_TEST_CHILD";

fn run_child(mode: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--ignored", "--exact", "child", "--nocapture", "--test-threads=1"]);
    cmd.env(CHILD_ENV, mode).env_remove("RINGWIRE_IO").env_remove("RINGWIRE_IO_URING_DENY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn child test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child {mode} failed:\n{text}");
    assert!(text.contains("1 passed"), "child {mode} did not run:\n{text}");
}

#[test]
fn epoll_forced() {
    let d = detect(IoChoice::Epoll).unwrap();
    assert_eq!(d.backend, Backend::Epoll);
    assert!(d.reason.contains("forced"), "{}", d.reason);
}

#[test]
fn auto_picks_uring_here() {
    assert!(std::env::var_os("RINGWIRE_IO").is_none() && std::env::var_os("RINGWIRE_IO_URING_DENY").is_none());
    let d = detect(IoChoice::Auto).unwrap();
    assert_eq!(d.backend, Backend::Uring, "reason: {}", d.reason);
    assert!(d.reason.contains("kernel"), "{}", d.reason);
    let d = detect(IoChoice::Uring).unwrap();
    assert_eq!(d.backend, Backend::Uring);
}

#[test]
fn deny_switch_falls_back() {
    run_child("deny", &[("RINGWIRE_IO_URING_DENY", "1")]);
}

#[test]
fn env_overrides_auto_only() {
    run_child("env_epoll", &[("RINGWIRE_IO", "epoll")]);
    run_child("env_bad", &[("RINGWIRE_IO", "kqueue")]);
}

#[test]
fn seccomp_blocks_io_uring_setup() {
    run_child("seccomp", &[]);
}

/// The child half; does nothing useful outside a child process, hence ignored.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let mode = std::env::var(CHILD_ENV).expect("run by run_child");
    match mode.as_str() {
        "deny" => {
            let d = detect(IoChoice::Auto).unwrap();
            println!("detect(Auto) with the deny switch: {} ({})", d.backend, d.reason);
            assert_eq!(d.backend, Backend::Epoll);
            assert!(d.reason.contains("EPERM"), "{}", d.reason);
            assert!(d.reason.contains("kernel.io_uring_disabled="), "{}", d.reason);
            let e = detect(IoChoice::Uring).unwrap_err();
            assert!(e.to_string().contains("EPERM"), "{e}");
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
            let e = EventLoop::new(Backend::Uring, &LoopConfig::default()).err().expect("ring creation must fail");
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert_eq!(detect(IoChoice::Epoll).unwrap().backend, Backend::Epoll);
        }
        "env_epoll" => {
            let d = detect(IoChoice::Auto).unwrap();
            assert_eq!(d.backend, Backend::Epoll);
            assert!(d.reason.contains("RINGWIRE_IO=epoll"), "{}", d.reason);
            assert_eq!(detect(IoChoice::Uring).unwrap().backend, Backend::Uring);
        }
        "env_bad" => {
            let e = detect(IoChoice::Auto).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("RINGWIRE_IO"), "{e}");
            assert_eq!(detect(IoChoice::Epoll).unwrap().backend, Backend::Epoll);
        }
        "seccomp" => {
            install_seccomp_eperm_io_uring_setup();
            let d = detect(IoChoice::Auto).unwrap();
            println!("detect(Auto) under seccomp: {} ({})", d.backend, d.reason);
            assert_eq!(d.backend, Backend::Epoll, "reason: {}", d.reason);
            assert!(d.reason.contains("io_uring_setup: Operation not permitted (EPERM)"), "{}", d.reason);
            assert!(EventLoop::new(Backend::Uring, &LoopConfig::default()).is_err());
            // The fallback serves the echo scenario.
            let r = common::start(d.backend, common::small_config(), common::Echo::default());
            common::echo_scenario(&r);
            let h = r.finish();
            assert_eq!(h.accepted, 7);
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Installs a seccomp filter on this thread (inherited by threads it spawns) that makes
/// `io_uring_setup` (syscall 425) fail with EPERM, like Docker's default profile.
fn install_seccomp_eperm_io_uring_setup() {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
    const ARCH: u32 = if cfg!(target_arch = "aarch64") { AUDIT_ARCH_AARCH64 } else { AUDIT_ARCH_X86_64 };
    const NR_IO_URING_SETUP: u32 = 425;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut filter = [
        ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        ins(JEQ_K, 0, 3, ARCH),
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JEQ_K, 0, 1, NR_IO_URING_SETUP),
        ins(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        ins(RET_K, 0, 0, RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    // SAFETY: `prog` points at a valid filter array that outlives the call; the kernel copies it.
    let r = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) };
    assert_eq!(r, 0, "PR_SET_SECCOMP: {}", std::io::Error::last_os_error());
}
