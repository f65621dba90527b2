//! The cgroups skiff's containers live in: `/skiff/pod<uid>/<container id>`
//! in every hierarchy (cgroup v1) or in the unified one (v2). runc makes and
//! removes each container's own group; the pod's parent is removed here
//! once the pod is gone.

use std::path::{Path, PathBuf};

use crate::stats::cgroup::Hierarchy;

const ROOT: &str = "/sys/fs/cgroup";

/// The directories of `/skiff/pod<uid>` in every mounted hierarchy.
fn pod_dirs(pod_uid: &str) -> Vec<PathBuf> {
    let rel = format!("skiff/pod{pod_uid}");
    let root = Path::new(ROOT);
    let mut dirs = vec![root.join(&rel)];
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        if p.join("skiff").is_dir() {
            dirs.push(p.join(&rel));
        }
    }
    dirs
}

/// Removes the pod's cgroup in every hierarchy (its containers' groups must
/// be gone already; runc removes those). Blocking; absent groups are fine.
pub fn remove_pod(pod_uid: &str) {
    for dir in pod_dirs(pod_uid) {
        // Leftover child groups (a container runc could not delete) first.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Gives back what is charged to the memory cgroup at `rel` (a container's
/// `/skiff/pod<uid>/<id>`, its processes ended) before it is removed. A
/// removed memory cgroup lives on, dying, with its kernel memory, for as
/// long as pages are charged to it, such as the image files its container
/// read first: a node piled them up with every pod that came and went
/// (`/proc/cgroups`: 200 more after each `skiff-bench pods` run of 100
/// pods; 9 to 14 with this). Blocking; best effort.
pub fn reclaim_memory(rel: &str) {
    let hierarchy = Hierarchy::detect();
    let dir = hierarchy.memory_dir(rel);
    match hierarchy {
        Hierarchy::V2(_) => {
            let charged = std::fs::read_to_string(dir.join("memory.current")).unwrap_or_default();
            if charged.trim().parse::<u64>().is_ok_and(|b| b > 0) {
                let _ = std::fs::write(dir.join("memory.reclaim"), charged.trim());
            }
        }
        Hierarchy::V1(_) => {
            let _ = std::fs::write(dir.join("memory.force_empty"), "0");
        }
    }
}

/// Limits of a pod's parent cgroup, as kubelet sets them: cpu shares from
/// the sum of requests, cpu quota and memory limit only when every
/// container has one (otherwise the pod may use what the node has).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodLimits {
    pub cpu_shares: u64,
    pub cpu_quota: Option<i64>,
    pub memory: Option<i64>,
}

impl PodLimits {
    pub fn for_pod(pod: &k8s_openapi::api::core::v1::Pod) -> PodLimits {
        let spec = pod.spec.clone().unwrap_or_default();
        let (mut shares, mut quota, mut memory) = (0u64, Some(0i64), Some(0i64));
        for c in &spec.containers {
            let r = super::bundle::resources(c);
            shares += r["cpu"]["shares"].as_u64().unwrap_or(2);
            quota = quota.zip(r["cpu"]["quota"].as_i64()).map(|(a, b)| a + b);
            memory = memory
                .zip(r["memory"]["limit"].as_i64())
                .map(|(a, b)| a + b);
        }
        // Init containers run one at a time: the pod needs the largest of them.
        for c in spec.init_containers.iter().flatten() {
            let r = super::bundle::resources(c);
            if let (Some(m), Some(l)) = (memory, r["memory"]["limit"].as_i64()) {
                memory = Some(m.max(l));
            }
        }
        PodLimits {
            cpu_shares: shares.max(2),
            cpu_quota: quota.filter(|q| *q > 0),
            memory: memory.filter(|m| *m > 0),
        }
    }
}

/// Makes the pod's parent cgroup with its limits before any container
/// starts in it. Blocking; a controller that is not mounted is skipped.
pub fn create_pod(pod_uid: &str, limits: &PodLimits) -> std::io::Result<()> {
    let root = Path::new(ROOT);
    let rel = format!("skiff/pod{pod_uid}");
    let write = |dir: &Path, file: &str, value: String| -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(file), value)
    };
    if root.join("cgroup.controllers").exists() {
        // cgroup v2: the controllers must be delegated down to the pod.
        for parent in [root.to_path_buf(), root.join("skiff")] {
            std::fs::create_dir_all(&parent)?;
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory +pids");
        }
        let dir = root.join(&rel);
        // v2's weight from v1's shares, as runc converts them.
        let weight = 1 + ((limits.cpu_shares.saturating_sub(2)) * 9999) / 262142;
        write(&dir, "cpu.weight", weight.to_string())?;
        let quota = limits
            .cpu_quota
            .map_or("max".to_string(), |q| q.to_string());
        write(&dir, "cpu.max", format!("{quota} 100000"))?;
        if let Some(m) = limits.memory {
            write(&dir, "memory.max", m.to_string())?;
        }
        return Ok(());
    }
    let v1 = |controller: &str| root.join(controller).join(&rel);
    if root.join("cpu").is_dir() {
        write(&v1("cpu"), "cpu.shares", limits.cpu_shares.to_string())?;
        write(&v1("cpu"), "cpu.cfs_period_us", "100000".into())?;
        write(
            &v1("cpu"),
            "cpu.cfs_quota_us",
            limits.cpu_quota.unwrap_or(-1).to_string(),
        )?;
    }
    if let (true, Some(m)) = (root.join("memory").is_dir(), limits.memory) {
        write(&v1("memory"), "memory.limit_in_bytes", m.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_limits_sum_containers_only_when_all_have_them() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [
                {"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}}},
            ], "initContainers": [{"name": "i", "resources": {"limits": {"memory": "128Mi"}}}]},
        }))
        .unwrap();
        let l = PodLimits::for_pod(&pod);
        assert_eq!(l.cpu_shares, 512 + 256);
        assert_eq!(l.cpu_quota, Some(75_000));
        assert_eq!(
            l.memory,
            Some(128 * 1024 * 1024),
            "the largest init container wins"
        );
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a", "resources": {"limits": {"memory": "64Mi"}}}, {"name": "b"}]},
        }))
        .unwrap();
        let l = PodLimits::for_pod(&pod);
        assert_eq!((l.cpu_quota, l.memory), (None, None));
    }
}
