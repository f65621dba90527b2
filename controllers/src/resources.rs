//! The API's resources as kube-rs dynamic types, from the shared catalog.

use futures::{Stream, StreamExt};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use skiff_machinery::catalog::{self, Resource};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

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

/// What a shared cache can hold: any built-in kind.
pub trait Cacheable:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Cacheable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// One watch and one cache per kind for the whole process, shared by every
/// controller that asks (upstream's shared informers): tens of thousands of
/// pods are held once, not once per controller. Objects are cached without
/// their managedFields, which no controller reads and which would otherwise
/// be most of their size.
struct Shared<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    events: tokio::sync::broadcast::Sender<Arc<K>>,
    owners: Arc<RwLock<OwnerIndex<K>>>,
}

/// Objects by the uid of their controller (or `orphan/<namespace>` when they
/// have none), then by their own uid: a controller reads its own objects
/// without scanning every object of the kind.
type OwnerIndex<K> = HashMap<String, HashMap<String, Arc<K>>>;

fn owner_key(meta: &kube::api::ObjectMeta) -> String {
    match crate::pods::controller_of(meta) {
        Some(r) => r.uid.clone(),
        None => format!("orphan/{}", meta.namespace.as_deref().unwrap_or_default()),
    }
}

fn index_remove<K>(index: &mut OwnerIndex<K>, owner: &str, uid: &str) {
    if let Some(bucket) = index.get_mut(owner) {
        bucket.remove(uid);
        if bucket.is_empty() {
            index.remove(owner);
        }
    }
}

/// Changes a slow subscriber may fall behind by before it is resynced.
const SHARED_BACKLOG: usize = 16_384;

fn registry() -> &'static Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn shared<K>(client: &Client) -> Arc<Shared<K>>
where
    K: Cacheable,
{
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = reg.get(&TypeId::of::<K>()) {
        if let Ok(s) = existing.clone().downcast::<Shared<K>>() {
            return s;
        }
    }
    let (store, mut writer) = reflector::store::<K>();
    let (events, _) = tokio::sync::broadcast::channel(SHARED_BACKLOG);
    let owners: Arc<RwLock<OwnerIndex<K>>> = Default::default();
    let (tx, index, reader) = (events.clone(), owners.clone(), store.clone());
    let api = Api::<K>::all(client.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default())
            .modify(|o| o.meta_mut().managed_fields = None)
            .default_backoff());
        // Where each object sits in the owner index, by uid.
        let mut placed: HashMap<String, String> = HashMap::new();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            writer.apply_watcher_event(&ev);
            let mut index = index.write().unwrap_or_else(|e| e.into_inner());
            let touched = match ev {
                // Listed objects reach the store (and so the index) at InitDone.
                watcher::Event::InitApply(_) | watcher::Event::Init => continue,
                watcher::Event::Apply(o) => {
                    // The store's own copy, so the index and subscribers share it.
                    let Some(obj) = reader.get(&ObjectRef::from_obj(&o)) else {
                        continue;
                    };
                    let uid = obj.meta().uid.clone().unwrap_or_default();
                    let owner = owner_key(obj.meta());
                    if let Some(old) = placed.insert(uid.clone(), owner.clone()) {
                        index_remove(&mut index, &old, &uid);
                    }
                    index.entry(owner).or_default().insert(uid, obj.clone());
                    obj
                }
                watcher::Event::Delete(o) => {
                    let uid = o.meta().uid.clone().unwrap_or_default();
                    if let Some(old) = placed.remove(&uid) {
                        index_remove(&mut index, &old, &uid);
                    }
                    Arc::new(o)
                }
                watcher::Event::InitDone => {
                    // The store takes a (re)list whole only now: rebuild the
                    // index from it, and tell subscribers of every object, as
                    // the listed ones were not announced one by one.
                    index.clear();
                    placed.clear();
                    let listed = reader.state();
                    for obj in &listed {
                        let uid = obj.meta().uid.clone().unwrap_or_default();
                        let owner = owner_key(obj.meta());
                        placed.insert(uid.clone(), owner.clone());
                        index.entry(owner).or_default().insert(uid, obj.clone());
                    }
                    drop(index);
                    for obj in listed {
                        let _ = tx.send(obj);
                    }
                    continue;
                }
            };
            drop(index);
            // Subscribers hear of a change only once the store shows it.
            let _ = tx.send(touched);
        }
    });
    let s = Arc::new(Shared {
        store,
        events,
        owners,
    });
    reg.insert(TypeId::of::<K>(), s.clone());
    s
}

/// The cached objects of a kind that the object with uid `owner` controls.
/// Empty until some controller asked for the kind's cache.
pub fn owned_by<K>(owner: &str) -> Vec<Arc<K>>
where
    K: Cacheable,
{
    let shared = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&TypeId::of::<K>())
        .cloned()
        .and_then(|s| s.downcast::<Shared<K>>().ok());
    let Some(shared) = shared else {
        return Vec::new();
    };
    let index = shared.owners.read().unwrap_or_else(|e| e.into_inner());
    index
        .get(owner)
        .map(|bucket| bucket.values().cloned().collect())
        .unwrap_or_default()
}

/// What `owner` controls plus the orphans of its namespace it may adopt.
pub fn owned_or_orphaned<K>(owner: &str, namespace: &str) -> Vec<Arc<K>>
where
    K: Cacheable,
{
    let mut v = owned_by::<K>(owner);
    v.extend(owned_by::<K>(&format!("orphan/{namespace}")));
    v
}

/// The shared cache of a kind, returned once the first list is in.
pub async fn cached<K>(client: &Client) -> anyhow::Result<Store<K>>
where
    K: Cacheable,
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
    K: Cacheable,
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
