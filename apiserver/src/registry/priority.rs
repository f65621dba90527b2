//! Priority admission: a pod's `priorityClassName` becomes its
//! `spec.priority` and `spec.preemptionPolicy`, as upstream's Priority
//! admission plugin does; a pod naming no class gets the `globalDefault`
//! one, else priority 0. The scheduler orders and preempts by these numbers.

use super::Registry;
use crate::error::ApiError;
use crate::meta;
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource};

/// The classes every cluster has (created at start-up, as upstream's API
/// server does): name, value, description.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

fn classes() -> &'static Resource {
    catalog::lookup("scheduling.k8s.io", "v1", "priorityclasses").expect("catalog")
}

/// The system classes as objects, for start-up.
pub fn system_class_objects() -> impl Iterator<Item = Value> {
    SYSTEM_CLASSES.iter().map(|(name, value, description)| {
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        })
    })
}

pub fn admit(reg: &Registry, pod: &mut Value) -> Result<(), ApiError> {
    let pod_name = meta::name(pod).to_string();
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("pod has no spec"))?;
    let named = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let cache = reg.cache(classes());
    let class = match &named {
        Some(name) => Some(
            cache
                .get(&classes().key(None, name))
                .map(|e| e.object())
                .ok_or_else(|| {
                    ApiError::forbidden(format!(
                        "pods \"{pod_name}\" is forbidden: no PriorityClass with name {name} was found"
                    ))
                })?,
        ),
        // The oldest global default wins when several claim it, as upstream.
        None => cache
            .list(&classes().key_prefix())
            .0
            .iter()
            .map(|e| e.object())
            .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by(|a, b| {
                let created = |c: &Value| {
                    c.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                created(a).cmp(&created(b))
            }),
    };
    let (value, policy) = match &class {
        Some(c) => (
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string()),
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != value {
            return Err(ApiError::forbidden(format!(
                "pods \"{pod_name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            )));
        }
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        if given != policy {
            return Err(ApiError::forbidden(format!(
                "pods \"{pod_name}\" is forbidden: the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
    }
    if let (None, Some(c)) = (&named, &class) {
        spec.insert("priorityClassName".into(), json!(meta::name(c)));
    }
    spec.insert("priority".into(), json!(value));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}
