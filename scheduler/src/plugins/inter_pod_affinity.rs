//! InterPodAffinity: pods that must (or must not) share a topology domain
//! (a node, a zone: any node label) with other pods. Filtering honours the
//! incoming pod's required affinity and anti-affinity and the required
//! anti-affinity of pods already placed; scoring adds preferred terms both
//! ways, as upstream.

use crate::framework::{relevant, Cycle, Plugin, Rejection, Relevance, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{AffinityTerm, PodInfo};
use std::collections::HashMap;

const NAME: &str = "InterPodAffinity";
const SCORE: &str = "InterPodAffinity/score";
/// Weight of an existing pod's required affinity towards the incoming pod
/// in scoring (upstream's hardPodAffinityWeight default).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Domain = (String, String);

#[derive(Default)]
struct FilterState {
    /// Domains where placed pods' anti-affinity terms match the incoming pod.
    existing_anti: HashMap<Domain, i64>,
    /// Per domain, placed pods matching the incoming pod's affinity terms
    /// (all terms) and anti-affinity terms (any term).
    affinity: HashMap<Domain, i64>,
    anti: HashMap<Domain, i64>,
    /// No pod anywhere matches the affinity terms but the pod matches them
    /// itself: the first of a group may go anywhere the keys exist.
    first_of_group: bool,
}

fn term_matches(cx: &Cycle, term: &AffinityTerm, pod: &PodInfo) -> bool {
    term.matches(pod, cx.cache.namespaces.get(&pod.namespace))
}

fn domain(node: &NodeInfo, key: &str) -> Option<Domain> {
    Some((key.to_string(), node.label(key)?.to_string()))
}

pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filters(&self) -> bool {
        true
    }
    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, cx: &mut Cycle) -> Result<Relevance, Rejection> {
        let pod = cx.pod;
        let mut st = FilterState::default();
        let own = &pod.affinity;
        let own_terms = !own.required.is_empty() || !own.required_anti.is_empty();
        for node in cx.cache.nodes() {
            if node.pods_with_affinity == 0 && !own_terms {
                continue;
            }
            for existing in &node.pods {
                for term in &existing.affinity.required_anti {
                    if term_matches(cx, term, pod) {
                        if let Some(d) = domain(node, &term.topology_key) {
                            *st.existing_anti.entry(d).or_default() += 1;
                        }
                    }
                }
                if !own_terms || existing.uid == pod.uid {
                    continue;
                }
                if !own.required.is_empty()
                    && own.required.iter().all(|t| term_matches(cx, t, existing))
                {
                    for t in &own.required {
                        if let Some(d) = domain(node, &t.topology_key) {
                            *st.affinity.entry(d).or_default() += 1;
                        }
                    }
                }
                for t in &own.required_anti {
                    if term_matches(cx, t, existing) {
                        if let Some(d) = domain(node, &t.topology_key) {
                            *st.anti.entry(d).or_default() += 1;
                        }
                    }
                }
            }
        }
        st.first_of_group =
            st.affinity.is_empty() && own.required.iter().all(|t| term_matches(cx, t, pod));
        let run = relevant(own_terms || !st.existing_anti.is_empty());
        cx.put(NAME, st);
        Ok(run)
    }

    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(st) = cx.get::<FilterState>(NAME) else {
            return Ok(());
        };
        let own = &cx.pod.affinity;
        if !own.required.is_empty() {
            let satisfied = own.required.iter().all(|t| {
                domain(node, &t.topology_key)
                    .is_some_and(|d| st.affinity.get(&d).copied().unwrap_or(0) > 0)
            });
            let keys_present = own
                .required
                .iter()
                .all(|t| node.label(&t.topology_key).is_some());
            if !satisfied && !(st.first_of_group && keys_present) {
                return Err(Rejection::unresolvable(
                    "node(s) didn't match pod affinity rules",
                ));
            }
        }
        let hits = |counts: &HashMap<Domain, i64>, key: &str| {
            domain(node, key).is_some_and(|d| counts.get(&d).copied().unwrap_or(0) > 0)
        };
        if own
            .required_anti
            .iter()
            .any(|t| hits(&st.anti, &t.topology_key))
        {
            return Err(Rejection::unschedulable(
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
        if !st.existing_anti.is_empty()
            && st
                .existing_anti
                .keys()
                .any(|(k, v)| node.label(k) == Some(v.as_str()))
        {
            return Err(Rejection::unschedulable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
        Ok(())
    }

    fn pre_score(&self, cx: &mut Cycle, _feasible: &[&NodeInfo]) -> Relevance {
        let pod = cx.pod;
        let own = &pod.affinity;
        let own_preferred = !own.preferred.is_empty() || !own.preferred_anti.is_empty();
        let mut scores: HashMap<Domain, i64> = HashMap::new();
        let mut add = |node: &NodeInfo, key: &str, w: i64| {
            if let Some(d) = domain(node, key) {
                *scores.entry(d).or_default() += w;
            }
        };
        for node in cx.cache.nodes() {
            if node.pods_with_affinity == 0 && !own_preferred {
                continue;
            }
            for existing in &node.pods {
                for t in &own.preferred {
                    if term_matches(cx, t, existing) {
                        add(node, &t.topology_key, t.weight as i64);
                    }
                }
                for t in &own.preferred_anti {
                    if term_matches(cx, t, existing) {
                        add(node, &t.topology_key, -(t.weight as i64));
                    }
                }
                let theirs = &existing.affinity;
                for t in &theirs.required {
                    if term_matches(cx, t, pod) {
                        add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for t in &theirs.preferred {
                    if term_matches(cx, t, pod) {
                        add(node, &t.topology_key, t.weight as i64);
                    }
                }
                for t in &theirs.preferred_anti {
                    if term_matches(cx, t, pod) {
                        add(node, &t.topology_key, -(t.weight as i64));
                    }
                }
            }
        }
        let run = relevant(!scores.is_empty());
        cx.put(SCORE, ScoreState(scores));
        run
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        let Some(ScoreState(scores)) = cx.get::<ScoreState>(SCORE) else {
            return 0;
        };
        scores
            .iter()
            .filter(|((k, v), _)| node.label(k) == Some(v.as_str()))
            .map(|(_, w)| *w)
            .sum()
    }

    fn normalize(&self, _cx: &Cycle, scores: &mut [i64]) {
        let (min, max) = (
            scores.iter().copied().min().unwrap_or(0),
            scores.iter().copied().max().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if max > min {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            } else {
                0
            };
        }
    }
}

struct ScoreState(HashMap<Domain, i64>);
