//! A watch of every object of a kind that tells the scheduler about each
//! change, including objects that vanished while the watch was re-listing
//! (which kube-rs reports only as a fresh list).

use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Spawns the watch into `set`; `on(object, gone)` runs for every change.
/// The receiver resolves once the first full list has been delivered.
pub fn spawn<K>(
    set: &mut JoinSet<()>,
    api: Api<K>,
    mut on: impl FnMut(Arc<K>, bool) + Send + 'static,
) -> oneshot::Receiver<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (synced_tx, synced) = oneshot::channel();
    set.spawn(async move {
        let mut synced_tx = Some(synced_tx);
        let uid = |o: &K| o.meta().uid.clone().unwrap_or_default();
        let mut known: HashMap<String, Arc<K>> = HashMap::new();
        let mut relisted: Option<HashMap<String, Arc<K>>> = None;
        // managedFields are most of an object's size and nothing here reads them.
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default())
            .modify(|o| o.meta_mut().managed_fields = None)
            .default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => relisted = Some(HashMap::new()),
                Ok(watcher::Event::InitApply(o)) => {
                    let o = Arc::new(o);
                    relisted
                        .get_or_insert_with(HashMap::new)
                        .insert(uid(&o), o.clone());
                    on(o, false);
                }
                Ok(watcher::Event::InitDone) => {
                    let fresh = relisted.take().unwrap_or_default();
                    for (k, o) in known.drain() {
                        if !fresh.contains_key(&k) {
                            on(o, true);
                        }
                    }
                    known = fresh;
                    if let Some(tx) = synced_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Apply(o)) => {
                    let o = Arc::new(o);
                    known.insert(uid(&o), o.clone());
                    on(o, false);
                }
                Ok(watcher::Event::Delete(o)) => {
                    known.remove(&uid(&o));
                    on(Arc::new(o), true);
                }
                Err(e) => tracing::warn!(error = %e, "scheduler watch"),
            }
        }
    });
    synced
}
