//! `pods`: the real node agent on one real node (its own network namespace,
//! runc, CNI, the busybox test image already imported). 100 pods are
//! created 10 at a time; the figures are create→Running and create→Ready
//! latency, deletion latency (delete call → object gone), the agent's RSS
//! with 100 pods and a shim's, and the CPU a pod start costs the machine
//! (the agent's, the server's, the rest: runc, CNI plugins, shims). The
//! physical floor, measured in the same run, is a bare `runc run -d` of a
//! busybox bundle on the same layer.
//! Needs root, runc, the CNI plugins and busybox-static.

use crate::api::{client, percentile};
use crate::procs::{self, Proc};
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PODS: usize = 100;
const AT_ONCE: usize = 10;
const NETNS: &str = "skiff-bench-pods";
const HOST_IP: &str = "172.29.251.1";
const NODE_IP: &str = "172.29.251.2";

use crate::node::{clean_node, sh, NodeNet};

/// Proportional set size in MiB: shared pages (the binary's text, which
/// every shim maps) divided among the processes sharing them.
fn pss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How a running shim was linked: a dynamically linked one maps the
/// dynamic loader (a shim built by plain `cargo build`, not
/// `scripts/build-release`, is; it keeps 0.8 MB more resident).
fn linking(pid: u32) -> &'static str {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if maps.contains("/ld-linux") {
        "linked dynamically"
    } else {
        "linked statically"
    }
}

/// The shims of this node's containers (their command lines name its data dir).
fn shim_pids(data_dir: &Path) -> Vec<u32> {
    let needle = data_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let program = cmd.split('\0').next().unwrap_or_default();
            let shim =
                program.ends_with(skiff_agent::runtime::shim::PROGRAM) || cmd.contains("\0shim\0");
            shim && cmd.contains(&needle)
        })
        .collect()
}

/// Median milliseconds of a bare `runc run -d` of a busybox bundle whose root
/// is an overlay of `layer`, the same as a pod's container gets.
fn runc_floor(layer: &Path, work: &Path) -> Result<f64> {
    let bundle = work.join("floor");
    for d in ["rootfs", "upper", "work"] {
        std::fs::create_dir_all(bundle.join(d))?;
    }
    sh(&["runc", "spec", "--bundle", &bundle.to_string_lossy()])?;
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config)?)?;
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sleep", "3600"]);
    spec["root"]["readonly"] = json!(false);
    std::fs::write(&config, serde_json::to_vec(&spec)?)?;
    let root = work.join("floor-runc");
    let root = root.to_string_lossy();
    let mut times = Vec::new();
    for i in 0..10 {
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            layer.display(),
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        sh(&[
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            &data,
            &bundle.join("rootfs").to_string_lossy(),
        ])?;
        let id = format!("skiff-bench-floor-{i}");
        let start = Instant::now();
        let status = Command::new("runc")
            .args([
                "--root",
                &root,
                "run",
                "-d",
                "--bundle",
                &bundle.to_string_lossy(),
                &id,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        let _ = sh(&["runc", "--root", &root, "delete", "--force", &id]);
        let _ = sh(&["umount", "-l", &bundle.join("rootfs").to_string_lossy()]);
        if !status.success() {
            bail!("runc run -d failed");
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
            "name": "app", "image": "localhost/busybox:latest", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
        }]},
    }))
    .expect("pod literal")
}

/// When the watch saw each pod Running, Ready and gone.
type Times = (Option<Instant>, Option<Instant>, Option<Instant>);
type Seen = HashMap<String, Times>;

/// Runs `act` on pods p0…p99, AT_ONCE at a time: each slot holds until the
/// watch saw its pod reach the instant `reached` picks (within `secs`).
/// Returns when each pod's `act` began.
async fn in_slots<F, Fut>(
    seen: &Arc<Mutex<Seen>>,
    reached: fn(&Times) -> Option<Instant>,
    secs: u64,
    what: &str,
    act: F,
) -> Result<HashMap<String, Instant>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let began: Mutex<HashMap<String, Instant>> = Mutex::default();
    futures::stream::iter(0..PODS)
        .map(|i| {
            let (name, began, act) = (format!("p{i}"), &began, &act);
            async move {
                began
                    .lock()
                    .expect("lock")
                    .insert(name.clone(), Instant::now());
                act(name.clone()).await?;
                let deadline = Instant::now() + Duration::from_secs(secs);
                while seen
                    .lock()
                    .expect("lock")
                    .get(&name)
                    .and_then(reached)
                    .is_none()
                {
                    anyhow::ensure!(Instant::now() < deadline, "{name} not {what} in {secs} s");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok(began.into_inner().expect("lock"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the pods benchmark runs a real node: run it as root");
    }
    for bin in ["runc", "nsenter", "ip"] {
        Command::new(bin)
            .arg("--version")
            .output()
            .with_context(|| format!("{bin} is needed (scripts/install-deps)"))?;
    }
    let bin = procs::skiff_binary()?;
    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("node");
    let net = NodeNet::create(NETNS, "skbench", HOST_IP, NODE_IP)?;
    let (server, kubeconfig) = procs::start_server_on(&bin, HOST_IP, None, &[])?;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let tar = work.path().join("busybox.tar");
    sh(&[&script.to_string_lossy(), &tar.to_string_lossy()])?;
    let out = Command::new(&bin)
        .args(["images", "import", "--data-dir"])
        .arg(&data_dir)
        .arg(&tar)
        .output()?;
    if !out.status.success() {
        bail!("images import: {}", String::from_utf8_lossy(&out.stderr));
    }
    let layer = first_layer(&data_dir)?;
    let floor_ms = runc_floor(&layer, work.path())?;
    println!("bare runc run -d (busybox bundle, overlay root): median {floor_ms:.1} ms");

    let agent = procs::start_agent(&bin, &kubeconfig, NETNS, "bench-node", &data_dir)?;
    let result = measure(&kubeconfig, &agent, &server, &data_dir, floor_ms).await;
    drop(agent);
    clean_node(&data_dir);
    drop(server);
    drop(net);
    result
}

fn first_layer(data_dir: &Path) -> Result<PathBuf> {
    let layers = data_dir.join("agent/content/layers");
    std::fs::read_dir(&layers)?
        .flatten()
        .map(|e| e.path().join("rootfs"))
        .find(|p| p.join("bin/busybox").exists())
        .context("the busybox layer is not unpacked")
}

async fn measure(
    kubeconfig: &Path,
    agent: &Proc,
    server: &Proc,
    data_dir: &Path,
    floor_ms: f64,
) -> Result<()> {
    let c = client(kubeconfig).await?;
    let nodes: Api<Node> = Api::all(c.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = nodes.get_opt("bench-node").await?;
        if n.and_then(|n| n.spec?.pod_cidr).is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the node did not register with a pod CIDR");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::api::make_namespace(&c, "bench").await.ok();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "bench");

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let watch_seen = seen.clone();
    let watch_pods = pods.clone();
    let watching = tokio::spawn(async move {
        let mut s = watcher(watch_pods, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let now = Instant::now();
            let Ok(ev) = ev else { continue };
            let mut seen = watch_seen.lock().expect("lock");
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let e = seen
                        .entry(p.metadata.name.clone().unwrap_or_default())
                        .or_default();
                    let st = p.status.unwrap_or_default();
                    if st.phase.as_deref() == Some("Running") && e.0.is_none() {
                        e.0 = Some(now);
                    }
                    let ready = st
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if ready && e.1.is_none() {
                        e.1 = Some(now);
                    }
                }
                watcher::Event::Delete(p) => {
                    seen.entry(p.metadata.name.clone().unwrap_or_default())
                        .or_default()
                        .2 = Some(now);
                }
                _ => {}
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let cpu_before = (
        procs::machine_busy_seconds(),
        agent.cpu_seconds(),
        server.cpu_seconds(),
    );
    let created = in_slots(
        &seen,
        |t| t.1,
        120,
        "Ready",
        |name| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(&name)).await?;
                Ok(())
            }
        },
    )
    .await?;
    println!(
        "{PODS} pods Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // With AT_ONCE pods in flight a pod's latency is AT_ONCE / throughput,
    // and on a busy machine throughput is CPUs / CPU per pod: this says
    // where a pod start's CPU goes.
    let per_pod_ms = |after: f64, before: f64| (after - before) * 1000.0 / PODS as f64;
    let machine_ms = per_pod_ms(procs::machine_busy_seconds(), cpu_before.0);
    let agent_ms = per_pod_ms(agent.cpu_seconds(), cpu_before.1);
    let server_ms = per_pod_ms(server.cpu_seconds(), cpu_before.2);
    println!(
        "CPU per pod start: {machine_ms:.0} ms busy on the machine ({} CPUs): agent {agent_ms:.1}, server {server_ms:.1}, the rest (runc, CNI plugins, shims, kernel work, this benchmark) {:.1}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        machine_ms - agent_ms - server_ms
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agent_rss = agent.rss_mb();
    let shims = shim_pids(data_dir);
    let mean = |f: fn(u32) -> f64| {
        if shims.is_empty() {
            0.0
        } else {
            shims.iter().map(|p| f(*p)).sum::<f64>() / shims.len() as f64
        }
    };
    let (shim_rss, shim_pss) = (mean(procs::rss_mb), mean(pss_mb));
    println!(
        "agent RSS with {PODS} pods: {agent_rss:.1} MB; {} shims ({}), {shim_rss:.2} MB RSS ({shim_pss:.2} MB PSS) each",
        shims.len(),
        shims.first().map_or("none", |p| linking(*p)),
    );

    let (mut start, mut ready) = (Vec::new(), Vec::new());
    {
        let seen = seen.lock().expect("lock");
        for (name, t0) in &created {
            let e = seen.get(name).copied().unwrap_or_default();
            start.extend(e.0.map(|t| ms(t - *t0)));
            ready.extend(e.1.map(|t| ms(t - *t0)));
        }
    }
    start.sort_by(f64::total_cmp);
    ready.sort_by(f64::total_cmp);

    let delete_start = in_slots(
        &seen,
        |t| t.2,
        60,
        "gone",
        |name| {
            let pods = pods.clone();
            async move {
                pods.delete(&name, &DeleteParams::default()).await?;
                Ok(())
            }
        },
    )
    .await?;
    let mut delete = Vec::new();
    {
        let seen = seen.lock().expect("lock");
        for (name, t0) in &delete_start {
            delete.extend(seen.get(name).and_then(|e| e.2).map(|t| ms(t - *t0)));
        }
    }
    delete.sort_by(f64::total_cmp);
    watching.abort();

    let (start_p50, start_p99) = (percentile(&start, 0.5), percentile(&start, 0.99));
    let ready_p99 = percentile(&ready, 0.99);
    let delete_p50 = percentile(&delete, 0.5);
    println!("create→Running: p50 {start_p50:.0} ms, p99 {start_p99:.0} ms; create→Ready p99 {ready_p99:.0} ms");
    println!(
        "delete→gone: p50 {delete_p50:.0} ms, p99 {:.0} ms",
        percentile(&delete, 0.99)
    );
    println!("reproduce: sudo cargo run --release -p skiff-bench -- pods");
    println!(
        "RESULT start_p50_ms={start_p50:.0} start_p99_ms={start_p99:.0} ready_p99_ms={ready_p99:.0} delete_p50_ms={delete_p50:.0} runc_floor_ms={floor_ms:.1} ratio_p50={:.1} agent_rss_100pods_mb={agent_rss:.1} shim_rss_mb={shim_rss:.2} shim_pss_mb={shim_pss:.2} cpu_per_pod_ms={machine_ms:.0}",
        start_p50 / floor_ms.max(0.001)
    );
    Ok(())
}
