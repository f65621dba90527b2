//! RollingUpdate, as upstream's `rollingUpdate`. Without surge, old pods are
//! deleted only while fewer than maxUnavailable nodes lack an available pod
//! (unavailable old pods go first, without counting against the budget's
//! candidates), and `manage` then creates their replacements. With surge,
//! a new pod starts beside an old one on up to maxSurge nodes at a time,
//! and the old one goes once the new one is available. Deleted pods do not
//! count as unavailable, so an update progresses while nodes are down.

use super::manage::Plan;
use super::placement::Placement;
use super::util::{is_updated, surge_count, unavailable_count};
use super::NodePods;
use crate::pods;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use skiff_machinery::client::CachedPod;
use std::collections::HashMap;
use std::sync::Arc;

/// The new and the old pod on a node, or `None` when there are more of
/// either than one (the manage loop clears those first).
fn updated_and_old(
    pods: &[Arc<CachedPod>],
    hash: &str,
) -> Option<(Option<Arc<CachedPod>>, Option<Arc<CachedPod>>)> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(p, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.clone());
    }
    Some((new, old))
}

/// (maxSurge, maxUnavailable, desiredNumberScheduled); every node that
/// should run the pod gets an entry in `node_pods`, empty if it has none.
fn desired_counts(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    placement: &Placement,
    node_pods: &mut NodePods,
) -> (i32, i32, i32) {
    let mut desired = 0;
    for node in nodes {
        if placement.should_run(node).0 {
            desired += 1;
            node_pods.entry(node.name_any()).or_default();
        }
    }
    let surge = surge_count(ds, desired);
    let mut unavailable = unavailable_count(ds, desired);
    // Both zero cannot make progress: accept one unavailable (as upstream).
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable, desired)
}

pub fn rolling_update(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    placement: &Placement,
    mut node_pods: NodePods,
    hash: &str,
) -> Plan {
    let (max_surge, max_unavailable, desired) =
        desired_counts(ds, nodes, placement, &mut node_pods);
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let available = |p: &CachedPod| pods::availability(p, min_ready).is_ok();
    let mut plan = Plan::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for pods in node_pods.values() {
            let Some((new, old)) = updated_and_old(pods, hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                // Nothing here yet, or both: manage acts; count it unavailable.
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        // Not serving anyway: replace it at once.
                        plan.delete.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }

    let by_name: HashMap<String, &Arc<Node>> = nodes.iter().map(|n| (n.name_any(), n)).collect();
    // A node gone from the cache cannot run the pod (upstream errors out
    // until pod GC removes the pod; skipping it lets the update go on).
    let should_run = |name: &str| by_name.get(name).is_some_and(|n| placement.should_run(n).0);
    let (mut surging, mut available_count) = (0, 0);
    let (mut allowed, mut candidates, mut should_not_run) = (Vec::new(), Vec::new(), Vec::new());
    for (name, pods) in &node_pods {
        let Some((new, old)) = updated_and_old(pods, hash) else {
            surging += 1;
            continue;
        };
        if let Some(p) = old.as_ref().or(new.as_ref()) {
            if available(p) {
                available_count += 1;
            }
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(&old) {
                    if should_run(name) {
                        allowed.push(name.clone());
                    } else {
                        plan.delete.push(old);
                    }
                } else if !should_run(name) {
                    should_not_run.push(old);
                } else if surging < max_surge {
                    candidates.push(name.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    plan.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Surge promises full availability: a node leaving the set keeps its
    // pod until enough pods elsewhere are available.
    let deletable = (available_count - desired).clamp(0, should_not_run.len() as i32) as usize;
    plan.delete
        .extend(should_not_run.into_iter().take(deletable));
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    plan.create = allowed;
    plan.create.extend(candidates.into_iter().take(room));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(surge: i32, unavailable: i32) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}))
        .unwrap()
    }

    fn pod(node: &str, hash: &str, ready: bool) -> Arc<CachedPod> {
        Arc::new(serde_json::from_value(json!({
            "metadata": {"name": format!("{node}-{hash}"), "labels": {"controller-revision-hash": hash}},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        })).unwrap())
    }

    fn cluster(n: usize) -> Vec<Arc<Node>> {
        (0..n)
            .map(|i| {
                Arc::new(
                    serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn unavailable_budget_limits_deletes() {
        let (ds, nodes) = (ds(0, 2), cluster(5));
        let placement = Placement::new(&ds);
        let mut node_pods: NodePods = (0..5)
            .map(|i| (format!("n{i}"), vec![pod(&format!("n{i}"), "old", true)]))
            .collect();
        let plan = rolling_update(&ds, &nodes, &placement, node_pods.clone(), "new");
        assert_eq!((plan.delete.len(), plan.create.len()), (2, 0));
        // One new pod not yet available uses one unit of the budget.
        node_pods.insert("n0".into(), vec![pod("n0", "new", false)]);
        let plan = rolling_update(&ds, &nodes, &placement, node_pods.clone(), "new");
        assert_eq!(plan.delete.len(), 1);
        // An unavailable old pod is replaced whatever the budget.
        node_pods.insert("n1".into(), vec![pod("n1", "new", false)]);
        node_pods.insert("n2".into(), vec![pod("n2", "old", false)]);
        let plan = rolling_update(&ds, &nodes, &placement, node_pods, "new");
        assert_eq!(
            plan.delete.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
            ["n2-old"]
        );
    }

    #[test]
    fn surge_creates_beside_old_pods() {
        let (ds, nodes) = (ds(1, 0), cluster(3));
        let placement = Placement::new(&ds);
        let mut node_pods: NodePods = (0..3)
            .map(|i| (format!("n{i}"), vec![pod(&format!("n{i}"), "old", true)]))
            .collect();
        let plan = rolling_update(&ds, &nodes, &placement, node_pods.clone(), "new");
        assert_eq!((plan.delete.len(), plan.create.len()), (0, 1));
        // The new pod is available: its old one goes, and the next node surges.
        node_pods
            .get_mut("n0")
            .unwrap()
            .push(pod("n0", "new", true));
        let plan = rolling_update(&ds, &nodes, &placement, node_pods, "new");
        assert_eq!(
            plan.delete.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
            ["n0-old"]
        );
        assert_eq!(plan.create, ["n1"]);
    }
}
