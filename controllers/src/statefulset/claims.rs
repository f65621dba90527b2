//! A StatefulSet pod's PersistentVolumeClaims, as upstream's
//! StatefulPodControl: one claim per volumeClaimTemplate, named
//! `<claim>-<set>-<ordinal>` and labelled with the template's labels and the
//! selector's, created before the pod and never replaced while it is being
//! deleted. persistentVolumeClaimRetentionPolicy decides their owners, and
//! so what the garbage collector deletes: whenDeleted=Delete makes the set
//! their controller, whenScaled=Delete makes a pod scaled away (its ordinal
//! out of range) the controller of its claims; Retain leaves them ownerless.

use super::identity::{claim_name, in_range, ordinal};
use super::{events, unless_gone, Ctx};
use crate::pods::owner_ref;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use skiff_machinery::client::CachedPod;

/// (whenDeleted, whenScaled) are Delete; anything else is Retain.
fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// The claims pod `ordinal` mounts, built from the templates (upstream's
/// getPersistentVolumeClaims).
pub fn claims_for(set: &StatefulSet, ordinal: i64) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut claim = t.clone();
            claim.metadata.name = Some(claim_name(set, &t.name_any(), ordinal));
            claim.metadata.namespace = set.namespace();
            claim.labels_mut().extend(selector_labels.clone());
            claim.status = None;
            claim
        })
        .collect()
}

fn cached(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Option<std::sync::Arc<PersistentVolumeClaim>> {
    ctx.claims
        .get(&ObjectRef::new(&claim.name_any()).within(&claim.namespace().unwrap_or_default()))
}

fn refers_to<K: Resource<DynamicType = ()>>(r: &OwnerReference, name: &str) -> bool {
    r.kind == K::kind(&()) && r.api_version == K::api_version(&()) && r.name == name
}

/// The owner references the claim should have under the retention policy,
/// or None to leave it alone (upstream's isClaimOwnerUpToDate and
/// updateClaimOwnerRefForSetAndPod): references to an earlier set or pod
/// of these names are the garbage collector's to act on, and a claim
/// another controller owns is not taken over.
fn wanted_refs(
    set: &StatefulSet,
    pod: &CachedPod,
    claim: &PersistentVolumeClaim,
) -> Option<Vec<OwnerReference>> {
    let refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let (set_name, pod_name) = (set.name_any(), pod.name_any());
    let (set_uid, pod_uid) = (set.uid().unwrap_or_default(), pod.uid().unwrap_or_default());
    let stale = refs.iter().any(|r| {
        (refers_to::<StatefulSet>(r, &set_name) && r.uid != set_uid)
            || (refers_to::<Pod>(r, &pod_name) && r.uid != pod_uid)
    });
    if stale {
        return None;
    }
    let ours = |r: &OwnerReference| {
        refers_to::<StatefulSet>(r, &set_name) || refers_to::<Pod>(r, &pod_name)
    };
    let mut kept: Vec<OwnerReference> = refs.iter().filter(|r| !ours(r)).cloned().collect();
    let (when_deleted, when_scaled) = policy(set);
    let other_controller = kept.iter().any(|r| r.controller == Some(true));
    if (when_deleted || when_scaled) && other_controller {
        return Some(kept);
    }
    let scaled_down = !in_range(set, ordinal(pod));
    if when_scaled && scaled_down {
        kept.push(owner_ref(pod));
    }
    if when_deleted && !(when_scaled && scaled_down) {
        kept.push(owner_ref(set));
    }
    Some(kept)
}

fn same_refs(a: &[OwnerReference], b: &[OwnerReference]) -> bool {
    let key = |v: &[OwnerReference]| {
        let mut v: Vec<(String, Option<bool>)> =
            v.iter().map(|r| (r.uid.clone(), r.controller)).collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

/// Whether every existing claim of the pod has the owners the policy wants.
pub fn match_policy(set: &StatefulSet, pod: &CachedPod, ctx: &Ctx) -> bool {
    claims_for(set, ordinal(pod)).iter().all(|c| {
        let Some(live) = cached(ctx, c) else {
            return true;
        };
        wanted_refs(set, pod, &live).is_none_or(|want| {
            same_refs(
                &want,
                live.metadata
                    .owner_references
                    .as_deref()
                    .unwrap_or_default(),
            )
        })
    })
}

/// Gives the pod's existing claims the owners the policy wants.
pub async fn update_owners(
    set: &StatefulSet,
    pod: &CachedPod,
    ctx: &Ctx,
) -> Result<(), kube::Error> {
    for c in claims_for(set, ordinal(pod)) {
        let Some(live) = cached(ctx, &c) else {
            continue;
        };
        let Some(want) = wanted_refs(set, pod, &live) else {
            continue;
        };
        if same_refs(
            &want,
            live.metadata
                .owner_references
                .as_deref()
                .unwrap_or_default(),
        ) {
            continue;
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &live.namespace().unwrap_or_default());
        // The whole list, on the version read: a concurrent change conflicts.
        let patch = json!({"metadata": {
            "ownerReferences": want,
            "resourceVersion": live.resource_version(),
        }});
        let params = PatchParams::default();
        unless_gone(
            api.patch(&live.name_any(), &params, &Patch::Merge(patch))
                .await,
        )?;
    }
    Ok(())
}

/// A claim of the pod about to be made still belongs to a pod of that name
/// deleted before: wait for the garbage collector (upstream's PodClaimIsStale).
pub fn stale(set: &StatefulSet, pod: &CachedPod, ctx: &Ctx) -> bool {
    if !policy(set).1 {
        return false;
    }
    let name = pod.name_any();
    claims_for(set, ordinal(pod)).iter().any(|c| {
        cached(ctx, c).is_some_and(|live| {
            live.owner_references()
                .iter()
                .any(|r| refers_to::<Pod>(r, &name) && Some(&r.uid) != pod.uid().as_ref())
        })
    })
}

pub enum Missing {
    /// Every claim exists.
    Done,
    /// A claim is being deleted: the pod must wait for it to go.
    Deleting(String),
}

/// Creates the pod's claims that do not exist yet, each announced as an
/// event on the set.
pub async fn create_missing(
    set: &StatefulSet,
    pod: &CachedPod,
    ctx: &Ctx,
) -> Result<Missing, kube::Error> {
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    for mut claim in claims_for(set, ordinal(pod)) {
        match cached(ctx, &claim) {
            Some(live) if live.metadata.deletion_timestamp.is_some() => {
                return Ok(Missing::Deleting(live.name_any()));
            }
            Some(_) => continue,
            None => {}
        }
        // In range, a new claim can only want the set as owner.
        if let Some(refs) = wanted_refs(set, pod, &claim).filter(|r| !r.is_empty()) {
            claim.metadata.owner_references = Some(refs);
        }
        let (pod_name, claim_name) = (pod.name_any(), claim.name_any());
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => events::claim(ctx, set, "create", &claim_name, &pod_name, None),
            // Made since the cache was filled.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                events::claim(ctx, set, "create", &claim_name, &pod_name, Some(&e));
                return Err(e);
            }
        }
    }
    Ok(Missing::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn set(policy: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "set-uid"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                "persistentVolumeClaimRetentionPolicy": policy,
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "x"}}}],
                "template": {}}}))
        .unwrap()
    }

    fn pod(ordinal: i64) -> CachedPod {
        serde_json::from_value(
            json!({"metadata": {"name": format!("db-{ordinal}"), "uid": format!("pod-{ordinal}")}}),
        )
        .unwrap()
    }

    fn owners(set: &StatefulSet, ordinal: i64) -> Vec<String> {
        let claim = claims_for(set, ordinal).remove(0);
        wanted_refs(set, &pod(ordinal), &claim)
            .unwrap()
            .into_iter()
            .map(|r| r.uid)
            .collect()
    }

    #[test]
    fn claims_are_named_and_labelled_per_pod() {
        let s = set(json!({}));
        let c = &claims_for(&s, 1)[0];
        assert_eq!(c.name_any(), "data-db-1");
        assert_eq!(c.labels()["tier"], "x");
        assert_eq!(c.labels()["app"], "db");
    }

    #[test]
    fn owners_follow_the_retention_policy() {
        let retain = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert!(owners(&retain, 1).is_empty() && owners(&retain, 5).is_empty());
        let on_delete = set(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}));
        assert_eq!(owners(&on_delete, 1), ["set-uid"]);
        assert_eq!(owners(&on_delete, 5), ["set-uid"]);
        let on_scale = set(json!({"whenDeleted": "Retain", "whenScaled": "Delete"}));
        assert!(owners(&on_scale, 1).is_empty());
        assert_eq!(owners(&on_scale, 5), ["pod-5"]);
        let both = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}));
        assert_eq!(owners(&both, 1), ["set-uid"]);
        assert_eq!(owners(&both, 5), ["pod-5"]);
    }

    #[test]
    fn other_controllers_and_stale_owners_are_left_alone() {
        let both = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}));
        let mut claim = claims_for(&both, 0).remove(0);
        // A set of this name from before: the garbage collector's business.
        claim.metadata.owner_references = Some(vec![OwnerReference {
            uid: "old-set".into(),
            ..owner_ref(&both)
        }]);
        assert!(wanted_refs(&both, &pod(0), &claim).is_none());
        // Another controller keeps the claim; our reference is dropped.
        let other = OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Keeper".into(),
            name: "k".into(),
            uid: "keeper".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        claim.metadata.owner_references = Some(vec![other.clone(), owner_ref(&both)]);
        assert_eq!(wanted_refs(&both, &pod(0), &claim), Some(vec![other]));
    }
}
