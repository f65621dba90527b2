//! The API's resources as kube-rs dynamic types, from the shared catalog.

use futures::{Stream, StreamExt};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use skiff_machinery::catalog::{self, Resource};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub fn api_resource(res: &Resource) -> ApiResource {
    ApiResource {
        group: res.group.into(),
        version: res.version.into(),
        api_version: res.api_version(),
        kind: res.kind.into(),
        plural: res.plural.into(),
    }
}

/// Every stored resource, once, in its storage version.
pub fn stored() -> impl Iterator<Item = &'static Resource> {
    catalog::stored()
}

/// An API for one object's resource, in its namespace when namespaced.
pub fn api_for(client: &Client, res: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = api_resource(res);
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// A metadata-only API over every namespace (`as=PartialObjectMetadata` requests).
pub fn metadata_api(client: &Client, res: &Resource) -> Api<PartialObjectMeta<DynamicObject>> {
    Api::all_with(client.clone(), &api_resource(res))
}

/// One watch and one cache per kind for the whole process, shared by every
/// controller that asks (upstream's shared informers): tens of thousands of
/// pods are held once, not once per controller. Objects are cached without
/// their managedFields, which no controller reads and which would otherwise
/// be most of their size.
struct Shared<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    events: tokio::sync::broadcast::Sender<Arc<K>>,
}

/// Changes a slow subscriber may fall behind by before it is resynced.
const SHARED_BACKLOG: usize = 16_384;

fn registry() -> &'static Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn shared<K>(client: &Client) -> Arc<Shared<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = reg.get(&TypeId::of::<K>()) {
        if let Ok(s) = existing.clone().downcast::<Shared<K>>() {
            return s;
        }
    }
    let (store, mut writer) = reflector::store::<K>();
    let (events, _) = tokio::sync::broadcast::channel(SHARED_BACKLOG);
    let tx = events.clone();
    let api = Api::<K>::all(client.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default())
            .modify(|o| o.meta_mut().managed_fields = None)
            .default_backoff());
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            writer.apply_watcher_event(&ev);
            // Subscribers hear of a change only once the store shows it.
            match ev {
                watcher::Event::Apply(o)
                | watcher::Event::Delete(o)
                | watcher::Event::InitApply(o) => {
                    let _ = tx.send(Arc::new(o));
                }
                _ => {}
            }
        }
    });
    let s = Arc::new(Shared { store, events });
    reg.insert(TypeId::of::<K>(), s.clone());
    s
}

/// The shared cache of a kind, returned once the first list is in.
pub async fn cached<K>(client: &Client) -> anyhow::Result<Store<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let store = shared::<K>(client).store.clone();
    store.wait_until_ready().await?;
    Ok(store)
}

/// The shared cache of a kind and a stream of its changes (applied and
/// deleted objects) for a controller to be triggered by
/// (`Controller::watches_shared_stream`): each object the stream yields is
/// already in the store, so a reconcile it triggers never reads a state
/// older than its trigger. A new subscriber first hears of every cached
/// object; one that falls too far behind hears of all of them again.
/// Wait on `Store::wait_until_ready` before trusting the store.
pub fn reflected<K>(client: &Client) -> (Store<K>, impl Stream<Item = Arc<K>> + Send + 'static)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use tokio::sync::broadcast::error::RecvError;
    let s = shared::<K>(client);
    let rx = s.events.subscribe();
    let store = s.store.clone();
    let everything = |store: &Store<K>| store.state();
    let first = everything(&store);
    let changes = futures::stream::unfold((rx, store.clone()), move |(mut rx, store)| async move {
        let batch = match rx.recv().await {
            Ok(obj) => vec![obj],
            Err(RecvError::Lagged(_)) => everything(&store),
            Err(RecvError::Closed) => return None,
        };
        Some((futures::stream::iter(batch), (rx, store)))
    })
    .flatten();
    (store, futures::stream::iter(first).chain(changes))
}
