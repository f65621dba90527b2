//! Which nodes a DaemonSet's pod belongs on, as upstream's
//! `NodeShouldRunDaemonPod`: the template's nodeName, nodeSelector and
//! required node affinity must match the node, and its tolerations (with the
//! daemon defaults added) must cover the node's NoSchedule and NoExecute
//! taints. A pod already running may stay while only NoSchedule taints are
//! untolerated. The scheduler has its own copies of these checks; the
//! controller cannot depend on the scheduler, so the small ones live here.

use super::util::add_daemon_tolerations;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, PodSpec, Taint, Toleration};
use kube::ResourceExt;
use skiff_machinery::client::nodeaffinity::required_matches;

/// A DaemonSet's pod spec prepared once per sync, to be checked against
/// every node.
pub struct Placement {
    spec: PodSpec,
}

impl Placement {
    pub fn new(ds: &DaemonSet) -> Placement {
        let mut spec = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        Placement { spec }
    }

    /// (shouldRun, shouldContinueRunning) on `node`.
    pub fn should_run(&self, node: &Node) -> (bool, bool) {
        let name = node.name_any();
        if self
            .spec
            .node_name
            .as_deref()
            .is_some_and(|n| !n.is_empty() && n != name)
        {
            return (false, false);
        }
        if !required_matches(&self.spec, node) {
            return (false, false);
        }
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        let tolerations = self.spec.tolerations.as_deref().unwrap_or_default();
        let untolerated = |effects: &[&str]| {
            taints.iter().any(|t| {
                effects.contains(&t.effect.as_str())
                    && !tolerations.iter().any(|tol| tolerates(tol, t))
            })
        };
        if untolerated(&["NoSchedule", "NoExecute"]) {
            // Only a NoExecute taint evicts a pod that is already there.
            return (false, !untolerated(&["NoExecute"]));
        }
        (true, true)
    }
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(template_spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": template_spec}}}))
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    #[test]
    fn selectors_affinity_and_taints() {
        let plain = Placement::new(&ds(json!({"containers": []})));
        assert_eq!(
            plain.should_run(&node("n", json!({}), json!([]))),
            (true, true)
        );
        // Default tolerations cover not-ready, even NoExecute.
        let not_ready = json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]);
        assert_eq!(
            plain.should_run(&node("n", json!({}), not_ready)),
            (true, true)
        );
        // A NoSchedule taint keeps new pods out but lets a running one stay.
        let dedicated = json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]);
        assert_eq!(
            plain.should_run(&node("n", json!({}), dedicated.clone())),
            (false, true)
        );
        let evicting = json!([{"key": "dedicated", "value": "x", "effect": "NoExecute"}]);
        assert_eq!(
            plain.should_run(&node("n", json!({}), evicting)),
            (false, false)
        );
        let tolerant = Placement::new(&ds(json!({"containers": [],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "x"}]})));
        assert_eq!(
            tolerant.should_run(&node("n", json!({}), dedicated)),
            (true, true)
        );

        let selective = Placement::new(&ds(
            json!({"containers": [], "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}]}}}}),
        ));
        assert!(
            selective
                .should_run(&node("n", json!({"disk": "ssd", "zone": "a"}), json!([])))
                .0
        );
        assert_eq!(
            selective.should_run(&node("n", json!({"disk": "hdd"}), json!([]))),
            (false, false)
        );
        assert!(
            !selective
                .should_run(&node("n", json!({"disk": "ssd", "zone": "b"}), json!([])))
                .0
        );
        let named = Placement::new(&ds(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}})));
        assert!(named.should_run(&node("n1", json!({}), json!([]))).0);
        assert!(!named.should_run(&node("n2", json!({}), json!([]))).0);
    }
}
