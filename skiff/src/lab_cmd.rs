//! `skiff lab`: a multi-node cluster on one machine. The server listens on
//! a bridge of the lab's own (`skl-<name>`, 172.31.<n>.1/24); every node is
//! a network namespace on that bridge with its own address, iptables and pod
//! bridge, running `skiff agent` joined with the server's token. Nodes have
//! a link-scoped default route and no gateway: nothing they send leaves the
//! machine. Processes run detached; their pids and the layout are kept in
//! `<state-dir>/<name>/lab.json` for `lab down`, `lab node stop|start|restart|add`
//! and `lab server restart`.

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
    /// stopped, link down), bring it back, restart its agent alone, or add
    /// a node.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Restart the lab's API server and controllers (as an upgrade would).
    Server {
        #[command(subcommand)]
        action: ServerAction,
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
    /// More image tarballs every node imports (OCI layout or `docker save`).
    #[arg(long, num_args = 1..)]
    images: Vec<PathBuf>,
    /// Do not build the test image (localhost/busybox:latest, from
    /// /bin/busybox) every node otherwise imports.
    #[arg(long)]
    no_test_image: bool,
    /// An extra flag for the lab's `skiff server` (repeatable), e.g.
    /// --server-arg=--node-monitor-grace-period=20s.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Keep the lab (processes, namespaces, logs) when it fails to come up,
    /// to look at it; `skiff lab down` removes it then.
    #[arg(long)]
    retain: bool,
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
    /// Restart the node's agent only: its containers keep running and are
    /// adopted by the new agent.
    Restart {
        node: String,
        #[command(flatten)]
        which: Which,
    },
    /// Add a node (node-<next>) and wait until it is Ready.
    Add {
        #[command(flatten)]
        which: Which,
    },
}

#[derive(clap::Subcommand)]
enum ServerAction {
    /// Kill the server (SIGKILL, as a crash) and start it again on the
    /// same data.
    Restart {
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
    /// `--server-arg`s, kept for a restart.
    #[serde(default)]
    server_args: Vec<String>,
    /// `--images`, kept for nodes added later.
    #[serde(default)]
    images: Vec<PathBuf>,
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
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()?;
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

/// SIGKILL to a process of the lab, then waits (up to 10 s) until it is
/// gone or a zombie: either way its files and sockets are closed.
fn kill(pid: u32, dir: &Path) {
    if pid != 0 && ours(pid, dir) {
        // SAFETY: kill(2) on a pid we started and checked is still ours.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        for _ in 0..500 {
            if !running(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `pid` exists and is not a zombie (its state in /proc/<pid>/stat,
/// after the parenthesised command name).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The last `lines` lines of a log, for an error that has to explain itself
/// once the lab's directory is gone.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // With RUST_BACKTRACE set, an error ends in its backtrace: the tail
    // should show the error, not the last frames.
    let text = text.split("\nStack backtrace:").next().unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The server's last lines, for when a node fails to join: the cause can be
/// on either side.
fn server_log_tail(dir: &Path) -> String {
    let log = dir.join("server.log");
    format!("the server ({}):\n{}", log.display(), log_tail(&log, 20))
}

/// How a child of this process ended, if it has. (Its command line is no
/// test of life here: a child that has just exec'd can show an empty one.)
fn exited(pid: u32) -> Option<String> {
    let mut status = 0;
    // SAFETY: waitpid on our own child, WNOHANG: never blocks.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    if r != pid as i32 {
        None
    } else if libc::WIFEXITED(status) {
        Some(format!("exit code {}", libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(format!("killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some(format!("status {status}"))
    }
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
            NodeAction::Restart { node, which } => node_restart(&which, &node),
            NodeAction::Add { which } => node_add(&which).await,
        },
        LabCommand::Server {
            action: ServerAction::Restart { which },
        } => server_restart(&which).await,
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
        // The machine's resolvers are off the lab: names outside the
        // cluster fail at once instead of after every timeout.
        .args(["--resolv-conf", ""])
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
    let images = a
        .images
        .iter()
        .map(|t| std::path::absolute(t).with_context(|| format!("--images {}", t.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut lab = Lab {
        name: name.clone(),
        bridge: bridge.clone(),
        subnet,
        port: 6443,
        server_pid: 0,
        server_args: a.server_args.clone(),
        images,
        nodes: Vec::new(),
    };
    a.which.save(&lab)?;
    let made = async {
        if !a.no_test_image {
            // First, so the images given override it.
            if let Some(tar) = test_image(&dir, started)? {
                lab.images.insert(0, tar);
                a.which.save(&lab)?;
            }
        }
        // The bridge's address is set, as the CNI bridge plugin sets its
        // own: unset, it is its ports' lowest and moves as nodes join, and
        // a node that learnt the old one for the server has its frames
        // dropped (tens of seconds, until its ARP entry expires).
        let mac = format!("02:73:6b:6c:00:{subnet:02x}");
        sh(&[
            "ip", "link", "add", &bridge, "address", &mac, "type", "bridge",
        ])?;
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
        start_server(&mut lab, &a.which).await?;
        progress(
            started,
            &format!("server on https://{server_ip}:{}", lab.port),
        );
        for _ in 0..a.nodes {
            add_node(&mut lab, &a.which)?;
        }
        progress(started, &format!("{} agents started", a.nodes));
        let admin = admin_kubeconfig(&dir);
        let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
        wait_ready(&lab, &names, started, &dir).await?;
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
        if a.retain {
            eprintln!(
                "skiff lab: {name} kept as it is (--retain); skiff lab down --name {name} removes it"
            );
        } else {
            let _ = down(&a.which);
        }
    }
    r
}

/// The busybox test image for every node, built into the lab's directory;
/// none (with a note) on a machine without a static busybox.
fn test_image(dir: &Path, started: Instant) -> Result<Option<PathBuf>> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!(
            "skiff lab: no /bin/busybox (Debian: busybox-static): the nodes get no test image"
        );
        return Ok(None);
    }
    let tar = dir.join("busybox.tar");
    let name = crate::images_cmd::DEFAULT_TEST_IMAGE;
    skiff_agent::images::testimage::write_busybox_image(busybox, name, &tar)
        .context("building the test image")?;
    progress(started, &format!("test image {name}"));
    Ok(Some(tar))
}

fn admin_kubeconfig(dir: &Path) -> PathBuf {
    dir.join("server").join("kubeconfig.yaml")
}

fn node_token(dir: &Path) -> Result<String> {
    let file = dir.join("server").join("server").join("node-token");
    Ok(std::fs::read_to_string(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .to_string())
}

/// Starts the lab's server and waits until it has written its admin
/// kubeconfig and join token and accepts connections.
async fn start_server(lab: &mut Lab, which: &Which) -> Result<()> {
    let dir = which.dir();
    let server_ip = format!("172.31.{}.1", lab.subnet);
    lab.server_pid = spawn_detached(
        Command::new(std::env::current_exe()?)
            .args(["server", "--bind-address", &server_ip])
            .args(["--https-listen-port", &lab.port.to_string()])
            .arg("--data-dir")
            .arg(dir.join("server"))
            // Its own metrics ports: another server may be on the host.
            .args([
                "--scheduler-metrics-address",
                "",
                "--controller-metrics-address",
                "",
            ])
            .args(&lab.server_args)
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            ),
        &dir.join("server.log"),
    )?;
    which.save(lab)?;
    let token_file = dir.join("server").join("server").join("node-token");
    let admin = admin_kubeconfig(&dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(token_file.exists()
        && admin.exists()
        && std::net::TcpStream::connect((server_ip.as_str(), lab.port)).is_ok())
    {
        let ended = exited(lab.server_pid);
        if Instant::now() > deadline || ended.is_some() {
            let log = dir.join("server.log");
            bail!(
                "the lab's server did not start ({}): see {}\n{}",
                ended.as_deref().unwrap_or("not ready in 30 s"),
                log.display(),
                log_tail(&log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Adds node-<next>: its namespace on the lab's bridge, the lab's images,
/// and its agent joined with the server's token.
fn add_node(lab: &mut Lab, which: &Which) -> Result<()> {
    let dir = which.dir();
    let name = &lab.name;
    let i = lab
        .nodes
        .iter()
        .filter_map(|n| n.name.strip_prefix("node-")?.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    if i > 200 {
        bail!("a lab has at most 200 nodes");
    }
    let node = LabNode {
        name: format!("node-{i}"),
        netns: format!("skl-{name}-{i}"),
        veth: format!("skl{name}{i}"),
        ip: format!("172.31.{}.{}", lab.subnet, 10 + i),
        pid: 0,
    };
    sh(&["ip", "netns", "add", &node.netns])?;
    // Saved before anything else is made, so `lab down` removes it all.
    lab.nodes.push(node);
    which.save(lab)?;
    let node = lab.nodes.last().expect("just pushed");
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
    sh(&["ip", "link", "set", &node.veth, "master", &lab.bridge, "up"])?;
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
    for tar in &lab.images {
        let file = tar.file_name().context("--images: a file")?;
        std::fs::copy(tar, images.join(file))
            .with_context(|| format!("--images {}", tar.display()))?;
    }
    let pid = spawn_detached(
        &mut agent_command(lab, node, &dir, &node_token(&dir)?),
        &node_dir.join("agent.log"),
    )?;
    lab.nodes.last_mut().expect("just pushed").pid = pid;
    which.save(lab)
}

/// Waits until every node named is Ready, printing each as it becomes so;
/// fails at once if one of their agents (our children) has exited.
async fn wait_ready(lab: &Lab, names: &[&str], started: Instant, dir: &Path) -> Result<()> {
    let client = crate::component_client(&admin_kubeconfig(dir), "skiff").await?;
    let nodes: Api<Node> = Api::all(client);
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
            if ready && names.contains(&name.as_str()) && ready_seen.insert(name.clone()) {
                progress(started, &format!("{name} Ready"));
            }
        }
        if ready_seen.len() >= names.len() {
            return Ok(());
        }
        for n in lab
            .nodes
            .iter()
            .filter(|n| names.contains(&n.name.as_str()))
        {
            if let Some(how) = exited(n.pid) {
                let log = dir.join(&n.name).join("agent.log");
                bail!(
                    "{}'s agent stopped ({how}): see {}\n{}\n{}",
                    n.name,
                    log.display(),
                    log_tail(&log, 20),
                    server_log_tail(dir)
                );
            }
        }
        if Instant::now() > deadline {
            let late: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !ready_seen.contains(*n))
                .collect();
            let tails: String = late
                .iter()
                .map(|n| {
                    let log = dir.join(n).join("agent.log");
                    format!("{n}'s agent ({}):\n{}\n", log.display(), log_tail(&log, 20))
                })
                .collect();
            bail!(
                "not Ready in 120 s: {}\n{tails}{}",
                late.join(", "),
                server_log_tail(dir)
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
    let token = node_token(&dir)?;
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

fn node_restart(w: &Which, name: &str) -> Result<()> {
    let dir = w.dir();
    let mut lab = w.load()?;
    let i = lab
        .nodes
        .iter()
        .position(|n| n.name == name)
        .with_context(|| format!("lab {} has no node {name}", w.name))?;
    if lab.nodes[i].pid == 0 || !ours(lab.nodes[i].pid, &dir) {
        bail!("{name} is stopped (skiff lab node start {name})");
    }
    // The agent alone: the shims own the containers and outlive it.
    kill(lab.nodes[i].pid, &dir);
    let pid = spawn_detached(
        &mut agent_command(&lab, &lab.nodes[i], &dir, &node_token(&dir)?),
        &dir.join(name).join("agent.log"),
    )?;
    lab.nodes[i].pid = pid;
    w.save(&lab)?;
    eprintln!("skiff lab: {name}'s agent restarted");
    Ok(())
}

async fn node_add(w: &Which) -> Result<()> {
    let started = Instant::now();
    let dir = w.dir();
    let mut lab = w.load()?;
    add_node(&mut lab, w)?;
    let name = lab.nodes.last().expect("just added").name.clone();
    progress(started, &format!("{name} started"));
    wait_ready(&lab, &[&name], started, &dir).await?;
    eprintln!("skiff lab: {name} added");
    Ok(())
}

async fn server_restart(w: &Which) -> Result<()> {
    let dir = w.dir();
    let mut lab = w.load()?;
    kill(lab.server_pid, &dir);
    // Started only once the old one's port is free: otherwise the new one
    // could fail to bind while the old one still answers our check.
    let addr = (format!("172.31.{}.1", lab.subnet), lab.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((addr.0.as_str(), addr.1)).is_ok() {
        if Instant::now() > deadline {
            bail!("the old server still answers on {}:{}", addr.0, addr.1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start_server(&mut lab, w).await?;
    eprintln!("skiff lab: server restarted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_shows_the_error_not_its_backtrace() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        std::fs::write(
            &log,
            "starting\nError: no route to the server\n\nStack backtrace:\n   0: main\n   1: start\n",
        )
        .unwrap();
        assert_eq!(log_tail(&log, 1), "Error: no route to the server");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), "b\nc");
    }
}
