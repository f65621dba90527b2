//! kubelet's resource metrics (`GET /metrics/resource`), the Prometheus
//! text metrics-server scrapes: cumulative cpu seconds and memory working
//! set of the node, each pod and each container, container start times,
//! and whether reading failed (`scrape_error`, `resource_scrape_error`).
//! Samples carry their time in milliseconds, as kubelet writes them.

use super::sample::Sample;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const NODE_CPU: Family = Family {
    name: "node_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    kind: "counter",
};
const NODE_MEMORY: Family = Family {
    name: "node_memory_working_set_bytes",
    help: "[STABLE] Current working set of the node in bytes",
    kind: "gauge",
};
const CONTAINER_START: Family = Family {
    name: "container_start_time_seconds",
    help: "[STABLE] Start time of the container since unix epoch in seconds",
    kind: "gauge",
};
const CONTAINER_CPU: Family = Family {
    name: "container_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    kind: "counter",
};
const CONTAINER_MEMORY: Family = Family {
    name: "container_memory_working_set_bytes",
    help: "[STABLE] Current working set of the container in bytes",
    kind: "gauge",
};
const POD_CPU: Family = Family {
    name: "pod_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    kind: "counter",
};
const POD_MEMORY: Family = Family {
    name: "pod_memory_working_set_bytes",
    help: "[STABLE] Current working set of the pod in bytes",
    kind: "gauge",
};
const SCRAPE_ERROR: Family = Family {
    name: "scrape_error",
    help: "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
    kind: "gauge",
};
const RESOURCE_SCRAPE_ERROR: Family = Family {
    name: "resource_scrape_error",
    help: "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    kind: "gauge",
};

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Seconds from nanoseconds, exactly as far as the digits go.
fn seconds(ns: u64) -> String {
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:09}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

/// The text for `sample`; `error` when reading the node failed.
pub fn render(sample: &Sample, error: bool) -> String {
    let ms = sample.time.as_millisecond();
    let mut out = String::new();
    let header = |out: &mut String, f: &Family| {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
    };
    // One family at a time, each with its HELP and TYPE once.
    header(&mut out, &CONTAINER_CPU);
    for p in sample.pods.values() {
        for c in p.containers.values() {
            if let Some(ns) = c.usage.cpu_ns {
                let _ = writeln!(
                    out,
                    "{}{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
                    CONTAINER_CPU.name,
                    escape(&c.name),
                    escape(&p.namespace),
                    escape(&p.name),
                    seconds(ns)
                );
            }
        }
    }
    header(&mut out, &CONTAINER_MEMORY);
    for p in sample.pods.values() {
        for c in p.containers.values() {
            if let Some(m) = c.usage.memory {
                let _ = writeln!(
                    out,
                    "{}{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
                    CONTAINER_MEMORY.name,
                    escape(&c.name),
                    escape(&p.namespace),
                    escape(&p.name),
                    m.working_set
                );
            }
        }
    }
    header(&mut out, &CONTAINER_START);
    for p in sample.pods.values() {
        for c in p.containers.values() {
            if let Some(s) = c.start {
                let _ = writeln!(
                    out,
                    "{}{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {}",
                    CONTAINER_START.name,
                    escape(&c.name),
                    escape(&p.namespace),
                    escape(&p.name),
                    seconds(u64::try_from(s.as_nanosecond()).unwrap_or(0))
                );
            }
        }
    }
    header(&mut out, &NODE_CPU);
    if let Some(ns) = sample.node.cpu_ns {
        let _ = writeln!(out, "{} {} {ms}", NODE_CPU.name, seconds(ns));
    }
    header(&mut out, &NODE_MEMORY);
    if let Some(m) = sample.node.memory {
        let _ = writeln!(out, "{} {} {ms}", NODE_MEMORY.name, m.memory.working_set);
    }
    header(&mut out, &POD_CPU);
    for p in sample.pods.values() {
        if let Some(ns) = p.usage.cpu_ns {
            let _ = writeln!(
                out,
                "{}{{namespace=\"{}\",pod=\"{}\"}} {} {ms}",
                POD_CPU.name,
                escape(&p.namespace),
                escape(&p.name),
                seconds(ns)
            );
        }
    }
    header(&mut out, &POD_MEMORY);
    for p in sample.pods.values() {
        if let Some(m) = p.usage.memory {
            let _ = writeln!(
                out,
                "{}{{namespace=\"{}\",pod=\"{}\"}} {} {ms}",
                POD_MEMORY.name,
                escape(&p.namespace),
                escape(&p.name),
                m.working_set
            );
        }
    }
    let err = u8::from(error);
    header(&mut out, &RESOURCE_SCRAPE_ERROR);
    let _ = writeln!(out, "{} {err}", RESOURCE_SCRAPE_ERROR.name);
    header(&mut out, &SCRAPE_ERROR);
    let _ = writeln!(out, "{} {err}", SCRAPE_ERROR.name);
    out
}

#[cfg(test)]
mod tests {
    use super::super::cgroup::{Memory, Usage};
    use super::super::node::NodeMemory;
    use super::super::sample::{ContainerSample, NodeSample, PodSample};
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeMap;

    #[test]
    fn seconds_keep_their_digits() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(3_000_000_000), "3");
        assert_eq!(seconds(1_500_000_001), "1.500000001");
        assert_eq!(seconds(250_000_000), "0.25");
    }

    #[test]
    fn text_as_kubelet_writes_it() {
        let at = Timestamp::from_millisecond(1_700_000_000_123).unwrap();
        let mem = |ws| Memory {
            usage: ws,
            working_set: ws,
            ..Memory::default()
        };
        let mut containers = BTreeMap::new();
        containers.insert(
            "web".to_string(),
            ContainerSample {
                id: "id".into(),
                name: "web".into(),
                start: Some(Timestamp::from_second(1_699_999_000).unwrap()),
                usage: Usage {
                    cpu_ns: Some(2_500_000_000),
                    memory: Some(mem(4096)),
                },
            },
        );
        let mut pods = BTreeMap::new();
        pods.insert(
            "u".to_string(),
            PodSample {
                uid: "u".into(),
                name: "p\"q".into(),
                namespace: "ns".into(),
                start: None,
                usage: Usage {
                    cpu_ns: Some(3_000_000_000),
                    memory: Some(mem(8192)),
                },
                containers,
            },
        );
        let sample = Sample {
            time: at,
            node: NodeSample {
                cpu_ns: Some(12_000_000_000),
                memory: Some(NodeMemory {
                    memory: mem(1 << 30),
                    available: 0,
                }),
                ..NodeSample::default()
            },
            pods,
        };
        let text = render(&sample, false);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "container_cpu_usage_seconds_total{container=\"web\",namespace=\"ns\",pod=\"p\\\"q\"} 2.5 1700000000123",
                "container_memory_working_set_bytes{container=\"web\",namespace=\"ns\",pod=\"p\\\"q\"} 4096 1700000000123",
                "container_start_time_seconds{container=\"web\",namespace=\"ns\",pod=\"p\\\"q\"} 1699999000",
                "node_cpu_usage_seconds_total 12 1700000000123",
                "node_memory_working_set_bytes 1073741824 1700000000123",
                "pod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"p\\\"q\"} 3 1700000000123",
                "pod_memory_working_set_bytes{namespace=\"ns\",pod=\"p\\\"q\"} 8192 1700000000123",
                "resource_scrape_error 0",
                "scrape_error 0",
            ]
        );
        assert!(text.contains("# TYPE node_cpu_usage_seconds_total counter\n"));
        assert!(text.contains("# TYPE pod_memory_working_set_bytes gauge\n"));
        assert!(render(&sample, true).contains("\nscrape_error 1\n"));
    }
}
