//! A StatefulSet pod's identity, as upstream's stateful_set_utils: the
//! ordinal in its name `<set>-<ordinal>`, the labels naming it and its
//! revision, hostname and subdomain, and volumes on its own claims
//! `<claim>-<set>-<ordinal>`; and the pod built from a template with all of
//! them.

use crate::pods;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use kube::ResourceExt;
use skiff_machinery::client::CachedPod;

/// The pod label naming the pod (for a per-pod Service).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label with its ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The pod label with the name of the ControllerRevision it was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The set's name and the ordinal a pod name ends in (`-1` when it has none).
pub fn parent_and_ordinal(name: &str) -> (&str, i64) {
    match name.rsplit_once('-') {
        Some((parent, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            match n.parse::<i32>() {
                Ok(o) => (parent, o as i64),
                Err(_) => (parent, -1),
            }
        }
        _ => ("", -1),
    }
}

pub fn ordinal(pod: &CachedPod) -> i64 {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or_default()).1
}

/// The pod's name says it belongs to the set.
pub fn is_member(set: &StatefulSet, pod: &CachedPod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or_default()).0 == set.name_any()
}

pub fn start_ordinal(set: &StatefulSet) -> i64 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0) as i64
}

pub fn replicas(set: &StatefulSet) -> i64 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as i64
}

/// The ordinal is one the set should run now.
pub fn in_range(set: &StatefulSet, ordinal: i64) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

pub fn pod_name(set: &StatefulSet, ordinal: i64) -> String {
    format!("{}-{ordinal}", set.name_any())
}

pub fn claim_name(set: &StatefulSet, template: &str, ordinal: i64) -> String {
    format!("{template}-{}-{ordinal}", set.name_any())
}

pub fn revision_of(pod: &CachedPod) -> &str {
    pod.labels()
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or_default()
}

fn claim_templates(set: &StatefulSet) -> impl Iterator<Item = String> + '_ {
    set.spec
        .iter()
        .flat_map(|s| s.volume_claim_templates.iter().flatten())
        .map(|c| c.name_any())
}

/// The pod has its name, namespace and name label (upstream's identityMatches).
pub fn identity_matches(set: &StatefulSet, pod: &CachedPod) -> bool {
    let ord = ordinal(pod);
    let name = pod.name_any();
    ord >= 0
        && is_member(set, pod)
        && name == pod_name(set, ord)
        && pod.namespace() == set.namespace()
        && pod.labels().get(POD_NAME_LABEL) == Some(&name)
}

/// Its volumes mount each of its claims (upstream's storageMatches).
pub fn storage_matches(set: &StatefulSet, pod: &CachedPod) -> bool {
    let ord = ordinal(pod);
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    ord >= 0
        && claim_templates(set).all(|t| {
            volumes.iter().any(|v| {
                v.name == t
                    && v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.as_str())
                        == Some(claim_name(set, &t, ord).as_str())
            })
        })
}

/// Sets the labels upstream's updateIdentity sets.
pub fn label_identity(pod: &mut Pod, ordinal: i64) {
    let name = pod.name_any();
    let labels = pod.labels_mut();
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// Pod `ordinal` of the set, from `template` at revision `revision`
/// (upstream's newVersionedStatefulSetPod once the template is chosen).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i64) -> Pod {
    let name = pod_name(set, ordinal);
    let mut pod = pods::pod_from_template(set, template, &set.name_any());
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    label_identity(&mut pod, ordinal);
    pod.labels_mut()
        .insert(REVISION_LABEL.into(), revision.into());
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims: Vec<String> = claim_templates(set).collect();
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = service;
    // The claims' volumes first, then the template's others of other names.
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|t| Volume {
            name: t.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(set, t, ordinal),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .into_iter()
            .flatten()
            .filter(|v| !claims.contains(&v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ordinals_and_names() {
        assert_eq!(parent_and_ordinal("web-12"), ("web", 12));
        assert_eq!(parent_and_ordinal("my-web-0"), ("my-web", 0));
        assert_eq!(parent_and_ordinal("web-x"), ("", -1));
        assert_eq!(parent_and_ordinal("web"), ("", -1));
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"replicas": 2, "serviceName": "svc", "ordinals": {"start": 3},
                "selector": {"matchLabels": {"app": "w"}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
                "template": {"metadata": {"labels": {"app": "w"}},
                    "spec": {"containers": [{"name": "c"}],
                             "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}}}))
        .unwrap();
        assert!(!in_range(&set, 2) && in_range(&set, 3) && in_range(&set, 4) && !in_range(&set, 5));
        let t = set.spec.as_ref().unwrap().template.clone();
        let pod = new_pod(&set, &t, "web-abc", 4);
        assert_eq!(pod.name_any(), "web-4");
        assert_eq!(pod.labels()[POD_INDEX_LABEL], "4");
        assert_eq!(pod.labels()[POD_NAME_LABEL], "web-4");
        assert_eq!(pod.labels()[REVISION_LABEL], "web-abc");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-4"));
        assert_eq!(spec.subdomain.as_deref(), Some("svc"));
        let vols = spec.volumes.as_ref().unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-4"
        );
        let cached = CachedPod::from(&pod);
        assert!(identity_matches(&set, &cached) && storage_matches(&set, &cached));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
    }
}
