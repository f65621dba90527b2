//! A node's registration and heartbeat, shared by the real agent and the
//! simulated one: the Node object (capacity, labels, addresses, nodeInfo,
//! conditions) and its Lease in kube-node-lease, renewed every 10 s.

use crate::{now, now_micro};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

/// How often the Lease is renewed (upstream: 10 s) and for how long it holds.
pub const LEASE_RENEW_SECS: u64 = 10;
pub const LEASE_DURATION_SECS: i64 = 40;

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

    /// The status a healthy node reports.
    pub fn status(&self) -> Value {
        let capacity = json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(), "ephemeral-storage": self.ephemeral_storage});
        let t = now();
        let cond = |ty: &str, status: &str, reason: &str, message: &str| json!({"type": ty, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": t, "lastTransitionTime": t});
        json!({
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": self.internal_ip}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
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
