//! The cluster's names, as an index built from the Service and
//! EndpointSlice caches (never a per-query API call), as the DNS
//! specification for Kubernetes lays them out:
//!
//! - `<svc>.<ns>.svc.<domain>`: A/AAAA of the cluster IPs, or for a headless
//!   Service its ready endpoints (all with publishNotReadyAddresses); CNAME
//!   for ExternalName.
//! - `<host>.<svc>.<ns>.svc.<domain>` for each endpoint of a headless
//!   Service: its `hostname` (StatefulSet pods) or its dashed address.
//! - SRV `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for named ports, and at
//!   the service name itself.
//! - PTR for cluster IPs and headless endpoint addresses.
//!
//! Names that exist without records of their own (`svc.<domain>`,
//! `<ns>.svc.<domain>`) are kept too, so the answer can tell NODATA from
//! NXDOMAIN.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::SERVICE_NAME_LABEL;

#[derive(Debug, Default)]
pub struct Zone {
    /// `cluster.local.` (lowercase, with the root dot).
    pub domain: String,
    pub ttl: u32,
    records: HashMap<String, Vec<Record>>,
    /// Every name that exists, records or not.
    names: HashSet<String>,
}

/// The reverse-lookup name of `ip` (`4.3.2.1.in-addr.arpa.`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// `10-42-0-7` for 10.42.0.7 (and colons to dashes for IPv6).
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok()
}

impl Zone {
    pub fn empty(domain: &str, ttl: u32) -> Zone {
        let domain = format!("{}.", domain.trim_end_matches('.').to_ascii_lowercase());
        let mut z = Zone {
            domain,
            ttl,
            ..Zone::default()
        };
        let d = z.domain.clone();
        z.names.insert(d.clone());
        z.names.insert(format!("svc.{d}"));
        z.names.insert(format!("pod.{d}"));
        z
    }

    fn add(&mut self, owner: &str, rdata: RData) {
        let Some(n) = name(owner) else { return };
        self.exists(owner);
        self.records
            .entry(owner.to_string())
            .or_default()
            .push(Record::from_rdata(n, self.ttl, rdata));
    }

    /// Marks `owner` and every name between it and the domain as existing.
    fn exists(&mut self, owner: &str) {
        let mut rest = owner;
        while rest.len() > self.domain.len() && self.names.insert(rest.to_string()) {
            match rest.split_once('.') {
                Some((_, r)) => rest = r,
                None => break,
            }
        }
    }

    fn address(&mut self, owner: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add(owner, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(owner, RData::AAAA(AAAA(v6))),
        }
    }

    fn pointer(&mut self, ip: IpAddr, target: &str) {
        if let Some(t) = name(target) {
            let owner = reverse_name(ip);
            let Some(n) = name(&owner) else { return };
            self.records
                .entry(owner)
                .or_default()
                .push(Record::from_rdata(n, self.ttl, RData::PTR(PTR(t))));
        }
    }

    fn service_srv(
        &mut self,
        base: &str,
        port_name: &str,
        protocol: &str,
        port: u16,
        target: &str,
    ) {
        let Some(t) = name(target) else { return };
        let rdata = RData::SRV(SRV::new(0, 100, port, t));
        if !port_name.is_empty() {
            let proto = protocol.to_ascii_lowercase();
            self.add(&format!("_{port_name}._{proto}.{base}"), rdata.clone());
        }
        self.add(base, rdata);
    }

    /// Records of `owner` (lowercase, with the root dot).
    pub fn records(&self, owner: &str) -> Option<&[Record]> {
        self.records.get(owner).map(Vec::as_slice)
    }

    pub fn name_exists(&self, owner: &str) -> bool {
        self.names.contains(owner)
    }

    /// Builds the zone for `domain` from the caches' contents.
    pub fn build(domain: &str, ttl: u32, services: &[&Service], slices: &[&EndpointSlice]) -> Zone {
        let mut z = Zone::empty(domain, ttl);
        let d = z.domain.clone();
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                by_service.entry((ns, svc.as_str())).or_default().push(s);
            }
        }
        for svc in services {
            let (Some(ns), Some(svc_name), Some(spec)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
                svc.spec.as_ref(),
            ) else {
                continue;
            };
            let base = format!("{svc_name}.{ns}.svc.{d}").to_ascii_lowercase();
            z.exists(&base);
            if spec.type_.as_deref() == Some("ExternalName") {
                if let Some(target) = spec
                    .external_name
                    .as_deref()
                    .and_then(|t| name(&format!("{}.", t.trim_end_matches('.'))))
                {
                    z.add(&base, RData::CNAME(CNAME(target)));
                }
                continue;
            }
            let ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|s| s.parse().ok())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !ips.is_empty() {
                for ip in ips {
                    z.address(&base, ip);
                    z.pointer(ip, &base);
                }
                for p in spec.ports.iter().flatten() {
                    if let Ok(port) = u16::try_from(p.port) {
                        let proto = p.protocol.as_deref().unwrap_or("TCP");
                        z.service_srv(&base, p.name.as_deref().unwrap_or(""), proto, port, &base);
                    }
                }
                continue;
            }
            // Headless: the endpoints themselves.
            let all = spec.publish_not_ready_addresses.unwrap_or(false);
            for slice in by_service.get(&(ns, svc_name)).into_iter().flatten() {
                for ep in &slice.endpoints {
                    let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    if !ready && !all {
                        continue;
                    }
                    for addr in &ep.addresses {
                        let Ok(ip) = addr.parse::<IpAddr>() else {
                            continue;
                        };
                        let host = ep
                            .hostname
                            .clone()
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| dashed(ip))
                            .to_ascii_lowercase();
                        let fqdn = format!("{host}.{base}");
                        z.address(&base, ip);
                        z.address(&fqdn, ip);
                        z.pointer(ip, &fqdn);
                        for p in slice.ports.iter().flatten() {
                            let Some(port) = p.port.and_then(|n| u16::try_from(n).ok()) else {
                                continue;
                            };
                            let proto = p.protocol.as_deref().unwrap_or("TCP");
                            z.service_srv(
                                &base,
                                p.name.as_deref().unwrap_or(""),
                                proto,
                                port,
                                &fqdn,
                            );
                        }
                    }
                }
            }
        }
        // The same address listed twice (two slices mid-move) answers once.
        for rs in z.records.values_mut() {
            let mut seen = HashSet::new();
            rs.retain(|r| seen.insert(r.data().to_string()));
        }
        z
    }
}
