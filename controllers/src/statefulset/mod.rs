//! The StatefulSet controller, after upstream's `pkg/controller/statefulset`:
//! pods with stable names `<set>-<ordinal>` (from `.spec.ordinals.start`),
//! hostnames under the governing Service, and claims of their own from the
//! volumeClaimTemplates; made in ordinal order, each Running and Ready
//! before the next, and removed in reverse (OrderedReady), or all at once
//! (Parallel). Template history lives in ControllerRevisions whose names
//! label the pods; RollingUpdate replaces pods from the highest ordinal
//! down to the partition, OnDelete waits for them to be deleted. Status
//! carries what `kubectl get sts` and `kubectl rollout status` read.

mod claims;
mod control;
mod events;
mod history;
mod identity;
mod status;

use crate::metrics::Controller;
use crate::pods::{self, Expectations};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::CachedPod;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Ctx {
    client: Client,
    pods: Store<CachedPod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    expectations: Expectations,
    recorder: Recorder,
}

/// An object deleted meanwhile makes the write moot.
fn unless_gone<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(client: Client, recorder: Recorder) -> anyhow::Result<()> {
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let (revisions, revision_events) = crate::resources::reflected::<ControllerRevision>(&client);
    // Claims are read from the cache; their changes wake no set.
    let (claims, _) = crate::resources::reflected::<PersistentVolumeClaim>(&client);
    let controller = Controller::new(
        "statefulset",
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let ctx = Arc::new(Ctx {
        client,
        pods,
        revisions,
        claims,
        expectations: Expectations::default(),
        recorder,
    });
    controller
        // A pod concerns its set, or, orphaned, every set it would belong to.
        .watches_shared_stream(pod_events, move |pod: Arc<CachedPod>| {
            pods::sets_for_pod(&pod, "StatefulSet", || {
                pods::selecting(&sets, &pod, |s| s.spec.as_ref().map(|s| &s.selector))
                    .into_iter()
                    .filter(|s| identity::is_member(s, &pod))
                    .collect()
            })
        })
        .watches_shared_stream(revision_events, |rev: Arc<ControllerRevision>| {
            let ns = rev.namespace().unwrap_or_default();
            pods::controller_of(&rev.metadata)
                .filter(|r| r.kind == "StatefulSet")
                .map(|r| ObjectRef::new(&r.name).within(&ns))
                .into_iter()
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<StatefulSet>, err: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "statefulset reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    for ready in [
        ctx.pods.wait_until_ready().await,
        ctx.revisions.wait_until_ready().await,
        ctx.claims.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    let ns = set.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", set.name_any());
    // Waiting to see our own creates and deletes in the cache: acting now
    // would act twice.
    if !ctx.expectations.satisfied(&key, &ctx.pods, &ns) {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let spec = set.spec.clone().unwrap_or_default();
    let selector = pods::selector_of(&spec.selector);
    if selector.is_empty() {
        return Ok(Action::await_change());
    }
    // Its own pods and the orphans named as its members, claimed.
    let candidates: Vec<Arc<CachedPod>> =
        crate::resources::owned_or_orphaned::<CachedPod>(&set.uid().unwrap_or_default(), &ns)
            .into_iter()
            .filter(|p| identity::is_member(&set, p))
            .collect();
    let mine = pods::claim(&ctx.client, &*set, &selector, candidates).await?;
    let revs = history::revisions(&set, &ctx).await?;
    let (outcome, result) = control::sync(&set, &revs, &mine, &ctx).await;
    ctx.expectations
        .expect(&key, outcome.created.clone(), outcome.deleted.clone());
    let status = status::compute(&set, &revs, &mine, outcome.deleted_for_update);
    let recheck = status::write(&set, &status, &ctx).await?;
    // History is kept within its limit even when the sync failed.
    let truncated = history::truncate(&set, &revs, &mine, &ctx).await;
    result?;
    truncated?;
    let next = [outcome.requeue, recheck].into_iter().flatten().min();
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}
