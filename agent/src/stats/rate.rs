//! Cpu usage rates (`usageNanoCores`) from two samples, as cadvisor
//! derives them from its two latest housekeeping points: the growth of the
//! cumulative cpu time over the time between the samples. A counter that
//! went backwards (a container restarted under the same key) or a zero
//! interval gives no rate.

use super::sample::Sample;
use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;

/// Rates in nanocores: the node's, by pod uid, by container id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rates {
    pub node: Option<u64>,
    pub pods: HashMap<String, u64>,
    pub containers: HashMap<String, u64>,
}

/// Nanocores used between two cumulative readings (ns of cpu time).
pub fn nanocores(prev: (Timestamp, u64), cur: (Timestamp, u64)) -> Option<u64> {
    let elapsed = cur.0.as_nanosecond() - prev.0.as_nanosecond();
    if elapsed <= 0 || cur.1 < prev.1 {
        return None;
    }
    let used = (cur.1 - prev.1) as i128;
    u64::try_from(used * 1_000_000_000 / elapsed).ok()
}

/// The rates of everything in `cur` that `prev` saw too.
pub fn between(prev: &Sample, cur: &Sample) -> Rates {
    let r = |a: Option<u64>, b: Option<u64>| nanocores((prev.time, a?), (cur.time, b?));
    let mut rates = Rates {
        node: r(prev.node.cpu_ns, cur.node.cpu_ns),
        ..Rates::default()
    };
    for (uid, pod) in &cur.pods {
        let Some(before) = prev.pods.get(uid) else {
            continue;
        };
        if let Some(n) = r(before.usage.cpu_ns, pod.usage.cpu_ns) {
            rates.pods.insert(uid.clone(), n);
        }
        for c in pod.containers.values() {
            let Some(b) = before.containers.get(&c.name).filter(|b| b.id == c.id) else {
                continue;
            };
            if let Some(n) = r(b.usage.cpu_ns, c.usage.cpu_ns) {
                rates.containers.insert(c.id.clone(), n);
            }
        }
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::super::cgroup::Usage;
    use super::super::sample::{ContainerSample, NodeSample, PodSample};
    use super::*;
    use std::collections::BTreeMap;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn sample(secs: i64, node: u64, pod: u64, container: (&str, u64)) -> Sample {
        let usage = |n| Usage {
            cpu_ns: Some(n),
            memory: None,
        };
        let mut containers = BTreeMap::new();
        containers.insert(
            "c".to_string(),
            ContainerSample {
                id: container.0.into(),
                name: "c".into(),
                start: None,
                usage: usage(container.1),
            },
        );
        let mut pods = BTreeMap::new();
        pods.insert(
            "u".to_string(),
            PodSample {
                uid: "u".into(),
                name: "p".into(),
                namespace: "default".into(),
                start: None,
                usage: usage(pod),
                containers,
            },
        );
        Sample {
            time: at(secs),
            node: NodeSample {
                cpu_ns: Some(node),
                ..NodeSample::default()
            },
            pods,
        }
    }

    #[test]
    fn rate_over_the_interval() {
        // 5 s of cpu in 10 s: half a core.
        assert_eq!(
            nanocores((at(0), 0), (at(10), 5_000_000_000)),
            Some(500_000_000)
        );
        assert_eq!(nanocores((at(0), 10), (at(10), 5)), None, "went backwards");
        assert_eq!(nanocores((at(10), 0), (at(10), 5)), None, "no interval");
    }

    #[test]
    fn rates_of_node_pods_and_same_containers() {
        let a = sample(0, 0, 0, ("id1", 0));
        let b = sample(10, 20_000_000_000, 10_000_000_000, ("id1", 2_000_000_000));
        let r = between(&a, &b);
        assert_eq!(r.node, Some(2_000_000_000));
        assert_eq!(r.pods["u"], 1_000_000_000);
        assert_eq!(r.containers["id1"], 200_000_000);
        // A restarted container (a new id) has no rate until its next sample.
        let c = sample(20, 30_000_000_000, 11_000_000_000, ("id2", 1));
        assert!(between(&b, &c).containers.is_empty());
    }
}
