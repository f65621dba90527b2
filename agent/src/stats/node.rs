//! The node's own totals, as kubelet's summary reports them: cpu time from
//! `/proc/stat` (every busy tick of every cpu), memory from the root cgroup
//! on cgroup v1 (cadvisor's "/" container) or from `/proc/meminfo` on v2
//! (usage = total − free, working set = usage − inactive file pages, as
//! runc reads the v2 root), available = capacity − working set; and the
//! filesystem the agent keeps its data on (`statvfs`). Blocking reads.

use super::cgroup::{self, Hierarchy, Memory};
use std::path::Path;

/// The node's memory: usage as a cgroup's, plus what is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeMemory {
    pub memory: Memory,
    /// Capacity less working set.
    pub available: u64,
}

/// What `/proc/meminfo` says, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub inactive_file: u64,
    pub anon: u64,
}

/// A filesystem's size and use (`statvfs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fs {
    pub capacity: u64,
    pub available: u64,
    pub used: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// Busy cpu time of all cpus, in nanoseconds, from `/proc/stat`'s `cpu`
/// line (user, nice, system, irq, softirq, steal; idle and iowait are not
/// busy; guest time is already inside user). `ticks_per_second` is USER_HZ.
pub fn proc_stat_cpu_ns(text: &str, ticks_per_second: u64) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let hz = ticks_per_second.max(1);
    Some((busy as u128 * 1_000_000_000 / hz as u128) as u64)
}

/// Boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn proc_stat_boot(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/meminfo`'s lines we need (values in kB there).
pub fn meminfo(text: &str) -> MemInfo {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    MemInfo {
        total: get("MemTotal"),
        free: get("MemFree"),
        inactive_file: get("Inactive(file)"),
        anon: get("AnonPages"),
    }
}

/// The node's memory from the root cgroup when there is one (v1), else
/// from meminfo.
pub fn memory(root: Option<Memory>, info: &MemInfo) -> NodeMemory {
    let memory = root.unwrap_or_else(|| {
        let usage = info.total.saturating_sub(info.free);
        Memory {
            usage,
            working_set: cgroup::working_set(usage, info.inactive_file),
            rss: info.anon,
            ..Memory::default()
        }
    });
    NodeMemory {
        available: info.total.saturating_sub(memory.working_set),
        memory,
    }
}

/// Clock ticks per second of `/proc/stat` (USER_HZ).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The node's cpu time (ns), boot time and memory, read now.
pub fn read(hierarchy: &Hierarchy) -> (Option<u64>, Option<i64>, Option<NodeMemory>) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = proc_stat_cpu_ns(&stat, ticks_per_second());
    let boot = proc_stat_boot(&stat);
    let info = std::fs::read_to_string("/proc/meminfo")
        .map(|t| meminfo(&t))
        .ok();
    let mem = info.map(|i| memory(hierarchy.root_memory(), &i));
    (cpu, boot, mem)
}

/// `statvfs` of the filesystem holding `path`.
pub fn fs(path: &Path) -> Option<Fs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `s` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    let capacity = s.f_blocks as u64 * frsize;
    Some(Fs {
        capacity,
        available: s.f_bavail as u64 * frsize,
        used: capacity.saturating_sub(s.f_bfree as u64 * frsize),
        inodes: s.f_files as u64,
        inodes_free: s.f_ffree as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_ticks() {
        let text = "cpu  3504088 4018 459631 3710031 50200 0 12329 2969 0 0\n\
                    cpu0 1689551 1464 214019 1948102 13156 0 3581 1476 0 0\n\
                    btime 1732233600\n";
        let busy = 3504088 + 4018 + 459631 + 12329 + 2969;
        assert_eq!(proc_stat_cpu_ns(text, 100), Some(busy as u64 * 10_000_000));
        assert_eq!(proc_stat_boot(text), Some(1_732_233_600));
        assert_eq!(proc_stat_cpu_ns("intr 1\n", 100), None);
    }

    #[test]
    fn meminfo_and_node_memory() {
        let text = "MemTotal:       24683656 kB\nMemFree:        23863988 kB\n\
                    MemAvailable:   24109500 kB\nInactive(file):   121520 kB\nAnonPages:  6672 kB\n";
        let info = meminfo(text);
        assert_eq!(info.total, 24683656 * 1024);
        assert_eq!(info.inactive_file, 121520 * 1024);
        let m = memory(None, &info);
        let usage = (24683656 - 23863988) * 1024;
        assert_eq!(m.memory.usage, usage);
        assert_eq!(m.memory.working_set, usage - 121520 * 1024);
        assert_eq!(m.memory.rss, 6672 * 1024);
        assert_eq!(m.available, info.total - m.memory.working_set);
        // On v1 the root cgroup's figures win.
        let root = Memory {
            usage: 1000,
            working_set: 600,
            ..Memory::default()
        };
        let m = memory(Some(root), &info);
        assert_eq!((m.memory.usage, m.available), (1000, info.total - 600));
    }

    #[test]
    fn statvfs_of_a_real_path() {
        let fs = fs(Path::new("/")).unwrap();
        assert!(fs.capacity > 0 && fs.capacity >= fs.available);
        assert!(super::fs(Path::new("/no/such/path")).is_none());
    }
}
