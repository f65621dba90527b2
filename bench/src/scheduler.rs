//! `scheduler`: in the spirit of upstream's scheduler_perf SchedulingBasic.
//! N Ready nodes (objects only) and 10,000 pending pods; a `skiff scheduler`
//! process binds them through a release `skiff server`, and pods/s is
//! measured from the first bind to the last, as seen by a watch. Then the
//! algorithm alone, in process, over the same shapes.

use crate::api::{client, make_namespace, median};
use crate::procs;
use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::json;
use skiff_machinery::client::CachedPod;
use skiff_scheduler::cache::Cache;
use skiff_scheduler::config::Configuration;
use skiff_scheduler::podinfo::PodInfo;
use skiff_scheduler::schedule::{Algorithm, Decision};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PODS: usize = 10_000;
const CREATORS: usize = 32;
/// Rounds of the in-process algorithm; the median is reported.
const ALGO_ROUNDS: usize = 3;

fn node(i: usize) -> Node {
    let resources =
        json!({"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
        }},
        "status": {"capacity": resources, "allocatable": resources,
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("node literal")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "bench", "uid": format!("uid-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "localhost/busybox:latest",
                 "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}
    }))
    .expect("pod literal")
}

async fn create_all<T, F>(count: usize, make: F) -> Result<()>
where
    F: Fn(usize) -> futures::future::BoxFuture<'static, Result<T, kube::Error>>,
{
    futures::stream::iter((0..count).map(make))
        .buffer_unordered(CREATORS)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Binds/s end to end with `nodes` nodes.
async fn end_to_end(bin: &std::path::Path, nodes: usize) -> Result<f64> {
    let (_server, kubeconfig) = procs::start_server(bin, None)?;
    let c = client(&kubeconfig).await?;
    make_namespace(&c, "bench").await?;
    let node_api: Api<Node> = Api::all(c.clone());
    create_all(nodes, |i| {
        let api = node_api.clone();
        Box::pin(async move { api.create(&PostParams::default(), &node(i)).await })
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "bench");
    create_all(PODS, |i| {
        let api = pods.clone();
        let mut p = pod(i);
        p.metadata.uid = None;
        Box::pin(async move { api.create(&PostParams::default(), &p).await })
    })
    .await?;
    let rv = pods
        .list_metadata(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watch = watch_binds(c.clone(), rv);
    let _scheduler = procs::start_scheduler(bin, &kubeconfig)?;
    let (first, last) = tokio::time::timeout(Duration::from_secs(600), watch).await??;
    let secs = (last - first).as_secs_f64().max(1e-3);
    // Events are written in the background and dropped when they pile up
    // (as upstream's recorder does): say how many made it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "bench");
    let written = events.list_metadata(&Default::default()).await?.items.len();
    println!("  {nodes} nodes: {written} of {PODS} Scheduled events written");
    Ok((PODS - 1) as f64 / secs)
}

/// Watches the pods until all are bound: when the first and the last bind showed.
async fn watch_binds(c: Client, rv: String) -> Result<(Instant, Instant)> {
    let pods: Api<Pod> = Api::namespaced(c, "bench");
    let mut seen = std::collections::HashSet::new();
    let mut first = None;
    let mut rv = rv;
    loop {
        let mut stream = pods
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        while let Some(ev) = stream.try_next().await? {
            let p = match ev {
                WatchEvent::Modified(p) | WatchEvent::Added(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("watch: {e:?}"),
            };
            rv = p.metadata.resource_version.clone().unwrap_or_default();
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && seen.insert(p.metadata.name.clone().unwrap_or_default())
            {
                let now = Instant::now();
                first.get_or_insert(now);
                if seen.len() == PODS {
                    return Ok((first.unwrap(), now));
                }
            }
        }
    }
}

/// Pods/s of the default profile alone, deciding and assuming in memory.
fn algorithm_alone(nodes: usize) -> Result<f64> {
    let profiles = Configuration::default()
        .profiles()
        .map_err(anyhow::Error::msg)?;
    let profile = &profiles[0];
    let pods: Vec<Arc<PodInfo>> = (0..PODS)
        .map(|i| Arc::new(PodInfo::new(Arc::new(CachedPod::from(&pod(i))))))
        .collect();
    let mut rounds = Vec::new();
    for _ in 0..ALGO_ROUNDS {
        let mut cache = Cache::default();
        for i in 0..nodes {
            cache.set_node(Arc::new(node(i)));
        }
        let mut algorithm = Algorithm::default();
        let start = Instant::now();
        for p in &pods {
            match algorithm.schedule(profile, &cache, p) {
                Decision::Node(n) => cache.assume(p.clone(), &n),
                other => anyhow::bail!("pod did not fit: {other:?}"),
            }
        }
        rounds.push(PODS as f64 / start.elapsed().as_secs_f64());
    }
    Ok(median(rounds))
}

pub async fn run() -> Result<()> {
    let bin = procs::skiff_binary()?;
    let algo_5000 = algorithm_alone(5000)?;
    println!("algorithm alone, 5000 nodes: {algo_5000:.0} pods/s (median of {ALGO_ROUNDS})");
    let mut e2e = Vec::new();
    for nodes in [500, 5000, 15000] {
        let rate = end_to_end(&bin, nodes).await?;
        println!("end to end, {nodes} nodes, {PODS} pods: {rate:.0} pods/s");
        e2e.push(rate);
    }
    println!(
        "RESULT e2e_pods_per_s_5000n={:.0} algo_pods_per_s_5000n={algo_5000:.0} e2e_pods_per_s_500n={:.0} e2e_pods_per_s_15000n={:.0}",
        e2e[1], e2e[0], e2e[2]
    );
    Ok(())
}
