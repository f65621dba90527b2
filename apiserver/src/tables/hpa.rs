//! HorizontalPodAutoscalers: upstream `printHorizontalPodAutoscaler` and
//! `formatHPAMetrics` (v1.33).
//!
//! Upstream prints the internal (v2-shaped) object. autoscaling/v2 JSON maps
//! directly; autoscaling/v1 JSON is lifted the way the v1 conversion does:
//! `targetCPUUtilizationPercentage` becomes a cpu utilization metric and
//! `currentCPUUtilizationPercentage` its current value.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::defaults;
use super::docs;
use super::fields::{arr_at, at, int_at, name, opt_int, quantity, str_at};
use super::time::age;
use super::{col, Column, AGE, NAME};

pub(super) static HPA_COLUMNS: &[Column] = &[
    NAME,
    col("Reference", "string", docs::HPA_REFERENCE),
    col("Targets", "string", docs::HPA_METRICS),
    col("MinPods", "string", docs::HPA_MIN),
    col("MaxPods", "string", docs::HPA_MAX),
    col("Replicas", "string", docs::HPA_CURRENT),
    AGE,
];

/// Spec metrics and status metrics in the v2 shape.
fn metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    let specs = arr_at(hpa, &["spec", "metrics"]).to_vec();
    let statuses = arr_at(hpa, &["status", "currentMetrics"]).to_vec();
    if !specs.is_empty() || !statuses.is_empty() {
        return (specs, statuses);
    }
    let cpu_spec = opt_int(hpa, &["spec", "targetCPUUtilizationPercentage"]).map(|t| {
        json!({"type": "Resource", "resource": {"name": "cpu",
               "target": {"type": "Utilization", "averageUtilization": t}}})
    });
    let cpu_status = opt_int(hpa, &["status", "currentCPUUtilizationPercentage"]).map(|c| {
        json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}})
    });
    (
        cpu_spec.into_iter().collect(),
        cpu_status.into_iter().collect(),
    )
}

/// A `*Quantity` as Go prints it: "<nil>" when unset.
fn q(v: &Value, path: &[&str]) -> String {
    quantity(at(v, path).filter(|x| !x.is_null()), "<nil>")
}

/// The status entry at `i` if it has the `source` member set.
fn status_source<'a>(statuses: &'a [Value], i: usize, source: &str) -> Option<&'a Value> {
    statuses.get(i)?.get(source).filter(|s| !s.is_null())
}

fn format_metric(spec: &Value, statuses: &[Value], i: usize) -> String {
    const UNKNOWN: &str = "<unknown>";
    let has = |v: &Value, path: &[&str]| at(v, path).is_some_and(|x| !x.is_null());
    match str_at(spec, &["type"]) {
        source @ ("External" | "Object") => {
            let key = if source == "External" {
                "external"
            } else {
                "object"
            };
            let s = spec.get(key).unwrap_or(&Value::Null);
            let st = status_source(statuses, i, key);
            if has(s, &["target", "averageValue"]) {
                let current = st
                    .filter(|st| has(st, &["current", "averageValue"]))
                    .map(|st| q(st, &["current", "averageValue"]))
                    .unwrap_or_else(|| UNKNOWN.into());
                format!("{current}/{} (avg)", q(s, &["target", "averageValue"]))
            } else {
                let current = st
                    .map(|st| q(st, &["current", "value"]))
                    .unwrap_or_else(|| UNKNOWN.into());
                format!("{current}/{}", q(s, &["target", "value"]))
            }
        }
        "Pods" => {
            let current = status_source(statuses, i, "pods")
                .map(|st| q(st, &["current", "averageValue"]))
                .unwrap_or_else(|| UNKNOWN.into());
            format!("{current}/{}", q(spec, &["pods", "target", "averageValue"]))
        }
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let s = spec.get(key).unwrap_or(&Value::Null);
            let st = status_source(statuses, i, key);
            let resource = str_at(s, &["name"]);
            if has(s, &["target", "averageValue"]) {
                let current = st
                    .map(|st| q(st, &["current", "averageValue"]))
                    .unwrap_or_else(|| UNKNOWN.into());
                format!(
                    "{resource}: {current}/{}",
                    q(s, &["target", "averageValue"])
                )
            } else {
                let current = st
                    .and_then(|st| opt_int(st, &["current", "averageUtilization"]))
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(|| UNKNOWN.into());
                let target = opt_int(s, &["target", "averageUtilization"])
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(|| "<auto>".into());
                format!("{resource}: {current}/{target}")
            }
        }
        _ => "<unknown type>".into(),
    }
}

/// Up to two metrics, then " + N more..."; "<none>" without metrics.
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".into();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| format_metric(s, statuses, i))
        .collect();
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

pub(super) fn hpa_cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let (specs, statuses) = metrics(hpa);
    let reference = format!(
        "{}/{}",
        str_at(hpa, &["spec", "scaleTargetRef", "kind"]),
        str_at(hpa, &["spec", "scaleTargetRef", "name"])
    );
    row![
        name(hpa),
        reference,
        format_metrics(&specs, &statuses),
        defaults::min_replicas(hpa).to_string(),
        int_at(hpa, &["spec", "maxReplicas"]),
        int_at(hpa, &["status", "currentReplicas"]),
        age(hpa, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn v2_metrics() {
        let hpa = json!({"metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Pods", "pods": {"target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Object", "object": {"target": {"type": "Value", "value": "10"}}}]},
            "status": {"currentReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}]}});
        assert_eq!(
            hpa_cells(&hpa, now())[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 45%/80%, <unknown>/1k + 1 more..."),
                json!("2"),
                json!(10),
                json!(3)
            ]
        );
    }

    #[test]
    fn v1_and_empty() {
        let v1 = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 50}, "status": {"currentCPUUtilizationPercentage": 12}});
        assert_eq!(
            hpa_cells(&v1, now())[2..4],
            [json!("cpu: 12%/50%"), json!("1")]
        );
        let none = json!({"spec": {}});
        assert_eq!(hpa_cells(&none, now())[2], "<none>");
        let avg = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "memory", "target": {"averageValue": "500Mi"}}},
            {"type": "External", "external": {"target": {"averageValue": "30"}}}]}});
        assert_eq!(
            hpa_cells(&avg, now())[2],
            "memory: <unknown>/500Mi, <unknown>/30 (avg)"
        );
    }
}
