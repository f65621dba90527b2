//! Remaining small kinds (policy, scheduling, node, rbac bindings,
//! coordination, admission webhooks, certificates): upstream
//! `printPodDisruptionBudget`, `printPriorityClass`, `printRoleBinding`,
//! `printLease`, … (v1.33).

use jiff::Timestamp;
use serde_json::Value;

use super::defaults;
use super::docs;
use super::duration::human_nanos;
use super::fields::{arr_at, at, int_at, int_or_string, len_at, name, opt_bool, opt_int, str_at};
use super::time::age;
use super::{col, wide, Column, AGE, NAME};

pub(super) static PDB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

pub(super) fn pdb_cells(pdb: &Value, now: Timestamp) -> Vec<Value> {
    let int_or_na = |field: &str| match at(pdb, &["spec", field]).filter(|v| !v.is_null()) {
        Some(v) => int_or_string(v),
        None => "N/A".into(),
    };
    row![
        name(pdb),
        int_or_na("minAvailable"),
        int_or_na("maxUnavailable"),
        int_at(pdb, &["status", "disruptionsAllowed"]),
        age(pdb, now),
    ]
}

pub(super) static PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", docs::PRIORITY_CLASS_VALUE),
    col(
        "Global-Default",
        "boolean",
        docs::PRIORITY_CLASS_GLOBAL_DEFAULT,
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        docs::PRIORITY_CLASS_PREEMPTION,
    ),
];

pub(super) fn priority_class_cells(pc: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name(pc),
        int_at(pc, &["value"]),
        opt_bool(pc, &["globalDefault"]).unwrap_or(false),
        age(pc, now),
        defaults::preemption_policy(pc),
    ]
}

pub(super) static RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    // Upstream looks the description up under a key ObjectMeta lacks: empty.
    col("Handler", "string", ""),
    AGE,
];

pub(super) fn runtime_class_cells(rc: &Value, now: Timestamp) -> Vec<Value> {
    row![name(rc), str_at(rc, &["handler"]), age(rc, now)]
}

pub(super) static ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("Role", "string", docs::ROLE_BINDING_ROLE_REF),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

pub(super) static CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("Role", "string", docs::CLUSTER_ROLE_BINDING_ROLE_REF),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

/// Role reference plus subjects split by kind (`rbac.SubjectsStrings`);
/// service accounts print as "namespace/name", other kinds are dropped.
pub(super) fn binding_cells(b: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in arr_at(b, &["subjects"]) {
        let subject_name = str_at(s, &["name"]);
        match str_at(s, &["kind"]) {
            "ServiceAccount" => sas.push(format!("{}/{subject_name}", str_at(s, &["namespace"]))),
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            _ => {}
        }
    }
    row![
        name(b),
        format!(
            "{}/{}",
            str_at(b, &["roleRef", "kind"]),
            str_at(b, &["roleRef", "name"])
        ),
        age(b, now),
        users.join(", "),
        groups.join(", "),
        sas.join(", "),
    ]
}

pub(super) static LEASE_COLUMNS: &[Column] =
    &[NAME, col("Holder", "string", docs::LEASE_HOLDER), AGE];

pub(super) fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name(lease),
        str_at(lease, &["spec", "holderIdentity"]),
        age(lease, now)
    ]
}

pub(super) static WEBHOOK_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

pub(super) fn webhook_cells(cfg: &Value, now: Timestamp) -> Vec<Value> {
    row![name(cfg), len_at(cfg, &["webhooks"]), age(cfg, now)]
}

pub(super) static CSR_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "string", docs::CSR_SIGNER_NAME),
    col("Requestor", "string", docs::CSR_REQUEST),
    col("RequestedDuration", "string", docs::CSR_EXPIRATION_SECONDS),
    col("Condition", "string", docs::CSR_CONDITIONS),
];

/// Denied beats Approved beats Pending; ",Failed" and ",Issued" are appended.
fn csr_condition(csr: &Value) -> String {
    let conditions = arr_at(csr, &["status", "conditions"]);
    let has = |t: &str| conditions.iter().any(|c| str_at(c, &["type"]) == t);
    let mut status = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

pub(super) fn csr_cells(csr: &Value, now: Timestamp) -> Vec<Value> {
    let signer = match str_at(csr, &["spec", "signerName"]) {
        "" => "<none>",
        s => s,
    };
    let requested = opt_int(csr, &["spec", "expirationSeconds"])
        .map(|s| human_nanos(s.saturating_mul(1_000_000_000)))
        .unwrap_or_else(|| "<none>".into());
    row![
        name(csr),
        age(csr, now),
        signer,
        str_at(csr, &["spec", "username"]),
        requested,
        csr_condition(csr),
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
    fn pdb() {
        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            pdb_cells(&pdb, now())[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        let pdb = json!({"spec": {"maxUnavailable": 1}});
        assert_eq!(
            pdb_cells(&pdb, now())[1..4],
            [json!("N/A"), json!("1"), json!(0)]
        );
    }

    #[test]
    fn bindings() {
        let rb = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]});
        assert_eq!(
            binding_cells(&rb, now())[1..6],
            [
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("devs"),
                json!("tools/ci")
            ]
        );
    }

    #[test]
    fn csr() {
        let csr = json!({"spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "admin",
                                  "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}});
        assert_eq!(
            csr_cells(&csr, now())[2..6],
            [
                json!("kubernetes.io/kube-apiserver-client"),
                json!("admin"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        assert_eq!(csr_cells(&json!({}), now())[5], "Pending");
    }

    #[test]
    fn priority_class() {
        let pc = json!({"metadata": {"name": "high"}, "value": 1000000, "globalDefault": true});
        assert_eq!(
            priority_class_cells(&pc, now()),
            vec![
                json!("high"),
                json!(1000000),
                json!(true),
                json!("<unknown>"),
                json!("PreemptLowerPriority")
            ]
        );
    }
}
