//! apps/v1 kinds: upstream `printDeployment`, `printReplicaSet`,
//! `printDaemonSet`, `printStatefulSet`, `printControllerRevision` (v1.33).

use jiff::Timestamp;
use serde_json::Value;

use super::defaults;
use super::docs;
use super::fields::{arr_at, at, int_at, name, obj_at, str_at};
use super::labels::{format_label_selector, format_labels, selector_string};
use super::pod::containers_and_images;
use super::time::age;
use super::{col, wide, Column, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

fn template_containers(obj: &Value) -> (String, String) {
    containers_and_images(at(obj, &["spec", "template", "spec"]))
}

pub(super) static DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", docs::DEPLOY_UPDATED),
    col("Available", "string", docs::DEPLOY_AVAILABLE),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", docs::DEPLOY_SELECTOR),
];

pub(super) fn deployment_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(d);
    // A deployment's selector prints raw: "" when nil or empty, "<invalid>" when broken.
    let selector =
        selector_string(at(d, &["spec", "selector"])).unwrap_or_else(|_| "<invalid>".into());
    row![
        name(d),
        format!(
            "{}/{}",
            int_at(d, &["status", "readyReplicas"]),
            defaults::replicas(d)
        ),
        int_at(d, &["status", "updatedReplicas"]),
        int_at(d, &["status", "availableReplicas"]),
        age(d, now),
        names,
        images,
        selector,
    ]
}

pub(super) static REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", docs::RS_SPEC_REPLICAS),
    col("Current", "integer", docs::RS_STATUS_REPLICAS),
    col("Ready", "integer", docs::RS_STATUS_READY_REPLICAS),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", docs::RS_SPEC_SELECTOR),
];

pub(super) fn replica_set_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(rs);
    row![
        name(rs),
        defaults::replicas(rs),
        int_at(rs, &["status", "replicas"]),
        int_at(rs, &["status", "readyReplicas"]),
        age(rs, now),
        names,
        images,
        format_label_selector(at(rs, &["spec", "selector"])),
    ]
}

pub(super) static DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", docs::DS_DESIRED),
    col("Current", "integer", docs::DS_CURRENT),
    col("Ready", "integer", docs::DS_READY),
    col("Up-to-date", "integer", docs::DS_UPDATED),
    col("Available", "integer", docs::DS_AVAILABLE),
    col("Node Selector", "string", docs::POD_NODE_SELECTOR),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", docs::DS_SELECTOR),
];

pub(super) fn daemon_set_cells(ds: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(ds);
    let status = |f: &str| int_at(ds, &["status", f]);
    row![
        name(ds),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(obj_at(ds, &["spec", "template", "spec", "nodeSelector"])),
        age(ds, now),
        names,
        images,
        format_label_selector(at(ds, &["spec", "selector"])),
    ]
}

pub(super) static STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
];

pub(super) fn stateful_set_cells(sts: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(sts);
    row![
        name(sts),
        format!(
            "{}/{}",
            int_at(sts, &["status", "readyReplicas"]),
            defaults::replicas(sts)
        ),
        age(sts, now),
        names,
        images,
    ]
}

pub(super) static CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", docs::CONTROLLER_REVISION_REVISION),
    AGE,
];

/// The controlling owner as "kind.group/name" (lower-cased kind.group), or
/// "<none>" without a controller reference.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".into();
    };
    let api_version = str_at(owner, &["apiVersion"]);
    // schema.ParseGroupVersion: "v1" is the core group, "g/v" has a group.
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    match (kind, group) {
        ("", "") => owner_name.to_string(),
        (k, "") => format!("{}/{owner_name}", k.to_lowercase()),
        (k, g) => format!("{}/{owner_name}", format!("{k}.{g}").to_lowercase()),
    }
}

pub(super) fn controller_revision_cells(cr: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name(cr),
        controller_name(cr),
        int_at(cr, &["revision"]),
        age(cr, now)
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
    fn deployment_numbers() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2024-04-28T12:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1}});
        assert_eq!(
            deployment_cells(&d, now()),
            vec![
                json!("web"),
                json!("1/3"),
                json!(2),
                json!(1),
                json!("3d"),
                json!("nginx"),
                json!("nginx:1.27"),
                json!("app=web")
            ]
        );
        let sparse = deployment_cells(&json!({"metadata": {"name": "x"}}), now());
        assert_eq!(sparse[1..4], [json!("0/1"), json!(0), json!(0)]);
        assert_eq!(sparse[7], "");
        let zero = deployment_cells(&json!({"spec": {"replicas": 0}}), now());
        assert_eq!(zero[1], "0/0");
    }

    #[test]
    fn replica_and_daemon_sets() {
        let rs = json!({"spec": {"replicas": 2, "selector": {}}, "status": {"replicas": 2, "readyReplicas": 1}});
        let c = replica_set_cells(&rs, now());
        assert_eq!(c[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(c[7], "<none>");
        let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}});
        let c = daemon_set_cells(&ds, now());
        assert_eq!(
            c[1..7],
            [
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux")
            ]
        );
        assert_eq!(daemon_set_cells(&json!({}), now())[6], "<none>");
    }

    #[test]
    fn stateful_set_ready() {
        let sts = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 2}});
        assert_eq!(stateful_set_cells(&sts, now())[1], "2/3");
    }

    #[test]
    fn controller_revision() {
        let cr = json!({"metadata": {"name": "web-7d9", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "other"},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
            "revision": 4});
        assert_eq!(
            controller_revision_cells(&cr, now())[1..3],
            [json!("statefulset.apps/web"), json!(4)]
        );
        assert_eq!(controller_revision_cells(&json!({}), now())[1], "<none>");
    }
}
