//! What the harness reads about a server process from `/proc`: CPU time (utime + stime
//! from `/proc/PID/stat`, all threads) and resident memory (`VmRSS`/`VmHWM` from
//! `/proc/PID/status`).

use std::io;
use std::process::Command;

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// User-mode clock ticks.
    pub utime: u64,
    /// Kernel-mode clock ticks.
    pub stime: u64,
}

impl CpuTicks {
    /// utime + stime.
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses the utime and stime fields (14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(line: &str) -> io::Result<CpuTicks> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("/proc stat: {m}"));
    let rest = &line[line.rfind(')').ok_or_else(|| bad("no ')'"))? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11, stime index 12.
    let get = |i: usize| -> io::Result<u64> {
        fields.get(i).ok_or_else(|| bad("too few fields"))?.parse().map_err(|_| bad("non-numeric utime/stime"))
    };
    Ok(CpuTicks { utime: get(11)?, stime: get(12)? })
}

/// CPU ticks of process `pid`.
pub fn cpu_ticks(pid: u32) -> io::Result<CpuTicks> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// Clock ticks per second (`getconf CLK_TCK`; the kernel's USER_HZ, 100 on x86-64 when
/// `getconf` is missing).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Resident memory of a process in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: peak resident.
    pub hwm_kb: u64,
}

/// Parses `VmRSS` and `VmHWM` out of `/proc/PID/status` text.
pub fn parse_status(text: &str) -> io::Result<Memory> {
    let field = |name: &str| -> io::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc status: no {name}")))
    };
    Ok(Memory { rss_kb: field("VmRSS:")?, hwm_kb: field("VmHWM:")? })
}

/// Memory of process `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status"))?)
}

/// The soft limit on open files of this process (from `/proc/self/limits`).
pub fn open_files_limit() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/limits")?;
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no 'Max open files' in /proc/self/limits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let line = "1234 (we ird) (name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 1000 200";
        assert_eq!(parse_stat(line).unwrap(), CpuTicks { utime: 250, stime: 75 });
        assert!(parse_stat("1234 (x) S 1 2").is_err());
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status(text).unwrap(), Memory { rss_kb: 1024, hwm_kb: 2048 });
        assert!(parse_status("Name: x\n").is_err());
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let m = memory(pid).unwrap();
        assert!(m.rss_kb > 0 && m.hwm_kb >= m.rss_kb);
        cpu_ticks(pid).unwrap();
        assert!(open_files_limit().unwrap() > 0);
    }
}
