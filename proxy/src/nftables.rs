//! The nftables rules for a set of service ports (`--proxy-mode
//! nftables`), shaped as kube-proxy's nftables mode shapes them, in one
//! table of skiff's own, `ip skiff`:
//!
//! - `services` (from the nat hooks prerouting and output) looks each
//!   packet's destination up in verdict maps: `service-ips` (cluster,
//!   external and load-balancer IP . protocol . port) and, for the node's own
//!   addresses, `service-nodeports` (protocol . port). A Service is a map
//!   element, not a rule.
//! - `svc-<h>` marks cluster-IP traffic from outside the pod range for
//!   masquerade and DNATs to an endpoint picked at random: one rule,
//!   `dnat ip to numgen random mod N offset B map @endpoints-<s>`, whose
//!   endpoints are the elements B … B+N-1 of a shared map. `svl-<h>` does so
//!   over the node's own endpoints (the `Local` policies), `ext-<h>` is
//!   where external traffic enters, `fw-<h>` applies
//!   loadBalancerSourceRanges; ClientIP affinity keeps a dynamic set of
//!   clients per endpoint (`aff-<h>`), as kube-proxy does.
//! - `masquerading` (nat postrouting) masquerades marked traffic, and a pod
//!   reaching itself through its Service (the `hairpin` set of local
//!   endpoints).
//! - The filter hooks refuse traffic to Services without endpoints (REJECT,
//!   or DROP when only a `Local` policy leaves none), from three more
//!   verdict maps.
//!
//! Why maps (measured with kernel 6.18 and nft 1.0.6, 10,000 Services of 10
//! endpoints): every commit that adds a jump or a NAT rule makes nf_tables
//! walk every rule reachable from the table's base chains, which with one
//! rule per endpoint (the iptables shape, 110,000 rules) costs 60 ms and
//! more per change. With endpoints as map elements the walk sees two rules
//! per Service. The endpoint map is sharded by the chain's hash: binding a
//! rule to a map walks the map's elements, and adding an element walks the
//! rules bound to its map, so one map for all would cost S × E (55 s for a
//! full sync); a map or an anonymous set per Service costs as much the
//! other way (a table's sets are a list the kernel searches by name: 5.7
//! and 11 s). 256 shards: 1.2–1.3 s of which half is nft parsing the text.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::model::{Endpoint, Protocol, ServicePort};
use crate::rules::{Context, Rules};

/// The table everything lives in (family `ip`).
pub const TABLE: &str = "skiff";
/// How many maps the endpoints are spread over.
pub const SHARDS: u16 = 256;
/// A balancing chain's endpoints are the keys `slot << SLOT_BITS` onwards.
const SLOT_BITS: u32 = 16;
/// Packets to masquerade on the way out (kube-proxy's bit).
const MASQ_MARK: &str = "0x4000";
/// The chain refused traffic goes to (a verdict map can `goto` it).
pub const REJECT_CHAIN: &str = "reject-chain";

/// The chains of the filter hooks; the rest are nat.
const FILTER_CHAINS: [&str; 6] = [
    "filter-input",
    "filter-forward",
    "filter-output",
    "cluster-check",
    "external-check",
    REJECT_CHAIN,
];

/// The verdict maps, keyed by destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VerdictMap {
    /// Cluster, external and load-balancer IP . protocol . port.
    ServiceIps,
    /// Protocol . node port, for the node's own addresses.
    NodePorts,
    /// Cluster IPs of Services without endpoints.
    NoEndpointServices,
    /// External and load-balancer IPs of Services without endpoints.
    NoEndpointExternal,
    /// Node ports of Services without endpoints.
    NoEndpointNodePorts,
}

impl VerdictMap {
    pub const ALL: [VerdictMap; 5] = [
        VerdictMap::ServiceIps,
        VerdictMap::NodePorts,
        VerdictMap::NoEndpointServices,
        VerdictMap::NoEndpointExternal,
        VerdictMap::NoEndpointNodePorts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VerdictMap::ServiceIps => "service-ips",
            VerdictMap::NodePorts => "service-nodeports",
            VerdictMap::NoEndpointServices => "no-endpoint-services",
            VerdictMap::NoEndpointExternal => "no-endpoint-external",
            VerdictMap::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }

    /// Its key type, as nft declares it.
    pub fn key_type(self) -> &'static str {
        match self {
            VerdictMap::NodePorts | VerdictMap::NoEndpointNodePorts => "inet_proto . inet_service",
            _ => "ipv4_addr . inet_proto . inet_service",
        }
    }
}

/// Where a balancing chain's endpoints are in the endpoint maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRange {
    pub shard: u16,
    pub base: u32,
    pub targets: Arc<[(Ipv4Addr, u16)]>,
}

/// Everything the proxy keeps in its table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NftRuleset {
    /// Chain → its rules, one per line (a base chain's first line declares
    /// its hook).
    pub chains: HashMap<Arc<str>, Rules>,
    /// (map, key) → verdict.
    pub verdicts: HashMap<(VerdictMap, Arc<str>), Arc<str>>,
    /// Balancing chain → its endpoints in the endpoint maps.
    pub endpoints: HashMap<Arc<str>, EndpointRange>,
    /// Local endpoints, which may reach themselves through a Service.
    pub hairpin: BTreeSet<Ipv4Addr>,
    /// ClientIP affinity sets → their timeout in seconds.
    pub affinity: HashMap<Arc<str>, u32>,
}

impl NftRuleset {
    /// Rules (nat, filter), not counting base chains' declarations.
    pub fn rule_counts(&self) -> (usize, usize) {
        let (mut nat, mut filter) = (0, 0);
        for (name, r) in &self.chains {
            let n = r.count - usize::from(r.starts_with("type "));
            if FILTER_CHAINS.contains(&&**name) {
                filter += n;
            } else {
                nat += n;
            }
        }
        (nat, filter)
    }
}

/// A chain whose endpoints would go in the endpoint maps, at `slot` of
/// `shard` if no other chain claims it.
#[derive(Debug)]
struct Balance {
    chain: Arc<str>,
    shard: u16,
    slot: u16,
    /// The chain's rules before its balancing rule (when it must balance
    /// with rules instead).
    head: String,
    protocol: Protocol,
    targets: Arc<[(Ipv4Addr, u16)]>,
}

/// The rules of some service ports (typically one Service's), kept between
/// syncs while the Service and its slices stay as they were.
#[derive(Debug, Default)]
pub struct Fragment {
    /// Balancing chains are here with their endpoints in the maps.
    chains: Vec<(Arc<str>, Rules)>,
    balances: Vec<Balance>,
    verdicts: Vec<(VerdictMap, Arc<str>, Arc<str>)>,
    hairpin: Vec<Ipv4Addr>,
    affinity: Vec<(Arc<str>, u32)>,
}

/// A chain's name (`<prefix><16 hex digits>`) and the endpoint map place
/// it would take (shard, slot), all from one hash of what it is for.
fn named(prefix: &str, parts: &[&str]) -> (String, u16, u16) {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut name = String::with_capacity(prefix.len() + 16);
    name.push_str(prefix);
    for b in &d[..8] {
        let _ = write!(name, "{b:02x}");
    }
    let shard = u16::from_be_bytes([d[8], d[9]]) % SHARDS;
    let slot = u16::from_be_bytes([d[10], d[11]]);
    (name, shard, slot)
}

fn port_chain(prefix: &str, sp: &ServicePort) -> (String, u16, u16) {
    named(prefix, &[&sp.name, sp.protocol.as_str()])
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// The rules for `ports` (any order).
pub fn render(ports: &[ServicePort], ctx: &Context) -> NftRuleset {
    assemble(&[&fragment(ports, ctx)])
}

/// The rules of `ports` alone.
pub fn fragment(ports: &[ServicePort], ctx: &Context) -> Fragment {
    let mut f = Fragment::default();
    let mut sorted: Vec<&ServicePort> = ports.iter().collect();
    sorted.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
    for sp in sorted {
        service_port(&mut f, sp, ctx);
    }
    f.hairpin = ports
        .iter()
        .flat_map(|sp| sp.endpoints.iter().filter(|e| e.local))
        .filter_map(|e| v4(e.ip))
        .collect();
    f.hairpin.sort();
    f.hairpin.dedup();
    f
}

/// The rules of the table itself, there with no Service.
fn fixed_chains() -> Vec<(&'static str, String)> {
    let lookup = "ip daddr . meta l4proto . th dport vmap";
    let node_lookup = "fib daddr type local meta l4proto . th dport vmap";
    vec![
        (
            "nat-prerouting",
            "type nat hook prerouting priority dstnat; policy accept;\njump services\n".into(),
        ),
        (
            "nat-output",
            "type nat hook output priority -100; policy accept;\njump services\n".into(),
        ),
        (
            "nat-postrouting",
            "type nat hook postrouting priority srcnat; policy accept;\njump masquerading\n"
                .into(),
        ),
        (
            "services",
            format!("{lookup} @service-ips\n{node_lookup} @service-nodeports\n"),
        ),
        (
            "masquerading",
            format!(
                "ct status dnat ip saddr . ip daddr @hairpin masquerade\n\
                 meta mark & {MASQ_MARK} == 0 return\n\
                 meta mark set meta mark ^ {MASQ_MARK}\n\
                 masquerade fully-random\n"
            ),
        ),
        (
            "mark-for-masquerade",
            format!("meta mark set meta mark | {MASQ_MARK}\n"),
        ),
        (
            "filter-input",
            "type filter hook input priority -10; policy accept;\nct state new jump external-check\n"
                .into(),
        ),
        (
            "filter-forward",
            "type filter hook forward priority -10; policy accept;\nct state invalid drop\n\
             ct state new jump cluster-check\nct state new jump external-check\n"
                .into(),
        ),
        (
            "filter-output",
            "type filter hook output priority -10; policy accept;\nct state new jump cluster-check\n"
                .into(),
        ),
        (
            "cluster-check",
            format!("{lookup} @no-endpoint-services\n"),
        ),
        (
            "external-check",
            format!("{lookup} @no-endpoint-external\n{node_lookup} @no-endpoint-nodeports\n"),
        ),
        (REJECT_CHAIN, "reject\n".into()),
    ]
}

/// The whole rule set from every Service's fragment. Where two fragments
/// give one map key, the first wins; where two balancing chains would take
/// one slot of the endpoint maps, the one with the smaller name does and
/// the other balances with rules — both by the fragments alone, so the
/// result does not depend on the order things happened in.
pub fn assemble(fragments: &[&Fragment]) -> NftRuleset {
    let mut rs = NftRuleset::default();
    for (name, rules) in fixed_chains() {
        rs.chains.insert(Arc::from(name), Rules::new(rules));
    }
    let mut owners: HashMap<(u16, u16), &Arc<str>> = HashMap::new();
    for b in fragments.iter().flat_map(|f| &f.balances) {
        owners
            .entry((b.shard, b.slot))
            .and_modify(|o| {
                if b.chain < **o {
                    *o = &b.chain;
                }
            })
            .or_insert(&b.chain);
    }
    for f in fragments {
        for (name, rules) in &f.chains {
            rs.chains.insert(name.clone(), rules.clone());
        }
        for b in &f.balances {
            if Arc::ptr_eq(owners[&(b.shard, b.slot)], &b.chain) {
                let range = EndpointRange {
                    shard: b.shard,
                    base: u32::from(b.slot) << SLOT_BITS,
                    targets: b.targets.clone(),
                };
                rs.endpoints.insert(b.chain.clone(), range);
            } else {
                let mut text = b.head.clone();
                cascade(&mut text, b.protocol, &b.targets, &[]);
                rs.chains.insert(b.chain.clone(), Rules::new(text));
            }
        }
        for (map, key, verdict) in &f.verdicts {
            rs.verdicts
                .entry((*map, key.clone()))
                .or_insert_with(|| verdict.clone());
        }
        rs.hairpin.extend(f.hairpin.iter().copied());
        for (set, secs) in &f.affinity {
            rs.affinity.insert(set.clone(), *secs);
        }
    }
    rs
}

fn service_port(f: &mut Fragment, sp: &ServicePort, ctx: &Context) {
    let Some(cluster_ip) = v4(sp.cluster_ip) else {
        return;
    };
    let proto = sp.protocol.as_str();
    let port = sp.port;
    let cluster = sp.cluster_endpoints();
    let local = sp.local_endpoints();
    let internal = sp.internal_endpoints();
    let external = sp.external_endpoints();
    let (svc, shard, slot) = port_chain("svc-", sp);
    let (svl, local_shard, local_slot) = port_chain("svl-", sp);
    let (ext, ..) = port_chain("ext-", sp);
    let (fw, ..) = port_chain("fw-", sp);
    let uses_local = sp.internal_local || sp.external_local;
    let key = |ip: Ipv4Addr| -> Arc<str> { format!("{ip} . {proto} . {port}").into() };
    let mut verdict = |map: VerdictMap, key: Arc<str>, verdict: String| {
        f.verdicts.push((map, key, verdict.into()));
    };
    // Refused traffic: REJECT when there is no endpoint at all; DROP when
    // endpoints exist but a Local policy leaves none on this node.
    let refusal = |local_policy: bool| -> String {
        if local_policy && !cluster.is_empty() {
            "drop".into()
        } else {
            format!("goto {REJECT_CHAIN}")
        }
    };

    // Traffic to the cluster IP.
    if internal.is_empty() {
        verdict(
            VerdictMap::NoEndpointServices,
            key(cluster_ip),
            refusal(sp.internal_local),
        );
    } else {
        let target = if sp.internal_local { &svl } else { &svc };
        verdict(
            VerdictMap::ServiceIps,
            key(cluster_ip),
            format!("goto {target}"),
        );
    }

    // Traffic from outside: external IPs, load-balancer IPs, the node port.
    let outside_ips = || {
        sp.external_ips
            .iter()
            .chain(&sp.load_balancer_ips)
            .filter_map(|ip| v4(*ip))
    };
    let node_port_key = |np: u16| -> Arc<str> { format!("{proto} . {np}").into() };
    if sp.has_external() {
        if external.is_empty() {
            let refused = refusal(sp.external_local);
            for ip in outside_ips() {
                verdict(VerdictMap::NoEndpointExternal, key(ip), refused.clone());
            }
            if let Some(np) = sp.node_port {
                verdict(VerdictMap::NoEndpointNodePorts, node_port_key(np), refused);
            }
        } else {
            for ip in sp.external_ips.iter().filter_map(|ip| v4(*ip)) {
                verdict(VerdictMap::ServiceIps, key(ip), format!("goto {ext}"));
            }
            let ranges = &sp.load_balancer_source_ranges;
            let lb_target = if ranges.is_empty() { &ext } else { &fw };
            for ip in sp.load_balancer_ips.iter().filter_map(|ip| v4(*ip)) {
                verdict(VerdictMap::ServiceIps, key(ip), format!("goto {lb_target}"));
            }
            if let Some(np) = sp.node_port {
                verdict(
                    VerdictMap::NodePorts,
                    node_port_key(np),
                    format!("goto {ext}"),
                );
            }
            if !sp.load_balancer_ips.is_empty() && !ranges.is_empty() {
                let mut rules = String::new();
                for range in ranges.iter().filter(|r| r.is_ipv4()) {
                    let _ = writeln!(rules, "ip saddr {range} goto {ext}");
                }
                rules.push_str("drop\n");
                f.chains.push((fw.into(), Rules::new(rules)));
            }
            f.chains
                .push((ext.clone().into(), external_chain(sp, ctx, &svc, &svl)));
        }
    }

    // The balancing chains.
    if !cluster.is_empty() {
        let mut head = format!("ip daddr {cluster_ip} meta l4proto {proto} th dport {port} ");
        if let Some(cc) = ctx.cluster_cidr.as_ref().filter(|c| c.is_ipv4()) {
            let _ = write!(head, "ip saddr != {cc} ");
        }
        head.push_str("jump mark-for-masquerade\n");
        balance(f, sp, (svc, shard, slot), head, &cluster);
    }
    if uses_local && !local.is_empty() {
        balance(f, sp, (svl, local_shard, local_slot), String::new(), &local);
    }
}

/// `ext-<h>`: external traffic into the service.
fn external_chain(sp: &ServicePort, ctx: &Context, svc: &str, svl: &str) -> Rules {
    if !sp.external_local {
        return Rules::new(format!("jump mark-for-masquerade\ngoto {svc}\n"));
    }
    // Local: the client's address is kept, so only this node's endpoints
    // may answer — except for pods and the node itself, which reach any.
    let mut rules = String::new();
    if let Some(cc) = ctx.cluster_cidr.as_ref().filter(|c| c.is_ipv4()) {
        let _ = writeln!(rules, "ip saddr {cc} goto {svc}");
    }
    let _ = writeln!(rules, "fib saddr type local jump mark-for-masquerade");
    let _ = writeln!(rules, "fib saddr type local goto {svc}");
    let _ = writeln!(rules, "goto {svl}");
    Rules::new(rules)
}

/// The chain `name` (with `head` before) DNATing new connections evenly
/// over `eps`: through the endpoint maps when there are several and no
/// affinity; with rules otherwise.
fn balance(
    f: &mut Fragment,
    sp: &ServicePort,
    (name, shard, slot): (String, u16, u16),
    mut head: String,
    eps: &[&Endpoint],
) {
    let proto = sp.protocol;
    let targets: Arc<[(Ipv4Addr, u16)]> = eps
        .iter()
        .filter_map(|e| Some((v4(e.ip)?, e.port)))
        .collect();
    if let Some(secs) = sp.affinity_seconds {
        // A set of clients per endpoint: a client in one goes back there
        // (and stays for another timeout), a new one is recorded where it
        // is sent.
        let sets: Vec<String> = targets
            .iter()
            .map(|(ip, port)| {
                let addr = format!("{ip}:{port}");
                let secs = secs.to_string();
                named("aff-", &[&sp.name, proto.as_str(), &addr, &secs]).0
            })
            .collect();
        for (set, (ip, port)) in sets.iter().zip(targets.iter()) {
            let _ = writeln!(
                head,
                "ip saddr @{set} meta l4proto {} update @{set} {{ ip saddr }} dnat ip to {ip}:{port}",
                proto.as_str()
            );
            f.affinity.push((set.as_str().into(), secs));
        }
        cascade(&mut head, proto, &targets, &sets);
        f.chains.push((name.into(), Rules::new(head)));
        return;
    }
    if targets.len() < 2 || targets.len() > 1 << SLOT_BITS {
        cascade(&mut head, proto, &targets, &[]);
        f.chains.push((name.into(), Rules::new(head)));
        return;
    }
    let chain: Arc<str> = name.into();
    let mut text = head.clone();
    let _ = writeln!(
        text,
        "meta l4proto {} dnat ip to numgen random mod {} offset {} map @endpoints-{shard}",
        proto.as_str(),
        targets.len(),
        u32::from(slot) << SLOT_BITS
    );
    f.chains.push((chain.clone(), Rules::new(text)));
    f.balances.push(Balance {
        chain,
        shard,
        slot,
        head,
        protocol: proto,
        targets,
    });
}

/// Rules DNATing evenly over `targets`: each takes 1/(n-i) of what is left,
/// so all get 1/n; with affinity, each records the client in its set.
fn cascade(out: &mut String, proto: Protocol, targets: &[(Ipv4Addr, u16)], sets: &[String]) {
    let n = targets.len();
    for (i, (ip, port)) in targets.iter().enumerate() {
        if i + 1 < n {
            let _ = write!(out, "numgen random mod {} 0 ", n - i);
        }
        let _ = write!(out, "meta l4proto {} ", proto.as_str());
        if let Some(set) = sets.get(i) {
            let _ = write!(out, "update @{set} {{ ip saddr }} ");
        }
        let _ = writeln!(out, "dnat ip to {ip}:{port}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, ready: bool, local: bool) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            ready,
            serving: ready,
            terminating: false,
            local,
        }
    }

    fn port(eps: Vec<Endpoint>) -> ServicePort {
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

    fn ctx() -> Context {
        Context {
            cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        }
    }

    fn verdict<'a>(rs: &'a NftRuleset, map: VerdictMap, key: &str) -> Option<&'a str> {
        rs.verdicts.get(&(map, Arc::from(key))).map(|v| &**v)
    }

    fn chains_with<'a>(rs: &'a NftRuleset, prefix: &str) -> Vec<(&'a Arc<str>, &'a Rules)> {
        rs.chains
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }

    #[test]
    fn cluster_ip_is_a_map_element_and_endpoints_are_elements_too() {
        let rs = render(&[port(three_ready_one_not())], &ctx());
        let svc = chains_with(&rs, "svc-");
        assert_eq!(svc.len(), 1);
        let (name, rules) = svc[0];
        assert_eq!(
            verdict(&rs, VerdictMap::ServiceIps, "10.43.0.5 . tcp . 80"),
            Some(format!("goto {name}").as_str())
        );
        let lines: Vec<&str> = rules.lines().collect();
        assert_eq!(
            lines[0],
            "ip daddr 10.43.0.5 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
        );
        let range = &rs.endpoints[name];
        assert_eq!(
            lines[1],
            format!(
                "meta l4proto tcp dnat ip to numgen random mod 3 offset {} map @endpoints-{}",
                range.base, range.shard
            )
        );
        assert_eq!(lines.len(), 2);
        let targets: Vec<String> = range
            .targets
            .iter()
            .map(|(ip, port)| format!("{ip}:{port}"))
            .collect();
        assert_eq!(
            targets,
            ["10.42.0.7:8080", "10.42.1.8:8080", "10.42.1.9:8080"],
            "the unready endpoint gets nothing"
        );
        assert!(rs.hairpin.is_empty());
        // Same input, same rules: the diff of two syncs is empty.
        assert_eq!(rs, render(&[port(three_ready_one_not())], &ctx()));
    }

    fn three_ready_one_not() -> Vec<Endpoint> {
        vec![
            ep("10.42.0.7", true, false),
            ep("10.42.1.8", true, false),
            ep("10.42.1.9", true, false),
            ep("10.42.1.10", false, false),
        ]
    }

    #[test]
    fn no_endpoints_is_refused_and_a_local_policy_drops() {
        let rs = render(&[port(vec![])], &ctx());
        assert_eq!(
            verdict(&rs, VerdictMap::NoEndpointServices, "10.43.0.5 . tcp . 80"),
            Some("goto reject-chain")
        );
        assert!(chains_with(&rs, "svc-").is_empty());
        let mut sp = port(vec![ep("10.42.1.8", true, false)]);
        sp.internal_local = true;
        sp.node_port = Some(30080);
        sp.external_local = true;
        let rs = render(&[sp], &ctx());
        assert_eq!(
            verdict(&rs, VerdictMap::NoEndpointServices, "10.43.0.5 . tcp . 80"),
            Some("drop")
        );
        assert_eq!(
            verdict(&rs, VerdictMap::NoEndpointNodePorts, "tcp . 30080"),
            Some("drop")
        );
    }

    #[test]
    fn node_port_with_local_policy_keeps_the_source() {
        let mut sp = port(vec![
            ep("10.42.0.7", true, true),
            ep("10.42.1.8", true, false),
        ]);
        sp.node_port = Some(30080);
        sp.external_local = true;
        sp.protocol = Protocol::Udp;
        let rs = render(&[sp], &ctx());
        let ext = chains_with(&rs, "ext-");
        let (ext_name, ext_rules) = ext[0];
        assert_eq!(
            verdict(&rs, VerdictMap::NodePorts, "udp . 30080"),
            Some(format!("goto {ext_name}").as_str())
        );
        let svc = chains_with(&rs, "svc-")[0].0;
        let svl = chains_with(&rs, "svl-");
        assert_eq!(
            &**ext_rules,
            format!(
                "ip saddr 10.42.0.0/16 goto {svc}\nfib saddr type local jump mark-for-masquerade\n\
                 fib saddr type local goto {svc}\ngoto {}\n",
                svl[0].0
            )
        );
        // One local endpoint: DNAT straight to it.
        assert_eq!(&**svl[0].1, "meta l4proto udp dnat ip to 10.42.0.7:8080\n");
        assert_eq!(rs.hairpin, BTreeSet::from(["10.42.0.7".parse().unwrap()]));
    }

    #[test]
    fn affinity_sends_a_client_back_and_load_balancers_filter_sources() {
        let mut sp = port(vec![
            ep("10.42.0.7", true, false),
            ep("10.42.1.8", true, false),
        ]);
        sp.affinity_seconds = Some(60);
        sp.load_balancer_ips = vec!["172.29.7.2".parse().unwrap()];
        sp.load_balancer_source_ranges = vec!["192.168.0.0/16".parse().unwrap()];
        sp.node_port = Some(30080);
        let rs = render(&[sp], &ctx());
        assert_eq!(rs.affinity.len(), 2);
        assert!(rs.affinity.values().all(|t| *t == 60));
        assert!(rs.endpoints.is_empty(), "affinity balances with rules");
        let svc = chains_with(&rs, "svc-")[0].1;
        for set in rs.affinity.keys() {
            // The set a client is recorded in is the one checked for it.
            let check =
                format!("ip saddr @{set} meta l4proto tcp update @{set} {{ ip saddr }} dnat");
            assert!(svc.contains(&check), "{}", &**svc);
            assert_eq!(svc.matches(&format!("update @{set} ")).count(), 2);
        }
        assert!(svc.contains("numgen random mod 2 0 meta l4proto tcp update @aff-"));
        let fw = chains_with(&rs, "fw-");
        let ext = chains_with(&rs, "ext-")[0].0;
        assert_eq!(
            &**fw[0].1,
            format!("ip saddr 192.168.0.0/16 goto {ext}\ndrop\n")
        );
        assert_eq!(
            verdict(&rs, VerdictMap::ServiceIps, "172.29.7.2 . tcp . 80"),
            Some(format!("goto {}", fw[0].0).as_str())
        );
        assert_eq!(
            &*rs.chains[ext],
            format!(
                "jump mark-for-masquerade\ngoto {}\n",
                chains_with(&rs, "svc-")[0].0
            )
        );
    }

    /// Two chains hashed to one slot: the smaller name keeps it, the other
    /// balances with rules, whatever order the fragments come in.
    #[test]
    fn a_slot_taken_twice_goes_to_the_smaller_name() {
        let fragment = |name: &str| {
            let targets: Arc<[(Ipv4Addr, u16)]> = Arc::from(vec![
                ("10.42.0.7".parse().unwrap(), 80),
                ("10.42.0.8".parse().unwrap(), 80),
            ]);
            let chain: Arc<str> = name.into();
            Fragment {
                chains: vec![(chain.clone(), Rules::new("map rule\n".into()))],
                balances: vec![Balance {
                    chain,
                    shard: 3,
                    slot: 9,
                    head: "head\n".into(),
                    protocol: Protocol::Tcp,
                    targets,
                }],
                ..Fragment::default()
            }
        };
        let (a, b) = (fragment("svc-a"), fragment("svc-b"));
        let one = assemble(&[&a, &b]);
        assert_eq!(one, assemble(&[&b, &a]));
        assert_eq!(one.endpoints.len(), 1);
        assert_eq!(one.endpoints["svc-a"].base, 9 << SLOT_BITS);
        assert_eq!(&*one.chains["svc-a"], "map rule\n");
        assert_eq!(
            &*one.chains["svc-b"],
            "head\nnumgen random mod 2 0 meta l4proto tcp dnat ip to 10.42.0.7:80\n\
             meta l4proto tcp dnat ip to 10.42.0.8:80\n"
        );
    }
}
