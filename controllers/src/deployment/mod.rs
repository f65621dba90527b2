//! The Deployment controller, after upstream's: it owns one ReplicaSet per
//! pod template (named `<deployment>-<pod-template-hash>`), rolls from the
//! old ones to the new one by RollingUpdate (maxSurge / maxUnavailable) or
//! Recreate, scales proportionally when replicas change mid-rollout, keeps
//! revision annotations that `kubectl rollout history|undo` read, cleans up
//! beyond revisionHistoryLimit, and reports Available and Progressing
//! (with progressDeadlineSeconds).

mod rollout;
mod status;
pub mod util;

use crate::metrics::Controller;
use crate::pods;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::CachedPod;
use std::sync::Arc;
use std::time::Duration;
use util::*;

pub(crate) struct Ctx {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<CachedPod>,
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
    let (sets, set_events) = crate::resources::reflected::<ReplicaSet>(&client);
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let controller = Controller::new(
        "deployment",
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let owners = sets.clone();
    let ctx = Arc::new(Ctx {
        client,
        sets,
        pods,
        recorder,
    });
    controller
        // A replica set concerns its deployment, or, orphaned, every
        // deployment that selects it.
        .watches_shared_stream(set_events, move |rs: Arc<ReplicaSet>| {
            let ns = rs.namespace().unwrap_or_default();
            match pods::controller_of(&rs.metadata) {
                Some(r) if r.kind == "Deployment" => vec![ObjectRef::new(&r.name).within(&ns)],
                Some(_) => vec![],
                None => deployments
                    .state()
                    .iter()
                    .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|d| {
                        d.spec.as_ref().is_some_and(|s| {
                            pods::labels_match(&pods::selector_of(&s.selector), rs.labels())
                        })
                    })
                    .map(|d| ObjectRef::from_obj(&**d))
                    .collect(),
            }
        })
        // Pods going away let a Recreate rollout proceed.
        .watches_shared_stream(pod_events, move |pod: Arc<CachedPod>| {
            let ns = pod.namespace().unwrap_or_default();
            let Some(r) = pods::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
            else {
                return vec![];
            };
            owners
                .get(&ObjectRef::new(&r.name).within(&ns))
                .and_then(|rs| pods::controller_of(&rs.metadata).cloned())
                .filter(|d| d.kind == "Deployment")
                .map(|d| ObjectRef::new(&d.name).within(&ns))
                .into_iter()
                .collect()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Deployment>, err: &Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "deployment reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    for ready in [
        ctx.sets.wait_until_ready().await,
        ctx.pods.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    let spec = d.spec.clone().unwrap_or_default();
    let ns = d.namespace().unwrap_or_default();
    let selector = pods::selector_of(&spec.selector);
    let candidates: Vec<Arc<ReplicaSet>> = ctx
        .sets
        .state()
        .into_iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let sets = pods::claim(&ctx.client, &*d, &selector, candidates).await?;
    let sets: Vec<ReplicaSet> = sets.iter().map(|rs| (**rs).clone()).collect();
    if d.metadata.deletion_timestamp.is_some() {
        return status::sync_only(&d, &sets, &ctx).await;
    }
    let paused = spec.paused == Some(true);
    if paused || rollout::is_scaling_event(&d, &sets) {
        tracing::debug!(deployment = %d.name_any(), paused, "scaling without rolling");
        return rollout::sync_scale(&d, sets, paused, &ctx).await;
    }
    if is_rolling(&d) {
        rollout::rolling(&d, sets, &ctx).await
    } else {
        rollout::recreate(&d, sets, &ctx).await
    }
}

/// The replica set running the deployment's current template (the oldest,
/// should there be several), and the others.
pub(crate) fn split(
    d: &Deployment,
    sets: Vec<ReplicaSet>,
) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut sets = sets;
    sets.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let i = sets.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| same_template(t, &template))
    });
    match i {
        Some(i) => {
            let new = sets.remove(i);
            (Some(new), sets)
        }
        None => (None, sets),
    }
}

/// The new replica set, brought to the next revision, created if missing
/// and `create`. Records the revision on the deployment as upstream does.
pub(crate) async fn new_replica_set(
    d: &Deployment,
    new: Option<ReplicaSet>,
    old: &[ReplicaSet],
    create: bool,
    ctx: &Ctx,
) -> Result<Option<ReplicaSet>, Error> {
    let ns = d.namespace().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let max_old = old.iter().map(revision).max().unwrap_or(0);
    let next = (max_old + 1).to_string();
    let (surge_max, want) = (replicas(d) + max_surge(d), replicas(d));
    let rs = match new {
        Some(mut rs) => {
            let current = revision(&rs);
            let mut changed = false;
            let a = rs.metadata.annotations.get_or_insert_with(Default::default);
            if current < max_old + 1 {
                if current > 0 {
                    let history = a.get(REVISION_HISTORY).cloned();
                    let history = match history {
                        Some(h) if !h.is_empty() => format!("{h},{current}"),
                        _ => current.to_string(),
                    };
                    a.insert(REVISION_HISTORY.into(), history);
                }
                a.insert(REVISION.into(), next.clone());
                changed = true;
            }
            for (k, v) in copied_annotations(d) {
                if a.get(&k) != Some(&v) {
                    a.insert(k, v);
                    changed = true;
                }
            }
            changed |= set_replica_annotations(&mut rs, want, surge_max);
            if changed {
                rs = api
                    .replace(&rs.name_any(), &PostParams::default(), &rs)
                    .await?;
            }
            rs
        }
        None if !create => return Ok(None),
        None => {
            let spec = d.spec.clone().unwrap_or_default();
            let collisions = d.status.as_ref().and_then(|s| s.collision_count);
            let hash = template_hash(&spec.template, collisions);
            let mut template = spec.template.clone();
            template
                .metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), hash.clone());
            let mut selector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), hash.clone());
            let mut annotations = copied_annotations(d);
            annotations.insert(REVISION.into(), next.clone());
            annotations.insert(DESIRED_REPLICAS.into(), want.to_string());
            annotations.insert(MAX_REPLICAS.into(), surge_max.to_string());
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let initial = if is_rolling(d) {
                rollout::new_rs_replicas(d, &old.iter().collect::<Vec<_>>(), None)
            } else {
                0
            };
            let rs = ReplicaSet {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("{}-{hash}", d.name_any())),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    owner_references: Some(vec![pods::owner_ref(d)]),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                    replicas: Some(initial),
                    min_ready_seconds: spec.min_ready_seconds,
                    selector,
                    template: Some(template),
                }),
                status: None,
            };
            match api.create(&PostParams::default(), &rs).await {
                Ok(created) => {
                    if initial > 0 {
                        ctx.recorder.record(
                            d,
                            "Normal",
                            "ScalingReplicaSet",
                            "Scale",
                            format!(
                                "Scaled up replica set {} from 0 to {initial}",
                                created.name_any()
                            ),
                        );
                    }
                    status::progressing(
                        d,
                        "True",
                        "NewReplicaSetCreated",
                        &format!("Created new replica set {:?}", created.name_any()),
                        ctx,
                    )
                    .await?;
                    created
                }
                Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                    // Our own set, created by an earlier sync that the cache
                    // does not show yet, is the new set (upstream reads it
                    // back the same way). A set of that name with another
                    // template or owner is a collision: counted, so the next
                    // hash differs.
                    let existing = api.get(&rs.name_any()).await?;
                    let ours = pods::controller_of(&existing.metadata)
                        .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                    let same = existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| same_template(t, &spec.template));
                    if !(ours && same) {
                        status::bump_collisions(d, ctx).await?;
                        return Err(Error::Other(format!(
                            "hash collision for {}",
                            rs.name_any()
                        )));
                    }
                    existing
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    // The deployment shows the revision it runs.
    let current = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .cloned();
    let rs_revision = revision(&rs).to_string();
    if current.as_deref() != Some(rs_revision.as_str()) {
        let patch = serde_json::json!({"metadata": {"annotations": {REVISION: rs_revision}}});
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &d.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await?;
    }
    Ok(Some(rs))
}

/// Sets a replica set's size (and its replica annotations); records the
/// ScalingReplicaSet event. Returns the updated set.
pub(crate) async fn scale(
    d: &Deployment,
    rs: &ReplicaSet,
    to: i32,
    ctx: &Ctx,
) -> Result<ReplicaSet, Error> {
    let from = rs_replicas(rs);
    let mut next = rs.clone();
    let annotations_changed =
        set_replica_annotations(&mut next, replicas(d), replicas(d) + max_surge(d));
    if from == to && !annotations_changed {
        return Ok(next);
    }
    next.spec.get_or_insert_with(Default::default).replicas = Some(to);
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let updated = api
        .replace(&rs.name_any(), &PostParams::default(), &next)
        .await?;
    if from != to {
        let direction = if to > from { "up" } else { "down" };
        ctx.recorder.record(
            d,
            "Normal",
            "ScalingReplicaSet",
            "Scale",
            format!(
                "Scaled {direction} replica set {} from {from} to {to}",
                rs.name_any()
            ),
        );
    }
    Ok(updated)
}

/// Deletes the oldest fully scaled-down old sets beyond revisionHistoryLimit.
pub(crate) async fn cleanup(d: &Deployment, old: &[ReplicaSet], ctx: &Ctx) -> Result<(), Error> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| {
            rs_replicas(rs) == 0
                && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    idle.sort_by_key(|rs| {
        (
            revision(rs),
            rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    for rs in &idle[..idle.len() - limit] {
        match api.delete(&rs.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
