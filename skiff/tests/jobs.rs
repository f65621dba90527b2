//! Jobs and CronJobs on a real server with simulated nodes (pods exit with
//! `sim.skiff.dev/exit-code` after `sim.skiff.dev/run-seconds`): completions
//! and parallelism, Indexed jobs, back-off and backoffLimit, the pod failure
//! policy, deadlines, suspend, TTL, and CronJob policies driven through time
//! with a fake clock; what the real kubectl shows of them.

mod common;

use common::{default_service_account, eventually, Server, Simulator};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{tz::TimeZone, SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use skiff_controllers::cronjob;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// A Job whose pods run `secs` seconds and exit with `code`.
fn job(name: &str, secs: f64, code: i32, spec: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({
        "metadata": {"annotations": {
            "sim.skiff.dev/run-seconds": secs.to_string(),
            "sim.skiff.dev/exit-code": code.to_string()}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
    });
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn condition(j: &Job, type_: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn wait_condition(api: &Api<Job>, name: &str, type_: &str, secs: u64) -> Job {
    let mut found = None;
    eventually(&format!("job {name} {type_}"), secs, async || {
        let j = api.get(name).await.unwrap();
        let ok = condition(&j, type_).is_some();
        found = Some(j);
        ok
    })
    .await;
    found.unwrap()
}

async fn pods_of(c: &Client, ns: &str, job: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    Api::<Pod>::namespaced(c.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
        .items
}

async fn reasons(c: &Client, ns: &str, object: &str) -> Vec<String> {
    Api::<Event>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits for an event (they are written in the background).
async fn has_event(c: &Client, ns: &str, object: &str, reason: &str) -> bool {
    let mut found = false;
    eventually(&format!("event {reason} for {object}"), 15, async || {
        found = reasons(c, ns, object).await.iter().any(|r| r == reason);
        found
    })
    .await;
    found
}

async fn setup(s: &Server, ns: &str) -> Client {
    let c = s.client().await;
    if ns != "default" {
        Api::<Namespace>::all(c.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.clone(), ns);
    eventually("the service account", 30, async || {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await;
    default_service_account(&c).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_fail_back_off_and_finish() {
    if !common::have_kubectl() {
        return;
    }
    let s = Server::start(None);
    let _sim = Simulator::start(&s, 3, "jobnode");
    let c = setup(&s, "default").await;
    let api: Api<Job> = Api::namespaced(c.clone(), "default");
    let create = |j: Job| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &j).await.unwrap() }
    };
    create(job(
        "three",
        1.0,
        0,
        json!({"completions": 3, "parallelism": 2}),
    ))
    .await;
    create(job(
        "indexed",
        0.5,
        0,
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    ))
    .await;
    create(job("fails", 0.2, 1, json!({"backoffLimit": 1}))).await;
    create(job(
        "policy",
        0.2,
        42,
        json!({"podFailurePolicy": {"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}}),
    ))
    .await;
    create(job("slow", 60.0, 0, json!({"activeDeadlineSeconds": 2}))).await;
    create(job("later", 0.5, 0, json!({"suspend": true}))).await;
    create(job("brief", 0.2, 0, json!({"ttlSecondsAfterFinished": 0}))).await;

    // completions 3, two at a time: never more than two pods run at once.
    let mut most = 0;
    let started = Instant::now();
    let done = loop {
        let j = api.get("three").await.unwrap();
        most = most.max(j.status.as_ref().and_then(|s| s.active).unwrap_or(0));
        if condition(&j, "Complete").is_some() {
            break j;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "three never completed: {:?}",
            j.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(most <= 2, "at most parallelism pods active, saw {most}");
    let st = done.status.clone().unwrap();
    assert_eq!(
        (st.succeeded, st.failed.unwrap_or(0), st.active.unwrap_or(0)),
        (Some(3), 0, 0)
    );
    assert!(condition(&done, "SuccessCriteriaMet").is_some_and(|(r, _)| r == "CompletionsReached"));
    assert!(st.start_time.is_some() && st.completion_time >= st.start_time);
    let pods = pods_of(&c, "default", "three").await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let labels = p.labels();
        assert_eq!(labels.get("job-name").map(String::as_str), Some("three"));
        assert_eq!(labels.get("controller-uid"), done.metadata.uid.as_ref());
        assert_eq!(
            labels.get("batch.kubernetes.io/controller-uid"),
            done.metadata.uid.as_ref()
        );
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        assert!(
            !p.finalizers().iter().any(|f| f == FINALIZER),
            "counted pods lose the finalizer"
        );
    }
    assert!(has_event(&c, "default", "three", "Completed").await);
    let r = reasons(&c, "default", "three").await;
    assert_eq!(r.iter().filter(|x| *x == "SuccessfulCreate").count(), 3);
    let table = s.ok(&["get", "jobs", "three"]);
    let row = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(&row[..3], &["three", "Complete", "3/3"], "{table}");
    assert!(row[3].ends_with('s'), "a duration: {table}");

    // Indexed: one success per index; each pod knows its index.
    let j = wait_condition(&api, "indexed", "Complete", 60).await;
    assert_eq!(
        j.status.as_ref().unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    let mut seen: Vec<String> = Vec::new();
    for p in pods_of(&c, "default", "indexed").await {
        let ix = p.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(p.labels()["batch.kubernetes.io/job-completion-index"], ix);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("indexed-{ix}").as_str())
        );
        assert!(p.name_any().starts_with(&format!("indexed-{ix}-")));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        seen.push(ix);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    // Exit 1, backoffLimit 1: one re-creation, 10 s after the failure, then Failed.
    let j = wait_condition(&api, "fails", "Failed", 60).await;
    assert_eq!(condition(&j, "Failed").unwrap().0, "BackoffLimitExceeded");
    assert!(condition(&j, "FailureTarget").is_some());
    assert_eq!(j.status.as_ref().unwrap().failed, Some(2));
    let mut created: Vec<Timestamp> = pods_of(&c, "default", "fails")
        .await
        .iter()
        .map(|p| p.metadata.creation_timestamp.clone().unwrap().0)
        .collect();
    created.sort();
    assert_eq!(created.len(), 2);
    let gap = created[1].duration_since(created[0]).as_secs_f64();
    assert!(gap >= 9.0, "the re-creation waits out the back-off: {gap}s");
    assert!(has_event(&c, "default", "fails", "BackoffLimitExceeded").await);

    // Exit 42 matches FailJob: failed at once, whatever backoffLimit says.
    let j = wait_condition(&api, "policy", "Failed", 30).await;
    let (reason, message) = condition(&j, "Failed").unwrap();
    assert_eq!(reason, "PodFailurePolicy");
    assert!(
        message.contains("failed with exit code 42 matching FailJob rule at index 1"),
        "{message}"
    );

    // activeDeadlineSeconds: running pods are stopped, the Job fails.
    let j = wait_condition(&api, "slow", "Failed", 30).await;
    assert_eq!(condition(&j, "Failed").unwrap().0, "DeadlineExceeded");
    assert_eq!(j.status.as_ref().unwrap().active, Some(0));
    assert!(has_event(&c, "default", "slow", "DeadlineExceeded").await);

    // Suspended: no pods and a Suspended condition, until resumed.
    let j = wait_condition(&api, "later", "Suspended", 20).await;
    assert!(j.status.as_ref().unwrap().start_time.is_none());
    assert!(pods_of(&c, "default", "later").await.is_empty());
    assert_eq!(
        s.ok(&["get", "job", "later", "--no-headers"])
            .split_whitespace()
            .nth(1),
        Some("Suspended")
    );
    api.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let j = wait_condition(&api, "later", "Complete", 30).await;
    let suspended = j
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap();
    assert_eq!(
        (suspended.status.as_str(), suspended.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    assert!(has_event(&c, "default", "later", "Suspended").await);
    assert!(has_event(&c, "default", "later", "Resumed").await);

    // ttlSecondsAfterFinished still deletes finished Jobs.
    eventually("the brief job deleted after its TTL", 30, async || {
        api.get_opt("brief").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_a_running_job_deletes_its_pods_uncounted() {
    let s = Server::start(None);
    let _sim = Simulator::start(&s, 2, "susnode");
    let c = setup(&s, "default").await;
    let api: Api<Job> = Api::namespaced(c.clone(), "default");
    api.create(
        &PostParams::default(),
        &job("busy", 60.0, 0, json!({"parallelism": 2, "completions": 4})),
    )
    .await
    .unwrap();
    eventually("two running pods", 30, async || {
        api.get("busy").await.unwrap().status.and_then(|s| s.ready) == Some(2)
    })
    .await;
    api.patch(
        "busy",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    let j = wait_condition(&api, "busy", "Suspended", 30).await;
    eventually("the pods gone", 30, async || {
        pods_of(&c, "default", "busy").await.is_empty()
    })
    .await;
    let j = api.get("busy").await.unwrap_or(j);
    let st = j.status.unwrap();
    // Pods removed by suspension are not failures.
    assert_eq!((st.active, st.failed.unwrap_or(0)), (Some(0), 0));
    assert!(has_event(&c, "default", "busy", "SuccessfulDelete").await);
}

/// Syncs one CronJob at the fake clock's time, retrying when the server's
/// own controller wrote its status first.
async fn sync(api: &Api<CronJob>, ctx: &Arc<cronjob::Ctx>, name: &str) {
    for _ in 0..10 {
        let cj = api.get(name).await.unwrap();
        match cronjob::reconcile(Arc::new(cj), ctx.clone()).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("sync {name}: {e}"),
        }
    }
    panic!("sync {name}: conflicts");
}

async fn jobs_of(c: &Client, ns: &str, cj: &str) -> Vec<Job> {
    Api::<Job>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|o| o.name == cj))
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect()
}

fn active(cj: &CronJob) -> Vec<String> {
    cj.status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_policies_with_a_fake_clock() {
    let s = Server::start(None);
    let _sim = Simulator::start(&s, 2, "cronnode");
    let ns = "cron";
    let c = setup(&s, ns).await;
    let api: Api<CronJob> = Api::namespaced(c.clone(), ns);
    // Yearly in New York: the server's own controller, on the real clock,
    // has nothing due during the test; the fake clock drives the runs.
    let cron = |name: &str, secs: f64, extra: Value| -> CronJob {
        let mut spec = json!({
            "schedule": "@yearly", "timeZone": "America/New_York",
            "jobTemplate": {"spec": {"template": {
                "metadata": {"annotations": {
                    "sim.skiff.dev/run-seconds": secs.to_string(),
                    "sim.skiff.dev/exit-code": "0"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let pp = PostParams::default();
    for cj in [
        cron("allow", 600.0, json!({})),
        cron("forbid", 600.0, json!({"concurrencyPolicy": "Forbid"})),
        cron("replace", 600.0, json!({"concurrencyPolicy": "Replace"})),
        cron("deadline", 0.1, json!({"startingDeadlineSeconds": 10})),
        cron("history", 0.1, json!({"successfulJobsHistoryLimit": 1})),
        cron("paused", 0.1, json!({"suspend": true})),
        cron("skewed", 0.1, json!({})),
    ] {
        api.create(&pp, &cj).await.unwrap();
    }
    let created = api
        .get("allow")
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0;
    let ny = TimeZone::get("America/New_York").unwrap();
    let yearly = skiff_machinery::cron::Schedule::parse("@yearly").unwrap();
    let first = yearly.next(created, &ny).unwrap();
    let second = yearly.next(first, &ny).unwrap();

    let clock = Arc::new(Mutex::new(first));
    let now = clock.clone();
    let jobs = skiff_controllers::resources::cached::<Job>(&c)
        .await
        .unwrap();
    let recorder =
        skiff_machinery::client::events::Recorder::start(c.clone(), "cronjob-controller", "test");
    let ctx = Arc::new(cronjob::Ctx::new(
        c.clone(),
        jobs,
        recorder,
        Arc::new(move || *now.lock().unwrap()),
    ));
    let set = |t: Timestamp| *clock.lock().unwrap() = t;
    let all = [
        "allow", "forbid", "replace", "deadline", "history", "paused", "skewed",
    ];

    // A minute after the first run time: all but the late and the suspended start.
    set(first + SignedDuration::from_secs(60));
    for n in all.iter().filter(|n| **n != "skewed") {
        sync(&api, &ctx, n).await;
    }
    let name = cronjob::job_name("allow", first);
    assert_eq!(name, format!("allow-{}", first.as_second() / 60));
    let j = Api::<Job>::namespaced(c.clone(), ns)
        .get(&name)
        .await
        .unwrap();
    let stamp = &j.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    assert!(stamp.ends_with("T00:00:00-05:00"), "{stamp}");
    assert_eq!(j.owner_references()[0].kind, "CronJob");
    for n in ["allow", "forbid", "replace", "history"] {
        let cj = api.get(n).await.unwrap();
        assert_eq!(active(&cj), [cronjob::job_name(n, first)], "{n}");
        assert_eq!(cj.status.unwrap().last_schedule_time.unwrap().0, first);
    }
    // 60 s late is past a 10 s starting deadline: that run is skipped.
    assert!(jobs_of(&c, ns, "deadline").await.is_empty());
    let st = api.get("deadline").await.unwrap().status;
    assert!(st.and_then(|s| s.last_schedule_time).is_none());
    assert!(jobs_of(&c, ns, "paused").await.is_empty());

    // The short job finishes; its CronJob notices.
    let jobs_api: Api<Job> = Api::namespaced(c.clone(), ns);
    wait_condition(
        &jobs_api,
        &cronjob::job_name("history", first),
        "Complete",
        30,
    )
    .await;

    // The next year: Allow runs alongside, Forbid skips, Replace replaces.
    // Within its deadline the next run starts.
    set(second + SignedDuration::from_secs(5));
    sync(&api, &ctx, "deadline").await;
    assert_eq!(
        active(&api.get("deadline").await.unwrap()),
        [cronjob::job_name("deadline", second)]
    );
    set(second + SignedDuration::from_secs(30));
    for n in all.iter().filter(|n| !["skewed", "deadline"].contains(*n)) {
        sync(&api, &ctx, n).await;
    }
    let two = [
        cronjob::job_name("allow", first),
        cronjob::job_name("allow", second),
    ];
    assert_eq!(active(&api.get("allow").await.unwrap()), two);
    assert_eq!(
        active(&api.get("forbid").await.unwrap()),
        [cronjob::job_name("forbid", first)]
    );
    assert!(has_event(&c, ns, "forbid", "JobAlreadyActive").await);
    assert_eq!(
        active(&api.get("replace").await.unwrap()),
        [cronjob::job_name("replace", second)]
    );
    let replaced = jobs_of(&c, ns, "replace").await;
    assert_eq!(replaced.len(), 1, "the first replace job is deleted");
    let r = reasons(&c, ns, "replace").await;
    assert!(
        r.contains(&"SuccessfulDelete".to_string()) && r.contains(&"SuccessfulCreate".to_string())
    );

    // History limit 1: once the second run completed, the first is deleted.
    wait_condition(
        &jobs_api,
        &cronjob::job_name("history", second),
        "Complete",
        30,
    )
    .await;
    eventually("history keeps one successful job", 30, async || {
        sync(&api, &ctx, "history").await;
        jobs_of(&c, ns, "history").await.len() == 1
    })
    .await;
    let st = api.get("history").await.unwrap().status.unwrap();
    assert!(st.active.unwrap_or_default().is_empty());
    assert!(st.last_successful_time.is_some());
    assert!(has_event(&c, ns, "history", "SawCompletedJob").await);

    // A clock 150 years ahead: too many missed runs; the latest still starts.
    let far = created + SignedDuration::from_hours(150 * 8766);
    set(far);
    sync(&api, &ctx, "skewed").await;
    assert!(has_event(&c, ns, "skewed", "TooManyMissedTimes").await);
    let latest = api
        .get("skewed")
        .await
        .unwrap()
        .status
        .unwrap()
        .last_schedule_time
        .unwrap()
        .0;
    assert!(latest <= far && yearly.next(latest, &ny).unwrap() > far);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_with_kubectl() {
    if !common::have_kubectl() {
        return;
    }
    let s = Server::start(None);
    let _sim = Simulator::start(&s, 1, "kcnode");
    let c = setup(&s, "default").await;
    s.ok(&[
        "create",
        "cronjob",
        "nightly",
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--",
        "echo",
        "hi",
    ]);
    let table = s.ok(&["get", "cronjobs"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..8],
        &["nightly", "*/5", "*", "*", "*", "*", "<none>", "False"],
        "{table}"
    );
    // Time zones come from timeZone only; schedules must parse.
    let err = s.fails(&[
        "create",
        "cronjob",
        "tz",
        "--image=busybox",
        "--schedule=CRON_TZ=UTC 0 * * * *",
    ]);
    assert!(
        err.contains("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        "{err}"
    );
    let err = s.fails(&[
        "create",
        "cronjob",
        "bad",
        "--image=busybox",
        "--schedule=61 * * * *",
    ]);
    assert!(
        err.contains("end of range (61) above maximum (59)"),
        "{err}"
    );
    let err = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: zoned}\nspec:\n  schedule: '@daily'\n  timeZone: Mars/Olympus\n  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}\n",
    );
    assert!(String::from_utf8_lossy(&err.stderr).contains("unknown time zone Mars/Olympus"));

    // `create job --from` copies the template client-side; the Job runs.
    s.ok(&["create", "job", "by-hand", "--from=cronjob/nightly"]);
    let api: Api<Job> = Api::namespaced(c.clone(), "default");
    // Its pods run until stopped (no exit code): it stays Running at 0/1.
    let mut j = None;
    eventually("the job's pod running", 30, async || {
        let got = api.get("by-hand").await.unwrap();
        let ready = got.status.as_ref().and_then(|s| s.ready) == Some(1);
        j = Some(got);
        ready
    })
    .await;
    let j = j.unwrap();
    assert_eq!(
        j.annotations()
            .get("cronjob.kubernetes.io/instantiate")
            .map(String::as_str),
        Some("manual")
    );
    let row = s.ok(&["get", "job", "by-hand", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], &["by-hand", "Running", "0/1"], "{row}");
}

fn controlled_by(p: &Pod, j: &Job) -> bool {
    p.owner_references().iter().any(|r| {
        Some(&r.uid) == j.metadata.uid.as_ref()
            && r.kind == "Job"
            && r.controller == Some(true)
            && r.block_owner_deletion == Some(true)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_adopt_matching_orphans_and_release_pods_they_stop_matching() {
    let s = Server::start(None);
    let _sim = Simulator::start(&s, 2, "adoptnode");
    let c = setup(&s, "default").await;
    let api: Api<Job> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");

    // An orphan pod that a Job's (manual) selector matches, already running.
    let stray: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "adopt"}, "annotations": {
            "sim.skiff.dev/run-seconds": "4", "sim.skiff.dev/exit-code": "0"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &stray).await.unwrap();
    eventually("the orphan running", 30, async || {
        pods.get("stray")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            == Some("Running".into())
    })
    .await;
    let mut adopter = job(
        "adopter",
        0.5,
        0,
        json!({"completions": 2, "parallelism": 1, "manualSelector": true,
               "selector": {"matchLabels": {"app": "adopt"}}}),
    );
    adopter
        .spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .labels = Some([("app".to_string(), "adopt".to_string())].into());
    let adopter = api.create(&PostParams::default(), &adopter).await.unwrap();
    // Adopted: a controller reference and the tracking finalizer; it is the
    // Job's one active pod, so no other is created while it runs.
    eventually("the orphan adopted", 30, async || {
        let p = pods.get("stray").await.unwrap();
        controlled_by(&p, &adopter) && p.finalizers().iter().any(|f| f == FINALIZER)
    })
    .await;
    let lp = ListParams::default().labels("app=adopt");
    let j = wait_condition(&api, "adopter", "Complete", 60).await;
    let st = j.status.clone().unwrap();
    assert_eq!((st.succeeded, st.failed.unwrap_or(0)), (Some(2), 0));
    let all = pods.list(&lp).await.unwrap().items;
    assert_eq!(all.len(), 2, "the adopted pod counted as one of two");
    assert!(all.iter().all(|p| controlled_by(p, &j)));
    let stray = pods.get("stray").await.unwrap();
    assert!(!stray.finalizers().iter().any(|f| f == FINALIZER));

    // A pod whose labels stop matching is released: the reference and the
    // finalizer go, and the Job makes a replacement.
    let keeper = api
        .create(&PostParams::default(), &job("keeper", 120.0, 0, json!({})))
        .await
        .unwrap();
    let mut first = None;
    eventually("the keeper's pod", 30, async || {
        first = pods_of(&c, "default", "keeper").await.into_iter().next();
        first.is_some()
    })
    .await;
    let first = first.unwrap().name_any();
    pods.patch(
        &first,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": null}}}),
        ),
    )
    .await
    .unwrap();
    eventually("the pod released", 30, async || {
        let p = pods.get(&first).await.unwrap();
        !p.owner_references()
            .iter()
            .any(|r| Some(&r.uid) == keeper.metadata.uid.as_ref())
            && !p.finalizers().iter().any(|f| f == FINALIZER)
    })
    .await;
    eventually("a replacement", 30, async || {
        let mine: Vec<Pod> = pods_of(&c, "default", "keeper")
            .await
            .into_iter()
            .filter(|p| controlled_by(p, &keeper))
            .collect();
        let j = api.get("keeper").await.unwrap();
        mine.len() == 1 && mine[0].name_any() != first && j.status.and_then(|s| s.active) == Some(1)
    })
    .await;
    // The released pod is no longer the Job's: it keeps running.
    let p = pods.get(&first).await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_jobs_succeed_by_their_success_policy() {
    if !common::have_kubectl() {
        return;
    }
    let s = Server::start(None);
    let c = setup(&s, "default").await;
    let api: Api<Job> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    // Pods without an exit code run until deleted; the chosen indexes get
    // one (exit 0 after 1 s) before any node exists to run them.
    let indexed = |name: &str, rules: Value| {
        let mut j = job(
            name,
            1.0,
            0,
            json!({"completions": 5, "parallelism": 5, "completionMode": "Indexed",
                   "successPolicy": {"rules": rules}}),
        );
        let meta = j.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
        meta.annotations = None;
        j
    };
    for j in [
        indexed("by-index", json!([{"succeededIndexes": "0"}])),
        indexed(
            "by-count",
            json!([{"succeededIndexes": "4"}, {"succeededCount": 2}]),
        ),
    ] {
        api.create(&PostParams::default(), &j).await.unwrap();
    }
    for (name, winners) in [("by-index", vec!["0"]), ("by-count", vec!["2", "3"])] {
        let mut mine = Vec::new();
        eventually(&format!("{name}'s five pods"), 30, async || {
            mine = pods_of(&c, "default", name).await;
            mine.len() == 5
        })
        .await;
        for p in &mine {
            let ix = &p.annotations()["batch.kubernetes.io/job-completion-index"];
            if winners.contains(&ix.as_str()) {
                pods.patch(
                    &p.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {
                        "sim.skiff.dev/run-seconds": "1", "sim.skiff.dev/exit-code": "0"}}})),
                )
                .await
                .unwrap();
            }
        }
    }
    let _sim = Simulator::start(&s, 3, "spnode");

    for (name, message, succeeded, completed) in [
        ("by-index", "Matched rules at index 0", 1, "0"),
        ("by-count", "Matched rules at index 1", 2, "2,3"),
    ] {
        let j = wait_condition(&api, name, "Complete", 60).await;
        assert_eq!(
            condition(&j, "SuccessCriteriaMet"),
            Some(("SuccessPolicy".into(), message.into())),
            "{name}"
        );
        assert_eq!(
            condition(&j, "Complete"),
            Some(("SuccessPolicy".into(), message.into())),
            "{name}"
        );
        let st = j.status.clone().unwrap();
        assert_eq!(st.succeeded, Some(succeeded), "{name}");
        // As upstream, the lingering pods lose their finalizer uncounted
        // once the criteria are met: they are not failures.
        assert_eq!(st.failed.unwrap_or(0), 0, "{name}");
        assert_eq!(st.completed_indexes.as_deref(), Some(completed), "{name}");
        assert_eq!((st.active, st.terminating), (Some(0), Some(0)), "{name}");
        assert!(st.completion_time.is_some());
        // The lingering pods were stopped: only the winners are left.
        eventually(&format!("{name}'s other pods deleted"), 30, async || {
            pods_of(&c, "default", name).await.len() == succeeded as usize
        })
        .await;
        for p in pods_of(&c, "default", name).await {
            assert_eq!(
                p.status.as_ref().unwrap().phase.as_deref(),
                Some("Succeeded")
            );
            assert!(!p.finalizers().iter().any(|f| f == FINALIZER));
        }
        let row = s.ok(&["get", "job", name, "--no-headers"]);
        let row: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &row[..3],
            &[name, "Complete", &format!("{succeeded}/5")],
            "{row:?}"
        );
    }
    assert!(has_event(&c, "default", "by-index", "Completed").await);
}
