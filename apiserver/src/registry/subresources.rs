//! Subresources whose body is not the parent kind: `scale` (autoscaling/v1
//! Scale), `pods/binding` and `pods/eviction`.

use super::{DeleteOptions, Part, Registry, WriteOptions};
use crate::error::{ApiError, Cause};
use crate::meta;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;
use skiff_machinery::labels::{Requirement, Selector};

/// The Scale view of a workload.
pub fn to_scale(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| {
            Selector::from_label_selector(s)
                .map(|s| selector_string(&s))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// A selector in its string form, as Scale.status.selector carries it.
pub fn selector_string(s: &Selector) -> String {
    let mut parts: Vec<String> = s
        .requirements
        .iter()
        .map(|r| match r {
            Requirement::Equals(k, v) => format!("{k}={v}"),
            Requirement::NotEquals(k, v) => format!("{k}!={v}"),
            Requirement::In(k, vs) => format!(
                "{k} in ({})",
                vs.iter().cloned().collect::<Vec<_>>().join(",")
            ),
            Requirement::NotIn(k, vs) => format!(
                "{k} notin ({})",
                vs.iter().cloned().collect::<Vec<_>>().join(",")
            ),
            Requirement::Exists(k) => k.clone(),
            Requirement::DoesNotExist(k) => format!("!{k}"),
            Requirement::Gt(k, n) => format!("{k}>{n}"),
            Requirement::Lt(k, n) => format!("{k}<{n}"),
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// Writes a Scale back to its workload: only spec.replicas changes.
pub async fn update_scale(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    opts: &WriteOptions,
    mut make_scale: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let updated = reg
        .update_with(res, ns, name, Part::Main, opts, "Update", |cur| {
            let scale = make_scale(&to_scale(cur))?;
            let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
            if replicas.as_i64().is_none_or(|n| n < 0) {
                return Err(ApiError::invalid(
                    res,
                    name,
                    vec![Cause::invalid(
                        "spec.replicas",
                        &replicas,
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut next = cur.clone();
            if let Some(rv) = meta::resource_version(&scale) {
                meta::set_resource_version(&mut next, rv.parse().unwrap_or(-1));
            } else if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            next["spec"]["replicas"] = replicas;
            Ok(next)
        })
        .await?;
    Ok(to_scale(&updated))
}

/// Binds a pod to a node (what a scheduler does): sets spec.nodeName once.
pub async fn bind(
    reg: &Registry,
    pods: &Resource,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            pods,
            name,
            vec![Cause::required("target.name")],
        ));
    }
    reg.update_with(pods, ns, name, Part::Main, opts, "Update", |cur| {
        if meta::deletion_timestamp(cur).is_some() {
            return Err(ApiError::conflict(pods, name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(existing) = cur.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(pods, name, &format!("pod {name} is already assigned to node {existing:?}")));
        }
        let mut next = cur.clone();
        if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        next["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = next.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
        next["status"]["conditions"] = json!(conditions);
        Ok(next)
    })
    .await
    .map(|_| success_status())
}

/// Evicts a pod: a delete with the eviction's options (disruption budgets are
/// checked by the disruption controller's issue; none block here yet).
pub async fn evict(
    reg: &Registry,
    pods: &Resource,
    ns: Option<&str>,
    name: &str,
    eviction: &Value,
) -> Result<Value, ApiError> {
    let opts = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let del = DeleteOptions {
        grace_period_seconds: opts.get("gracePeriodSeconds").and_then(Value::as_i64),
        propagation_policy: opts
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_uid: opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_resource_version: opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: false,
    };
    reg.delete(pods, ns, name, &del).await?;
    Ok(success_status())
}

pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}
