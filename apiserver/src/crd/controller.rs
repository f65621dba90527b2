//! The API server's own CRD controller, as upstream's apiextensions-apiserver
//! runs its naming, establishing and finalizing controllers in-process:
//!
//! - names: a CRD's names are accepted unless another CRD of its group
//!   already serves them (`NamesAccepted`), and then it is `Established`;
//! - serving: every established CRD's served versions are served (the
//!   registry starts and stops their watch caches);
//! - finalizing: a deleting CRD's objects are deleted, and its
//!   `customresourcecleanup` finalizer removed once none is left.

use super::{condition_true, served, set_condition, CLEANUP_FINALIZER};
use crate::meta;
use crate::registry::{DeleteOptions, Part, Registry, WriteOptions};
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource};
use std::sync::Arc;
use std::time::Duration;

fn definitions() -> &'static Resource {
    catalog::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CRDs in the catalog")
}

/// Serves the established CRDs' resources, then runs the controller for as
/// long as the server runs.
pub async fn start(reg: Arc<Registry>) {
    if let Err(e) = reconcile(&reg).await {
        tracing::warn!(error = %e, "custom resource definitions");
    }
    tokio::spawn(async move {
        let cache = reg.cache(definitions());
        loop {
            let seen = cache.revision();
            if let Err(e) = reconcile(&reg).await {
                tracing::warn!(error = %e, "custom resource definitions");
            }
            // Again on the next change to a CRD, and every few seconds while
            // one is being finalized or its status could not be written.
            cache.wait_for(seen + 1, Duration::from_secs(5)).await;
        }
    });
}

/// One pass over every CRD.
async fn reconcile(reg: &Registry) -> Result<(), crate::error::ApiError> {
    let res = definitions();
    let (entries, _) = reg.cache(res).list(&res.key_prefix());
    let mut crds: Vec<Value> = entries.iter().map(|e| e.object()).collect();
    // The oldest claim to a name wins, as upstream's naming controller
    // keeps names already accepted.
    crds.sort_by(|a, b| {
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
    let mut serving = Vec::new();
    for i in 0..crds.len() {
        let mut crd = crds[i].clone();
        let others: Vec<&Value> = crds
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| c)
            .collect();
        let changed = judge_names(&mut crd, &others);
        if changed {
            write_status(reg, &crd).await;
            crds[i] = crd.clone();
        }
        if condition_true(&crd, "Established") {
            serving.extend(served::resources(&crd));
        }
    }
    reg.serve_custom(serving);
    for crd in &crds {
        if meta::deletion_timestamp(crd).is_some() {
            finalize(reg, crd).await;
        }
    }
    Ok(())
}

/// Judges a CRD's names against the other CRDs of its group; true when its
/// status changed.
fn judge_names(crd: &mut Value, others: &[&Value]) -> bool {
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
    let before = crd.get("status").cloned();
    match conflict {
        None => {
            crd["status"]["acceptedNames"] = names;
            set_condition(
                crd,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            if !condition_true(crd, "Established") {
                set_condition(
                    crd,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                );
            }
        }
        Some((reason, message)) => {
            set_condition(crd, "NamesAccepted", "False", reason, &message);
            if !condition_true(crd, "Established") {
                set_condition(
                    crd,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
    }
    crd.get("status").cloned() != before
}

/// Writes a CRD's status as the controller judged it; a conflict is
/// retried on the next pass.
async fn write_status(reg: &Registry, crd: &Value) {
    let res = definitions();
    let status = crd.get("status").cloned().unwrap_or(Value::Null);
    let uid = meta::uid(crd).map(String::from);
    let result = reg
        .update_with(
            res,
            None,
            meta::name(crd),
            Part::Status,
            &controller_options(),
            "Update",
            |cur| {
                if meta::uid(cur).map(String::from) != uid {
                    return Err(crate::error::ApiError::not_found(res, meta::name(cur)));
                }
                let mut next = cur.clone();
                next["status"] = status.clone();
                Ok(next)
            },
        )
        .await;
    if let Err(e) = result {
        tracing::debug!(crd = meta::name(crd), error = %e.message, "CRD status not written");
    }
}

fn controller_options() -> WriteOptions {
    WriteOptions {
        field_manager: Some("kube-apiserver".into()),
        ..WriteOptions::default()
    }
}

/// Deletes a deleting CRD's objects; once none is left, lets the CRD go.
async fn finalize(reg: &Registry, crd: &Value) {
    if !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
        return;
    }
    let name = meta::name(crd).to_string();
    // Its storage version's objects are all its objects.
    let Some(custom) = served::resources(crd)
        .into_iter()
        .next()
        .map(catalog::storage_resource)
    else {
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
