//! StatefulSet status, as upstream's updateStatus and
//! updateStatefulSetStatus: how many pods exist, are Running and Ready,
//! available, and at the current and update revisions; the two revisions'
//! names and the collision count. A RollingUpdate with every replica
//! updated and ready completes: the update revision becomes current.
//! `kubectl get sts` and `kubectl rollout status` read these.

use super::control::{is_rolling_update, is_running_and_ready, phase};
use super::history::Revisions;
use super::identity::{self, ordinal, revision_of};
use super::{unless_gone, Ctx};
use crate::pods;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_machinery::client::CachedPod;
use std::sync::Arc;
use std::time::Duration;

/// The status the set's pods (those with an ordinal) show.
pub fn compute(
    set: &StatefulSet,
    revs: &Revisions,
    pods: &[Arc<CachedPod>],
    deleted_for_update: i32,
) -> StatefulSetStatus {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (current, update) = (revs.current.name_any(), revs.update.name_any());
    let (mut replicas, mut ready, mut available, mut at_current, mut updated) = (0, 0, 0, 0, 0);
    for p in pods.iter().filter(|p| ordinal(p) >= 0) {
        let created = phase(p).is_some_and(|ph| !ph.is_empty());
        if created {
            replicas += 1;
        }
        if is_running_and_ready(p) {
            ready += 1;
            if pods::availability(p, min_ready).is_ok() {
                available += 1;
            }
        }
        if created && p.metadata.deletion_timestamp.is_none() {
            let rev = revision_of(p);
            at_current += (rev == current) as i32;
            updated += (rev == update) as i32;
        }
    }
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current),
        update_revision: Some(update),
        collision_count: Some(revs.collision_count),
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(at_current - deleted_for_update),
        updated_replicas: Some(updated),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    // Upstream's completeRollingUpdate.
    let want = identity::replicas(set) as i32;
    if is_rolling_update(set) && updated == want && ready == want && replicas == want {
        status.current_replicas = Some(updated);
        status.current_revision = status.update_revision.clone();
    }
    status
}

/// Writes the status when it differs; returns when to look again for pods
/// about to become available.
pub async fn write(
    set: &StatefulSet,
    status: &StatefulSetStatus,
    ctx: &Ctx,
) -> Result<Option<Duration>, kube::Error> {
    let old = set.status.clone().unwrap_or_default();
    let zero = |v: Option<i32>| v.unwrap_or(0);
    let differs = status.observed_generation > old.observed_generation
        || status.replicas != old.replicas
        || zero(status.ready_replicas) != zero(old.ready_replicas)
        || zero(status.available_replicas) != zero(old.available_replicas)
        || zero(status.current_replicas) != zero(old.current_replicas)
        || zero(status.updated_replicas) != zero(old.updated_replicas)
        || status.current_revision != old.current_revision
        || status.update_revision != old.update_revision
        || status.collision_count != old.collision_count;
    if differs {
        let api: Api<StatefulSet> =
            Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
        let patch = json!({"status": {
            "observedGeneration": status.observed_generation,
            "replicas": status.replicas,
            "readyReplicas": status.ready_replicas,
            "availableReplicas": status.available_replicas,
            "currentReplicas": status.current_replicas,
            "updatedReplicas": status.updated_replicas,
            "currentRevision": status.current_revision,
            "updateRevision": status.update_revision,
            "collisionCount": status.collision_count,
        }});
        let params = PatchParams::default();
        unless_gone(
            api.patch_status(&set.name_any(), &params, &Patch::Merge(patch))
                .await,
        )?;
    }
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (ready, available) = (
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    Ok((min_ready > 0 && ready != available).then(|| Duration::from_secs(min_ready as u64)))
}
