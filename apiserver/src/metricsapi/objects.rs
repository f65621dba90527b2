//! The metrics.k8s.io/v1beta1 objects as metrics-server writes them:
//! `NodeMetrics` (timestamp, window, usage{cpu, memory}) and `PodMetrics`
//! (timestamp, window, containers[{name, usage}]), their lists, and the
//! Table of either (Name, cpu, memory, Window — a pod's usage summed over
//! its containers).

use super::format;
use super::store::{PodUsage, Usage};
use crate::http::output::{partial_metadata, IncludeObject};
use serde_json::{json, Map, Value};

pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

fn usage(cpu_nanocores: u64, memory: u64) -> Value {
    json!({"cpu": format::cpu(cpu_nanocores), "memory": format::memory(memory)})
}

/// Metadata from the node or pod the metrics are of: name, namespace,
/// labels, and now as the creation time.
fn metadata(of: &Value) -> Value {
    let mut md = Map::new();
    md.insert("name".into(), json!(crate::meta::name(of)));
    if let Some(ns) = crate::meta::namespace(of) {
        md.insert("namespace".into(), json!(ns));
    }
    md.insert(
        "creationTimestamp".into(),
        json!(crate::meta::now_rfc3339()),
    );
    if let Some(l) = of.pointer("/metadata/labels").filter(|l| l.is_object()) {
        md.insert("labels".into(), l.clone());
    }
    Value::Object(md)
}

pub fn node_metrics(node: &Value, u: &Usage) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node),
        "timestamp": format::time(u.timestamp_ms),
        "window": format::go_duration(u.window),
        "usage": usage(u.cpu_nanocores, u.memory),
    })
}

pub fn pod_metrics(pod: &Value, u: &PodUsage) -> Value {
    let containers: Vec<Value> = u
        .containers
        .iter()
        .map(|(name, c)| json!({"name": name, "usage": usage(c.cpu_nanocores, c.memory)}))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod),
        "timestamp": format::time(u.timestamp_ms),
        "window": format::go_duration(u.window),
        "containers": containers,
    })
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

/// One metrics object with its usage in numbers (a pod's summed over its containers).
pub struct Item {
    pub object: Value,
    pub cpu_nanocores: u64,
    pub memory: u64,
}

impl Item {
    pub fn node(node: &Value, u: &Usage) -> Item {
        Item {
            object: node_metrics(node, u),
            cpu_nanocores: u.cpu_nanocores,
            memory: u.memory,
        }
    }

    pub fn pod(pod: &Value, u: &PodUsage) -> Item {
        Item {
            object: pod_metrics(pod, u),
            cpu_nanocores: u.containers.iter().map(|(_, c)| c.cpu_nanocores).sum(),
            memory: u.containers.iter().map(|(_, c)| c.memory).sum(),
        }
    }
}

/// A Table of metrics objects, as metrics-server's table convertor makes it.
pub fn table(items: &[Item], include: IncludeObject) -> Value {
    let col = |name: &str, format: &str, description: &str| json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0});
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            let o = &i.object;
            let (cpu, mem) = (format::cpu(i.cpu_nanocores), format::memory(i.memory));
            let mut row = json!({"cells": [crate::meta::name(o), cpu, mem, o["window"]]});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            col("Name", "name", "Name of the resource"),
            col("cpu", "quantity", ""),
            col("memory", "quantity", ""),
            col("Window", "duration", ""),
        ],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn objects_as_metrics_server_writes_them() {
        let node = json!({"metadata": {"name": "n1", "labels": {"a": "b"}, "uid": "x"}});
        let u = Usage {
            cpu_nanocores: 250_000_000,
            memory: 512 << 20,
            timestamp_ms: 1_700_000_000_000,
            window: Duration::from_millis(15_012),
        };
        let item = Item::node(&node, &u);
        let m = item.object.clone();
        assert_eq!(m["kind"], "NodeMetrics");
        assert_eq!(m["metadata"]["name"], "n1");
        assert_eq!(m["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(m["metadata"].get("uid"), None);
        assert_eq!(m["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(m["window"], "15.012s");
        assert_eq!(m["usage"], json!({"cpu": "250m", "memory": "512Mi"}));

        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}});
        let pu = PodUsage {
            containers: vec![
                ("a".into(), u),
                (
                    "b".into(),
                    Usage {
                        cpu_nanocores: 1_234,
                        memory: 4096,
                        ..u
                    },
                ),
            ],
            timestamp_ms: u.timestamp_ms,
            window: u.window,
        };
        let pod_item = Item::pod(&pod, &pu);
        let p = pod_item.object.clone();
        assert_eq!(p["metadata"]["namespace"], "ns");
        assert_eq!(
            p["containers"][1],
            json!({"name": "b", "usage": {"cpu": "1234n", "memory": "4Ki"}})
        );
        let t = table(&[item, pod_item], IncludeObject::None);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["n1", "250m", "512Mi", "15.012s"])
        );
        assert_eq!(t["rows"][1]["cells"][1], "250001234n");
        assert_eq!(t["rows"][1]["cells"][2], format::memory((512 << 20) + 4096));
        assert_eq!(list("PodMetrics", vec![])["kind"], "PodMetricsList");
    }
}
