//! What the proxy's nftables rules are made of: the few matches and
//! statements `nftables.rs` uses, each shown as nft writes it (for tests,
//! logs and people) and encoded as the kernel's expressions (as nft 1.0
//! encodes them; `nft --debug=netlink` shows the same registers).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use skiff_machinery::cidr::Cidr;

use crate::model::Protocol;
use crate::nfnetlink::Attrs;

// Expression attributes (linux/netfilter/nf_tables.h).
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Registers: the verdict, a 16-byte one, and 4-byte ones after it (a
/// concatenation's later parts).
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
const REG32_01: u32 = 9;
const REG32_02: u32 = 10;

const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

/// Where a map's verdict sends a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Goto(Arc<str>),
    Drop,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Drop => f.write_str("drop"),
        }
    }
}

impl Verdict {
    /// As `NFTA_DATA_VERDICT` inside an `NFTA_*_DATA`.
    pub fn encode(&self, a: &mut Attrs) {
        a.nested(NFTA_DATA_VERDICT, |a| match self {
            Verdict::Goto(c) => {
                a.u32(NFTA_VERDICT_CODE, NFT_GOTO as u32);
                a.str(NFTA_VERDICT_CHAIN, c);
            }
            Verdict::Drop => a.u32(NFTA_VERDICT_CODE, NF_DROP as u32),
        });
    }
}

/// One match or statement of a rule, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// `ip daddr A`
    DaddrIs(Ipv4Addr),
    /// `ip saddr [!=] N/P`
    Saddr {
        net: Cidr,
        negate: bool,
    },
    /// `meta l4proto P`
    L4Proto(Protocol),
    /// `th dport N`
    DportIs(u16),
    /// `ip saddr @set`
    SaddrInSet(Arc<str>),
    /// `ct status dnat`
    CtStatusDnat,
    /// `ct state new` (true) or `ct state invalid`
    CtState {
        new: bool,
    },
    /// `fib saddr type local` (true) or `fib daddr type local`
    FibLocal {
        saddr: bool,
    },
    /// `numgen random mod N 0`: true one time in N.
    OneIn(u32),
    /// `meta mark & M == 0`
    MarkClear(u32),
    /// `ip saddr . ip daddr @set`
    SourceIsDestinationIn(&'static str),
    /// `ip daddr . meta l4proto . th dport vmap @map`
    DestinationVmap(&'static str),
    /// `meta l4proto . th dport vmap @map`
    PortVmap(&'static str),
    /// `update @set { ip saddr }`
    RecordSource(Arc<str>),
    /// `dnat ip to A:P`
    Dnat(Ipv4Addr, u16),
    /// `dnat ip to numgen random mod N offset B map @map`
    DnatPick {
        modulus: u32,
        offset: u32,
        map: Arc<str>,
    },
    /// `masquerade [fully-random]`
    Masquerade {
        fully_random: bool,
    },
    /// `meta mark set meta mark | M`
    MarkOr(u32),
    /// `meta mark set meta mark ^ M`
    MarkXor(u32),
    Jump(Arc<str>),
    Goto(Arc<str>),
    Return,
    Drop,
    /// `reject` (ICMP port unreachable)
    Reject,
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::DaddrIs(a) => write!(f, "ip daddr {a}"),
            Stmt::Saddr { net, negate } => {
                write!(f, "ip saddr {}{net}", if *negate { "!= " } else { "" })
            }
            Stmt::L4Proto(p) => write!(f, "meta l4proto {}", p.as_str()),
            Stmt::DportIs(p) => write!(f, "th dport {p}"),
            Stmt::SaddrInSet(s) => write!(f, "ip saddr @{s}"),
            Stmt::CtStatusDnat => f.write_str("ct status dnat"),
            Stmt::CtState { new } => {
                write!(f, "ct state {}", if *new { "new" } else { "invalid" })
            }
            Stmt::FibLocal { saddr } => {
                write!(
                    f,
                    "fib {} type local",
                    if *saddr { "saddr" } else { "daddr" }
                )
            }
            Stmt::OneIn(n) => write!(f, "numgen random mod {n} 0"),
            Stmt::MarkClear(m) => write!(f, "meta mark & {m:#x} == 0"),
            Stmt::SourceIsDestinationIn(s) => write!(f, "ip saddr . ip daddr @{s}"),
            Stmt::DestinationVmap(m) => write!(f, "ip daddr . meta l4proto . th dport vmap @{m}"),
            Stmt::PortVmap(m) => write!(f, "meta l4proto . th dport vmap @{m}"),
            Stmt::RecordSource(s) => write!(f, "update @{s} {{ ip saddr }}"),
            Stmt::Dnat(a, p) => write!(f, "dnat ip to {a}:{p}"),
            Stmt::DnatPick {
                modulus,
                offset,
                map,
            } => write!(
                f,
                "dnat ip to numgen random mod {modulus} offset {offset} map @{map}"
            ),
            Stmt::Masquerade { fully_random } => f.write_str(if *fully_random {
                "masquerade fully-random"
            } else {
                "masquerade"
            }),
            Stmt::MarkOr(m) => write!(f, "meta mark set meta mark | {m:#x}"),
            Stmt::MarkXor(m) => write!(f, "meta mark set meta mark ^ {m:#x}"),
            Stmt::Jump(c) => write!(f, "jump {c}"),
            Stmt::Goto(c) => write!(f, "goto {c}"),
            Stmt::Return => f.write_str("return"),
            Stmt::Drop => f.write_str("drop"),
            Stmt::Reject => f.write_str("reject"),
        }
    }
}

/// One rule: its matches and statements in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule(pub Vec<Stmt>);

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// The netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hook {
    /// `nat` or `filter`.
    pub kind: &'static str,
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`.
    pub hook: &'static str,
    pub priority: i32,
}

impl Hook {
    /// NF_INET_* of the hook.
    pub fn number(self) -> u32 {
        match self.hook {
            "prerouting" => 0,
            "input" => 1,
            "forward" => 2,
            "output" => 3,
            _ => 4, // postrouting
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} hook {} priority {}; policy accept;",
            self.kind, self.hook, self.priority
        )
    }
}

/// Bytes of one value of a map's key or data, as the kernel compares them.
fn value(a: &mut Attrs, ty: u16, bytes: &[u8]) {
    a.nested(ty, |a| a.bytes(NFTA_DATA_VALUE, bytes));
}

/// Appends one expression `name` with its attributes.
fn expr(a: &mut Attrs, name: &str, data: impl FnOnce(&mut Attrs)) {
    a.nested(NFTA_LIST_ELEM, |a| {
        a.str(NFTA_EXPR_NAME, name);
        a.nested(NFTA_EXPR_DATA, data);
    });
}

// Per-expression attributes.
const PAYLOAD_DREG: u16 = 1;
const PAYLOAD_BASE: u16 = 2;
const PAYLOAD_OFFSET: u16 = 3;
const PAYLOAD_LEN: u16 = 4;
const NETWORK_HEADER: u32 = 1;
const TRANSPORT_HEADER: u32 = 2;
const META_DREG: u16 = 1;
const META_KEY: u16 = 2;
const META_SREG: u16 = 3;
const META_MARK: u32 = 3;
const META_L4PROTO: u32 = 16;
const CMP_SREG: u16 = 1;
const CMP_OP: u16 = 2;
const CMP_DATA: u16 = 3;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const BITWISE_SREG: u16 = 1;
const BITWISE_DREG: u16 = 2;
const BITWISE_LEN: u16 = 3;
const BITWISE_MASK: u16 = 4;
const BITWISE_XOR: u16 = 5;
const IMMEDIATE_DREG: u16 = 1;
const IMMEDIATE_DATA: u16 = 2;
const LOOKUP_SET: u16 = 1;
const LOOKUP_SREG: u16 = 2;
const LOOKUP_DREG: u16 = 3;
const NG_DREG: u16 = 1;
const NG_MODULUS: u16 = 2;
const NG_TYPE: u16 = 3;
const NG_OFFSET: u16 = 4;
const NG_RANDOM: u32 = 1;
const NAT_TYPE: u16 = 1;
const NAT_FAMILY: u16 = 2;
const NAT_REG_ADDR_MIN: u16 = 3;
const NAT_REG_PROTO_MIN: u16 = 5;
const NAT_FLAGS: u16 = 7;
const NAT_DNAT: u32 = 1;
const NFPROTO_IPV4: u32 = 2;
const NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
const MASQ_FLAGS: u16 = 1;
const NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
const CT_DREG: u16 = 1;
const CT_KEY: u16 = 2;
const CT_STATE: u32 = 0;
const CT_STATUS: u32 = 2;
const CT_STATE_INVALID: u32 = 1;
const CT_STATE_NEW: u32 = 8;
const IPS_DST_NAT: u32 = 0x20;
const FIB_DREG: u16 = 1;
const FIB_RESULT: u16 = 2;
const FIB_FLAGS: u16 = 3;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const FIB_F_SADDR: u32 = 1;
const FIB_F_DADDR: u32 = 2;
const RTN_LOCAL: u32 = 2;
const DYNSET_SET_NAME: u16 = 1;
const DYNSET_OP: u16 = 3;
const DYNSET_SREG_KEY: u16 = 4;
const DYNSET_OP_UPDATE: u32 = 1;
const REJECT_TYPE: u16 = 1;
const REJECT_ICMP_CODE: u16 = 2;
const ICMP_UNREACH: u32 = 0;
const ICMP_PORT_UNREACH: u8 = 3;

fn payload(a: &mut Attrs, base: u32, offset: u32, len: u32, dreg: u32) {
    expr(a, "payload", |a| {
        a.u32(PAYLOAD_DREG, dreg);
        a.u32(PAYLOAD_BASE, base);
        a.u32(PAYLOAD_OFFSET, offset);
        a.u32(PAYLOAD_LEN, len);
    });
}

fn meta_load(a: &mut Attrs, key: u32, dreg: u32) {
    expr(a, "meta", |a| {
        a.u32(META_KEY, key);
        a.u32(META_DREG, dreg);
    });
}

fn cmp(a: &mut Attrs, op: u32, data: &[u8]) {
    expr(a, "cmp", |a| {
        a.u32(CMP_SREG, REG_1);
        a.u32(CMP_OP, op);
        value(a, CMP_DATA, data);
    });
}

/// reg1 = (reg1 & mask) ^ xor, over 4 bytes.
fn bitwise(a: &mut Attrs, mask: [u8; 4], xor: [u8; 4]) {
    expr(a, "bitwise", |a| {
        a.u32(BITWISE_SREG, REG_1);
        a.u32(BITWISE_DREG, REG_1);
        a.u32(BITWISE_LEN, 4);
        value(a, BITWISE_MASK, &mask);
        value(a, BITWISE_XOR, &xor);
    });
}

fn verdict(a: &mut Attrs, code: i32, chain: Option<&str>) {
    expr(a, "immediate", |a| {
        a.u32(IMMEDIATE_DREG, REG_VERDICT);
        a.nested(IMMEDIATE_DATA, |a| {
            a.nested(NFTA_DATA_VERDICT, |a| {
                a.u32(NFTA_VERDICT_CODE, code as u32);
                if let Some(c) = chain {
                    a.str(NFTA_VERDICT_CHAIN, c);
                }
            })
        });
    });
}

fn immediate(a: &mut Attrs, dreg: u32, data: &[u8]) {
    expr(a, "immediate", |a| {
        a.u32(IMMEDIATE_DREG, dreg);
        value(a, IMMEDIATE_DATA, data);
    });
}

fn lookup(a: &mut Attrs, set: &str, dreg: Option<u32>) {
    expr(a, "lookup", |a| {
        a.u32(LOOKUP_SREG, REG_1);
        a.str(LOOKUP_SET, set);
        if let Some(d) = dreg {
            a.u32(LOOKUP_DREG, d);
        }
    });
}

/// ct `key` & bits != 0
fn ct_bits(a: &mut Attrs, key: u32, bits: u32) {
    expr(a, "ct", |a| {
        a.u32(CT_KEY, key);
        a.u32(CT_DREG, REG_1);
    });
    bitwise(a, bits.to_ne_bytes(), [0; 4]);
    cmp(a, CMP_NEQ, &[0; 4]);
}

fn mark_set(a: &mut Attrs, mask: u32, xor: u32) {
    meta_load(a, META_MARK, REG_1);
    bitwise(a, mask.to_ne_bytes(), xor.to_ne_bytes());
    expr(a, "meta", |a| {
        a.u32(META_KEY, META_MARK);
        a.u32(META_SREG, REG_1);
    });
}

/// DNAT to the address in REG_1 and the port in `port_reg`.
fn dnat(a: &mut Attrs, port_reg: u32) {
    expr(a, "nat", |a| {
        a.u32(NAT_TYPE, NAT_DNAT);
        a.u32(NAT_FAMILY, NFPROTO_IPV4);
        a.u32(NAT_REG_ADDR_MIN, REG_1);
        a.u32(NAT_REG_PROTO_MIN, port_reg);
        a.u32(NAT_FLAGS, NAT_RANGE_PROTO_SPECIFIED);
    });
}

fn saddr(a: &mut Attrs, dreg: u32) {
    payload(a, NETWORK_HEADER, 12, 4, dreg);
}

fn daddr(a: &mut Attrs, dreg: u32) {
    payload(a, NETWORK_HEADER, 16, 4, dreg);
}

fn dport(a: &mut Attrs, dreg: u32) {
    payload(a, TRANSPORT_HEADER, 2, 2, dreg);
}

fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn v4_octets(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(ip) => ip.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

impl Stmt {
    /// Appends this statement's expressions.
    fn encode(&self, a: &mut Attrs) {
        match self {
            Stmt::DaddrIs(ip) => {
                daddr(a, REG_1);
                cmp(a, CMP_EQ, &ip.octets());
            }
            Stmt::Saddr { net, negate } => {
                saddr(a, REG_1);
                let bits = u32::from(net.prefix_len().min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                if bits < 32 {
                    bitwise(a, mask.to_be_bytes(), [0; 4]);
                }
                let addr = u32::from_be_bytes(v4_octets(net.addr())) & mask;
                let op = if *negate { CMP_NEQ } else { CMP_EQ };
                cmp(a, op, &addr.to_be_bytes());
            }
            Stmt::L4Proto(p) => {
                meta_load(a, META_L4PROTO, REG_1);
                cmp(a, CMP_EQ, &[protocol_number(*p)]);
            }
            Stmt::DportIs(p) => {
                dport(a, REG_1);
                cmp(a, CMP_EQ, &p.to_be_bytes());
            }
            Stmt::SaddrInSet(set) => {
                saddr(a, REG_1);
                lookup(a, set, None);
            }
            Stmt::CtStatusDnat => ct_bits(a, CT_STATUS, IPS_DST_NAT),
            Stmt::CtState { new } => ct_bits(
                a,
                CT_STATE,
                if *new { CT_STATE_NEW } else { CT_STATE_INVALID },
            ),
            Stmt::FibLocal { saddr } => {
                expr(a, "fib", |a| {
                    a.u32(FIB_DREG, REG_1);
                    a.u32(FIB_RESULT, FIB_RESULT_ADDRTYPE);
                    a.u32(FIB_FLAGS, if *saddr { FIB_F_SADDR } else { FIB_F_DADDR });
                });
                cmp(a, CMP_EQ, &RTN_LOCAL.to_ne_bytes());
            }
            Stmt::OneIn(n) => {
                expr(a, "numgen", |a| {
                    a.u32(NG_DREG, REG_1);
                    a.u32(NG_MODULUS, *n);
                    a.u32(NG_TYPE, NG_RANDOM);
                });
                cmp(a, CMP_EQ, &0u32.to_ne_bytes());
            }
            Stmt::MarkClear(m) => {
                meta_load(a, META_MARK, REG_1);
                bitwise(a, m.to_ne_bytes(), [0; 4]);
                cmp(a, CMP_EQ, &[0; 4]);
            }
            Stmt::SourceIsDestinationIn(set) => {
                saddr(a, REG_1);
                daddr(a, REG32_01);
                lookup(a, set, None);
            }
            Stmt::DestinationVmap(map) => {
                daddr(a, REG_1);
                meta_load(a, META_L4PROTO, REG32_01);
                dport(a, REG32_02);
                lookup(a, map, Some(REG_VERDICT));
            }
            Stmt::PortVmap(map) => {
                meta_load(a, META_L4PROTO, REG_1);
                dport(a, REG32_01);
                lookup(a, map, Some(REG_VERDICT));
            }
            Stmt::RecordSource(set) => {
                saddr(a, REG_1);
                expr(a, "dynset", |a| {
                    a.str(DYNSET_SET_NAME, set);
                    a.u32(DYNSET_OP, DYNSET_OP_UPDATE);
                    a.u32(DYNSET_SREG_KEY, REG_1);
                });
            }
            Stmt::Dnat(ip, port) => {
                immediate(a, REG_1, &ip.octets());
                immediate(a, REG_2, &port.to_be_bytes());
                dnat(a, REG_2);
            }
            Stmt::DnatPick {
                modulus,
                offset,
                map,
            } => {
                expr(a, "numgen", |a| {
                    a.u32(NG_DREG, REG_1);
                    a.u32(NG_MODULUS, *modulus);
                    a.u32(NG_TYPE, NG_RANDOM);
                    a.u32(NG_OFFSET, *offset);
                });
                // The address and port land in REG_1's first two words.
                lookup(a, map, Some(REG_1));
                dnat(a, REG32_01);
            }
            Stmt::Masquerade { fully_random } => expr(a, "masq", |a| {
                if *fully_random {
                    a.u32(MASQ_FLAGS, NAT_RANGE_PROTO_RANDOM_FULLY);
                }
            }),
            Stmt::MarkOr(m) => mark_set(a, !m, *m),
            Stmt::MarkXor(m) => mark_set(a, u32::MAX, *m),
            Stmt::Jump(c) => verdict(a, NFT_JUMP, Some(c)),
            Stmt::Goto(c) => verdict(a, NFT_GOTO, Some(c)),
            Stmt::Return => verdict(a, NFT_RETURN, None),
            Stmt::Drop => verdict(a, NF_DROP, None),
            Stmt::Reject => expr(a, "reject", |a| {
                a.u32(REJECT_TYPE, ICMP_UNREACH);
                a.bytes(REJECT_ICMP_CODE, &[ICMP_PORT_UNREACH]);
            }),
        }
    }
}

impl Rule {
    /// The rule's expressions, as `NFTA_RULE_EXPRESSIONS` holds them.
    pub fn encode(&self, a: &mut Attrs) {
        for s in &self.0 {
            s.encode(a);
        }
    }
}
