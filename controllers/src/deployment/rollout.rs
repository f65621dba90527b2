//! How a deployment moves between replica sets, as upstream's rolling.go,
//! recreate.go and sync.go: surge the new set within maxSurge, scale old
//! sets down within maxUnavailable (unhealthy ones first), Recreate's
//! all-down-then-up, and proportional scaling when replicas change
//! mid-rollout.

use super::util::*;
use super::{cleanup, new_replica_set, scale, split, status, Ctx, Error};
use crate::pods;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::runtime::controller::Action;
use kube::ResourceExt;

/// How many replicas the new set may have now (upstream's NewRSNewReplicas
/// for RollingUpdate).
pub(crate) fn new_rs_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
) -> i32 {
    let want = replicas(d);
    let current_new = new.map_or(0, rs_replicas);
    // `all` holds the new set too, once it exists.
    let total = spec_sum(all);
    let max_total = want + max_surge(d);
    if total >= max_total {
        return current_new;
    }
    let up = (max_total - total).min(want - current_new);
    current_new + up.max(0)
}

pub(crate) async fn rolling(
    d: &Deployment,
    sets: Vec<ReplicaSet>,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let (new, old) = split(d, sets);
    let new = new_replica_set(d, new, &old, true, ctx)
        .await?
        .expect("created");
    let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();

    // Scale the new set up (or down to the target).
    let want = replicas(d);
    let new_size = rs_replicas(&new);
    if new_size != want {
        let target = if new_size > want {
            want
        } else {
            new_rs_replicas(d, &all, Some(&new))
        };
        if target != new_size {
            let new = scale(d, &new, target, ctx).await?;
            return status::sync_rollout(d, &new_and_old(&new, &old), Some(&new), ctx).await;
        }
    }

    // Scale old sets down as far as availability allows.
    let active_old: Vec<ReplicaSet> = old
        .iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .cloned()
        .collect();
    if !active_old.is_empty() {
        let old_after = scale_down_old(d, &active_old, &new, ctx).await?;
        if let Some(changed) = old_after {
            let mut everything = old.clone();
            for rs in changed {
                if let Some(slot) = everything.iter_mut().find(|o| o.uid() == rs.uid()) {
                    *slot = rs;
                }
            }
            return status::sync_rollout(d, &new_and_old(&new, &everything), Some(&new), ctx).await;
        }
    }
    let all_now = new_and_old(&new, &old);
    if status::complete(d, &status::calculate(d, &all_now, Some(&new))) {
        cleanup(d, &old, ctx).await?;
    }
    status::sync_rollout(d, &all_now, Some(&new), ctx).await
}

fn new_and_old(new: &ReplicaSet, old: &[ReplicaSet]) -> Vec<ReplicaSet> {
    old.iter()
        .cloned()
        .chain(std::iter::once(new.clone()))
        .collect()
}

/// upstream's reconcileOldReplicaSets: returns the old sets it changed, or
/// `None` when it could not scale any down.
async fn scale_down_old(
    d: &Deployment,
    old: &[ReplicaSet],
    new: &ReplicaSet,
    ctx: &Ctx,
) -> Result<Option<Vec<ReplicaSet>>, Error> {
    let old_refs: Vec<&ReplicaSet> = old.iter().collect();
    let all_pods = spec_sum(&old_refs) + rs_replicas(new);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new) - rs_available(new);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(None);
    }
    let mut sets: Vec<ReplicaSet> = old.to_vec();
    sets.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut changed = Vec::new();
    // Unhealthy replicas first: they cost no availability.
    let mut cleaned = 0;
    for rs in sets.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let (size, available) = (rs_replicas(rs), rs_available(rs));
        if size == 0 || size == available {
            continue;
        }
        if available > size {
            // The set's status still counts pods of a size it was scaled
            // down from; "cleaning up" would scale it up. Wait for its
            // status, as upstream does (cleanupUnhealthyReplicas' error).
            return Err(Error::Other(format!(
                "replica set {} reports {available} available of {size}: status not caught up",
                rs.name_any()
            )));
        }
        let down = (max_scaled_down - cleaned).min(size - available);
        *rs = scale(d, rs, size - down, ctx).await?;
        changed.push(rs.clone());
        cleaned += down;
    }
    // Then healthy ones, keeping minAvailable.
    let all_refs: Vec<&ReplicaSet> = sets.iter().chain(std::iter::once(new)).collect();
    let available = available_sum(&all_refs);
    if available > min_available {
        let total_down = available - min_available;
        let mut done = 0;
        for rs in sets.iter_mut() {
            if done >= total_down {
                break;
            }
            let size = rs_replicas(rs);
            if size == 0 {
                continue;
            }
            let down = size.min(total_down - done);
            *rs = scale(d, rs, size - down, ctx).await?;
            changed.push(rs.clone());
            done += down;
        }
    }
    Ok(if changed.is_empty() {
        None
    } else {
        Some(changed)
    })
}

pub(crate) async fn recreate(
    d: &Deployment,
    sets: Vec<ReplicaSet>,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let (new, old) = split(d, sets);
    let new = new_replica_set(d, new, &old, false, ctx).await?;
    // Every old set down first.
    let mut scaled = false;
    let mut old_now = Vec::new();
    for rs in &old {
        if rs_replicas(rs) > 0 {
            old_now.push(scale(d, rs, 0, ctx).await?);
            scaled = true;
        } else {
            old_now.push(rs.clone());
        }
    }
    let all: Vec<ReplicaSet> = old_now.iter().cloned().chain(new.clone()).collect();
    if scaled {
        return status::sync_rollout(d, &all, new.as_ref(), ctx).await;
    }
    // Then wait until none of their pods runs any more.
    let ns = d.namespace().unwrap_or_default();
    let old_uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
    let old_running = ctx.pods.state().iter().any(|p| {
        p.namespace().as_deref() == Some(ns.as_str())
            && pods::controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
    });
    if old_running {
        return status::sync_rollout(d, &all, new.as_ref(), ctx).await;
    }
    let new = new_replica_set(d, new, &old_now, true, ctx)
        .await?
        .expect("created");
    let new = scale(d, &new, replicas(d), ctx).await?;
    let all = new_and_old(&new, &old_now);
    if status::complete(d, &status::calculate(d, &all, Some(&new))) {
        cleanup(d, &old_now, ctx).await?;
    }
    status::sync_rollout(d, &all, Some(&new), ctx).await
}

/// Replicas changed since the sets were sized (upstream's isScalingEvent):
/// an active set's desired-replicas annotation differs from the spec.
pub(crate) fn is_scaling_event(d: &Deployment, sets: &[ReplicaSet]) -> bool {
    let want = replicas(d);
    sets.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| desired_replicas_annotation(rs).is_some_and(|n| n != want))
}

/// Scaling without rolling (also all a paused deployment does), as
/// upstream's sync and scale.
pub(crate) async fn sync_scale(
    d: &Deployment,
    sets: Vec<ReplicaSet>,
    paused: bool,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let (new, old) = split(d, sets);
    let new = new_replica_set(d, new, &old, false, ctx).await?;
    let mut all: Vec<ReplicaSet> = old.iter().cloned().chain(new.clone()).collect();
    proportional_scale(d, &mut all, new.as_ref(), ctx).await?;
    let (new, old) = match &new {
        Some(n) => {
            let n = all.iter().find(|rs| rs.uid() == n.uid()).cloned();
            (
                n,
                all.iter()
                    .filter(|rs| Some(rs.uid()) != new.as_ref().map(|x| x.uid()))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        }
        None => (None, all.clone()),
    };
    if paused {
        cleanup(d, &old, ctx).await?;
    }
    status::sync_plain(d, &all, new.as_ref(), ctx).await
}

async fn proportional_scale(
    d: &Deployment,
    all: &mut [ReplicaSet],
    new: Option<&ReplicaSet>,
    ctx: &Ctx,
) -> Result<(), Error> {
    let want = replicas(d);
    let is_new = |rs: &ReplicaSet| new.is_some_and(|n| n.uid() == rs.uid());
    let active: Vec<usize> = (0..all.len())
        .filter(|&i| rs_replicas(&all[i]) > 0)
        .collect();
    // One active set (or none): it simply takes the new size.
    if active.len() <= 1 {
        let target = match active.first() {
            Some(&i) => Some(i),
            None => all.iter().position(|rs| is_new(rs)).or_else(|| {
                (0..all.len())
                    .max_by_key(|&i| all[i].metadata.creation_timestamp.as_ref().map(|t| t.0))
            }),
        };
        if let Some(i) = target {
            if rs_replicas(&all[i]) != want || desired_replicas_annotation(&all[i]) != Some(want) {
                all[i] = scale(d, &all[i], want, ctx).await?;
            }
        }
        return Ok(());
    }
    // The new set is saturated: old ones go to zero.
    if let Some(n) = new {
        if desired_replicas_annotation(n) == Some(want)
            && rs_available(n) == want
            && rs_replicas(n) == want
        {
            for &i in &active {
                if !is_new(&all[i]) {
                    all[i] = scale(d, &all[i], 0, ctx).await?;
                }
            }
            return Ok(());
        }
    }
    if !is_rolling(d) {
        return Ok(());
    }
    let active_refs: Vec<&ReplicaSet> = active.iter().map(|&i| &all[i]).collect();
    let current = spec_sum(&active_refs);
    let allowed = if want > 0 { want + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    if to_add == 0 {
        return Ok(());
    }
    // Largest first; on ties newer first when growing, older first when
    // shrinking (upstream's ReplicaSetsBySizeNewer / BySizeOlder).
    let mut order = active.clone();
    order.sort_by(|&a, &b| {
        let created = |i: usize| all[i].metadata.creation_timestamp.as_ref().map(|t| t.0);
        let by_age = if to_add > 0 {
            created(b).cmp(&created(a))
        } else {
            created(a).cmp(&created(b))
        };
        rs_replicas(&all[b]).cmp(&rs_replicas(&all[a])).then(by_age)
    });
    let annotated_total = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::new();
    for &i in &order {
        let rs = &all[i];
        let size = rs_replicas(rs);
        let proportion = if to_add == added {
            0
        } else {
            let fraction = if want == 0 {
                -size
            } else {
                let full = want + max_surge(d);
                let annotated = max_replicas_annotation(rs)
                    .unwrap_or(annotated_total)
                    .max(1);
                ((size as f64 * full as f64) / annotated as f64).round() as i32 - size
            };
            let allowed = to_add - added;
            if to_add > 0 {
                fraction.min(allowed)
            } else {
                fraction.max(allowed)
            }
        };
        added += proportion;
        sizes.push((i, size + proportion));
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    for (i, size) in sizes {
        all[i] = scale(d, &all[i], size, ctx).await?;
    }
    Ok(())
}
