//! The ReplicaSet controller: keeps `replicas` pods matching the selector.
//! It adopts matching orphans and releases pods that stop matching; creates
//! missing pods in slow-start batches and deletes surplus ones in upstream's
//! order (unscheduled, pending, not ready, doubled-up, newest first); and
//! reports replicas / fullyLabeledReplicas / readyReplicas /
//! availableReplicas / observedGeneration. Expectations keep a slow watch
//! from causing double creates.

use crate::metrics::Controller;
use crate::pacing::Pacer;
use crate::pods::{self, Expectations};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::CachedPod;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many creates or deletes per sync (upstream's burstReplicas).
const BURST: usize = 500;
/// The least time between two reconciles of one set (see `pacing`).
const RECONCILE_GAP: Duration = Duration::from_millis(100);

struct Ctx {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<CachedPod>,
    expectations: Expectations,
    recorder: Recorder,
    pacer: Pacer,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

pub async fn run(client: Client, recorder: Recorder) -> anyhow::Result<()> {
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let controller = Controller::new(
        "replicaset",
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let ctx = Arc::new(Ctx {
        client,
        sets: sets.clone(),
        pods,
        expectations: Expectations::default(),
        recorder,
        pacer: Pacer::new(RECONCILE_GAP),
    });
    controller
        // A pod concerns its controller, or, orphaned, every set that selects it.
        .watches_shared_stream(pod_events, move |pod: Arc<CachedPod>| {
            pods::sets_for_pod(&pod, "ReplicaSet", || {
                pods::selecting(&sets, &pod, |rs| rs.spec.as_ref().map(|s| &s.selector))
            })
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<ReplicaSet>, err: &Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "replicaset reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

fn key(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let key = key(&rs);
    ctx.pacer.pace(&key).await;
    // The set as it is after the wait.
    let Some(rs) = ctx.sets.get(&ObjectRef::from_obj(&*rs)) else {
        return Ok(Action::await_change());
    };
    let result = sync(&rs, &key, &ctx).await;
    ctx.pacer.ended(&key, Instant::now());
    result
}

async fn sync(rs: &ReplicaSet, key: &str, ctx: &Ctx) -> Result<Action, Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let ns = rs.namespace().unwrap_or_default();
    let selector = pods::selector_of(&spec.selector);
    let candidates: Vec<Arc<CachedPod>> =
        crate::resources::owned_or_orphaned::<CachedPod>(&rs.uid().unwrap_or_default(), &ns)
            .into_iter()
            .filter(|p| pods::is_active(p))
            .collect();
    let mine = pods::claim(&ctx.client, rs, &selector, candidates).await?;
    let mut failure = None;
    if rs.metadata.deletion_timestamp.is_none() && ctx.expectations.satisfied(key, &ctx.pods, &ns) {
        failure = manage(rs, &mine, spec.replicas.unwrap_or(1) as usize, ctx).await;
    }
    let requeue = update_status(rs, &mine, failure, ctx).await?;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Creates or deletes pods to reach `want`; returns a failure to report.
async fn manage(
    rs: &ReplicaSet,
    mine: &[Arc<CachedPod>],
    want: usize,
    ctx: &Ctx,
) -> Option<(String, String)> {
    let key = key(rs);
    let have = mine.len();
    let template = rs.spec.as_ref()?.template.clone().unwrap_or_default();
    if have < want {
        let n = (want - have).min(BURST);
        let pod = pods::pod_from_template(rs, &template, &rs.name_any());
        let (created, err) = pods::slow_start(n, |_| pods::create_pod(&ctx.client, &pod)).await;
        let names: Vec<String> = created.iter().map(|p| p.name_any()).collect();
        for name in &names {
            ctx.recorder.record(
                rs,
                "Normal",
                "SuccessfulCreate",
                "Create",
                format!("Created pod: {name}"),
            );
        }
        ctx.expectations.expect(&key, names, vec![]);
        if let Some(e) = err {
            let msg = skiff_machinery::client::error_message(&e);
            ctx.recorder.record(
                rs,
                "Warning",
                "FailedCreate",
                "Create",
                format!("Error creating: {msg}"),
            );
            return Some(("FailedCreate".into(), msg));
        }
    } else if have > want {
        let victims = pods_to_delete(mine, have - want);
        let n = victims.len().min(BURST);
        let (deleted, err) =
            pods::slow_start(n, |i| pods::delete_pod(&ctx.client, victims[i].clone())).await;
        for p in &deleted {
            ctx.recorder.record(
                rs,
                "Normal",
                "SuccessfulDelete",
                "Delete",
                format!("Deleted pod: {}", p.name_any()),
            );
        }
        let deleted = deleted.iter().map(|p| pods::name_and_uid(p)).collect();
        ctx.expectations.expect(&key, vec![], deleted);
        if let Some(e) = err {
            return Some(("FailedDelete".into(), e.to_string()));
        }
    }
    None
}

/// The `count` pods to delete first, as upstream's ActivePodsWithRanks:
/// unscheduled before scheduled, pending before running, not ready before
/// ready, pods doubled up on a node before lone ones, recently ready before
/// long ready, more restarts first, newest first.
pub fn pods_to_delete(pods: &[Arc<CachedPod>], count: usize) -> Vec<Arc<CachedPod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let rank = |p: &CachedPod| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") => 0,
            Some("Unknown") | None => 1,
            _ => 2,
        };
        let ready_since = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0);
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            });
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (
            node.is_some(),
            phase,
            pods::is_ready(p),
            std::cmp::Reverse(node.map_or(0, |n| per_node[n])),
            std::cmp::Reverse(ready_since),
            std::cmp::Reverse(restarts),
            std::cmp::Reverse(created),
        )
    };
    let mut sorted: Vec<Arc<CachedPod>> = pods.to_vec();
    sorted.sort_by_key(|p| rank(p));
    sorted.truncate(count);
    sorted
}

/// Writes the counts; returns when to look again for pods about to become
/// available (minReadySeconds).
async fn update_status(
    rs: &ReplicaSet,
    mine: &[Arc<CachedPod>],
    failure: Option<(String, String)>,
    ctx: &Ctx,
) -> Result<Option<Duration>, kube::Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut next_check: Option<Duration> = None;
    let (mut ready, mut available, mut fully_labeled) = (0, 0, 0);
    for p in mine {
        if template_labels
            .iter()
            .all(|(k, v)| p.labels().get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if pods::is_ready(p) {
            ready += 1;
        }
        match pods::availability(p, min_ready) {
            Ok(()) => available += 1,
            Err(Some(wait)) => next_check = Some(next_check.map_or(wait, |n| n.min(wait))),
            Err(None) => {}
        }
    }
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    conditions.retain(|c| c.type_ != "ReplicaFailure");
    if let Some((reason, message)) = failure {
        conditions.push(k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason),
            message: Some(message),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            )),
        });
    }
    let status = k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas: mine.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: Some(conditions),
        ..old.clone()
    };
    let normalize = |s: &k8s_openapi::api::apps::v1::ReplicaSetStatus| {
        let mut s = s.clone();
        for v in [
            &mut s.fully_labeled_replicas,
            &mut s.ready_replicas,
            &mut s.available_replicas,
        ] {
            v.get_or_insert(0);
        }
        if s.conditions.as_ref().is_some_and(Vec::is_empty) {
            s.conditions = None;
        }
        s
    };
    if normalize(&status) != normalize(&old) {
        let api: Api<ReplicaSet> =
            Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
        let mut body = serde_json::to_value(&status).unwrap_or_default();
        if status.conditions.as_ref().is_some_and(Vec::is_empty) {
            body["conditions"] = serde_json::Value::Null;
        }
        api.patch_status(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": body})),
        )
        .await?;
    }
    Ok(next_check)
}
