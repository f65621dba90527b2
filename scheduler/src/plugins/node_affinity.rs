//! NodeAffinity: the pod's `nodeSelector` and required node affinity must
//! match the node (filter); preferred terms add their weights (score).

use crate::framework::{default_normalize, relevant, Cycle, Plugin, Rejection, Relevance};
use crate::nodeinfo::NodeInfo;
use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PreferredSchedulingTerm,
};

/// One requirement against a node's labels (or, for `matchFields`, its name).
fn requirement_holds(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
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

/// A term matches when all its requirements hold; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
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
            .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(node.name.as_str())))
}

/// Terms are ORed.
pub fn selector_matches(sel: &NodeSelector, node: &NodeInfo) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// `nodeSelector` and required node affinity, both of which must hold.
pub fn required_matches(spec: &PodSpec, node: &NodeInfo) -> bool {
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| node.label(k) == Some(v.as_str())) {
            return false;
        }
    }
    required_affinity(spec).is_none_or(|required| selector_matches(required, node))
}

fn required_affinity(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

fn preferred(spec: &PodSpec) -> &[PreferredSchedulingTerm] {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filters(&self) -> bool {
        true
    }
    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, cx: &mut Cycle) -> Result<Relevance, Rejection> {
        let spec = cx.pod.spec();
        Ok(relevant(
            spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
                || required_affinity(spec).is_some(),
        ))
    }

    fn pre_score(&self, cx: &mut Cycle, _feasible: &[&NodeInfo]) -> Relevance {
        relevant(!preferred(cx.pod.spec()).is_empty())
    }

    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        if required_matches(cx.pod.spec(), node) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(
                "node(s) didn't match Pod's node affinity/selector",
            ))
        }
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        preferred(cx.pod.spec())
            .iter()
            .filter(|p| p.weight != 0 && term_matches(&p.preference, node))
            .map(|p| p.weight as i64)
            .sum()
    }

    fn normalize(&self, _cx: &Cycle, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}
