//! The skip rule under a real seccomp filter: `seccomp-deny-uring` runs this test binary
//! again (the ignored `child` test), where `io_uring_setup` fails with EPERM.

use ringwire_io::IoChoice;
use std::process::{Command, Output};

const CHILD_ENV: &str = "RINGWIRE_TESTKIT_CHILD";

/// Runs the `child` test under the filter with `RINGWIRE_REQUIRE_URING` set to `require`.
fn child_under_filter(require: &str) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seccomp-deny-uring"))
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env(ringwire_testkit::REQUIRE_URING_ENV, require)
        .output()
        .expect("run seccomp-deny-uring");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

#[test]
fn io_uring_variants_are_skipped_with_a_line_where_io_uring_is_blocked() {
    let (out, text) = child_under_filter("0");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran: {text}");
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("SKIPPED")).collect();
    assert_eq!(skipped.len(), 1, "one line per test: {text}");
    assert!(skipped[0].starts_with("SKIPPED child on io_uring: io_uring unavailable ("), "{}", skipped[0]);
    assert!(skipped[0].contains("EPERM"), "{}", skipped[0]);
}

#[test]
fn a_required_io_uring_turns_the_skip_into_a_failure() {
    let (out, text) = child_under_filter("1");
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("child on io_uring: io_uring is required here (RINGWIRE_REQUIRE_URING=1) but unavailable"),
        "{text}"
    );
    assert!(!text.contains("SKIPPED"), "{text}");
}

#[test]
fn the_launcher_needs_a_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_seccomp-deny-uring")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: seccomp-deny-uring COMMAND"));
}

/// The child half; does nothing useful outside [`child_under_filter`], hence ignored.
#[test]
#[ignore = "runs only under seccomp-deny-uring, started by the other tests"]
fn child() {
    assert!(std::env::var_os(CHILD_ENV).is_some(), "run by child_under_filter");
    let e = ringwire_io::detect(IoChoice::Uring).expect_err("io_uring_setup is blocked");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    // Asked twice in one test, said once.
    assert_eq!(ringwire_testkit::backends(), [IoChoice::Epoll]);
    assert_eq!(ringwire_testkit::backends(), [IoChoice::Epoll]);
    assert!(!ringwire_testkit::uring_usable());
}
