//! Shared informers: one watch and one cache per kind for the whole process,
//! shared by every component that asks (upstream's shared informers). Inside
//! `skiff server` the scheduler and every controller read the same cached
//! objects, so tens of thousands of pods are held once, not once per
//! component. Objects are cached without their managedFields and without
//! spare capacity in their lists (`compact`); pods, by far the most
//! numerous, as `CachedPod`, which keeps only what the readers use.

use futures::{Stream, StreamExt};
use kube::api::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::broadcast;

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

/// A change as subscribers hear it. Each object is already in the store (or
/// gone from it) when announced, so whatever it triggers reads a state no
/// older than the change. `Applied` carries the store's version when the
/// subscriber takes it, which may be newer than the change announced.
#[derive(Debug)]
pub enum Change<K> {
    Applied(Arc<K>),
    Deleted(Arc<K>),
    /// Every cached object has just been announced (after the first list, a
    /// re-list, or a subscriber falling behind): anything a subscriber holds
    /// that the store no longer has is gone.
    Resynced,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
            Change::Resynced => Change::Resynced,
        }
    }
}

/// A change as the shared cache broadcasts it. An applied object travels as
/// its reference and is read from the store when a subscriber takes it: the
/// broadcast keeps its last `backlog` messages, and holding objects there
/// would keep thousands of superseded versions alive (the subscriber gets
/// the current version, which is what a controller wants anyway).
/// No variant holds more than a pointer: the broadcast ring's slots are all
/// written when the channel is made, and a reference held inline (96 bytes)
/// made a ring of 16,384 slots 1.9 MB resident from the start; 0.8 MB now.
#[derive(Clone)]
enum Announce<K: kube::Resource<DynamicType = ()>> {
    Applied(Arc<ObjectRef<K>>),
    Deleted(Arc<K>),
    Resynced,
}

struct Shared<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    /// Set once the first list is in the store.
    ready: AtomicBool,
    events: broadcast::Sender<Announce<K>>,
    owners: RwLock<OwnerIndex<K>>,
}

/// Objects by the uid of their controller (or `orphan/<namespace>` when they
/// have none), then by their own uid: a controller reads its own objects
/// without scanning every object of the kind.
type OwnerIndex<K> = HashMap<String, HashMap<String, Arc<K>>>;

fn owner_key(meta: &ObjectMeta) -> String {
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(r) => r.uid.clone(),
        None => format!("orphan/{}", meta.namespace.as_deref().unwrap_or_default()),
    }
}

fn uid_of<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_default()
}

fn index_remove<K>(index: &mut OwnerIndex<K>, owner: &str, uid: &str) {
    if let Some(bucket) = index.get_mut(owner) {
        bucket.remove(uid);
        if bucket.is_empty() {
            index.remove(owner);
        }
    }
}

/// Changes a slow subscriber may fall behind by before it is resynced with
/// every object of the kind. The ring is allocated and written whole when
/// the kind is first cached (48 bytes a change, 0.8 MB at 16,384), and a
/// resync costs as much as the kind has objects: pods, by far the most
/// numerous and the busiest, get the long ring; every other kind a short one.
fn backlog<K: Cacheable>() -> usize {
    if K::kind(&()) == "Pod" {
        16_384
    } else {
        4_096
    }
}

fn registry() -> &'static Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn existing<K: Cacheable>() -> Option<Arc<Shared<K>>> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&TypeId::of::<K>())
        .cloned()
        .and_then(|s| s.downcast::<Shared<K>>().ok())
}

fn shared<K: Cacheable>(client: &Client) -> Arc<Shared<K>> {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = reg
        .get(&TypeId::of::<K>())
        .and_then(|s| s.clone().downcast::<Shared<K>>().ok())
    {
        return s;
    }
    let (store, writer) = reflector::store::<K>();
    let (events, _) = broadcast::channel(backlog::<K>());
    let s = Arc::new(Shared {
        store,
        ready: AtomicBool::new(false),
        events,
        owners: RwLock::default(),
    });
    reg.insert(TypeId::of::<K>(), s.clone());
    tokio::spawn(follow(Api::<K>::all(client.clone()), s.clone(), writer));
    s
}

/// The watch feeding a shared cache: store first, then the owner index, then
/// the announcement.
async fn follow<K: Cacheable>(
    api: Api<K>,
    s: Arc<Shared<K>>,
    mut writer: reflector::store::Writer<K>,
) {
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default())
        .modify(super::compact::for_cache)
        .default_backoff());
    // Where each object sits in the owner index, by uid.
    let mut placed: HashMap<String, String> = HashMap::new();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { continue };
        writer.apply_watcher_event(&ev);
        let mut index = s.owners.write().unwrap_or_else(|e| e.into_inner());
        let change = match ev {
            // Listed objects reach the store (and so the index) at InitDone.
            watcher::Event::InitApply(_) | watcher::Event::Init => continue,
            watcher::Event::Apply(o) => {
                // The store's own copy, so the index and subscribers share it.
                let Some(obj) = s.store.get(&ObjectRef::from_obj(&o)) else {
                    continue;
                };
                let uid = uid_of(&*obj);
                let owner = owner_key(obj.meta());
                if let Some(old) = placed.insert(uid.clone(), owner.clone()) {
                    index_remove(&mut index, &old, &uid);
                }
                index.entry(owner).or_default().insert(uid, obj);
                Announce::Applied(Arc::new(ObjectRef::from_obj(&o)))
            }
            watcher::Event::Delete(o) => {
                let uid = uid_of(&o);
                if let Some(old) = placed.remove(&uid) {
                    index_remove(&mut index, &old, &uid);
                }
                Announce::Deleted(Arc::new(o))
            }
            watcher::Event::InitDone => {
                // The store takes a (re)list whole only now: rebuild the index
                // from it and announce every object, as the listed ones were
                // not announced one by one, and those gone while re-listing.
                let before = std::mem::take(&mut *index);
                placed.clear();
                let listed = s.store.state();
                for obj in &listed {
                    let uid = uid_of(&**obj);
                    let owner = owner_key(obj.meta());
                    placed.insert(uid.clone(), owner.clone());
                    index.entry(owner).or_default().insert(uid, obj.clone());
                }
                drop(index);
                s.ready.store(true, Ordering::Release);
                for gone in before
                    .into_values()
                    .flat_map(HashMap::into_iter)
                    .filter(|(uid, _)| !placed.contains_key(uid))
                {
                    let _ = s.events.send(Announce::Deleted(gone.1));
                }
                for obj in listed {
                    let _ = s
                        .events
                        .send(Announce::Applied(Arc::new(ObjectRef::from_obj(&*obj))));
                }
                let _ = s.events.send(Announce::Resynced);
                continue;
            }
        };
        drop(index);
        // Subscribers hear of a change only once the store shows it.
        let _ = s.events.send(change);
    }
}

/// The shared cache of a kind and a stream of its changes. A new subscriber
/// first hears of every cached object (then `Resynced`); one that falls too
/// far behind hears of all of them again. Wait on `Store::wait_until_ready`
/// before trusting the store.
pub fn subscribe<K: Cacheable>(
    client: &Client,
) -> (Store<K>, impl Stream<Item = Change<K>> + Send + 'static) {
    use broadcast::error::RecvError;
    let s = shared::<K>(client);
    let rx = s.events.subscribe();
    let everything = |s: &Shared<K>| -> Vec<Change<K>> {
        if !s.ready.load(Ordering::Acquire) {
            // The first list is still coming; its InitDone announces it all.
            return Vec::new();
        }
        let mut all: Vec<Change<K>> = s.store.state().into_iter().map(Change::Applied).collect();
        all.push(Change::Resynced);
        all
    };
    let first = everything(&s);
    let store = s.store.clone();
    let changes = futures::stream::unfold((rx, s), move |(mut rx, s)| async move {
        let batch = match rx.recv().await {
            Ok(Announce::Applied(r)) => match s.store.get(&r) {
                Some(obj) => vec![Change::Applied(obj)],
                // Deleted since: its deletion is announced next.
                None => Vec::new(),
            },
            Ok(Announce::Deleted(o)) => vec![Change::Deleted(o)],
            Ok(Announce::Resynced) => vec![Change::Resynced],
            Err(RecvError::Lagged(_)) => everything(&s),
            Err(RecvError::Closed) => return None,
        };
        Some((futures::stream::iter(batch), (rx, s)))
    })
    .flatten();
    (store, futures::stream::iter(first).chain(changes))
}

/// The shared cache of a kind and the objects it changes (applied and
/// deleted alike), to trigger controllers (`Controller::watches_shared_stream`).
pub fn reflected<K: Cacheable>(
    client: &Client,
) -> (Store<K>, impl Stream<Item = Arc<K>> + Send + 'static) {
    let (store, changes) = subscribe::<K>(client);
    let objects = changes.filter_map(|c| async move {
        match c {
            Change::Applied(o) | Change::Deleted(o) => Some(o),
            Change::Resynced => None,
        }
    });
    (store, objects)
}

/// The shared cache of a kind, returned once the first list is in.
pub async fn cached<K: Cacheable>(client: &Client) -> anyhow::Result<Store<K>> {
    let store = shared::<K>(client).store.clone();
    store.wait_until_ready().await?;
    Ok(store)
}

/// The cached objects of a kind that the object with uid `owner` controls.
/// Empty until some component asked for the kind's cache.
pub fn owned_by<K: Cacheable>(owner: &str) -> Vec<Arc<K>> {
    let Some(s) = existing::<K>() else {
        return Vec::new();
    };
    let index = s.owners.read().unwrap_or_else(|e| e.into_inner());
    index
        .get(owner)
        .map(|bucket| bucket.values().cloned().collect())
        .unwrap_or_default()
}

/// What `owner` controls plus the orphans of its namespace it may adopt.
pub fn owned_or_orphaned<K: Cacheable>(owner: &str, namespace: &str) -> Vec<Arc<K>> {
    let mut v = owned_by::<K>(owner);
    v.extend(owned_by::<K>(&format!("orphan/{namespace}")));
    v
}

/// The uids of the objects a store holds, to tell which of a subscriber's
/// objects a `Resynced` leaves out.
pub fn uids<K: Cacheable>(store: &Store<K>) -> HashSet<String> {
    store.state().iter().map(|o| uid_of(&**o)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn announcements_are_one_pointer_so_the_ring_stays_small() {
        // The ring holds its backlog of these from the moment a kind is cached.
        assert_eq!(
            std::mem::size_of::<Option<Announce<Pod>>>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn pods_get_the_long_ring() {
        use crate::client::CachedPod;
        use k8s_openapi::api::core::v1::Service;
        assert_eq!(backlog::<CachedPod>(), 16_384);
        assert_eq!(backlog::<Pod>(), 16_384);
        assert_eq!(backlog::<Service>(), 4_096);
    }
}
