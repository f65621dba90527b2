//! One query against the zone: the answer, NODATA (the name exists, not
//! the type: NOERROR with the zone's SOA), NXDOMAIN (with the SOA), or
//! "not ours" for the forwarder. Pod names (`a-b-c-d.<ns>.pod.<domain>`)
//! are answered from the name itself, as CoreDNS's `pods insecure` does.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::zone::Zone;

/// What the zone says about one question.
#[derive(Debug)]
pub enum Outcome {
    Answer(Vec<Record>),
    NoData,
    NxDomain,
    /// Outside the zone: for the upstream resolvers.
    Forward,
}

/// Looks `q` up in `zone`.
pub fn lookup(zone: &Zone, q: &Query) -> Outcome {
    let owner = q.name().to_lowercase().to_ascii();
    let owner = if owner.ends_with('.') {
        owner
    } else {
        format!("{owner}.")
    };
    let qtype = q.query_type();
    if let Some(records) = zone.records(&owner) {
        let matching: Vec<Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .cloned()
            .collect();
        if !matching.is_empty() {
            return Outcome::Answer(matching);
        }
        // An alias answers every type (not followed: it leaves the zone).
        let cname: Vec<Record> = records
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .cloned()
            .collect();
        if !cname.is_empty() {
            return Outcome::Answer(cname);
        }
        return Outcome::NoData;
    }
    if owner.ends_with(".in-addr.arpa.") || owner.ends_with(".ip6.arpa.") {
        // Not a cluster address we know: someone else's to answer.
        return Outcome::Forward;
    }
    if owner != zone.domain && !owner.ends_with(&format!(".{}", zone.domain)) {
        return Outcome::Forward;
    }
    if zone.name_exists(&owner) {
        return Outcome::NoData;
    }
    if let Some(ip) = pod_address(zone, &owner) {
        return match (qtype, ip) {
            (RecordType::A | RecordType::ANY, ip) => Outcome::Answer(vec![Record::from_rdata(
                q.name().clone(),
                zone.ttl,
                RData::A(A(ip)),
            )]),
            _ => Outcome::NoData,
        };
    }
    Outcome::NxDomain
}

/// `10-42-0-7.<ns>.pod.<domain>` → 10.42.0.7.
fn pod_address(zone: &Zone, owner: &str) -> Option<Ipv4Addr> {
    let rest = owner.strip_suffix(&format!(".pod.{}", zone.domain))?;
    let (host, ns) = rest.split_once('.')?;
    if ns.is_empty() || ns.contains('.') {
        return None;
    }
    match host.replace('-', ".").parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

/// The zone's SOA, for the authority section of negative answers.
fn soa(zone: &Zone) -> Option<Record> {
    let apex = Name::from_ascii(&zone.domain).ok()?;
    let mname = Name::from_ascii(format!("ns.dns.{}", zone.domain)).ok()?;
    let rname = Name::from_ascii(format!("hostmaster.{}", zone.domain)).ok()?;
    let serial = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % u64::from(u32::MAX)) as u32;
    let rdata = SOA::new(mname, rname, serial, 7200, 1800, 86400, zone.ttl);
    Some(Record::from_rdata(apex, zone.ttl, RData::SOA(rdata)))
}

/// A response to `request` with `code` and no records.
pub fn reply(request: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    for q in request.queries() {
        m.add_query(q.clone());
    }
    m
}

/// The response for a request the zone answers; None when it is for the
/// forwarder. Malformed or unsupported requests get FORMERR or NOTIMP.
pub fn respond(zone: &Zone, request: &Message) -> Option<(Message, &'static str)> {
    if request.message_type() != MessageType::Query {
        return Some((reply(request, ResponseCode::FormErr), "formerr"));
    }
    if request.op_code() != OpCode::Query {
        return Some((reply(request, ResponseCode::NotImp), "notimp"));
    }
    let [q] = request.queries() else {
        return Some((reply(request, ResponseCode::FormErr), "formerr"));
    };
    let (code, answers, negative, result) = match lookup(zone, q) {
        Outcome::Forward => return None,
        Outcome::Answer(rs) => (ResponseCode::NoError, rs, false, "noerror"),
        Outcome::NoData => (ResponseCode::NoError, Vec::new(), true, "nodata"),
        Outcome::NxDomain => (ResponseCode::NXDomain, Vec::new(), true, "nxdomain"),
    };
    let mut m = reply(request, code);
    m.set_authoritative(true);
    for r in answers {
        m.add_answer(r);
    }
    if negative {
        if let Some(soa) = soa(zone) {
            m.add_name_server(soa);
        }
    }
    Some((m, result))
}
