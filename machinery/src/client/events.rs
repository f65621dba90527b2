//! Events (events.k8s.io/v1) as upstream's client-go recorder writes them:
//! sent in the background, and dropped when too many queue up, as upstream's
//! broadcaster does, so events never hold up the work they describe.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Resource};
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
    /// `controller` is the reporting controller (`default-scheduler`,
    /// `replicaset-controller`); `instance` names this process.
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

    /// An event about `obj`: `type_` Normal or Warning, `reason` its
    /// CamelCase cause, `action` what was done, `note` for humans.
    pub fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.record_ref(obj.object_ref(&()), type_, reason, action, note);
    }

    pub fn record_ref(
        &self,
        regarding: ObjectReference,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let now = jiff::Timestamp::now();
        let name = regarding.name.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(action.into()),
            reason: Some(reason.into()),
            type_: Some(type_.into()),
            note: Some(note),
            regarding: Some(regarding),
            ..Default::default()
        };
        if self.tx.try_send(event).is_err() {
            tracing::debug!(%name, reason, "event backlog full; dropping the event");
        }
    }
}
