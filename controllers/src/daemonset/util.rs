//! DaemonSet bookkeeping, as upstream's `daemon/util`: the default
//! tolerations daemon pods carry, pinning a pod to its node with a required
//! node affinity on `metadata.name`, reading that node back, the pod
//! template with its revision hash, and the rolling-update counts.

use crate::deployment::util::scaled;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_machinery::client::CachedPod;
use std::cmp::Ordering;

/// The label on pods and ControllerRevisions naming the template revision.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// Adds upstream's daemon tolerations: daemons keep running through node
/// trouble and are placed despite pressure and cordons, replacing a
/// same-key toleration that differs (say, by tolerationSeconds).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        // A host-network daemon is often what brings the network up.
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // Upstream's MatchToleration: same key, operator, value and effect.
        let same = |o: &Toleration| {
            o.key == t.key && o.operator == t.operator && o.value == t.value && o.effect == t.effect
        };
        match tolerations.iter_mut().find(|o| same(&**o)) {
            Some(old) => *old = t,
            None => tolerations.push(t),
        }
    }
}

/// The affinity with its required node selector replaced by one term that
/// admits only `node` (upstream's ReplaceDaemonSetPodNodeNameNodeAffinity):
/// the controller has already checked the rest, the scheduler then binds
/// the pod there.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        ..Default::default()
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    affinity
}

/// The node a daemon pod is on or meant for: its nodeName, else the node
/// its `metadata.name` affinity names (upstream's GetTargetNodeName).
pub fn target_node(pod: &CachedPod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        })
}

/// The template daemon pods are made from: the DaemonSet's, with the
/// daemon tolerations and the revision hash label.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_daemon_tolerations(t.spec.get_or_insert_with(Default::default));
    if !hash.is_empty() {
        t.metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.into());
    }
    t
}

/// The pod runs the current template (upstream's IsPodUpdated; skiff keeps
/// no deprecated template generation, so the hash alone decides).
pub fn is_updated(pod: &CachedPod, hash: &str) -> bool {
    !hash.is_empty()
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .map(String::as_str)
            == Some(hash)
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    strategy.rolling_update.as_ref()
}

pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// maxUnavailable of `desired` nodes, rounded up (upstream's UnavailableCount).
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> i32 {
    let default = IntOrString::Int(1);
    rolling(ds).map_or(0, |r| {
        scaled(
            Some(r.max_unavailable.as_ref().unwrap_or(&default)),
            desired,
            true,
            "",
        )
    })
}

/// maxSurge of `desired` nodes, rounded up (upstream's SurgeCount).
pub fn surge_count(ds: &DaemonSet, desired: i32) -> i32 {
    let default = IntOrString::Int(0);
    rolling(ds).map_or(0, |r| {
        scaled(
            Some(r.max_surge.as_ref().unwrap_or(&default)),
            desired,
            true,
            "",
        )
    })
}

/// A rolling update that may run a new pod beside the old one on a node.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1) > 0
}

/// Scheduled pods first, then oldest, then by name (upstream's
/// podByCreationTimestampAndPhase).
pub fn by_age(a: &CachedPod, b: &CachedPod) -> Ordering {
    let scheduled = |p: &CachedPod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &CachedPod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(b)
        .cmp(&scheduled(a))
        .then(created(a).cmp(&created(b)))
        .then(a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerations_and_pinning() {
        let mut spec: PodSpec =
            serde_json::from_value(json!({"containers": [], "hostNetwork": true,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 30}]}))
            .unwrap();
        add_daemon_tolerations(&mut spec);
        let tols = spec.tolerations.unwrap();
        assert_eq!(tols.len(), 7);
        // The same toleration with a deadline is replaced by the unlimited one.
        assert_eq!(tols[0].toleration_seconds, None);
        assert!(tols
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable")));

        let pod = CachedPod {
            spec: Some(skiff_machinery::client::cachedpod::PodSpec {
                affinity: Some(Box::new(pin_to_node(None, "n7"))),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
    }

    #[test]
    fn counts_round_up() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {}, "template": {},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}}}))
        .unwrap();
        assert_eq!(unavailable_count(&ds, 15), 2);
        assert_eq!(surge_count(&ds, 15), 0);
        assert!(!allows_surge(&ds));
    }
}
