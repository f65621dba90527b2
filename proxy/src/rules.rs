//! The iptables rules for a set of service ports, shaped as kube-proxy's
//! iptables mode shapes them, under skiff's own chain names:
//!
//! - nat `SKIFF-SERVICES` (from PREROUTING and OUTPUT) matches each cluster
//!   IP, external IP and load-balancer IP and port; its last rule sends
//!   traffic for the node's own addresses to `SKIFF-NODEPORTS`.
//! - `SKIFF-SVC-<h>` DNATs to the cluster endpoints, balanced with
//!   `statistic --mode random` (each rule takes 1/(n-i) of what is left, so
//!   all get 1/n), ClientIP affinity first (`recent`, one list per
//!   endpoint); `SKIFF-SVL-<h>` does so over the node's own endpoints for
//!   the `Local` policies; `SKIFF-EXT-<h>` is where external traffic enters
//!   (marked for masquerade, or kept with its source for
//!   externalTrafficPolicy Local); `SKIFF-FW-<h>` applies
//!   loadBalancerSourceRanges.
//! - nat `SKIFF-PROXY-POSTROUTING` masquerades marked traffic, and hairpin
//!   traffic (a pod reaching itself through its Service: source and
//!   destination the same local endpoint).
//!
//! Unlike kube-proxy there is no chain per endpoint: iptables-nft spends
//! time superlinear in the chains of one restore (a full sync of 10,000
//! Services of 10 endpoints, 110,000 chains, took over five minutes), so
//! endpoints are DNAT targets of the balancing chain itself.
//! - filter `SKIFF-PROXY-SERVICES` / `SKIFF-EXTERNAL-SERVICES` REJECT
//!   traffic to services without endpoints at once (DROP when only a `Local`
//!   policy leaves none), `SKIFF-PROXY-FORWARD` accepts marked and
//!   established service traffic.
//!
//! `<h>` is a hash of the service port (and endpoint), so a chain keeps its
//! name across syncs and only chains whose rules changed are rewritten.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use skiff_machinery::cidr::Cidr;

use crate::model::{self, Endpoint, Refusal, ServicePort};

pub const SERVICES: &str = "SKIFF-SERVICES";
pub const NODEPORTS: &str = "SKIFF-NODEPORTS";
pub const POSTROUTING: &str = "SKIFF-PROXY-POSTROUTING";
pub const MARK_MASQ: &str = "SKIFF-MARK-MASQ";
pub const FILTER_SERVICES: &str = "SKIFF-PROXY-SERVICES";
pub const EXTERNAL_SERVICES: &str = "SKIFF-EXTERNAL-SERVICES";
pub const FORWARD: &str = "SKIFF-PROXY-FORWARD";
pub const FIREWALL: &str = "SKIFF-PROXY-FIREWALL";

/// Prefixes of the per-service chains: any chain of ours so named that the
/// current rules lack is stale and removed.
pub const SERVICE_CHAIN_PREFIXES: [&str; 4] =
    ["SKIFF-SVC-", "SKIFF-SVL-", "SKIFF-EXT-", "SKIFF-FW-"];

/// Packets to masquerade on the way out (kube-proxy's bit).
const MASQ_MARK: &str = "0x4000";
/// Packets a load balancer's source ranges refuse.
const DROP_MARK: &str = "0x8000";

/// One chain's rules (`-A` lines, in order), frozen, with the digest a
/// sync compares to tell whether the kernel's copy is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    text: Arc<str>,
    pub digest: u64,
    /// How many rules (lines): counted once, as a sync reports the total.
    pub count: usize,
}

impl Rules {
    pub fn new(text: String) -> Rules {
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        Rules {
            digest: h.finish(),
            count: text.bytes().filter(|b| *b == b'\n').count(),
            text: text.into(),
        }
    }
}

impl std::ops::Deref for Rules {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

/// The chains of one table: name → its rules. (Hashed, not ordered: a
/// sync assembles 10,000 chains or more and writes a few.)
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    pub chains: HashMap<Arc<str>, Rules>,
}

impl Table {
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.count).sum()
    }
}

/// Everything the proxy keeps in the kernel, for one IP family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub nat: Table,
    pub filter: Table,
}

/// A table being written: chain → its rules so far.
#[derive(Debug, Default)]
struct Builder {
    chains: BTreeMap<String, String>,
}

impl Builder {
    fn chain(&mut self, name: &str) -> &mut String {
        if !self.chains.contains_key(name) {
            self.chains.insert(name.to_string(), String::new());
        }
        self.chains.get_mut(name).expect("inserted above")
    }

    /// Appends one rule (`args` after `-A <chain>`).
    fn add(&mut self, chain: &str, args: std::fmt::Arguments) {
        let c = self.chain(chain);
        let _ = writeln!(c, "-A {chain} {args}");
    }

    fn take(&mut self, chain: &str) -> String {
        self.chains.remove(chain).unwrap_or_default()
    }

    fn finish(self) -> Table {
        Table {
            chains: self
                .chains
                .into_iter()
                .map(|(k, v)| (Arc::from(k), Rules::new(v)))
                .collect(),
        }
    }
}

/// Both tables being written.
#[derive(Debug, Default)]
struct Draft {
    nat: Builder,
    filter: Builder,
}

/// The rules of some service ports (typically one Service's), kept between
/// syncs while the Service and its slices stay as they were: their own
/// chains, and their lines in the shared chains.
#[derive(Debug, Default)]
pub struct Fragment {
    chains: Vec<(Arc<str>, Rules)>,
    services: String,
    nodeports: String,
    filter_services: String,
    filter_external: String,
    /// Local endpoints, which may reach themselves through the service.
    hairpin: Vec<IpAddr>,
}

/// What the rules depend on besides the services.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Pod traffic (from inside it) to a cluster IP is not masqueraded.
    pub cluster_cidr: Option<Cidr>,
}

/// A hash of what a chain is for (`parts`), stable across syncs and
/// restarts, so the chain keeps its name.
pub(crate) fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

fn hash_name(prefix: &str, parts: &[&str]) -> String {
    let mut name = String::with_capacity(prefix.len() + 16);
    name.push_str(prefix);
    for b in &digest(parts)[..8] {
        let _ = write!(name, "{b:02X}");
    }
    name
}

fn port_chain(prefix: &str, sp: &ServicePort) -> String {
    hash_name(prefix, &[&sp.name, sp.protocol.as_str()])
}

/// The `recent` list remembering the clients sent to `ep` (affinity).
fn affinity_list(sp: &ServicePort, ep: &Endpoint) -> String {
    hash_name(
        "SKIFF-SEP-",
        &[&sp.name, sp.protocol.as_str(), &endpoint_addr(ep)],
    )
}

fn endpoint_addr(ep: &Endpoint) -> String {
    match ep.ip {
        IpAddr::V4(ip) => format!("{ip}:{}", ep.port),
        IpAddr::V6(ip) => format!("[{ip}]:{}", ep.port),
    }
}

fn host(ip: IpAddr) -> Cidr {
    Cidr::host(ip)
}

/// The rules for `ports` (any order; rules come out sorted by name).
pub fn render(ports: &[ServicePort], ctx: &Context) -> Ruleset {
    assemble(&[&fragment(ports, ctx)])
}

/// The rules of `ports` alone.
pub fn fragment(ports: &[ServicePort], ctx: &Context) -> Fragment {
    let mut d = Draft::default();
    for sp in model::in_rule_order(ports) {
        service_port(&mut d, sp, ctx);
    }
    Fragment {
        services: d.nat.take(SERVICES),
        nodeports: d.nat.take(NODEPORTS),
        filter_services: d.filter.take(FILTER_SERVICES),
        filter_external: d.filter.take(EXTERNAL_SERVICES),
        chains: d
            .nat
            .chains
            .into_iter()
            .map(|(k, v)| (Arc::from(k), Rules::new(v)))
            .collect(),
        hairpin: model::local_endpoint_ips(ports),
    }
}

/// The whole rule set from every service's fragment, in the given order.
pub fn assemble(fragments: &[&Fragment]) -> Ruleset {
    let mut d = Draft::default();
    let nat = &mut d.nat;
    let filter = &mut d.filter;
    // The fixed chains, present even with no service.
    for c in [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ] {
        nat.chain(c);
    }
    for c in [FILTER_SERVICES, EXTERNAL_SERVICES, FORWARD, FIREWALL] {
        filter.chain(c);
    }
    let hairpin: std::collections::BTreeSet<IpAddr> = fragments
        .iter()
        .flat_map(|f| f.hairpin.iter().copied())
        .collect();
    for ip in hairpin {
        let h = host(ip);
        nat.add(
            POSTROUTING,
            format_args!("-m comment --comment \"skiff hairpin\" -s {h} -d {h} -j MASQUERADE"),
        );
    }
    nat.add(
        POSTROUTING,
        format_args!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
    );
    // Clear the bit, so a packet re-entering the stack is judged afresh.
    nat.add(POSTROUTING, format_args!("-j MARK --xor-mark {MASQ_MARK}"));
    nat.add(
        POSTROUTING,
        format_args!(
            "-m comment --comment \"skiff service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        ),
    );
    nat.add(MARK_MASQ, format_args!("-j MARK --or-mark {MASQ_MARK}"));
    filter.add(
        FORWARD,
        format_args!("-m conntrack --ctstate INVALID -j DROP"),
    );
    filter.add(
        FORWARD,
        format_args!(
            "-m comment --comment \"skiff forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
        ),
    );
    filter.add(
        FORWARD,
        format_args!(
            "-m comment --comment \"skiff forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ),
    );
    filter.add(
        FIREWALL,
        format_args!(
            "-m comment --comment \"skiff load balancer source ranges\" -m mark --mark {DROP_MARK}/{DROP_MARK} -j DROP"
        ),
    );
    for f in fragments {
        nat.chain(SERVICES).push_str(&f.services);
        nat.chain(NODEPORTS).push_str(&f.nodeports);
        filter.chain(FILTER_SERVICES).push_str(&f.filter_services);
        filter.chain(EXTERNAL_SERVICES).push_str(&f.filter_external);
    }
    nat.add(
        SERVICES,
        format_args!(
            "-m comment --comment \"skiff service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j {NODEPORTS}"
        ),
    );
    let mut rs = Ruleset {
        nat: d.nat.finish(),
        filter: d.filter.finish(),
    };
    for f in fragments {
        for (name, rules) in &f.chains {
            rs.nat.chains.insert(name.clone(), rules.clone());
        }
    }
    rs
}

fn service_port(rs: &mut Draft, sp: &ServicePort, ctx: &Context) {
    let name = &sp.name;
    let proto = sp.protocol.as_str();
    let port = sp.port;
    let cluster = sp.cluster_endpoints();
    let local = sp.local_endpoints();
    let internal = sp.internal_endpoints();
    let external = sp.external_endpoints();
    let svc = port_chain("SKIFF-SVC-", sp);
    let svl = port_chain("SKIFF-SVL-", sp);
    let ext = port_chain("SKIFF-EXT-", sp);
    let fw = port_chain("SKIFF-FW-", sp);
    let uses_local = sp.internal_local || sp.external_local;

    let refusal = |local_policy: bool| match sp.refusal(local_policy) {
        Refusal::Drop => ("has no local endpoints", "DROP"),
        Refusal::Reject => ("has no endpoints", "REJECT"),
    };

    // Traffic to the cluster IP.
    let cip = host(sp.cluster_ip);
    if internal.is_empty() {
        let (why, target) = refusal(sp.internal_local);
        rs.filter.add(FILTER_SERVICES, format_args!(
            "-m comment --comment \"{name} {why}\" -m {proto} -p {proto} -d {cip} --dport {port} -j {target}"
        ));
    } else {
        let target = if sp.internal_local { &svl } else { &svc };
        rs.nat.add(SERVICES, format_args!(
            "-m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {cip} --dport {port} -j {target}"
        ));
    }

    // Traffic from outside: external IPs, load-balancer IPs, the node port.
    if sp.has_external() {
        if external.is_empty() {
            let (why, target) = refusal(sp.external_local);
            for ip in &sp.external_ips {
                let d = host(*ip);
                rs.filter.add(EXTERNAL_SERVICES, format_args!(
                    "-m comment --comment \"{name} {why}\" -m {proto} -p {proto} -d {d} --dport {port} -j {target}"
                ));
            }
            for ip in &sp.load_balancer_ips {
                let d = host(*ip);
                rs.filter.add(EXTERNAL_SERVICES, format_args!(
                    "-m comment --comment \"{name} {why}\" -m {proto} -p {proto} -d {d} --dport {port} -j {target}"
                ));
            }
            if let Some(np) = sp.node_port {
                rs.filter.add(EXTERNAL_SERVICES, format_args!(
                    "-m comment --comment \"{name} {why}\" -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {np} -j {target}"
                ));
            }
        } else {
            for ip in &sp.external_ips {
                let d = host(*ip);
                rs.nat.add(SERVICES, format_args!(
                    "-m comment --comment \"{name} external IP\" -m {proto} -p {proto} -d {d} --dport {port} -j {ext}"
                ));
            }
            let lb_target = if sp.load_balancer_source_ranges.is_empty() {
                &ext
            } else {
                &fw
            };
            for ip in &sp.load_balancer_ips {
                let d = host(*ip);
                rs.nat.add(SERVICES, format_args!(
                    "-m comment --comment \"{name} loadbalancer IP\" -m {proto} -p {proto} -d {d} --dport {port} -j {lb_target}"
                ));
            }
            if !sp.load_balancer_ips.is_empty() && !sp.load_balancer_source_ranges.is_empty() {
                for range in &sp.load_balancer_source_ranges {
                    rs.nat.add(
                        &fw,
                        format_args!(
                            "-m comment --comment \"{name} loadbalancer IP\" -s {range} -j {ext}"
                        ),
                    );
                }
                rs.nat.add(&fw, format_args!(
                    "-m comment --comment \"other traffic to {name} will be dropped\" -j MARK --set-xmark {DROP_MARK}/{DROP_MARK}"
                ));
            }
            if let Some(np) = sp.node_port {
                rs.nat.add(
                    NODEPORTS,
                    format_args!(
                        "-m comment --comment \"{name}\" -m {proto} -p {proto} --dport {np} -j {ext}"
                    ),
                );
            }
            external_chain(rs, sp, ctx, &ext, &svc, &svl);
        }
    }

    // The balancing chains and the endpoint chains they jump to.
    if !cluster.is_empty() {
        if let Some(cc) = &ctx.cluster_cidr {
            rs.nat.add(&svc, format_args!(
                "-m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {cip} --dport {port} ! -s {cc} -j {MARK_MASQ}"
            ));
        } else {
            rs.nat.add(&svc, format_args!(
                "-m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {cip} --dport {port} -j {MARK_MASQ}"
            ));
        }
        balance(rs, sp, &svc, &cluster);
    }
    if uses_local && !local.is_empty() {
        balance(rs, sp, &svl, &local);
    }
}

/// `SKIFF-EXT-<h>`: external traffic into the service.
fn external_chain(
    rs: &mut Draft,
    sp: &ServicePort,
    ctx: &Context,
    ext: &str,
    svc: &str,
    svl: &str,
) {
    let name = &sp.name;
    if !sp.external_local {
        rs.nat.add(ext, format_args!(
            "-m comment --comment \"masquerade traffic for {name} external destinations\" -j {MARK_MASQ}"
        ));
        rs.nat.add(ext, format_args!("-j {svc}"));
        return;
    }
    // Local: the client's address is kept, so only this node's endpoints
    // may answer — except for pods and the node itself, which reach any.
    if let Some(cc) = &ctx.cluster_cidr {
        rs.nat.add(
            ext,
            format_args!(
            "-m comment --comment \"pod traffic for {name} external destinations\" -s {cc} -j {svc}"
        ),
        );
    }
    rs.nat.add(ext, format_args!(
        "-m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {MARK_MASQ}"
    ));
    rs.nat.add(ext, format_args!(
        "-m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc}"
    ));
    rs.nat.add(ext, format_args!("-j {svl}"));
}

/// Rules in `chain` DNATing new connections evenly over `eps`, back to
/// the endpoint a client last went to first when the service has ClientIP
/// affinity.
///
/// These are most of the rules (one per endpoint), and nf_tables walks every
/// rule reachable from a base chain on each commit that adds one, so they
/// are kept lean: no comment (iptables-nft makes it a match of its own, 256
/// bytes; the address is in the rule anyway, and the chain's first rule
/// names the service, as kube-proxy does for its endpoint rules in large
/// clusters) and no `-m tcp` without options (a compat match, where `-p`
/// alone is native). 10,000 Services × 10 endpoints: one Service rewritten
/// in 117 instead of 173 ms.
fn balance(rs: &mut Draft, sp: &ServicePort, chain: &str, eps: &[&Endpoint]) {
    let proto = sp.protocol.as_str();
    if let Some(secs) = sp.affinity_seconds {
        for ep in eps {
            let list = affinity_list(sp, ep);
            let addr = endpoint_addr(ep);
            let mask = full_mask(ep.ip);
            rs.nat.add(chain, format_args!(
                "-m recent --name {list} --mask {mask} --rsource --rcheck --seconds {secs} --reap -p {proto} -j DNAT --to-destination {addr}"
            ));
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let addr = endpoint_addr(ep);
        // Matches run in order: the client is recorded only when chosen.
        let pick = if i + 1 < n {
            format!(
                "-m statistic --mode random --probability {:.10} ",
                1.0 / (n - i) as f64
            )
        } else {
            String::new()
        };
        let record = match sp.affinity_seconds {
            Some(_) => format!(
                "-m recent --set --name {} --mask {} --rsource ",
                affinity_list(sp, ep),
                full_mask(ep.ip)
            ),
            None => String::new(),
        };
        rs.nat.add(
            chain,
            format_args!("{pick}{record}-p {proto} -j DNAT --to-destination {addr}"),
        );
    }
}

/// The `recent` match's mask for a whole address of `ip`'s family.
fn full_mask(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "255.255.255.255"
    } else {
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
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

    fn chain_with<'a>(t: &'a Table, prefix: &str) -> Vec<(&'a Arc<str>, &'a Rules)> {
        t.chains
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }

    #[test]
    fn cluster_ip_balances_evenly_over_ready_endpoints() {
        let sp = port(vec![
            ep("10.42.0.7", true, false),
            ep("10.42.1.8", true, false),
            ep("10.42.1.9", true, false),
            ep("10.42.1.10", false, false),
        ]);
        let rs = render(&[sp], &ctx());
        let services = &rs.nat.chains[SERVICES];
        assert!(services.contains(
            "-A SKIFF-SERVICES -m comment --comment \"default/web:http cluster IP\" -m tcp -p tcp -d 10.43.0.5/32 --dport 80 -j SKIFF-SVC-"
        ));
        assert!(services
            .lines()
            .last()
            .unwrap()
            .ends_with("-m addrtype --dst-type LOCAL -j SKIFF-NODEPORTS"));
        let svc = chain_with(&rs.nat, "SKIFF-SVC-");
        assert_eq!(svc.len(), 1);
        let lines: Vec<&str> = svc[0].1.lines().collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].contains("! -s 10.42.0.0/16 -j SKIFF-MARK-MASQ"));
        assert!(lines[1].contains("--probability 0.3333333333"));
        assert!(lines[2].contains("--probability 0.5000000000"));
        assert!(!lines[3].contains("statistic"));
        assert!(lines[1].ends_with(" -p tcp -j DNAT --to-destination 10.42.0.7:8080"));
        // Endpoint rules carry no comment: the kernel walks every one of
        // them on each commit (see `balance`).
        assert!(!lines[1].contains("comment"), "{}", lines[1]);
        assert!(
            !svc[0].1.contains("10.42.1.10"),
            "the unready endpoint gets nothing"
        );
        assert!(rs.filter.chains[FILTER_SERVICES].is_empty());
        // No local endpoint, no hairpin rule.
        assert!(!rs.nat.chains[POSTROUTING].contains("hairpin"));
    }

    #[test]
    fn no_endpoints_is_refused_and_names_are_stable() {
        let rs = render(&[port(vec![])], &ctx());
        assert!(rs.filter.chains[FILTER_SERVICES].contains(
            "\"default/web:http has no endpoints\" -m tcp -p tcp -d 10.43.0.5/32 --dport 80 -j REJECT"
        ));
        assert!(chain_with(&rs.nat, "SKIFF-SVC-").is_empty());
        // Same input, same chains: the diff of two syncs is empty.
        let a = render(&[port(vec![ep("10.42.0.7", true, false)])], &ctx());
        let b = render(&[port(vec![ep("10.42.0.7", true, false)])], &ctx());
        assert_eq!(a, b);
    }

    #[test]
    fn node_port_with_local_policy_keeps_the_source() {
        let mut sp = port(vec![
            ep("10.42.0.7", true, true),
            ep("10.42.1.8", true, false),
        ]);
        sp.node_port = Some(30080);
        sp.external_local = true;
        let rs = render(&[sp.clone()], &ctx());
        assert!(rs.nat.chains[NODEPORTS].contains("--dport 30080 -j SKIFF-EXT-"));
        let ext = chain_with(&rs.nat, "SKIFF-EXT-");
        let ext_rules = ext[0].1;
        assert!(ext_rules.contains("-s 10.42.0.0/16 -j SKIFF-SVC-"));
        assert!(ext_rules.lines().last().unwrap().contains("-j SKIFF-SVL-"));
        assert!(!ext_rules.contains("masquerade traffic for"));
        let svl = chain_with(&rs.nat, "SKIFF-SVL-");
        assert_eq!(svl[0].1.lines().count(), 1, "only the local endpoint");
        // A local pod reaching itself through the service is masqueraded.
        assert!(rs.nat.chains[POSTROUTING].starts_with(
            "-A SKIFF-PROXY-POSTROUTING -m comment --comment \"skiff hairpin\" -s 10.42.0.7/32 -d 10.42.0.7/32 -j MASQUERADE\n"
        ));
        // No local endpoint: external traffic is dropped, not refused.
        sp.endpoints = vec![ep("10.42.1.8", true, false)];
        let rs = render(&[sp], &ctx());
        assert!(rs.filter.chains[EXTERNAL_SERVICES]
            .contains("has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP"));
    }

    #[test]
    fn cluster_policy_node_port_masquerades_and_affinity_sticks() {
        let mut sp = port(vec![
            ep("10.42.0.7", true, false),
            ep("10.42.1.8", true, false),
        ]);
        sp.node_port = Some(30080);
        sp.affinity_seconds = Some(60);
        sp.load_balancer_ips = vec!["172.29.7.2".parse().unwrap()];
        sp.load_balancer_source_ranges = vec!["192.168.0.0/16".parse().unwrap()];
        let rs = render(&[sp], &ctx());
        let ext = chain_with(&rs.nat, "SKIFF-EXT-");
        assert!(ext[0].1.starts_with("-A SKIFF-EXT-"));
        assert!(ext[0].1.contains("-j SKIFF-MARK-MASQ\n"));
        let svc = chain_with(&rs.nat, "SKIFF-SVC-");
        let affinity: Vec<&str> = svc[0]
            .1
            .lines()
            .filter(|l| l.contains("--rcheck --seconds 60 --reap"))
            .collect();
        assert_eq!(affinity.len(), 2);
        // The list a client is recorded in is the one checked for it.
        for l in &affinity {
            let list = l
                .split("--name ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            assert!(svc[0]
                .1
                .contains(&format!("-m recent --set --name {list} ")));
        }
        let fw = chain_with(&rs.nat, "SKIFF-FW-");
        assert!(fw[0].1.contains("-s 192.168.0.0/16 -j SKIFF-EXT-"));
        assert!(rs.nat.chains[SERVICES].contains("\"default/web:http loadbalancer IP\" -m tcp -p tcp -d 172.29.7.2/32 --dport 80 -j SKIFF-FW-"));
    }

    #[test]
    fn chain_names_fit_iptables() {
        let sp = port(vec![ep("10.42.0.7", true, false)]);
        let rs = render(&[sp], &ctx());
        for name in rs.nat.chains.keys().chain(rs.filter.chains.keys()) {
            assert!(name.len() <= 28, "{name}");
        }
    }
}
