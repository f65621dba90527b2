//! One sample of everything the stats endpoints report, taken at one
//! moment: the node's totals and, for every pod with a running container,
//! the pod's cgroup (`/skiff/pod<uid>`) and each running container's
//! (`/skiff/pod<uid>/<id>`). Cumulative values only; rates come from two
//! samples (`rate`). Taking one is blocking (many small file reads).

use super::cgroup::{Hierarchy, Usage};
use super::node::{self, Fs, NodeMemory};
use crate::runtime::container::State;
use crate::runtime::Runtime;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time: Timestamp,
    pub node: NodeSample,
    /// By pod uid.
    pub pods: BTreeMap<String, PodSample>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSample {
    pub cpu_ns: Option<u64>,
    pub memory: Option<NodeMemory>,
    pub boot: Option<Timestamp>,
    /// The filesystem of the agent's data (kubelet's root dir and image store).
    pub fs: Option<Fs>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// When its first running container started.
    pub start: Option<Timestamp>,
    pub usage: Usage,
    /// By container name.
    pub containers: BTreeMap<String, ContainerSample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample {
    pub id: String,
    pub name: String,
    pub start: Option<Timestamp>,
    pub usage: Usage,
}

impl Default for Sample {
    /// Nothing known, now.
    fn default() -> Self {
        Sample {
            time: Timestamp::now(),
            node: NodeSample::default(),
            pods: BTreeMap::new(),
        }
    }
}

/// Reads everything now.
pub fn take(runtime: &Runtime, hierarchy: &Hierarchy, data_dir: &Path) -> Sample {
    let (cpu_ns, boot, memory) = node::read(hierarchy);
    let mut pods: BTreeMap<String, PodSample> = BTreeMap::new();
    let mut attempts: BTreeMap<(String, String), u32> = BTreeMap::new();
    for meta in runtime.list() {
        let State::Running(started) = runtime.state(&meta.id) else {
            continue;
        };
        // Should two attempts of a container both run, the newer one counts.
        let key = (meta.pod_uid.clone(), meta.name.clone());
        if attempts.get(&key).is_some_and(|a| *a > meta.attempt) {
            continue;
        }
        attempts.insert(key, meta.attempt);
        let start = started.started_at.parse::<Timestamp>().ok();
        let pod = pods
            .entry(meta.pod_uid.clone())
            .or_insert_with(|| PodSample {
                uid: meta.pod_uid.clone(),
                name: meta.pod_name.clone(),
                namespace: meta.pod_namespace.clone(),
                start: None,
                usage: Usage::default(),
                containers: BTreeMap::new(),
            });
        pod.start = match (pod.start, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        pod.containers.insert(
            meta.name.clone(),
            ContainerSample {
                usage: hierarchy.read(&runtime.cgroup(&meta)),
                id: meta.id,
                name: meta.name,
                start,
            },
        );
    }
    for pod in pods.values_mut() {
        pod.usage = pod_usage(
            hierarchy.read(&format!("/skiff/pod{}", pod.uid)),
            pod.containers.values().map(|c| &c.usage),
        );
    }
    Sample {
        time: Timestamp::now(),
        node: NodeSample {
            cpu_ns,
            memory,
            boot: boot.and_then(|s| Timestamp::from_second(s).ok()),
            fs: node::fs(data_dir),
        },
        pods,
    }
}

/// The pod's usage: its own cgroup's, else the sum of its containers'.
pub fn pod_usage<'a>(own: Usage, containers: impl Iterator<Item = &'a Usage> + Clone) -> Usage {
    let cpu_ns = own.cpu_ns.or_else(|| {
        containers
            .clone()
            .map(|u| u.cpu_ns)
            .try_fold(0u64, |a, b| Some(a + b?))
    });
    let memory = own.memory.or_else(|| {
        containers
            .map(|u| u.memory)
            .try_fold(super::cgroup::Memory::default(), |mut a, b| {
                let b = b?;
                a.usage += b.usage;
                a.working_set += b.working_set;
                a.rss += b.rss;
                a.page_faults += b.page_faults;
                a.major_page_faults += b.major_page_faults;
                Some(a)
            })
    });
    Usage { cpu_ns, memory }
}

#[cfg(test)]
mod tests {
    use super::super::cgroup::Memory;
    use super::*;

    #[test]
    fn pod_usage_falls_back_to_the_sum_of_containers() {
        let c = |cpu, ws| Usage {
            cpu_ns: Some(cpu),
            memory: Some(Memory {
                usage: ws,
                working_set: ws,
                ..Memory::default()
            }),
        };
        let cs = [c(10, 100), c(5, 50)];
        let summed = pod_usage(Usage::default(), cs.iter());
        assert_eq!(summed.cpu_ns, Some(15));
        assert_eq!(summed.memory.unwrap().working_set, 150);
        let own = c(99, 999);
        assert_eq!(pod_usage(own, cs.iter()), own);
        let partial = [c(1, 1), Usage::default()];
        assert_eq!(
            pod_usage(Usage::default(), partial.iter()),
            Usage::default()
        );
    }
}
