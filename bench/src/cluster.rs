//! `cluster`: the whole control plane at scale. A release `skiff server`
//! (embedded store, scheduler, controllers) with 1,000 simulated nodes, then
//! 30,000 pods through 30 Deployments: time until all run, p99 latency of
//! mutating API calls over the run (from the server's own request
//! histogram; upstream's SLO is 1 s), server RSS at the end, and the CPU
//! seconds the server and the simulator used.

use crate::api::{client, make_namespace};
use crate::procs;
use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NODES: usize = 1000;
const DEPLOYMENTS: usize = 30;
const REPLICAS: i32 = 1000;

/// The server's /metrics, also kept beside the logs when they are kept:
/// request counts by verb tell a slow run apart.
async fn server_metrics(c: &Client) -> Result<String> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = c.request_text(req).await?;
    if let Some(dir) = std::env::var_os("SKIFF_BENCH_LOGS") {
        std::fs::write(std::path::Path::new(&dir).join("metrics.txt"), &text)?;
    }
    Ok(text)
}

/// The p99 of mutating requests, from the cumulative buckets of
/// `apiserver_request_duration_seconds` summed over resources.
fn mutating_p99_ms(text: &str) -> Result<f64> {
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_duration_seconds_bucket{"))
    {
        let mutating = ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .any(|v| line.contains(&format!("verb=\"{v}\"")));
        if !mutating {
            continue;
        }
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        let count: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
        *buckets.entry((bound * 1e6) as u64).or_default() += count;
    }
    let total = buckets.values().last().copied().unwrap_or(0.0);
    let target = total * 0.99;
    for (bound, count) in &buckets {
        if *count >= target {
            return Ok(*bound as f64 / 1000.0);
        }
    }
    Ok(f64::INFINITY)
}

pub async fn run() -> Result<()> {
    let bin = procs::skiff_binary()?;
    let (server, kubeconfig) = procs::start_control_plane(&bin)?;
    let c = client(&kubeconfig).await?;
    let sim = procs::start_simulator(&bin, &kubeconfig, NODES, "sim")?;
    let nodes: Api<Node> = Api::all(c.clone());
    let start = Instant::now();
    loop {
        let n = nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if n == NODES {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "only {n} nodes registered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{NODES} simulated nodes registered in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    make_namespace(&c, "load").await?;
    let ds: Api<Deployment> = Api::namespaced(c.clone(), "load");
    let start = Instant::now();
    for i in 0..DEPLOYMENTS {
        let name = format!("load-{i}");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
        }))?;
        ds.create(&PostParams::default(), &d).await?;
    }
    let want = DEPLOYMENTS as i32 * REPLICAS;
    loop {
        let available: i32 = ds
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|d| d.status.as_ref()?.available_replicas)
            .sum();
        if available == want {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "only {available} of {want} pods running"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let running = start.elapsed().as_secs_f64();
    let p99 = mutating_p99_ms(&server_metrics(&c).await?)?;
    let (rss, server_cpu, sim_cpu) = (server.rss_mb(), server.cpu_seconds(), sim.cpu_seconds());
    println!("{want} pods through {DEPLOYMENTS} deployments running in {running:.1} s");
    println!("mutating API calls p99 over the run: {p99:.0} ms (upstream SLO 1000 ms)");
    println!("server RSS {rss:.0} MB; CPU: server {server_cpu:.0} s, simulator {sim_cpu:.0} s");
    println!(
        "RESULT pods_30k_running_s={running:.1} mutating_p99_ms={p99:.0} server_rss_mb={rss:.0} server_cpu_s={server_cpu:.0} sim_cpu_s={sim_cpu:.0}"
    );
    Ok(())
}
