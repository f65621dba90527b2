//! DaemonSet status, as upstream's `updateDaemonSetStatus`: per node that
//! should run the pod, whether it has one (current), whether the oldest is
//! ready, available and of the current revision; pods on nodes that should
//! not run it are misscheduled. `kubectl get ds` prints these and
//! `kubectl rollout status` waits on them and observedGeneration.

use super::placement::Placement;
use super::util::{by_age, is_updated};
use super::{Ctx, NodePods};
use crate::pods;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Writes the counts (and, once the sync acted on this generation,
/// observedGeneration); returns when to look again for pods about to
/// become available.
pub async fn update(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    placement: &Placement,
    node_pods: &NodePods,
    hash: &str,
    observed: bool,
    ctx: &Ctx,
) -> Result<Option<Duration>, kube::Error> {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let should_run = placement.should_run(node).0;
        let pods = node_pods.get(&node.name_any()).filter(|p| !p.is_empty());
        match (should_run, pods) {
            (true, None) => desired += 1,
            (true, Some(pods)) => {
                desired += 1;
                current += 1;
                let pod = pods.iter().min_by(|a, b| by_age(a, b)).expect("non-empty");
                if pods::is_ready(pod) {
                    ready += 1;
                    if pods::availability(pod, min_ready).is_ok() {
                        available += 1;
                    }
                }
                if is_updated(pod, hash) {
                    updated += 1;
                }
            }
            (false, Some(_)) => misscheduled += 1,
            (false, None) => {}
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    let generation = ds.metadata.generation;
    let status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(updated),
        observed_generation: if observed {
            generation
        } else {
            old.observed_generation
        },
        ..old.clone()
    };
    let zero = |s: &DaemonSetStatus| {
        let mut s = s.clone();
        for v in [
            &mut s.number_available,
            &mut s.number_unavailable,
            &mut s.updated_number_scheduled,
        ] {
            v.get_or_insert(0);
        }
        s
    };
    if zero(&status) != zero(&old) {
        let api: Api<DaemonSet> =
            Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
        let patch = json!({"status": {
            "desiredNumberScheduled": status.desired_number_scheduled,
            "currentNumberScheduled": status.current_number_scheduled,
            "numberMisscheduled": status.number_misscheduled,
            "numberReady": status.number_ready,
            "numberAvailable": status.number_available,
            "numberUnavailable": status.number_unavailable,
            "updatedNumberScheduled": status.updated_number_scheduled,
            "observedGeneration": status.observed_generation,
        }});
        match api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: nothing to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    // Pods ready but not yet for minReadySeconds become available later.
    Ok((min_ready > 0 && ready != available).then(|| Duration::from_secs(min_ready as u64)))
}
