//! A deployment's status, as upstream's: counts summed over its replica
//! sets, Available (minimum availability under maxUnavailable), and
//! Progressing with progressDeadlineSeconds (NewReplicaSetCreated,
//! ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded,
//! DeploymentPaused / DeploymentResumed).

use super::util::*;
use super::{split, Ctx, Error};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping its transition time when the status is unchanged.
fn set_condition(
    s: &mut DeploymentStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) {
    let conditions = s.conditions.get_or_insert_with(Vec::new);
    let at = now();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message.as_str())
        {
            return;
        }
        if c.status != status {
            c.last_transition_time = Some(at.clone());
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message);
        c.last_update_time = Some(at);
        return;
    }
    conditions.push(DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(at.clone()),
        last_transition_time: Some(at),
    });
}

pub(crate) fn calculate(
    d: &Deployment,
    all: &[ReplicaSet],
    new: Option<&ReplicaSet>,
) -> DeploymentStatus {
    let refs: Vec<&ReplicaSet> = all.iter().collect();
    let old = d.status.clone().unwrap_or_default();
    let available = available_sum(&refs);
    let total = spec_sum(&refs);
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual_sum(&refs)),
        updated_replicas: Some(new.map_or(0, |n| actual_sum(&[n]))),
        ready_replicas: Some(ready_sum(&refs)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        ..Default::default()
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        );
    } else {
        set_condition(
            &mut s,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        );
    }
    s
}

/// Upstream's DeploymentComplete.
pub(crate) fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation >= d.metadata.generation
}

/// Upstream's DeploymentProgressing: some count moved the right way.
fn progressed(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(s.replicas) - n(s.updated_replicas);
    n(s.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

fn deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

async fn write(d: &Deployment, s: &DeploymentStatus, ctx: &Ctx) -> Result<(), Error> {
    if d.status.as_ref() == Some(s) {
        return Ok(());
    }
    Api::<Deployment>::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default())
        .patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": s})),
        )
        .await?;
    Ok(())
}

/// Status after a rollout step, with the Progressing condition.
pub(crate) async fn sync_rollout(
    d: &Deployment,
    all: &[ReplicaSet],
    new: Option<&ReplicaSet>,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let mut s = calculate(d, all, new);
    let new_name = new.map(|n| n.name_any()).unwrap_or_default();
    let current = condition(&s, "Progressing").cloned();
    if current.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused") {
        set_condition(
            &mut s,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
        );
    }
    let mut requeue = None;
    match deadline(d) {
        None => {
            if let Some(c) = s.conditions.as_mut() {
                c.retain(|c| c.type_ != "Progressing");
            }
        }
        Some(secs) => {
            let done_before = s.replicas == s.updated_replicas
                && current.as_ref().and_then(|c| c.reason.as_deref())
                    == Some("NewReplicaSetAvailable");
            if !done_before {
                if complete(d, &s) {
                    set_condition(
                        &mut s,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet {new_name:?} has successfully progressed."),
                    );
                } else if progressed(d, &s) {
                    // Progress refreshes lastUpdateTime, which the deadline counts from.
                    let msg = format!("ReplicaSet {new_name:?} is progressing.");
                    set_condition(&mut s, "Progressing", "True", "ReplicaSetUpdated", msg);
                    if let Some(c) = s
                        .conditions
                        .as_mut()
                        .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Progressing"))
                    {
                        c.last_update_time = Some(now());
                    }
                    requeue = Some(Duration::from_secs(secs.max(0) as u64));
                } else if let Some(c) = &current {
                    let since = c
                        .last_update_time
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or_else(k8s_openapi::jiff::Timestamp::now);
                    let elapsed = k8s_openapi::jiff::Timestamp::now()
                        .duration_since(since)
                        .as_secs();
                    if c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                        || elapsed >= secs as i64
                    {
                        set_condition(
                            &mut s,
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            format!("ReplicaSet {new_name:?} has timed out progressing."),
                        );
                    } else {
                        requeue = Some(Duration::from_secs((secs as i64 - elapsed).max(1) as u64));
                    }
                }
            }
        }
    }
    write(d, &s, ctx).await?;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Status without rollout bookkeeping (scaling, paused, deleting).
pub(crate) async fn sync_plain(
    d: &Deployment,
    all: &[ReplicaSet],
    new: Option<&ReplicaSet>,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let mut s = calculate(d, all, new);
    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    let reason = condition(&s, "Progressing").and_then(|c| c.reason.clone());
    if paused && deadline(d).is_some() && reason.as_deref() != Some("DeploymentPaused") {
        set_condition(
            &mut s,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
        );
    }
    write(d, &s, ctx).await?;
    Ok(Action::await_change())
}

pub(crate) async fn sync_only(
    d: &Deployment,
    sets: &[ReplicaSet],
    ctx: &Ctx,
) -> Result<Action, Error> {
    let (new, old) = split(d, sets.to_vec());
    let all: Vec<ReplicaSet> = old.into_iter().chain(new.clone()).collect();
    sync_plain(d, &all, new.as_ref(), ctx).await
}

/// Records the Progressing condition right away (a new set was created).
pub(crate) async fn progressing(
    d: &Deployment,
    status: &str,
    reason: &str,
    message: &str,
    ctx: &Ctx,
) -> Result<(), Error> {
    if deadline(d).is_none() {
        return Ok(());
    }
    let mut s = d.status.clone().unwrap_or_default();
    set_condition(&mut s, "Progressing", status, reason, message.into());
    write(d, &s, ctx).await
}

pub(crate) async fn bump_collisions(d: &Deployment, ctx: &Ctx) -> Result<(), Error> {
    let mut s = d.status.clone().unwrap_or_default();
    s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
    write(d, &s, ctx).await
}
