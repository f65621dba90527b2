//! NodeAffinity: the pod's `nodeSelector` and required node affinity must
//! match the node (filter); preferred terms add their weights (score).

use crate::framework::{default_normalize, relevant, Cycle, Plugin, Rejection, Relevance};
use crate::nodeinfo::NodeInfo;
use k8s_openapi::api::core::v1::PreferredSchedulingTerm;
use skiff_machinery::client::cachedpod::PodSpec;
pub use skiff_machinery::client::nodeaffinity::{
    required_affinity, required_matches, selector_matches, term_matches,
};

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
