//! Processes a benchmark runs: a release `skiff server` and a private etcd,
//! both on loopback, both killed (by pid) when dropped.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Builds the release skiff binary (and its static shim beside it, as
/// `scripts/build-release` does for users) and returns its path.
pub fn skiff_binary() -> Result<PathBuf> {
    // A binary built beforehand (e.g. while others edit the tree) skips the build.
    if let Some(bin) = std::env::var_os("SKIFF_BIN") {
        return Ok(PathBuf::from(bin));
    }
    // This program is <target dir>/release/skiff-bench: skiff goes beside it.
    let exe = std::env::current_exe()?;
    let release = exe.parent().context("bench binary has a folder")?;
    let target = release.parent().context("release folder has a parent")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-release");
    let status = Command::new(script)
        .env("CARGO_TARGET_DIR", target)
        .status()?;
    if !status.success() {
        bail!("building skiff failed");
    }
    let bin = release.join("skiff");
    if !bin.exists() {
        bail!("{} not found", bin.display());
    }
    Ok(bin)
}

pub struct Proc {
    pub child: Child,
    /// Kept so the process's folder lives as long as the process.
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in MiB, from /proc.
    pub fn rss_mb(&self) -> f64 {
        rss_mb(self.pid())
    }

    /// User + system CPU seconds of the process so far (its threads, not
    /// its children).
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command (which may hold spaces) start after ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
        (ticks(&fields, 11) + ticks(&fields, 12)) / USER_HZ
    }
}

/// Clock ticks per second in /proc (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

fn ticks(fields: &[&str], i: usize) -> f64 {
    fields
        .get(i)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// CPU seconds the whole machine has been busy so far (every CPU: user,
/// nice, system, irq, softirq, steal), from /proc/stat.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // cpu user nice system idle iowait irq softirq steal
    [1, 2, 3, 6, 7, 8]
        .iter()
        .map(|&i| ticks(&fields, i))
        .sum::<f64>()
        / USER_HZ
}

/// Resident set size of process `pid` in MiB, from /proc.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    wait_port_on("127.0.0.1", port, child, what)
}

fn wait_port_on(host: &str, port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return Ok(());
        }
        if let Some(s) = child.try_wait()? {
            bail!("{what} exited: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not listen on {port}")
}

pub fn start_etcd() -> Result<(Proc, String)> {
    let dir = tempfile::tempdir()?;
    let (client, peer) = (free_port()?, free_port()?);
    let mut child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--name", "bench"])
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("bench=http://127.0.0.1:{peer}"),
        ])
        .args(["--quota-backend-bytes", "8589934592"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (apt-get install etcd-server)")?;
    wait_port(client, &mut child, "etcd")?;
    Ok((
        Proc { child, _dir: dir },
        format!("http://127.0.0.1:{client}"),
    ))
}

/// The API server alone: the scheduler and controllers have their own benchmarks.
pub fn start_server(bin: &Path, datastore: Option<&str>) -> Result<(Proc, PathBuf)> {
    start_server_with(
        bin,
        datastore,
        &["--disable-controller-manager", "--disable-scheduler"],
    )
}

/// The whole control plane (API server, scheduler, controllers), with a
/// cluster CIDR of 4096 node ranges: the default /16 has 256, too few for
/// the thousand-node runs (nodes without a range cannot start pods).
pub fn start_control_plane(bin: &Path) -> Result<(Proc, PathBuf)> {
    start_server_with(
        bin,
        None,
        &[
            "--scheduler-metrics-address",
            "",
            "--cluster-cidr",
            "10.32.0.0/12",
        ],
    )
}

fn start_server_with(
    bin: &Path,
    datastore: Option<&str>,
    extra: &[&str],
) -> Result<(Proc, PathBuf)> {
    start_server_on(bin, "127.0.0.1", datastore, extra)
}

/// The server listening on `bind` (loopback, or an address the benchmark set up).
pub fn start_server_on(
    bin: &Path,
    bind: &str,
    datastore: Option<&str>,
    extra: &[&str],
) -> Result<(Proc, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .args(extra)
        .args([
            "--bind-address",
            bind,
            "--https-listen-port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(log_sink("server")?)
        // SKIFF_BENCH_SERVER_LOG (e.g. `warn,kube_runtime=debug`) shows what
        // the server's own watches went through.
        .env(
            "SKIFF_LOG",
            std::env::var("SKIFF_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        );
    if let Some(ep) = datastore {
        cmd.args(["--datastore-endpoint", ep]);
    }
    let mut child = cmd.spawn()?;
    wait_port_on(bind, port, &mut child, "skiff server")?;
    // The port opens before the server has written its kubeconfig.
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        if Instant::now() > deadline {
            bail!("skiff server wrote no kubeconfig");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((Proc { child, _dir: dir }, kubeconfig))
}

/// `skiff scheduler` against a running server, logging only warnings.
pub fn start_scheduler(bin: &Path, kubeconfig: &Path) -> Result<Proc> {
    let dir = tempfile::tempdir()?;
    let child = Command::new(bin)
        .args(["scheduler", "--scheduler-metrics-address", ""])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::null())
        .stderr(log_sink("scheduler")?)
        .env("SKIFF_LOG", "warn")
        .spawn()?;
    Ok(Proc { child, _dir: dir })
}

/// `skiff agent --simulate` with `nodes` nodes named `<prefix>-N`.
pub fn start_simulator(bin: &Path, kubeconfig: &Path, nodes: usize, prefix: &str) -> Result<Proc> {
    let dir = tempfile::tempdir()?;
    let child = Command::new(bin)
        .args([
            "agent",
            "--simulate",
            "--nodes",
            &nodes.to_string(),
            "--name-prefix",
            prefix,
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::null())
        .stderr(log_sink(&format!("simulator-{prefix}"))?)
        .env("SKIFF_LOG", "warn")
        .spawn()?;
    Ok(Proc { child, _dir: dir })
}

/// `skiff agent` (real) inside network namespace `netns`, against `kubeconfig`.
pub fn start_agent(
    bin: &Path,
    kubeconfig: &Path,
    netns: &str,
    node: &str,
    data_dir: &Path,
) -> Result<Proc> {
    let dir = tempfile::tempdir()?;
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(bin)
        .args(["agent", "--node-name", node, "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--pod-log-dir")
        .arg(data_dir.join("logs"))
        .stdout(Stdio::null())
        .stderr(log_sink("agent")?)
        // SKIFF_BENCH_AGENT_LOG (e.g. `skiff_agent=debug`) shows where pod starts spend their time.
        .env(
            "SKIFF_LOG",
            std::env::var("SKIFF_BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .context("starting skiff agent under nsenter")?;
    Ok(Proc { child, _dir: dir })
}

/// Where a skiff process's warnings go: `$SKIFF_BENCH_LOGS/<name>.log` when
/// that folder is set (to see why a run stalls), else nowhere.
fn log_sink(name: &str) -> Result<Stdio> {
    match std::env::var_os("SKIFF_BENCH_LOGS") {
        Some(dir) => {
            let path = Path::new(&dir).join(format!("{name}.log"));
            Ok(std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?
                .into())
        }
        None => Ok(Stdio::null()),
    }
}
