//! The CronJob controller, after upstream's `syncCronJob` (v2): keeps the
//! active list true to the Jobs that exist, starts a Job named
//! `<cronjob>-<scheduled minutes since the epoch>` for the latest due
//! activation (in `timeZone`, else the controller's zone) unless suspended,
//! too late for `startingDeadlineSeconds`, or forbidden by
//! `concurrencyPolicy` (Forbid skips, Replace deletes the running ones), and
//! deletes finished Jobs beyond the history limits. Its clock is
//! replaceable, so tests can drive `reconcile` through time.

pub mod schedule;

use crate::job::{is_finished, Clock};
use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use schedule::{next_schedule_delay, next_schedule_time, Missed, Window};
use skiff_machinery::client::events::Recorder;
use skiff_machinery::cron::{load_zone, Schedule};
use std::sync::Arc;
use std::time::Duration;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub struct Ctx {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
    now: Clock,
}

impl Ctx {
    /// `jobs` is a cache of every Job; `now` the controller's clock.
    pub fn new(client: Client, jobs: Store<Job>, recorder: Recorder, now: Clock) -> Ctx {
        Ctx {
            client,
            jobs,
            recorder,
            now,
        }
    }
}

pub async fn run(client: Client, recorder: Recorder) -> anyhow::Result<()> {
    let (jobs, job_events) = crate::resources::reflected::<Job>(&client);
    let controller = Controller::new(
        "cronjob",
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Arc::new(Ctx::new(client, jobs, recorder, crate::job::system_clock()));
    controller
        .watches_shared_stream(job_events, |job| {
            let owner = crate::job::pods::controller_of(&job.metadata)
                .filter(|o| o.kind == "CronJob" && o.api_version == "batch/v1")?;
            Some(ObjectRef::<CronJob>::new(&owner.name).within(&job.namespace()?))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<CronJob>, err: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "cronjob sync failed");
    Action::requeue(Duration::from_secs(1))
}

/// The job name for a scheduled time: minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in `tz`, "Z" for a zero offset, as Go prints it.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn controller_uid(job: &Job) -> Option<&str> {
    crate::job::pods::controller_of(&job.metadata).map(|o| o.uid.as_str())
}

fn succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Complete" && c.status == "True")
}

fn finished_type(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn active(cj: &mut CronJob) -> &mut Vec<ObjectReference> {
    cj.status
        .get_or_insert_with(Default::default)
        .active
        .get_or_insert_with(Vec::new)
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_from_active(cj: &mut CronJob, uid: &str) {
    active(cj).retain(|r| r.uid.as_deref() != Some(uid));
}

pub async fn reconcile(shared: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let mut cj = (*shared).clone();
    let uid = cj.uid().unwrap_or_default();
    let ns = cj.namespace().unwrap_or_default();
    let jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|j| controller_uid(j) == Some(uid.as_str()))
        .collect();
    let (requeue, mut update, sync_err) = match sync(&mut cj, &jobs, &ctx).await {
        Ok((r, u)) => (r, u, None),
        Err((u, e)) => (None, u, Some(e)),
    };
    update |= cleanup_finished_jobs(&mut cj, &jobs, &ctx).await;
    if update {
        // Empty lists are left out, as upstream writes them.
        if cj
            .status
            .as_ref()
            .is_some_and(|s| s.active.as_ref().is_some_and(Vec::is_empty))
        {
            cj.status.as_mut().unwrap().active = None;
        }
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        api.replace_status(&cj.name_any(), &PostParams::default(), &cj)
            .await?;
    }
    match (requeue, sync_err) {
        (Some(d), _) => Ok(Action::requeue(d)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(Action::await_change()),
    }
}

type SyncResult = Result<(Option<Duration>, bool), (bool, kube::Error)>;

async fn sync(cj: &mut CronJob, jobs: &[Arc<Job>], ctx: &Ctx) -> SyncResult {
    let now = (ctx.now)();
    let ns = cj.namespace().unwrap_or_default();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let rec = &ctx.recorder;
    let mut update = false;
    let mut children = std::collections::HashSet::new();
    for j in jobs {
        let juid = j.uid().unwrap_or_default();
        children.insert(juid.clone());
        let found = in_active_list(cj, &juid);
        if !found && !is_finished(j) {
            // Our status may just be older than our Jobs: read it afresh.
            let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
            let fresh = api.get(&cj.name_any()).await.map_err(|e| (update, e))?;
            if in_active_list(&fresh, &juid) {
                *cj = fresh;
                continue;
            }
            rec.record(
                &*cj,
                "Warning",
                "UnexpectedJob",
                "Sync",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            );
        } else if found && is_finished(j) {
            remove_from_active(cj, &juid);
            rec.record(
                &*cj,
                "Normal",
                "SawCompletedJob",
                "Sync",
                format!(
                    "Saw completed job: {}, condition: {}",
                    j.name_any(),
                    finished_type(j).unwrap_or("")
                ),
            );
            update = true;
        } else if succeeded(j) {
            let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
            let status = cj.status.get_or_insert_with(Default::default);
            if done.is_some()
                && (status.last_successful_time.is_none() || done > status.last_successful_time)
            {
                status.last_successful_time = done;
                update = true;
            }
        }
    }
    // Active Jobs that are neither cached nor readable are gone.
    let listed: Vec<ObjectReference> = cj
        .status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default();
    for r in listed {
        let ruid = r.uid.clone().unwrap_or_default();
        if children.contains(&ruid) {
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        match job_api.get_opt(&name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                rec.record(
                    &*cj,
                    "Normal",
                    "MissingJob",
                    "Sync",
                    format!("Active job went missing: {name}"),
                );
                remove_from_active(cj, &ruid);
                update = true;
            }
            Err(e) => return Err((update, e)),
        }
    }
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok((None, update));
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = match spec.time_zone.as_deref() {
        Some(name) => match load_zone(name) {
            Ok(tz) => tz,
            Err(e) => {
                rec.record(
                    &*cj,
                    "Warning",
                    "UnknownTimeZone",
                    "Sync",
                    format!("invalid timeZone: {name:?}: {e}"),
                );
                return Ok((None, update));
            }
        },
        None => TimeZone::system(),
    };
    if spec.suspend == Some(true) {
        return Ok((None, update));
    }
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => {
            if s.has_zone() {
                rec.record(
                    &*cj,
                    "Warning",
                    "UnsupportedSchedule",
                    "Sync",
                    format!("CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", spec.schedule),
                );
            }
            s
        }
        Err(e) => {
            rec.record(
                &*cj,
                "Warning",
                "UnparseableSchedule",
                "Sync",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            );
            return Ok((None, update));
        }
    };
    let window = Window {
        created: cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
        last_schedule: cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| t.0),
        starting_deadline_seconds: spec.starting_deadline_seconds,
    };
    let next = |cj: &CronJob| {
        let w = Window {
            last_schedule: cj
                .status
                .as_ref()
                .and_then(|s| s.last_schedule_time.as_ref())
                .map(|t| t.0),
            ..window
        };
        Some(next_schedule_delay(&w, now, &sched, &tz))
    };
    let scheduled = match next_schedule_time(&window, now, &sched, &tz) {
        Err(e) => {
            rec.record(
                &*cj,
                "Warning",
                "InvalidSchedule",
                "Sync",
                format!("invalid schedule: {} : {e}", spec.schedule),
            );
            return Ok((None, update));
        }
        Ok((None, _)) => return Ok((next(cj), update)),
        Ok((Some(t), missed)) => {
            if missed == Missed::Many {
                rec.record(
                    &*cj,
                    "Warning",
                    "TooManyMissedTimes",
                    "Sync",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                );
            }
            t
        }
    };
    if let Some(d) = spec.starting_deadline_seconds {
        if scheduled + k8s_openapi::jiff::SignedDuration::from_secs(d) < now {
            let at = scheduled
                .to_zoned(TimeZone::UTC)
                .strftime("%a, %d %b %Y %H:%M:%S %z");
            rec.record(
                &*cj,
                "Warning",
                "MissSchedule",
                "Sync",
                format!("Missed scheduled time to start a job: {at}"),
            );
            return Ok((next(cj), update));
        }
    }
    let name = job_name(&cj.name_any(), scheduled);
    let already = cj
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some(name.as_str())))
        || window.last_schedule == Some(scheduled);
    if already {
        return Ok((next(cj), update));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    let running = cj
        .status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default();
    if policy == "Forbid" && !running.is_empty() {
        rec.record(
            &*cj,
            "Normal",
            "JobAlreadyActive",
            "Sync",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        );
        return Ok((next(cj), update));
    }
    if policy == "Replace" {
        for r in running {
            let name = r.name.clone().unwrap_or_default();
            let job = match job_api.get(&name).await {
                Ok(j) => j,
                Err(e) => {
                    rec.record(
                        &*cj,
                        "Warning",
                        "FailedGet",
                        "Sync",
                        format!("Get job: {e}"),
                    );
                    return Err((update, e));
                }
            };
            delete_job(cj, &job, ctx).await.map_err(|e| (update, e))?;
            update = true;
        }
    }
    let job = job_from_template(cj, scheduled);
    let created = match job_api.create(&PostParams::default(), &job).await {
        Ok(j) => {
            rec.record(
                &*cj,
                "Normal",
                "SuccessfulCreate",
                "Create",
                format!("Created job {}", j.name_any()),
            );
            j
        }
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            // Created by us before a status write was lost, or by someone else.
            let existing = job_api.get(&name).await.map_err(|e| (update, e))?;
            if controller_uid(&existing) != cj.uid().as_deref()
                || in_active_list(cj, &existing.uid().unwrap_or_default())
            {
                return Ok((None, update));
            }
            existing
        }
        Err(e) => {
            rec.record(
                &*cj,
                "Warning",
                "FailedCreate",
                "Create",
                format!(
                    "Error creating job: {}",
                    skiff_machinery::client::error_message(&e)
                ),
            );
            return Err((update, e));
        }
    };
    active(cj).push(ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(created.name_any()),
        namespace: created.namespace(),
        uid: created.uid(),
        resource_version: created.resource_version(),
        ..Default::default()
    });
    cj.status.as_mut().unwrap().last_schedule_time = Some(Time(scheduled));
    Ok((next(cj), true))
}

/// The Job for one scheduled time: the template's labels and annotations,
/// the scheduled time as an annotation, owned by the CronJob.
fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Job {
    let spec = cj.spec.as_ref().expect("cronjob spec");
    let tmpl_meta = spec.job_template.metadata.clone().unwrap_or_default();
    let mut annotations = tmpl_meta.annotations.unwrap_or_default();
    let tz = spec
        .time_zone
        .as_deref()
        .and_then(|z| load_zone(z).ok())
        .unwrap_or(TimeZone::UTC);
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, &tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: tmpl_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: CronJob::api_version(&()).into(),
                kind: CronJob::kind(&()).into(),
                name: cj.name_any(),
                uid: cj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: spec.job_template.spec.clone(),
        status: None,
    }
}

/// Deletes a Job (its pods in the background) and drops it from the list.
async fn delete_job(cj: &mut CronJob, job: &Job, ctx: &Ctx) -> Result<(), kube::Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            ctx.recorder.record(
                &*cj,
                "Warning",
                "FailedDelete",
                "Delete",
                format!("Deleted job: {e}"),
            );
            return Err(e);
        }
    }
    remove_from_active(cj, &job.uid().unwrap_or_default());
    ctx.recorder.record(
        &*cj,
        "Normal",
        "SuccessfulDelete",
        "Delete",
        format!("Deleted job {}", job.name_any()),
    );
    Ok(())
}

/// Deletes the oldest finished Jobs beyond the history limits.
async fn cleanup_finished_jobs(cj: &mut CronJob, jobs: &[Arc<Job>], ctx: &Ctx) -> bool {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut update = false;
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished_type(j) == Some(kind))
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        // Oldest start first; never-started last; ties by name.
        finished.sort_by(|a, b| {
            let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.clone());
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.name_any().cmp(&b.name_any()),
            }
        });
        for j in finished.into_iter().take(excess) {
            if delete_job(cj, j, ctx).await.is_ok() {
                update = true;
            }
        }
    }
    update
}
