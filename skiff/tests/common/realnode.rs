//! A real node for tests: its own network namespace joined to the host by a
//! veth pair on a private /30, a `skiff server` listening on the host end, a
//! real `skiff agent` (runc, CNI) inside the namespace with the busybox test
//! image imported. Dropping it kills what it started (by pid), removes the
//! containers, mounts and cgroups the agent made, and deletes the namespace
//! (and with it the pod bridge, routes and iptables rules).

use super::{Server, Spawned};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why this machine cannot run a real node, if it cannot.
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root".into());
    }
    for (bin, pkg) in [
        ("runc", "runc"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("iptables", "iptables"),
        ("nft", "nftables"),
    ] {
        if Command::new(bin).arg("--version").output().is_err() {
            return Some(format!("needs {bin} (Debian package {pkg})"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() && !Path::new("/opt/cni/bin/bridge").exists() {
        return Some("needs the CNI plugins (Debian package containernetworking-plugins)".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("needs /bin/busybox (Debian package busybox-static)".into());
    }
    None
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run a command")
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to the host by a veth pair on a private /30
/// (the host end `host_ip`, the namespace's `node_ip`), with a link-scoped
/// default route; deleted when dropped.
pub struct NodeNet {
    pub netns: String,
    pub host_ip: String,
    pub node_ip: String,
}

impl NodeNet {
    /// A new namespace and its veth pair.
    pub fn create() -> NodeNet {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = (std::process::id() % 200) as u8;
        let netns = format!("skiff-t{}-{n}", std::process::id());
        // 172.29.<pid>.<4n>/30: a private range no host route uses.
        let base = 4 * (n % 60);
        let (host_ip, node_ip) = (
            format!("172.29.{tag}.{}", base + 1),
            format!("172.29.{tag}.{}", base + 2),
        );
        let veth = format!("sk{}x{n}", std::process::id() % 100000);
        must(&["ip", "netns", "add", &netns]);
        let cleanup_on_panic = NetnsGuard(netns.clone());
        must(&[
            "ip",
            "link",
            "add",
            &format!("{veth}h"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("{veth}n"),
        ]);
        must(&["ip", "link", "set", &format!("{veth}n"), "netns", &netns]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &format!("{veth}h"),
        ]);
        must(&["ip", "link", "set", &format!("{veth}h"), "up"]);
        let inside = |args: &[&str]| {
            let mut a = vec!["ip", "netns", "exec", &netns];
            a.extend_from_slice(args);
            must(&a);
        };
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{node_ip}/30"),
            "dev",
            &format!("{veth}n"),
        ]);
        inside(&["ip", "link", "set", &format!("{veth}n"), "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        // A default route, as a real machine has (the proxy's REJECT for a
        // Service without endpoints sits after routing). Link-scoped onto
        // the veth: the host answers ARP for its own address only, so
        // nothing sent to any other address leaves the namespace.
        inside(&["ip", "route", "add", "default", "dev", &format!("{veth}n")]);
        std::mem::forget(cleanup_on_panic);
        NodeNet {
            netns,
            host_ip,
            node_ip,
        }
    }

    /// A command inside the namespace (network only: mounts stay shared).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg(program);
        cmd
    }
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.netns]);
    }
}

pub struct RealNode {
    pub server: Server,
    pub netns: String,
    pub host_ip: String,
    pub node_ip: String,
    pub name: String,
    pub data_dir: tempfile::TempDir,
    /// Flags every start of the agent gets besides the usual ones.
    agent_flags: Vec<String>,
    agent: Option<Spawned>,
    /// Last: the namespace goes after the node's state is cleaned up.
    _net: NodeNet,
}

impl RealNode {
    /// A server and one real node named `name`.
    pub fn start(name: &str) -> RealNode {
        Self::start_with(name, &[])
    }

    /// As [`start`](Self::start), the agent with `agent_flags` too.
    pub fn start_with(name: &str, agent_flags: &[&str]) -> RealNode {
        let net = NodeNet::create();
        let server = Server::start_on(&net.host_ip, None, &[]);
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut node = RealNode {
            server,
            netns: net.netns.clone(),
            host_ip: net.host_ip.clone(),
            node_ip: net.node_ip.clone(),
            name: name.to_string(),
            data_dir,
            agent_flags: agent_flags.iter().map(|f| f.to_string()).collect(),
            agent: None,
            _net: net,
        };
        node.import_busybox();
        node.start_agent();
        node
    }

    pub fn skiff() -> &'static str {
        env!("CARGO_BIN_EXE_skiff")
    }

    /// Builds the busybox test image (scripts/busybox-image) and imports it.
    fn import_busybox(&self) {
        let tar = self.data_dir.path().join("busybox.tar");
        busybox_image(&tar);
        let out = Command::new(Self::skiff())
            .args(["images", "import", "--data-dir"])
            .arg(self.data_dir.path())
            .arg(&tar)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.path().join("logs")
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn runc_root(&self) -> PathBuf {
        self.data_dir.path().join("agent/runc")
    }

    /// `skiff agent` inside the node's namespace (network only: the host's
    /// mounts stay shared, so a restarted agent sees what the last one made).
    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(Self::skiff())
            .args(["agent", "--node-name", &self.name, "--kubeconfig"])
            .arg(self.server.kubeconfig())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--pod-log-dir")
            .arg(self.log_dir())
            .args(&self.agent_flags)
            .env("SKIFF_LOG", "info,skiff_agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        self.agent = Some(Spawned(child));
    }

    /// SIGKILL of the agent, as a crash would; its containers live on.
    pub fn kill_agent(&mut self) {
        self.agent = None;
    }

    /// A command inside the node's network namespace.
    pub fn on_node(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .args(args);
        cmd.output().expect("nsenter")
    }

    /// The ids of the containers runc knows for this node.
    pub fn runc_containers(&self) -> Vec<String> {
        runc_containers(self.data_dir.path())
    }

    /// Mounts the agent made that are still there.
    pub fn leftover_mounts(&self) -> Vec<String> {
        leftover_mounts(self.data_dir.path())
    }
}

/// curl arguments with the client certificate of `kubeconfig`, written as
/// `<name>.crt` and `<name>.key` in the node's data dir.
pub fn client_cert(node: &RealNode, kubeconfig: &Path, name: &str) -> [String; 4] {
    use std::io::Write;
    let kc = std::fs::read_to_string(kubeconfig).unwrap();
    let field = |key: &str| -> Vec<u8> {
        let line = kc
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        let b64 = line.split_once(':').unwrap().1.trim().to_string();
        let mut child = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b64.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let (cert, key) = (
        node.data_dir.path().join(format!("{name}.crt")),
        node.data_dir.path().join(format!("{name}.key")),
    );
    std::fs::write(&cert, field("client-certificate-data")).unwrap();
    std::fs::write(&key, field("client-key-data")).unwrap();
    [
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ]
}

/// Builds the busybox test image into `tar` (scripts/busybox-image).
pub fn busybox_image(tar: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let out = Command::new(script)
        .arg(tar)
        .output()
        .expect("scripts/busybox-image");
    assert!(
        out.status.success(),
        "busybox-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ids of the containers runc knows for the node with `data_dir`.
pub fn runc_containers(data_dir: &Path) -> Vec<String> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(data_dir.join("agent/runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Mounts under `data_dir` still there.
pub fn leftover_mounts(data_dir: &Path) -> Vec<String> {
    let dir = data_dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// Deletes the namespace if setting it up fails half-way.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.agent = None;
        clean_node_state(self.data_dir.path());
    }
}

/// Removes what a node with data dir `data_dir` left (once its processes
/// are gone): containers first (their shims exit with them), then mounts
/// and empty pod cgroups.
pub fn clean_node_state(data_dir: &Path) {
    skiff_agent::runtime::teardown::remove_node_state(data_dir);
}

/// Pod helpers the real-node tests share.
pub mod pods {
    use super::RealNode;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::Api;
    use std::time::{Duration, Instant};

    /// The pod's phase ("" before it has one).
    pub fn phase(p: &Pod) -> &str {
        p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("")
    }

    /// Why the pod's first container is waiting ("" if it is not).
    pub fn waiting_reason(p: &Pod) -> String {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_default()
    }

    /// Polls the pod until `check` holds; fails the test after `secs` with its status.
    pub async fn wait_pod(
        pods: &Api<Pod>,
        name: &str,
        secs: u64,
        what: &str,
        check: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(p) = pods.get_opt(name).await.unwrap() {
                if check(&p) {
                    return p;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{name}: timed out waiting for {what}; status: {}",
                        serde_json::to_string_pretty(&p.status).unwrap()
                    );
                }
            } else if Instant::now() > deadline {
                panic!("{name}: gone (or never there) while waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client once the node has registered with a pod CIDR and the
    /// default service account exists (pods need both).
    pub async fn ready_node(node: &RealNode) -> kube::Client {
        let client = node.server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        crate::common::eventually("the node with a pod CIDR", 30, async || {
            nodes
                .get_opt(&node.name)
                .await
                .unwrap()
                .and_then(|n| n.spec.and_then(|s| s.pod_cidr))
                .is_some()
        })
        .await;
        crate::common::default_service_account(&client).await;
        client
    }
}
