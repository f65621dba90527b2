//! Subresources whose body is not the parent kind: `scale` (autoscaling/v1
//! Scale), `pods/binding` and `pods/eviction`.

use super::{DeleteOptions, Part, Registry, WriteOptions};
use crate::error::{ApiError, Cause};
use crate::meta;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;
use skiff_machinery::labels::{Requirement, Selector};

/// Where a custom resource keeps what its Scale shows: JSON pointers of its
/// CRD's `specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`.
struct ScalePaths {
    spec: String,
    status: Option<String>,
    selector: Option<String>,
}

fn custom_scale_paths(res: &Resource) -> Option<ScalePaths> {
    let pointer = |key: &str| crate::crd::scale_pointer(res, key);
    Some(ScalePaths {
        spec: pointer("specReplicasPath")?,
        status: pointer("statusReplicasPath"),
        selector: pointer("labelSelectorPath"),
    })
}

/// The Scale view of a workload, or of a custom resource through the paths
/// its CRD names (a missing count reads as 0 there, as upstream).
pub fn to_scale(res: &Resource, obj: &Value) -> Value {
    let (spec_replicas, status_replicas, selector) = match custom_scale_paths(res) {
        Some(paths) => {
            let at = |p: &Option<String>| p.as_deref().and_then(|p| obj.pointer(p));
            (
                obj.pointer(&paths.spec).cloned().unwrap_or(json!(0)),
                at(&paths.status).cloned().unwrap_or(json!(0)),
                at(&paths.selector)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        }
        None => (
            obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1)),
            obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            obj.pointer("/spec/selector")
                .map(|s| {
                    Selector::from_label_selector(s)
                        .map(|s| selector_string(&s))
                        .unwrap_or_default()
                })
                .unwrap_or_default(),
        ),
    };
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
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": selector},
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
            let scale = make_scale(&to_scale(res, cur))?;
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
            } else {
                meta::clear_resource_version(&mut next);
            }
            match custom_scale_paths(res) {
                Some(paths) => set_pointer(&mut next, &paths.spec, replicas),
                None => next["spec"]["replicas"] = replicas,
            }
            Ok(next)
        })
        .await?;
    Ok(to_scale(res, &updated))
}

/// Sets the value at a JSON pointer, making the objects on the way.
fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let mut at = obj;
    for key in pointer.trim_start_matches('/').split('/') {
        if !at.is_object() {
            *at = json!({});
        }
        at = &mut at[key];
    }
    *at = value;
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
        meta::clear_resource_version(&mut next);
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

/// Evicts a pod, as upstream's eviction subresource: a pod that is finished
/// goes at once; otherwise the one PodDisruptionBudget selecting it must allow
/// a disruption, which the eviction takes (status.disruptionsAllowed - 1,
/// the pod noted in disruptedPods) before the pod is deleted. No budget left
/// is a 429 the client retries, as kubectl drain does.
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
        dry_run: opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All")),
    };
    let pod = reg.get(pods, ns, name).await?;
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !finished && meta::deletion_timestamp(&pod).is_none() {
        // A concurrent eviction took the budget's version: read it again and
        // decide again, as upstream retries on conflict.
        let mut attempts = 0;
        loop {
            match take_disruption(reg, &pod, del.dry_run).await {
                Err(e) if e.code == 409 && attempts < 5 => attempts += 1,
                other => break other?,
            }
        }
    }
    reg.delete(pods, ns, name, &del).await?;
    Ok(success_status())
}

async fn take_disruption(reg: &Registry, pod: &Value, dry_run: bool) -> Result<(), ApiError> {
    let pdbs =
        skiff_machinery::catalog::lookup("policy", "v1", "poddisruptionbudgets").expect("catalog");
    let ns = meta::namespace(pod).unwrap_or("default").to_string();
    let pod_name = meta::name(pod).to_string();
    let list = reg.list(pdbs, Some(&ns), &Default::default()).await?;
    let matching: Vec<Value> = list
        .items
        .iter()
        .map(|e| e.object())
        .filter(|b| {
            b.pointer("/spec/selector")
                .and_then(|s| Selector::from_label_selector(s).ok())
                .is_some_and(|s| !s.is_empty() && s.matches_object(pod))
        })
        .collect();
    let budget = match matching.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => return Err(ApiError::internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")),
    };
    let budget_name = meta::name(budget).to_string();
    let too_many = |why: String| {
        let mut e = ApiError::new(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        );
        e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": why}]}));
        e
    };
    let observed = budget
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let generation = budget
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed < generation {
        return Err(too_many(format!(
            "The disruption budget {budget_name} is still being processed by the server."
        )));
    }
    let allowed = budget
        .pointer("/status/disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if allowed <= 0 {
        let healthy = budget
            .pointer("/status/currentHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let desired = budget
            .pointer("/status/desiredHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return Err(too_many(format!(
            "The disruption budget {budget_name} needs {desired} healthy pods and has {healthy} currently"
        )));
    }
    if dry_run {
        return Ok(());
    }
    // Take one disruption, over the version read: a concurrent eviction makes this a 409 to retry.
    let opts = WriteOptions {
        field_manager: Some("skiff-apiserver".into()),
        ..Default::default()
    };
    let rv = meta::resource_version(budget).unwrap_or("").to_string();
    reg.update_with(
        pdbs,
        Some(&ns),
        &budget_name,
        Part::Status,
        &opts,
        "Update",
        |cur| {
            let mut next = cur.clone();
            meta::set_resource_version(&mut next, rv.parse().unwrap_or(-1));
            next["status"]["disruptionsAllowed"] = json!(allowed - 1);
            let mut disrupted = next
                .pointer("/status/disruptedPods")
                .cloned()
                .unwrap_or(json!({}));
            disrupted[pod_name.as_str()] = json!(meta::now_rfc3339());
            next["status"]["disruptedPods"] = disrupted;
            Ok(next)
        },
    )
    .await?;
    Ok(())
}

pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}
