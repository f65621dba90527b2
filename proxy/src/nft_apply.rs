//! Writing an [`NftRuleset`] into the kernel as one nf_tables transaction,
//! over netlink (all of it applies, or none). A sync writes what changed
//! since the last one: chains whose rules changed (flushed and refilled),
//! map elements added and removed; a full sync flushes the table's rules
//! and maps and writes everything, keeping the affinity sets' clients.
//! A plan prints as the nft script that does the same (`nft -f` reads it).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, LazyLock};

use crate::nfnetlink::{
    string_attr, Attrs, Batch, NetlinkError, Socket, NLM_F_APPEND, NLM_F_CREATE,
};
use crate::nft_expr::{Hook, Verdict};
use crate::nftables::{
    endpoint_map, EndpointRange, Key, NftChain, NftRuleset, VerdictMap, HAIRPIN_SET, SHARDS, TABLE,
};

/// A map or set of the table, and what its elements are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SetKind {
    Verdicts(VerdictMap),
    /// Slot → endpoint address . port.
    Endpoints,
    /// Local endpoint . itself.
    Hairpin,
    /// Clients, forgotten after the timeout (seconds).
    Affinity(u32),
}

/// One element of a map or set.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Verdict(Key, Verdict),
    Endpoint(u32, (Ipv4Addr, u16)),
    Hairpin(Ipv4Addr),
}

/// One step of a transaction.
#[derive(Debug)]
enum Op {
    AddTable,
    /// Removes every rule of the table.
    FlushTable,
    AddSet(Arc<str>, SetKind),
    FlushSet(Arc<str>, SetKind),
    DeleteSet(Arc<str>),
    AddChain(Arc<str>, Option<Hook>),
    FlushChain(Arc<str>),
    DeleteChain(Arc<str>),
    AddRules(Arc<str>, Arc<NftChain>),
    /// Add (true) or delete elements of a map or set; deletes carry keys.
    Elements(bool, Arc<str>, Vec<Elem>),
}

/// One transaction and what it does.
#[derive(Debug, Default)]
pub struct NftPlan {
    ops: Vec<Op>,
    /// Chains declared or refilled.
    pub chains_written: usize,
    /// Chains removed.
    pub chains_deleted: usize,
}

impl NftPlan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Objects of ours in the kernel that a full sync must look at besides
/// what it writes (from the kernel, or the last sync).
#[derive(Debug, Default)]
pub struct Present {
    pub chains: Vec<String>,
    pub sets: Vec<String>,
}

/// The names of the fixed maps and sets, made once: a sync names one per
/// element it writes.
static VERDICT_MAP_NAMES: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    VerdictMap::ALL
        .iter()
        .map(|m| Arc::from(m.name()))
        .collect()
});
static HAIRPIN_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(HAIRPIN_SET));

fn verdict_map(m: VerdictMap) -> (Arc<str>, SetKind) {
    (VERDICT_MAP_NAMES[m as usize].clone(), SetKind::Verdicts(m))
}

fn hairpin() -> Arc<str> {
    HAIRPIN_NAME.clone()
}

/// The elements of `range`.
fn range_elements(range: &EndpointRange) -> impl Iterator<Item = Elem> + '_ {
    range
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| Elem::Endpoint(range.base + i as u32, *t))
}

/// Elements grouped by the map they belong to, as ops.
fn element_ops(add: bool, items: Vec<(Arc<str>, Elem)>) -> impl Iterator<Item = Op> {
    let mut by_map: BTreeMap<Arc<str>, Vec<Elem>> = BTreeMap::new();
    for (map, e) in items {
        by_map.entry(map).or_default().push(e);
    }
    by_map
        .into_iter()
        .map(move |(map, es)| Op::Elements(add, map, es))
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
    let mut ops = vec![Op::AddTable, Op::FlushTable];
    // Every rule is gone now: nothing refers to a chain or set but maps.
    let mut fixed: Vec<(Arc<str>, SetKind)> = VerdictMap::ALL.map(verdict_map).to_vec();
    fixed.extend((0..SHARDS).map(|s| (endpoint_map(s), SetKind::Endpoints)));
    fixed.push((hairpin(), SetKind::Hairpin));
    for (name, kind) in &fixed {
        ops.push(Op::AddSet(name.clone(), *kind));
        ops.push(Op::FlushSet(name.clone(), *kind));
    }
    let mut deleted = 0;
    for c in &present.chains {
        if !rs.chains.contains_key(c.as_str()) {
            ops.push(Op::DeleteChain(c.as_str().into()));
            deleted += 1;
        }
    }
    for s in &present.sets {
        if !rs.affinity.contains_key(s.as_str()) {
            ops.push(Op::DeleteSet(s.as_str().into()));
        }
    }
    for (set, secs) in &rs.affinity {
        ops.push(Op::AddSet(set.clone(), SetKind::Affinity(*secs)));
    }
    for (name, chain) in &rs.chains {
        ops.push(Op::AddChain(name.clone(), chain.hook));
    }
    // The endpoints before the rules bound to their maps: either order
    // costs the same walk, this one a single pass per map.
    ops.extend(element_ops(
        true,
        rs.endpoints
            .values()
            .flat_map(|r| range_elements(r).map(|e| (endpoint_map(r.shard), e)))
            .collect(),
    ));
    for (name, chain) in &rs.chains {
        ops.push(Op::AddRules(name.clone(), chain.clone()));
    }
    ops.extend(element_ops(
        true,
        rs.verdicts
            .iter()
            .map(|((m, k), v)| (verdict_map(*m).0, Elem::Verdict(*k, v.clone())))
            .collect(),
    ));
    ops.extend(element_ops(
        true,
        rs.hairpin
            .iter()
            .map(|ip| (hairpin(), Elem::Hairpin(*ip)))
            .collect(),
    ));
    NftPlan {
        ops,
        chains_written: rs.chains.len(),
        chains_deleted: deleted,
    }
}

fn partial_plan(rs: &NftRuleset, b: &NftRuleset) -> NftPlan {
    let changed: Vec<(&Arc<str>, &Arc<NftChain>)> = rs
        .chains
        .iter()
        .filter(|(name, c)| b.chains.get(*name).is_none_or(|old| old.digest != c.digest))
        .collect();
    let gone: Vec<&Arc<str>> = b
        .chains
        .keys()
        .filter(|name| !rs.chains.contains_key(*name))
        .collect();

    // Element changes: what goes (removed or given another value) and
    // what comes.
    let mut del: Vec<(Arc<str>, Elem)> = Vec::new();
    let mut add: Vec<(Arc<str>, Elem)> = Vec::new();
    for ((m, k), v) in &b.verdicts {
        if rs.verdicts.get(&(*m, *k)) != Some(v) {
            del.push((verdict_map(*m).0, Elem::Verdict(*k, v.clone())));
        }
    }
    for ((m, k), v) in &rs.verdicts {
        if b.verdicts.get(&(*m, *k)) != Some(v) {
            add.push((verdict_map(*m).0, Elem::Verdict(*k, v.clone())));
        }
    }
    for (chain, old) in &b.endpoints {
        match rs.endpoints.get(chain) {
            Some(new) if new == old => {}
            Some(new) if new.shard == old.shard && new.base == old.base => {
                // Same place: only the positions that differ.
                let map = endpoint_map(old.shard);
                let n = old.targets.len().max(new.targets.len());
                for i in 0..n {
                    let (o, w) = (old.targets.get(i), new.targets.get(i));
                    if o == w {
                        continue;
                    }
                    let key = old.base + i as u32;
                    if let Some(o) = o {
                        del.push((map.clone(), Elem::Endpoint(key, *o)));
                    }
                    if let Some(w) = w {
                        add.push((map.clone(), Elem::Endpoint(key, *w)));
                    }
                }
            }
            _ => {
                let map = endpoint_map(old.shard);
                del.extend(range_elements(old).map(|e| (map.clone(), e)));
            }
        }
    }
    for (chain, new) in &rs.endpoints {
        let moved = match b.endpoints.get(chain) {
            None => true,
            Some(old) => old.shard != new.shard || old.base != new.base,
        };
        if moved {
            let map = endpoint_map(new.shard);
            add.extend(range_elements(new).map(|e| (map.clone(), e)));
        }
    }
    for ip in b.hairpin.difference(&rs.hairpin) {
        del.push((hairpin(), Elem::Hairpin(*ip)));
    }
    for ip in rs.hairpin.difference(&b.hairpin) {
        add.push((hairpin(), Elem::Hairpin(*ip)));
    }

    let mut ops = Vec::new();
    // New chains and sets exist before anything refers to them.
    for (name, chain) in &changed {
        if !b.chains.contains_key(*name) {
            ops.push(Op::AddChain((*name).clone(), chain.hook));
        }
    }
    for (set, secs) in &rs.affinity {
        if !b.affinity.contains_key(set) {
            ops.push(Op::AddSet(set.clone(), SetKind::Affinity(*secs)));
        }
    }
    ops.extend(element_ops(false, del));
    let refill: HashSet<&Arc<str>> = changed
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| b.chains.contains_key(*name))
        .collect();
    for name in &refill {
        ops.push(Op::FlushChain((*name).clone()));
    }
    for (name, chain) in &changed {
        ops.push(Op::AddRules((*name).clone(), (*chain).clone()));
    }
    ops.extend(element_ops(true, add));
    // Gone chains last: nothing refers to them any more.
    for name in &gone {
        ops.push(Op::FlushChain((*name).clone()));
    }
    for name in &gone {
        ops.push(Op::DeleteChain((*name).clone()));
    }
    for set in b.affinity.keys() {
        if !rs.affinity.contains_key(set) {
            ops.push(Op::DeleteSet(set.clone()));
        }
    }
    NftPlan {
        ops,
        chains_written: changed.len(),
        chains_deleted: gone.len(),
    }
}

impl SetKind {
    /// nft's declaration of it.
    fn declaration(self) -> String {
        match self {
            SetKind::Verdicts(m) if m.by_port() => {
                "type inet_proto . inet_service : verdict;".into()
            }
            SetKind::Verdicts(_) => "type ipv4_addr . inet_proto . inet_service : verdict;".into(),
            SetKind::Endpoints => "type mark : ipv4_addr . inet_service;".into(),
            SetKind::Hairpin => "type ipv4_addr . ipv4_addr;".into(),
            SetKind::Affinity(secs) => {
                format!("type ipv4_addr; flags dynamic,timeout; timeout {secs}s;")
            }
        }
    }

    fn is_map(self) -> bool {
        matches!(self, SetKind::Verdicts(_) | SetKind::Endpoints)
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Verdict(k, v) => write!(f, "{k} : {v}"),
            Elem::Endpoint(slot, (ip, port)) => write!(f, "{slot} : {ip} . {port}"),
            Elem::Hairpin(ip) => write!(f, "{ip} . {ip}"),
        }
    }
}

impl Elem {
    /// As a delete names it: the key alone.
    fn key(&self) -> String {
        match self {
            Elem::Verdict(k, _) => k.to_string(),
            Elem::Endpoint(slot, _) => slot.to_string(),
            Elem::Hairpin(ip) => format!("{ip} . {ip}"),
        }
    }
}

/// The plan as an nft script.
impl fmt::Display for NftPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = TABLE;
        for op in &self.ops {
            match op {
                Op::AddTable => writeln!(f, "add table ip {t}")?,
                Op::FlushTable => writeln!(f, "flush table ip {t}")?,
                Op::AddSet(name, kind) => {
                    let what = if kind.is_map() { "map" } else { "set" };
                    writeln!(f, "add {what} ip {t} {name} {{ {} }}", kind.declaration())?
                }
                Op::FlushSet(name, kind) => {
                    let what = if kind.is_map() { "map" } else { "set" };
                    writeln!(f, "flush {what} ip {t} {name}")?
                }
                Op::DeleteSet(name) => writeln!(f, "delete set ip {t} {name}")?,
                Op::AddChain(name, None) => writeln!(f, "add chain ip {t} {name}")?,
                Op::AddChain(name, Some(hook)) => {
                    writeln!(f, "add chain ip {t} {name} {{ {hook} }}")?
                }
                Op::FlushChain(name) => writeln!(f, "flush chain ip {t} {name}")?,
                Op::DeleteChain(name) => writeln!(f, "delete chain ip {t} {name}")?,
                Op::AddRules(name, chain) => {
                    for r in &chain.rules {
                        writeln!(f, "add rule ip {t} {name} {r}")?;
                    }
                }
                Op::Elements(add, set, es) => {
                    let list: Vec<String> = if *add {
                        es.iter().map(Elem::to_string).collect()
                    } else {
                        es.iter().map(Elem::key).collect()
                    };
                    let op = if *add { "add" } else { "delete" };
                    writeln!(f, "{op} element ip {t} {set} {{ {} }}", list.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

// nf_tables messages and attributes (linux/netfilter/nf_tables.h).
const MSG_NEWTABLE: u16 = 0;
const MSG_DELTABLE: u16 = 2;
const MSG_NEWCHAIN: u16 = 3;
const MSG_GETCHAIN: u16 = 4;
const MSG_DELCHAIN: u16 = 5;
const MSG_NEWRULE: u16 = 6;
const MSG_DELRULE: u16 = 8;
const MSG_NEWSET: u16 = 9;
const MSG_GETSET: u16 = 10;
const MSG_DELSET: u16 = 11;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;
const TABLE_NAME: u16 = 1;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const NF_ACCEPT: u32 = 1;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_DATA_TYPE: u16 = 6;
const SET_DATA_LEN: u16 = 7;
const SET_ID: u16 = 10;
const SET_TIMEOUT: u16 = 11;
const SET_USERDATA: u16 = 13;
/// nft's note on a set (a TLV of its own): the key is in host byte order,
/// so `nft list` shows the endpoint maps' slots as the rules' offsets.
const KEY_IN_HOST_ORDER: [u8; 6] = [0, 4, 1, 0, 0, 0];
const SET_F_MAP: u32 = 0x8;
const SET_F_TIMEOUT: u32 = 0x10;
const SET_F_EVAL: u32 = 0x20;
const ELEM_LIST_TABLE: u16 = 1;
const ELEM_LIST_SET: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;
const LIST_ELEM: u16 = 1;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const DATA_VALUE: u16 = 1;
const DATA_VERDICT_TYPE: u32 = 0xffff_ff00;
// nft's datatype numbers, which `nft list` shows the types by.
const TYPE_IPADDR: u32 = 7;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_MARK: u32 = 19;
/// A concatenation's type: its parts, 6 bits each.
const fn concat(parts: &[u32]) -> u32 {
    let mut t = 0;
    let mut i = 0;
    while i < parts.len() {
        t = (t << 6) | parts[i];
        i += 1;
    }
    t
}
/// Elements per message: a netlink attribute holds at most 64 KiB.
const ELEMS_PER_MSG: usize = 800;

fn port_bytes(port: u16) -> [u8; 4] {
    let p = port.to_be_bytes();
    [p[0], p[1], 0, 0]
}

fn proto_bytes(p: crate::model::Protocol) -> [u8; 4] {
    let n = match p {
        crate::model::Protocol::Tcp => 6,
        crate::model::Protocol::Udp => 17,
        crate::model::Protocol::Sctp => 132,
    };
    [n, 0, 0, 0]
}

impl Elem {
    fn key_bytes(&self) -> Vec<u8> {
        match self {
            Elem::Verdict(Key::Destination(ip, p, port), _) => {
                [ip.octets(), proto_bytes(*p), port_bytes(*port)].concat()
            }
            Elem::Verdict(Key::Port(p, port), _) => [proto_bytes(*p), port_bytes(*port)].concat(),
            Elem::Endpoint(slot, _) => slot.to_ne_bytes().to_vec(),
            Elem::Hairpin(ip) => [ip.octets(), ip.octets()].concat(),
        }
    }

    fn encode(&self, a: &mut Attrs, with_data: bool) {
        a.nested(LIST_ELEM, |a| {
            a.nested(ELEM_KEY, |a| a.bytes(DATA_VALUE, &self.key_bytes()));
            if !with_data {
                return;
            }
            match self {
                Elem::Verdict(_, v) => a.nested(ELEM_DATA, |a| v.encode(a)),
                Elem::Endpoint(_, (ip, port)) => a.nested(ELEM_DATA, |a| {
                    a.bytes(DATA_VALUE, &[ip.octets(), port_bytes(*port)].concat())
                }),
                Elem::Hairpin(_) => {}
            }
        });
    }
}

impl SetKind {
    fn encode(self, a: &mut Attrs) {
        let (flags, key_type, key_len, data) = match self {
            SetKind::Verdicts(m) if m.by_port() => (
                SET_F_MAP,
                concat(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
                8,
                Some((DATA_VERDICT_TYPE, 0)),
            ),
            SetKind::Verdicts(_) => (
                SET_F_MAP,
                concat(&[TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
                12,
                Some((DATA_VERDICT_TYPE, 0)),
            ),
            SetKind::Endpoints => (
                SET_F_MAP,
                TYPE_MARK,
                4,
                Some((concat(&[TYPE_IPADDR, TYPE_INET_SERVICE]), 8)),
            ),
            SetKind::Hairpin => (0, concat(&[TYPE_IPADDR, TYPE_IPADDR]), 8, None),
            SetKind::Affinity(_) => (SET_F_TIMEOUT | SET_F_EVAL, TYPE_IPADDR, 4, None),
        };
        a.u32(SET_FLAGS, flags);
        a.u32(SET_KEY_TYPE, key_type);
        a.u32(SET_KEY_LEN, key_len);
        if let Some((ty, len)) = data {
            a.u32(SET_DATA_TYPE, ty);
            a.u32(SET_DATA_LEN, len);
        }
        if self == SetKind::Endpoints {
            a.bytes(SET_USERDATA, &KEY_IN_HOST_ORDER);
        }
        if let SetKind::Affinity(secs) = self {
            a.u64(SET_TIMEOUT, u64::from(secs) * 1000);
        }
    }
}

impl NftPlan {
    /// The plan as nf_tables messages.
    fn batch(&self) -> Batch {
        let mut b = Batch::new();
        let mut set_id = 0u32;
        for op in &self.ops {
            match op {
                Op::AddTable => b.msg(MSG_NEWTABLE, NLM_F_CREATE, |a| a.str(TABLE_NAME, TABLE)),
                Op::FlushTable => b.msg(MSG_DELRULE, 0, |a| a.str(RULE_TABLE, TABLE)),
                Op::AddSet(name, kind) => {
                    set_id += 1;
                    b.msg(MSG_NEWSET, NLM_F_CREATE, |a| {
                        a.str(SET_TABLE, TABLE);
                        a.str(SET_NAME, name);
                        kind.encode(a);
                        a.u32(SET_ID, set_id);
                    })
                }
                Op::FlushSet(name, _) => b.msg(MSG_DELSETELEM, 0, |a| {
                    a.str(ELEM_LIST_TABLE, TABLE);
                    a.str(ELEM_LIST_SET, name);
                }),
                Op::DeleteSet(name) => b.msg(MSG_DELSET, 0, |a| {
                    a.str(SET_TABLE, TABLE);
                    a.str(SET_NAME, name);
                }),
                Op::AddChain(name, hook) => b.msg(MSG_NEWCHAIN, NLM_F_CREATE, |a| {
                    a.str(CHAIN_TABLE, TABLE);
                    a.str(CHAIN_NAME, name);
                    if let Some(h) = hook {
                        a.nested(CHAIN_HOOK, |a| {
                            a.u32(HOOK_HOOKNUM, h.number());
                            a.u32(HOOK_PRIORITY, h.priority as u32);
                        });
                        a.u32(CHAIN_POLICY, NF_ACCEPT);
                        a.str(CHAIN_TYPE, h.kind);
                    }
                }),
                Op::FlushChain(name) => b.msg(MSG_DELRULE, 0, |a| {
                    a.str(RULE_TABLE, TABLE);
                    a.str(RULE_CHAIN, name);
                }),
                Op::DeleteChain(name) => b.msg(MSG_DELCHAIN, 0, |a| {
                    a.str(CHAIN_TABLE, TABLE);
                    a.str(CHAIN_NAME, name);
                }),
                Op::AddRules(name, chain) => {
                    for r in &chain.rules {
                        b.msg(MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, |a| {
                            a.str(RULE_TABLE, TABLE);
                            a.str(RULE_CHAIN, name);
                            a.nested(RULE_EXPRESSIONS, |a| r.encode(a));
                        });
                    }
                }
                Op::Elements(add, set, es) => {
                    let (msg, flags) = if *add {
                        (MSG_NEWSETELEM, NLM_F_CREATE)
                    } else {
                        (MSG_DELSETELEM, 0)
                    };
                    for chunk in es.chunks(ELEMS_PER_MSG) {
                        b.msg(msg, flags, |a| {
                            a.str(ELEM_LIST_TABLE, TABLE);
                            a.str(ELEM_LIST_SET, set);
                            a.nested(ELEM_LIST_ELEMENTS, |a| {
                                for e in chunk {
                                    e.encode(a, *add);
                                }
                            });
                        });
                    }
                }
            }
        }
        b
    }
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("the netlink writer stopped: {0}")]
    Join(String),
}

/// Applies `plan`; the kernel's work (up to a second for 10,000 Services)
/// runs on a blocking thread.
async fn apply(plan: &NftPlan) -> Result<(), NftError> {
    let batch = plan.batch();
    with_socket(move |s| Ok(s.apply(batch)?)).await
}

/// Runs `work` with a netlink socket opened in this thread's network
/// namespace, on a blocking thread.
async fn with_socket<T: Send + 'static>(
    work: impl FnOnce(Socket) -> Result<T, NftError> + Send + 'static,
) -> Result<T, NftError> {
    let socket = Socket::open().map_err(NetlinkError::from)?;
    tokio::task::spawn_blocking(move || work(socket))
        .await
        .map_err(|e| NftError::Join(e.to_string()))?
}

/// The names of our table's objects a dump of type `msg` lists.
fn names(
    socket: &Socket,
    msg: u16,
    table_attr: u16,
    name_attr: u16,
) -> Result<Vec<String>, NftError> {
    let answers = socket
        .dump(msg, |a| a.str(table_attr, TABLE))
        .map_err(NetlinkError::from)?;
    Ok(answers
        .iter()
        .filter(|m| string_attr(m, table_attr).as_deref() == Some(TABLE))
        .filter_map(|m| string_attr(m, name_attr))
        .collect())
}

/// The chains and affinity sets of our table in the kernel.
pub async fn present_in_kernel() -> Result<Present, NftError> {
    with_socket(|s| {
        Ok(Present {
            chains: names(&s, MSG_GETCHAIN, CHAIN_TABLE, CHAIN_NAME)?,
            // The others are fixed and always declared.
            sets: names(&s, MSG_GETSET, SET_TABLE, SET_NAME)?
                .into_iter()
                .filter(|s| s.starts_with("aff-"))
                .collect(),
        })
    })
    .await
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
    pub async fn sync(&mut self, rs: NftRuleset, full: bool) -> Result<NftPlan, NftError> {
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
            apply(&plan).await?;
        }
        self.applied = Some(rs);
        Ok(plan)
    }

    /// Whether our table still has its hooks (a `nft flush ruleset` or a
    /// firewall reload removes them); false makes the loop write all.
    pub async fn intact() -> Result<bool, NftError> {
        with_socket(|s| {
            let chain = s.get(MSG_GETCHAIN, |a| {
                a.str(CHAIN_TABLE, TABLE);
                a.str(CHAIN_NAME, "nat-prerouting");
            });
            Ok(chain.map_err(NetlinkError::from)?.is_some())
        })
        .await
    }

    /// Removes our table (`skiff proxy --cleanup`, the other mode's start,
    /// and tests).
    pub async fn remove_all() -> Result<(), NftError> {
        with_socket(|s| {
            let mut b = Batch::new();
            // Made first, so removing it never fails for its absence.
            b.msg(MSG_NEWTABLE, NLM_F_CREATE, |a| a.str(TABLE_NAME, TABLE));
            b.msg(MSG_DELTABLE, 0, |a| a.str(TABLE_NAME, TABLE));
            Ok(s.apply(b)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{ep, port};
    use crate::nftables;
    use crate::rules::Context;

    fn web(ips: &[&str]) -> NftRuleset {
        let sp = port(ips.iter().map(|ip| ep(ip, true, false)).collect());
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
        let p = plan(&b, Some(&a), &Present::default()).to_string();
        assert_eq!(
            p,
            format!(
                "delete element ip skiff {map} {{ {third} }}\n\
                 add element ip skiff {map} {{ {third} : 10.42.0.9 . 8080 }}\n"
            )
        );

        let c = web(&["10.42.0.1", "10.42.0.2", "10.42.0.3", "10.42.0.4"]);
        let plan_c = plan(&c, Some(&a), &Present::default());
        assert_eq!((plan_c.chains_written, plan_c.chains_deleted), (1, 0));
        let p = plan_c.to_string();
        assert!(p.contains("flush chain ip skiff svc-"), "{}", p);
        assert!(p.contains("numgen random mod 4 offset"), "{}", p);
        assert!(p.contains(&format!("{} : 10.42.0.4 . 8080", range.base + 3)));

        // No endpoint left: the chain goes after what referred to it, and
        // the Service is refused instead.
        let d = web(&[]);
        let plan_d = plan(&d, Some(&a), &Present::default());
        assert_eq!((plan_d.chains_written, plan_d.chains_deleted), (0, 1));
        let p = plan_d.to_string();
        let at = |s: &str| p.find(s).unwrap_or_else(|| panic!("{s} in {}", p));
        assert!(
            at("delete element ip skiff service-ips { 10.43.0.5 . tcp . 80 }") < at("delete chain")
        );
        assert!(p.contains("add element ip skiff no-endpoint-services { 10.43.0.5 . tcp . 80 : goto reject-chain }"));
    }

    #[test]
    fn a_full_sync_flushes_all_and_removes_what_is_gone() {
        let a = web(&["10.42.0.1", "10.42.0.2"]);
        let present = Present {
            chains: vec!["svc-old".into(), "services".into()],
            sets: vec!["aff-old".into()],
        };
        let full = plan(&a, None, &present);
        assert_eq!(full.chains_deleted, 1);
        let p = full.to_string();
        assert!(p.starts_with("add table ip skiff\nflush table ip skiff\n"));
        assert!(p.contains("delete chain ip skiff svc-old\n"));
        assert!(!p.contains("delete chain ip skiff services\n"));
        assert!(p.contains("delete set ip skiff aff-old\n"));
        assert!(p.contains(
            "add chain ip skiff nat-prerouting { type nat hook prerouting priority -100; policy accept; }"
        ));
    }
}
