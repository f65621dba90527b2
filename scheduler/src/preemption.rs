//! Preemption, as upstream's DefaultPreemption: a pod that fits nowhere may
//! have lower-priority pods removed from one node. On each node where that
//! could help, remove every lower-priority pod, check the pod fits, then
//! give back as many as still leave room (disruption-budget-protected pods
//! and higher priorities first). Pick the node whose victims break the
//! fewest budgets, then have the lowest top priority, the smallest priority
//! sum, the fewest pods.

use crate::cache::Cache;
use crate::framework::{Cycle, Plugin, Profile};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::schedule::{pre_filter, run_filters, FitError};
use skiff_machinery::labels::Selector;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub budget_violations: usize,
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Budgets as (namespace, selector, disruptions still allowed).
fn budgets(cache: &Cache) -> Vec<(String, Selector, i64)> {
    cache
        .budgets
        .values()
        .filter_map(|b| {
            let sel = Selector::from_label_selector(
                &serde_json::to_value(b.spec.as_ref()?.selector.as_ref()?).ok()?,
            )
            .ok()?;
            let allowed = b
                .status
                .as_ref()
                .map_or(0, |s| s.disruptions_allowed as i64);
            Some((
                b.metadata.namespace.clone().unwrap_or_default(),
                sel,
                allowed,
            ))
        })
        .collect()
}

/// Finds where to make room for `pod`, or says why nowhere (upstream's
/// post-filter message, starting `preemption:`).
pub fn find(
    profile: &Profile,
    cache: &Cache,
    pod: &PodInfo,
    fit: &FitError,
) -> Result<Candidate, String> {
    if pod.spec().preemption_policy.as_deref() == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    // Room already being made: wait for it rather than evict more.
    if let Some(node) = pod.nominated_node().and_then(|n| cache.node(n)) {
        if node
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority)
        {
            return Err(
                "preemption: not eligible due to a terminating pod on the nominated node.".into(),
            );
        }
    }
    let mut cx = Cycle::new(pod, cache);
    let Ok(filters) = pre_filter(profile, &mut cx) else {
        return Err(format!(
            "preemption: 0/{} nodes are available: {} {NOT_HELPFUL}.",
            cache.nodes().len(),
            cache.nodes().len()
        ));
    };
    let budgets = budgets(cache);
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    let mut best: Option<Candidate> = None;
    for node in cache.nodes() {
        if !fit.resolvable_on(&node.name) {
            *histogram.entry(NOT_HELPFUL).or_default() += 1;
            continue;
        }
        match victims_on(&filters, &cx, node, &budgets) {
            Some(c) => {
                if best.as_ref().is_none_or(|b| better(&c, b)) {
                    best = Some(c);
                }
            }
            None => *histogram.entry(NO_VICTIMS).or_default() += 1,
        }
    }
    best.ok_or_else(|| {
        let parts: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!(
            "preemption: 0/{} nodes are available: {}.",
            cache.nodes().len(),
            parts.join(", ")
        )
    })
}

fn victims_on(
    filters: &[&dyn Plugin],
    cx: &Cycle,
    node: &NodeInfo,
    budgets: &[(String, Selector, i64)],
) -> Option<Candidate> {
    let pod = cx.pod;
    let mut trial = node.clone();
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    for p in &lower {
        trial.remove_pod(&p.uid);
    }
    if run_filters(filters, cx, &trial).is_err() {
        return None;
    }
    // Most important first: they are the first given back.
    lower.sort_by(|a, b| b.priority.cmp(&a.priority));
    let mut allowed: Vec<i64> = budgets.iter().map(|b| b.2).collect();
    let mut violating = Vec::new();
    let mut free = Vec::new();
    for p in lower {
        let mut breaks = false;
        for (i, (ns, sel, _)) in budgets.iter().enumerate() {
            if *ns == p.namespace && sel.matches_with(|k| p.label(k)) {
                allowed[i] -= 1;
                breaks |= allowed[i] < 0;
            }
        }
        if breaks {
            violating.push(p);
        } else {
            free.push(p);
        }
    }
    let mut victims = Vec::new();
    let mut budget_violations = 0;
    for (p, breaks) in violating
        .into_iter()
        .map(|p| (p, true))
        .chain(free.into_iter().map(|p| (p, false)))
    {
        trial.add_pod(p.clone());
        if run_filters(filters, cx, &trial).is_err() {
            trial.remove_pod(&p.uid);
            budget_violations += usize::from(breaks);
            victims.push(p);
        }
    }
    Some(Candidate {
        node: node.name.clone(),
        victims,
        budget_violations,
    })
}

/// Upstream's order for picking among candidates.
fn better(a: &Candidate, b: &Candidate) -> bool {
    let top = |c: &Candidate| {
        c.victims
            .iter()
            .map(|p| p.priority)
            .max()
            .unwrap_or(i32::MIN)
    };
    let sum = |c: &Candidate| {
        c.victims
            .iter()
            .map(|p| p.priority as i64 + i32::MAX as i64 + 1)
            .sum::<i64>()
    };
    (a.budget_violations, top(a), sum(a), a.victims.len())
        < (b.budget_violations, top(b), sum(b), b.victims.len())
}
