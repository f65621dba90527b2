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
//! and 11 s). With 256 shards the same full sync takes 1.2–1.3 s through
//! `nft -f`, half of it nft parsing text; written as netlink messages
//! (`nft_apply`), about 0.8 s.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use foldhash::HashMap;

use crate::model::{self, Endpoint, Protocol, Refusal, ServicePort};
use crate::nft_expr::{Hook, Rule, Stmt, Verdict};
use crate::rules::{digest, Context};

/// The table everything lives in (family `ip`).
pub const TABLE: &str = "skiff";
/// How many maps the endpoints are spread over.
pub const SHARDS: u16 = 256;
/// A balancing chain's endpoints are the keys `slot << SLOT_BITS` onwards.
const SLOT_BITS: u32 = 16;
/// Packets to masquerade on the way out (kube-proxy's bit).
const MASQ_MARK: u32 = 0x4000;
/// The chain refused traffic goes to (a verdict map can `goto` it).
pub const REJECT_CHAIN: &str = "reject-chain";
/// The set of local endpoints, which may reach themselves.
pub const HAIRPIN_SET: &str = "hairpin";

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

    /// Keyed by protocol and port alone (node ports).
    pub fn by_port(self) -> bool {
        matches!(
            self,
            VerdictMap::NodePorts | VerdictMap::NoEndpointNodePorts
        )
    }
}

/// A verdict map's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// Destination address . protocol . port.
    Destination(Ipv4Addr, Protocol, u16),
    /// Protocol . port (node ports).
    Port(Protocol, u16),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Destination(ip, p, port) => write!(f, "{ip} . {} . {port}", p.as_str()),
            Key::Port(p, port) => write!(f, "{} . {port}", p.as_str()),
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

/// One chain: its hook if it is a base chain, and its rules.
#[derive(Debug, PartialEq, Eq)]
pub struct NftChain {
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
    /// Of the above, so a sync compares chains cheaply.
    pub digest: u64,
}

impl NftChain {
    pub fn new(hook: Option<Hook>, rules: Vec<Rule>) -> Arc<NftChain> {
        let mut h = DefaultHasher::new();
        (hook, &rules).hash(&mut h);
        Arc::new(NftChain {
            hook,
            rules,
            digest: h.finish(),
        })
    }

    fn of(rules: Vec<Rule>) -> Arc<NftChain> {
        NftChain::new(None, rules)
    }
}

/// As nft lists it: the hook line, then a rule per line.
impl fmt::Display for NftChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.hook {
            writeln!(f, "{h}")?;
        }
        for r in &self.rules {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Everything the proxy keeps in its table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NftRuleset {
    pub chains: HashMap<Arc<str>, Arc<NftChain>>,
    /// (map, key) → verdict.
    pub verdicts: HashMap<(VerdictMap, Key), Verdict>,
    /// Balancing chain → its endpoints in the endpoint maps.
    pub endpoints: HashMap<Arc<str>, EndpointRange>,
    /// Local endpoints, which may reach themselves through a Service.
    pub hairpin: BTreeSet<Ipv4Addr>,
    /// ClientIP affinity sets → their timeout in seconds.
    pub affinity: HashMap<Arc<str>, u32>,
}

impl NftRuleset {
    /// Rules (nat, filter): the filter chains are all fixed ones.
    pub fn rule_counts(&self) -> (usize, usize) {
        let all: usize = self.chains.values().map(|c| c.rules.len()).sum();
        let filter: usize = FILTER_CHAINS
            .iter()
            .filter_map(|name| self.chains.get(*name))
            .map(|c| c.rules.len())
            .sum();
        (all - filter, filter)
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
    head: Vec<Rule>,
    protocol: Protocol,
    targets: Arc<[(Ipv4Addr, u16)]>,
}

/// The rules of some service ports (typically one Service's), kept between
/// syncs while the Service and its slices stay as they were.
#[derive(Debug, Default)]
pub struct Fragment {
    /// Balancing chains are here with their endpoints in the maps.
    chains: Vec<(Arc<str>, Arc<NftChain>)>,
    balances: Vec<Balance>,
    verdicts: Vec<(VerdictMap, Key, Verdict)>,
    hairpin: Vec<Ipv4Addr>,
    affinity: Vec<(Arc<str>, u32)>,
}

/// A chain's name (`<prefix><16 hex digits>`) and the endpoint map place
/// it would take (shard, slot), all from one hash of what it is for.
fn named(prefix: &str, parts: &[&str]) -> (Arc<str>, u16, u16) {
    let d = digest(parts);
    let mut name = String::with_capacity(prefix.len() + 16);
    name.push_str(prefix);
    for b in &d[..8] {
        let _ = write!(name, "{b:02x}");
    }
    let shard = u16::from_be_bytes([d[8], d[9]]) % SHARDS;
    let slot = u16::from_be_bytes([d[10], d[11]]);
    (name.into(), shard, slot)
}

fn port_chain(prefix: &str, sp: &ServicePort) -> (Arc<str>, u16, u16) {
    named(prefix, &[&sp.name, sp.protocol.as_str()])
}

/// The endpoint map of `shard`.
pub fn endpoint_map(shard: u16) -> Arc<str> {
    static NAMES: std::sync::LazyLock<Vec<Arc<str>>> = std::sync::LazyLock::new(|| {
        (0..SHARDS)
            .map(|s| Arc::from(format!("endpoints-{s}")))
            .collect()
    });
    NAMES[usize::from(shard)].clone()
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
    for sp in model::in_rule_order(ports) {
        service_port(&mut f, sp, ctx);
    }
    f.hairpin = model::local_endpoint_ips(ports)
        .into_iter()
        .filter_map(v4)
        .collect();
    f
}

fn rule(stmts: impl IntoIterator<Item = Stmt>) -> Rule {
    Rule(stmts.into_iter().collect())
}

fn to(chain: &str) -> Arc<str> {
    Arc::from(chain)
}

/// The chains of the table itself, made once.
static FIXED_CHAINS: std::sync::LazyLock<Vec<(Arc<str>, Arc<NftChain>)>> =
    std::sync::LazyLock::new(|| {
        fixed_chains()
            .into_iter()
            .map(|(name, hook, rules)| (Arc::from(name), NftChain::new(hook, rules)))
            .collect()
    });

/// The rules of the table itself, there with no Service.
fn fixed_chains() -> Vec<(&'static str, Option<Hook>, Vec<Rule>)> {
    let hook = |kind, hook, priority| {
        Some(Hook {
            kind,
            hook,
            priority,
        })
    };
    let jump = |c: &str| rule([Stmt::Jump(to(c))]);
    let new_to = |c: &str| rule([Stmt::CtState { new: true }, Stmt::Jump(to(c))]);
    let by_destination = |m: VerdictMap| rule([Stmt::DestinationVmap(m.name())]);
    let by_node_port =
        |m: VerdictMap| rule([Stmt::FibLocal { saddr: false }, Stmt::PortVmap(m.name())]);
    vec![
        (
            "nat-prerouting",
            hook("nat", "prerouting", -100),
            vec![jump("services")],
        ),
        (
            "nat-output",
            hook("nat", "output", -100),
            vec![jump("services")],
        ),
        (
            "nat-postrouting",
            hook("nat", "postrouting", 100),
            vec![jump("masquerading")],
        ),
        (
            "services",
            None,
            vec![
                by_destination(VerdictMap::ServiceIps),
                by_node_port(VerdictMap::NodePorts),
            ],
        ),
        (
            "masquerading",
            None,
            vec![
                rule([
                    Stmt::CtStatusDnat,
                    Stmt::SourceIsDestinationIn(HAIRPIN_SET),
                    Stmt::Masquerade {
                        fully_random: false,
                    },
                ]),
                rule([Stmt::MarkClear(MASQ_MARK), Stmt::Return]),
                // Cleared, so a packet re-entering the stack is judged afresh.
                rule([Stmt::MarkXor(MASQ_MARK)]),
                rule([Stmt::Masquerade { fully_random: true }]),
            ],
        ),
        (
            "mark-for-masquerade",
            None,
            vec![rule([Stmt::MarkOr(MASQ_MARK)])],
        ),
        (
            "filter-input",
            hook("filter", "input", -10),
            vec![new_to("external-check")],
        ),
        (
            "filter-forward",
            hook("filter", "forward", -10),
            vec![
                rule([Stmt::CtState { new: false }, Stmt::Drop]),
                new_to("cluster-check"),
                new_to("external-check"),
            ],
        ),
        (
            "filter-output",
            hook("filter", "output", -10),
            vec![new_to("cluster-check")],
        ),
        (
            "cluster-check",
            None,
            vec![by_destination(VerdictMap::NoEndpointServices)],
        ),
        (
            "external-check",
            None,
            vec![
                by_destination(VerdictMap::NoEndpointExternal),
                by_node_port(VerdictMap::NoEndpointNodePorts),
            ],
        ),
        (REJECT_CHAIN, None, vec![rule([Stmt::Reject])]),
    ]
}

/// A map for `n` entries.
fn sized<K, V>(n: usize) -> HashMap<K, V> {
    HashMap::with_capacity_and_hasher(n, Default::default())
}

/// The whole rule set from every Service's fragment. Where two fragments
/// give one map key, the first wins; where two balancing chains would take
/// one slot of the endpoint maps, the one with the smaller name does and
/// the other balances with rules — both by the fragments alone, so the
/// result does not depend on the order things happened in.
pub fn assemble(fragments: &[&Fragment]) -> NftRuleset {
    let (chains, balances) = fragments.iter().fold((0, 0), |(c, b), f| {
        (c + f.chains.len(), b + f.balances.len())
    });
    let mut rs = NftRuleset {
        chains: sized(chains + 16),
        verdicts: sized(fragments.len()),
        endpoints: sized(balances),
        ..NftRuleset::default()
    };
    for (name, chain) in FIXED_CHAINS.iter() {
        rs.chains.insert(name.clone(), chain.clone());
    }
    let mut owners: HashMap<(u16, u16), &Arc<str>> = sized(balances);
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
        for (name, chain) in &f.chains {
            rs.chains.insert(name.clone(), chain.clone());
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
                let mut rules = b.head.clone();
                cascade(&mut rules, b.protocol, &b.targets, &[]);
                rs.chains.insert(b.chain.clone(), NftChain::of(rules));
            }
        }
        for (map, key, verdict) in &f.verdicts {
            rs.verdicts
                .entry((*map, *key))
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
    let proto = sp.protocol;
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
    let cluster_cidr = ctx.cluster_cidr.filter(|c| c.is_ipv4());
    let key = |ip: Ipv4Addr| Key::Destination(ip, proto, port);
    let mut verdict = |map: VerdictMap, key: Key, verdict: Verdict| {
        f.verdicts.push((map, key, verdict));
    };
    let refusal = |local_policy: bool| match sp.refusal(local_policy) {
        Refusal::Drop => Verdict::Drop,
        Refusal::Reject => Verdict::Goto(to(REJECT_CHAIN)),
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
            Verdict::Goto(target.clone()),
        );
    }

    // Traffic from outside: external IPs, load-balancer IPs, the node port.
    let node_port_key = |np: u16| Key::Port(proto, np);
    if sp.has_external() {
        if external.is_empty() {
            let refused = refusal(sp.external_local);
            let outside = sp.external_ips.iter().chain(&sp.load_balancer_ips);
            for ip in outside.filter_map(|ip| v4(*ip)) {
                verdict(VerdictMap::NoEndpointExternal, key(ip), refused.clone());
            }
            if let Some(np) = sp.node_port {
                verdict(VerdictMap::NoEndpointNodePorts, node_port_key(np), refused);
            }
        } else {
            for ip in sp.external_ips.iter().filter_map(|ip| v4(*ip)) {
                verdict(VerdictMap::ServiceIps, key(ip), Verdict::Goto(ext.clone()));
            }
            let ranges = &sp.load_balancer_source_ranges;
            let lb_target = if ranges.is_empty() { &ext } else { &fw };
            for ip in sp.load_balancer_ips.iter().filter_map(|ip| v4(*ip)) {
                verdict(
                    VerdictMap::ServiceIps,
                    key(ip),
                    Verdict::Goto(lb_target.clone()),
                );
            }
            if let Some(np) = sp.node_port {
                verdict(
                    VerdictMap::NodePorts,
                    node_port_key(np),
                    Verdict::Goto(ext.clone()),
                );
            }
            if !sp.load_balancer_ips.is_empty() && !ranges.is_empty() {
                let mut rules: Vec<Rule> = ranges
                    .iter()
                    .filter(|r| r.is_ipv4())
                    .map(|r| {
                        rule([
                            Stmt::Saddr {
                                net: *r,
                                negate: false,
                            },
                            Stmt::Goto(ext.clone()),
                        ])
                    })
                    .collect();
                rules.push(rule([Stmt::Drop]));
                f.chains.push((fw, NftChain::of(rules)));
            }
            f.chains
                .push((ext.clone(), external_chain(sp, ctx, &svc, &svl)));
        }
    }

    // The balancing chains.
    if !cluster.is_empty() {
        let mut masq = vec![
            Stmt::DaddrIs(cluster_ip),
            Stmt::L4Proto(proto),
            Stmt::DportIs(port),
        ];
        if let Some(cc) = cluster_cidr {
            masq.push(Stmt::Saddr {
                net: cc,
                negate: true,
            });
        }
        masq.push(Stmt::Jump(to("mark-for-masquerade")));
        balance(f, sp, (svc, shard, slot), vec![Rule(masq)], &cluster);
    }
    if uses_local && !local.is_empty() {
        balance(f, sp, (svl, local_shard, local_slot), Vec::new(), &local);
    }
}

/// `ext-<h>`: external traffic into the service.
fn external_chain(
    sp: &ServicePort,
    ctx: &Context,
    svc: &Arc<str>,
    svl: &Arc<str>,
) -> Arc<NftChain> {
    let masq = || Stmt::Jump(to("mark-for-masquerade"));
    if !sp.external_local {
        return NftChain::of(vec![rule([masq()]), rule([Stmt::Goto(svc.clone())])]);
    }
    // Local: the client's address is kept, so only this node's endpoints
    // may answer — except for pods and the node itself, which reach any.
    let mut rules = Vec::new();
    if let Some(cc) = ctx.cluster_cidr.filter(|c| c.is_ipv4()) {
        rules.push(rule([
            Stmt::Saddr {
                net: cc,
                negate: false,
            },
            Stmt::Goto(svc.clone()),
        ]));
    }
    let local_source = || Stmt::FibLocal { saddr: true };
    rules.push(rule([local_source(), masq()]));
    rules.push(rule([local_source(), Stmt::Goto(svc.clone())]));
    rules.push(rule([Stmt::Goto(svl.clone())]));
    NftChain::of(rules)
}

/// The chain `name` (with `head` before) DNATing new connections evenly
/// over `eps`: through the endpoint maps when there are several and no
/// affinity; with rules otherwise.
fn balance(
    f: &mut Fragment,
    sp: &ServicePort,
    (chain, shard, slot): (Arc<str>, u16, u16),
    mut head: Vec<Rule>,
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
        let sets: Vec<Arc<str>> = targets
            .iter()
            .map(|(ip, port)| {
                let addr = format!("{ip}:{port}");
                let secs = secs.to_string();
                named("aff-", &[&sp.name, proto.as_str(), &addr, &secs]).0
            })
            .collect();
        for (set, (ip, port)) in sets.iter().zip(targets.iter()) {
            head.push(rule([
                Stmt::SaddrInSet(set.clone()),
                Stmt::L4Proto(proto),
                Stmt::RecordSource(set.clone()),
                Stmt::Dnat(*ip, *port),
            ]));
            f.affinity.push((set.clone(), secs));
        }
        cascade(&mut head, proto, &targets, &sets);
        f.chains.push((chain, NftChain::of(head)));
        return;
    }
    if targets.len() < 2 || targets.len() > 1 << SLOT_BITS {
        cascade(&mut head, proto, &targets, &[]);
        f.chains.push((chain, NftChain::of(head)));
        return;
    }
    let mut rules = head.clone();
    rules.push(rule([
        Stmt::L4Proto(proto),
        Stmt::DnatPick {
            modulus: targets.len() as u32,
            offset: u32::from(slot) << SLOT_BITS,
            map: endpoint_map(shard),
        },
    ]));
    f.chains.push((chain.clone(), NftChain::of(rules)));
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
fn cascade(out: &mut Vec<Rule>, proto: Protocol, targets: &[(Ipv4Addr, u16)], sets: &[Arc<str>]) {
    let n = targets.len();
    for (i, (ip, port)) in targets.iter().enumerate() {
        let mut r = Vec::new();
        if i + 1 < n {
            r.push(Stmt::OneIn((n - i) as u32));
        }
        r.push(Stmt::L4Proto(proto));
        if let Some(set) = sets.get(i) {
            r.push(Stmt::RecordSource(set.clone()));
        }
        r.push(Stmt::Dnat(*ip, *port));
        out.push(Rule(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{ep, port};

    fn ctx() -> Context {
        Context {
            cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        }
    }

    fn verdict(rs: &NftRuleset, map: VerdictMap, key: &str) -> Option<String> {
        rs.verdicts
            .iter()
            .find(|((m, k), _)| *m == map && k.to_string() == key)
            .map(|(_, v)| v.to_string())
    }

    fn chains_with<'a>(rs: &'a NftRuleset, prefix: &str) -> Vec<(&'a Arc<str>, String)> {
        rs.chains
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, c)| (k, c.to_string()))
            .collect()
    }

    #[test]
    fn cluster_ip_is_a_map_element_and_endpoints_are_elements_too() {
        let rs = render(&[port(three_ready_one_not())], &ctx());
        let svc = chains_with(&rs, "svc-");
        assert_eq!(svc.len(), 1);
        let (name, rules) = &svc[0];
        assert_eq!(
            verdict(&rs, VerdictMap::ServiceIps, "10.43.0.5 . tcp . 80"),
            Some(format!("goto {name}"))
        );
        let lines: Vec<&str> = rules.lines().collect();
        assert_eq!(
            lines[0],
            "ip daddr 10.43.0.5 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
        );
        let range = &rs.endpoints[&**name];
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
            Some("goto reject-chain".to_string())
        );
        assert!(chains_with(&rs, "svc-").is_empty());
        let mut sp = port(vec![ep("10.42.1.8", true, false)]);
        sp.internal_local = true;
        sp.node_port = Some(30080);
        sp.external_local = true;
        let rs = render(&[sp], &ctx());
        assert_eq!(
            verdict(&rs, VerdictMap::NoEndpointServices, "10.43.0.5 . tcp . 80"),
            Some("drop".to_string())
        );
        assert_eq!(
            verdict(&rs, VerdictMap::NoEndpointNodePorts, "tcp . 30080"),
            Some("drop".to_string())
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
        let (ext_name, ext_rules) = &ext[0];
        assert_eq!(
            verdict(&rs, VerdictMap::NodePorts, "udp . 30080"),
            Some(format!("goto {ext_name}"))
        );
        let svc = chains_with(&rs, "svc-")[0].0;
        let svl = chains_with(&rs, "svl-");
        assert_eq!(
            *ext_rules,
            format!(
                "ip saddr 10.42.0.0/16 goto {svc}\nfib saddr type local jump mark-for-masquerade\n\
                 fib saddr type local goto {svc}\ngoto {}\n",
                svl[0].0
            )
        );
        // One local endpoint: DNAT straight to it.
        assert_eq!(svl[0].1, "meta l4proto udp dnat ip to 10.42.0.7:8080\n");
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
        let svc = chains_with(&rs, "svc-")[0].1.clone();
        for set in rs.affinity.keys() {
            // The set a client is recorded in is the one checked for it.
            let check =
                format!("ip saddr @{set} meta l4proto tcp update @{set} {{ ip saddr }} dnat");
            assert!(svc.contains(&check), "{}", svc);
            assert_eq!(svc.matches(&format!("update @{set} ")).count(), 2);
        }
        assert!(svc.contains("numgen random mod 2 0 meta l4proto tcp update @aff-"));
        let fw = chains_with(&rs, "fw-");
        let ext = chains_with(&rs, "ext-")[0].0;
        assert_eq!(
            fw[0].1,
            format!("ip saddr 192.168.0.0/16 goto {ext}\ndrop\n")
        );
        assert_eq!(
            verdict(&rs, VerdictMap::ServiceIps, "172.29.7.2 . tcp . 80"),
            Some(format!("goto {}", fw[0].0))
        );
        assert_eq!(
            rs.chains[ext].to_string(),
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
                chains: vec![(chain.clone(), NftChain::of(vec![Rule(vec![Stmt::Return])]))],
                balances: vec![Balance {
                    chain,
                    shard: 3,
                    slot: 9,
                    head: vec![Rule(vec![Stmt::Drop])],
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
        assert_eq!(one.chains["svc-a"].to_string(), "return\n");
        assert_eq!(
            one.chains["svc-b"].to_string(),
            "drop\nnumgen random mod 2 0 meta l4proto tcp dnat ip to 10.42.0.7:80\n\
             meta l4proto tcp dnat ip to 10.42.0.8:80\n"
        );
    }
}
