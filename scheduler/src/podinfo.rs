//! A pod as the scheduler reasons about it: parsed once when it arrives
//! (requests, host ports, affinity terms, selectors), so that checking it
//! against thousands of nodes allocates nothing.

use crate::resources::{pod_requests, Resources};
use k8s_openapi::api::core::v1::{PodAffinityTerm, Toleration};
use kube::ResourceExt;
use skiff_machinery::client::cachedpod::{CachedPod, PodSpec};
use skiff_machinery::labels::Selector;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two uses of a host port clash when protocol and port agree and either
    /// listens on every address.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// One pod (anti-)affinity term: which pods it is about, and over what
/// topology.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub namespaces: BTreeSet<String>,
    /// `None`: only `namespaces`; an empty selector: every namespace.
    pub namespace_selector: Option<Selector>,
    pub selector: Selector,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    fn parse(own_ns: &str, t: &PodAffinityTerm, weight: i32) -> AffinityTerm {
        let sel = |s: &Option<_>| -> Option<Selector> {
            s.as_ref().map(|s| {
                Selector::from_label_selector(&serde_json::to_value(s).unwrap_or_default())
                    // A selector the API accepted but we cannot read selects nothing.
                    .unwrap_or_else(|_| Selector::parse("!skiff.invalid/selector").unwrap())
            })
        };
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let namespace_selector = sel(&t.namespace_selector);
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(own_ns.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector,
            // No label selector matches no pods (upstream).
            selector: sel(&t.label_selector)
                .unwrap_or_else(|| Selector::parse("!skiff.invalid/selector").unwrap()),
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` (living in a namespace labelled `ns_labels`) is one the term is about.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        let in_ns = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.matches_with(|k| ns_labels.and_then(|l| l.get(k)).map(String::as_str))
            });
        in_ns && self.selector.matches_with(|k| pod.label(k))
    }
}

#[derive(Debug, Default)]
pub struct Affinity {
    pub required: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred: Vec<AffinityTerm>,
    pub preferred_anti: Vec<AffinityTerm>,
}

impl Affinity {
    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.preferred_anti.is_empty()
    }
}

#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<CachedPod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub requests: Resources,
    /// Requests with request-less containers at the scoring defaults.
    pub non_zero: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    pub affinity: Affinity,
    pub terminating: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<CachedPod>) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let no_spec;
        let spec = match &pod.spec {
            Some(spec) => spec,
            None => {
                no_spec = PodSpec::default();
                &no_spec
            }
        };
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some(HostPort {
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                })
            })
            .collect();
        let mut affinity = Affinity::default();
        if let Some(a) = &spec.affinity {
            let terms = |v: &Option<Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
                v.iter()
                    .flatten()
                    .map(|t| AffinityTerm::parse(&namespace, t, 1))
                    .collect()
            };
            let weighted =
                |v: &Option<Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                    v.iter()
                        .flatten()
                        .map(|w| AffinityTerm::parse(&namespace, &w.pod_affinity_term, w.weight))
                        .collect::<Vec<_>>()
                };
            if let Some(pa) = &a.pod_affinity {
                affinity.required = terms(&pa.required_during_scheduling_ignored_during_execution);
                affinity.preferred =
                    weighted(&pa.preferred_during_scheduling_ignored_during_execution);
            }
            if let Some(pa) = &a.pod_anti_affinity {
                affinity.required_anti =
                    terms(&pa.required_during_scheduling_ignored_during_execution);
                affinity.preferred_anti =
                    weighted(&pa.preferred_during_scheduling_ignored_during_execution);
            }
        }
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            requests: pod_requests(spec, false),
            non_zero: pod_requests(spec, true),
            host_ports,
            priority: spec.priority.unwrap_or(0),
            affinity,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            namespace,
            pod,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        // Read from the cached pod, not copied: a label map costs a
        // half-kilobyte node per pod.
        self.pod.labels().get(key).map(String::as_str)
    }

    pub fn spec(&self) -> &PodSpec {
        static EMPTY: std::sync::OnceLock<PodSpec> = std::sync::OnceLock::new();
        self.pod
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.spec().tolerations.as_deref().unwrap_or_default()
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn scheduler_name(&self) -> &str {
        self.spec()
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
    }

    pub fn node_name(&self) -> Option<&str> {
        self.spec().node_name.as_deref().filter(|n| !n.is_empty())
    }

    pub fn nominated_node(&self) -> Option<&str> {
        self.pod
            .status
            .as_ref()?
            .nominated_node_name
            .as_deref()
            .filter(|n| !n.is_empty())
    }

    /// Finished pods hold no resources.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    }
}

/// Whether a toleration tolerates a taint, as upstream's `ToleratesTaint`.
pub fn tolerates(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let t_effect = t.effect.as_deref().unwrap_or("");
    if !t_effect.is_empty() && t_effect != effect {
        return false;
    }
    let t_key = t.key.as_deref().unwrap_or("");
    if !t_key.is_empty() && t_key != key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == value,
        _ => false,
    }
}
