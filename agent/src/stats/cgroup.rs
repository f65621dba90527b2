//! Reading one cgroup's cpu and memory usage, as cadvisor reads them for
//! kubelet: cumulative cpu time (v1 `cpuacct.usage`, v2 `cpu.stat`
//! `usage_usec`) and memory usage, working set (usage less inactive file
//! pages), rss and page faults (v1 `memory.usage_in_bytes` and the
//! `total_*` lines of `memory.stat`; v2 `memory.current` and `memory.stat`).
//! The hierarchy is cgroup v2 when `/sys/fs/cgroup/cgroup.controllers`
//! exists, v1 otherwise. Reads are blocking and small.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the cgroup filesystem is mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// Above this a v1 memory limit means "no limit" (the kernel's
/// `PAGE_COUNTER_MAX` pages rounded, 9223372036854771712 on x86-64).
const UNLIMITED: u64 = 1 << 62;

/// Memory of one cgroup (or of the node), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The cgroup's limit, when it has one.
    pub limit: Option<u64>,
}

/// What a cgroup has used: either part may be missing (a controller not
/// mounted, a group already gone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative cpu time, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
}

/// The cgroup hierarchy of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One directory per controller under the root (`cpuacct`, `memory`).
    V1(PathBuf),
    /// The unified hierarchy at the root.
    V2(PathBuf),
}

impl Hierarchy {
    /// The hierarchy mounted at [`ROOT`].
    pub fn detect() -> Hierarchy {
        Self::at(Path::new(ROOT))
    }

    /// The hierarchy mounted at `root` (tests point it at a fake tree).
    pub fn at(root: &Path) -> Hierarchy {
        if root.join("cgroup.controllers").exists() {
            Hierarchy::V2(root.to_path_buf())
        } else {
            Hierarchy::V1(root.to_path_buf())
        }
    }

    /// The memory controller's directory of the cgroup at `rel`.
    pub fn memory_dir(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        match self {
            Hierarchy::V1(root) => root.join("memory").join(rel),
            Hierarchy::V2(root) => root.join(rel),
        }
    }

    /// Usage of the cgroup at `rel` (e.g. `/skiff/pod<uid>/<id>`).
    pub fn read(&self, rel: &str) -> Usage {
        let rel = rel.trim_start_matches('/');
        match self {
            Hierarchy::V1(root) => {
                let cpu = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
                    .iter()
                    .map(|c| root.join(c).join(rel))
                    .find(|d| d.is_dir());
                Usage {
                    cpu_ns: cpu.and_then(|d| read_u64(&d.join("cpuacct.usage"))),
                    memory: memory_v1(&self.memory_dir(rel)),
                }
            }
            Hierarchy::V2(root) => {
                let dir = root.join(rel);
                Usage {
                    cpu_ns: read(&dir.join("cpu.stat")).and_then(|t| cpu_stat_v2(&t)),
                    memory: memory_v2(&dir),
                }
            }
        }
    }

    /// Memory of the root cgroup, as cadvisor reports the node's on v1;
    /// `None` on v2 (its root has no `memory.current`: use /proc/meminfo).
    pub fn root_memory(&self) -> Option<Memory> {
        match self {
            Hierarchy::V1(root) => {
                memory_v1(&root.join("memory")).map(|m| Memory { limit: None, ..m })
            }
            Hierarchy::V2(_) => None,
        }
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat) as a map; bad lines are skipped.
pub fn flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// v2 `cpu.stat`'s `usage_usec`, in nanoseconds.
pub fn cpu_stat_v2(text: &str) -> Option<u64> {
    flat_keyed(text)
        .get("usage_usec")
        .map(|us| us.saturating_mul(1000))
}

/// Working set as cadvisor computes it: usage less inactive file pages, never below 0.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// A v1 limit (`memory.limit_in_bytes`) or v2 one (`memory.max`): `None` when unlimited.
pub fn limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|l| *l < UNLIMITED)
}

/// v1 memory from `memory.usage_in_bytes` and `memory.stat`'s hierarchical totals.
pub fn memory_v1_from(usage: &str, stat: &str, limit_text: Option<&str>) -> Option<Memory> {
    let usage: u64 = usage.trim().parse().ok()?;
    let stat = flat_keyed(stat);
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    Some(Memory {
        usage,
        working_set: working_set(usage, get("total_inactive_file")),
        rss: get("total_rss"),
        page_faults: get("total_pgfault"),
        major_page_faults: get("total_pgmajfault"),
        limit: limit_text.and_then(limit),
    })
}

/// v2 memory from `memory.current` and `memory.stat`.
pub fn memory_v2_from(current: &str, stat: &str, max: Option<&str>) -> Option<Memory> {
    let usage: u64 = current.trim().parse().ok()?;
    let stat = flat_keyed(stat);
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    Some(Memory {
        usage,
        working_set: working_set(usage, get("inactive_file")),
        rss: get("anon"),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
        limit: max.and_then(limit),
    })
}

fn memory_v1(dir: &Path) -> Option<Memory> {
    let usage = read(&dir.join("memory.usage_in_bytes"))?;
    let stat = read(&dir.join("memory.stat")).unwrap_or_default();
    let limit = read(&dir.join("memory.limit_in_bytes"));
    memory_v1_from(&usage, &stat, limit.as_deref())
}

fn memory_v2(dir: &Path) -> Option<Memory> {
    let current = read(&dir.join("memory.current"))?;
    let stat = read(&dir.join("memory.stat")).unwrap_or_default();
    let max = read(&dir.join("memory.max"));
    memory_v2_from(&current, &stat, max.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_STAT: &str = "cache 9273344\nrss 3485696\ntotal_cache 23302144\ntotal_rss 6619136\n\
        total_pgfault 945712002\ntotal_pgmajfault 403623\ntotal_inactive_file 5099520\n\
        total_active_file 135168\n";

    #[test]
    fn v1_memory_uses_hierarchical_totals() {
        let m = memory_v1_from("30000000\n", V1_STAT, Some("9223372036854771712\n")).unwrap();
        assert_eq!(
            m,
            Memory {
                usage: 30_000_000,
                working_set: 30_000_000 - 5_099_520,
                rss: 6_619_136,
                page_faults: 945_712_002,
                major_page_faults: 403_623,
                limit: None,
            }
        );
        let m = memory_v1_from("100", V1_STAT, Some("67108864")).unwrap();
        assert_eq!(m.working_set, 0, "never below zero");
        assert_eq!(m.limit, Some(64 << 20));
        assert_eq!(memory_v1_from("garbage", V1_STAT, None), None);
    }

    #[test]
    fn v2_memory_and_cpu() {
        let stat = "anon 1048576\nfile 4096000\ninactive_file 2048000\npgfault 12\npgmajfault 1\n";
        let m = memory_v2_from("8192000", stat, Some("max\n")).unwrap();
        assert_eq!(
            (m.usage, m.working_set, m.rss, m.page_faults, m.limit),
            (8_192_000, 6_144_000, 1_048_576, 12, None)
        );
        assert_eq!(
            memory_v2_from("1", "", Some("33554432")).unwrap().limit,
            Some(32 << 20)
        );
        let cpu = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n";
        assert_eq!(cpu_stat_v2(cpu), Some(2_500_000_000));
        assert_eq!(cpu_stat_v2("user_usec 1\n"), None);
    }

    #[test]
    fn reads_fake_trees_of_both_versions() {
        let dir = std::env::temp_dir().join(format!("skiff-cgroup-{}", std::process::id()));
        // v1: one directory per controller.
        let v1 = dir.join("v1");
        let acct = v1.join("cpuacct/skiff/podu/c1");
        let mem = v1.join("memory/skiff/podu/c1");
        std::fs::create_dir_all(&acct).unwrap();
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(acct.join("cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "4096000\n").unwrap();
        std::fs::write(mem.join("memory.stat"), "total_inactive_file 96000\n").unwrap();
        let h = Hierarchy::at(&v1);
        assert!(matches!(h, Hierarchy::V1(_)));
        let u = h.read("/skiff/podu/c1");
        assert_eq!(u.cpu_ns, Some(123_456_789));
        assert_eq!(u.memory.unwrap().working_set, 4_000_000);
        assert_eq!(h.read("/skiff/podu/gone"), Usage::default());
        // v2: one unified tree.
        let v2 = dir.join("v2");
        let c = v2.join("skiff/podu/c1");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(v2.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::write(c.join("cpu.stat"), "usage_usec 42\n").unwrap();
        std::fs::write(c.join("memory.current"), "1000\n").unwrap();
        std::fs::write(c.join("memory.stat"), "inactive_file 10\nanon 500\n").unwrap();
        let h = Hierarchy::at(&v2);
        assert!(matches!(h, Hierarchy::V2(_)));
        let u = h.read("skiff/podu/c1");
        assert_eq!(u.cpu_ns, Some(42_000));
        assert_eq!(u.memory.unwrap().working_set, 990);
        assert_eq!(h.root_memory(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
