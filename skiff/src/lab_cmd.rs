//! `skiff lab`: a multi-node cluster on one machine. The server listens on
//! a bridge of the lab's own (`skl-<name>`, 172.31.<n>.1/24); every node is
//! a network namespace on that bridge with its own address, iptables and pod
//! bridge, running `skiff agent` joined with the server's token. Nodes have
//! a link-scoped default route and no gateway: nothing they send leaves the
//! machine. Processes run detached; their pids and the layout are kept in
//! `<state-dir>/<name>/lab.json` for `lab down` and `lab node stop|start`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(clap::Subcommand)]
enum LabCommand {
    /// Start a lab: a server and N nodes, each in its own network namespace.
    Up(UpArgs),
    /// Stop a lab and remove all it made: processes, containers, mounts,
    /// cgroups, namespaces, the bridge, its state.
    Down(Which),
    /// Cut one node off as if the machine died (agent and containers
    /// stopped, link down), or bring it back.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
}

#[derive(clap::Args, Clone)]
struct Which {
    /// The lab's name (lowercase letters and digits, at most 8).
    #[arg(long, default_value = "lab")]
    name: String,
    /// Where labs keep their state.
    #[arg(long, default_value = "/var/lib/skiff-lab")]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
struct UpArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[command(flatten)]
    which: Which,
    /// Also write the admin kubeconfig here (it is merged into yours as
    /// context `skiff-lab` in any case).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Image tarballs every node imports (e.g. scripts/busybox-image's).
    #[arg(long, num_args = 1..)]
    images: Vec<PathBuf>,
}

#[derive(clap::Subcommand)]
enum NodeAction {
    Stop {
        /// The node, e.g. node-2.
        node: String,
        #[command(flatten)]
        which: Which,
    },
    Start {
        node: String,
        #[command(flatten)]
        which: Which,
    },
}

/// What `lab.json` keeps.
#[derive(Serialize, Deserialize)]
struct Lab {
    name: String,
    bridge: String,
    subnet: u8,
    /// The API server's port: 6443 unless something on the host holds it
    /// for every address (a `skiff up` on 0.0.0.0, say).
    #[serde(default = "default_port")]
    port: u16,
    server_pid: u32,
    nodes: Vec<LabNode>,
}

fn default_port() -> u16 {
    6443
}

/// 6443 if it can be bound on the lab's address, otherwise a free port.
fn free_port(ip: &str) -> Result<u16> {
    let ip: std::net::IpAddr = ip.parse()?;
    if std::net::TcpListener::bind((ip, 6443)).is_ok() {
        return Ok(6443);
    }
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

#[derive(Serialize, Deserialize)]
struct LabNode {
    name: String,
    netns: String,
    veth: String,
    ip: String,
    pid: u32,
}

impl Which {
    fn dir(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }

    fn check(&self) -> Result<()> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 8
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            bail!(
                "--name {:?}: lowercase letters and digits, at most 8",
                self.name
            );
        }
        Ok(())
    }

    fn load(&self) -> Result<Lab> {
        let path = self.dir().join("lab.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no lab {:?} ({} missing)", self.name, path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    fn save(&self, lab: &Lab) -> Result<()> {
        std::fs::write(self.dir().join("lab.json"), serde_json::to_vec_pretty(lab)?)?;
        Ok(())
    }
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn progress(started: Instant, what: &str) {
    eprintln!(
        "skiff lab: {what} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// The lab's /24 (172.31.<n>.0): from its name, or the next one no
/// interface of this machine is on, so two labs never share a subnet.
fn subnet_of(name: &str) -> Result<u8> {
    let h = name
        .bytes()
        .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let out = Command::new("ip").args(["-o", "-4", "addr", "show"]).output()?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..250)
        .map(|i| ((h + i) % 250 + 1) as u8)
        .find(|n| !used.contains(&format!(" 172.31.{n}.")))
        .context("every 172.31.<n>.0/24 is in use on this machine")
}

/// Our own process with this pid, still running: its command line names
/// the lab's state dir.
fn ours(pid: u32, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
        .unwrap_or(false)
}

fn kill(pid: u32, dir: &Path) {
    if pid != 0 && ours(pid, dir) {
        // SAFETY: kill(2) on a pid we started and checked is still ours.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        for _ in 0..100 {
            if !ours(pid, dir) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The last `lines` lines of a log, for an error that has to explain itself
/// once the lab's directory is gone.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `program` detached (its own process group, output to `log`).
fn spawn_detached(cmd: &mut Command, log: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

pub async fn run(a: LabArgs) -> Result<()> {
    match a.command {
        LabCommand::Up(u) => up(u).await,
        LabCommand::Down(w) => down(&w),
        LabCommand::Node { action } => match action {
            NodeAction::Stop { node, which } => node_stop(&which, &node),
            NodeAction::Start { node, which } => node_start(&which, &node),
        },
    }
}

fn agent_command(lab: &Lab, node: &LabNode, dir: &Path, token: &str) -> Command {
    let node_dir = dir.join(&node.name);
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", node.netns))
        .arg(std::env::current_exe().unwrap_or_else(|_| "skiff".into()))
        .args(["agent", "--node-name", &node.name, "--token", token])
        .arg("--server")
        .arg(format!("https://172.31.{}.1:{}", lab.subnet, lab.port))
        .arg("--data-dir")
        .arg(&node_dir)
        .arg("--pod-log-dir")
        .arg(node_dir.join("logs"))
        .env_remove("KUBECONFIG")
        .env(
            "SKIFF_LOG",
            std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
        );
    cmd
}

async fn up(a: UpArgs) -> Result<()> {
    let started = Instant::now();
    a.which.check()?;
    if a.nodes == 0 || a.nodes > 50 {
        bail!("--nodes: 1 to 50");
    }
    let dir = a.which.dir();
    if dir.join("lab.json").exists() {
        bail!(
            "lab {:?} is up already (skiff lab down --name {0})",
            a.which.name
        );
    }
    std::fs::create_dir_all(&dir)?;
    let name = &a.which.name;
    let subnet = subnet_of(name)?;
    let bridge = format!("skl-{name}");
    let server_ip = format!("172.31.{subnet}.1");
    let mut lab = Lab {
        name: name.clone(),
        bridge: bridge.clone(),
        subnet,
        port: 6443,
        server_pid: 0,
        nodes: Vec::new(),
    };
    a.which.save(&lab)?;
    let made = async {
        sh(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{server_ip}/24"),
            "dev",
            &bridge,
        ])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        lab.port = free_port(&server_ip)?;
        let server_dir = dir.join("server");
        let exe = std::env::current_exe()?;
        lab.server_pid = spawn_detached(
            Command::new(&exe)
                .args(["server", "--bind-address", &server_ip])
                .args(["--https-listen-port", &lab.port.to_string()])
                .arg("--data-dir")
                .arg(&server_dir)
                // Its own metrics ports: another server may be on the host.
                .args([
                    "--scheduler-metrics-address",
                    "",
                    "--controller-metrics-address",
                    "",
                ])
                .env(
                    "SKIFF_LOG",
                    std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
                ),
            &dir.join("server.log"),
        )?;
        a.which.save(&lab)?;
        let token_file = server_dir.join("server").join("node-token");
        let admin = server_dir.join("kubeconfig.yaml");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(token_file.exists() && admin.exists()) {
            if Instant::now() > deadline || !ours(lab.server_pid, &dir) {
                let log = dir.join("server.log");
                bail!(
                    "the lab's server did not start: see {}\n{}",
                    log.display(),
                    log_tail(&log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        progress(started, &format!("server on https://{server_ip}:{}", lab.port));
        let token = std::fs::read_to_string(&token_file)?.trim().to_string();
        for i in 1..=a.nodes {
            let node = LabNode {
                name: format!("node-{i}"),
                netns: format!("skl-{name}-{i}"),
                veth: format!("skl{name}{i}"),
                ip: format!("172.31.{subnet}.{}", 10 + i),
                pid: 0,
            };
            sh(&["ip", "netns", "add", &node.netns])?;
            sh(&[
                "ip",
                "link",
                "add",
                &node.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ])?;
            sh(&["ip", "link", "set", &node.veth, "master", &bridge, "up"])?;
            let inside = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", &node.netns];
                v.extend_from_slice(args);
                sh(&v)
            };
            inside(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", node.ip),
                "dev",
                "eth0",
            ])?;
            inside(&["ip", "link", "set", "eth0", "up"])?;
            inside(&["ip", "link", "set", "lo", "up"])?;
            // No gateway: addresses off the bridge are not reachable.
            inside(&["ip", "route", "add", "default", "dev", "eth0"])?;
            let node_dir = dir.join(&node.name);
            let images = node_dir.join("agent").join("images");
            std::fs::create_dir_all(&images)?;
            for tar in &a.images {
                let file = tar.file_name().context("--images: a file")?;
                std::fs::copy(tar, images.join(file))
                    .with_context(|| format!("--images {}", tar.display()))?;
            }
            lab.nodes.push(node);
            let pid = spawn_detached(
                &mut agent_command(&lab, &lab.nodes[i - 1], &dir, &token),
                &node_dir.join("agent.log"),
            )?;
            lab.nodes[i - 1].pid = pid;
            a.which.save(&lab)?;
        }
        progress(started, &format!("{} agents started", a.nodes));
        let client = crate::component_client(&admin).await?;
        wait_ready(&client, a.nodes, started, &dir).await?;
        if let Some(path) = &a.write_kubeconfig {
            std::fs::copy(&admin, path)?;
        }
        if let Some(path) = crate::up_cmd::default_kubeconfig() {
            crate::up_cmd::merge_kubeconfig_as(&admin, &path, "skiff-lab")?;
            progress(started, &format!("context skiff-lab in {}", path.display()));
        }
        eprintln!(
            "skiff lab: {name} is up; kubeconfig {}; skiff lab down --name {name} removes it",
            admin.display()
        );
        anyhow::Ok(())
    };
    let r = made.await;
    if r.is_err() {
        let _ = down(&a.which);
    }
    r
}

async fn wait_ready(client: &kube::Client, n: usize, started: Instant, dir: &Path) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready_seen = std::collections::BTreeSet::new();
    loop {
        for node in nodes.list(&Default::default()).await?.items {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let name = node.metadata.name.unwrap_or_default();
            if ready && ready_seen.insert(name.clone()) {
                progress(started, &format!("{name} Ready"));
            }
        }
        if ready_seen.len() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not every node Ready in 120 s: see the agent logs under {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn down(w: &Which) -> Result<()> {
    w.check()?;
    let dir = w.dir();
    let lab = w.load()?;
    for node in &lab.nodes {
        kill(node.pid, &dir);
        skiff_agent::runtime::teardown::remove_node_state(&dir.join(&node.name));
        let _ = sh(&["ip", "netns", "del", &node.netns]);
        let _ = sh(&["ip", "link", "del", &node.veth]);
    }
    kill(lab.server_pid, &dir);
    let _ = sh(&["ip", "link", "del", &lab.bridge]);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    eprintln!("skiff lab: {} is down", lab.name);
    Ok(())
}

fn node_stop(w: &Which, name: &str) -> Result<()> {
    let dir = w.dir();
    let mut lab = w.load()?;
    let node = lab
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .with_context(|| format!("lab {} has no node {name}", w.name))?;
    kill(node.pid, &dir);
    node.pid = 0;
    skiff_agent::runtime::teardown::remove_node_state(&dir.join(&node.name));
    sh(&["ip", "link", "set", &node.veth, "down"])?;
    w.save(&lab)?;
    eprintln!("skiff lab: {name} stopped");
    Ok(())
}

fn node_start(w: &Which, name: &str) -> Result<()> {
    let dir = w.dir();
    let mut lab = w.load()?;
    let token = std::fs::read_to_string(dir.join("server/server/node-token"))?
        .trim()
        .to_string();
    let i = lab
        .nodes
        .iter()
        .position(|n| n.name == name)
        .with_context(|| format!("lab {} has no node {name}", w.name))?;
    if lab.nodes[i].pid != 0 && ours(lab.nodes[i].pid, &dir) {
        bail!("{name} is running");
    }
    sh(&["ip", "link", "set", &lab.nodes[i].veth, "up"])?;
    let pid = spawn_detached(
        &mut agent_command(&lab, &lab.nodes[i], &dir, &token),
        &dir.join(name).join("agent.log"),
    )?;
    lab.nodes[i].pid = pid;
    w.save(&lab)?;
    eprintln!("skiff lab: {name} started");
    Ok(())
}
