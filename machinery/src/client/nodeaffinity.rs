//! Whether a pod's `nodeSelector` and required node affinity admit a node,
//! as upstream's component-helpers decide it. The scheduler's NodeAffinity
//! filter and the DaemonSet controller's placement share it, so a daemon
//! pod is only made for a node the scheduler will bind it to.

use super::cachedpod;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
};
use std::collections::BTreeMap;

/// Where a pod asks to run, read from a full spec (a template) or from a
/// cached pod's.
pub trait Placement {
    fn node_selector(&self) -> Option<&BTreeMap<String, String>>;
    fn affinity(&self) -> Option<&Affinity>;
}

impl Placement for PodSpec {
    fn node_selector(&self) -> Option<&BTreeMap<String, String>> {
        self.node_selector.as_ref()
    }
    fn affinity(&self) -> Option<&Affinity> {
        self.affinity.as_ref()
    }
}

impl Placement for cachedpod::PodSpec {
    fn node_selector(&self) -> Option<&BTreeMap<String, String>> {
        self.node_selector.as_ref()
    }
    fn affinity(&self) -> Option<&Affinity> {
        self.affinity.as_deref()
    }
}

/// What node affinity reads of a node: its labels, and its name for `matchFields`.
pub trait NodeFacts {
    fn label(&self, key: &str) -> Option<&str>;
    fn name(&self) -> &str;
}

impl NodeFacts for Node {
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// One requirement against a node's label (or, for `matchFields`, its name).
pub fn requirement_holds(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A term matches when all its requirements hold; an empty term matches
/// nothing. Only `metadata.name` is a field a term may select on.
pub fn term_matches(term: &NodeSelectorTerm, node: &impl NodeFacts) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_holds(r, node.label(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(node.name())))
}

/// Terms are ORed.
pub fn selector_matches(sel: &NodeSelector, node: &impl NodeFacts) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// `nodeSelector` and required node affinity, both of which must hold.
pub fn required_matches(spec: &impl Placement, node: &impl NodeFacts) -> bool {
    if let Some(sel) = spec.node_selector() {
        if !sel.iter().all(|(k, v)| node.label(k) == Some(v.as_str())) {
            return false;
        }
    }
    required_affinity(spec).is_none_or(|required| selector_matches(required, node))
}

pub fn required_affinity(spec: &impl Placement) -> Option<&NodeSelector> {
    spec.affinity()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}
