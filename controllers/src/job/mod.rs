//! The Job controller, after upstream's `syncJob`: runs a Job's pods to
//! `completions` successes, `parallelism` at a time (NonIndexed, or Indexed
//! with one success per index), re-creates failed pods with exponential
//! back-off until `backoffLimit` (or `backoffLimitPerIndex`) is passed,
//! applies the podFailurePolicy, `activeDeadlineSeconds` and `suspend`, and
//! counts every finished pod exactly once: a pod keeps the
//! `batch.kubernetes.io/job-tracking` finalizer until its uid is recorded in
//! `status.uncountedTerminatedPods`, and moves into the counters once the
//! finalizer is gone. A finishing Job first gets the interim
//! SuccessCriteriaMet / FailureTarget condition, and Complete / Failed once
//! no pod is left running or uncounted. A Job adopts the orphan pods its
//! selector matches and releases those it no longer matches (upstream's
//! getPodsForJob), and an Indexed Job with a `successPolicy` succeeds as
//! soon as one of its rules is met.

mod backoff;
mod expectations;
mod failure_policy;
mod indexes;
pub mod pods;
mod success_policy;

use crate::metrics::Controller;
use expectations::Expectations;
use futures::StreamExt;
use indexes::Indexes;
use k8s_openapi::api::batch::v1::{Job, JobCondition, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use pods::*;
use serde_json::json;
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::CachedPod;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The most pods created or deleted, or counted, in one sync (upstream's
/// MaxPodCreateDeletePerSync and MaxUncountedPods).
const MAX_PER_SYNC: usize = 500;

/// The controllers' notion of now; tests replace it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

pub struct Ctx {
    client: Client,
    pods: Store<CachedPod>,
    recorder: Recorder,
    expectations: Expectations,
    /// Back-off records per Job uid, updated once their pods are recorded.
    backoff: Mutex<HashMap<String, backoff::Record>>,
    /// The resourceVersion of each Job's last status write, so a reconcile
    /// never acts on a cached Job older than what it wrote itself.
    written: Mutex<HashMap<String, u64>>,
    now: Clock,
}

pub async fn run(client: Client, recorder: Recorder) -> anyhow::Result<()> {
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let controller = Controller::new(
        "job",
        Api::<Job>::all(client.clone()),
        watcher::Config::default(),
    );
    let jobs = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
        recorder,
        expectations: Expectations::default(),
        backoff: Mutex::default(),
        written: Mutex::default(),
        now: system_clock(),
    });
    let (orphans, orphan_rx) = mpsc::unbounded_channel();
    tokio::spawn(release_orphans(client.clone(), orphan_rx));
    let observer = ctx.clone();
    controller
        // A pod event concerns the Job controlling it, or, orphaned, every
        // Job whose selector matches it (which may adopt it); a tracked pod
        // whose Job is gone only needs its finalizer removed.
        .watches_shared_stream(pod_events, move |pod| {
            observer.expectations.observe(&pod);
            let Some(ns) = pod.namespace() else {
                return vec![];
            };
            let Some(owner) = controller_of(&pod.metadata) else {
                if pod.metadata.deletion_timestamp.is_some() {
                    return vec![];
                }
                return crate::pods::selecting(&jobs, &pod, |j| {
                    j.spec.as_ref().and_then(|s| s.selector.as_ref())
                })
                .iter()
                .map(|j| ObjectRef::from_obj(&**j))
                .collect();
            };
            if owner.kind != "Job" || owner.api_version != "batch/v1" {
                return vec![];
            }
            let key = ObjectRef::<Job>::new(&owner.name).within(&ns);
            let known = jobs
                .get(&key)
                .is_some_and(|j| j.uid().as_deref() == Some(owner.uid.as_str()));
            if has_finalizer(&pod) && !known {
                let _ = orphans.send((*pod).clone());
            }
            vec![key]
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Job>, err: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "job sync failed");
    Action::requeue(Duration::from_secs(1))
}

fn remove_finalizer_patch() -> Patch<serde_json::Value> {
    Patch::Strategic(
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}),
    )
}

async fn remove_finalizer(client: &Client, pod: &CachedPod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &remove_finalizer_patch(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tracked pods whose Job is gone (upstream's orphan queue): checked with
/// a read of the Job itself, since the cache may simply not have it yet.
async fn release_orphans(client: Client, mut rx: mpsc::UnboundedReceiver<CachedPod>) {
    while let Some(pod) = rx.recv().await {
        let Some(owner) = controller_of(&pod.metadata).cloned() else {
            continue;
        };
        let jobs: Api<Job> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let job = match jobs.get_opt(&owner.name).await {
            Ok(j) => j.filter(|j| j.uid().as_deref() == Some(owner.uid.as_str())),
            Err(e) => {
                tracing::debug!(error = %e, "looking up an orphan pod's job");
                continue;
            }
        };
        if job.is_none() {
            if let Err(e) = remove_finalizer(&client, &pod).await {
                tracing::debug!(error = %e, pod = %pod.name_any(), "releasing an orphan pod");
            }
        }
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn find_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn has_true(job: &Job, type_: &str) -> bool {
    find_condition(job, type_).is_some_and(|c| c.status == "True")
}

pub fn is_finished(job: &Job) -> bool {
    has_true(job, "Complete") || has_true(job, "Failed")
}

/// Sets a condition's status, reason and message (`ensureJobConditionStatus`):
/// a False condition is only ever an update. Returns whether anything changed.
fn ensure_condition(job: &mut Job, c: JobCondition) -> bool {
    let list = job
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    if let Some(old) = list.iter_mut().find(|o| o.type_ == c.type_) {
        if old.status != c.status || old.reason != c.reason || old.message != c.message {
            *old = c;
            return true;
        }
        return false;
    }
    if c.status != "False" {
        list.push(c);
        return true;
    }
    false
}

/// What one sync knows of a Job and its pods (upstream's `syncJobCtx`).
struct JobSync<'a> {
    job: Job,
    uid: String,
    pods: Vec<Arc<CachedPod>>,
    indexed: bool,
    completions: i32,
    active: i32,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    failed: i32,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    expected_rm: HashSet<String>,
    prev_succeeded_indexes: Indexes,
    succeeded_indexes: Indexes,
    failed_indexes: Option<Indexes>,
    /// Per index, the failed pod kept until its replacement carries its
    /// failure count (backoffLimitPerIndex).
    delayed: BTreeMap<i32, Arc<CachedPod>>,
    finished: Option<JobCondition>,
    new_backoff: backoff::Record,
    requeue: Option<Duration>,
    now: Timestamp,
    ctx: &'a Ctx,
}

pub async fn reconcile(shared: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    // Until the first pod list is in, no pods would mean "none exist".
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let uid = shared.uid().unwrap_or_default();
    let rv: Option<u64> = shared.resource_version().and_then(|v| v.parse().ok());
    if let (Some(rv), Some(w)) = (rv, ctx.written.lock().unwrap().get(&uid).copied()) {
        if rv < w {
            // Our own newer write is on its way; its event syncs again.
            return Ok(Action::await_change());
        }
    }
    if is_finished(&shared) {
        ctx.backoff.lock().unwrap().remove(&uid);
        ctx.written.lock().unwrap().remove(&uid);
        ctx.expectations.forget(&uid);
        // A finished Job's pods must not keep their finalizer (upstream's
        // cleanupPodFinalizers).
        for p in owned_pods(&shared) {
            if has_finalizer(&p) {
                remove_finalizer(&ctx.client, &p).await?;
            }
        }
        return Ok(Action::await_change());
    }
    let spec = shared.spec.clone().unwrap_or_default();
    // A Job another controller manages is left to it.
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(Action::await_change());
    }
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    if mode != "NonIndexed" && mode != "Indexed" {
        ctx.recorder.record(
            &*shared,
            "Warning",
            "UnknownCompletionMode",
            "Sync",
            "Skipped Job sync because completion mode is unknown".into(),
        );
        return Ok(Action::await_change());
    }
    let mut job = (*shared).clone();
    let status = job.status.get_or_insert_with(Default::default);
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let set = |v: &Option<Vec<String>>| v.iter().flatten().cloned().collect::<HashSet<_>>();
    let (uncounted_succeeded, uncounted_failed) =
        (set(&uncounted.succeeded), set(&uncounted.failed));
    let ns = job.namespace().unwrap_or_default();
    let (satisfied, expected_rm) = ctx.expectations.check(&uid, &ns);
    let pods = claim_pods(&ctx, &job).await?;
    let now = (ctx.now)();
    let completions = spec.completions.unwrap_or(0);
    let indexed = mode == "Indexed";
    let mut s = JobSync {
        active: pods.iter().filter(|p| is_active(p)).count() as i32,
        ready: pods.iter().filter(|p| is_active(p) && is_ready(p)).count() as i32,
        terminating: pods.iter().filter(|p| is_terminating(p)).count() as i32,
        uid: uid.clone(),
        indexed,
        completions,
        succeeded: 0,
        failed: 0,
        uncounted_succeeded,
        uncounted_failed,
        expected_rm,
        prev_succeeded_indexes: Indexes::default(),
        succeeded_indexes: Indexes::default(),
        failed_indexes: None,
        delayed: BTreeMap::new(),
        finished: None,
        new_backoff: backoff::Record::default(),
        requeue: None,
        now,
        ctx: &ctx,
        pods,
        job,
    };
    let new_succeeded: Vec<Arc<CachedPod>> =
        s.new_finished(&s.uncounted_succeeded, |p| succeeded(p));
    let new_failed: Vec<Arc<CachedPod>> =
        s.new_finished(&s.uncounted_failed, |p| is_failed(p, &s.job));
    let status = s.job.status.clone().unwrap_or_default();
    s.succeeded = status.succeeded.unwrap_or(0)
        + new_succeeded.len() as i32
        + s.uncounted_succeeded.len() as i32;
    s.failed = status.failed.unwrap_or(0)
        + new_failed.iter().filter(|p| s.counts_as_failure(p)).count() as i32
        + s.uncounted_failed.len() as i32;
    let suspended = spec.suspend == Some(true);
    if status.start_time.is_none() && !suspended {
        s.job.status.as_mut().unwrap().start_time = Some(Time(now));
    }
    fn refs(v: &[Arc<CachedPod>]) -> Vec<&CachedPod> {
        v.iter().map(|p| &**p).collect()
    }
    s.new_backoff = ctx
        .backoff
        .lock()
        .unwrap()
        .get(&uid)
        .cloned()
        .unwrap_or_default()
        .after(&refs(&new_succeeded), &refs(&new_failed));

    // Is the Job done, and how?
    s.finished = find_condition(&s.job, "SuccessCriteriaMet")
        .filter(|c| c.status == "True")
        .cloned();
    if s.finished.is_none() {
        if let Some(target) = find_condition(&s.job, "FailureTarget").filter(|c| c.status == "True")
        {
            s.finished = Some(failed_from(target, now));
        } else if let Some(msg) = s.fail_job_message() {
            s.finished = Some(condition(
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                &msg,
                now,
            ));
        }
    }
    if s.finished.is_none() {
        let start = s
            .job
            .status
            .as_ref()
            .and_then(|st| st.start_time.as_ref())
            .map(|t| t.0);
        let elapsed = start.map(|t| Duration::try_from(now.duration_since(t)).unwrap_or_default());
        let deadline = spec
            .active_deadline_seconds
            .map(|d| Duration::from_secs(d.max(0) as u64));
        if s.failed > spec.backoff_limit.unwrap_or(6) || s.past_backoff_limit_on_failure() {
            s.finished = Some(condition(
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let (Some(d), Some(e), false) = (deadline, elapsed, suspended) {
            if e >= d {
                s.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                s.requeue = Some(d - e);
            }
        }
    }
    if indexed {
        s.prev_succeeded_indexes = Indexes::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions,
        );
        let new = s
            .pods
            .iter()
            .filter(|p| succeeded(p) && has_finalizer(p))
            .filter_map(|p| valid_index(p, completions));
        s.succeeded_indexes = s.prev_succeeded_indexes.with(new.collect::<Vec<_>>());
        s.succeeded = s.succeeded_indexes.total();
        if let Some(per_index) = spec.backoff_limit_per_index {
            let failed = s.calculate_failed_indexes(per_index);
            if s.finished.is_none() {
                if spec.max_failed_indexes.is_some_and(|m| failed.total() > m) {
                    s.finished = Some(condition(
                        "FailureTarget",
                        "True",
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if failed.total() > 0
                    && failed.total() + s.succeeded_indexes.total() >= completions
                {
                    s.finished = Some(condition(
                        "FailureTarget",
                        "True",
                        "FailedIndexes",
                        "Job has failed indexes",
                        now,
                    ));
                }
            }
            s.failed_indexes = Some(failed);
            s.delayed = s.pods_with_delayed_deletion();
        }
        if s.finished.is_none() {
            let policy = spec.success_policy.as_ref();
            if let Some(msg) = success_policy::matched(policy, completions, &s.succeeded_indexes) {
                s.finished = Some(condition(
                    "SuccessCriteriaMet",
                    "True",
                    "SuccessPolicy",
                    &msg,
                    now,
                ));
            }
        }
    }

    let mut suspend_changed = false;
    let mut result = Ok(());
    if s.finished.is_some() {
        // Whatever still runs is stopped; the Job is declared finished only
        // once everything is accounted for.
        let active: Vec<Arc<CachedPod>> = s.pods.iter().filter(|p| is_active(p)).cloned().collect();
        let (deleted, deleted_ready, err) = s.delete_pods(&active, false).await;
        if deleted != active.len() as i32 || !satisfied {
            s.finished = None;
        }
        s.active -= deleted;
        s.terminating += deleted;
        s.ready -= deleted_ready;
        result = err.map_or(Ok(()), Err);
    } else {
        let mut managed = false;
        if satisfied && s.job.metadata.deletion_timestamp.is_none() {
            result = s.manage(suspended).await;
            managed = true;
        }
        let complete = match spec.completions {
            None => s.succeeded > 0 && s.active == 0,
            Some(c) => s.succeeded >= c && s.active == 0,
        };
        if complete {
            s.finished = Some(condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if managed {
            if suspended {
                let c = condition("Suspended", "True", "JobSuspended", "Job suspended", now);
                if ensure_condition(&mut s.job, c) {
                    suspend_changed = true;
                    ctx.recorder.record(
                        &s.job,
                        "Normal",
                        "Suspended",
                        "Suspend",
                        "Job suspended".into(),
                    );
                }
            } else {
                let c = condition("Suspended", "False", "JobResumed", "Job resumed", now);
                if ensure_condition(&mut s.job, c) {
                    suspend_changed = true;
                    ctx.recorder.record(
                        &s.job,
                        "Normal",
                        "Resumed",
                        "Resume",
                        "Job resumed".into(),
                    );
                    // activeDeadlineSeconds counts continuous activity.
                    s.job.status.as_mut().unwrap().start_time = Some(Time(now));
                }
            }
        }
    }
    let st = s.job.status.as_mut().unwrap();
    let needs_update = suspend_changed
        || st.active.unwrap_or(0) != s.active
        || st.ready != Some(s.ready)
        || st.terminating != Some(s.terminating)
        || st.start_time != status.start_time;
    st.active = Some(s.active);
    st.ready = Some(s.ready);
    st.terminating = Some(s.terminating);
    s.track_status_and_remove_finalizers(needs_update).await?;
    result?;
    Ok(match s.requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        // Unseen creates or deletes normally arrive as pod events; this
        // only bounds the wait if one was lost.
        None if !satisfied => Action::requeue(Duration::from_secs(5)),
        None => Action::await_change(),
    })
}

fn failed_from(target: &JobCondition, now: Timestamp) -> JobCondition {
    condition(
        "Failed",
        "True",
        target.reason.as_deref().unwrap_or(""),
        target.message.as_deref().unwrap_or(""),
        now,
    )
}

/// The job's pods, from the shared pod cache's owner index.
fn owned_pods(job: &Job) -> Vec<Arc<CachedPod>> {
    crate::resources::owned_by::<CachedPod>(&job.uid().unwrap_or_default())
}

/// The pods this Job controls and still selects (upstream's getPodsForJob):
/// controlled pods its selector no longer matches are released (their
/// tracking finalizer goes with the reference), and matching orphans in its
/// namespace are adopted with the tracking finalizer, but only while a fresh
/// read shows the same Job, not being deleted.
async fn claim_pods(ctx: &Ctx, job: &Job) -> Result<Vec<Arc<CachedPod>>, kube::Error> {
    let Some(selector) = job.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Ok(owned_pods(job));
    };
    let selector = crate::pods::selector_of(selector);
    let uid = job.uid().unwrap_or_default();
    let ns = job.namespace().unwrap_or_default();
    let mut candidates = crate::resources::owned_or_orphaned::<CachedPod>(&uid, &ns);
    if job.metadata.deletion_timestamp.is_some() {
        // A Job being deleted neither adopts nor releases: the pods it no
        // longer selects are simply not its own for this sync.
        candidates.retain(|p| {
            controller_of(&p.metadata).is_some() && crate::pods::labels_match(&selector, p.labels())
        });
    }
    let adoptable = |p: &CachedPod| {
        controller_of(&p.metadata).is_none()
            && p.metadata.deletion_timestamp.is_none()
            && crate::pods::labels_match(&selector, p.labels())
    };
    if job.metadata.deletion_timestamp.is_none() && candidates.iter().any(|p| adoptable(p)) {
        // The cached Job may be stale: adopt only for the very same Job,
        // still alive (upstream's RecheckDeletionTimestamp).
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let fresh = api.get_opt(&job.name_any()).await?;
        let can_adopt = fresh.is_some_and(|f| {
            f.uid().as_deref() == Some(uid.as_str()) && f.metadata.deletion_timestamp.is_none()
        });
        if !can_adopt {
            candidates.retain(|p| controller_of(&p.metadata).is_some());
        }
    }
    crate::pods::claim_with_finalizers(
        &ctx.client,
        job,
        &selector,
        candidates,
        &[TRACKING_FINALIZER],
    )
    .await
}

impl JobSync<'_> {
    fn spec(&self) -> &k8s_openapi::api::batch::v1::JobSpec {
        self.job.spec.as_ref().expect("job spec")
    }

    fn verdict(&self, p: &CachedPod) -> Option<failure_policy::Verdict> {
        self.spec()
            .pod_failure_policy
            .as_ref()
            .map(|policy| failure_policy::evaluate(policy, p))
    }

    fn counts_as_failure(&self, p: &CachedPod) -> bool {
        self.verdict(p).is_none_or(|v| v.count)
    }

    /// Tracked pods not yet recorded, passing `filter` (upstream's
    /// getValidPodsWithFilter): Indexed pods need an index in range.
    fn new_finished(
        &self,
        uncounted: &HashSet<String>,
        filter: impl Fn(&CachedPod) -> bool,
    ) -> Vec<Arc<CachedPod>> {
        self.pods
            .iter()
            .filter(|p| {
                let uid = p.uid().unwrap_or_default();
                has_finalizer(p)
                    && !uncounted.contains(&uid)
                    && !self.expected_rm.contains(&uid)
                    && (!self.indexed || valid_index(p, self.completions).is_some())
                    && filter(p)
            })
            .cloned()
            .collect()
    }

    fn fail_job_message(&self) -> Option<String> {
        self.spec().pod_failure_policy.as_ref()?;
        self.pods
            .iter()
            .filter(|p| is_failed(p, &self.job))
            .find_map(|p| self.verdict(p)?.fail_job)
    }

    /// restartPolicy OnFailure: container restarts of running pods count
    /// against backoffLimit.
    fn past_backoff_limit_on_failure(&self) -> bool {
        let restart = self
            .spec()
            .template
            .spec
            .as_ref()
            .map(|s| s.restart_policy.as_deref() == Some("OnFailure"));
        if restart != Some(true) {
            return false;
        }
        let restarts: i32 = self
            .pods
            .iter()
            .filter(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Running" | "Pending")
                )
            })
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum();
        match self.spec().backoff_limit.unwrap_or(6) {
            0 => restarts > 0,
            limit => restarts >= limit,
        }
    }

    /// An index fails when a pod of it matched FailIndex, or failed (and
    /// counted) after `per_index` earlier failures of that index.
    fn calculate_failed_indexes(&self, per_index: i32) -> Indexes {
        let prev = Indexes::parse(
            self.job
                .status
                .as_ref()
                .and_then(|s| s.failed_indexes.as_deref())
                .unwrap_or(""),
            self.completions,
        );
        let new = self.pods.iter().filter_map(|p| {
            if !is_failed(p, &self.job) {
                return None;
            }
            let verdict = self.verdict(p);
            let fail_index =
                verdict.as_ref().and_then(|v| v.action.as_deref()) == Some("FailIndex");
            let counted = verdict.is_none_or(|v| v.count);
            let failed =
                fail_index || (counted && annotation_count(p, INDEX_FAILURE_COUNT) >= per_index);
            failed.then(|| valid_index(p, self.completions)).flatten()
        });
        prev.with(new.collect::<Vec<_>>())
    }

    /// The latest failed pod of each index that is neither done nor running
    /// again: its finalizer stays until the replacement is created.
    fn pods_with_delayed_deletion(&self) -> BTreeMap<i32, Arc<CachedPod>> {
        let active: HashSet<i32> = self
            .pods
            .iter()
            .filter(|p| is_active(p))
            .filter_map(|p| completion_index(p))
            .collect();
        let failed = self.failed_indexes.clone().unwrap_or_default();
        let absolute = |p: &CachedPod| {
            annotation_count(p, INDEX_FAILURE_COUNT)
                + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
        };
        let mut out: BTreeMap<i32, Arc<CachedPod>> = BTreeMap::new();
        for p in self.new_finished(&HashSet::new(), |p| is_failed(p, &self.job)) {
            let Some(ix) = valid_index(&p, self.completions) else {
                continue;
            };
            if self.succeeded_indexes.has(ix) || failed.has(ix) || active.contains(&ix) {
                continue;
            }
            let later = out.get(&ix).is_none_or(|last| {
                absolute(last) <= absolute(&p)
                    && backoff::finished_at(&p) >= backoff::finished_at(last)
            });
            if later {
                out.insert(ix, p);
            }
        }
        out
    }

    /// Creates or deletes pods towards the wanted number active
    /// (`manageJob`); a suspended Job has none.
    async fn manage(&mut self, suspended: bool) -> Result<(), kube::Error> {
        let active: Vec<Arc<CachedPod>> =
            self.pods.iter().filter(|p| is_active(p)).cloned().collect();
        if suspended {
            let (removed, removed_ready, err) = self.delete_pods(&active, true).await;
            self.active -= removed;
            self.terminating += removed;
            self.ready -= removed_ready;
            return err.map_or(Ok(()), Err);
        }
        let spec = self.spec().clone();
        let parallelism = spec.parallelism.unwrap_or(1);
        let want = match spec.completions {
            // A work queue: once one pod succeeded, leave the rest be.
            None if self.succeeded > 0 => self.active,
            None => parallelism,
            Some(c) => (c - self.succeeded).clamp(0, parallelism),
        };
        let rm_at_least = (self.active - want).max(0) as usize;
        let mut remove = self.pods_for_removal(&active, rm_at_least);
        remove.truncate(MAX_PER_SYNC);
        if !remove.is_empty() {
            let (removed, removed_ready, err) = self.delete_pods(&remove, true).await;
            self.active -= removed;
            self.terminating += removed;
            self.ready -= removed_ready;
            return err.map_or(Ok(()), Err);
        }
        let terminating = if only_replace_failed(&self.job) {
            self.terminating
        } else {
            0
        };
        let diff = want - terminating - self.active;
        if diff <= 0 {
            return Ok(());
        }
        if spec.backoff_limit_per_index.is_none() {
            let wait = self.new_backoff.remaining(self.now);
            if !wait.is_zero() {
                self.requeue = Some(self.requeue.map_or(wait, |r| r.min(wait)));
                return Ok(());
            }
        }
        let mut diff = (diff as usize).min(MAX_PER_SYNC);
        let mut indexes: Vec<Option<i32>> = vec![None; diff];
        if self.indexed {
            let mut taken = self.succeeded_indexes.with(
                active
                    .iter()
                    .filter_map(|p| completion_index(p))
                    .collect::<Vec<_>>(),
            );
            if let Some(f) = &self.failed_indexes {
                taken = taken.merge(f);
            }
            if only_replace_failed(&self.job) {
                let t: Vec<i32> = self
                    .pods
                    .iter()
                    .filter(|p| is_terminating(p))
                    .filter_map(|p| completion_index(p))
                    .collect();
                taken = taken.with(t);
            }
            let mut pending = taken.first_missing(diff, self.completions);
            if spec.backoff_limit_per_index.is_some() {
                let waits: Vec<(i32, Duration)> = pending
                    .iter()
                    .map(|ix| {
                        (
                            *ix,
                            backoff::remaining_for_index(
                                self.delayed.get(ix).map(|p| &**p),
                                self.now,
                            ),
                        )
                    })
                    .collect();
                pending = waits
                    .iter()
                    .filter(|(_, w)| w.is_zero())
                    .map(|(ix, _)| *ix)
                    .collect();
                if pending.is_empty() {
                    if let Some(w) = waits.iter().map(|(_, w)| *w).min() {
                        self.requeue = Some(self.requeue.map_or(w, |r| r.min(w)));
                    }
                    return Ok(());
                }
            }
            diff = pending.len();
            indexes = pending.into_iter().map(Some).collect();
        }
        self.create_pods(indexes, diff).await
    }

    /// Indexed Jobs first drop pods without a valid index and duplicates of
    /// an index (keeping the most advanced); then the `removal_order`.
    fn pods_for_removal(&self, active: &[Arc<CachedPod>], at_least: usize) -> Vec<Arc<CachedPod>> {
        let mut rm = Vec::new();
        let mut left: Vec<Arc<CachedPod>> = Vec::new();
        if self.indexed {
            let mut by_index: BTreeMap<i32, Vec<Arc<CachedPod>>> = BTreeMap::new();
            for p in active {
                match valid_index(p, self.completions) {
                    Some(ix) => by_index.entry(ix).or_default().push(p.clone()),
                    None => rm.push(p.clone()),
                }
            }
            for (_, mut same) in by_index {
                same.sort_by(|a, b| removal_order(a, b));
                let keep = same.pop();
                rm.extend(same);
                left.extend(keep);
            }
        } else {
            left = active.to_vec();
        }
        if rm.len() < at_least {
            left.sort_by(|a, b| removal_order(a, b));
            let more = (at_least - rm.len()).min(left.len());
            rm.extend(left.into_iter().take(more));
        }
        rm
    }

    /// Creates pods in slow-start batches (1, 2, 4, …), stopping at the
    /// first batch with an error.
    async fn create_pods(
        &mut self,
        indexes: Vec<Option<i32>>,
        count: usize,
    ) -> Result<(), kube::Error> {
        let per_index = self.spec().backoff_limit_per_index.is_some();
        let policy = self.spec().pod_failure_policy.is_some();
        let templates: Vec<Pod> = indexes
            .into_iter()
            .take(count)
            .map(|ix| {
                // The failure count the replaced pod of this index carried, plus its own.
                let counts = ix
                    .filter(|_| per_index)
                    .map(|ix| match self.delayed.get(&ix) {
                        None => (0, 0),
                        Some(p) => {
                            let (f, i) = (
                                annotation_count(p, INDEX_FAILURE_COUNT),
                                annotation_count(p, INDEX_IGNORED_FAILURE_COUNT),
                            );
                            if policy && !self.counts_as_failure(p) {
                                (f, i + 1)
                            } else {
                                (f + 1, i)
                            }
                        }
                    });
                new_pod(&self.job, ix, counts)
            })
            .collect();
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.job.namespace().unwrap_or_default(),
        );
        let mut rest = templates.as_slice();
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch *= 2;
            let pp = PostParams::default();
            let results = futures::future::join_all(now.iter().map(|p| api.create(&pp, p))).await;
            let mut first_err = None;
            let mut created = Vec::new();
            for r in results {
                match r {
                    Ok(p) => {
                        self.ctx.recorder.record(
                            &self.job,
                            "Normal",
                            "SuccessfulCreate",
                            "Create",
                            format!("Created pod: {}", p.name_any()),
                        );
                        created.push(p.name_any());
                        self.active += 1;
                    }
                    Err(e) => {
                        self.ctx.recorder.record(
                            &self.job,
                            "Warning",
                            "FailedCreate",
                            "Create",
                            format!(
                                "Error creating: {}",
                                skiff_machinery::client::error_message(&e)
                            ),
                        );
                        first_err.get_or_insert(e);
                    }
                }
            }
            self.ctx.expectations.expect_created(&self.uid, created);
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes pods (with `release`, after removing their finalizer, so they
    /// are not counted as failures: suspend and scale-down). Returns how
    /// many were deleted, how many of those were ready, and the first error.
    async fn delete_pods(
        &self,
        victims: &[Arc<CachedPod>],
        release: bool,
    ) -> (i32, i32, Option<kube::Error>) {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.job.namespace().unwrap_or_default(),
        );
        self.ctx
            .expectations
            .expect_deleted(&self.uid, victims.iter().filter_map(|p| p.uid()));
        let results = futures::future::join_all(victims.iter().map(|p| {
            let api = api.clone();
            async move {
                if release && has_finalizer(p) {
                    remove_finalizer(&self.ctx.client, p).await?;
                }
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: p.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&p.name_any(), &dp).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }))
        .await;
        let (mut deleted, mut ready, mut err) = (0, 0, None);
        for (p, r) in victims.iter().zip(results) {
            match r {
                Ok(()) => {
                    deleted += 1;
                    ready += is_ready(p) as i32;
                    self.ctx.recorder.record(
                        &self.job,
                        "Normal",
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted pod: {}", p.name_any()),
                    );
                }
                Err(e) => {
                    self.ctx.recorder.record(
                        &self.job,
                        "Warning",
                        "FailedDelete",
                        "Delete",
                        format!("Error deleting: {e}"),
                    );
                    err.get_or_insert(e);
                }
            }
        }
        (deleted, ready, err)
    }

    fn can_remove_finalizer(&self, p: &CachedPod, considered_failed: bool) -> bool {
        if self.job.metadata.deletion_timestamp.is_some() || self.finished.is_some() || succeeded(p)
        {
            return true;
        }
        if !considered_failed {
            return false;
        }
        let delayed = completion_index(p)
            .and_then(|ix| self.delayed.get(&ix))
            .is_some_and(|d| d.uid() == p.uid());
        !delayed
    }

    /// Records finished pods in uncountedTerminatedPods, removes their
    /// finalizers, moves them into the counters, and declares the Job
    /// finished when nothing is left (`trackJobStatusAndRemoveFinalizers`).
    async fn track_status_and_remove_finalizers(
        &mut self,
        mut needs_flush: bool,
    ) -> Result<(), kube::Error> {
        let mut with_finalizer: HashSet<String> = self
            .pods
            .iter()
            .filter(|p| has_finalizer(p))
            .filter_map(|p| p.uid())
            .filter(|u| !self.expected_rm.contains(u))
            .collect();
        needs_flush |= clean_uncounted(&mut self.job, &with_finalizer);
        let mut pods = self.pods.clone();
        if self.indexed {
            pods.sort_by_key(|p| completion_index(p).unwrap_or(-1));
        }
        let mut to_release: Vec<Arc<CachedPod>> = Vec::new();
        let mut new_indexes = Vec::new();
        let mut reached_max = false;
        let terminal_failure = self
            .finished
            .as_ref()
            .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        {
            let mut uncounted = self
                .job
                .status
                .as_ref()
                .unwrap()
                .uncounted_terminated_pods
                .clone()
                .unwrap_or_default();
            let mut succ = uncounted.succeeded.take().unwrap_or_default();
            let mut fail = uncounted.failed.take().unwrap_or_default();
            for p in &pods {
                let uid = p.uid().unwrap_or_default();
                if !has_finalizer(p) || self.expected_rm.contains(&uid) {
                    continue;
                }
                let failed = is_failed(p, &self.job);
                if !self.can_remove_finalizer(p, failed) {
                    continue;
                }
                to_release.push(p.clone());
                if succeeded(p) && !self.uncounted_failed.contains(&uid) {
                    if self.indexed {
                        // The index is enough to never count it twice.
                        if let Some(ix) = valid_index(p, self.completions) {
                            if !self.prev_succeeded_indexes.has(ix) {
                                new_indexes.push(ix);
                                needs_flush = true;
                            }
                        }
                    } else if !self.uncounted_succeeded.contains(&uid) {
                        succ.push(uid.clone());
                        needs_flush = true;
                    }
                } else if (failed || terminal_failure)
                    && !self.uncounted_failed.contains(&uid)
                    && (!self.indexed || valid_index(p, self.completions).is_some())
                    && self.counts_as_failure(p)
                {
                    // Once the Job failed, whatever did not succeed failed.
                    fail.push(uid.clone());
                    needs_flush = true;
                }
                if new_indexes.len() + succ.len() + fail.len() >= MAX_PER_SYNC {
                    reached_max = true;
                    break;
                }
            }
            uncounted.succeeded = Some(succ);
            uncounted.failed = Some(fail);
            self.job.status.as_mut().unwrap().uncounted_terminated_pods = Some(uncounted);
        }
        if self.indexed {
            self.succeeded_indexes = self.succeeded_indexes.with(new_indexes);
            let completed = self.succeeded_indexes.to_string();
            let failed = self.failed_indexes.as_ref().map(|f| f.to_string());
            let st = self.job.status.as_mut().unwrap();
            if st.completed_indexes.as_deref().unwrap_or("") != completed
                || st.failed_indexes != failed
            {
                needs_flush = true;
            }
            st.succeeded = Some(self.succeeded_indexes.total());
            st.completed_indexes = Some(completed);
            st.failed_indexes = failed;
        }
        let now = self.now;
        if let Some(c) = self.finished.clone() {
            if c.type_ == "FailureTarget" {
                // The interim condition is written before any finalizer goes.
                self.job
                    .status
                    .as_mut()
                    .unwrap()
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(c.clone());
                needs_flush = true;
                self.finished = Some(failed_from(&c, now));
            } else if c.type_ == "SuccessCriteriaMet" {
                if find_condition(&self.job, "SuccessCriteriaMet").is_none() {
                    self.job
                        .status
                        .as_mut()
                        .unwrap()
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(c.clone());
                    needs_flush = true;
                }
                let reason = c.reason.as_deref().unwrap_or("");
                self.finished = Some(condition(
                    "Complete",
                    "True",
                    reason,
                    c.message.as_deref().unwrap_or(""),
                    now,
                ));
            }
        }
        // Flush what is about to be uncounted, then release the pods.
        if needs_flush {
            self.write_status().await?;
            needs_flush = false;
        }
        let mut rm_err = None;
        if !to_release.is_empty() {
            let uids: Vec<String> = to_release.iter().filter_map(|p| p.uid()).collect();
            self.ctx
                .expectations
                .expect_finalizers_removed(&self.uid, uids);
            let client = &self.ctx.client;
            let results =
                futures::future::join_all(to_release.iter().map(|p| remove_finalizer(client, p)))
                    .await;
            for (p, r) in to_release.iter().zip(results) {
                let uid = p.uid().unwrap_or_default();
                match r {
                    Ok(()) => {
                        with_finalizer.remove(&uid);
                    }
                    Err(e) => {
                        self.ctx.expectations.finalizer_not_removed(&self.uid, &uid);
                        rm_err.get_or_insert(e);
                    }
                }
            }
        }
        needs_flush |= clean_uncounted(&mut self.job, &with_finalizer);
        if let Some(e) = rm_err {
            if needs_flush {
                self.write_status().await?;
            }
            return Err(e);
        }
        let finished = !reached_max && self.enact_finished();
        if needs_flush || finished {
            self.write_status().await?;
        }
        if finished {
            self.record_finished();
        }
        Ok(())
    }

    /// Adds Complete or Failed once no pod is uncounted or terminating.
    fn enact_finished(&mut self) -> bool {
        let Some(c) = self.finished.clone() else {
            return false;
        };
        let st = self.job.status.as_ref().unwrap();
        let uncounted = st.uncounted_terminated_pods.as_ref();
        let pending = uncounted.map_or(0, |u| {
            u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
        });
        if pending > 0 || self.terminating > 0 {
            return false;
        }
        let complete = c.type_ == "Complete";
        let transition = c.last_transition_time.clone();
        ensure_condition(&mut self.job, c);
        if complete {
            self.job.status.as_mut().unwrap().completion_time = transition;
        }
        true
    }

    fn record_finished(&self) {
        let Some(c) = &self.finished else { return };
        let rec = &self.ctx.recorder;
        if c.type_ == "Complete" {
            let succeeded = self
                .job
                .status
                .as_ref()
                .and_then(|s| s.succeeded)
                .unwrap_or(0);
            if self.spec().completions.is_some_and(|n| succeeded > n) {
                rec.record(
                    &self.job,
                    "Warning",
                    "TooManySucceededPods",
                    "Complete",
                    "Too many succeeded pods running after completion count reached".into(),
                );
            }
            rec.record(
                &self.job,
                "Normal",
                "Completed",
                "Complete",
                "Job completed".into(),
            );
        } else {
            let reason = c.reason.clone().unwrap_or_default();
            rec.record(
                &self.job,
                "Warning",
                &reason,
                "Fail",
                c.message.clone().unwrap_or_default(),
            );
        }
    }

    /// Writes the status over the version read (a conflict means another
    /// writer got there first: the sync is retried on fresh state), and
    /// only then keeps the back-off record that the write accounts for.
    async fn write_status(&mut self) -> Result<(), kube::Error> {
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &self.job.namespace().unwrap_or_default(),
        );
        // Empty lists are left out, as upstream's status reads `{}`.
        let st = self.job.status.get_or_insert_with(Default::default);
        let u = st
            .uncounted_terminated_pods
            .get_or_insert_with(UncountedTerminatedPods::default);
        for list in [&mut u.succeeded, &mut u.failed] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                *list = None;
            }
        }
        let written = api
            .replace_status(&self.job.name_any(), &PostParams::default(), &self.job)
            .await?;
        if let Some(rv) = written.resource_version().and_then(|v| v.parse().ok()) {
            self.ctx
                .written
                .lock()
                .unwrap()
                .insert(self.uid.clone(), rv);
        }
        self.ctx
            .backoff
            .lock()
            .unwrap()
            .insert(self.uid.clone(), self.new_backoff.clone());
        self.job = written;
        Ok(())
    }
}

/// Moves uncounted pods whose finalizer is gone into the counters.
fn clean_uncounted(job: &mut Job, with_finalizer: &HashSet<String>) -> bool {
    let st = job.status.get_or_insert_with(Default::default);
    let u = st
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut changed = false;
    for (list, counter) in [
        (&mut u.succeeded, &mut st.succeeded),
        (&mut u.failed, &mut st.failed),
    ] {
        let Some(v) = list.as_mut() else { continue };
        let before = v.len();
        v.retain(|uid| with_finalizer.contains(uid));
        if v.len() != before {
            changed = true;
            *counter = Some(counter.unwrap_or(0) + (before - v.len()) as i32);
        }
    }
    changed
}
