//! Removing everything a node left behind once its agent is gone (a lab
//! node torn down): its containers (their shims exit with them), the mounts
//! under its data dir (sandbox namespaces, root filesystems, volumes) and
//! its pods' cgroups. Blocking.

use std::path::Path;
use std::process::Command;

use super::cgroups;

pub fn remove_node_state(data_dir: &Path) {
    let root = data_dir.join("agent").join("runc");
    let root = root.to_string_lossy();
    let listed = Command::new("runc")
        .args(["--root", &root, "list", "-q"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for id in listed.lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("runc")
            .args(["--root", &root, "kill", id, "KILL"])
            .output();
        let _ = Command::new("runc")
            .args(["--root", &root, "delete", "--force", id])
            .output();
    }
    let prefix = data_dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    // Innermost first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).output();
    }
    for pod in std::fs::read_dir(data_dir.join("agent").join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        cgroups::remove_pod(&pod.file_name().to_string_lossy());
    }
}
