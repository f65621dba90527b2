//! The garbage collector: keeps a graph of every object's ownerReferences
//! (one watch per stored resource) and acts as upstream's does —
//! dependents whose owners are all gone are deleted (background), a deleting
//! owner with the `orphan` finalizer has its dependents' references removed
//! first, and one with `foregroundDeletion` has its dependents deleted and
//! keeps its finalizer until no blocking dependent remains.

use crate::resources;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{DynamicObject, ObjectMeta, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use skiff_machinery::catalog::{self, Resource};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// API calls the collector makes at once.
const WORKERS: usize = 8;

/// An object's uid: one allocation shared by the graph's key, the
/// dependents sets that name it and the owner references to it.
type Uid = Arc<str>;

#[derive(Debug, Clone, PartialEq)]
struct OwnerRef {
    api_version: String,
    kind: String,
    name: String,
    uid: Uid,
    block: bool,
}

/// What the graph keeps per object. At 30,000 pods this is most of the
/// collector's memory, so the parts pods of one controller have in common
/// (owner references, namespace) are shared with their siblings and owner.
#[derive(Debug, Clone)]
struct Node {
    res: &'static Resource,
    namespace: Option<Arc<str>>,
    name: Box<str>,
    resource_version: Box<str>,
    owners: Arc<[OwnerRef]>,
    deleting: bool,
    finalizers: Box<[String]>,
}

impl Node {
    fn from(res: &'static Resource, m: &ObjectMeta) -> Option<(Uid, Node)> {
        let owners = m
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.as_str().into(),
                block: r.block_owner_deletion.unwrap_or(false),
            })
            .collect();
        Some((
            m.uid.as_deref()?.into(),
            Node {
                res,
                namespace: m.namespace.as_deref().map(Arc::from),
                name: m.name.as_deref()?.into(),
                resource_version: m.resource_version.as_deref().unwrap_or_default().into(),
                owners,
                deleting: m.deletion_timestamp.is_some(),
                finalizers: m.finalizers.clone().unwrap_or_default().into(),
            },
        ))
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<Uid, Node>,
    dependents: HashMap<Uid, HashSet<Uid>>,
}

impl Graph {
    /// Inserts or replaces a node; returns the uids whose decisions may change.
    fn upsert(&mut self, uid: Uid, mut node: Node) -> Vec<Uid> {
        let uid = self.known_uid(uid);
        self.share_with_siblings(&mut node);
        let mut touched = vec![uid.clone()];
        self.unlink(&uid, &mut touched);
        for o in node.owners.iter() {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            touched.push(o.uid.clone());
        }
        self.nodes.insert(uid, node);
        touched
    }

    fn remove(&mut self, uid: &str) -> Vec<Uid> {
        let mut touched: Vec<Uid> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        self.unlink(uid, &mut touched);
        touched
    }

    /// Takes out every node of a kind no longer served.
    fn remove_kind(&mut self, res: &'static Resource) -> Vec<Uid> {
        let of_kind: Vec<Uid> = self
            .nodes
            .iter()
            .filter(|(_, n)| std::ptr::eq(n.res, res))
            .map(|(uid, _)| uid.clone())
            .collect();
        of_kind.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// Nodes with an owner of a kind that is not built in.
    fn with_foreign_owners(&self) -> Vec<Uid> {
        self.nodes
            .iter()
            .filter(|(_, n)| {
                n.owners
                    .iter()
                    .any(|o| catalog::by_kind(&o.api_version, &o.kind).is_none())
            })
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Takes the node out, and out of its owners' dependents (dropping sets
    /// left empty); its owners go to `touched`.
    fn unlink(&mut self, uid: &str, touched: &mut Vec<Uid>) {
        let Some(old) = self.nodes.remove(uid) else {
            return;
        };
        for o in old.owners.iter() {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
            touched.push(o.uid.clone());
        }
    }

    /// The graph's own copy of a uid, when it has one (as a key or as an
    /// owner its dependents name), so each uid is held once.
    fn known_uid(&self, uid: Uid) -> Uid {
        self.nodes
            .get_key_value(&uid)
            .map(|(k, _)| k)
            .or_else(|| self.dependents.get_key_value(&uid).map(|(k, _)| k))
            .cloned()
            .unwrap_or(uid)
    }

    /// Points the node's owner list at a sibling's equal one (pods of one
    /// ReplicaSet carry the same references), its owner uids at the graph's
    /// copies, and its namespace at its owner's.
    fn share_with_siblings(&self, node: &mut Node) {
        let Some(first) = node.owners.first() else {
            return;
        };
        let sibling = self
            .dependents
            .get(&first.uid)
            .and_then(|d| d.iter().next())
            .and_then(|d| self.nodes.get(d))
            .filter(|s| s.owners == node.owners);
        if let Some(sibling) = sibling {
            node.owners = sibling.owners.clone();
        } else {
            node.owners = node
                .owners
                .iter()
                .map(|o| OwnerRef {
                    uid: self.known_uid(o.uid.clone()),
                    ..o.clone()
                })
                .collect();
        }
        let owner = self.nodes.get(&node.owners[0].uid);
        if let (Some(ns), Some(theirs)) =
            (&node.namespace, owner.and_then(|o| o.namespace.as_ref()))
        {
            if ns == theirs {
                node.namespace = Some(theirs.clone());
            }
        }
    }
}

#[allow(clippy::large_enum_variant)] // events are the common case; boxing them buys nothing
enum Msg {
    Event(usize, watcher::Event<PartialObjectMeta<DynamicObject>>),
    /// Decide again about an object that changed while an action on it ran.
    Recheck(Uid),
    /// The custom resources served now.
    Custom(Vec<&'static Resource>),
}

fn is_builtin(res: &'static Resource) -> bool {
    catalog::RESOURCES.iter().any(|r| std::ptr::eq(r, res))
}

/// Watches one kind's objects' metadata into the graph's channel, as `i`.
fn watch_kind(
    client: &Client,
    res: &'static Resource,
    i: usize,
    tx: mpsc::Sender<Msg>,
) -> AbortHandle {
    let api = resources::metadata_api(client, res);
    tokio::spawn(async move {
        // Metadata is all the graph needs (upstream's collector uses metadata informers too).
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send(Msg::Event(i, ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "garbage collector watch retrying"),
            }
        }
    })
    .abort_handle()
}

/// Follows the CRDs, sending the custom resources served whenever they
/// change.
fn watch_custom(client: &Client, tx: mpsc::Sender<Msg>) {
    let client = client.clone();
    let crds: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    tokio::spawn(async move {
        // Their metadata is enough to tell a change; discovery tells the rest.
        let mut events = watcher(crds, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut last = Vec::new();
        // Discovery again after each change to a CRD, and every 30 s as
        // upstream's collector resyncs its monitors: a CRD's resources may
        // be served a moment after the change that announced them.
        let mut resync = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            let changed = tokio::select! {
                ev = events.next() => match ev {
                    None => return,
                    Some(ev) => matches!(
                        ev,
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
                    ),
                },
                _ = resync.tick() => true,
            };
            if !changed {
                continue;
            }
            let Ok(now) = resources::custom(&client).await else {
                continue;
            };
            if now != last {
                last = now.clone();
                if tx.send(Msg::Custom(now)).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// The custom resources served, for finding an owner of a custom kind.
type CustomKinds = Arc<Mutex<Vec<&'static Resource>>>;

pub async fn run(client: Client) -> anyhow::Result<()> {
    // Built-in kinds are watched for as long as the collector runs; custom
    // ones while their CRD serves them (a stopped one's slot stays empty).
    let mut kinds: Vec<&'static Resource> = resources::stored().collect();
    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    let mut watches: Vec<Option<AbortHandle>> = kinds
        .iter()
        .enumerate()
        .map(|(i, res)| Some(watch_kind(&client, res, i, tx.clone())))
        .collect();
    let custom_kinds: CustomKinds = Arc::default();
    watch_custom(&client, tx.clone());
    let mut graph = Graph::default();
    let mut synced: HashSet<usize> = HashSet::new();
    let mut relisting: HashMap<usize, HashSet<Uid>> = HashMap::new();
    let mut dirty: BTreeSet<Uid> = BTreeSet::new();
    let in_flight: Arc<Mutex<HashSet<Uid>>> = Arc::default();
    let skipped: Arc<Mutex<HashSet<Uid>>> = Arc::default();
    let workers = Arc::new(Semaphore::new(WORKERS));
    let queue = crate::metrics::queue("garbagecollector");
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
            if batch.len() >= 1024 {
                break;
            }
        }
        for msg in batch {
            let (i, ev) = match msg {
                Msg::Event(i, ev) => (i, ev),
                Msg::Recheck(uid) => {
                    dirty.insert(uid);
                    continue;
                }
                Msg::Custom(served) => {
                    for (i, res) in kinds.iter().enumerate() {
                        let gone = !is_builtin(res) && !served.contains(res);
                        if let Some(watch) = watches[i].take_if(|_| gone) {
                            watch.abort();
                            synced.remove(&i);
                            relisting.remove(&i);
                            dirty.extend(graph.remove_kind(res));
                        }
                    }
                    for res in &served {
                        match kinds.iter().position(|k| k == res) {
                            Some(i) if watches[i].is_some() => {}
                            Some(i) => watches[i] = Some(watch_kind(&client, res, i, tx.clone())),
                            None => {
                                watches.push(Some(watch_kind(
                                    &client,
                                    res,
                                    kinds.len(),
                                    tx.clone(),
                                )));
                                kinds.push(res);
                            }
                        }
                    }
                    if let Ok(mut known) = custom_kinds.lock() {
                        *known = served;
                    }
                    // Owners of kinds not known before can be looked up now.
                    dirty.extend(graph.with_foreign_owners());
                    continue;
                }
            };
            let res = kinds[i];
            match ev {
                watcher::Event::Init => {
                    relisting.insert(i, HashSet::new());
                }
                watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                    if let Some((uid, node)) = Node::from(res, &o.metadata) {
                        if let Some(seen) = relisting.get_mut(&i) {
                            seen.insert(uid.clone());
                        }
                        dirty.extend(graph.upsert(uid, node));
                    }
                }
                watcher::Event::Delete(o) => {
                    if let Some(uid) = o.metadata.uid {
                        dirty.extend(graph.remove(&uid));
                    }
                }
                watcher::Event::InitDone => {
                    // Objects of this kind not seen in the new list went away meanwhile.
                    let seen = relisting.remove(&i).unwrap_or_default();
                    let gone: Vec<Uid> = graph
                        .nodes
                        .iter()
                        .filter(|(uid, n)| std::ptr::eq(n.res, res) && !seen.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        dirty.extend(graph.remove(&uid));
                    }
                    synced.insert(i);
                }
            }
        }
        // Decide only on a complete graph, or an absent owner could be a not-yet-listed one.
        if (0..kinds.len()).any(|i| watches[i].is_some() && !synced.contains(&i)) {
            continue;
        }
        for uid in std::mem::take(&mut dirty) {
            if let Some(action) = decide(&graph, &uid) {
                if !in_flight
                    .lock()
                    .map(|mut f| f.insert(uid.clone()))
                    .unwrap_or(false)
                {
                    // Busy with it: decide again once the running action is done.
                    if let Ok(mut s) = skipped.lock() {
                        s.insert(uid);
                    }
                    continue;
                }
                queue.add(uid.to_string());
                let (client, in_flight, skipped, workers, tx, queue, custom_kinds) = (
                    client.clone(),
                    in_flight.clone(),
                    skipped.clone(),
                    workers.clone(),
                    tx.clone(),
                    queue.clone(),
                    custom_kinds.clone(),
                );
                tokio::spawn(async move {
                    let _permit = workers.acquire().await;
                    if let Err(e) = queue.work(&uid, act(&client, &custom_kinds, &action)).await {
                        tracing::debug!(error = %e, object = %action.name(), "garbage collector action failed; retried on the next change");
                    }
                    if let Ok(mut f) = in_flight.lock() {
                        f.remove(&uid);
                    }
                    if skipped.lock().map(|mut s| s.remove(&uid)).unwrap_or(false) {
                        let _ = tx.send(Msg::Recheck(uid)).await;
                    }
                });
            }
        }
    }
    Ok(())
}

/// What to do about one object, decided from the graph alone; owners the graph
/// does not know are confirmed absent with a live read before anything is deleted.
#[derive(Debug)]
enum Action {
    /// Remove references to `owner` from these dependents, then the finalizer.
    Orphan {
        owner: Node,
        owner_uid: Uid,
        dependents: Vec<Node>,
    },
    /// Delete these dependents (foreground); drop the finalizer when none block.
    Foreground {
        owner: Node,
        delete: Vec<(Uid, Node)>,
        release: bool,
    },
    /// The owners the graph lacks: confirm, then delete or drop dangling refs.
    CheckOwners {
        uid: Uid,
        node: Node,
        missing: Vec<OwnerRef>,
    },
}

impl Action {
    fn name(&self) -> &str {
        match self {
            Action::Orphan { owner, .. } | Action::Foreground { owner, .. } => &owner.name,
            Action::CheckOwners { node, .. } => &node.name,
        }
    }
}

fn decide(graph: &Graph, uid: &str) -> Option<Action> {
    let (uid, node) = graph.nodes.get_key_value(uid)?;
    let dependents = || -> Vec<(Uid, Node)> {
        graph
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| graph.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    };
    if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
        let deps = dependents().into_iter().map(|(_, n)| n).collect();
        return Some(Action::Orphan {
            owner: node.clone(),
            owner_uid: uid.clone(),
            dependents: deps,
        });
    }
    if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
        let deps = dependents();
        let blocking = deps
            .iter()
            .any(|(_, d)| d.owners.iter().any(|o| o.uid == *uid && o.block));
        let delete: Vec<(Uid, Node)> = deps.into_iter().filter(|(_, d)| !d.deleting).collect();
        return Some(Action::Foreground {
            owner: node.clone(),
            delete,
            release: !blocking,
        });
    }
    let missing: Vec<OwnerRef> = node
        .owners
        .iter()
        .filter(|o| !graph.nodes.contains_key(&o.uid))
        .cloned()
        .collect();
    if missing.is_empty() || node.deleting {
        return None;
    }
    Some(Action::CheckOwners {
        uid: uid.clone(),
        node: node.clone(),
        missing,
    })
}

async fn act(client: &Client, custom: &CustomKinds, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Orphan {
            owner,
            owner_uid,
            dependents,
        } => {
            for d in dependents {
                let refs: Vec<&OwnerRef> =
                    d.owners.iter().filter(|o| o.uid != *owner_uid).collect();
                set_owner_refs(client, d, &refs).await?;
            }
            remove_finalizer(client, owner, ORPHAN).await
        }
        Action::Foreground {
            owner,
            delete,
            release,
        } => {
            for (uid, d) in delete {
                delete_object(client, d, uid, PropagationPolicy::Foreground).await?;
            }
            if *release {
                remove_finalizer(client, owner, FOREGROUND).await?;
            }
            Ok(())
        }
        Action::CheckOwners { uid, node, missing } => {
            let mut absent = Vec::new();
            for o in missing {
                if owner_absent(client, custom, node, o).await? {
                    absent.push(o.uid.clone());
                }
            }
            if absent.is_empty() {
                return Ok(());
            }
            if absent.len() == node.owners.len() {
                tracing::info!(object = %node.name, kind = node.res.kind, "owners gone, deleting dependent");
                delete_object(client, node, uid, PropagationPolicy::Background).await
            } else {
                let refs: Vec<&OwnerRef> = node
                    .owners
                    .iter()
                    .filter(|o| !absent.contains(&o.uid))
                    .collect();
                set_owner_refs(client, node, &refs).await
            }
        }
    }
}

/// An owner is absent when reading it answers 404 or a different uid.
async fn owner_absent(
    client: &Client,
    custom: &CustomKinds,
    dependent: &Node,
    owner: &OwnerRef,
) -> Result<bool, kube::Error> {
    // A custom resource is found by group and kind: any served version reads it.
    let group = catalog::split_api_version(&owner.api_version).0;
    let custom_res = || {
        let known = custom.lock().ok()?;
        known
            .iter()
            .copied()
            .find(|r| r.group == group && r.kind == owner.kind)
    };
    let builtin = catalog::by_kind(&owner.api_version, &owner.kind).map(catalog::storage_resource);
    let Some(res) = builtin.or_else(custom_res) else {
        // A kind we do not know (a custom resource not served): never collect for it.
        return Ok(false);
    };
    let api = resources::api_for(client, res, dependent.namespace.as_deref());
    match api.get_opt(&owner.name).await? {
        Some(o) => Ok(o.metadata.uid.as_deref() != Some(&*owner.uid)),
        None => Ok(true),
    }
}

async fn delete_object(
    client: &Client,
    node: &Node,
    uid: &str,
    policy: PropagationPolicy,
) -> Result<(), kube::Error> {
    let api = resources::api_for(client, node.res, node.namespace.as_deref());
    let dp = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&node.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn set_owner_refs(
    client: &Client,
    node: &Node,
    refs: &[&OwnerRef],
) -> Result<(), kube::Error> {
    let refs: Vec<serde_json::Value> = refs
        .iter()
        .map(|o| json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": &*o.uid, "blockOwnerDeletion": o.block}))
        .collect();
    let api = resources::api_for(client, node.res, node.namespace.as_deref());
    // No references left: the field goes away, as upstream leaves it.
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        json!(refs)
    };
    let patch =
        json!({"metadata": {"ownerReferences": refs, "resourceVersion": node.resource_version}});
    ignore_gone(
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
}

async fn remove_finalizer(
    client: &Client,
    node: &Node,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let left: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let api = resources::api_for(client, node.res, node.namespace.as_deref());
    let patch = json!({"metadata": {"finalizers": left, "resourceVersion": node.resource_version}});
    ignore_gone(
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
}

/// A vanished object or a newer version makes the action moot: the next event decides again.
fn ignore_gone<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(uid: &str, name: &str, owners: &[&str]) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            name: Some(name.into()),
            namespace: Some("default".into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|o| OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: format!("rs-{o}"),
                        uid: o.to_string(),
                        ..OwnerReference::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn insert(g: &mut Graph, uid: &str, owners: &[&str]) -> Vec<Uid> {
        let res = catalog::by_kind("v1", "Pod").unwrap();
        let (uid, node) = Node::from(res, &meta(uid, uid, owners)).unwrap();
        g.upsert(uid, node)
    }

    #[test]
    fn siblings_share_owner_list_uids_and_namespace() {
        let mut g = Graph::default();
        insert(&mut g, "rs", &[]);
        insert(&mut g, "a", &["rs"]);
        insert(&mut g, "b", &["rs"]);
        let (a, b, rs) = (&g.nodes["a"], &g.nodes["b"], &g.nodes["rs"]);
        assert!(Arc::ptr_eq(&a.owners, &b.owners));
        let (key, _) = g.nodes.get_key_value("rs").unwrap();
        assert!(Arc::ptr_eq(key, &a.owners[0].uid));
        assert!(Arc::ptr_eq(
            a.namespace.as_ref().unwrap(),
            rs.namespace.as_ref().unwrap()
        ));
        // A different owner list is not shared.
        insert(&mut g, "c", &["rs", "other"]);
        assert!(!Arc::ptr_eq(&g.nodes["c"].owners, &g.nodes["a"].owners));
        assert_eq!(g.dependents["rs"].len(), 3);
    }

    #[test]
    fn removing_dependents_forgets_their_owner_entry() {
        let mut g = Graph::default();
        insert(&mut g, "a", &["rs"]);
        insert(&mut g, "b", &["rs"]);
        let touched = g.remove("a");
        assert!(touched.iter().any(|u| &**u == "rs"));
        assert_eq!(g.dependents["rs"].len(), 1);
        g.remove("b");
        assert!(g.dependents.is_empty());
        assert!(g.nodes.is_empty());
    }

    #[test]
    fn an_update_moves_the_dependent_between_owners() {
        let mut g = Graph::default();
        insert(&mut g, "a", &["one"]);
        let touched = insert(&mut g, "a", &["two"]);
        assert!(touched.iter().any(|u| &**u == "one"));
        assert!(touched.iter().any(|u| &**u == "two"));
        assert!(!g.dependents.contains_key("one"));
        assert_eq!(g.dependents["two"].len(), 1);
        assert!(decide(&g, "a").is_some(), "owner two is missing");
    }
}
