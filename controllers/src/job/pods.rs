//! What the Job controller reads off its pods, after upstream's
//! `pkg/controller` and job helpers: active / terminating / ready / failed,
//! the tracking finalizer, completion indexes, the order in which surplus
//! pods are removed, and a new pod from the Job's template.

pub use crate::pods::{controller_of, is_active, is_ready};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use skiff_machinery::client::CachedPod;
use std::cmp::Ordering;

/// Keeps a finished pod until the controller has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Failures of earlier pods of the same index (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

fn phase(p: &CachedPod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn succeeded(p: &CachedPod) -> bool {
    phase(p) == "Succeeded"
}

/// Being deleted but not finished (`CountTerminatingPods`).
pub fn is_terminating(p: &CachedPod) -> bool {
    !matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_some()
}

/// Only failed pods are replaced: podReplacementPolicy Failed, or any pod
/// failure policy (`onlyReplaceFailedPods`).
pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Failed, or (unless only failed pods count) deleted before it succeeded:
/// an orphan or evicted pod may never reach the Failed phase (`isPodFailed`).
pub fn is_failed(p: &CachedPod, job: &Job) -> bool {
    if phase(p) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded"
}

pub fn has_finalizer(p: &CachedPod) -> bool {
    p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// The pod's completion index from its annotation; None when absent or bad.
pub fn completion_index(p: &CachedPod) -> Option<i32> {
    p.annotations()
        .get(COMPLETION_INDEX)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

/// An index within `completions`, as upstream requires of counted pods.
pub fn valid_index(p: &CachedPod, completions: i32) -> Option<i32> {
    completion_index(p).filter(|i| *i < completions)
}

pub fn annotation_count(p: &CachedPod, key: &str) -> i32 {
    p.annotations()
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(p: &CachedPod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// Upstream's `ActivePods` order: the pods to remove first come first —
/// unscheduled before scheduled, pending before running, not ready before
/// ready, more restarts before fewer, newer before older.
pub fn removal_order(a: &CachedPod, b: &CachedPod) -> Ordering {
    let node = |p: &CachedPod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let rank = |p: &CachedPod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    node(a)
        .cmp(&node(b))
        .then(rank(a).cmp(&rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp),
        )
}

/// A pod for `job` from its template: the tracking finalizer, a controller
/// reference, and for Indexed jobs the index as annotation, label, env
/// variable and hostname (`<job>-<index>`).
pub fn new_pod(job: &Job, index: Option<i32>, failure_counts: Option<(i32, i32)>) -> Pod {
    let spec = job.spec.as_ref().expect("job spec");
    let tmpl = spec.template.clone();
    let mut meta = tmpl.metadata.unwrap_or_default();
    let name = job.name_any();
    let mut pod_spec = tmpl.spec.unwrap_or_default();
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    // upstream's getPodsPrefix: "<job>-" when it leaves room for a suffix.
    meta.generate_name = Some(format!("{name}-"));
    if let Some(ix) = index {
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.insert(COMPLETION_INDEX.into(), ix.to_string());
        if let Some((failed, ignored)) = failure_counts {
            annotations.insert(INDEX_FAILURE_COUNT.into(), failed.to_string());
            if ignored > 0 {
                annotations.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
            }
        }
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), ix.to_string());
        pod_spec.hostname = Some(format!("{name}-{ix}"));
        // upstream's podGenerateNameWithIndex: at most 58 characters.
        let suffix = format!("-{ix}-");
        let keep = name.len().min(58 - suffix.len());
        meta.generate_name = Some(format!("{}{suffix}", &name[..keep]));
        let env = EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let containers = pod_spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(pod_spec.containers.iter_mut());
        for c in containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    meta.namespace = job.namespace();
    meta.name = None;
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name,
        uid: job.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Pod {
        metadata: meta,
        spec: Some(pod_spec),
        status: None,
    }
}
