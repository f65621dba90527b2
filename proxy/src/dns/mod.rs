//! The cluster DNS of a node: answers for `cluster.local` names from an
//! index of the Service and EndpointSlice caches (rebuilt when they change,
//! at most every 100 ms, and swapped in whole so a query is a hash lookup),
//! everything else forwarded to the node's resolvers. UDP and TCP on each
//! listen address.

pub mod answer;
pub mod forward;
pub mod zone;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::Caches;
use forward::Forwarder;
use zone::Zone;

#[derive(Debug, Clone)]
pub struct DnsOptions {
    pub listen: Vec<SocketAddr>,
    /// `cluster.local`.
    pub cluster_domain: String,
    /// Where other names go; none: they are answered SERVFAIL at once.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of cluster answers (CoreDNS's default, 5 s).
    pub ttl: u32,
}

/// Queries by result (`noerror`, `nodata`, `nxdomain`, `formerr`,
/// `notimp`, `forwarded`, `cached`, `servfail`).
#[derive(Debug, Default)]
pub struct DnsMetrics {
    counts: [AtomicU64; RESULTS.len()],
}

const RESULTS: [&str; 8] = [
    "noerror",
    "nodata",
    "nxdomain",
    "formerr",
    "notimp",
    "forwarded",
    "cached",
    "servfail",
];

impl DnsMetrics {
    fn count(&self, result: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP skiff_dns_queries_total DNS queries answered, by result.\n# TYPE skiff_dns_queries_total counter"
        );
        for (r, n) in RESULTS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "skiff_dns_queries_total{{result=\"{r}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

struct Server {
    zone: RwLock<Arc<Zone>>,
    forwarder: Forwarder,
    metrics: Arc<DnsMetrics>,
}

impl Server {
    /// The response bytes for `raw`, and whether the client gets any.
    async fn handle(&self, raw: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(raw) {
            Ok(m) => m,
            Err(_) => {
                // Unparseable: FORMERR when at least the id is there.
                self.metrics.count("formerr");
                let mut m = Message::new();
                m.set_id(u16::from_be_bytes([*raw.first()?, *raw.get(1)?]))
                    .set_message_type(hickory_proto::op::MessageType::Response)
                    .set_response_code(ResponseCode::FormErr);
                return m.to_vec().ok();
            }
        };
        let zone = self.zone.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((response, result)) = answer::respond(&zone, &request) {
            self.metrics.count(result);
            return response.to_vec().ok();
        }
        if let Some(bytes) = self.forwarder.cached(&request) {
            self.metrics.count("cached");
            return Some(bytes);
        }
        match self.forwarder.forward(&request, raw, tcp).await {
            Some(bytes) => {
                self.metrics.count("forwarded");
                Some(bytes)
            }
            None => {
                self.metrics.count("servfail");
                answer::reply(&request, ResponseCode::ServFail)
                    .to_vec()
                    .ok()
            }
        }
    }
}

/// Keeps the zone in step with the caches.
async fn follow(server: Arc<Server>, caches: Caches, domain: String, ttl: u32) {
    let mut changes = caches.changes.clone();
    loop {
        let services = caches.services.state();
        let slices = caches.slices.state();
        let svc_refs: Vec<_> = services.iter().map(|s| &**s).collect();
        let slice_refs: Vec<_> = slices.iter().map(|s| &**s).collect();
        let zone = Arc::new(Zone::build(&domain, ttl, &svc_refs, &slice_refs));
        *server.zone.write().unwrap_or_else(|p| p.into_inner()) = zone;
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        changes.borrow_and_update();
    }
}

async fn serve_udp(server: Arc<Server>, sock: UdpSocket) -> std::io::Result<()> {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await?;
        let raw = buf[..n].to_vec();
        // Cluster names inline (a lookup); the forwarder may wait on an
        // upstream, so it gets a task of its own.
        let zone = server
            .zone
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let local = Message::from_vec(&raw)
            .ok()
            .and_then(|m| answer::respond(&zone, &m).map(|r| (r, m)));
        match local {
            Some(((response, result), _)) => {
                server.metrics.count(result);
                if let Ok(bytes) = response.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
            None => {
                let (server, sock) = (server.clone(), sock.clone());
                tokio::spawn(async move {
                    if let Some(bytes) = server.handle(&raw, false).await {
                        let _ = sock.send_to(&bytes, peer).await;
                    }
                });
            }
        }
    }
}

async fn serve_tcp(server: Arc<Server>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (mut conn, _) = listener.accept().await?;
        let server = server.clone();
        tokio::spawn(async move {
            // Several queries per connection; an idle one is closed.
            loop {
                let mut len = [0u8; 2];
                let read = tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len));
                if !matches!(read.await, Ok(Ok(_))) {
                    return;
                }
                let mut raw = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut raw).await.is_err() {
                    return;
                }
                let Some(bytes) = server.handle(&raw, true).await else {
                    return;
                };
                let Ok(n) = u16::try_from(bytes.len()) else {
                    return;
                };
                if conn.write_all(&n.to_be_bytes()).await.is_err()
                    || conn.write_all(&bytes).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Serves on sockets already bound (tests and benchmarks use port 0).
pub async fn serve_on(
    opts: DnsOptions,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    caches: Caches,
    metrics: Arc<DnsMetrics>,
) -> anyhow::Result<()> {
    let upstreams = opts.upstreams.clone();
    let server = Arc::new(Server {
        zone: RwLock::new(Arc::new(Zone::empty(&opts.cluster_domain, opts.ttl))),
        forwarder: Forwarder::new(upstreams),
        metrics,
    });
    tokio::spawn(follow(
        server.clone(),
        caches,
        opts.cluster_domain.clone(),
        opts.ttl,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for s in udp {
        tasks.spawn(serve_udp(server.clone(), s));
    }
    for l in tcp {
        tasks.spawn(serve_tcp(server.clone(), l));
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Binds every listen address (UDP and TCP) and serves.
pub async fn serve(
    opts: DnsOptions,
    caches: Caches,
    metrics: Arc<DnsMetrics>,
) -> anyhow::Result<()> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in &opts.listen {
        udp.push(
            UdpSocket::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("DNS on udp {addr}: {e}"))?,
        );
        tcp.push(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("DNS on tcp {addr}: {e}"))?,
        );
    }
    serve_on(opts, udp, tcp, caches, metrics).await
}
