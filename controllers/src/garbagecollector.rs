//! The garbage collector: keeps a graph of every object's ownerReferences
//! (one watch per stored resource) and acts as upstream's does —
//! dependents whose owners are all gone are deleted (background), a deleting
//! owner with the `orphan` finalizer has its dependents' references removed
//! first, and one with `foregroundDeletion` has its dependents deleted and
//! keeps its finalizer until no blocking dependent remains.

use crate::resources;
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{DynamicObject, ObjectMeta, PartialObjectMeta};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use skiff_machinery::catalog::{self, Resource};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Semaphore};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// API calls the collector makes at once.
const WORKERS: usize = 8;

#[derive(Debug, Clone)]
struct OwnerRef {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    block: bool,
}

#[derive(Debug, Clone)]
struct Node {
    res: &'static Resource,
    namespace: Option<String>,
    name: String,
    resource_version: String,
    owners: Vec<OwnerRef>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Node {
    fn from(res: &'static Resource, m: &ObjectMeta) -> Option<(String, Node)> {
        let owners = m
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
                block: r.block_owner_deletion.unwrap_or(false),
            })
            .collect();
        Some((
            m.uid.clone()?,
            Node {
                res,
                namespace: m.namespace.clone(),
                name: m.name.clone()?,
                resource_version: m.resource_version.clone().unwrap_or_default(),
                owners,
                deleting: m.deletion_timestamp.is_some(),
                finalizers: m.finalizers.clone().unwrap_or_default(),
            },
        ))
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Inserts or replaces a node; returns the uids whose decisions may change.
    fn upsert(&mut self, uid: String, node: Node) -> Vec<String> {
        let mut touched = vec![uid.clone()];
        if let Some(old) = self.nodes.remove(&uid) {
            for o in &old.owners {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(&uid);
                }
                touched.push(o.uid.clone());
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            touched.push(o.uid.clone());
        }
        self.nodes.insert(uid, node);
        touched
    }

    fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched: Vec<String> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(old) = self.nodes.remove(uid) {
            for o in &old.owners {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(uid);
                }
                touched.push(o.uid.clone());
            }
        }
        touched
    }
}

#[allow(clippy::large_enum_variant)] // events are the common case; boxing them buys nothing
enum Msg {
    Event(usize, watcher::Event<PartialObjectMeta<DynamicObject>>),
    /// Decide again about an object that changed while an action on it ran.
    Recheck(String),
}

pub async fn run(client: Client) -> anyhow::Result<()> {
    let kinds: Vec<&'static Resource> = resources::stored().collect();
    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    for (i, res) in kinds.iter().enumerate() {
        let api = resources::metadata_api(&client, res);
        let tx = tx.clone();
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
        });
    }
    let mut graph = Graph::default();
    let mut synced: HashSet<usize> = HashSet::new();
    let mut relisting: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let skipped: Arc<Mutex<HashSet<String>>> = Arc::default();
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
                    let gone: Vec<String> = graph
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
        if synced.len() < kinds.len() {
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
                queue.add(uid.clone());
                let (client, in_flight, skipped, workers, tx, queue) = (
                    client.clone(),
                    in_flight.clone(),
                    skipped.clone(),
                    workers.clone(),
                    tx.clone(),
                    queue.clone(),
                );
                tokio::spawn(async move {
                    let _permit = workers.acquire().await;
                    if let Err(e) = queue.work(&uid, act(&client, &action)).await {
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
        owner_uid: String,
        dependents: Vec<Node>,
    },
    /// Delete these dependents (foreground); drop the finalizer when none block.
    Foreground {
        owner: Node,
        delete: Vec<(String, Node)>,
        release: bool,
    },
    /// The owners the graph lacks: confirm, then delete or drop dangling refs.
    CheckOwners {
        uid: String,
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
    let node = graph.nodes.get(uid)?;
    let dependents = || -> Vec<(String, Node)> {
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
            owner_uid: uid.to_string(),
            dependents: deps,
        });
    }
    if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
        let deps = dependents();
        let blocking = deps
            .iter()
            .any(|(_, d)| d.owners.iter().any(|o| o.uid == uid && o.block));
        let delete: Vec<(String, Node)> = deps.into_iter().filter(|(_, d)| !d.deleting).collect();
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
        uid: uid.to_string(),
        node: node.clone(),
        missing,
    })
}

async fn act(client: &Client, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Orphan {
            owner,
            owner_uid,
            dependents,
        } => {
            for d in dependents {
                let refs: Vec<&OwnerRef> =
                    d.owners.iter().filter(|o| &o.uid != owner_uid).collect();
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
                if owner_absent(client, node, o).await? {
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
    dependent: &Node,
    owner: &OwnerRef,
) -> Result<bool, kube::Error> {
    let Some(res) =
        catalog::by_kind(&owner.api_version, &owner.kind).map(catalog::storage_resource)
    else {
        // A kind we do not know (a custom resource not served): never collect for it.
        return Ok(false);
    };
    let api = resources::api_for(client, res, dependent.namespace.as_deref());
    match api.get_opt(&owner.name).await? {
        Some(o) => Ok(o.metadata.uid.as_deref() != Some(owner.uid.as_str())),
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
        .map(|o| json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid, "blockOwnerDeletion": o.block}))
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
