//! `seccomp-deny-uring COMMAND [ARGS...]`: runs COMMAND where `io_uring_setup` fails with
//! EPERM (a real seccomp filter, inherited by every process it starts), as under Docker's
//! default profile. `seccomp-deny-uring cargo test --workspace` runs the tests as they run
//! there: each io_uring variant says `SKIPPED ...`, unless `RINGWIRE_REQUIRE_URING=1`.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: seccomp-deny-uring COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    if let Err(e) = ringwire_testkit::deny_io_uring_setup() {
        eprintln!("seccomp-deny-uring: {e}");
        return ExitCode::from(1);
    }
    let e = Command::new(&program).args(args).exec();
    eprintln!("seccomp-deny-uring: {}: {e}", program.to_string_lossy());
    ExitCode::from(127)
}
