//! One sync of a StatefulSet's pods, as upstream's updateStatefulSet: pods
//! in the ordinal range are created (at the current revision below the
//! partition, else the update revision) with their claims first; failed
//! ones are deleted to be made again; pods out of range are deleted
//! highest ordinal first. OrderedReady does one thing at a time and only
//! while every pod before it is Running, Ready and available; Parallel does
//! all at once. Then RollingUpdate deletes pods not at the update revision,
//! highest ordinal first down to the partition, keeping at most
//! maxUnavailable unavailable; OnDelete waits for someone else to.

use super::claims::{self, Missing};
use super::history::Revisions;
use super::identity::{self, ordinal, revision_of};
use super::{events, unless_gone, Ctx};
use crate::deployment::util::scaled;
use crate::pods;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_machinery::client::CachedPod;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A place in the ordinal range: the pod there, or the one to create.
enum Slot {
    Live(Arc<CachedPod>),
    /// The pod to create, and its view as the shared helpers read pods.
    New(Box<(Pod, CachedPod)>),
}

impl Slot {
    fn pod(&self) -> &CachedPod {
        match self {
            Slot::Live(p) => p,
            Slot::New(new) => &new.1,
        }
    }
}

/// What the sync did that the status and the next sync need to know.
#[derive(Default)]
pub struct Outcome {
    /// Pods created (by name) and deleted (by name and uid), for the expectations.
    pub created: Vec<String>,
    pub deleted: Vec<(String, String)>,
    /// Old-revision pods deleted by the rolling update (upstream lowers
    /// currentReplicas by them at once).
    pub deleted_for_update: i32,
    /// When to look again without a watch event to wake us.
    pub requeue: Option<Duration>,
}

pub fn is_running_and_ready(p: &CachedPod) -> bool {
    phase(p) == Some("Running") && pods::is_ready(p)
}

pub fn phase(p: &CachedPod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn terminating(p: &CachedPod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn min_ready(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Running, ready for minReadySeconds and not being deleted.
fn available(set: &StatefulSet, p: &CachedPod) -> bool {
    is_running_and_ready(p) && pods::availability(p, min_ready(set)).is_ok()
}

fn unavailable(set: &StatefulSet, p: &CachedPod) -> bool {
    !available(set, p) || terminating(p)
}

pub fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

pub fn is_rolling_update(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn rolling(
    set: &StatefulSet,
) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateStatefulSetStrategy> {
    set.spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()
}

pub fn partition(set: &StatefulSet) -> i64 {
    rolling(set).and_then(|r| r.partition).unwrap_or(0).max(0) as i64
}

/// maxUnavailable of the replicas, rounded down but at least one
/// (upstream's getStatefulSetMaxUnavailable).
fn max_unavailable(set: &StatefulSet) -> i64 {
    let one = IntOrString::Int(1);
    let v = rolling(set)
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&one);
    (scaled(Some(v), identity::replicas(set) as i32, false, "") as i64).max(1)
}

struct Sync<'a> {
    set: &'a StatefulSet,
    ctx: &'a Ctx,
    current: PodTemplateSpec,
    update: PodTemplateSpec,
    revs: &'a Revisions,
    monotonic: bool,
    outcome: Mutex<Outcome>,
}

/// Runs one sync over the set's claimed pods.
pub async fn sync(
    set: &StatefulSet,
    revs: &Revisions,
    pods: &[Arc<CachedPod>],
    ctx: &Ctx,
) -> (Outcome, Result<(), kube::Error>) {
    let spec_template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let s = Sync {
        set,
        ctx,
        current: revs
            .current_template()
            .unwrap_or_else(|| spec_template.clone()),
        update: revs.update_template().unwrap_or(spec_template),
        revs,
        monotonic: !is_parallel(set),
        outcome: Mutex::default(),
    };
    let result = s.run(pods).await;
    (
        s.outcome.into_inner().unwrap_or_else(|e| e.into_inner()),
        result,
    )
}

impl Sync<'_> {
    fn note(&self, f: impl FnOnce(&mut Outcome)) {
        f(&mut self.outcome.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn retry_in(&self, d: Duration) {
        self.note(|o| o.requeue = Some(o.requeue.map_or(d, |r| r.min(d))));
    }

    /// The pod to create at `ord` (upstream's newVersionedStatefulSetPod).
    fn new_pod(&self, ord: i64) -> Pod {
        let set = self.set;
        let start = identity::start_ordinal(set);
        let at_current = is_rolling_update(set)
            && match rolling(set) {
                None => {
                    let current = set
                        .status
                        .as_ref()
                        .and_then(|s| s.current_replicas)
                        .unwrap_or(0) as i64;
                    ord < start + current
                }
                Some(_) => ord < start + partition(set),
            };
        if at_current {
            identity::new_pod(set, &self.current, &self.revs.current.name_any(), ord)
        } else {
            identity::new_pod(set, &self.update, &self.revs.update.name_any(), ord)
        }
    }

    async fn run(&self, pods: &[Arc<CachedPod>]) -> Result<(), kube::Error> {
        let set = self.set;
        let start = identity::start_ordinal(set);
        let count = identity::replicas(set);
        let mut slots: Vec<Option<Arc<CachedPod>>> = vec![None; count as usize];
        let mut condemned: Vec<Arc<CachedPod>> = Vec::new();
        for p in pods {
            let ord = ordinal(p);
            if identity::in_range(set, ord) {
                slots[(ord - start) as usize] = Some(p.clone());
            } else if ord >= 0 {
                condemned.push(p.clone());
            }
        }
        let slots: Vec<Slot> = slots
            .into_iter()
            .enumerate()
            .map(|(i, p)| match p {
                Some(p) => Slot::Live(p),
                None => {
                    let pod = self.new_pod(start + i as i64);
                    let view = CachedPod::from(&pod);
                    Slot::New(Box::new((pod, view)))
                }
            })
            .collect();
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        // The first unavailable pod: in range lowest first, then condemned
        // lowest first.
        let first_unavailable = slots
            .iter()
            .map(Slot::pod)
            .chain(condemned.iter().rev().map(|p| &**p))
            .find(|p| unavailable(set, p))
            .map(|p| p.name_any());
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        if self
            .for_all(slots.len(), |i| self.replica(&slots[i]))
            .await?
        {
            return Ok(());
        }
        if self
            .for_all(condemned.len(), |i| self.fix_claims(&condemned[i]))
            .await?
        {
            return Ok(());
        }
        let first = first_unavailable.as_deref();
        if self
            .for_all(condemned.len(), |i| self.condemned(&condemned[i], first))
            .await?
        {
            return Ok(());
        }
        if !is_rolling_update(set) {
            return Ok(());
        }
        self.roll(&slots).await
    }

    /// Runs `f` over 0..n: in order, stopping where it blocks, when
    /// monotonic; else in slow-start batches. True when the sync must stop.
    async fn for_all<'s, F, Fut>(&'s self, n: usize, f: F) -> Result<bool, kube::Error>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<bool, kube::Error>> + 's,
    {
        if self.monotonic {
            for i in 0..n {
                if f(i).await? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        match pods::slow_start(n, f).await {
            (_, Some(e)) => Err(e),
            (_, None) => Ok(false),
        }
    }

    /// Upstream's processReplica: true when the sync must stop here.
    async fn replica(&self, slot: &Slot) -> Result<bool, kube::Error> {
        let set = self.set;
        let pod = match slot {
            Slot::New(new) => return self.create(&new.0, &new.1).await,
            Slot::Live(pod) => pod,
        };
        if matches!(phase(pod), Some("Failed" | "Succeeded")) {
            // Made again once it is gone.
            if !terminating(pod) {
                self.delete(pod.clone(), false).await?;
            }
            return Ok(true);
        }
        if phase(pod) == Some("Pending") {
            if let Missing::Deleting(_) = claims::create_missing(set, pod, self.ctx).await? {
                self.retry_in(Duration::from_secs(1));
            }
        }
        if self.monotonic {
            if terminating(pod) || !is_running_and_ready(pod) {
                return Ok(true);
            }
            if let Err(wait) = pods::availability(pod, min_ready(set)) {
                if let Some(wait) = wait {
                    self.retry_in(wait);
                }
                return Ok(true);
            }
        }
        if !identity::identity_matches(set, pod) {
            self.relabel(pod).await?;
        }
        if !identity::storage_matches(set, pod) {
            claims::create_missing(set, pod, self.ctx).await?;
        }
        if !claims::match_policy(set, pod, self.ctx) {
            claims::update_owners(set, pod, self.ctx).await?;
        }
        Ok(false)
    }

    /// Creates the claims, then the pod.
    async fn create(&self, pod: &Pod, view: &CachedPod) -> Result<bool, kube::Error> {
        let (set, ctx) = (self.set, self.ctx);
        if claims::stale(set, view, ctx) {
            self.retry_in(Duration::from_secs(1));
            return Ok(true);
        }
        let name = pod.name_any();
        let made = match claims::create_missing(set, view, ctx).await {
            Ok(Missing::Done) => pods::create_pod(&ctx.client, pod).await,
            Ok(Missing::Deleting(claim)) => {
                let why = format!("pvc {claim} is being deleted");
                events::pod(ctx, set, "create", &name, Some(&why));
                self.retry_in(Duration::from_secs(1));
                return Ok(true);
            }
            Err(e) => Err(e),
        };
        match made {
            Ok(created) => {
                events::pod(ctx, set, "create", &name, None);
                self.note(|o| o.created.push(name));
                // Its claims get their owners now that it has a uid.
                let created = CachedPod::from(&created);
                if !claims::match_policy(set, &created, ctx) {
                    claims::update_owners(set, &created, ctx).await?;
                }
                Ok(self.monotonic)
            }
            // Not in the cache yet: the next sync sees it.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.retry_in(Duration::from_secs(1));
                Ok(true)
            }
            Err(e) => {
                events::pod(ctx, set, "create", &name, Some(&e));
                Err(e)
            }
        }
    }

    async fn delete(&self, pod: Arc<CachedPod>, for_update: bool) -> Result<(), kube::Error> {
        let (set, ctx) = (self.set, self.ctx);
        let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        let result = pods::delete_pod(&ctx.client, pod).await;
        events::pod(
            ctx,
            set,
            "delete",
            &name,
            result.as_ref().err().map(|e| e as _),
        );
        result?;
        self.note(|o| {
            o.deleted.push((name, uid));
            o.deleted_for_update += for_update as i32;
        });
        Ok(())
    }

    /// Restores the name and index labels (upstream's updateIdentity).
    async fn relabel(&self, pod: &CachedPod) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let patch = json!({"metadata": {
            "labels": {
                identity::POD_NAME_LABEL: pod.name_any(),
                identity::POD_INDEX_LABEL: ordinal(pod).to_string(),
            },
            "uid": pod.uid(),
        }});
        let params = PatchParams::default();
        unless_gone(
            api.patch(&pod.name_any(), &params, &Patch::Merge(patch))
                .await,
        )
    }

    async fn fix_claims(&self, pod: &CachedPod) -> Result<bool, kube::Error> {
        if !claims::match_policy(self.set, pod, self.ctx) {
            claims::update_owners(self.set, pod, self.ctx).await?;
        }
        Ok(false)
    }

    /// Upstream's processCondemned: deletes a pod out of range; monotonic,
    /// only once it and every other pod is healthy (or it is the first
    /// unhealthy one), and one at a time.
    async fn condemned(
        &self,
        pod: &Arc<CachedPod>,
        first_unavailable: Option<&str>,
    ) -> Result<bool, kube::Error> {
        if terminating(pod) {
            return Ok(self.monotonic);
        }
        let first = first_unavailable == Some(pod.name_any().as_str());
        if self.monotonic && !first && !available(self.set, pod) {
            return Ok(true);
        }
        self.delete(pod.clone(), false).await?;
        Ok(true)
    }

    /// The rolling update (upstream's updateStatefulSetAfterInvariantEstablished).
    async fn roll(&self, slots: &[Slot]) -> Result<(), kube::Error> {
        let set = self.set;
        let update = self.revs.update.name_any();
        let unavailable_now = slots.iter().filter(|s| unavailable(set, s.pod())).count() as i64;
        let budget = max_unavailable(set) - unavailable_now;
        if budget < 0 {
            return Ok(());
        }
        let mut deleted = 0;
        let floor = partition(set) as usize;
        for slot in slots.iter().skip(floor).rev() {
            if deleted >= budget {
                break;
            }
            let Slot::Live(pod) = slot else { continue };
            if revision_of(pod) != update && !terminating(pod) {
                self.delete(pod.clone(), true).await?;
                deleted += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(strategy: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"replicas": 10,
            "selector": {}, "template": {}, "updateStrategy": strategy}}))
        .unwrap()
    }

    #[test]
    fn max_unavailable_rounds_down_but_is_at_least_one() {
        assert_eq!(max_unavailable(&set(json!({"type": "RollingUpdate"}))), 1);
        let pct =
            |p: &str| set(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": p}}));
        assert_eq!(max_unavailable(&pct("25%")), 2);
        assert_eq!(max_unavailable(&pct("5%")), 1);
        let s = set(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 3, "partition": 4}}));
        assert_eq!((max_unavailable(&s), partition(&s)), (3, 4));
        assert!(!is_rolling_update(&set(json!({"type": "OnDelete"}))));
    }
}
