//! A DaemonSet's template history in ControllerRevisions, as upstream's
//! `constructHistory`: one revision per template, named `<ds>-<hash>` and
//! labelled with the hash its pods carry, holding the strategic merge patch
//! that restores the template (what `kubectl rollout undo` applies) and a
//! revision number (what `kubectl rollout history` lists). The current
//! template's revision always has the highest number; old ones beyond
//! revisionHistoryLimit go once no pod runs them.

use super::util::HASH_LABEL;
use super::{Ctx, Error};
use crate::deployment::util::template_hash;
use crate::pods;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use skiff_machinery::client::CachedPod;
use std::collections::HashSet;
use std::sync::Arc;

/// The patch a revision holds: `{"spec":{"template":{…,"$patch":"replace"}}}`
/// with keys sorted and the template shaped as upstream's getPatch writes
/// it, so `kubectl rollout undo` recognises the current revision. Here
/// revisions are compared as JSON values, where key order does not matter.
pub fn patch_of(ds: &DaemonSet) -> Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut t = serde_json::to_value(&template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
        // Go writes a template's zero creationTimestamp as null; so must we
        // for kubectl, which compares bytes, to see a matching revision.
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry("creationTimestamp").or_insert(Value::Null);
        }
    }
    sorted(json!({"spec": {"template": t}}))
}

/// Maps rebuilt with their keys in order, as Go writes maps.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        v => v,
    }
}

fn matches(ds_patch: &Value, rev: &ControllerRevision) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == ds_patch)
}

pub fn hash_of(rev: &ControllerRevision) -> String {
    rev.labels().get(HASH_LABEL).cloned().unwrap_or_default()
}

/// The current revision (created or renumbered as needed) and the old ones.
pub async fn construct(
    ds: &DaemonSet,
    ctx: &Ctx,
) -> Result<(ControllerRevision, Vec<ControllerRevision>), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = pods::selector_of(
        &ds.spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default(),
    );
    // Its own revisions and its namespace's orphans, from the owner index.
    let candidates = crate::resources::owned_or_orphaned::<ControllerRevision>(
        &ds.uid().unwrap_or_default(),
        &ns,
    );
    let owned = pods::claim(&ctx.client, ds, &selector, candidates).await?;
    let patch = patch_of(ds);
    let (mut current, mut old) = (Vec::new(), Vec::new());
    for rev in owned {
        let mut rev = (*rev).clone();
        // Revisions written before the hash label existed are labelled with
        // their name, which is unique, instead of a recomputed hash.
        if !rev.labels().contains_key(HASH_LABEL) {
            let name = rev.name_any();
            rev.labels_mut().insert(HASH_LABEL.into(), name.clone());
            rev = api.replace(&name, &PostParams::default(), &rev).await?;
        }
        if matches(&patch, &rev) {
            current.push(rev);
        } else {
            old.push(rev);
        }
    }
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let cur = if current.is_empty() {
        snapshot(ds, &patch, next, ctx).await?
    } else {
        let mut cur = dedup(ds, current, ctx).await?;
        if cur.revision < next {
            cur.revision = next;
            cur = api
                .replace(&cur.name_any(), &PostParams::default(), &cur)
                .await?;
        }
        cur
    };
    Ok((cur, old))
}

/// Records the current template as revision `revision`. A revision of that
/// name holding another template is a hash collision: collisionCount goes up
/// so the next hash differs.
async fn snapshot(
    ds: &DaemonSet,
    patch: &Value,
    revision: i64,
    ctx: &Ctx,
) -> Result<ControllerRevision, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = ds.spec.clone().unwrap_or_default();
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collisions);
    let name = format!("{}-{hash}", ds.name_any());
    let mut labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash);
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![pods::owner_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(patch.clone())),
        revision,
    };
    match api.create(&PostParams::default(), &rev).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await?;
            if matches(patch, &existing) {
                return Ok(existing);
            }
            let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
            let mut fresh = sets.get(&ds.name_any()).await?;
            let seen = fresh.status.as_ref().and_then(|s| s.collision_count);
            if seen != collisions {
                // Our collision count was stale; the next sync uses the new one.
                return Err(Error::Other(format!(
                    "stale collision count for {}",
                    ds.name_any()
                )));
            }
            let status = fresh.status.get_or_insert_with(Default::default);
            status.collision_count = Some(collisions.unwrap_or(0) + 1);
            sets.replace_status(&ds.name_any(), &PostParams::default(), &fresh)
                .await?;
            Err(Error::Other(format!("hash collision for revision {name}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Several revisions holding the current template: keeps the newest,
/// moves the others' pods onto its hash and deletes them. (Upstream
/// relabels every pod not on the kept hash; only the duplicates' pods run
/// this template, so only they are relabelled here.)
async fn dedup(
    ds: &DaemonSet,
    mut current: Vec<ControllerRevision>,
    ctx: &Ctx,
) -> Result<ControllerRevision, Error> {
    current.sort_by_key(|r| r.revision);
    let keep = current.pop().expect("at least one current revision");
    if current.is_empty() {
        return Ok(keep);
    }
    let ns = ds.namespace().unwrap_or_default();
    let keep_hash = hash_of(&keep);
    let dup_hashes: HashSet<String> = current.iter().map(hash_of).collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for p in crate::resources::owned_by::<CachedPod>(&ds.uid().unwrap_or_default()) {
        if p.labels()
            .get(HASH_LABEL)
            .is_some_and(|h| dup_hashes.contains(h))
        {
            let patch = json!({"metadata": {"labels": {HASH_LABEL: keep_hash}}});
            pods.patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await?;
        }
    }
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    for dup in current {
        match api.delete(&dup.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(keep)
}

/// Deletes the oldest revisions beyond revisionHistoryLimit that no pod
/// (even a finished or deleted one still cached) runs.
pub async fn cleanup(
    ds: &DaemonSet,
    mut old: Vec<ControllerRevision>,
    pods: &[Arc<CachedPod>],
    ctx: &Ctx,
) -> Result<(), Error> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0);
    let mut to_kill = old.len() as i64 - limit as i64;
    if to_kill <= 0 {
        return Ok(());
    }
    let live: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.labels().get(HASH_LABEL))
        .map(String::as_str)
        .collect();
    old.sort_by_key(|r| r.revision);
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    for rev in old {
        if to_kill <= 0 {
            break;
        }
        if live.contains(hash_of(&rev).as_str()) {
            continue;
        }
        match api.delete(&rev.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        to_kill -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_replaces_the_template_in_go_key_order() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]},
                         "metadata": {"labels": {"a": "b"}}}}}))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&patch_of(&ds)).unwrap(),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"a":"b"}},"spec":{"containers":[{"image":"i","name":"c"}]}}}}"#
        );
    }
}
