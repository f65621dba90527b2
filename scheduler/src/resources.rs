//! Resource amounts a pod requests and a node offers, as upstream's
//! `framework.Resource`: cpu in millicores, memory and ephemeral storage in
//! bytes, extended resources (`example.com/gpu`, `hugepages-2Mi`) by name.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_machinery::client::cachedpod::{Container, PodSpec};
use skiff_machinery::quantity;
use std::collections::BTreeMap;

/// What a container without requests counts as when scoring (upstream's
/// non-zero defaults), so empty pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub scalar: BTreeMap<String, i64>,
}

/// Extended resources, hugepages and attachable volumes: counted by name.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

fn millis(q: &Quantity) -> i64 {
    quantity::Quantity::parse(&q.0)
        .map(|q| q.millis.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
        .unwrap_or(0)
}

/// A quantity as a whole value, rounded up as upstream's `Value()`.
fn value(q: &Quantity) -> i64 {
    let m = millis(q);
    m / 1000 + i64::from(m % 1000 > 0)
}

impl Resources {
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = millis(q),
                "memory" => r.memory = value(q),
                "ephemeral-storage" => r.ephemeral_storage = value(q),
                n if is_scalar(n) => {
                    r.scalar.insert(n.to_string(), value(q));
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each amount the larger of the two.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// A container's requests; a resource with only a limit requests its limit
/// (the API server defaults it so; objects from elsewhere may not be).
fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let mut list = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    if let Some(req) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        list.extend(req.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut r = Resources::from_list(&list);
    if non_zero {
        if !list.contains_key("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !list.contains_key("memory") {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

/// What a pod needs on a node, as upstream's `resource.PodRequests`: its
/// containers plus sidecars (restartable init containers) together, or the
/// largest init container with the sidecars started before it, whichever is
/// more; plus the pod overhead. `non_zero` counts request-less containers at
/// the scoring defaults.
pub fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut total = Resources::default();
    for c in spec.containers.iter() {
        total.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.as_deref().unwrap_or_default() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_peak.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_peak.max_with(&during);
        }
    }
    total.add(&sidecars);
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

/// A node's allocatable resources (its capacity when it reports none) and
/// how many pods it may run.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .cloned()
        .unwrap_or_default();
    let pods = list.get("pods").map(value).unwrap_or(0);
    (Resources::from_list(&list), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn init_containers_count_at_their_peak_and_sidecars_throughout() {
        let s = spec(json!({
            "initContainers": [
                {"name": "setup", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "late", "resources": {"requests": {"cpu": "1"}}}
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "250m", "example.com/gpu": "1"}}}
            ],
            "overhead": {"cpu": "10m"}
        }));
        let r = pod_requests(&s, false);
        // max(750m + 100m sidecar, setup 2000m, late 1000m + 100m) + 10m overhead
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.scalar("example.com/gpu"), 1);
    }

    #[test]
    fn request_less_containers_count_at_defaults_for_scoring() {
        let s = spec(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let r = pod_requests(&s, true);
        assert_eq!(r.milli_cpu, 1100);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY);
        assert_eq!(pod_requests(&s, false).memory, 0);
    }
}
