//! Core (v1) kinds other than pods and events: upstream `printService`,
//! `printNode`, `printEndpoints`, `printPersistentVolume`, … (v1.33).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::defaults;
use super::docs;
use super::fields::{
    arr_at, at, deleting, int_at, len_at, name, obj_at, opt_bool, opt_str, quantity, str_at,
};
use super::labels::format_labels;
use super::pod::containers_and_images;
use super::time::age;
use super::{col, wide, Column, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

pub(super) static REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", docs::RC_SPEC_REPLICAS),
    col("Current", "integer", docs::RC_STATUS_REPLICAS),
    col("Ready", "integer", docs::RC_STATUS_READY_REPLICAS),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", docs::RC_SPEC_SELECTOR),
];

pub(super) fn replication_controller_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers_and_images(at(obj, &["spec", "template", "spec"]));
    row![
        name(obj),
        defaults::replicas(obj),
        int_at(obj, &["status", "replicas"]),
        int_at(obj, &["status", "readyReplicas"]),
        age(obj, now),
        names,
        images,
        format_labels(obj_at(obj, &["spec", "selector"])),
    ]
}

pub(super) static SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", docs::SERVICE_TYPE),
    col("Cluster-IP", "string", docs::SERVICE_CLUSTER_IP),
    col("External-IP", "string", docs::SERVICE_EXTERNAL_IPS),
    col("Port(s)", "string", docs::SERVICE_PORTS),
    AGE,
    wide("Selector", "string", docs::SERVICE_SELECTOR),
];

/// Load-balancer ingress points: IP, else hostname; deduplicated and sorted.
///
/// Server-side tables are always generated "wide", so upstream's 16-character
/// truncation for narrow output never applies here.
pub(super) fn load_balancer_ingress(status: Option<&Value>) -> String {
    let set: BTreeSet<&str> = status
        .map(|s| arr_at(s, &["ingress"]))
        .unwrap_or(&[])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external: Vec<&str> = arr_at(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match svc_type {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(at(svc, &["status", "loadBalancer"]));
            if !external.is_empty() {
                let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    }
}

/// "port/proto" or "port:nodePort/proto" per port, comma-joined.
fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = arr_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let proto = defaults::protocol(p);
            match int_at(p, &["nodePort"]) {
                np if np > 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".into()
    } else {
        pieces.join(",")
    }
}

pub(super) fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let svc_type = defaults::service_type(svc);
    // spec.clusterIP is authoritative over clusterIPs[0] (v1 conversion rule).
    let cluster_ip = opt_str(svc, &["spec", "clusterIP"])
        .filter(|s| !s.is_empty())
        .or_else(|| {
            arr_at(svc, &["spec", "clusterIPs"])
                .first()
                .and_then(Value::as_str)
        })
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    row![
        name(svc),
        svc_type,
        cluster_ip,
        service_external_ip(svc, svc_type),
        service_ports(svc),
        age(svc, now),
        format_labels(obj_at(svc, &["spec", "selector"])),
    ]
}

pub(super) static ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "string", docs::ENDPOINTS_SUBSETS),
    AGE,
];

/// `net.JoinHostPort`: IPv6 literals are bracketed.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// First three "ip:port" pairs, then " + N more..." (`formatEndpoints`).
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports: list bare IPs.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(a, &["ip"]), int_at(p, &["port"])));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

pub(super) fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    row![name(ep), format_endpoints(ep), age(ep, now)]
}

pub(super) static NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", docs::NODE_KUBELET_VERSION),
    wide("Internal-IP", "string", docs::NODE_ADDRESSES),
    wide("External-IP", "string", docs::NODE_ADDRESSES),
    wide("OS-Image", "string", docs::NODE_OS_IMAGE),
    wide("Kernel-Version", "string", docs::NODE_KERNEL_VERSION),
    wide(
        "Container-Runtime",
        "string",
        docs::NODE_CONTAINER_RUNTIME_VERSION,
    ),
];

/// "Ready"/"NotReady" from the (last) Ready condition, "Unknown" without one,
/// plus ",SchedulingDisabled" when cordoned.
fn node_status(node: &Value) -> String {
    let ready = arr_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if opt_bool(node, &["spec", "unschedulable"]) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// Roles from `node-role.kubernetes.io/<role>` keys and the legacy
/// `kubernetes.io/role=<role>` label, sorted and deduplicated.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in obj_at(node, &["metadata", "labels"]).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                roles.insert(v.to_string());
            }
        }
    }
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address(node: &Value, type_: &str) -> String {
    arr_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == type_)
        .map(|a| str_at(a, &["address"]).to_string())
        .unwrap_or_else(|| "<none>".into())
}

pub(super) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };
    row![
        name(node),
        node_status(node),
        node_roles(node),
        age(node, now),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]),
        node_address(node, "InternalIP"),
        node_address(node, "ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

pub(super) static NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

pub(super) fn namespace_cells(ns: &Value, now: Timestamp) -> Vec<Value> {
    row![name(ns), defaults::namespace_phase(ns), age(ns, now)]
}

pub(super) static CONFIG_MAP_COLUMNS: &[Column] =
    &[NAME, col("Data", "string", docs::CONFIG_MAP_DATA), AGE];

pub(super) fn config_map_cells(cm: &Value, now: Timestamp) -> Vec<Value> {
    let entries = len_at(cm, &["data"]) + len_at(cm, &["binaryData"]);
    row![name(cm), entries, age(cm, now)]
}

pub(super) static SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", docs::SECRET_TYPE),
    col("Data", "string", docs::SECRET_DATA),
    AGE,
];

pub(super) fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name(secret),
        defaults::secret_type(secret),
        len_at(secret, &["data"]),
        age(secret, now),
    ]
}

pub(super) static SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col("Secrets", "string", docs::SERVICE_ACCOUNT_SECRETS),
    AGE,
];

pub(super) fn service_account_cells(sa: &Value, now: Timestamp) -> Vec<Value> {
    row![name(sa), len_at(sa, &["secrets"]), age(sa, now)]
}

pub(super) static PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", docs::PV_CAPACITY),
    col("Access Modes", "string", docs::PV_ACCESS_MODES),
    col("Reclaim Policy", "string", docs::PV_RECLAIM_POLICY),
    col("Status", "string", docs::PV_PHASE),
    col("Claim", "string", docs::PV_CLAIM_REF),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col("Reason", "string", docs::PV_REASON),
    AGE,
    wide("VolumeMode", "string", docs::PV_VOLUME_MODE),
];

/// RWO,ROX,RWX,RWOP in that fixed order (`GetAccessModesAsString`).
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta storage-class annotation wins over `spec.storageClassName`.
fn storage_class(obj: &Value) -> &str {
    opt_str(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .unwrap_or_else(|| str_at(obj, &["spec", "storageClassName"]))
}

pub(super) fn persistent_volume_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(pv, &["spec", "claimRef"]) {
        Some(r) if !r.is_null() => {
            format!("{}/{}", str_at(r, &["namespace"]), str_at(r, &["name"]))
        }
        _ => String::new(),
    };
    let phase = if deleting(pv) {
        "Terminating"
    } else {
        defaults::phase_or_pending(pv)
    };
    row![
        name(pv),
        quantity(at(pv, &["spec", "capacity", "storage"]), "0"),
        access_modes(arr_at(pv, &["spec", "accessModes"])),
        defaults::pv_reclaim_policy(pv),
        phase,
        claim,
        storage_class(pv),
        opt_str(pv, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
        str_at(pv, &["status", "reason"]),
        age(pv, now),
        defaults::volume_mode(pv),
    ]
}

pub(super) static PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", docs::PVC_PHASE),
    col("Volume", "string", docs::PVC_VOLUME_NAME),
    col("Capacity", "string", docs::PVC_CAPACITY),
    col("Access Modes", "string", docs::PVC_ACCESS_MODES),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide("VolumeMode", "string", docs::PVC_VOLUME_MODE),
];

pub(super) fn persistent_volume_claim_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if deleting(pvc) {
        "Terminating"
    } else {
        defaults::phase_or_pending(pvc)
    };
    let volume = str_at(pvc, &["spec", "volumeName"]);
    // Capacity and modes are only shown once bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(at(pvc, &["status", "capacity", "storage"]), "0"),
            access_modes(arr_at(pvc, &["status", "accessModes"])),
        )
    };
    let class = opt_str(
        pvc,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .or_else(|| opt_str(pvc, &["spec", "storageClassName"]))
    .unwrap_or("");
    row![
        name(pvc),
        phase,
        volume,
        capacity,
        modes,
        class,
        opt_str(pvc, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
        age(pvc, now),
        defaults::volume_mode(pvc),
    ]
}

pub(super) static RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

/// "resource: used/hard" for every hard limit, sorted; `limits.*` resources
/// go to the LIMIT column, everything else to REQUEST.
pub(super) fn resource_quota_cells(rq: &Value, now: Timestamp) -> Vec<Value> {
    let hard = obj_at(rq, &["status", "hard"]);
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|m| m.keys()).collect();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let used = quantity(at(rq, &["status", "used", r]), "0");
        let limit = quantity(at(rq, &["status", "hard", r]), "0");
        let entry = format!("{r}: {used}/{limit}");
        let pieces: Vec<&str> = r.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    row![
        name(rq),
        requests.join(", "),
        limits.join(", "),
        age(rq, now)
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn service_node_port() {
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            service_cells(&svc, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("120m"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn service_defaults_and_empties() {
        let c = service_cells(&json!({"spec": {"clusterIPs": ["10.0.0.1"]}}), now());
        assert_eq!(c[1], "ClusterIP");
        assert_eq!(c[2], "10.0.0.1");
        assert_eq!(c[3], "<none>");
        assert_eq!(c[4], "<none>");
        assert_eq!(c[6], "<none>");
        let c = service_cells(
            &json!({"spec": {"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 80}]}}),
            now(),
        );
        assert_eq!(c[2], "None");
        assert_eq!(c[4], "80/TCP");
        let c = service_cells(
            &json!({"spec": {"type": "ClusterIP", "externalIPs": ["1.2.3.4", "5.6.7.8"]}}),
            now(),
        );
        assert_eq!(c[3], "1.2.3.4,5.6.7.8");
    }

    #[test]
    fn service_load_balancer_external_ip() {
        let pending = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(service_cells(&pending, now())[3], "<pending>");
        let lb = json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [
            {"ip": "203.0.113.9"}, {"hostname": "a.example.com"}, {"ip": "203.0.113.1"}, {"ip": "203.0.113.9"}]}}});
        assert_eq!(
            service_cells(&lb, now())[3],
            "203.0.113.1,203.0.113.9,a.example.com"
        );
        let mixed = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}});
        assert_eq!(service_cells(&mixed, now())[3], "1.1.1.1,9.9.9.9");
        let only_ext = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]}});
        assert_eq!(service_cells(&only_ext, now())[3], "9.9.9.9");
        let ext_name = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(service_cells(&ext_name, now())[3], "db.example.com");
        assert_eq!(
            service_cells(&json!({"spec": {"type": "Weird"}}), now())[3],
            "<unknown>"
        );
    }

    #[test]
    fn node_status_and_roles() {
        let node = json!({"metadata": {"name": "n1", "labels": {
                "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "master", "other": "x"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}, {"type": "Hostname", "address": "n1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian"}}});
        let c = node_cells(&node, now());
        assert_eq!(c[1], "Ready,SchedulingDisabled");
        assert_eq!(c[2], "control-plane,master");
        assert_eq!(c[4], "v1.33.1");
        assert_eq!(c[5], "192.168.0.2");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "Debian");
        assert_eq!(c[8], "<unknown>");
        assert_eq!(c[9], "<unknown>");

        let bare = node_cells(&json!({"metadata": {"name": "n2"}}), now());
        assert_eq!(bare[1], "Unknown");
        assert_eq!(bare[2], "<none>");
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(node_cells(&not_ready, now())[1], "NotReady");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoints_cells(&json!({}), now())[1], "<none>");
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
                                     "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            endpoints_cells(&ep, now())[1],
            "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 1 more..."
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(endpoints_cells(&headless, now())[1], "10.0.0.1");
    }

    #[test]
    fn volumes() {
        let pv = json!({"metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "fast",
                     "claimRef": {"namespace": "ns", "name": "data"}},
            "status": {"phase": "Bound"}});
        assert_eq!(
            persistent_volume_cells(&pv, now()),
            vec![
                json!("pv1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("ns/data"),
                json!("fast"),
                json!("<unset>"),
                json!(""),
                json!("<unknown>"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        let c = persistent_volume_claim_cells(&pending, now());
        assert_eq!(
            c[1..6],
            [json!("Pending"), json!(""), json!(""), json!(""), json!("")]
        );
        let bound = json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"volumeName": "pv1", "storageClassName": "new"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}});
        let c = persistent_volume_claim_cells(&bound, now());
        assert_eq!(
            c[1..6],
            [
                json!("Bound"),
                json!("pv1"),
                json!("1Gi"),
                json!("RWO"),
                json!("old")
            ]
        );
    }

    #[test]
    fn quota_and_counts() {
        let rq = json!({"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"},
                                   "used": {"pods": "3", "limits.cpu": "500m"}}});
        let c = resource_quota_cells(&rq, now());
        assert_eq!(c[1], "pods: 3/10, requests.cpu: 0/1");
        assert_eq!(c[2], "limits.cpu: 500m/2");
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(config_map_cells(&cm, now())[1], 3);
        let secret = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            secret_cells(&secret, now())[1..3],
            [json!("kubernetes.io/tls"), json!(2)]
        );
        assert_eq!(service_account_cells(&json!({}), now())[1], 0);
    }
}
