//! Names outside the cluster: forwarded to the node's own resolvers (its
//! `/etc/resolv.conf`), over UDP for UDP queries and TCP for TCP ones, each
//! upstream tried in turn within a time limit, SERVFAIL when none answers.
//! Answers are cached by question for their smallest TTL (capped), negative
//! ones briefly, in a bounded cache.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_TTL: u32 = 30;
const NEGATIVE_TTL: u32 = 5;
const CACHE_ENTRIES: usize = 10_000;

/// The nameservers of a resolv.conf, port 53, leaving out `ours`.
pub fn upstreams_from(resolv_conf: &str, ours: &[SocketAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| !ours.contains(a))
        .collect()
}

type Key = (String, u16, u16);

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<Key, (Instant, Vec<u8>)>>,
}

fn key(m: &Message) -> Option<Key> {
    let q = m.queries().first()?;
    Some((
        q.name().to_lowercase().to_ascii(),
        u16::from(q.query_type()),
        u16::from(q.query_class()),
    ))
}

/// How long `m` may be cached.
fn cache_for(m: &Message) -> Option<Duration> {
    match m.response_code() {
        ResponseCode::NoError if !m.answers().is_empty() => {
            let ttl = m.answers().iter().map(|r| r.ttl()).min().unwrap_or(0);
            Some(Duration::from_secs(u64::from(ttl.min(MAX_TTL))))
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            Some(Duration::from_secs(u64::from(NEGATIVE_TTL)))
        }
        _ => None,
    }
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A cached answer to `request`, its id set to the request's.
    pub fn cached(&self, request: &Message) -> Option<Vec<u8>> {
        let k = key(request)?;
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (expires, bytes) = cache.get(&k)?;
        if *expires <= Instant::now() {
            return None;
        }
        let mut out = bytes.clone();
        out[..2].copy_from_slice(&request.id().to_be_bytes());
        Some(out)
    }

    fn remember(&self, request: &Message, answer: &[u8]) {
        let (Some(k), Ok(m)) = (key(request), Message::from_vec(answer)) else {
            return;
        };
        let Some(ttl) = cache_for(&m).filter(|t| !t.is_zero()) else {
            return;
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, (exp, _)| *exp > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(k, (Instant::now() + ttl, answer.to_vec()));
    }

    /// The upstream answer to `raw` (the request's bytes); None when no
    /// upstream answered in time.
    pub async fn forward(&self, request: &Message, raw: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for up in &self.upstreams {
            let got = if tcp {
                tokio::time::timeout(UPSTREAM_TIMEOUT, ask_tcp(*up, raw)).await
            } else {
                tokio::time::timeout(UPSTREAM_TIMEOUT, ask_udp(*up, raw)).await
            };
            match got {
                Ok(Ok(answer)) if answer.len() >= 12 && answer[..2] == raw[..2] => {
                    self.remember(request, &answer);
                    return Some(answer);
                }
                Ok(Err(e)) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
                _ => tracing::debug!(upstream = %up, "upstream did not answer"),
            }
        }
        None
    }
}

async fn ask_udp(up: SocketAddr, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(up).await?;
    sock.send(raw).await?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn ask_tcp(up: SocketAddr, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = tokio::net::TcpStream::connect(up).await?;
    let len = u16::try_from(raw.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    conn.write_all(&len.to_be_bytes()).await?;
    conn.write_all(raw).await?;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}
