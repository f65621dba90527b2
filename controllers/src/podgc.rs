//! Pod garbage collection (upstream's podgc): pods bound to nodes that no
//! longer exist and terminating pods that were never scheduled are force
//! deleted; finished pods beyond the threshold are deleted, oldest first.

use crate::resources::cached;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Client, ResourceExt};
use skiff_machinery::client::CachedPod;
use std::collections::HashSet;
use std::time::Duration;

/// How often pods are looked at (upstream: 20 s).
const PERIOD: Duration = Duration::from_secs(20);

pub async fn run(client: Client, terminated_threshold: usize) -> anyhow::Result<()> {
    let queue = crate::metrics::queue("podgc");
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        if let Err(e) = queue.pass(collect(&client, terminated_threshold)).await {
            tracing::warn!(error = %e, "pod GC pass failed");
        }
    }
}

pub async fn collect(client: &Client, terminated_threshold: usize) -> anyhow::Result<()> {
    // The shared caches, not lists: tens of thousands of pods every 20 s.
    let nodes: HashSet<String> = cached::<Node>(client)
        .await?
        .state()
        .iter()
        .map(|n| n.name_any())
        .collect();
    let pods = cached::<CachedPod>(client).await?.state();
    let mut terminated: Vec<&CachedPod> = Vec::new();
    for pod in pods.iter().map(|p| &**p) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty());
        let orphaned = node.is_some_and(|n| !nodes.contains(n));
        let unscheduled_terminating = node.is_none() && pod.metadata.deletion_timestamp.is_some();
        if orphaned || unscheduled_terminating {
            force_delete(client, pod).await?;
            continue;
        }
        if matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) {
            terminated.push(pod);
        }
    }
    if terminated.len() > terminated_threshold {
        terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = terminated.len() - terminated_threshold;
        for pod in terminated.into_iter().take(excess) {
            force_delete(client, pod).await?;
        }
    }
    Ok(())
}

async fn force_delete(client: &Client, pod: &CachedPod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &dp).await {
        Ok(_) => {
            tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), "pod garbage collected");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
