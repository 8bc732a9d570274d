//! Process measurements: own CPU time (getrusage), another process's CPU time and
//! RSS (/proc/<pid>), and the open-files limit.

use std::time::Duration;

/// CPU time (user + system) of this process, all threads.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return Duration::ZERO;
        }
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resident set size of this process, in KiB.
pub fn own_rss_kib() -> Option<u64> {
    rss_kib_of("self")
}

/// One sample of a process: CPU time so far and resident memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu: Duration,
    pub rss_kib: u64,
}

fn rss_kib_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?; // field 14
    let stime: u64 = f.get(12)?.parse().ok()?; // field 15
                                               // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

/// Sample process `pid` (None if it is gone or unreadable).
pub fn sample(pid: u32) -> Option<ProcSample> {
    Some(ProcSample {
        cpu: cpu_of(pid)?,
        rss_kib: rss_kib_of(&pid.to_string())?,
    })
}

/// Sum of samples of several processes (several gateways); None if any is missing.
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = ProcSample::default();
    for &p in pids {
        let s = sample(p)?;
        total.cpu += s.cpu;
        total.rss_kib += s.rss_kib;
    }
    Some(total)
}

/// Raise the soft open-files limit to the hard limit; returns the soft limit now.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        rl.rlim_cur as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_self() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let s = sample(pid).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(own_rss_kib().unwrap() > 0);
        assert!(own_cpu() > Duration::ZERO);
        assert!(sample_all(&[pid, pid]).unwrap().rss_kib >= 2 * s.rss_kib / 2);
        assert!(sample(u32::MAX).is_none());
        assert!(raise_nofile() >= 256);
    }
}
