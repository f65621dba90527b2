//! Events (events.k8s.io/v1) as upstream's client-go recorder writes them:
//! correlated first (`eventcorrelator`: spam dropped, similar ones combined,
//! repeats counted on the event already written), then sent in the
//! background and dropped when too many queue up, as upstream's broadcaster
//! does, so events never hold up the work they describe.

use super::eventcorrelator::{Correlator, Facts, Outcome};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

const EVENT_BACKLOG: usize = 1000;
const EVENT_WRITERS: usize = 8;

#[derive(Clone)]
pub struct Recorder {
    tx: Arc<[mpsc::Sender<Event>]>,
    controller: String,
    instance: String,
    correlator: Arc<Mutex<Correlator>>,
}

fn hash_of(name: &Option<String>) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name) as usize
}

/// Writes a new event, or, for one with a series, counts up the event of
/// that name (creating it if it has gone, as upstream's recorder does).
async fn write(api: Api<Event>, e: Event) -> Result<(), kube::Error> {
    let Some(series) = &e.series else {
        api.create(&PostParams::default(), &e).await?;
        return Ok(());
    };
    let name = e.metadata.name.clone().unwrap_or_default();
    let patch = Patch::Merge(json!({"series": series}));
    match api.patch(&name, &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut fresh = e.clone();
            fresh.metadata.resource_version = None;
            api.create(&PostParams::default(), &fresh).await?;
            Ok(())
        }
        r => r.map(drop),
    }
}

impl Recorder {
    /// `controller` is the reporting controller (`default-scheduler`,
    /// `replicaset-controller`); `instance` names this process.
    pub fn start(client: Client, controller: &str, instance: &str) -> Recorder {
        // One writer per queue, and an event always to the same queue (by
        // name), so the writes of one event land in order.
        let tx = (0..EVENT_WRITERS)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Event>(EVENT_BACKLOG / EVENT_WRITERS);
                let client = client.clone();
                tokio::spawn(async move {
                    while let Some(e) = rx.recv().await {
                        let ns = e.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                        if let Err(err) = write(api, e).await {
                            tracing::debug!(error = %err, "writing an event");
                        }
                    }
                });
                tx
            })
            .collect();
        Recorder {
            tx,
            controller: controller.into(),
            instance: instance.into(),
            correlator: Arc::default(),
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
        let mut event_name = format!("{name}.{:x}", now.as_nanosecond());
        let source_and_object = [
            &self.controller,
            &self.instance,
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            &name,
            regarding.uid.as_deref().unwrap_or_default(),
            regarding.api_version.as_deref().unwrap_or_default(),
        ]
        .join("\0");
        let facts = Facts {
            source_and_object: &source_and_object,
            type_,
            reason,
            note: &note,
        };
        let outcome = self
            .correlator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(&facts, &event_name, Instant::now());
        let (note, series) = match outcome {
            Outcome::Drop => return,
            Outcome::Create { note } => (note, None),
            Outcome::Count { name, count, note } => {
                event_name = name;
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                (note, Some(series))
            }
        };
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name),
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
            series,
            ..Default::default()
        };
        let queue = &self.tx[hash_of(&event.metadata.name) % self.tx.len()];
        if queue.try_send(event).is_err() {
            tracing::debug!(%name, reason, "event backlog full; dropping the event");
        }
    }
}
