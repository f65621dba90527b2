//! Versions that share storage: events.k8s.io/v1 Events are stored as core/v1
//! Events, autoscaling/v1 HorizontalPodAutoscalers as autoscaling/v2 (the
//! storage versions upstream uses). Requests in the other version are
//! converted on the way in and out, as upstream's conversion functions do.

use serde_json::{json, Map, Value};
use skiff_machinery::catalog::Resource;
use skiff_machinery::fields;

pub use skiff_machinery::catalog::storage_resource;

/// A custom resource's versions differ only in `apiVersion` (conversion
/// strategy None, the only one served).
fn custom_version(res: &Resource, obj: Value, to: &Resource) -> Value {
    crate::meta::with_type(obj, &to.api_version(), res.kind)
}

/// Request version → storage version.
pub fn to_storage(res: &'static Resource, obj: Value) -> Value {
    if res.custom.is_some() {
        return custom_version(res, obj, storage_resource(res));
    }
    match (res.group, res.version, res.plural) {
        ("events.k8s.io", "v1", "events") => rename(obj, EVENT_FIELDS, false, "v1", "Event"),
        ("autoscaling", "v1", "horizontalpodautoscalers") => hpa_v1_to_v2(obj),
        _ => obj,
    }
}

/// Storage version → request version.
pub fn from_storage(res: &Resource, obj: Value) -> Value {
    if res.custom.is_some() {
        return custom_version(res, obj, res);
    }
    match (res.group, res.version, res.plural) {
        ("events.k8s.io", "v1", "events") => {
            rename(obj, EVENT_FIELDS, true, "events.k8s.io/v1", "Event")
        }
        ("autoscaling", "v1", "horizontalpodautoscalers") => hpa_v2_to_v1(obj),
        _ => obj,
    }
}

/// Field selectors name the request version's fields; the cache indexes the stored ones.
pub fn field_selector_to_storage(res: &Resource, mut sel: fields::Selector) -> fields::Selector {
    if (res.group, res.plural) == ("events.k8s.io", "events") {
        for r in &mut sel.requirements {
            if let Some(rest) = r.field.strip_prefix("regarding.") {
                r.field = format!("involvedObject.{rest}");
            } else if r.field == "reportingController" {
                r.field = "reportingComponent".into();
            }
        }
    }
    sel
}

/// (core/v1 name, events.k8s.io/v1 name)
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(
    obj: Value,
    pairs: &[(&str, &str)],
    core_to_events: bool,
    api_version: &str,
    kind: &str,
) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    for (core, events) in pairs {
        let (from, to) = if core_to_events {
            (core, events)
        } else {
            (events, core)
        };
        if let Some(v) = m.remove(*from) {
            m.insert((*to).to_string(), v);
        }
    }
    crate::meta::with_type(Value::Object(m), api_version, kind)
}

fn hpa_v1_to_v2(obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    if let Some(Value::Object(spec)) = m.get_mut("spec") {
        if let Some(target) = spec.remove("targetCPUUtilizationPercentage") {
            spec.insert(
                "metrics".into(),
                json!([cpu_metric(
                    "target",
                    json!({"type": "Utilization", "averageUtilization": target})
                )]),
            );
        }
    }
    if let Some(Value::Object(status)) = m.get_mut("status") {
        if let Some(current) = status.remove("currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([cpu_metric(
                    "current",
                    json!({"averageUtilization": current})
                )]),
            );
        }
    }
    crate::meta::with_type(
        Value::Object(m),
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    )
}

fn cpu_metric(key: &str, value: Value) -> Value {
    let mut resource = Map::new();
    resource.insert("name".into(), json!("cpu"));
    resource.insert(key.into(), value);
    json!({"type": "Resource", "resource": resource})
}

/// The CPU utilization of a v2 metric list (`target` or `current` side).
fn cpu_utilization(metrics: Option<&Value>, side: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let r = m.get("resource")?;
        (m.get("type")?.as_str()? == "Resource" && r.get("name")?.as_str()? == "cpu")
            .then(|| r.get(side)?.get("averageUtilization").cloned())
            .flatten()
    })
}

fn hpa_v2_to_v1(obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    if let Some(Value::Object(spec)) = m.get_mut("spec") {
        let cpu = cpu_utilization(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(cpu) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), cpu);
        }
    }
    if let Some(Value::Object(status)) = m.get_mut("status") {
        let cpu = cpu_utilization(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(cpu) = cpu {
            status.insert("currentCPUUtilizationPercentage".into(), cpu);
        }
    }
    crate::meta::with_type(
        Value::Object(m),
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_machinery::catalog;

    #[test]
    fn events_round_trip() {
        let res = catalog::lookup("events.k8s.io", "v1", "events").unwrap();
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "Started", "reportingController": "skiff", "deprecatedCount": 2});
        let core = to_storage(res, ev.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["count"], 2);
        assert_eq!(from_storage(res, core), ev);
    }

    #[test]
    fn hpa_round_trip() {
        let res = catalog::lookup("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}});
        let v2 = to_storage(res, v1.clone());
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(from_storage(res, v2), v1);
    }

    #[test]
    fn selectors_follow() {
        let res = catalog::lookup("events.k8s.io", "v1", "events").unwrap();
        let sel =
            field_selector_to_storage(res, fields::Selector::parse("regarding.name=p").unwrap());
        assert_eq!(sel.requirements[0].field, "involvedObject.name");
    }
}
