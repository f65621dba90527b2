//! A node's registration and heartbeat, shared by the real agent and the
//! simulated one: the Node object (capacity, labels, addresses, nodeInfo,
//! conditions) and its Lease in kube-node-lease, renewed every 10 s.

use crate::{now, now_micro};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use skiff_machinery::quantity::Quantity;
use std::collections::BTreeMap;

/// How often the Lease is renewed (upstream: 10 s) and for how long it holds.
pub const LEASE_RENEW_SECS: u64 = 10;
pub const LEASE_DURATION_SECS: i64 = 40;
/// The kubelet version nodes report: the Kubernetes version skiff implements.
pub const KUBELET_VERSION: &str = "v1.32.4+skiff";

/// What a node says about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub internal_ip: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub ephemeral_storage: String,
    pub labels: serde_json::Map<String, Value>,
    pub kernel_version: String,
    pub os_image: String,
    pub container_runtime: String,
    pub kubelet_version: String,
    /// Set aside for the system (kubelet's --system-reserved/--kube-reserved).
    pub reserved_cpu_millis: i64,
    pub reserved_memory: i64,
    /// Images present on the node: their names and size.
    pub images: Vec<(Vec<String>, u64)>,
    pub pressure: Pressure,
    /// Where the node's streaming server listens (status.daemonEndpoints).
    pub kubelet_port: u16,
}

/// Resource pressure the node reports in its conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl NodeInfo {
    pub fn object(&self) -> Value {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), json!(self.name));
        labels.insert("kubernetes.io/os".into(), json!("linux"));
        labels.insert("kubernetes.io/arch".into(), json!(arch()));
        labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
        labels.insert("beta.kubernetes.io/arch".into(), json!(arch()));
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {},
        })
    }

    /// Capacity less what is reserved, as quantities.
    pub fn allocatable(&self) -> BTreeMap<String, String> {
        let less = |total: &str, reserved_millis: i128, milli_unit: bool| {
            if reserved_millis == 0 {
                return total.to_string();
            }
            let t = Quantity::parse(total).map(|q| q.millis).unwrap_or(0);
            let left = (t - reserved_millis).max(0);
            if milli_unit {
                format!("{left}m")
            } else {
                (left / 1000).to_string()
            }
        };
        BTreeMap::from([
            (
                "cpu".to_string(),
                less(&self.cpu, self.reserved_cpu_millis as i128, true),
            ),
            (
                "memory".to_string(),
                less(&self.memory, self.reserved_memory as i128 * 1000, false),
            ),
            ("pods".to_string(), self.pods.to_string()),
            (
                "ephemeral-storage".to_string(),
                self.ephemeral_storage.clone(),
            ),
        ])
    }

    /// The status a healthy node reports.
    pub fn status(&self) -> Value {
        let capacity = json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(), "ephemeral-storage": self.ephemeral_storage});
        let allocatable = json!(self.allocatable());
        let t = now();
        let cond = |ty: &str, status: &str, reason: &str, message: &str| json!({"type": ty, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": t, "lastTransitionTime": t});
        let images: Vec<Value> = self
            .images
            .iter()
            .map(|(names, size)| json!({"names": names, "sizeBytes": size}))
            .collect();
        json!({
            "images": images,
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                if self.pressure.memory {
                    cond("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
                } else {
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
                },
                if self.pressure.disk {
                    cond("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure")
                } else {
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
                },
                if self.pressure.pid {
                    cond("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
                } else {
                    cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")
                },
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": self.internal_ip}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": self.kernel_version, "osImage": self.os_image,
                "containerRuntimeVersion": self.container_runtime, "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": arch(),
            },
        })
    }
}

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Registers the node as the kubelet does, trying again (backing off to 7 s)
/// while the API server cannot be reached or answers 5xx or 429: a server
/// that restarts, or a connection that breaks, as the agent starts must not
/// end it. Any other answer (forbidden, invalid) does.
pub async fn register_with_retries(client: &Client, info: &NodeInfo) -> Result<Node, kube::Error> {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match register(client, info).await {
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, node = %info.name, "registering the node; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(7));
            }
            done => return done,
        }
    }
}

/// Whether a request may succeed if simply tried again.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Creates the node (or takes over an existing one of that name) and reports
/// its status.
pub async fn register(client: &Client, info: &NodeInfo) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(info.object()).map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let labels = json!({"metadata": {"labels": info.object()["metadata"]["labels"]}});
            nodes
                .patch(&info.name, &PatchParams::default(), &Patch::Merge(labels))
                .await?;
        }
        Err(e) => return Err(e),
    }
    report_status(client, info).await
}

pub async fn report_status(client: &Client, info: &NodeInfo) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &info.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": info.status()})),
        )
        .await
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(
    client: &Client,
    node: &str,
    owner_uid: Option<&str>,
) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECS, "renewTime": now_micro()}});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(renew))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut lease = json!({
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECS, "renewTime": now_micro()},
            });
            // Owned by the node, so the garbage collector removes it with the node.
            if let Some(uid) = owner_uid {
                lease["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
            }
            let lease: Lease = serde_json::from_value(lease).map_err(kube::Error::SerdeError)?;
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_or_overloaded_servers_are_tried_again() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert!(is_transient(&api(500)));
        assert!(is_transient(&api(503)));
        assert!(is_transient(&api(429)));
        assert!(!is_transient(&api(403)));
        assert!(!is_transient(&api(422)));
        assert!(is_transient(&kube::Error::Service(
            "keep-alive timed out".into()
        )));
        let bad_json = serde_json::from_str::<Value>("{").unwrap_err();
        assert!(!is_transient(&kube::Error::SerdeError(bad_json)));
    }
}
