//! Scraping the agents' `/metrics/resource` into the store, as
//! metrics-server does every resolution (15 s), with two differences that
//! keep a cluster quiet until someone asks: scraping starts with the first
//! metrics request and stops after [`IDLE`] without one, and a request that
//! finds a node without two recent points scrapes it at once (twice, one
//! [`WARMUP`] apart, when it has none), so the first `kubectl top` already
//! has numbers. Only nodes that can answer are scraped: Ready, with an
//! address, and not simulated (`skiff agent --simulate` nodes only pretend
//! to have addresses, which are never contacted).

use super::prometheus;
use super::store::{Entry, Store};
use crate::kubelet::KubeletClient;
use crate::registry::{ListOptions, Registry};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use skiff_machinery::catalog;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often nodes are scraped while metrics are wanted (metrics-server's
/// `--metric-resolution`).
pub const RESOLUTION: Duration = Duration::from_secs(15);
/// Scraping stops this long after the last metrics request.
pub const IDLE: Duration = Duration::from_secs(600);
/// Between the two scrapes of a node seen for the first time.
pub const WARMUP: Duration = Duration::from_secs(1);
/// One node's scrape, connection and answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Nodes scraped at the same time.
const PARALLEL: usize = 16;
/// Largest answer read from an agent.
const MAX_BODY: usize = 16 << 20;

pub struct Scraper {
    kubelet: KubeletClient,
    registry: Arc<Registry>,
    store: Mutex<Store>,
    wanted: Mutex<Option<Instant>>,
    /// One scrape round at a time; requests arriving meanwhile wait for it.
    round: tokio::sync::Mutex<()>,
}

/// The address and agent port of a node that can be scraped.
pub fn endpoint(node: &Value) -> Option<(String, u16)> {
    let status = node.get("status")?;
    let runtime = status
        .pointer("/nodeInfo/containerRuntimeVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if runtime.starts_with("sim://") {
        return None;
    }
    let ready = status
        .get("conditions")
        .and_then(Value::as_array)?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if !ready {
        return None;
    }
    let addresses = status.get("addresses").and_then(Value::as_array)?;
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|a| a["type"] == *t)
                .and_then(|a| a["address"].as_str())
                .filter(|s| !s.is_empty())
        })?;
    let port = status
        .pointer("/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .unwrap_or(10250) as u16;
    Some((host.to_string(), port))
}

fn name(node: &Value) -> String {
    crate::meta::name(node).to_string()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Scraper {
    /// A scraper; its background round runs while the scraper lives.
    pub fn start(kubelet: KubeletClient, registry: Arc<Registry>) -> Arc<Scraper> {
        let s = Arc::new(Scraper {
            kubelet,
            registry,
            store: Mutex::new(Store::new()),
            wanted: Mutex::new(None),
            round: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(background(Arc::downgrade(&s)));
        s
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of node `name`'s entry.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.store().get(name).cloned()
    }

    fn is_wanted(&self) -> bool {
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < IDLE)
    }

    /// Makes sure each of `nodes` that can be scraped has two recent
    /// points, scraping now what lacks them.
    pub async fn ensure(&self, nodes: &[Value]) {
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let _round = self.round.lock().await;
        let needs = |s: &Store, n: &Value| {
            s.get(&name(n))
                .is_none_or(|e| e.prev.is_none() || e.scraped.elapsed() > RESOLUTION + WARMUP)
        };
        let stale: Vec<Value> = {
            let s = self.store();
            nodes.iter().filter(|n| needs(&s, n)).cloned().collect()
        };
        if stale.is_empty() {
            return;
        }
        self.scrape(&stale).await;
        let first: Vec<Value> = {
            let s = self.store();
            stale
                .into_iter()
                .filter(|n| s.get(&name(n)).is_some_and(|e| e.prev.is_none()))
                .collect()
        };
        if !first.is_empty() {
            tokio::time::sleep(WARMUP).await;
            self.scrape(&first).await;
        }
    }

    /// Scrapes every one of `nodes` that can be scraped, storing what comes back.
    async fn scrape(&self, nodes: &[Value]) {
        let targets: Vec<(String, String, u16)> = nodes
            .iter()
            .filter_map(|n| endpoint(n).map(|(h, p)| (name(n), h, p)))
            .collect();
        let results: Vec<(String, Result<prometheus::Batch, String>)> =
            futures::stream::iter(targets)
                .map(|(node, host, port)| async move {
                    let r = tokio::time::timeout(TIMEOUT, self.fetch(&host, port))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer from {host}:{port} in time")));
                    (node, r)
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
        let at = Instant::now();
        let mut store = self.store();
        for (node, r) in results {
            match r {
                Ok(batch) => match store.get_mut(&node) {
                    Some(e) => e.push(batch, at),
                    None => {
                        store.insert(node, Entry::new(batch, at));
                    }
                },
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "scraping resource metrics");
                    store.remove(&node);
                }
            }
        }
    }

    /// One node's batch.
    async fn fetch(&self, host: &str, port: u16) -> Result<prometheus::Batch, String> {
        let req = http::Request::get("/metrics/resource")
            .header(http::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = self
            .kubelet
            .send(host, port, req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let text = std::str::from_utf8(&body).map_err(|e| e.to_string())?;
        let lines = prometheus::parse(text).map_err(|e| e.to_string())?;
        Ok(prometheus::batch(&lines, now_ms()))
    }

    /// One background round: every node, while metrics are wanted; entries
    /// of nodes gone or no longer scrapeable are dropped.
    async fn round(&self) {
        if !self.is_wanted() {
            self.store().clear();
            return;
        }
        let Some(res) = catalog::lookup("", "v1", "nodes") else {
            return;
        };
        let nodes: Vec<Value> = match self.registry.list(res, None, &ListOptions::default()).await {
            Ok(l) => l.items.iter().map(|e| e.object()).collect(),
            Err(e) => {
                tracing::warn!(error = %e.message, "listing nodes for resource metrics");
                return;
            }
        };
        let _round = self.round.lock().await;
        let live: std::collections::HashSet<String> = nodes
            .iter()
            .filter(|n| endpoint(n).is_some())
            .map(name)
            .collect();
        self.store().retain(|n, _| live.contains(n));
        // Nodes a request scraped moments ago wait for the next round.
        let due: Vec<Value> = {
            let s = self.store();
            nodes
                .into_iter()
                .filter(|n| {
                    s.get(&name(n))
                        .is_none_or(|e| e.scraped.elapsed() >= RESOLUTION / 2)
                })
                .collect()
        };
        self.scrape(&due).await;
    }
}

async fn background(scraper: Weak<Scraper>) {
    let mut tick = tokio::time::interval(RESOLUTION);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = scraper.upgrade() else {
            return;
        };
        s.round().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(runtime: &str, ready: &str, addresses: Value) -> Value {
        json!({"metadata": {"name": "n"}, "status": {
            "nodeInfo": {"containerRuntimeVersion": runtime},
            "conditions": [{"type": "Ready", "status": ready}],
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10351}},
        }})
    }

    #[test]
    fn only_ready_real_nodes_with_an_address_are_scraped() {
        let addr = json!([{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.2"}]);
        assert_eq!(
            endpoint(&node("runc://1.1", "True", addr.clone())),
            Some(("10.0.0.2".to_string(), 10351))
        );
        assert_eq!(endpoint(&node("runc://1.1", "False", addr.clone())), None);
        assert_eq!(endpoint(&node("sim://0.1.0", "True", addr)), None);
        assert_eq!(endpoint(&node("runc://1.1", "True", json!([]))), None);
        assert_eq!(endpoint(&json!({"metadata": {"name": "bare"}})), None);
    }
}
