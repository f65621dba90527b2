//! Server-side printing: the `meta.k8s.io/v1` Table columns and cells that
//! kube-apiserver (v1.33) returns for `kubectl get` of each built-in kind.
//!
//! Behaviour follows upstream `pkg/printers/internalversion/printers.go`.
//! As upstream does for server-side tables, cells are always generated in
//! "wide" form: priority-1 columns have cells too, and clients hide them
//! unless asked (`-o wide`).

use jiff::Timestamp;
use serde_json::{json, Value};

/// Builds a row of cells from values convertible into JSON.
macro_rules! row {
    ($($cell:expr),* $(,)?) => { vec![$(serde_json::Value::from($cell)),*] };
}

mod apps;
mod batch;
mod core;
mod defaults;
pub(crate) mod docs;
mod duration;
mod events;
mod fields;
mod generic;
mod hpa;
mod labels;
mod networking;
mod other;
mod pod;
mod storage;
mod time;

/// One column of a Table (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

/// A column shown by default.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const META_NAME_DESC: &str = docs::META_NAME;
const META_CREATION_TIMESTAMP_DESC: &str = docs::META_CREATION_TIMESTAMP;
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: META_NAME_DESC,
    priority: 0,
};

/// Upstream's AGE: a `string` column holding a human duration.
const AGE: Column = col("Age", "string", META_CREATION_TIMESTAMP_DESC);

type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// The printer for a resource (plural, lower case).
fn printer(resource: &str) -> Option<(&'static [Column], CellsFn)> {
    Some(match resource {
        // core/v1
        "pods" => (pod::POD_COLUMNS, pod::pod_cells),
        "podtemplates" => (pod::POD_TEMPLATE_COLUMNS, pod::pod_template_cells),
        "replicationcontrollers" => (
            core::REPLICATION_CONTROLLER_COLUMNS,
            core::replication_controller_cells,
        ),
        "services" => (core::SERVICE_COLUMNS, core::service_cells),
        "endpoints" => (core::ENDPOINTS_COLUMNS, core::endpoints_cells),
        "nodes" => (core::NODE_COLUMNS, core::node_cells),
        "namespaces" => (core::NAMESPACE_COLUMNS, core::namespace_cells),
        "configmaps" => (core::CONFIG_MAP_COLUMNS, core::config_map_cells),
        "secrets" => (core::SECRET_COLUMNS, core::secret_cells),
        "serviceaccounts" => (core::SERVICE_ACCOUNT_COLUMNS, core::service_account_cells),
        "persistentvolumes" => (
            core::PERSISTENT_VOLUME_COLUMNS,
            core::persistent_volume_cells,
        ),
        "persistentvolumeclaims" => (
            core::PERSISTENT_VOLUME_CLAIM_COLUMNS,
            core::persistent_volume_claim_cells,
        ),
        "resourcequotas" => (core::RESOURCE_QUOTA_COLUMNS, core::resource_quota_cells),
        // core/v1 and events.k8s.io share one printer.
        "events" | "events.events.k8s.io" => (events::EVENT_COLUMNS, events::event_cells),
        // apps/v1
        "deployments" => (apps::DEPLOYMENT_COLUMNS, apps::deployment_cells),
        "replicasets" => (apps::REPLICA_SET_COLUMNS, apps::replica_set_cells),
        "daemonsets" => (apps::DAEMON_SET_COLUMNS, apps::daemon_set_cells),
        "statefulsets" => (apps::STATEFUL_SET_COLUMNS, apps::stateful_set_cells),
        "controllerrevisions" => (
            apps::CONTROLLER_REVISION_COLUMNS,
            apps::controller_revision_cells,
        ),
        // batch/v1
        "jobs" => (batch::JOB_COLUMNS, batch::job_cells),
        "cronjobs" => (batch::CRON_JOB_COLUMNS, batch::cron_job_cells),
        // networking.k8s.io, discovery.k8s.io
        "ingresses" => (networking::INGRESS_COLUMNS, networking::ingress_cells),
        "ingressclasses" => (
            networking::INGRESS_CLASS_COLUMNS,
            networking::ingress_class_cells,
        ),
        "networkpolicies" => (
            networking::NETWORK_POLICY_COLUMNS,
            networking::network_policy_cells,
        ),
        "endpointslices" => (
            networking::ENDPOINT_SLICE_COLUMNS,
            networking::endpoint_slice_cells,
        ),
        // autoscaling
        "horizontalpodautoscalers" => (hpa::HPA_COLUMNS, hpa::hpa_cells),
        // storage.k8s.io
        "storageclasses" => (storage::STORAGE_CLASS_COLUMNS, storage::storage_class_cells),
        "volumeattachments" => (
            storage::VOLUME_ATTACHMENT_COLUMNS,
            storage::volume_attachment_cells,
        ),
        "csinodes" => (storage::CSI_NODE_COLUMNS, storage::csi_node_cells),
        "csidrivers" => (storage::CSI_DRIVER_COLUMNS, storage::csi_driver_cells),
        // policy, scheduling, node, rbac, coordination, admission, certificates
        "poddisruptionbudgets" => (other::PDB_COLUMNS, other::pdb_cells),
        "priorityclasses" => (other::PRIORITY_CLASS_COLUMNS, other::priority_class_cells),
        "runtimeclasses" => (other::RUNTIME_CLASS_COLUMNS, other::runtime_class_cells),
        "rolebindings" => (other::ROLE_BINDING_COLUMNS, other::binding_cells),
        "clusterrolebindings" => (other::CLUSTER_ROLE_BINDING_COLUMNS, other::binding_cells),
        "leases" => (other::LEASE_COLUMNS, other::lease_cells),
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => {
            (other::WEBHOOK_COLUMNS, other::webhook_cells)
        }
        "certificatesigningrequests" => (other::CSR_COLUMNS, other::csr_cells),
        // Built-ins upstream prints with the generic NAME / CREATED AT table.
        "roles" | "clusterroles" | "limitranges" | "customresourcedefinitions" => {
            (generic::CREATED_AT_COLUMNS, generic::created_at_cells)
        }
        _ => return None,
    })
}

/// Columns for a resource (plural lowercase name, e.g. "pods", "deployments"); `None` if unknown.
pub fn columns(resource: &str) -> Option<&'static [Column]> {
    printer(resource).map(|(cols, _)| cols)
}

/// Cells for one object, in column order. `now` is used for AGE/DURATION etc.
///
/// Resources without a printer get the [`default_columns`] cells (name, age).
pub fn cells(resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(resource) {
        Some((_, cells)) => cells(obj, now),
        None => generic::custom_resource_cells(obj, now),
    }
}

/// Default table for resources without a printer (custom resources): Name, Age.
pub fn default_columns() -> &'static [Column] {
    generic::CUSTOM_RESOURCE_COLUMNS
}

/// Column definitions as the JSON array `columnDefinitions` of a Table (name,type,format,description,priority).
pub fn column_definitions_json(cols: &[Column]) -> Value {
    Value::Array(
        cols.iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// Upstream HumanDuration ("5s", "3m2s", "10m", "5h", "3d", "2y100d" …).
pub fn human_duration(d: std::time::Duration) -> String {
    duration::human(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCES: &[&str] = &[
        "pods",
        "podtemplates",
        "replicationcontrollers",
        "services",
        "endpoints",
        "nodes",
        "namespaces",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "persistentvolumes",
        "persistentvolumeclaims",
        "resourcequotas",
        "events",
        "events.events.k8s.io",
        "deployments",
        "replicasets",
        "daemonsets",
        "statefulsets",
        "controllerrevisions",
        "jobs",
        "cronjobs",
        "ingresses",
        "ingressclasses",
        "networkpolicies",
        "endpointslices",
        "horizontalpodautoscalers",
        "storageclasses",
        "volumeattachments",
        "csinodes",
        "csidrivers",
        "poddisruptionbudgets",
        "priorityclasses",
        "runtimeclasses",
        "rolebindings",
        "clusterrolebindings",
        "leases",
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "certificatesigningrequests",
        "roles",
        "clusterroles",
        "limitranges",
        "customresourcedefinitions",
    ];

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    /// Every printer yields exactly one cell per column, even for an empty
    /// object, and names sit where the "name"-formatted column says.
    #[test]
    fn cells_match_columns() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T11:59:00Z"}});
        for r in RESOURCES {
            let cols = columns(r).unwrap_or_else(|| panic!("no columns for {r}"));
            assert_eq!(
                cells(r, &json!({}), now()).len(),
                cols.len(),
                "{r}: empty object"
            );
            let row = cells(r, &obj, now());
            assert_eq!(row.len(), cols.len(), "{r}");
            let name_col = cols
                .iter()
                .position(|c| c.format == "name" && c.name == "Name");
            assert_eq!(row[name_col.expect(r)], "x", "{r}");
        }
    }

    #[test]
    fn integer_columns_hold_numbers() {
        let obj = json!({"metadata": {"name": "x"}});
        for r in RESOURCES {
            let cols = columns(r).unwrap();
            for (c, cell) in cols.iter().zip(cells(r, &obj, now())) {
                if c.type_ == "integer" {
                    assert!(cell.is_i64(), "{r}.{}: {cell}", c.name);
                }
            }
        }
    }

    #[test]
    fn headers_as_kubectl_shows_them() {
        let names = |r: &str, wide: bool| -> Vec<String> {
            columns(r)
                .unwrap()
                .iter()
                .filter(|c| wide || c.priority == 0)
                .map(|c| c.name.to_uppercase())
                .collect()
        };
        assert_eq!(
            names("pods", false),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        );
        assert_eq!(
            names("pods", true)[5..],
            ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
        );
        assert_eq!(
            names("services", false),
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ]
        );
        assert_eq!(
            names("nodes", false),
            ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        );
        assert_eq!(
            names("deployments", false),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        );
        assert_eq!(
            names("jobs", false),
            ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
        );
        assert_eq!(
            names("cronjobs", false),
            [
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE"
            ]
        );
        assert_eq!(
            names("events", false),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        );
        assert_eq!(names("events", true)[7..], ["FIRST SEEN", "COUNT", "NAME"]);
        assert_eq!(
            names("customresourcedefinitions", false),
            ["NAME", "CREATED AT"]
        );
        assert_eq!(names("serviceaccounts", false), ["NAME", "SECRETS", "AGE"]);
    }

    #[test]
    fn unknown_resources_use_default_table() {
        assert!(columns("widgets").is_none());
        let cols = default_columns();
        assert_eq!(
            cols.iter().map(|c| (c.name, c.type_)).collect::<Vec<_>>(),
            [("Name", "string"), ("Age", "date")]
        );
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2024-04-30T12:00:00Z"}});
        assert_eq!(
            cells("widgets", &obj, now()),
            vec![json!("w"), json!("24h")]
        );
    }

    #[test]
    fn created_at_table() {
        let obj =
            json!({"metadata": {"name": "admin", "creationTimestamp": "2024-04-30T12:00:00Z"}});
        assert_eq!(
            cells("clusterroles", &obj, now()),
            vec![json!("admin"), json!("2024-04-30T12:00:00Z")]
        );
    }

    #[test]
    fn definitions_json() {
        let defs = column_definitions_json(&columns("pods").unwrap()[..2]);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(defs[0]["priority"], 0);
        assert!(defs[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Name must be unique"));
        assert_eq!(
            defs[1],
            json!({"name": "Ready", "type": "string", "format": "",
                   "description": "The aggregate readiness state of this pod for accepting traffic.", "priority": 0})
        );
    }

    #[test]
    fn public_human_duration() {
        assert_eq!(human_duration(std::time::Duration::from_secs(182)), "3m2s");
        assert_eq!(
            human_duration(std::time::Duration::from_secs(3 * 86400)),
            "3d"
        );
    }
}
