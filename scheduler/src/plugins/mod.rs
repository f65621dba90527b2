//! The in-tree plugins and upstream's default profile: which run, in which
//! order, with which score weights.

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_basics;
pub mod node_resources;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::Plugin;
use serde_json::Value;

/// Filter plugins in upstream's default order.
pub const DEFAULT_FILTERS: &[&str] = &[
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "NodeResourcesFit",
    "VolumeBinding",
    "PodTopologySpread",
    "InterPodAffinity",
];

/// Score plugins with upstream's default weights.
pub const DEFAULT_SCORES: &[(&str, i64)] = &[
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

/// A plugin by its upstream name, configured by its `pluginConfig` args.
pub fn build(name: &str, args: Option<&Value>) -> Result<Box<dyn Plugin>, String> {
    Ok(match name {
        "NodeUnschedulable" => Box::new(node_basics::NodeUnschedulable),
        "NodeName" => Box::new(node_basics::NodeName),
        "NodePorts" => Box::new(node_basics::NodePorts),
        "TaintToleration" => Box::new(taint_toleration::TaintToleration),
        "NodeAffinity" => Box::new(node_affinity::NodeAffinity),
        "NodeResourcesFit" => Box::new(node_resources::Fit {
            scoring: node_resources::Scoring::from_args(args)
                .map_err(|e| format!("NodeResourcesFit args: {e}"))?,
        }),
        "NodeResourcesBalancedAllocation" => Box::new(node_resources::BalancedAllocation),
        "ImageLocality" => Box::new(image_locality::ImageLocality),
        "VolumeBinding" => Box::new(volume_binding::VolumeBinding),
        "PodTopologySpread" => Box::new(pod_topology_spread::PodTopologySpread),
        "InterPodAffinity" => Box::new(inter_pod_affinity::InterPodAffinity),
        other => return Err(format!("unknown plugin {other:?}")),
    })
}
