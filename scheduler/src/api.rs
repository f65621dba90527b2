//! What the scheduler writes through the API: bindings, the PodScheduled
//! condition and nominated node of pods that do not fit, preemption of
//! victims, and events (events.k8s.io/v1, as upstream's recorder; sent in
//! the background and dropped when too many queue up, as upstream's
//! broadcaster does, so events never hold up scheduling).

use crate::podinfo::PodInfo;
use crate::preemption::Candidate;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;

const EVENT_BACKLOG: usize = 1000;
const EVENT_WRITERS: usize = 8;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    controller: String,
    instance: String,
}

impl Recorder {
    pub fn start(client: Client, controller: &str, instance: &str) -> Recorder {
        let (tx, rx) = mpsc::channel::<Event>(EVENT_BACKLOG);
        tokio::spawn(async move {
            futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|e| (e, rx)) })
                .for_each_concurrent(EVENT_WRITERS, |e| {
                    let client = client.clone();
                    async move {
                        let ns = e.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client, &ns);
                        if let Err(err) = api.create(&PostParams::default(), &e).await {
                            tracing::debug!(error = %err, "writing an event");
                        }
                    }
                })
                .await
        });
        Recorder {
            tx,
            controller: controller.into(),
            instance: instance.into(),
        }
    }

    pub fn record(&self, pod: &PodInfo, type_: &str, reason: &str, action: &str, note: String) {
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(action.into()),
            reason: Some(reason.into()),
            type_: Some(type_.into()),
            note: Some(note),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(pod.namespace.clone()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: pod.pod.metadata.resource_version.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        if self.tx.try_send(event).is_err() {
            tracing::debug!(pod = %pod.key(), reason, "event backlog full; dropping the event");
        }
    }
}

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
                victim,
                "Normal",
                "Preempted",
                "Preempting",
                format!("Preempted by pod {} on node {}", pod.uid, c.node),
            ),
            Err(e) => tracing::warn!(error = %e, victim = %victim.key(), "preempting"),
        }
    }
}
