//! storage.k8s.io kinds: upstream `printStorageClass`, `printVolumeAttachment`,
//! `printCSINode`, `printCSIDriver` (v1.33).

use jiff::Timestamp;
use serde_json::Value;

use super::docs;
use super::fields::{arr_at, len_at, name, opt_bool, opt_str, str_at};
use super::time::age;
use super::{col, Column, AGE, NAME};

pub(super) static STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", docs::SC_PROVISIONER),
    col("ReclaimPolicy", "string", docs::SC_RECLAIM_POLICY),
    col("VolumeBindingMode", "string", docs::SC_BINDING_MODE),
    col("AllowVolumeExpansion", "string", docs::SC_ALLOW_EXPANSION),
    AGE,
];

/// The default class carries either the GA or the beta annotation set to "true".
fn is_default_class(sc: &Value) -> bool {
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| opt_str(sc, &["metadata", "annotations", k]) == Some("true"))
}

pub(super) fn storage_class_cells(sc: &Value, now: Timestamp) -> Vec<Value> {
    let mut display = name(sc).to_string();
    if is_default_class(sc) {
        display.push_str(" (default)");
    }
    row![
        display,
        str_at(sc, &["provisioner"]),
        opt_str(sc, &["reclaimPolicy"]).unwrap_or("Delete"),
        opt_str(sc, &["volumeBindingMode"]).unwrap_or("Immediate"),
        opt_bool(sc, &["allowVolumeExpansion"]).unwrap_or(false),
        age(sc, now),
    ]
}

pub(super) static VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    // Upstream marks this column as a name, too.
    Column {
        name: "Attacher",
        type_: "string",
        format: "name",
        description: docs::VA_ATTACHER,
        priority: 0,
    },
    col("PV", "string", docs::VA_PV),
    col("Node", "string", docs::VA_NODE),
    col("Attached", "boolean", docs::VA_ATTACHED),
    AGE,
];

pub(super) fn volume_attachment_cells(va: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name(va),
        str_at(va, &["spec", "attacher"]),
        str_at(va, &["spec", "source", "persistentVolumeName"]),
        str_at(va, &["spec", "nodeName"]),
        opt_bool(va, &["status", "attached"]).unwrap_or(false),
        age(va, now),
    ]
}

pub(super) static CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

pub(super) fn csi_node_cells(n: &Value, now: Timestamp) -> Vec<Value> {
    row![name(n), len_at(n, &["spec", "drivers"]), age(n, now)]
}

pub(super) static CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    col("AttachRequired", "boolean", docs::CSI_ATTACH_REQUIRED),
    col("PodInfoOnMount", "boolean", docs::CSI_POD_INFO_ON_MOUNT),
    col("StorageCapacity", "boolean", docs::CSI_STORAGE_CAPACITY),
    col("TokenRequests", "string", docs::CSI_TOKEN_REQUESTS),
    col("RequiresRepublish", "boolean", docs::CSI_REQUIRES_REPUBLISH),
    col("Modes", "string", docs::CSI_MODES),
    AGE,
];

pub(super) fn csi_driver_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    let token_requests = match d.get("spec").and_then(|s| s.get("tokenRequests")) {
        Some(Value::Array(reqs)) => reqs
            .iter()
            .map(|r| str_at(r, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<unset>".into(),
    };
    let modes: Vec<&str> = arr_at(d, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let modes = if modes.is_empty() {
        "<none>".into()
    } else {
        modes.join(",")
    };
    row![
        name(d),
        opt_bool(d, &["spec", "attachRequired"]).unwrap_or(true),
        opt_bool(d, &["spec", "podInfoOnMount"]).unwrap_or(false),
        opt_bool(d, &["spec", "storageCapacity"]).unwrap_or(false),
        token_requests,
        opt_bool(d, &["spec", "requiresRepublish"]).unwrap_or(false),
        modes,
        age(d, now),
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
    fn storage_class() {
        let sc = json!({"metadata": {"name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            storage_class_cells(&sc, now())[..5],
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
    }

    #[test]
    fn csi() {
        let d = json!({"spec": {"tokenRequests": [{"audience": "a"}, {"audience": "b"}],
                                "volumeLifecycleModes": ["Persistent"]}});
        assert_eq!(
            csi_driver_cells(&d, now())[1..7],
            [
                json!(true),
                json!(false),
                json!(false),
                json!("a,b"),
                json!(false),
                json!("Persistent")
            ]
        );
        assert_eq!(csi_driver_cells(&json!({}), now())[4], "<unset>");
        assert_eq!(
            csi_node_cells(&json!({"spec": {"drivers": [{}, {}]}}), now())[1],
            2
        );
    }
}
