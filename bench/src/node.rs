//! A real node's surroundings for the benchmarks that run one: its network
//! namespace joined to the host by a veth pair on a /30, and the cleanup of
//! what its agent left (containers, mounts, cgroups).

use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

pub fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The node's namespace and veth; removed (with all it holds) on drop.
pub struct NodeNet {
    netns: String,
    host_end: String,
}

impl NodeNet {
    /// Namespace `netns`, its end of the veth `<veth>n` at `node_ip`, the
    /// host's `<veth>h` at `host_ip`.
    pub fn create(netns: &str, veth: &str, host_ip: &str, node_ip: &str) -> Result<NodeNet> {
        let (host_end, node_end) = (format!("{veth}h"), format!("{veth}n"));
        // What an earlier run left (a namespace's veth can outlive its
        // `ip netns del` for a while: the kernel dismantles it later).
        let _ = sh(&["ip", "link", "del", &host_end]);
        let _ = sh(&["ip", "netns", "del", netns]);
        sh(&["ip", "netns", "add", netns])?;
        let net = NodeNet {
            netns: netns.to_string(),
            host_end: host_end.clone(),
        };
        sh(&[
            "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
        ])?;
        sh(&["ip", "link", "set", &node_end, "netns", netns])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_end,
        ])?;
        sh(&["ip", "link", "set", &host_end, "up"])?;
        let node_addr = format!("{node_ip}/30");
        for args in [
            ["ip", "addr", "add", node_addr.as_str(), "dev", &node_end].as_slice(),
            &["ip", "link", "set", &node_end, "up"],
            &["ip", "link", "set", "lo", "up"],
        ] {
            let mut a = vec!["ip", "netns", "exec", netns];
            a.extend_from_slice(args);
            sh(&a)?;
        }
        Ok(net)
    }
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        // Deleting one end removes the pair now, not when the namespace's
        // cleanup gets to it, so the next run can make it again.
        let _ = sh(&["ip", "link", "del", &self.host_end]);
        let _ = sh(&["ip", "netns", "del", &self.netns]);
    }
}

/// Removes what the node with data dir `dir` left: containers, mounts, pod cgroups.
pub fn clean_node(dir: &Path) {
    skiff_agent::runtime::teardown::remove_node_state(dir);
}
