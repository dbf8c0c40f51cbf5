//! A seccomp filter that blocks `io_uring_setup`, like Docker's default profile.

#![allow(unsafe_code)]

use std::io;

/// `io_uring_setup`: 425 on every architecture that has it (the new-syscall table is shared).
const NR_IO_URING_SETUP: u32 = 425;

/// `AUDIT_ARCH_*` of this build: the filter only judges calls made with this ABI.
const ARCH: u32 = if cfg!(target_arch = "aarch64") {
    0xC000_00B7 // AUDIT_ARCH_AARCH64
} else {
    0xC000_003E // AUDIT_ARCH_X86_64
};

/// Installs, for every thread of this process and everything it executes from now on, a
/// seccomp filter that makes `io_uring_setup` fail with EPERM and allows every other call.
/// Sets `PR_SET_NO_NEW_PRIVS` first (which an unprivileged filter needs). Cannot be undone.
pub fn deny_io_uring_setup() -> io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut filter = [
        ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        ins(JEQ_K, 0, 3, ARCH),
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JEQ_K, 0, 1, NR_IO_URING_SETUP),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::other(format!("prctl(PR_SET_NO_NEW_PRIVS): {}", io::Error::last_os_error())));
    }
    // SAFETY: `prog` points at a valid filter array that outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::other(format!("seccomp(SECCOMP_SET_MODE_FILTER): {}", io::Error::last_os_error())));
    }
    Ok(())
}
