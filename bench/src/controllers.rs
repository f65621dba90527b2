//! `controllers`: the workload controllers end to end on a release control
//! plane with simulated nodes (pods run and turn Ready at once): how long a
//! 1,000-replica Deployment takes to become fully available, and a rolling
//! update of it (maxSurge 25%) to finish, 1,000 one-pod Jobs to complete,
//! and a DaemonSet across 1,000 more simulated nodes to have every pod
//! available. The reference, measured in the same run, is creating the same
//! 1,000 pods directly through the API: the controllers' overhead is the
//! ratio between the two.

use crate::api::{client, make_namespace};
use crate::procs;
use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::time::{Duration, Instant};

const REPLICAS: i32 = 1000;
/// 110 pods fit a node: room for the reference pods, every replica, the
/// surge and the jobs.
const NODES: usize = 40;
/// Nodes of the second simulator, each to run one daemon pod.
const DS_NODES: usize = 1000;

async fn until(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn rolled_out(ds: &Api<Deployment>) -> Result<bool> {
    let d = ds.get("big").await?;
    let s = d.status.unwrap_or_default();
    Ok(s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(REPLICAS)
        && s.replicas == Some(REPLICAS)
        && s.available_replicas == Some(REPLICAS))
}

/// Seconds to create 1,000 bound pods directly (the reference).
async fn direct_pods(c: &Client) -> Result<f64> {
    make_namespace(c, "direct").await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "direct");
    let start = Instant::now();
    futures::stream::iter(0..REPLICAS as usize)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let p: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{i}")},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }))?;
                pods.create(&PostParams::default(), &p).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    until(
        "direct pods running",
        Duration::from_secs(300),
        async || {
            let list = pods.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count()
                == REPLICAS as usize)
        },
    )
    .await?;
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds for 1,000 one-pod Jobs, created at once, to complete.
async fn thousand_jobs(c: &Client) -> Result<f64> {
    make_namespace(c, "jobs").await?;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "jobs");
    let start = Instant::now();
    futures::stream::iter(0..REPLICAS as usize)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let j: Job = serde_json::from_value(json!({
                    "metadata": {"name": format!("j-{i}")},
                    "spec": {"template": {
                        "metadata": {"annotations": {"sim.skiff.dev/exit-code": "0"}},
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
                }))?;
                jobs.create(&PostParams::default(), &j).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    until("jobs complete", Duration::from_secs(600), async || {
        let list = jobs.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
            .count()
            == REPLICAS as usize)
    })
    .await?;
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds for a DaemonSet to have an available pod on each of `DS_NODES`
/// fresh simulated nodes (kept off the first simulator's, which hold the
/// other figures' pods, by a node affinity on their hostname label).
async fn daemon_set(
    c: &Client,
    bin: &std::path::Path,
    kubeconfig: &std::path::Path,
) -> Result<f64> {
    let _sim = procs::start_simulator(bin, kubeconfig, DS_NODES, "ds")?;
    let nodes: Api<Node> = Api::all(c.clone());
    until("daemon set nodes", Duration::from_secs(300), async || {
        Ok(nodes.list(&ListParams::default()).await?.items.len() == NODES + DS_NODES)
    })
    .await?;
    let others: Vec<String> = (0..NODES).map(|i| format!("bench-{i}")).collect();
    let sets: Api<DaemonSet> = Api::namespaced(c.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "daemon"},
        "spec": {"selector": {"matchLabels": {"app": "daemon"}},
                 "template": {"metadata": {"labels": {"app": "daemon"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                       "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                                           "nodeSelectorTerms": [{"matchExpressions": [
                                               {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": others}]}]}}}}}}
    }))?;
    let start = Instant::now();
    sets.create(&PostParams::default(), &ds).await?;
    until(
        "daemon pods available",
        Duration::from_secs(900),
        async || {
            let s = sets.get("daemon").await?.status.unwrap_or_default();
            Ok(s.desired_number_scheduled == DS_NODES as i32
                && s.number_available == Some(DS_NODES as i32))
        },
    )
    .await?;
    Ok(start.elapsed().as_secs_f64())
}

pub async fn run() -> Result<()> {
    let bin = procs::skiff_binary()?;
    let (_server, kubeconfig) = procs::start_control_plane(&bin)?;
    let c = client(&kubeconfig).await?;
    let _sim = procs::start_simulator(&bin, &kubeconfig, NODES, "bench")?;
    let nodes: Api<Node> = Api::all(c.clone());
    until("simulated nodes", Duration::from_secs(60), async || {
        Ok(nodes.list(&ListParams::default()).await?.items.len() == NODES)
    })
    .await?;
    until(
        "the default service account",
        Duration::from_secs(60),
        async || {
            Ok(
                Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(c.clone(), "default")
                    .get_opt("default")
                    .await?
                    .is_some(),
            )
        },
    )
    .await?;

    let reference = direct_pods(&c).await?;
    println!("reference: {REPLICAS} pods created directly and running: {reference:.1} s");

    let ds: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "big"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "big"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    }))?;
    let start = Instant::now();
    ds.create(&PostParams::default(), &d).await?;
    until(
        "1000 replicas available",
        Duration::from_secs(600),
        async || rolled_out(&ds).await,
    )
    .await?;
    let available = start.elapsed().as_secs_f64();
    println!("deployment of {REPLICAS} replicas fully available: {available:.1} s ({:.2}x the reference)", available / reference);

    let start = Instant::now();
    ds.patch("big", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}})))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    until("rollout finished", Duration::from_secs(900), async || {
        rolled_out(&ds).await
    })
    .await?;
    let rollout = start.elapsed().as_secs_f64();
    println!("rolling update of {REPLICAS} replicas (maxSurge 25%): {rollout:.1} s");
    let jobs = thousand_jobs(&c).await?;
    println!("{REPLICAS} one-pod jobs (pods exit 0 after 1 s) complete: {jobs:.1} s");
    let daemons = daemon_set(&c, &bin, &kubeconfig).await?;
    println!("daemon set across {DS_NODES} nodes, every pod available: {daemons:.1} s");
    println!("RESULT deploy_1000_available_s={available:.1} rollout_1000_s={rollout:.1} jobs_1000_s={jobs:.1} ds_1000_nodes_s={daemons:.1} direct_1000_pods_s={reference:.1}");
    Ok(())
}
