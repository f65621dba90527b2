//! ImageLocality: prefer nodes that already have the pod's images, scaled
//! by how widely each image is spread (so one node with every image does not
//! attract every pod), as upstream.

use crate::framework::{relevant, Cycle, Plugin, Relevance, MAX_NODE_SCORE};
use crate::nodeinfo::{normalized_image, NodeInfo};

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn scores(&self) -> bool {
        true
    }

    fn pre_score(&self, cx: &mut Cycle, _feasible: &[&NodeInfo]) -> Relevance {
        relevant(!cx.cache.image_nodes.is_empty())
    }

    fn score(&self, cx: &Cycle, node: &NodeInfo) -> i64 {
        if node.images.is_empty() {
            return 0;
        }
        let total_nodes = cx.cache.nodes().len().max(1) as f64;
        let spec = cx.pod.spec();
        let containers: Vec<_> = spec
            .init_containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .chain(spec.containers.iter())
            .collect();
        let sum: i64 = containers
            .iter()
            .filter_map(|c| {
                let image = normalized_image(c.image.as_deref()?);
                let size = *node.images.get(&image)?;
                let spread = cx.cache.nodes_with_image(&image) as f64 / total_nodes;
                Some((size as f64 * spread) as i64)
            })
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * containers.len().max(1) as i64;
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}
