//! The scheduler's view of the cluster: every node with the pods assigned
//! to it (including pods assumed on a node while their binding is in
//! flight), namespace labels for affinity namespace selectors, and the pods
//! nominated to nodes by preemption.

use crate::nodeinfo::{normalized_image, NodeInfo};
use crate::podinfo::PodInfo;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

struct Placed {
    node: String,
    /// Placed by us, not yet seen bound through the watch.
    assumed: bool,
}

#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    placed: HashMap<String, Placed>,
    /// Pods bound to nodes we have not seen yet, by node name.
    waiting: HashMap<String, Vec<Arc<PodInfo>>>,
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Pods that preemption made room for, by node: others must leave it to them.
    pub nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    /// On how many nodes each image is (ImageLocality spreads by it).
    pub image_nodes: HashMap<String, usize>,
    /// Volume claims by `namespace/name`, volumes and storage classes by name.
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    pub classes: HashMap<String, Arc<StorageClass>>,
    /// Disruption budgets by `namespace/name`: preemption avoids breaking them.
    pub budgets: HashMap<String, Arc<PodDisruptionBudget>>,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.index.get(&name) {
            Some(&i) => {
                self.count_images(i, -1);
                self.nodes[i].set_node(node);
                self.count_images(i, 1);
            }
            None => {
                let mut info = NodeInfo::new(node);
                for pod in self.waiting.remove(&name).unwrap_or_default() {
                    info.add_pod(pod);
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(info);
                self.count_images(self.nodes.len() - 1, 1);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.count_images(i, -1);
        let gone = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        // Its pods stay accounted until they are deleted, should it return.
        if !gone.pods.is_empty() {
            self.waiting.insert(gone.name, gone.pods);
        }
    }

    fn count_images(&mut self, i: usize, delta: isize) {
        for image in self.nodes[i].images.keys() {
            let n = self.image_nodes.entry(image.clone()).or_default();
            *n = n.saturating_add_signed(delta);
        }
    }

    pub fn nodes_with_image(&self, image: &str) -> usize {
        self.image_nodes
            .get(&normalized_image(image))
            .copied()
            .unwrap_or(0)
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.index.get(name).map(|&i| &mut self.nodes[i])
    }

    /// Places a pod on a node before the API has confirmed the binding, so
    /// the next pod sees the node as it will be.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, true);
    }

    /// A binding failed: the assumed pod leaves its node again.
    pub fn forget(&mut self, uid: &str) {
        if self.placed.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    /// A pod the watch shows bound to a node (new, changed, or confirming an assumption).
    pub fn set_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, false);
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        self.remove_pod(&pod.uid);
        self.clear_nomination(&pod.uid);
        self.placed.insert(
            pod.uid.clone(),
            Placed {
                node: node.to_string(),
                assumed,
            },
        );
        match self.node_mut(node) {
            Some(n) => n.add_pod(pod),
            None => self.waiting.entry(node.to_string()).or_default().push(pod),
        }
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let placed = self.placed.remove(uid)?;
        if let Some(n) = self.node_mut(&placed.node) {
            return n.remove_pod(uid);
        }
        let waiting = self.waiting.get_mut(&placed.node)?;
        let i = waiting.iter().position(|p| p.uid == uid)?;
        Some(waiting.swap_remove(i))
    }

    pub fn is_placed(&self, uid: &str) -> bool {
        self.placed.contains_key(uid)
    }

    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.clear_nomination(&pod.uid);
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
    }

    pub fn clear_nomination(&mut self, uid: &str) {
        for pods in self.nominated.values_mut() {
            pods.retain(|p| p.uid != uid);
        }
        self.nominated.retain(|_, pods| !pods.is_empty());
    }
}
