//! The API server's own CRD controller, as upstream's apiextensions-apiserver
//! runs its naming, establishing and finalizing controllers in-process:
//!
//! - names: a CRD's names are accepted unless another CRD of its group
//!   already serves them (`NamesAccepted`), and then it is `Established`;
//! - serving: every established CRD's served versions are served (the
//!   registry starts and stops their watch caches);
//! - finalizing: a deleting CRD's objects are deleted, and its
//!   `customresourcecleanup` finalizer removed once none is left.

use super::{condition_true, definitions, served, set_condition, CLEANUP_FINALIZER};
use crate::meta;
use crate::registry::{DeleteOptions, Part, Registry, WriteOptions};
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the controller keeps of each CRD between passes (by storage key):
/// its revision, what judging its names reads (`summary`), and the
/// resources it serves, so a pass over CRDs that did not change parses and
/// builds nothing and holds no second copy of their schemas (those of
/// prometheus-operator's CRDs are megabytes).
#[derive(Default)]
struct Known(HashMap<String, (i64, Arc<Value>, Vec<&'static Resource>)>);

/// A CRD without its schemas: metadata, group, names and status.
fn summary(crd: &Value) -> Value {
    let mut metadata = crd.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.remove("managedFields");
    }
    json!({
        "metadata": metadata,
        "spec": {"group": crd.pointer("/spec/group"), "names": crd.pointer("/spec/names")},
        "status": crd.get("status").cloned().unwrap_or(json!({})),
    })
}

/// Serves the established CRDs' resources, then runs the controller for as
/// long as the server runs.
pub async fn start(reg: Arc<Registry>) {
    let mut known = Known::default();
    reconcile(&reg, &mut known).await;
    tokio::spawn(async move {
        let cache = reg.cache(definitions());
        loop {
            let seen = cache.revision();
            let again_soon = reconcile(&reg, &mut known).await;
            // Again on the next change to a CRD; also after a while when one
            // is being finalized or its status could not be written.
            let wait = if again_soon { 1 } else { 60 };
            cache.wait_for(seen + 1, Duration::from_secs(wait)).await;
        }
    });
}

/// One pass over every CRD; true when one needs another pass soon.
async fn reconcile(reg: &Registry, known: &mut Known) -> bool {
    let res = definitions();
    let (entries, _) = reg.cache(res).list(&res.key_prefix());
    known
        .0
        .retain(|key, _| entries.iter().any(|e| &e.key == key));
    let mut crds: Vec<(Arc<Value>, Vec<&'static Resource>, usize)> = entries
        .iter()
        .enumerate()
        .map(|(at, e)| {
            let slot = known
                .0
                .entry(e.key.clone())
                .or_insert((-1, Arc::default(), Vec::new()));
            if slot.0 != e.mod_revision {
                let crd = e.object();
                let serves = if condition_true(&crd, "Established") {
                    served::resources(&crd)
                } else {
                    Vec::new()
                };
                *slot = (e.mod_revision, Arc::new(summary(&crd)), serves);
            }
            (slot.1.clone(), slot.2.clone(), at)
        })
        .collect();
    // The oldest claim to a name wins, as upstream's naming controller
    // keeps names already accepted.
    crds.sort_by(|(a, ..), (b, ..)| {
        let at = |o: &Value| {
            o.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        at(a)
            .cmp(&at(b))
            .then_with(|| meta::name(a).cmp(meta::name(b)))
    });
    let mut again_soon = false;
    let mut serving = Vec::new();
    let mut judged_statuses = Vec::new();
    for i in 0..crds.len() {
        let others: Vec<&Value> = crds
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (c, ..))| &**c)
            .collect();
        if let Some(status) = judge_names(&crds[i].0, &others) {
            let mut judged = entries[crds[i].2].object();
            judged["status"] = status;
            crds[i].1 = if condition_true(&judged, "Established") {
                served::resources(&judged)
            } else {
                Vec::new()
            };
            crds[i].0 = Arc::new(summary(&judged));
            judged_statuses.push(judged);
        }
        serving.extend(crds[i].1.iter().copied());
    }
    // Served before Established is written: whoever sees the condition
    // (kubectl, discovery in the controllers) finds the resource served.
    reg.serve_custom(serving);
    for judged in &judged_statuses {
        again_soon |= !write_status(reg, judged).await;
    }
    for (crd, serves, _) in &crds {
        if meta::deletion_timestamp(crd).is_some() {
            again_soon = true;
            finalize(reg, crd, serves).await;
        }
    }
    again_soon
}

/// Judges a CRD's names against the other CRDs of its group; its new
/// status when that changed.
fn judge_names(crd: &Value, others: &[&Value]) -> Option<Value> {
    let group = crd.pointer("/spec/group").cloned().unwrap_or(Value::Null);
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let name_of = |n: &Value, k: &str| {
        n.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut conflict: Option<(&str, String)> = None;
    for other in others {
        if other.pointer("/spec/group") != Some(&group) {
            continue;
        }
        let Some(taken) = other.pointer("/status/acceptedNames") else {
            continue;
        };
        let taken_short: Vec<&str> = taken
            .get("shortNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let plural = name_of(&names, "plural");
        let singular = name_of(&names, "singular");
        if !plural.is_empty()
            && (plural == name_of(taken, "plural")
                || plural == name_of(taken, "singular")
                || taken_short.contains(&plural.as_str()))
        {
            conflict = Some(("PluralConflict", format!("{plural:?} is already in use")));
        } else if !singular.is_empty()
            && (singular == name_of(taken, "plural")
                || singular == name_of(taken, "singular")
                || taken_short.contains(&singular.as_str()))
        {
            conflict = Some((
                "SingularConflict",
                format!("{singular:?} is already in use"),
            ));
        } else if let Some(short) = names
            .get("shortNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|s| {
                *s == name_of(taken, "plural")
                    || *s == name_of(taken, "singular")
                    || taken_short.contains(s)
            })
        {
            conflict = Some(("ShortNamesConflict", format!("{short:?} is already in use")));
        } else if name_of(&names, "kind") == name_of(taken, "kind")
            || name_of(&names, "kind") == name_of(taken, "listKind")
        {
            conflict = Some((
                "KindConflict",
                format!("{:?} is already in use", name_of(&names, "kind")),
            ));
        } else if name_of(&names, "listKind") == name_of(taken, "listKind")
            || name_of(&names, "listKind") == name_of(taken, "kind")
        {
            conflict = Some((
                "ListKindConflict",
                format!("{:?} is already in use", name_of(&names, "listKind")),
            ));
        }
        if conflict.is_some() {
            break;
        }
    }
    let before = crd.get("status").cloned().unwrap_or(json!({}));
    // Only the status is judged: the conditions' helpers take it in an object.
    let mut judged = json!({"status": before.clone()});
    match conflict {
        None => {
            judged["status"]["acceptedNames"] = names;
            set_condition(
                &mut judged,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            if !condition_true(&judged, "Established") {
                set_condition(
                    &mut judged,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                );
            }
        }
        Some((reason, message)) => {
            set_condition(&mut judged, "NamesAccepted", "False", reason, &message);
            if !condition_true(&judged, "Established") {
                set_condition(
                    &mut judged,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
    }
    let status = judged["status"].take();
    (status != before).then_some(status)
}

/// Writes a CRD's status as the controller judged it; false when it was
/// not written (a conflict is judged again on the next pass).
async fn write_status(reg: &Registry, crd: &Value) -> bool {
    let res = definitions();
    let status = crd.get("status").cloned().unwrap_or(Value::Null);
    // Over the version judged only: a CRD changed meanwhile is judged again.
    let judged_at = meta::resource_version(crd).and_then(|rv| rv.parse::<i64>().ok());
    let result = reg
        .update_with(
            res,
            None,
            meta::name(crd),
            Part::Status,
            &controller_options(),
            "Update",
            |cur| {
                let mut next = cur.clone();
                next["status"] = status.clone();
                if let Some(rv) = judged_at {
                    meta::set_resource_version(&mut next, rv);
                }
                Ok(next)
            },
        )
        .await;
    match result {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(crd = meta::name(crd), error = %e.message, "CRD status not written");
            false
        }
    }
}

fn controller_options() -> WriteOptions {
    WriteOptions {
        field_manager: Some("kube-apiserver".into()),
        ..WriteOptions::default()
    }
}

/// Deletes a deleting CRD's objects; once none is left, lets the CRD go.
async fn finalize(reg: &Registry, crd: &Value, serves: &[&'static Resource]) {
    if !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
        return;
    }
    let name = meta::name(crd).to_string();
    // Its storage version's objects are all its objects.
    let Some(custom) = serves.first().copied().map(catalog::storage_resource) else {
        // Never served: nothing can have been stored.
        remove_finalizer(reg, &name).await;
        return;
    };
    let mut progress = crd.clone();
    if set_condition(
        &mut progress,
        "Terminating",
        "True",
        "InstanceDeletionInProgress",
        "CustomResource deletion is in progress",
    ) {
        write_status(reg, &progress).await;
    }
    let (items, _) = reg.cache(custom).list(&custom.key_prefix());
    let mut left = 0;
    for item in items {
        let obj = item.object();
        left += 1;
        if meta::deletion_timestamp(&obj).is_some() {
            continue;
        }
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        if let Err(e) = reg
            .delete(custom, ns, meta::name(&obj), &DeleteOptions::default())
            .await
        {
            if e.code != 404 {
                tracing::warn!(crd = %name, object = meta::name(&obj), error = %e.message, "deleting a custom resource");
            }
        }
    }
    if left == 0 {
        remove_finalizer(reg, &name).await;
    }
}

async fn remove_finalizer(reg: &Registry, name: &str) {
    let res = definitions();
    let Ok(mut done) = reg.get(res, None, name).await else {
        return;
    };
    if set_condition(
        &mut done,
        "Terminating",
        "False",
        "InstanceDeletionCompleted",
        "removed all instances",
    ) {
        write_status(reg, &done).await;
    }
    let result = reg
        .update_with(
            res,
            None,
            name,
            Part::Main,
            &controller_options(),
            "Update",
            |cur| {
                let mut next = cur.clone();
                let kept: Vec<String> = meta::finalizers(cur)
                    .into_iter()
                    .filter(|f| f != CLEANUP_FINALIZER)
                    .collect();
                meta::metadata_mut(&mut next).insert("finalizers".into(), json!(kept));
                Ok(next)
            },
        )
        .await;
    if let Err(e) = result {
        tracing::debug!(crd = name, error = %e.message, "CRD finalizer not removed");
    }
}
