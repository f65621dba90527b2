//! The cluster DNS over real sockets on loopback: caches filled by hand,
//! queries over UDP and TCP, and a fake upstream resolver on loopback for
//! everything else (no query leaves the machine).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;
use skiff_proxy::dns::{self, DnsMetrics, DnsOptions};
use skiff_proxy::Caches;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn objects() -> (Vec<Service>, Vec<EndpointSlice>) {
    let svc = |v: serde_json::Value| serde_json::from_value::<Service>(v).unwrap();
    let services = vec![
        svc(json!({"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.43.0.5", "ports": [{"name": "http", "port": 80}]}})),
        svc(json!({"metadata": {"namespace": "default", "name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
        svc(json!({"metadata": {"namespace": "default", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.test"}})),
    ];
    let slices = vec![serde_json::from_value::<EndpointSlice>(json!({
        "metadata": {"namespace": "default", "name": "db-x",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.8"], "hostname": "db-1", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.9"], "hostname": "db-2", "conditions": {"ready": false}}
        ]
    }))
    .unwrap()];
    (services, slices)
}

/// A fake upstream: answers every query with one A record, counting them;
/// when `silent`, answers nothing.
async fn upstream(silent: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            c.fetch_add(1, Ordering::SeqCst);
            if silent {
                continue;
            }
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .add_query(q.queries()[0].clone())
                .add_answer(Record::from_rdata(
                    q.queries()[0].name().clone(),
                    60,
                    RData::A(A::new(198, 51, 100, 7)),
                ));
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    (addr, count)
}

struct Dns {
    udp: SocketAddr,
    tcp: SocketAddr,
    metrics: Arc<DnsMetrics>,
}

async fn start(upstreams: Vec<SocketAddr>) -> Dns {
    let (services, mut sw) = reflector::store();
    let (slices, mut lw) = reflector::store();
    let (svcs, sls) = objects();
    for s in svcs {
        sw.apply_watcher_event(&Event::Apply(s));
    }
    for s in sls {
        lw.apply_watcher_event(&Event::Apply(s));
    }
    let (_tx, changes) = tokio::sync::watch::channel(0u64);
    // The sender lives as long as the test: the zone keeps following.
    std::mem::forget(_tx);
    let caches = Caches {
        services,
        slices,
        changes,
    };
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dns = Dns {
        udp: udp.local_addr().unwrap(),
        tcp: tcp.local_addr().unwrap(),
        metrics: Arc::new(DnsMetrics::default()),
    };
    let opts = DnsOptions {
        listen: vec![dns.udp],
        cluster_domain: "cluster.local".into(),
        upstreams,
        ttl: 5,
    };
    tokio::spawn(dns::serve_on(
        opts,
        vec![udp],
        vec![tcp],
        caches,
        dns.metrics.clone(),
    ));
    dns
}

fn query(name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(4242)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_str(name).unwrap(), ty));
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, raw: &[u8]) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(raw, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask(d: &Dns, name: &str, ty: RecordType) -> Message {
    ask_udp(d.udp, &query(name, ty)).await
}

fn answers(m: &Message) -> Vec<String> {
    let mut out: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn cluster_names_answer_from_the_caches() {
    let d = start(Vec::new()).await;
    // The zone follows the caches shortly after start.
    for _ in 0..50 {
        if !ask(&d, "web.default.svc.cluster.local.", RecordType::A)
            .await
            .answers()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = ask(&d, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.id(), 4242);
    assert!(m.authoritative());
    assert_eq!(answers(&m), ["10.43.0.5"]);
    // Names are case-insensitive.
    let m = ask(&d, "WEB.Default.SVC.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["10.43.0.5"]);
    // Headless: the ready endpoints; StatefulSet pods by hostname.
    let m = ask(&d, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["10.42.0.7", "10.42.0.8"]);
    let m = ask(&d, "db-1.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["10.42.0.8"]);
    // SRV for named ports.
    let m = ask(
        &d,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(answers(&m), ["0 100 80 web.default.svc.cluster.local."]);
    let m = ask(
        &d,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        answers(&m),
        [
            "0 100 5432 db-0.db.default.svc.cluster.local.",
            "0 100 5432 db-1.db.default.svc.cluster.local."
        ]
    );
    // ExternalName: a CNAME, not followed.
    let m = ask(&d, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["db.example.test."]);
    // PTR for the cluster IP and a headless endpoint.
    let m = ask(&d, "5.0.43.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(answers(&m), ["web.default.svc.cluster.local."]);
    let m = ask(&d, "7.0.42.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(answers(&m), ["db-0.db.default.svc.cluster.local."]);
    // Pod names from the address itself.
    let m = ask(&d, "10-42-0-99.default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["10.42.0.99"]);
    // NODATA: the name exists, not the type (SOA in authority).
    let m = ask(&d, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
    let m = ask(&d, "default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    // NXDOMAIN: no such name.
    let m = ask(&d, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
    // TCP, two queries on one connection.
    let mut conn = TcpStream::connect(d.tcp).await.unwrap();
    for _ in 0..2 {
        let raw = query("web.default.svc.cluster.local.", RecordType::A);
        conn.write_all(&(raw.len() as u16).to_be_bytes())
            .await
            .unwrap();
        conn.write_all(&raw).await.unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(answers(&Message::from_vec(&buf).unwrap()), ["10.43.0.5"]);
    }
    // Garbage: FORMERR, and the server lives on.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&[0x12, 0x34, 0xff], d.udp).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!((m.id(), m.response_code()), (0x1234, ResponseCode::FormErr));
    let mut text = String::new();
    d.metrics.render(&mut text);
    assert!(
        text.contains("skiff_dns_queries_total{result=\"nxdomain\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("skiff_dns_queries_total{result=\"formerr\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn other_names_are_forwarded_and_cached() {
    let (up, count) = upstream(false).await;
    let d = start(vec![up]).await;
    let m = ask(&d, "example.test.", RecordType::A).await;
    assert_eq!(answers(&m), ["198.51.100.7"]);
    assert_eq!(m.id(), 4242);
    let m = ask(&d, "EXAMPLE.test.", RecordType::A).await;
    assert_eq!(answers(&m), ["198.51.100.7"]);
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );

    // An upstream that never answers: SERVFAIL, in bounded time.
    let (silent, _) = upstream(true).await;
    let d = start(vec![silent]).await;
    let m = ask(&d, "example.test.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);

    // No upstream at all (a node with no way out, --resolv-conf ""):
    // SERVFAIL without waiting on anyone.
    let d = start(Vec::new()).await;
    let m = ask(&d, "example.test.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
}
