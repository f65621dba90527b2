//! The DaemonSet controller, after upstream's `syncDaemonSet`: one pod on
//! each node the pod template fits (nodeSelector, required node affinity,
//! taints against tolerations with the daemon defaults added). Pods are
//! placed by the scheduler, pinned to their node by a required node
//! affinity on `metadata.name`. Template history lives in
//! ControllerRevisions, whose hash labels the pods; RollingUpdate
//! (maxUnavailable / maxSurge) replaces pods of older revisions, OnDelete
//! waits for them to be deleted. Status carries the numbers `kubectl get ds`
//! and `kubectl rollout status` read.

mod backoff;
mod history;
mod manage;
mod placement;
mod status;
mod update;
pub mod util;

use crate::metrics::Controller;
use crate::pods::{self, Expectations};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use placement::Placement;
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::CachedPod;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A DaemonSet's pods by the node they are on or meant for.
pub(crate) type NodePods = BTreeMap<String, Vec<Arc<CachedPod>>>;

pub(crate) struct Ctx {
    client: Client,
    pods: Store<CachedPod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    failed_pods: backoff::Backoff,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

pub async fn run(client: Client, recorder: Recorder) -> anyhow::Result<()> {
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let (nodes, node_events) = crate::resources::reflected::<Node>(&client);
    let (revisions, revision_events) = crate::resources::reflected::<ControllerRevision>(&client);
    let controller = Controller::new(
        "daemonset",
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let (pod_sets, node_sets, node_cache) = (sets.clone(), sets.clone(), nodes.clone());
    let seen_nodes: Mutex<HashMap<String, u64>> = Mutex::default();
    let ctx = Arc::new(Ctx {
        client,
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
        failed_pods: backoff::Backoff::default(),
        recorder,
    });
    controller
        // A pod concerns its daemon set, or, orphaned, every set that selects it.
        .watches_shared_stream(pod_events, move |pod: Arc<CachedPod>| {
            pods::sets_for_pod(&pod, "DaemonSet", || {
                pods::selecting(&pod_sets, &pod, |ds| ds.spec.as_ref().map(|s| &s.selector))
            })
        })
        .watches_shared_stream(revision_events, |rev: Arc<ControllerRevision>| {
            let ns = rev.namespace().unwrap_or_default();
            pods::controller_of(&rev.metadata)
                .filter(|r| r.kind == "DaemonSet")
                .map(|r| ObjectRef::new(&r.name).within(&ns))
                .into_iter()
                .collect::<Vec<_>>()
        })
        // A node that comes, goes, or changes what may run on it concerns
        // every daemon set; its heartbeats concern none.
        .watches_shared_stream(node_events, move |node: Arc<Node>| {
            let name = node.name_any();
            let mut seen = seen_nodes.lock().unwrap_or_else(|e| e.into_inner());
            let changed = if node_cache.get(&ObjectRef::new(&name)).is_none() {
                seen.remove(&name).is_some()
            } else {
                let print = fingerprint(&node);
                seen.insert(name, print) != Some(print)
            };
            if !changed {
                return vec![];
            }
            node_sets
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(&**ds))
                .collect()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// What of a node decides where daemons run (upstream's
/// shouldIgnoreNodeUpdate: anything but condition timestamps and status
/// heartbeats; labels, taints, cordons and condition states are what count).
fn fingerprint(node: &Node) -> u64 {
    let spec = node.spec.as_ref();
    let conditions: Vec<(&str, &str)> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.labels().hash(&mut h);
    serde_json::to_string(&spec.and_then(|s| s.taints.as_ref()))
        .unwrap_or_default()
        .hash(&mut h);
    spec.and_then(|s| s.unschedulable).hash(&mut h);
    conditions.hash(&mut h);
    h.finish()
}

fn error_policy(_: Arc<DaemonSet>, err: &Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "daemonset reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

pub(crate) fn key(ds: &DaemonSet) -> String {
    format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())
}

/// Pods by target node; finished pods already being deleted are gone as
/// far as the controller cares.
fn by_node(pods: &[Arc<CachedPod>]) -> NodePods {
    let mut map = NodePods::new();
    for p in pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        if terminal && p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = util::target_node(p) {
            map.entry(node).or_default().push(p.clone());
        }
    }
    map
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    for ready in [
        ctx.pods.wait_until_ready().await,
        ctx.nodes.wait_until_ready().await,
        ctx.revisions.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let selects_all = spec
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|l| l.is_empty())
        && spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if selects_all {
        ctx.recorder.record(
            &*ds,
            "Warning",
            "SelectingAll",
            "Sync",
            "This daemon set is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(Action::await_change());
    }
    // Being deleted, its revisions may be gone already: the status could
    // not be computed reliably, and the garbage collector removes the pods.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut nodes = ctx.nodes.state();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let (current, old) = history::construct(&ds, &ctx).await?;
    let hash = history::hash_of(&current);

    let ns = ds.namespace().unwrap_or_default();
    // Its own pods and its namespace's orphans, from the shared owner index.
    let candidates =
        crate::resources::owned_or_orphaned::<CachedPod>(&ds.uid().unwrap_or_default(), &ns);
    let mine = pods::claim(
        &ctx.client,
        &*ds,
        &pods::selector_of(&spec.selector),
        candidates,
    )
    .await?;
    let node_pods = by_node(&mine);
    let placement = Placement::new(&ds);
    let key = key(&ds);

    if !ctx.expectations.satisfied(&key, &ctx.pods, &ns) {
        // Waiting to see our own creates and deletes: report, but do not
        // claim to have acted on this generation.
        status::update(&ds, &nodes, &placement, &node_pods, &hash, false, &ctx).await?;
        return Ok(Action::await_change());
    }
    let plan = manage::plan(&ds, &nodes, &placement, &node_pods, &hash, &ctx);
    let mut result = manage::sync_nodes(&ds, &plan.delete, &plan.create, &hash, &ctx).await;
    // Roll only once manage has nothing in flight.
    if result.is_ok()
        && util::is_rolling_update(&ds)
        && ctx.expectations.satisfied(&key, &ctx.pods, &ns)
    {
        let roll = update::rolling_update(&ds, &nodes, &placement, node_pods.clone(), &hash);
        result = manage::sync_nodes(&ds, &roll.delete, &roll.create, &hash, &ctx).await;
    }
    if result.is_ok() {
        // Every claimed pod, finished and deleted ones too, keeps its revision.
        result = history::cleanup(&ds, old, &mine, &ctx).await;
    }
    let recheck = status::update(&ds, &nodes, &placement, &node_pods, &hash, true, &ctx).await?;
    result?;
    let next = [plan.requeue, recheck].into_iter().flatten().min();
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}
