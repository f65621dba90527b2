//! Scheme defaults for the fields printers read.
//!
//! Upstream prints objects after API defaulting, so these fields are never
//! absent there. Applying the same constant defaults keeps a sparse object
//! (e.g. one stored before defaulting) printing what kube-apiserver would.

use serde_json::Value;

use super::fields::{opt_bool, opt_int, opt_str, str_at};

/// `spec.replicas` of Deployment, ReplicaSet, StatefulSet, ReplicationController.
pub(super) fn replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

/// Service and endpoint port protocol.
pub(super) fn protocol(port: &Value) -> &str {
    non_empty(str_at(port, &["protocol"]), "TCP")
}

pub(super) fn service_type(svc: &Value) -> &str {
    non_empty(str_at(svc, &["spec", "type"]), "ClusterIP")
}

pub(super) fn namespace_phase(ns: &Value) -> &str {
    non_empty(str_at(ns, &["status", "phase"]), "Active")
}

pub(super) fn secret_type(secret: &Value) -> &str {
    non_empty(str_at(secret, &["type"]), "Opaque")
}

/// PersistentVolume and PersistentVolumeClaim phase.
pub(super) fn phase_or_pending(obj: &Value) -> &str {
    non_empty(str_at(obj, &["status", "phase"]), "Pending")
}

pub(super) fn pv_reclaim_policy(pv: &Value) -> &str {
    non_empty(
        str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]),
        "Retain",
    )
}

/// PersistentVolume and PersistentVolumeClaim `spec.volumeMode`.
pub(super) fn volume_mode(obj: &Value) -> &str {
    opt_str(obj, &["spec", "volumeMode"]).unwrap_or("Filesystem")
}

/// CronJob `spec.suspend`.
pub(super) fn suspend(cj: &Value) -> bool {
    opt_bool(cj, &["spec", "suspend"]).unwrap_or(false)
}

/// HorizontalPodAutoscaler `spec.minReplicas`.
pub(super) fn min_replicas(hpa: &Value) -> i64 {
    opt_int(hpa, &["spec", "minReplicas"]).unwrap_or(1)
}

/// PriorityClass `preemptionPolicy`.
pub(super) fn preemption_policy(pc: &Value) -> &str {
    opt_str(pc, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority")
}

fn non_empty<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() {
        default
    } else {
        s
    }
}
