//! Keeping one daemon pod on each node that should run it, as upstream's
//! `manage` and `podsShouldBeOnNode`: a node that should run the pod and has
//! none gets one; a node that no longer should loses its pods; failed pods
//! are deleted (with back-off) to be re-created; extra pods on a node go,
//! oldest kept. Pods on nodes that no longer exist are left to pod GC, but
//! for unscheduled ones, which nothing else would ever delete.

use super::placement::Placement;
use super::util::{self, by_age, is_updated};
use super::{Ctx, Error, NodePods};
use crate::pods;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use skiff_machinery::client::CachedPod;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// At most this many creates, and as many deletes, per sync (upstream's
/// burstReplicas for DaemonSets).
const BURST: usize = 250;

/// What a sync changes: nodes to create a pod on and pods to delete, and
/// when to look again for failed pods whose back-off is still running.
#[derive(Default)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<Arc<CachedPod>>,
    pub requeue: Option<Duration>,
}

pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    placement: &Placement,
    node_pods: &NodePods,
    hash: &str,
    ctx: &Ctx,
) -> Plan {
    let mut plan = Plan::default();
    for node in nodes {
        on_node(ds, node, placement, node_pods, hash, ctx, &mut plan);
    }
    // An unscheduled pod meant for a node that is gone would stay pending
    // for ever: pod GC only collects pods bound to missing nodes.
    let existing: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for (node, pods) in node_pods {
        if existing.contains(node) {
            continue;
        }
        plan.delete.extend(
            pods.iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .unwrap_or("")
                            .is_empty()
                })
                .cloned(),
        );
    }
    plan
}

fn phase(p: &CachedPod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's podsShouldBeOnNode.
fn on_node(
    ds: &DaemonSet,
    node: &Node,
    placement: &Placement,
    node_pods: &NodePods,
    hash: &str,
    ctx: &Ctx,
    plan: &mut Plan,
) {
    let name = node.name_any();
    let (should_run, should_continue) = placement.should_run(node);
    let pods = node_pods.get(&name);
    if should_run && pods.is_none() {
        plan.create.push(name);
        return;
    }
    let Some(pods) = pods else { return };
    if !should_continue {
        plan.delete.extend(
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .cloned(),
        );
        return;
    }
    let mut running: Vec<Arc<CachedPod>> = Vec::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        match phase(p) {
            "Failed" => {
                // Deleted so it is re-created, but not faster than the back-off.
                let key = format!("{}/{name}", ds.uid().unwrap_or_default());
                if let Some(wait) = ctx.failed_pods.remaining(&key) {
                    plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
                    continue;
                }
                ctx.failed_pods.next(&key);
                ctx.recorder.record(
                    ds,
                    "Warning",
                    "FailedDaemonPod",
                    "Delete",
                    format!(
                        "Found failed daemon pod {}/{} on node {name}, will try to kill it",
                        p.namespace().unwrap_or_default(),
                        p.name_any()
                    ),
                );
                plan.delete.push(p.clone());
            }
            "Succeeded" => plan.delete.push(p.clone()),
            _ => running.push(p.clone()),
        }
    }
    if running.len() <= 1 {
        return;
    }
    running.sort_by(|a, b| by_age(a, b));
    if !util::allows_surge(ds) {
        // One pod per node: the oldest stays.
        plan.delete.extend(running.drain(1..));
        return;
    }
    // Surging, a node may hold the oldest old pod beside the oldest new one,
    // while the new one is not yet available and the old one is ready.
    let (mut oldest_new, mut oldest_old) = (None, None);
    for p in running {
        let slot = if is_updated(&p, hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete.push(p);
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if !pods::is_ready(&old) || pods::availability(&new, min_ready).is_ok() {
            plan.delete.push(old);
        }
    }
}

/// Creates pods on `create` (each pinned to its node by affinity, placed by
/// the scheduler) in slow-start batches and deletes `delete`, at most
/// BURST of each, recording what it expects to see.
pub async fn sync_nodes(
    ds: &DaemonSet,
    delete: &[Arc<CachedPod>],
    create: &[String],
    hash: &str,
    ctx: &Ctx,
) -> Result<(), Error> {
    let create = &create[..create.len().min(BURST)];
    let delete = &delete[..delete.len().min(BURST)];
    if create.is_empty() && delete.is_empty() {
        return Ok(());
    }
    let template = util::pod_template(ds, hash);
    let base = pods::pod_from_template(ds, &template, &ds.name_any());
    let (created, create_err) = pods::slow_start(create.len(), |i| {
        let mut pod = base.clone();
        let spec = pod.spec.get_or_insert_with(Default::default);
        spec.affinity = Some(util::pin_to_node(spec.affinity.take(), &create[i]));
        let client = ctx.client.clone();
        async move { pods::create_pod(&client, &pod).await }
    })
    .await;
    for p in &created {
        ctx.recorder.record(
            ds,
            "Normal",
            "SuccessfulCreate",
            "Create",
            format!("Created pod: {}", p.name_any()),
        );
    }
    if let Some(e) = &create_err {
        ctx.recorder.record(
            ds,
            "Warning",
            "FailedCreate",
            "Create",
            format!(
                "Error creating: {}",
                skiff_machinery::client::error_message(e)
            ),
        );
    }
    // Deletes go out all at once, as upstream's.
    let results = futures::future::join_all(
        delete
            .iter()
            .map(|p| pods::delete_pod(&ctx.client, p.clone())),
    )
    .await;
    let mut deleted = Vec::new();
    let mut delete_err = None;
    for r in results {
        match r {
            Ok(p) => {
                ctx.recorder.record(
                    ds,
                    "Normal",
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted pod: {}", p.name_any()),
                );
                deleted.push(pods::name_and_uid(&p));
            }
            Err(e) => {
                ctx.recorder.record(
                    ds,
                    "Warning",
                    "FailedDelete",
                    "Delete",
                    format!("Error deleting: {e}"),
                );
                delete_err = delete_err.or(Some(e));
            }
        }
    }
    ctx.expectations.expect(
        &super::key(ds),
        created.iter().map(|p| p.name_any()).collect(),
        deleted,
    );
    match create_err.or(delete_err) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
