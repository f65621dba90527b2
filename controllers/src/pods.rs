//! What the workload controllers share about the pods they manage, after
//! upstream's `pkg/controller` helpers: which pods count as active, ready
//! and available, controller references, adoption and release, creating
//! pods from a template, and expectations (what a controller is waiting to
//! see in its cache before it acts again).

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_machinery::client::CachedPod;
use skiff_machinery::labels::Selector;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The owner reference marked as the managing controller, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Not finished and not being deleted (upstream's `IsPodActive`).
pub fn is_active(p: &CachedPod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && p.metadata.deletion_timestamp.is_none()
}

pub fn is_ready(p: &CachedPod) -> bool {
    p.condition("Ready").is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds`; else how long until it will be
/// (`Err(None)` when it is not ready at all).
pub fn availability(p: &CachedPod, min_ready_seconds: i32) -> Result<(), Option<Duration>> {
    let Some(c) = p.condition("Ready").filter(|c| c.status == "True") else {
        return Err(None);
    };
    if min_ready_seconds <= 0 {
        return Ok(());
    }
    let Some(since) = c.last_transition_time.as_ref() else {
        return Ok(());
    };
    let ready_for = k8s_openapi::jiff::Timestamp::now().duration_since(since.0);
    let needed = k8s_openapi::jiff::SignedDuration::from_secs(min_ready_seconds as i64);
    if ready_for >= needed {
        Ok(())
    } else {
        Err(Some((needed - ready_for).unsigned_abs()))
    }
}

pub fn selector_of(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Selector {
    serde_json::to_value(sel)
        .ok()
        .and_then(|v| Selector::from_label_selector(&v).ok())
        // An unreadable selector selects nothing, never everything.
        .unwrap_or_else(|| Selector::parse("!skiff.invalid/selector").expect("selector"))
}

pub fn labels_match(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
    // An empty selector selects nothing for controllers (upstream).
    !sel.is_empty() && sel.matches_with(|k| labels.get(k).map(String::as_str))
}

/// The objects in `pod`'s namespace whose selector (as `selector` reads it
/// from each) matches the pod's labels: the controllers that may adopt it
/// while it is an orphan.
pub fn selecting<S>(
    sets: &Store<S>,
    pod: &CachedPod,
    selector: impl Fn(&S) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Vec<Arc<S>>
where
    S: Resource<DynamicType = ()> + Clone,
{
    let ns = pod.metadata.namespace.as_deref();
    sets.state()
        .into_iter()
        .filter(|s| s.meta().namespace.as_deref() == ns)
        .filter(|s| selector(s).is_some_and(|sel| labels_match(&selector_of(sel), pod.labels())))
        .collect()
}

/// The sets a pod's change concerns: the one controlling it when that is a
/// `kind`, none when something else controls it, and for an orphan the
/// `adopters` that may take it.
pub fn sets_for_pod<S>(
    pod: &CachedPod,
    kind: &str,
    adopters: impl FnOnce() -> Vec<Arc<S>>,
) -> Vec<ObjectRef<S>>
where
    S: Resource<DynamicType = ()>,
{
    match controller_of(&pod.metadata) {
        Some(r) if r.kind == kind => {
            vec![ObjectRef::new(&r.name)
                .within(pod.metadata.namespace.as_deref().unwrap_or_default())]
        }
        Some(_) => vec![],
        None => adopters()
            .iter()
            .map(|s| ObjectRef::from_obj(&**s))
            .collect(),
    }
}

/// A controller reference to `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Claims objects for `owner`, as upstream's ControllerRefManager: those it
/// controls and still selects are kept; those it controls but no longer
/// selects are released; orphans it selects are adopted (unless the owner
/// is being deleted). Returns the claimed ones.
pub async fn claim<O, K>(
    client: &Client,
    owner: &O,
    selector: &Selector,
    candidates: Vec<Arc<K>>,
) -> Result<Vec<Arc<K>>, kube::Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    claim_with_finalizers(client, owner, selector, candidates, &[]).await
}

/// `claim`, where adopting also adds `finalizers` and releasing removes
/// them, in the same patch (upstream's ref manager with finalizers, as the
/// Job controller uses for its tracking finalizer).
pub async fn claim_with_finalizers<O, K>(
    client: &Client,
    owner: &O,
    selector: &Selector,
    candidates: Vec<Arc<K>>,
    finalizers: &[&str],
) -> Result<Vec<Arc<K>>, kube::Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let uid = owner.uid().unwrap_or_default();
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let mut claimed = Vec::new();
    for obj in candidates {
        if obj.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        let matches = labels_match(selector, obj.labels());
        match controller_of(obj.meta()) {
            Some(r) if r.uid == uid => {
                if matches {
                    claimed.push(obj);
                } else if obj.meta().deletion_timestamp.is_none() {
                    // Release: drop our reference, uid-checked.
                    let mut patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": uid}],
                        "uid": obj.uid(),
                    }});
                    if !finalizers.is_empty() {
                        patch["metadata"]["$deleteFromPrimitiveList/finalizers"] =
                            json!(finalizers);
                    }
                    match api
                        .patch(
                            &obj.name_any(),
                            &PatchParams::default(),
                            &Patch::Strategic(patch),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Some(_) => {}
            None => {
                if !matches
                    || obj.meta().deletion_timestamp.is_some()
                    || owner.meta().deletion_timestamp.is_some()
                {
                    continue;
                }
                let mut patch = json!({"metadata": {
                    "ownerReferences": [owner_ref(owner)],
                    "uid": obj.uid(),
                }});
                if !finalizers.is_empty() {
                    patch["metadata"]["finalizers"] = json!(finalizers);
                }
                match api
                    .patch(
                        &obj.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(patch),
                    )
                    .await
                {
                    Ok(adopted) => claimed.push(Arc::new(adopted)),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(claimed)
}

/// A pod for `owner` from its template, named `<prefix>-<random>`.
pub fn pod_from_template<O: Resource<DynamicType = ()>>(
    owner: &O,
    template: &PodTemplateSpec,
    prefix: &str,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: owner.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner_ref(owner)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

pub async fn create_pod(client: &Client, pod: &Pod) -> Result<Pod, kube::Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), pod)
        .await
}

/// Deletes a pod by uid (so a namesake created since is safe); a pod
/// already gone counts as deleted.
pub async fn delete_pod(client: &Client, p: Arc<CachedPod>) -> Result<Arc<CachedPod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
    let dp = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: p.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&p.name_any(), &dp).await {
        Ok(_) => Ok(p),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(p),
        Err(e) => Err(e),
    }
}

/// Creates or deletes run in batches of 1, 2, 4, … and stop at the first
/// failure, so a broken template costs one error, not hundreds (upstream's
/// slowStartBatch). Returns how many succeeded and the first error.
pub async fn slow_start<F, Fut, T>(count: usize, mut op: F) -> (Vec<T>, Option<kube::Error>)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut done = Vec::new();
    let mut batch = 1;
    let mut started = 0;
    while started < count {
        let n = batch.min(count - started);
        let results = futures::future::join_all((started..started + n).map(&mut op)).await;
        started += n;
        let mut error = None;
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) => error = error.or(Some(e)),
            }
        }
        if error.is_some() {
            return (done, error);
        }
        batch *= 2;
    }
    (done, None)
}

/// What a controller waits to see in its cache before acting on an object
/// again: the pods it created (by name) and deleted (by uid). A slow watch
/// then cannot make it create or delete twice. Expectations lapse after
/// five minutes, as upstream's, so a lost event cannot wedge an object.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Expected>>,
}

struct Expected {
    created: Vec<String>,
    /// The names and uids of the pods deleted.
    deleted: Vec<(String, String)>,
    since: Instant,
}

const EXPECTATIONS_TTL: Duration = Duration::from_secs(300);

/// A deleted pod as `Expectations::expect` takes it.
pub fn name_and_uid(pod: &CachedPod) -> (String, String) {
    (pod.name_any(), pod.uid().unwrap_or_default())
}

impl Expectations {
    /// `created` names the pods created, `deleted` the pods deleted (see
    /// `name_and_uid`).
    pub fn expect(&self, key: &str, created: Vec<String>, deleted: Vec<(String, String)>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.insert(
            key.to_string(),
            Expected {
                created,
                deleted,
                since: Instant::now(),
            },
        );
    }

    /// Whether the cache now shows everything expected for `key`.
    pub fn satisfied(&self, key: &str, pods: &Store<CachedPod>, namespace: &str) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = p.get(key) else {
            return true;
        };
        let cached = |name: &str| {
            pods.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
        };
        let seen_created = e.created.iter().all(|name| cached(name).is_some());
        // Gone from the cache, replaced by a namesake, or terminating.
        let seen_deleted = e.deleted.iter().all(|(name, uid)| {
            cached(name).is_none_or(|p| {
                p.uid().as_deref() != Some(uid.as_str()) || p.metadata.deletion_timestamp.is_some()
            })
        });
        if (seen_created && seen_deleted) || e.since.elapsed() > EXPECTATIONS_TTL {
            p.remove(key);
            return true;
        }
        false
    }

    pub fn forget(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The strategic merge patch a ControllerRevision holds for a pod template
/// (upstream's getPatch for DaemonSets and StatefulSets):
/// `{"spec":{"template":{…,"$patch":"replace"}}}`, keys in Go's order and
/// the template's zero creationTimestamp written as null, so the real
/// `kubectl rollout history|undo`, which compares bytes, recognises it.
pub fn revision_patch(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry("creationTimestamp")
                .or_insert(serde_json::Value::Null);
        }
    }
    go_key_order(json!({"spec": {"template": t}}))
}

/// The template a revision's patch restores (the inverse of `revision_patch`).
pub fn template_of_patch(patch: &serde_json::Value) -> Option<PodTemplateSpec> {
    let mut t = patch.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Maps rebuilt with their keys in byte order, as Go's encoder writes them.
fn go_key_order(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, go_key_order(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(go_key_order).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    fn pod(name: &str, uid: &str, terminating: bool) -> CachedPod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid,
                         "deletionTimestamp": terminating.then_some("2026-01-01T00:00:00Z")},
        }))
        .unwrap()
    }

    #[test]
    fn deletions_are_seen_by_name_and_uid() {
        let (store, mut writer) = reflector::store::<CachedPod>();
        for p in [
            pod("a", "1", false),
            pod("b", "2", false),
            pod("c", "3", false),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(p));
        }
        let e = Expectations::default();
        let deleted = vec![
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("c".into(), "3".into()),
        ];
        e.expect("ns/rs", vec![], deleted);
        assert!(!e.satisfied("ns/rs", &store, "ns"), "all three still there");
        // a gone, b terminating, c replaced by a namesake: all deleted.
        writer.apply_watcher_event(&watcher::Event::Delete(pod("a", "1", false)));
        writer.apply_watcher_event(&watcher::Event::Apply(pod("b", "2", true)));
        assert!(!e.satisfied("ns/rs", &store, "ns"), "c is still there");
        writer.apply_watcher_event(&watcher::Event::Apply(pod("c", "4", false)));
        assert!(e.satisfied("ns/rs", &store, "ns"));
    }
}
