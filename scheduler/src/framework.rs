//! The plugin interface, after upstream's scheduling framework: every
//! decision is a plugin that filters nodes out (with a reason users see) or
//! scores the ones left. A cycle carries one pod's precomputed state.

use crate::cache::Cache;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use std::any::Any;
use std::collections::HashMap;

/// Upstream's highest node score.
pub const MAX_NODE_SCORE: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Could fit if something changed on the node (preemption may help).
    Unschedulable,
    /// Nothing done to the node's pods would help.
    UnschedulableAndUnresolvable,
}

/// Why a node cannot take the pod: the reasons `kubectl describe` counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<String>,
    /// The plugin that rejected (filled in by the framework).
    pub plugin: &'static str,
}

impl Rejection {
    pub fn unschedulable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }
}

/// One pod's scheduling attempt: the pod, the cluster as the cache has it,
/// and what each plugin precomputed for it.
pub struct Cycle<'a> {
    pub pod: &'a PodInfo,
    pub cache: &'a Cache,
    state: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl<'a> Cycle<'a> {
    pub fn new(pod: &'a PodInfo, cache: &'a Cache) -> Cycle<'a> {
        Cycle {
            pod,
            cache,
            state: HashMap::new(),
        }
    }

    pub fn put<T: Any + Send + Sync>(&mut self, plugin: &'static str, value: T) {
        self.state.insert(plugin, Box::new(value));
    }

    pub fn get<T: Any + Send + Sync>(&self, plugin: &'static str) -> Option<&T> {
        self.state.get(plugin)?.downcast_ref()
    }
}

/// Whether a plugin has anything to do for this pod (upstream's Skip
/// status): skipped plugins cost nothing per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relevance {
    Run,
    Skip,
}

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the plugin filters, and whether it scores.
    fn filters(&self) -> bool {
        false
    }
    fn scores(&self) -> bool {
        false
    }

    /// Once per attempt, before filtering; a rejection here rejects every node.
    fn pre_filter(&self, _cx: &mut Cycle) -> Result<Relevance, Rejection> {
        Ok(Relevance::Run)
    }

    fn filter(&self, _cx: &Cycle, _node: &NodeInfo) -> Result<(), Rejection> {
        Ok(())
    }

    /// Once per attempt, before scoring the feasible nodes.
    fn pre_score(&self, _cx: &mut Cycle, _feasible: &[&NodeInfo]) -> Relevance {
        Relevance::Run
    }

    fn score(&self, _cx: &Cycle, _node: &NodeInfo) -> i64 {
        0
    }

    /// Brings raw scores into 0..=100.
    fn normalize(&self, _cx: &Cycle, _scores: &mut [i64]) {}
}

pub fn relevant(run: bool) -> Relevance {
    if run {
        Relevance::Run
    } else {
        Relevance::Skip
    }
}

/// Upstream's `DefaultNormalizeScore`: scale to the highest score, reversed
/// for plugins whose raw score counts something bad.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// A scheduler profile: the plugins a `schedulerName` runs, in order, with
/// score weights.
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Box<dyn Plugin>>,
    pub scorers: Vec<(Box<dyn Plugin>, i64)>,
    /// `None`: adaptive, as upstream.
    pub percentage_of_nodes_to_score: Option<u32>,
}
