//! What this machine says about itself as a Node: its name and address, cpu
//! and memory from the kernel, disk from the data dir's filesystem, kernel
//! and OS names, the runtime's version.

use super::Options;
use crate::node::{NodeInfo, KUBELET_VERSION};
use crate::runtime::{sys, Runtime};
use serde_json::json;

/// The node's facts, read from the machine.
pub async fn detect(opts: &Options, runtime: &Runtime) -> anyhow::Result<NodeInfo> {
    let internal_ip = match &opts.node_ip {
        Some(ip) => ip.clone(),
        None => node_ip().await.ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell this node's address: no global IPv4 address; pass --node-ip"
            )
        })?,
    };
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut labels = serde_json::Map::new();
    for (k, v) in &opts.labels {
        labels.insert(k.clone(), json!(v));
    }
    Ok(NodeInfo {
        name: opts.node_name.clone(),
        internal_ip,
        cpu: cpu.to_string(),
        memory: format!("{mem_kib}Ki"),
        pods: 110,
        ephemeral_storage: format!("{}Ki", disk_kib(&opts.data_dir)),
        labels,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        os_image: os_image(),
        container_runtime: runtime.version().await,
        kubelet_version: KUBELET_VERSION.into(),
        reserved_cpu_millis: opts.reserved_cpu_millis,
        reserved_memory: opts.reserved_memory,
        images: Vec::new(),
        pressure: Default::default(),
        kubelet_port: opts.kubelet_port,
    })
}

/// Pressure as kubelet's default hard eviction thresholds see it:
/// memory.available < 100Mi, nodefs.available < 10%; PIDs when fewer than
/// 10% of pid_max are free.
pub fn pressure(data_dir: &std::path::Path) -> crate::node::Pressure {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    let memory = available_kib.is_some_and(|kib| kib < 100 * 1024);
    let disk = disk_free_fraction(data_dir).is_some_and(|f| f < 0.10);
    let pid_max: u64 = read_trimmed("/proc/sys/kernel/pid_max")
        .parse()
        .unwrap_or(0);
    let threads: u64 = read_trimmed("/proc/loadavg")
        .split_whitespace()
        .nth(3)
        .and_then(|rt| rt.split('/').nth(1)?.parse().ok())
        .unwrap_or(0);
    let pid = pid_max > 0 && pid_max.saturating_sub(threads) < pid_max / 10;
    crate::node::Pressure { memory, disk, pid }
}

fn disk_free_fraction(dir: &std::path::Path) -> Option<f64> {
    sys::statvfs(dir).map(|st| st.f_bavail as f64 / st.f_blocks as f64)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// Size of the filesystem holding `dir`, in KiB.
fn disk_kib(dir: &std::path::Path) -> u64 {
    let _ = std::fs::create_dir_all(dir);
    sys::statvfs(dir).map_or(0, |st| st.f_blocks * st.f_frsize / 1024)
}

/// The address of the interface the default route leaves by, else the first
/// global IPv4 address (an isolated lab node has no default route).
pub async fn node_ip() -> Option<String> {
    let run = |args: &'static [&'static str]| async move {
        let out = tokio::process::Command::new("ip")
            .args(args)
            .output()
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let routes = run(&["-4", "route", "show", "default"])
        .await
        .unwrap_or_default();
    let dev = routes
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .map(str::to_string);
    let addrs = run(&["-4", "-o", "addr", "show", "scope", "global"]).await?;
    let mut first = None;
    for line in addrs.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(ifname), Some(addr)) = (
            words.get(1),
            words.iter().skip_while(|w| **w != "inet").nth(1),
        ) else {
            continue;
        };
        let ip = addr.split('/').next().unwrap_or("").to_string();
        if dev.as_deref() == Some(*ifname) {
            return Some(ip);
        }
        if ifname.starts_with("skiff") || ifname.starts_with("veth") {
            continue;
        }
        first.get_or_insert(ip);
    }
    first
}
