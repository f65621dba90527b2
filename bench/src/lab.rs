//! `lab`: a cluster in one command. `skiff up` in a network namespace of its
//! own, as on a fresh machine (the busybox test image in the node's import
//! folder), timed from its start to its node Ready and to a first pod
//! Running; then the resident memory of that one process (control plane and
//! node) idle and with 100 pods. Then `skiff lab up --nodes 3`, timed to
//! every node Ready, and `lab down`; then a one-node lab, whose server and
//! agent are separate processes, for their resident memory apart, idle and
//! with 100 pods. Needs root, runc, the CNI plugins and busybox-static.

use crate::api::client;
use crate::node::{clean_node, sh, NodeNet};
use crate::procs::{self, rss_mb};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NETNS: &str = "skiff-bench-lab";
const HOST_IP: &str = "172.29.252.1";
const NODE_IP: &str = "172.29.252.2";
const PODS: i32 = 100;

/// `skiff up`, stopped with SIGINT (as ctrl-c) when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

async fn running(pods: &Api<Pod>, selector: &str) -> usize {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count()
        })
        .unwrap_or(0)
}

/// Until `n` pods matching `selector` are Running, looking every `poll_ms`;
/// an error after `secs`.
async fn wait_running(
    pods: &Api<Pod>,
    selector: &str,
    n: usize,
    secs: u64,
    poll_ms: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while running(pods, selector).await < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{n} pods ({selector}) not Running in {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
    Ok(())
}

pub async fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab benchmark runs a real node: run it as root");
    }
    let bin = procs::skiff_binary()?;
    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("data");
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    sh(&[
        &script.to_string_lossy(),
        &images.join("busybox.tar").to_string_lossy(),
    ])?;
    let net = NodeNet::create(NETNS, "sklab", HOST_IP, NODE_IP)?;
    let log = work.path().join("up.log");
    let result = measure(&bin, &data_dir, &log).await;
    clean_node(&data_dir);
    drop(net);
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    let up = result?;
    let lab3 = lab3_ready(&bin, work.path())?;
    println!("skiff lab up --nodes 3 → every node Ready: {lab3:.2} s");
    let apart = lab1_rss(&bin, work.path()).await?;
    println!("RESULT {up} lab3_ready_s={lab3:.2} {apart}");
    Ok(())
}

/// `skiff lab …` for the benchmark's lab `name`.
fn lab(
    bin: &Path,
    work: &Path,
    name: &str,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    Command::new(bin)
        .args(args)
        .args(["--name", name, "--state-dir"])
        .arg(work.join("labs"))
        .env("HOME", work)
        .env_remove("KUBECONFIG")
        .output()
}

/// A Deployment of `PODS` busybox pods sleeping.
fn sleepers(name: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": PODS, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                    "terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "app", "image": "localhost/busybox:latest", "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"]}]}}}
    }))?)
}

/// Server and agent RSS of a one-node lab, idle and with `PODS` pods, as
/// RESULT fields.
async fn lab1_rss(bin: &Path, work: &Path) -> Result<String> {
    let out = lab(bin, work, "rss", &["lab", "up", "--nodes", "1"])?;
    let measured = async {
        if !out.status.success() {
            bail!("skiff lab up: {}", String::from_utf8_lossy(&out.stderr));
        }
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(work.join("labs/rss/lab.json"))?)?;
        let server = state["server_pid"].as_u64().context("server_pid")? as u32;
        let agent = state["nodes"][0]["pid"].as_u64().context("node pid")? as u32;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (server_idle, agent_idle) = (rss_mb(server), rss_mb(agent));
        println!("lab of one node, idle: server {server_idle:.1} MB, agent {agent_idle:.1} MB");
        let c = client(&work.join("labs/rss/server/kubeconfig.yaml")).await?;
        Api::<Deployment>::namespaced(c.clone(), "default")
            .create(&PostParams::default(), &sleepers("many")?)
            .await?;
        let pods: Api<Pod> = Api::namespaced(c, "default");
        wait_running(&pods, "app=many", PODS as usize, 300, 200).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (server_busy, agent_busy) = (rss_mb(server), rss_mb(agent));
        println!(
            "lab of one node, {PODS} pods: server {server_busy:.1} MB, agent {agent_busy:.1} MB"
        );
        Ok(format!(
            "server_rss_idle_mb={server_idle:.1} server_rss_100pods_mb={server_busy:.1} \
             agent_rss_idle_mb={agent_idle:.1} agent_rss_100pods_mb={agent_busy:.1}"
        ))
    }
    .await;
    let down = lab(bin, work, "rss", &["lab", "down"]);
    let fields = measured?;
    down?;
    Ok(fields)
}

/// Seconds from `skiff lab up --nodes 3` to its return (every node Ready,
/// the test image built and imported).
fn lab3_ready(bin: &Path, work: &Path) -> Result<f64> {
    let started = Instant::now();
    let out = lab(bin, work, "bench", &["lab", "up", "--nodes", "3"])?;
    let took = started.elapsed().as_secs_f64();
    let down = lab(bin, work, "bench", &["lab", "down"]);
    if !out.status.success() {
        bail!("skiff lab up: {}", String::from_utf8_lossy(&out.stderr));
    }
    down?;
    Ok(took)
}

/// The `skiff up` figures, as RESULT fields.
async fn measure(bin: &Path, data_dir: &Path, log: &Path) -> Result<String> {
    let started = Instant::now();
    let up = Up(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{NETNS}"))
        .arg(bin)
        .args(["up", "--node-name", "lab-node", "--merge-kubeconfig", ""])
        .arg("--data-dir")
        .arg(data_dir)
        .arg(format!(
            "--agent-arg=--pod-log-dir={}",
            data_dir.join("logs").display()
        ))
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting skiff up under nsenter")?);
    let printed = || std::fs::read_to_string(log).unwrap_or_default();
    wait_for("node Ready", 60, || {
        printed().contains("node lab-node Ready")
    })?;
    let ready_s = started.elapsed().as_secs_f64();
    println!("skiff up → node Ready: {ready_s:.2} s");

    // The admin kubeconfig names loopback inside the namespace; from here
    // the node's address (in the serving certificate) reaches it.
    let admin = std::fs::read_to_string(data_dir.join("kubeconfig.yaml"))?;
    let outside = data_dir.join("bench.kubeconfig");
    std::fs::write(
        &outside,
        admin.replace("https://127.0.0.1:", &format!("https://{NODE_IP}:")),
    )?;
    let c = client(&outside).await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod = |name: &str, app: &str| -> Result<Pod> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "app", "image": "localhost/busybox:latest", "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]}]},
        }))?)
    };
    pods.create(&PostParams::default(), &pod("first", "first")?)
        .await?;
    wait_running(&pods, "app=first", 1, 60, 10).await?;
    let first_s = started.elapsed().as_secs_f64();
    println!("skiff up → first pod Running: {first_s:.2} s");

    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = up.0.id();
    let idle = rss_mb(pid);
    println!("skiff up process (control plane and node), RSS with one pod: {idle:.1} MB");

    Api::<Deployment>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &sleepers("many")?)
        .await?;
    let began = Instant::now();
    wait_running(&pods, "app=many", PODS as usize, 300, 200).await?;
    println!(
        "{PODS} more pods Running in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let busy = rss_mb(pid);
    println!("skiff up process, RSS with {} pods: {busy:.1} MB", PODS + 1);
    drop(up);
    Ok(format!(
        "up_ready_s={ready_s:.2} first_pod_s={first_s:.2} up_rss_idle_mb={idle:.1} up_rss_100pods_mb={busy:.1}"
    ))
}
