//! TaintToleration: a node's NoSchedule and NoExecute taints keep out pods
//! that do not tolerate them (filter); untolerated PreferNoSchedule taints
//! count against a node (score).

use crate::framework::{default_normalize, Cycle, Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::tolerates;

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filters(&self) -> bool {
        true
    }
    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        let tolerations = cx.pod.tolerations();
        let untolerated = node.taints.iter().find(|t| {
            matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                && !tolerations
                    .iter()
                    .any(|tol| tolerates(tol, &t.key, t.value.as_deref().unwrap_or(""), &t.effect))
        });
        match untolerated {
            Some(t) => Err(Rejection::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ))),
            None => Ok(()),
        }
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        // Only tolerations that could be meant for PreferNoSchedule count
        // (`tolerates` checks the effect).
        node.taints
            .iter()
            .filter(|t| {
                t.effect == "PreferNoSchedule"
                    && !cx.pod.tolerations().iter().any(|tol| {
                        tolerates(tol, &t.key, t.value.as_deref().unwrap_or(""), &t.effect)
                    })
            })
            .count() as i64
    }

    fn normalize(&self, _cx: &Cycle, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}
