//! kubelet's Summary API (`GET /stats/summary`, stats/v1alpha1): the node
//! (cpu, memory, the data filesystem as `fs` and `runtime.imageFs`) and
//! every pod with running containers (`podRef`, cpu, memory, and each
//! container's). Cumulative values and the rates of the latest background
//! sample; `only_cpu_and_memory` leaves out the filesystems, as kubelet's
//! query parameter of that name does.

use super::cgroup::{Memory, Usage};
use super::node::Fs;
use super::rate::Rates;
use super::sample::Sample;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};

/// Time as the API writes it (RFC 3339, seconds).
fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn cpu(t: &str, cumulative: Option<u64>, rate: Option<u64>) -> Option<Value> {
    let cumulative = cumulative?;
    let mut v = json!({"time": t, "usageCoreNanoSeconds": cumulative});
    if let Some(r) = rate {
        v["usageNanoCores"] = json!(r);
    }
    Some(v)
}

fn memory(t: &str, m: Option<Memory>, available: Option<u64>) -> Option<Value> {
    let m = m?;
    let mut v = Map::new();
    v.insert("time".into(), json!(t));
    if let Some(a) = available.or(m.limit.map(|l| l.saturating_sub(m.working_set))) {
        v.insert("availableBytes".into(), json!(a));
    }
    v.insert("usageBytes".into(), json!(m.usage));
    v.insert("workingSetBytes".into(), json!(m.working_set));
    v.insert("rssBytes".into(), json!(m.rss));
    v.insert("pageFaults".into(), json!(m.page_faults));
    v.insert("majorPageFaults".into(), json!(m.major_page_faults));
    Some(Value::Object(v))
}

fn fs(t: &str, f: &Fs) -> Value {
    json!({
        "time": t,
        "availableBytes": f.available,
        "capacityBytes": f.capacity,
        "usedBytes": f.used,
        "inodesFree": f.inodes_free,
        "inodes": f.inodes,
        "inodesUsed": f.inodes.saturating_sub(f.inodes_free),
    })
}

/// Adds `cpu` and `memory` of `usage` to `obj`, when known.
fn usage(obj: &mut Value, t: &str, usage: &Usage, rate: Option<u64>) {
    if let Some(c) = cpu(t, usage.cpu_ns, rate) {
        obj["cpu"] = c;
    }
    if let Some(m) = memory(t, usage.memory, None) {
        obj["memory"] = m;
    }
}

/// The summary of `sample` for node `node_name`.
pub fn render(node_name: &str, sample: &Sample, rates: &Rates, only_cpu_and_memory: bool) -> Value {
    let t = time(sample.time);
    let n = &sample.node;
    let mut node = json!({"nodeName": node_name});
    if let Some(boot) = n.boot {
        node["startTime"] = json!(time(boot));
    }
    if let Some(c) = cpu(&t, n.cpu_ns, rates.node) {
        node["cpu"] = c;
    }
    if let Some(m) = n
        .memory
        .and_then(|m| memory(&t, Some(m.memory), Some(m.available)))
    {
        node["memory"] = m;
    }
    if let (false, Some(f)) = (only_cpu_and_memory, &n.fs) {
        node["fs"] = fs(&t, f);
        node["runtime"] = json!({"imageFs": fs(&t, f)});
    }
    let pods: Vec<Value> = sample
        .pods
        .values()
        .map(|p| {
            let mut pod = json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
            });
            if let Some(s) = p.start {
                pod["startTime"] = json!(time(s));
            }
            let containers: Vec<Value> = p
                .containers
                .values()
                .map(|c| {
                    let mut v = json!({"name": c.name});
                    if let Some(s) = c.start {
                        v["startTime"] = json!(time(s));
                    }
                    usage(&mut v, &t, &c.usage, rates.containers.get(&c.id).copied());
                    v
                })
                .collect();
            pod["containers"] = json!(containers);
            usage(&mut pod, &t, &p.usage, rates.pods.get(&p.uid).copied());
            pod
        })
        .collect();
    json!({"node": node, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::super::node::NodeMemory;
    use super::super::sample::{ContainerSample, NodeSample, PodSample};
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn summary_shape() {
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let mem = Memory {
            usage: 4096,
            working_set: 2048,
            rss: 1024,
            limit: Some(8192),
            ..Memory::default()
        };
        let usage = Usage {
            cpu_ns: Some(7),
            memory: Some(mem),
        };
        let mut containers = BTreeMap::new();
        containers.insert(
            "c".to_string(),
            ContainerSample {
                id: "id".into(),
                name: "c".into(),
                start: Some(at),
                usage,
            },
        );
        let mut pods = BTreeMap::new();
        pods.insert(
            "u".to_string(),
            PodSample {
                uid: "u".into(),
                name: "p".into(),
                namespace: "ns".into(),
                start: Some(at),
                usage,
                containers,
            },
        );
        let sample = Sample {
            time: at,
            node: NodeSample {
                cpu_ns: Some(99),
                memory: Some(NodeMemory {
                    memory: mem,
                    available: 100,
                }),
                boot: Some(at),
                fs: Some(Fs {
                    capacity: 10,
                    available: 4,
                    used: 6,
                    inodes: 5,
                    inodes_free: 3,
                }),
            },
            pods,
        };
        let mut rates = Rates {
            node: Some(5),
            ..Rates::default()
        };
        rates.containers.insert("id".into(), 3);
        let v = render("n1", &sample, &rates, false);
        let t = "2023-11-14T22:13:20Z";
        assert_eq!(v["node"]["nodeName"], "n1");
        assert_eq!(
            v["node"]["cpu"],
            json!({"time": t, "usageCoreNanoSeconds": 99, "usageNanoCores": 5})
        );
        assert_eq!(v["node"]["memory"]["availableBytes"], 100);
        assert_eq!(v["node"]["fs"]["inodesUsed"], 2);
        assert_eq!(v["node"]["runtime"]["imageFs"]["capacityBytes"], 10);
        let pod = &v["pods"][0];
        assert_eq!(
            pod["podRef"],
            json!({"name": "p", "namespace": "ns", "uid": "u"})
        );
        assert_eq!(pod["cpu"].get("usageNanoCores"), None, "no rate yet");
        let c = &pod["containers"][0];
        assert_eq!(
            (c["name"].as_str(), c["startTime"].as_str()),
            (Some("c"), Some(t))
        );
        assert_eq!(c["cpu"]["usageNanoCores"], 3);
        assert_eq!(c["memory"]["workingSetBytes"], 2048);
        assert_eq!(
            c["memory"]["availableBytes"],
            8192 - 2048,
            "limit less working set"
        );
        let small = render("n1", &sample, &rates, true);
        assert_eq!(small["node"].get("fs"), None);
    }
}
