//! What the scheduler writes through the API: bindings, the PodScheduled
//! condition and nominated node of pods that do not fit, and preemption of
//! victims.

use crate::podinfo::PodInfo;
use crate::preemption::Candidate;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Client;
use serde_json::json;
use skiff_machinery::client::events::Recorder;

/// POSTs the pod's binding to `node`.
pub async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &pod.name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
}

/// Marks a pod that fits nowhere: PodScheduled=False, reason Unschedulable,
/// with the message `kubectl describe` shows, and the node preemption made
/// room on. Skipped when the pod already says exactly that.
pub async fn mark_unschedulable(
    client: &Client,
    pod: &PodInfo,
    message: &str,
    nominated: Option<&str>,
) -> Result<(), kube::Error> {
    let status = pod.pod.status.as_ref();
    let current = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same_condition = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let same_nomination = nominated.is_none() || pod.nominated_node() == nominated;
    if same_condition && same_nomination {
        return Ok(());
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.as_ref().map(|t| json!(t)),
        _ => None,
    }
    .unwrap_or_else(|| json!(jiff::Timestamp::now().to_string()));
    let mut patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}});
    if let Some(node) = nominated {
        patch["status"]["nominatedNodeName"] = json!(node);
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    api.patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
}

/// Evicts preemption's victims: each is marked with the DisruptionTarget
/// condition, as upstream does, then deleted (by uid, so a namesake is safe).
pub async fn preempt(
    client: &Client,
    recorder: &Recorder,
    profile: &str,
    pod: &PodInfo,
    c: &Candidate,
) {
    for victim in &c.victims {
        let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{profile}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]}});
        if let Err(e) = api
            .patch_status(
                &victim.name,
                &PatchParams::default(),
                &Patch::Strategic(condition),
            )
            .await
        {
            tracing::debug!(error = %e, victim = %victim.key(), "marking a preemption victim");
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(victim.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&victim.name, &dp).await {
            Ok(_) => recorder.record(
                &*victim.pod,
                "Normal",
                "Preempted",
                "Preempting",
                format!("Preempted by pod {} on node {}", pod.uid, c.node),
            ),
            Err(e) => tracing::warn!(error = %e, victim = %victim.key(), "preempting"),
        }
    }
}
