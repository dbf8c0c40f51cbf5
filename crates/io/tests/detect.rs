//! Backend detection and the epoll fallback, including a real seccomp filter.
//!
//! Scenarios that need a different environment (env vars, a seccomp filter) run in a child
//! process: this test binary re-executes itself with `--ignored --exact child` and
//! `RINGWIRE_IO_TEST_CHILD=<mode>`.

mod common;

use std::io::Write;
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
    // The child's skip lines, passed on past libtest's capture.
    let parent = std::thread::current().name().unwrap_or("the parent").to_owned();
    for line in text.lines().filter(|l| l.starts_with("SKIPPED child ")) {
        let line = line.replacen("SKIPPED child", &format!("SKIPPED {parent} (child {mode})"), 1);
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    }
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
    if !ringwire_testkit::uring_usable() {
        return;
    }
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
            if ringwire_testkit::uring_usable() {
                assert_eq!(detect(IoChoice::Uring).unwrap().backend, Backend::Uring);
            }
        }
        "env_bad" => {
            let e = detect(IoChoice::Auto).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("RINGWIRE_IO"), "{e}");
            assert_eq!(detect(IoChoice::Epoll).unwrap().backend, Backend::Epoll);
        }
        "seccomp" => {
            ringwire_testkit::deny_io_uring_setup().expect("install the seccomp filter");
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
