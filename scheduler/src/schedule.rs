//! One scheduling attempt for one pod, as upstream's `schedulePod`: filter
//! nodes (stopping once enough feasible ones are found), score them, pick
//! the best, ties broken at random. Pure: it reads the cache and decides;
//! binding is the caller's.

use crate::cache::Cache;
use crate::framework::{Code, Cycle, Plugin, Profile, Rejection, Relevance};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Upstream's floor for how many feasible nodes to find before scoring.
const MIN_FEASIBLE_NODES: usize = 100;
const MIN_FEASIBLE_PERCENTAGE: usize = 5;
const BASE_PERCENTAGE: usize = 50;

/// How many feasible nodes to look for among `all`, as upstream's
/// `numFeasibleNodesToFind` (adaptive: 50% at 0 nodes down to 5% at 5,625).
pub fn feasible_nodes_to_find(all: usize, percentage: Option<u32>) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let pct = match percentage {
        Some(p) if p >= 100 => return all,
        Some(p) => p as usize,
        None => BASE_PERCENTAGE
            .saturating_sub(all / 125)
            .max(MIN_FEASIBLE_PERCENTAGE),
    };
    (all * pct / 100).max(MIN_FEASIBLE_NODES)
}

/// Why a pod fits nowhere, rendered as upstream's FitError.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// A pre-filter rejection: it applies to every node.
    pub pre_filter: Option<Rejection>,
    /// The rejection of each node that was looked at.
    pub nodes: HashMap<String, Rejection>,
    /// What preemption found, once it ran.
    pub post_filter: Option<String>,
}

impl FitError {
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter {
            Some(r) => msg += &format!(" {}.", r.reasons.join(", ")),
            None => {
                let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
                for r in self.nodes.values() {
                    for reason in &r.reasons {
                        *histogram.entry(reason).or_default() += 1;
                    }
                }
                let mut parts: Vec<String> = histogram
                    .iter()
                    .map(|(reason, n)| format!("{n} {reason}"))
                    .collect();
                parts.sort();
                if !parts.is_empty() {
                    msg += &format!(" {}.", parts.join(", "));
                }
            }
        }
        if let Some(post) = &self.post_filter {
            msg += &format!(" {post}");
        }
        msg
    }

    /// Whether preemption could make room on `node`.
    /// The plugins that turned nodes down: the cluster events that could
    /// change their minds decide when the pod is retried.
    pub fn plugins(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .pre_filter
            .iter()
            .chain(self.nodes.values())
            .map(|r| r.plugin)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn resolvable_on(&self, node: &str) -> bool {
        self.pre_filter.is_none()
            && self
                .nodes
                .get(node)
                .is_some_and(|r| r.code == Code::Unschedulable)
    }
}

#[derive(Debug)]
pub enum Decision {
    Node(String),
    NoFit(FitError),
    /// The cluster has no nodes at all (upstream's ErrNoNodesAvailable).
    NoNodes,
}

pub struct Algorithm {
    /// Where the next attempt starts looking, so every node gets its turn.
    next_start: usize,
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm { next_start: 0 }
    }
}

/// A node with the nominated pods of at least the pod's priority added, so a
/// pod does not take the room preemption made for a more important one.
pub fn with_nominated<'a>(
    cache: &Cache,
    pod: &PodInfo,
    node: &'a NodeInfo,
) -> std::borrow::Cow<'a, NodeInfo> {
    if cache.nominated.is_empty() {
        return std::borrow::Cow::Borrowed(node);
    }
    let nominated: Vec<&Arc<PodInfo>> = cache
        .nominated
        .get(&node.name)
        .into_iter()
        .flatten()
        .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
        .collect();
    if nominated.is_empty() {
        return std::borrow::Cow::Borrowed(node);
    }
    let mut n = node.clone();
    for p in nominated {
        n.add_pod(p.clone());
    }
    std::borrow::Cow::Owned(n)
}

/// The filters that apply to this pod, in order, after their pre-filters
/// ran; a pre-filter rejection rejects the pod everywhere.
pub fn pre_filter<'p>(
    profile: &'p Profile,
    cx: &mut Cycle,
) -> Result<Vec<&'p dyn Plugin>, Rejection> {
    let mut active = Vec::with_capacity(profile.filters.len());
    for p in &profile.filters {
        match p.pre_filter(cx) {
            Ok(Relevance::Run) => active.push(p.as_ref()),
            Ok(Relevance::Skip) => {}
            Err(mut r) => {
                r.plugin = p.name();
                return Err(r);
            }
        }
    }
    Ok(active)
}

pub fn run_filters(filters: &[&dyn Plugin], cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    for p in filters {
        p.filter(cx, node).map_err(|mut r| {
            r.plugin = p.name();
            r
        })?;
    }
    Ok(())
}

impl Algorithm {
    pub fn schedule(&mut self, profile: &Profile, cache: &Cache, pod: &PodInfo) -> Decision {
        let nodes = cache.nodes();
        if nodes.is_empty() {
            return Decision::NoNodes;
        }
        let mut fit = FitError {
            num_all_nodes: nodes.len(),
            ..Default::default()
        };
        let mut cx = Cycle::new(pod, cache);
        let filters = match pre_filter(profile, &mut cx) {
            Ok(f) => f,
            Err(r) => {
                fit.pre_filter = Some(r);
                return Decision::NoFit(fit);
            }
        };
        // A node preemption made room on is tried first (upstream).
        if let Some(node) = pod.nominated_node().and_then(|n| cache.node(n)) {
            if run_filters(&filters, &cx, &with_nominated(cache, pod, node)).is_ok() {
                return Decision::Node(node.name.clone());
            }
        }
        let wanted = feasible_nodes_to_find(nodes.len(), profile.percentage_of_nodes_to_score);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted.min(nodes.len()));
        let mut processed = 0;
        for i in 0..nodes.len() {
            if feasible.len() >= wanted {
                break;
            }
            let node = &nodes[(self.next_start + i) % nodes.len()];
            processed += 1;
            match run_filters(&filters, &cx, &with_nominated(cache, pod, node)) {
                Ok(()) => feasible.push(node),
                Err(r) => {
                    fit.nodes.insert(node.name.clone(), r);
                }
            }
        }
        self.next_start = (self.next_start + processed) % nodes.len();
        match feasible.len() {
            0 => Decision::NoFit(fit),
            1 => Decision::Node(feasible[0].name.clone()),
            _ => Decision::Node(select(profile, &mut cx, &feasible)),
        }
    }
}

/// Scores the feasible nodes and picks the best, ties at random (reservoir sampling).
fn select(profile: &Profile, cx: &mut Cycle, feasible: &[&NodeInfo]) -> String {
    let mut totals = vec![0i64; feasible.len()];
    for (plugin, weight) in &profile.scorers {
        if plugin.pre_score(cx, feasible) == Relevance::Skip {
            continue;
        }
        let mut scores: Vec<i64> = feasible.iter().map(|n| plugin.score(cx, n)).collect();
        plugin.normalize(cx, &mut scores);
        for (t, s) in totals.iter_mut().zip(scores) {
            *t += s * weight;
        }
    }
    let mut rng = rand::rng();
    let (mut best, mut best_score, mut ties) = (0, i64::MIN, 0u32);
    for (i, &s) in totals.iter().enumerate() {
        if s > best_score {
            (best, best_score, ties) = (i, s, 1);
        } else if s == best_score {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    feasible[best].name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_share_of_nodes_as_upstream() {
        assert_eq!(feasible_nodes_to_find(50, None), 50);
        assert_eq!(feasible_nodes_to_find(500, None), 230);
        assert_eq!(feasible_nodes_to_find(5000, None), 500);
        assert_eq!(feasible_nodes_to_find(15000, None), 750);
        assert_eq!(feasible_nodes_to_find(5000, Some(100)), 5000);
        assert_eq!(feasible_nodes_to_find(1000, Some(1)), 100);
    }

    #[test]
    fn fit_error_reads_as_upstream() {
        let mut e = FitError {
            num_all_nodes: 3,
            ..Default::default()
        };
        e.nodes
            .insert("a".into(), Rejection::unschedulable("Insufficient cpu"));
        for n in ["b", "c"] {
            e.nodes.insert(
                n.into(),
                Rejection::unresolvable(
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
                ),
            );
        }
        assert_eq!(
            e.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        );
    }
}
