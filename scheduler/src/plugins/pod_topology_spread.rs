//! PodTopologySpread: keep matching pods evenly spread over topology
//! domains. `DoNotSchedule` constraints filter (skew beyond maxSkew,
//! minDomains), `ScheduleAnyway` ones score, with upstream's
//! nodeAffinityPolicy (Honor) and nodeTaintsPolicy (Ignore) defaults.

use crate::framework::{Cycle, Plugin, Rejection, Relevance, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::plugins::node_affinity::required_matches;
use crate::podinfo::{tolerates, PodInfo};
use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use skiff_machinery::labels::{Requirement, Selector};
use std::collections::{HashMap, HashSet};

const FILTER: &str = "PodTopologySpread";
const SCORE: &str = "PodTopologySpread/score";

struct Constraint {
    key: String,
    max_skew: i64,
    min_domains: i64,
    selector: Selector,
    honor_affinity: bool,
    honor_taints: bool,
    /// The incoming pod matches its own selector (it will count once placed).
    self_match: i64,
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.spec()
        .topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| parse(pod, c))
        .collect()
}

fn parse(pod: &PodInfo, c: &TopologySpreadConstraint) -> Constraint {
    let mut selector = c
        .label_selector
        .as_ref()
        .and_then(|s| Selector::from_label_selector(&serde_json::to_value(s).ok()?).ok())
        // No selector matches no pods.
        .unwrap_or_else(|| Selector::parse("!skiff.invalid/selector").unwrap());
    // matchLabelKeys: the pod's own values for those keys join the selector.
    for key in c.match_label_keys.iter().flatten() {
        if let Some(v) = pod.label(key) {
            selector
                .requirements
                .push(Requirement::Equals(key.clone(), v.to_string()));
        }
    }
    let self_match = i64::from(selector.matches_with(|k| pod.label(k)));
    Constraint {
        key: c.topology_key.clone(),
        max_skew: c.max_skew as i64,
        min_domains: c.min_domains.unwrap_or(1) as i64,
        honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
        honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        self_match,
        selector,
    }
}

/// Whether a node's pods count for a constraint, given its policies.
fn counts_for(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    (!c.honor_affinity || required_matches(pod.spec(), node))
        && (!c.honor_taints
            || node.taints.iter().all(|t| {
                !matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                    || pod.tolerations().iter().any(|tol| {
                        tolerates(tol, &t.key, t.value.as_deref().unwrap_or(""), &t.effect)
                    })
            }))
}

fn matching_pods(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            p.namespace == pod.namespace
                && !p.terminating
                && c.selector.matches_with(|k| p.label(k))
        })
        .count() as i64
}

fn has_all_keys(cs: &[Constraint], node: &NodeInfo) -> bool {
    cs.iter().all(|c| node.label(&c.key).is_some())
}

struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain, and the smallest count.
    counts: Vec<HashMap<String, i64>>,
    minimum: Vec<i64>,
}

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        FILTER
    }
    fn filters(&self) -> bool {
        true
    }
    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, cx: &mut Cycle) -> Result<Relevance, Rejection> {
        let pod = cx.pod;
        let cs = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return Ok(Relevance::Skip);
        }
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
        for node in cx.cache.nodes() {
            if !has_all_keys(&cs, node) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                if counts_for(c, pod, node) {
                    let value = node.label(&c.key).unwrap_or_default().to_string();
                    *counts[i].entry(value).or_default() += matching_pods(c, pod, node);
                }
            }
        }
        let minimum = cs
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                if (domains.len() as i64) < c.min_domains {
                    0
                } else {
                    domains.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
        cx.put(
            FILTER,
            FilterState {
                constraints: cs,
                counts,
                minimum,
            },
        );
        Ok(Relevance::Run)
    }

    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(st) = cx.get::<FilterState>(FILTER) else {
            return Ok(());
        };
        if !has_all_keys(&st.constraints, node) {
            return Err(Rejection::unresolvable(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ));
        }
        for (i, c) in st.constraints.iter().enumerate() {
            let value = node.label(&c.key).unwrap_or_default();
            let matched = st.counts[i].get(value).copied().unwrap_or(0);
            if matched + c.self_match - st.minimum[i] > c.max_skew {
                return Err(Rejection::unschedulable(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    fn pre_score(&self, cx: &mut Cycle, feasible: &[&NodeInfo]) -> Relevance {
        let pod = cx.pod;
        let cs = constraints(pod, "ScheduleAnyway");
        if cs.is_empty() {
            return Relevance::Skip;
        }
        // Domains are those of the feasible nodes; pods count from every
        // node in them that the policies admit.
        let mut domains: Vec<HashSet<String>> = vec![HashSet::new(); cs.len()];
        for node in feasible.iter().filter(|n| has_all_keys(&cs, n)) {
            for (i, c) in cs.iter().enumerate() {
                domains[i].insert(node.label(&c.key).unwrap_or_default().to_string());
            }
        }
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
        for node in cx.cache.nodes() {
            if !has_all_keys(&cs, node) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                let value = node.label(&c.key).unwrap_or_default();
                if domains[i].contains(value) && counts_for(c, pod, node) {
                    *counts[i].entry(value.to_string()).or_default() += matching_pods(c, pod, node);
                }
            }
        }
        let weights = domains
            .iter()
            .map(|d| ((d.len() + 2) as f64).ln())
            .collect();
        cx.put(
            SCORE,
            ScoreState {
                constraints: cs,
                counts,
                weights,
            },
        );
        Relevance::Run
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        let Some(st) = cx.get::<ScoreState>(SCORE) else {
            return 0;
        };
        if !has_all_keys(&st.constraints, node) {
            return IGNORED;
        }
        let raw: f64 = st
            .constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let value = node.label(&c.key).unwrap_or_default();
                let count = st.counts[i].get(value).copied().unwrap_or(0);
                count as f64 * st.weights[i] + (c.max_skew - 1) as f64
            })
            .sum();
        raw.round() as i64
    }

    fn normalize(&self, cx: &Cycle, scores: &mut [i64]) {
        if cx.get::<ScoreState>(SCORE).is_none() {
            return;
        }
        let counted = scores.iter().copied().filter(|s| *s != IGNORED);
        let (min, max) = (
            counted.clone().min().unwrap_or(0),
            counted.max().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

/// A node without the constraints' keys: scored 0 after normalizing.
const IGNORED: i64 = i64::MIN;

struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}
