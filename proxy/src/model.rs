//! What the rules are made of: each port of each proxied Service, with its
//! endpoints from the Service's EndpointSlices, and the endpoints kube-proxy
//! would send traffic to (ready ones; serving-terminating ones only when no
//! ready one remains; the node's own for the `Local` traffic policies).

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_machinery::cidr::Cidr;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services carrying it belong to another proxy (upstream's convention).
const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Upstream's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// As iptables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node.
    pub local: bool,
}

/// One port of one Service, in one IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `ns/name:port` (`ns/name` for an unnamed port), as kube-proxy names it.
    pub name: String,
    pub protocol: Protocol,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    pub load_balancer_source_ranges: Vec<Cidr>,
    /// externalTrafficPolicy Local (NodePort and LoadBalancer only).
    pub external_local: bool,
    /// internalTrafficPolicy Local.
    pub internal_local: bool,
    /// ClientIP session affinity timeout.
    pub affinity_seconds: Option<u32>,
    /// Sorted, without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Endpoints for traffic from anywhere in the cluster.
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        usable(self.endpoints.iter())
    }

    /// Endpoints on this node, for the `Local` policies.
    pub fn local_endpoints(&self) -> Vec<&Endpoint> {
        usable(self.endpoints.iter().filter(|e| e.local))
    }

    /// Endpoints traffic to the cluster IP goes to.
    pub fn internal_endpoints(&self) -> Vec<&Endpoint> {
        if self.internal_local {
            self.local_endpoints()
        } else {
            self.cluster_endpoints()
        }
    }

    /// Endpoints traffic to a node port, external or load-balancer IP goes to.
    pub fn external_endpoints(&self) -> Vec<&Endpoint> {
        if self.external_local {
            self.local_endpoints()
        } else {
            self.cluster_endpoints()
        }
    }

    /// How traffic under one of its policies (`local_policy`: the internal
    /// or the external one is `Local`) that finds no endpoint is refused.
    pub fn refusal(&self, local_policy: bool) -> Refusal {
        if local_policy && !self.cluster_endpoints().is_empty() {
            Refusal::Drop
        } else {
            Refusal::Reject
        }
    }

    /// Whether anything reaches it from outside the cluster IP.
    pub fn has_external(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }
}

/// Ready endpoints; else the serving ones that are terminating (so
/// connections drain during a rollout instead of being refused).
/// What becomes of traffic a service port has no endpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// There is no endpoint at all: refused at once, not left to time out.
    Reject,
    /// Endpoints exist, but a `Local` policy leaves none on this node.
    Drop,
}

fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

fn parse_ip(s: &str, ipv4: bool) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().filter(|ip| ip.is_ipv4() == ipv4)
}

/// The ports of `svc` that this proxy makes rules for in the family
/// (`ipv4`), with endpoints from `slices` (those of the Service); `node` is
/// this node's name. Headless and ExternalName Services have none.
pub fn service_ports(
    svc: &Service,
    slices: &[&EndpointSlice],
    node: &str,
    ipv4: bool,
) -> Vec<ServicePort> {
    let meta = &svc.metadata;
    let (Some(ns), Some(name), Some(spec)) = (&meta.namespace, &meta.name, &svc.spec) else {
        return Vec::new();
    };
    if meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(PROXY_NAME_LABEL))
    {
        return Vec::new();
    }
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return Vec::new();
    }
    let ips: Vec<&String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    let Some(cluster_ip) = ips.iter().find_map(|s| parse_ip(s, ipv4)) else {
        return Vec::new(); // headless ("None"), or not of this family
    };
    let external_ips: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| parse_ip(s, ipv4))
        .collect();
    let load_balancer_ips: Vec<IpAddr> = if ty == "LoadBalancer" {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            // Proxy-mode ingress only: a VIP-mode one is the node's to own.
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_deref().and_then(|s| parse_ip(s, ipv4)))
            .collect()
    } else {
        Vec::new()
    };
    let load_balancer_source_ranges = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|s| s.trim().parse::<Cidr>().ok())
        .filter(|c| c.is_ipv4() == ipv4)
        .collect();
    let exposes_externally = matches!(ty, "NodePort" | "LoadBalancer");
    let external_local =
        exposes_externally && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
            .max(1) as u32
    });
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let port_name = p.name.as_deref().unwrap_or("");
        let name = if port_name.is_empty() {
            format!("{ns}/{name}")
        } else {
            format!("{ns}/{name}:{port_name}")
        };
        let node_port = p
            .node_port
            .filter(|_| exposes_externally)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0);
        out.push(ServicePort {
            name,
            protocol,
            cluster_ip,
            port,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            load_balancer_source_ranges: Vec::clone(&load_balancer_source_ranges),
            external_local,
            internal_local,
            affinity_seconds,
            endpoints: endpoints(slices, port_name, protocol, node, ipv4),
        });
    }
    out
}

/// The endpoints of the slices' port named `port_name` with `protocol`.
fn endpoints(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    node: &str,
    ipv4: bool,
) -> Vec<Endpoint> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let family_ok = match slice.address_type.as_str() {
            "IPv4" => ipv4,
            "IPv6" => !ipv4,
            _ => false,
        };
        if !family_ok {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find_map(|p| {
            let same_name = p.name.as_deref().unwrap_or("") == port_name;
            let same_protocol = Protocol::parse(p.protocol.as_deref()) == Some(protocol);
            (same_name && same_protocol)
                .then_some(p.port)
                .flatten()
                .and_then(|n| u16::try_from(n).ok())
        }) else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            // Unset ready means ready; unset serving follows ready.
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let local = ep.node_name.as_deref() == Some(node);
            // A pod has one address per family; upstream uses the first.
            if let Some(ip) = ep.addresses.iter().find_map(|a| parse_ip(a, ipv4)) {
                out.insert(Endpoint {
                    ip,
                    port,
                    ready,
                    serving,
                    terminating,
                    local,
                });
            }
        }
    }
    // The same address in two slices (mid-move) counts once.
    let mut seen = BTreeSet::new();
    out.into_iter()
        .filter(|e| seen.insert((e.ip, e.port)))
        .collect()
}

/// `ports` in the order their rules are written: by name, then protocol.
pub fn in_rule_order(ports: &[ServicePort]) -> Vec<&ServicePort> {
    let mut sorted: Vec<&ServicePort> = ports.iter().collect();
    sorted.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
    sorted
}

/// The addresses of this node's endpoints among `ports`, sorted, once
/// each: pods that may reach themselves through a Service (hairpin).
pub fn local_endpoint_ips(ports: &[ServicePort]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = ports
        .iter()
        .flat_map(|sp| sp.endpoints.iter().filter(|e| e.local).map(|e| e.ip))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Service ports and endpoints for the rule renderers' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// An endpoint at `ip`:8080.
    pub fn ep(ip: &str, ready: bool, local: bool) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            ready,
            serving: ready,
            terminating: false,
            local,
        }
    }

    /// `default/web:http`, cluster IP 10.43.0.5 port 80, over `eps`.
    pub fn port(eps: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            name: "default/web:http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: "10.43.0.5".parse().unwrap(),
            port: 80,
            node_port: None,
            external_ips: vec![],
            load_balancer_ips: vec![],
            load_balancer_source_ranges: vec![],
            external_local: false,
            internal_local: false,
            affinity_seconds: None,
            endpoints: eps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn web() -> Service {
        svc(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
    }

    fn web_slice() -> EndpointSlice {
        slice(json!({
            "metadata": {"namespace": "default", "name": "web-abc",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.42.0.7"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.42.1.9"], "nodeName": "n2", "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.42.1.8"], "nodeName": "n2"}
            ]
        }))
    }

    #[test]
    fn ports_and_their_endpoints() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s], "n1", true);
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!(http.name, "default/web:http");
        assert_eq!(http.protocol, Protocol::Tcp);
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(http.endpoints.len(), 3);
        let ready: Vec<String> = http
            .cluster_endpoints()
            .iter()
            .map(|e| format!("{}:{}", e.ip, e.port))
            .collect();
        assert_eq!(ready, ["10.42.0.7:8080", "10.42.1.8:8080"]);
        assert_eq!(http.local_endpoints().len(), 1);
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].endpoints[0].port, 5353);
        // No IPv6 cluster IP: no IPv6 rules.
        assert!(service_ports(&web(), &[&s], "n1", false).is_empty());
    }

    #[test]
    fn terminating_endpoints_only_when_none_is_ready() {
        let s = slice(json!({
            "metadata": {"namespace": "default", "name": "web-abc"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.42.1.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.42.1.10"], "conditions": {"ready": false, "serving": false, "terminating": true}}
            ]
        }));
        let ports = service_ports(&web(), &[&s], "n1", true);
        let usable: Vec<_> = ports[0].cluster_endpoints().iter().map(|e| e.ip).collect();
        assert_eq!(usable, ["10.42.1.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn headless_external_name_and_foreign_services_have_no_ports() {
        let headless = svc(json!({"metadata": {"namespace": "d", "name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let external = svc(json!({"metadata": {"namespace": "d", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "example.test"}}));
        let foreign = svc(json!({"metadata": {"namespace": "d", "name": "f",
            "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 80}]}}));
        for s in [headless, external, foreign] {
            assert!(service_ports(&s, &[], "n1", true).is_empty());
        }
    }

    #[test]
    fn policies_affinity_and_load_balancer_ingress() {
        let s = svc(json!({
            "metadata": {"namespace": "d", "name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.6", "externalTrafficPolicy": "Local",
                     "internalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
                     "externalIPs": ["192.168.5.5"],
                     "ports": [{"port": 80, "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.29.7.2"}, {"hostname": "lb.test"}]}}
        }));
        let p = &service_ports(&s, &[], "n1", true)[0];
        assert_eq!(p.name, "d/lb");
        assert!(p.external_local && p.internal_local);
        assert_eq!(p.affinity_seconds, Some(10800));
        assert_eq!(
            p.load_balancer_ips,
            ["172.29.7.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(p.external_ips, ["192.168.5.5".parse::<IpAddr>().unwrap()]);
        assert!(p.has_external());
    }
}
