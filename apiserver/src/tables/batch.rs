//! batch/v1 kinds: upstream `printJob` and `printCronJob` (v1.33).
//!
//! v1.33 job STATUS precedence: Complete, Failed, Terminating, Suspended,
//! FailureTarget, else Running. (`SuccessCriteriaMet` as a status arrived
//! in v1.34; under v1.33 such a job still reads "Running".)

use jiff::Timestamp;
use serde_json::Value;

use super::defaults;
use super::docs;
use super::duration::human_nanos;
use super::fields::{arr_at, at, deleting, int_at, name, opt_int, opt_str, str_at};
use super::labels::format_label_selector;
use super::pod::containers_and_images;
use super::time::{age, nanos_between, since, ts_at};
use super::{col, wide, Column, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

pub(super) static JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", docs::JOB_SUCCEEDED),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", docs::JOB_SELECTOR),
];

/// Whether the first condition of `type_` is True (`hasJobCondition`).
fn has_condition(job: &Value, type_: &str) -> bool {
    arr_at(job, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// "succeeded/completions"; without completions a work queue job reads
/// "n/1", or "n/1 of P" when it runs P pods in parallel.
fn completions(job: &Value) -> String {
    let succeeded = int_at(job, &["status", "succeeded"]);
    match opt_int(job, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int(job, &["spec", "parallelism"]).unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// Start to completion, or start to now while running; "" before start.
fn job_duration(job: &Value, now: Timestamp) -> String {
    let Some(start) = ts_at(job, &["status", "startTime"]) else {
        return String::new();
    };
    let end = ts_at(job, &["status", "completionTime"]).unwrap_or(now);
    human_nanos(nanos_between(start, end))
}

pub(super) fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(at(job, &["spec", "template", "spec"]));
    row![
        name(job),
        job_status(job),
        completions(job),
        job_duration(job, now),
        age(job, now),
        names,
        images,
        format_label_selector(at(job, &["spec", "selector"])),
    ]
}

pub(super) static CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", docs::CRONJOB_SCHEDULE),
    col("Timezone", "string", docs::CRONJOB_TIME_ZONE),
    col("Suspend", "boolean", docs::CRONJOB_SUSPEND),
    col("Active", "integer", docs::CRONJOB_ACTIVE),
    col("Last Schedule", "string", docs::CRONJOB_LAST_SCHEDULE),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", docs::JOB_SELECTOR),
];

pub(super) fn cron_job_cells(cj: &Value, now: Timestamp) -> Vec<Value> {
    let job_spec = at(cj, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    let (names, images) = containers_and_images(at(job_spec, &["template", "spec"]));
    let last_schedule = match ts_at(cj, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".into(),
    };
    // SUSPEND is declared boolean but printed as Go's printBoolPtr text.
    let suspend = if defaults::suspend(cj) {
        "True"
    } else {
        "False"
    };
    row![
        name(cj),
        str_at(cj, &["spec", "schedule"]),
        opt_str(cj, &["spec", "timeZone"]).unwrap_or("<none>"),
        suspend,
        arr_at(cj, &["status", "active"]).len() as i64,
        last_schedule,
        age(cj, now),
        names,
        images,
        format_label_selector(at(job_spec, &["selector"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cond(t: &str) -> Value {
        json!({"type": t, "status": "True"})
    }

    #[test]
    fn completions_and_duration() {
        let done = json!({"metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"completions": 3, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 3, "startTime": "2024-05-01T11:00:00Z",
                       "completionTime": "2024-05-01T11:03:02Z", "conditions": [cond("Complete")]}});
        assert_eq!(
            job_cells(&done, now()),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("3/3"),
                json!("3m2s"),
                json!("60m"),
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );

        let running = json!({"spec": {"parallelism": 4}, "status": {"succeeded": 1, "startTime": "2024-05-01T11:59:50Z"}});
        let c = job_cells(&running, now());
        assert_eq!(c[1..4], [json!("Running"), json!("1/1 of 4"), json!("10s")]);

        let fresh = job_cells(&json!({"spec": {"parallelism": 1}}), now());
        assert_eq!(fresh[2..4], [json!("0/1"), json!("")]);
    }

    #[test]
    fn status_precedence() {
        let with = |conds: Vec<Value>, deleting: bool| {
            let mut j = json!({"status": {"conditions": conds}});
            if deleting {
                j["metadata"] = json!({"deletionTimestamp": "2024-05-01T11:00:00Z"});
            }
            job_status(&j)
        };
        assert_eq!(with(vec![cond("Failed")], false), "Failed");
        assert_eq!(
            with(vec![cond("Complete"), cond("Failed")], true),
            "Complete"
        );
        assert_eq!(with(vec![cond("Suspended")], true), "Terminating");
        assert_eq!(with(vec![cond("Suspended")], false), "Suspended");
        assert_eq!(with(vec![cond("FailureTarget")], false), "FailureTarget");
        assert_eq!(
            with(vec![json!({"type": "Suspended", "status": "False"})], false),
            "Running"
        );
        assert_eq!(with(vec![cond("SuccessCriteriaMet")], false), "Running");
    }

    #[test]
    fn cron_job() {
        let cj = json!({"metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Etc/UTC",
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-05-01T03:00:00Z"}});
        let c = cron_job_cells(&cj, now());
        assert_eq!(
            c[1..6],
            [
                json!("0 3 * * *"),
                json!("Etc/UTC"),
                json!("False"),
                json!(1),
                json!("9h")
            ]
        );
        assert_eq!(c[9], "<none>");
        let bare = cron_job_cells(&json!({"spec": {"suspend": true}}), now());
        assert_eq!(
            bare[2..6],
            [json!("<none>"), json!("True"), json!(0), json!("<none>")]
        );
    }
}
