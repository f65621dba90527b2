//! Writing an [`NftRuleset`] into the kernel as one nftables transaction
//! (`nft -f -`: all of it applies, or none). A sync writes what changed
//! since the last one: chains whose rules changed (flushed and refilled),
//! map elements added and removed; a full sync flushes the table's rules
//! and maps and writes everything, keeping the affinity sets' clients.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use skiff_machinery::command::{self, CommandError};

use crate::nftables::{EndpointRange, NftRuleset, VerdictMap, SHARDS, TABLE};

/// A hung nft, not a slow one.
const NFT_LIMIT: Duration = Duration::from_secs(120);

/// One transaction's input and what it does.
#[derive(Debug, Default)]
pub struct NftPlan {
    pub input: String,
    /// Chains declared or refilled.
    pub chains_written: usize,
    /// Chains removed.
    pub chains_deleted: usize,
}

impl NftPlan {
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }
}

/// Objects of ours in the kernel that a full sync must look at besides
/// what it writes (from the kernel, or the last sync).
#[derive(Debug, Default)]
pub struct Present {
    pub chains: Vec<String>,
    pub sets: Vec<String>,
}

/// Declares `chain` with its `rules` in a `table` block being written.
fn chain_block(out: &mut String, chain: &str, rules: &str) {
    let _ = writeln!(out, "\tchain {chain} {{");
    for line in rules.lines() {
        let _ = writeln!(out, "\t\t{line}");
    }
    out.push_str("\t}\n");
}

fn affinity_decl(out: &mut String, set: &str, secs: u32) {
    let _ = writeln!(
        out,
        "\tset {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {secs}s; }}"
    );
}

/// `add element` (or `delete element`) lines for `items`, one statement
/// per map with every element in it.
fn elements<'a>(out: &mut String, op: &str, items: impl IntoIterator<Item = (&'a str, String)>) {
    let mut by_map: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (map, e) in items {
        by_map.entry(map).or_default().push(e);
    }
    for (map, es) in by_map {
        let _ = writeln!(out, "{op} element ip {TABLE} {map} {{ {} }}", es.join(", "));
    }
}

fn endpoint_map(shard: u16) -> String {
    format!("endpoints-{shard}")
}

/// The elements of `range`, from position `from` on (all: 0), as
/// `key : value` (or keys alone).
fn range_elements(range: &EndpointRange, with_values: bool) -> Vec<String> {
    range
        .targets
        .iter()
        .enumerate()
        .map(|(i, (ip, port))| {
            let key = range.base + i as u32;
            if with_values {
                format!("{key} : {ip} . {port}")
            } else {
                key.to_string()
            }
        })
        .collect()
}

/// The transaction taking the kernel from `before` (None: unknown; a full
/// sync) to `rs`. `present` lists what may be in the kernel of ours on a
/// full sync; what `rs` lacks of it is deleted.
pub fn plan(rs: &NftRuleset, before: Option<&NftRuleset>, present: &Present) -> NftPlan {
    match before {
        None => full_plan(rs, present),
        Some(b) => partial_plan(rs, b),
    }
}

fn full_plan(rs: &NftRuleset, present: &Present) -> NftPlan {
    let mut out = String::with_capacity(64 * rs.chains.len() + 40 * rs.endpoints.len() * 10);
    let _ = writeln!(out, "add table ip {TABLE}");
    // Every rule goes: nothing refers to a chain or set after this.
    let _ = writeln!(out, "flush table ip {TABLE}");
    let _ = writeln!(out, "table ip {TABLE} {{");
    for m in VerdictMap::ALL {
        let _ = writeln!(
            out,
            "\tmap {} {{ type {} : verdict; }}",
            m.name(),
            m.key_type()
        );
    }
    for shard in 0..SHARDS {
        let _ = writeln!(
            out,
            "\tmap {} {{ typeof numgen random mod 1 : ip daddr . tcp dport; }}",
            endpoint_map(shard)
        );
    }
    out.push_str("\tset hairpin { type ipv4_addr . ipv4_addr; }\n}\n");
    for m in VerdictMap::ALL {
        let _ = writeln!(out, "flush map ip {TABLE} {}", m.name());
    }
    for shard in 0..SHARDS {
        let _ = writeln!(out, "flush map ip {TABLE} {}", endpoint_map(shard));
    }
    let _ = writeln!(out, "flush set ip {TABLE} hairpin");
    let mut deleted = 0;
    for c in &present.chains {
        if !rs.chains.contains_key(c.as_str()) {
            let _ = writeln!(out, "delete chain ip {TABLE} {c}");
            deleted += 1;
        }
    }
    for s in &present.sets {
        if !rs.affinity.contains_key(s.as_str()) {
            let _ = writeln!(out, "delete set ip {TABLE} {s}");
        }
    }
    let _ = writeln!(out, "table ip {TABLE} {{");
    for (set, secs) in &rs.affinity {
        affinity_decl(&mut out, set, *secs);
    }
    // The endpoints before the rules bound to their maps: either order
    // costs the same walk, this one a single pass per map.
    out.push_str("}\n");
    elements(
        &mut out,
        "add",
        rs.endpoints.values().flat_map(|r| {
            let map = SHARD_NAMES[usize::from(r.shard)].as_str();
            range_elements(r, true).into_iter().map(move |e| (map, e))
        }),
    );
    let _ = writeln!(out, "table ip {TABLE} {{");
    for (name, rules) in &rs.chains {
        chain_block(&mut out, name, rules);
    }
    out.push_str("}\n");
    elements(
        &mut out,
        "add",
        rs.verdicts
            .iter()
            .map(|((m, k), v)| (m.name(), format!("{k} : {v}"))),
    );
    elements(
        &mut out,
        "add",
        rs.hairpin
            .iter()
            .map(|ip| ("hairpin", format!("{ip} . {ip}"))),
    );
    NftPlan {
        input: out,
        chains_written: rs.chains.len(),
        chains_deleted: deleted,
    }
}

/// The endpoint maps' names, made once.
static SHARD_NAMES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| (0..SHARDS).map(endpoint_map).collect());

fn partial_plan(rs: &NftRuleset, b: &NftRuleset) -> NftPlan {
    let mut plan = NftPlan::default();
    let out = &mut plan.input;
    let changed: Vec<(&Arc<str>, &str)> = rs
        .chains
        .iter()
        .filter(|(name, rules)| {
            b.chains
                .get(*name)
                .is_none_or(|old| old.digest != rules.digest)
        })
        .map(|(name, rules)| (name, &**rules))
        .collect();
    let gone: Vec<&Arc<str>> = b
        .chains
        .keys()
        .filter(|name| !rs.chains.contains_key(*name))
        .collect();
    let new_sets: Vec<(&Arc<str>, u32)> = rs
        .affinity
        .iter()
        .filter(|(s, _)| !b.affinity.contains_key(*s))
        .map(|(s, t)| (s, *t))
        .collect();
    let gone_sets: Vec<&Arc<str>> = b
        .affinity
        .keys()
        .filter(|s| !rs.affinity.contains_key(*s))
        .collect();

    // Element changes: what goes (removed or given another value) and
    // what comes.
    let mut del: Vec<(&str, String)> = Vec::new();
    let mut add: Vec<(&str, String)> = Vec::new();
    for ((m, k), v) in &b.verdicts {
        if rs.verdicts.get(&(*m, k.clone())) != Some(v) {
            del.push((m.name(), k.to_string()));
        }
    }
    for ((m, k), v) in &rs.verdicts {
        if b.verdicts.get(&(*m, k.clone())) != Some(v) {
            add.push((m.name(), format!("{k} : {v}")));
        }
    }
    for (chain, old) in &b.endpoints {
        match rs.endpoints.get(chain) {
            Some(new) if new == old => {}
            Some(new) if new.shard == old.shard && new.base == old.base => {
                // Same place: only the positions that differ.
                let map = SHARD_NAMES[usize::from(old.shard)].as_str();
                let n = old.targets.len().max(new.targets.len());
                for i in 0..n {
                    let (o, w) = (old.targets.get(i), new.targets.get(i));
                    if o == w {
                        continue;
                    }
                    let key = old.base + i as u32;
                    if o.is_some() {
                        del.push((map, key.to_string()));
                    }
                    if let Some((ip, port)) = w {
                        add.push((map, format!("{key} : {ip} . {port}")));
                    }
                }
            }
            _ => {
                let map = SHARD_NAMES[usize::from(old.shard)].as_str();
                del.extend(range_elements(old, false).into_iter().map(|e| (map, e)));
            }
        }
    }
    for (chain, new) in &rs.endpoints {
        let moved = match b.endpoints.get(chain) {
            None => true,
            Some(old) => old.shard != new.shard || old.base != new.base,
        };
        if moved {
            let map = SHARD_NAMES[usize::from(new.shard)].as_str();
            add.extend(range_elements(new, true).into_iter().map(|e| (map, e)));
        }
    }
    for ip in b.hairpin.difference(&rs.hairpin) {
        del.push(("hairpin", format!("{ip} . {ip}")));
    }
    for ip in rs.hairpin.difference(&b.hairpin) {
        add.push(("hairpin", format!("{ip} . {ip}")));
    }
    if changed.is_empty() && gone.is_empty() && del.is_empty() && add.is_empty() {
        return plan;
    }

    // New chains and sets exist before anything refers to them.
    let declared: Vec<&&Arc<str>> = changed
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !b.chains.contains_key(**name))
        .collect();
    if !declared.is_empty() || !new_sets.is_empty() {
        let _ = writeln!(out, "table ip {TABLE} {{");
        for name in declared {
            let _ = writeln!(out, "\tchain {name} {{ }}");
        }
        for (set, secs) in &new_sets {
            affinity_decl(out, set, *secs);
        }
        out.push_str("}\n");
    }
    elements(out, "delete", del);
    let refill: HashSet<&str> = changed
        .iter()
        .filter(|(name, _)| b.chains.contains_key(*name))
        .map(|(name, _)| &***name)
        .collect();
    for name in &refill {
        let _ = writeln!(out, "flush chain ip {TABLE} {name}");
    }
    if !changed.is_empty() {
        let _ = writeln!(out, "table ip {TABLE} {{");
        for (name, rules) in &changed {
            chain_block(out, name, rules);
        }
        out.push_str("}\n");
    }
    elements(out, "add", add);
    // Gone chains last: nothing refers to them any more.
    for name in &gone {
        let _ = writeln!(out, "flush chain ip {TABLE} {name}");
    }
    for name in &gone {
        let _ = writeln!(out, "delete chain ip {TABLE} {name}");
    }
    for set in gone_sets {
        let _ = writeln!(out, "delete set ip {TABLE} {set}");
    }
    plan.chains_written = changed.len();
    plan.chains_deleted = gone.len();
    plan
}

async fn nft(args: &[&str], stdin: Option<&[u8]>) -> Result<String, CommandError> {
    command::run_within("nft", args, stdin, NFT_LIMIT).await
}

/// The chains and sets of our table in the kernel (nothing if it has none).
pub async fn present_in_kernel() -> Result<Present, CommandError> {
    let mut present = Present::default();
    if !table_exists().await? {
        return Ok(present);
    }
    // Chain headers only, and sets without their elements: cheap at any
    // size (tens of ms at 20,000 chains).
    let chains = nft(&["list", "chains", "ip"], None).await?;
    present.chains = names_in_table(&chains, "chain");
    let sets = nft(&["-t", "list", "sets", "ip"], None).await?;
    // The affinity sets; the others are fixed and always declared.
    present.sets = names_in_table(&sets, "set")
        .into_iter()
        .filter(|s| s.starts_with("aff-"))
        .collect();
    Ok(present)
}

/// Names of the `kind` (`chain`, `set`) blocks of our table in a listing.
fn names_in_table(listing: &str, kind: &str) -> Vec<String> {
    let header = format!("table ip {TABLE} {{");
    let mut inside = false;
    let mut out = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(['\t', ' ']) {
            inside = line.trim() == header;
            continue;
        }
        if !inside {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() == Some(kind) {
            if let Some(name) = words.next() {
                out.push(name.to_string());
            }
        }
    }
    out
}

async fn table_exists() -> Result<bool, CommandError> {
    let tables = nft(&["list", "tables", "ip"], None).await?;
    Ok(tables
        .lines()
        .any(|l| l.trim() == format!("table ip {TABLE}")))
}

/// The kernel-side state the sync loop carries between syncs: what the
/// last successful transaction left there.
#[derive(Debug, Default)]
pub struct NftKernel {
    applied: Option<NftRuleset>,
}

impl NftKernel {
    /// Writes `rs`: what changed, or everything when `full` (or when the
    /// last sync failed, as the kernel's state is then unknown).
    pub async fn sync(&mut self, rs: NftRuleset, full: bool) -> Result<NftPlan, CommandError> {
        let before = self.applied.take();
        let plan = match (before, full) {
            (Some(b), false) => plan(&rs, Some(&b), &Present::default()),
            (Some(b), true) => {
                let present = Present {
                    chains: b.chains.keys().map(|c| c.to_string()).collect(),
                    sets: b.affinity.keys().map(|s| s.to_string()).collect(),
                };
                plan(&rs, None, &present)
            }
            (None, _) => plan(&rs, None, &present_in_kernel().await?),
        };
        if !plan.is_empty() {
            nft(&["-f", "-"], Some(plan.input.as_bytes())).await?;
        }
        self.applied = Some(rs);
        Ok(plan)
    }

    /// Whether our table still has its hooks (a `nft flush ruleset` or a
    /// firewall reload removes them); false makes the loop write all.
    pub async fn intact() -> bool {
        nft(&["list", "chain", "ip", TABLE, "nat-prerouting"], None)
            .await
            .is_ok()
    }

    /// Removes our table (`skiff proxy --cleanup`, the other mode's start,
    /// and tests).
    pub async fn remove_all() -> Result<(), CommandError> {
        if table_exists().await? {
            nft(&["delete", "table", "ip", TABLE], None).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol, ServicePort};
    use crate::nftables;
    use crate::rules::Context;

    fn web(ips: &[&str]) -> NftRuleset {
        let sp = ServicePort {
            name: "default/web".into(),
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
            endpoints: ips
                .iter()
                .map(|ip| Endpoint {
                    ip: ip.parse().unwrap(),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    local: false,
                })
                .collect(),
        };
        nftables::render(&[sp], &Context::default())
    }

    #[test]
    fn a_moved_endpoint_is_one_element_and_a_new_one_rewrites_one_chain() {
        let a = web(&["10.42.0.1", "10.42.0.2", "10.42.0.3"]);
        assert!(plan(&a, Some(&a), &Present::default()).is_empty());
        let range = a.endpoints.values().next().unwrap().clone();
        let map = format!("endpoints-{}", range.shard);
        let third = range.base + 2;

        let b = web(&["10.42.0.1", "10.42.0.2", "10.42.0.9"]);
        let p = plan(&b, Some(&a), &Present::default());
        assert_eq!(p.chains_written, 0);
        assert_eq!(
            p.input,
            format!(
                "delete element ip skiff {map} {{ {third} }}\n\
                 add element ip skiff {map} {{ {third} : 10.42.0.9 . 8080 }}\n"
            )
        );

        let c = web(&["10.42.0.1", "10.42.0.2", "10.42.0.3", "10.42.0.4"]);
        let p = plan(&c, Some(&a), &Present::default());
        assert_eq!((p.chains_written, p.chains_deleted), (1, 0));
        assert!(p.input.contains("flush chain ip skiff svc-"), "{}", p.input);
        assert!(
            p.input.contains("numgen random mod 4 offset"),
            "{}",
            p.input
        );
        assert!(p
            .input
            .contains(&format!("{} : 10.42.0.4 . 8080", range.base + 3)));

        // No endpoint left: the chain goes after what referred to it, and
        // the Service is refused instead.
        let d = web(&[]);
        let p = plan(&d, Some(&a), &Present::default());
        assert_eq!((p.chains_written, p.chains_deleted), (0, 1));
        let at = |s: &str| {
            p.input
                .find(s)
                .unwrap_or_else(|| panic!("{s} in {}", p.input))
        };
        assert!(
            at("delete element ip skiff service-ips { 10.43.0.5 . tcp . 80 }") < at("delete chain")
        );
        assert!(p
            .input
            .contains("add element ip skiff no-endpoint-services { 10.43.0.5 . tcp . 80 : goto reject-chain }"));
    }

    #[test]
    fn a_full_sync_flushes_all_and_removes_what_is_gone() {
        let a = web(&["10.42.0.1", "10.42.0.2"]);
        let present = Present {
            chains: vec!["svc-old".into(), "services".into()],
            sets: vec!["aff-old".into()],
        };
        let p = plan(&a, None, &present);
        assert!(p
            .input
            .starts_with("add table ip skiff\nflush table ip skiff\n"));
        assert!(p.input.contains("delete chain ip skiff svc-old\n"));
        assert!(!p.input.contains("delete chain ip skiff services\n"));
        assert!(p.input.contains("delete set ip skiff aff-old\n"));
        assert_eq!(p.chains_deleted, 1);
        assert!(p
            .input
            .contains("\tchain nat-prerouting {\n\t\ttype nat hook prerouting"));
    }

    #[test]
    fn names_of_our_table_only() {
        let listing = "table ip nat {\n\tchain x {\n\t}\n}\ntable ip skiff {\n\tchain svc-ab {\n\t}\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t}\n}\n";
        assert_eq!(
            names_in_table(listing, "chain"),
            ["svc-ab", "nat-prerouting"]
        );
        let sets =
            "table ip skiff {\n\tset aff-1 {\n\t\ttype ipv4_addr\n\t}\n\tset hairpin {\n\t}\n}\n";
        assert_eq!(names_in_table(sets, "set"), ["aff-1", "hairpin"]);
    }
}
