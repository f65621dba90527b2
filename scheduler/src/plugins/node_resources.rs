//! NodeResourcesFit (does the pod fit in what the node has left; scored by
//! LeastAllocated, MostAllocated or RequestedToCapacityRatio) and
//! NodeResourcesBalancedAllocation (prefer nodes whose cpu and memory stay
//! evenly used).

use crate::framework::{Code, Cycle, Plugin, Rejection, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::resources::Resources;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct ResourceWeight {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ShapePoint {
    pub utilization: i64,
    pub score: i64,
}

#[derive(Debug, Clone)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
    RequestedToCapacityRatio(Vec<ShapePoint>),
}

/// `NodeResourcesFitArgs.scoringStrategy`, upstream's shape.
#[derive(Debug, Clone)]
pub struct Scoring {
    pub strategy: Strategy,
    pub resources: Vec<ResourceWeight>,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            strategy: Strategy::LeastAllocated,
            resources: vec![
                ResourceWeight {
                    name: "cpu".into(),
                    weight: 1,
                },
                ResourceWeight {
                    name: "memory".into(),
                    weight: 1,
                },
            ],
        }
    }
}

impl Scoring {
    /// From plugin args (`{"scoringStrategy": {"type": …, "resources": […], "requestedToCapacityRatio": {"shape": […]}}}`).
    pub fn from_args(args: Option<&Value>) -> Result<Scoring, String> {
        let mut s = Scoring::default();
        let Some(strategy) = args.and_then(|a| a.get("scoringStrategy")) else {
            return Ok(s);
        };
        if let Some(r) = strategy.get("resources") {
            s.resources = serde_json::from_value(r.clone()).map_err(|e| e.to_string())?;
        }
        s.strategy = match strategy
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("LeastAllocated")
        {
            "LeastAllocated" => Strategy::LeastAllocated,
            "MostAllocated" => Strategy::MostAllocated,
            "RequestedToCapacityRatio" => {
                let shape = strategy
                    .pointer("/requestedToCapacityRatio/shape")
                    .cloned()
                    .ok_or("requestedToCapacityRatio.shape is required")?;
                let mut shape: Vec<ShapePoint> =
                    serde_json::from_value(shape).map_err(|e| e.to_string())?;
                shape.sort_by_key(|p| p.utilization);
                Strategy::RequestedToCapacityRatio(shape)
            }
            other => return Err(format!("scoringStrategy.type: unsupported value {other:?}")),
        };
        Ok(s)
    }
}

fn amount(r: &Resources, name: &str) -> i64 {
    match name {
        "cpu" => r.milli_cpu,
        "memory" => r.memory,
        "ephemeral-storage" => r.ephemeral_storage,
        other => r.scalar(other),
    }
}

pub struct Fit {
    pub scoring: Scoring,
}

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn filters(&self) -> bool {
        true
    }
    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        let want = &cx.pod.requests;
        let (have, used) = (&node.allocatable, &node.requested);
        let mut reasons = Vec::new();
        if node.pods.len() as i64 + 1 > node.allowed_pods {
            reasons.push("Too many pods".to_string());
        }
        let short = |w: i64, h: i64, u: i64| w > 0 && w > h - u;
        if short(want.milli_cpu, have.milli_cpu, used.milli_cpu) {
            reasons.push("Insufficient cpu".into());
        }
        if short(want.memory, have.memory, used.memory) {
            reasons.push("Insufficient memory".into());
        }
        if short(
            want.ephemeral_storage,
            have.ephemeral_storage,
            used.ephemeral_storage,
        ) {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, w) in &want.scalar {
            if short(*w, have.scalar(name), used.scalar(name)) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Rejection {
                code: Code::Unschedulable,
                reasons,
                plugin: "",
            })
        }
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        let (mut total, mut weights) = (0, 0);
        for rw in &self.scoring.resources {
            let capacity = amount(&node.allocatable, &rw.name);
            let requested =
                amount(&node.non_zero_requested, &rw.name) + amount(&cx.pod.non_zero, &rw.name);
            let score = match &self.scoring.strategy {
                Strategy::LeastAllocated => {
                    if capacity == 0 || requested > capacity {
                        0
                    } else {
                        (capacity - requested) * MAX_NODE_SCORE / capacity
                    }
                }
                Strategy::MostAllocated => {
                    if capacity == 0 {
                        0
                    } else {
                        requested.min(capacity) * MAX_NODE_SCORE / capacity
                    }
                }
                Strategy::RequestedToCapacityRatio(shape) => {
                    if capacity == 0 {
                        0
                    } else {
                        shape_score(shape, requested.min(capacity) * 100 / capacity)
                    }
                }
            };
            total += score * rw.weight;
            weights += rw.weight;
        }
        if weights == 0 {
            0
        } else {
            total / weights
        }
    }
}

/// The piecewise-linear shape at `utilization` percent; shape scores run
/// 0..=10 and are scaled to 0..=100 as upstream.
fn shape_score(shape: &[ShapePoint], utilization: i64) -> i64 {
    let scale = MAX_NODE_SCORE / 10;
    let Some(first) = shape.first() else {
        return 0;
    };
    if utilization <= first.utilization {
        return first.score * scale;
    }
    for w in shape.windows(2) {
        let (a, b) = (w[0], w[1]);
        if utilization <= b.utilization {
            let span = (b.utilization - a.utilization).max(1);
            let s = a.score * scale
                + (b.score - a.score) * scale * (utilization - a.utilization) / span;
            return s;
        }
    }
    shape.last().map_or(0, |p| p.score * scale)
}

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn scores(&self) -> bool {
        true
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        let fraction = |name: &str| {
            let capacity = amount(&node.allocatable, name);
            if capacity == 0 {
                return 1.0;
            }
            let requested = amount(&node.requested, name) + amount(&cx.pod.requests, name);
            (requested as f64 / capacity as f64).min(1.0)
        };
        let (cpu, memory) = (fraction("cpu"), fraction("memory"));
        // The standard deviation of two fractions is half their distance.
        let std = (cpu - memory).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_interpolate_between_points() {
        let shape = [
            ShapePoint {
                utilization: 0,
                score: 0,
            },
            ShapePoint {
                utilization: 100,
                score: 10,
            },
        ];
        assert_eq!(shape_score(&shape, 50), 50);
        assert_eq!(shape_score(&shape, 100), 100);
    }
}
