//! The scheduler's view of a kind: the process-wide shared informer (one
//! cache of pods for the scheduler and the controllers when they run in one
//! process), turned into a call per change that says whether the object is
//! gone, including objects that vanished while the watch was re-listing.

use futures::StreamExt;
use kube::Client;
use skiff_machinery::client::informers::{self, Cacheable, Change};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Spawns the subscription into `set`; `on(object, gone)` runs for every
/// change. The receiver resolves once the whole cache has been delivered.
pub fn spawn<K: Cacheable>(
    set: &mut JoinSet<()>,
    client: &Client,
    mut on: impl FnMut(Arc<K>, bool) + Send + 'static,
) -> oneshot::Receiver<()> {
    let (synced_tx, synced) = oneshot::channel();
    let (store, changes) = informers::subscribe::<K>(client);
    set.spawn(async move {
        let mut synced_tx = Some(synced_tx);
        let uid = |o: &K| o.meta().uid.clone().unwrap_or_default();
        // What was handed to `on`, so a resync can tell what disappeared.
        let mut known: HashMap<String, Arc<K>> = HashMap::new();
        let mut changes = std::pin::pin!(changes);
        while let Some(change) = changes.next().await {
            match change {
                Change::Applied(o) => {
                    known.insert(uid(&o), o.clone());
                    on(o, false);
                }
                Change::Deleted(o) => {
                    known.remove(&uid(&o));
                    on(o, true);
                }
                Change::Resynced => {
                    let present = informers::uids(&store);
                    known.retain(|k, o| {
                        let keep = present.contains(k);
                        if !keep {
                            on(o.clone(), true);
                        }
                        keep
                    });
                    if let Some(tx) = synced_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    });
    synced
}
