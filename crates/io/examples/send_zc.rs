//! Plain sends against zero-copy sends (`IORING_OP_SEND_ZC`, with and without a registered
//! buffer) over one loopback TCP connection: the sender's and the receiver's CPU time per
//! message at a given size. What issue 18 asked to measure before the loop uses either.
//!
//! ```text
//! cargo run --release -p ringwire-io --example send_zc -- --size 65536 --secs 3 --mode zc
//! ```
//!
//! The sender runs on CPU 0 and keeps one send in flight, cycling through four buffers; a
//! zero-copy send's buffer is reused only after its notification (the kernel is done with
//! it). The receiver, on CPU 1, reads into a 1 MiB buffer and drops what it reads. `--mode`:
//! `send` (`IORING_OP_SEND`), `zc` (`IORING_OP_SEND_ZC`), `zc-fixed` (the same from buffers
//! registered with `IORING_REGISTER_BUFFERS`). Zero-copy sends report whether the kernel
//! copied after all (`IORING_SEND_ZC_REPORT_USAGE`): over loopback it does, at delivery.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, types};

const BUFS: usize = 4;
/// `IORING_SEND_ZC_REPORT_USAGE`: the notification says whether the data was copied.
const REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`, in a notification's result.
const ZC_COPIED: i32 = 1 << 31;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Send,
    Zc,
    ZcFixed,
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let (mut size, mut secs, mut mode) = (65536usize, 3u64, Mode::Send);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--size" => size = v.parse().expect("--size: a number of bytes"),
            "--secs" => secs = v.parse().expect("--secs: a number of seconds"),
            "--mode" => {
                mode = match v.as_str() {
                    "send" => Mode::Send,
                    "zc" => Mode::Zc,
                    "zc-fixed" => Mode::ZcFixed,
                    _ => panic!("--mode: send, zc or zc-fixed"),
                }
            }
            _ => panic!("usage: send_zc [--size BYTES] [--secs N] [--mode send|zc|zc-fixed]"),
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        pin(1);
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let (mut total, start) = (0u64, thread_cpu());
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        (total, thread_cpu() - start)
    });
    pin(0);
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    let mut ring = IoUring::new(64).unwrap();
    let mut bufs: Vec<Vec<u8>> = (0..BUFS).map(|i| vec![i as u8; size]).collect();
    if mode == Mode::ZcFixed {
        let iov: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
        // SAFETY: the buffers live until the end of main, after the last send completed.
        unsafe { ring.submitter().register_buffers(&iov) }.expect("IORING_REGISTER_BUFFERS");
    }
    let fd = types::Fd(sock.as_raw_fd());
    // Per buffer: a zero-copy notification still owed (the buffer may not be reused yet).
    let mut owed = [false; BUFS];
    let (mut sent_msgs, mut copied, mut notifs) = (0u64, 0u64, 0u64);
    let (t0, c0) = (Instant::now(), thread_cpu());
    let end = t0 + Duration::from_secs(secs);
    let mut i = 0;
    while Instant::now() < end {
        while owed[i] {
            reap(&mut ring, &mut owed, &mut copied, &mut notifs);
        }
        // One message: the whole buffer, resent from where a partial send stopped.
        let mut off = 0;
        while off < size {
            let (ptr, len) = (bufs[i][off..].as_ptr(), (size - off) as u32);
            let sqe = match mode {
                Mode::Send => opcode::Send::new(fd, ptr, len).build(),
                Mode::Zc => opcode::SendZc::new(fd, ptr, len).zc_flags(REPORT_USAGE).build(),
                Mode::ZcFixed => {
                    opcode::SendZc::new(fd, ptr, len).buf_index(Some(i as u16)).zc_flags(REPORT_USAGE).build()
                }
            }
            .user_data(i as u64);
            // SAFETY: the buffer outlives the send and, for zero-copy, its notification (it is
            // not reused or freed before `owed[i]` clears).
            unsafe { ring.submission().push(&sqe).unwrap() };
            if mode != Mode::Send {
                owed[i] = true;
            }
            off += loop {
                if let Some(n) = reap(&mut ring, &mut owed, &mut copied, &mut notifs) {
                    break n;
                }
            };
        }
        sent_msgs += 1;
        i = (i + 1) % BUFS;
    }
    while owed.iter().any(|o| *o) {
        reap(&mut ring, &mut owed, &mut copied, &mut notifs);
    }
    let (wall, cpu) = (t0.elapsed(), thread_cpu() - c0);
    drop(sock);
    let (total, reader_cpu) = reader.join().unwrap();
    assert_eq!(total, sent_msgs * size as u64, "the receiver got every byte");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / sent_msgs as f64;
    println!(
        "{mode:?} size {size}: {:.0} msgs/s, {:.0} MiB/s; sender CPU {:.2} us/msg, receiver CPU {:.2} us/msg, \
         sum {:.2}; notifications {notifs}, copied by the kernel {copied}",
        sent_msgs as f64 / wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64() / (1 << 20) as f64,
        per(cpu),
        per(reader_cpu),
        per(cpu) + per(reader_cpu),
    );
}

/// Waits for completions: the bytes the send's completion reports, if it came (`None` when
/// only notifications did), clearing `owed` for each notification.
fn reap(ring: &mut IoUring, owed: &mut [bool; BUFS], copied: &mut u64, notifs: &mut u64) -> Option<usize> {
    ring.submit_and_wait(1).unwrap();
    let mut sent = None;
    for c in ring.completion() {
        let i = c.user_data() as usize;
        if cqueue::notif(c.flags()) {
            owed[i] = false;
            *notifs += 1;
            *copied += u64::from(c.result() & ZC_COPIED != 0);
        } else {
            assert!(c.result() >= 0, "send failed: {}", std::io::Error::from_raw_os_error(-c.result()));
            if !cqueue::more(c.flags()) {
                owed[i] = false; // no notification follows (nothing was sent zero-copy)
            }
            sent = Some(c.result() as usize);
        }
    }
    sent
}
