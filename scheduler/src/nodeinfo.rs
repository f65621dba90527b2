//! A node and what runs on it, kept incrementally: requested resources,
//! used host ports, the pods with affinity terms (which the affinity plugin
//! must look at), and its images.

use crate::podinfo::{HostPort, PodInfo};
use crate::resources::{node_allocatable, Resources};
use k8s_openapi::api::core::v1::{Node, Taint};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` carry affinity or anti-affinity terms.
    pub pods_with_affinity: usize,
    pub used_ports: Vec<HostPort>,
    /// Image name (as the node reports it, also with `:latest` added) → size.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut n = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            node: node.clone(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            allocatable: Resources::default(),
            allowed_pods: 0,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_affinity: 0,
            used_ports: Vec::new(),
            images: HashMap::new(),
        };
        n.set_node(node);
        n
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        (self.allocatable, self.allowed_pods) = node_allocatable(&node);
        self.images.clear();
        for image in node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
        {
            for name in image.names.iter().flatten() {
                self.images
                    .insert(normalized_image(name), image.size_bytes.unwrap_or(0));
            }
        }
        self.node = node;
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if !pod.affinity.is_empty() {
            self.pods_with_affinity += 1;
        }
        self.pods.push(pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero);
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        if !pod.affinity.is_empty() {
            self.pods_with_affinity -= 1;
        }
        Some(pod)
    }
}

/// An image reference with the implied `:latest` tag, as upstream compares them.
pub fn normalized_image(name: &str) -> String {
    let last_slash = name.rfind('/').map_or(-1, |i| i as isize);
    let last_colon = name.rfind(':').map_or(-1, |i| i as isize);
    if last_colon <= last_slash && !name.contains('@') {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

impl skiff_machinery::client::nodeaffinity::NodeFacts for NodeInfo {
    fn label(&self, key: &str) -> Option<&str> {
        NodeInfo::label(self, key)
    }
    fn name(&self) -> &str {
        &self.name
    }
}
