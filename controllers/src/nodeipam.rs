//! Node IPAM: every node gets a `spec.podCIDR` — a /24 of the cluster CIDR
//! that no other node has. What is taken is read from the nodes themselves,
//! so a deleted node's range is free again with no bookkeeping.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// The ranges handed out: /24s of a cluster CIDR.
#[derive(Debug, Clone, Copy)]
pub struct PodCidrs {
    base: u32,
    count: u32,
}

impl PodCidrs {
    pub fn new(cluster_cidr: &str) -> anyhow::Result<Self> {
        let (ip, bits) = cluster_cidr
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("cluster CIDR {cluster_cidr:?} is not a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse()?;
        let bits: u32 = bits.parse()?;
        anyhow::ensure!(
            (8..=24).contains(&bits),
            "cluster CIDR prefix must be between /8 and /24"
        );
        let size = 1u32 << (32 - bits);
        Ok(Self {
            base: u32::from(ip) & !(size - 1),
            count: size >> 8,
        })
    }

    fn nth(&self, i: u32) -> String {
        format!("{}/24", Ipv4Addr::from(self.base + (i << 8)))
    }

    /// The first range not in `taken`.
    pub fn first_free(&self, taken: &HashSet<String>) -> Option<String> {
        (0..self.count)
            .map(|i| self.nth(i))
            .find(|c| !taken.contains(c))
    }
}

struct Ctx {
    client: Client,
    cidrs: PodCidrs,
    /// One allocation at a time, so two new nodes never get the same range.
    lock: tokio::sync::Mutex<()>,
}

pub async fn run(client: Client, cidrs: PodCidrs) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        cidrs,
        lock: Default::default(),
    });
    Controller::new(nodes, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Node>, err: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "node IPAM reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no pod CIDR left in the cluster CIDR")]
    Exhausted,
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let _guard = ctx.lock.lock().await;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    // A fresh list, not the cache: the range just given to another node counts,
    // and so does one this node already got (the cache may be behind).
    let all = nodes.list(&ListParams::default()).await?.items;
    let Some(current) = all
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
    else {
        return Ok(Action::await_change());
    };
    if current
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let taken: HashSet<String> = all
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .collect();
    let cidr = ctx.cidrs.first_free(&taken).ok_or(Error::Exhausted)?;
    // Written only over the version just read, so a concurrent writer wins cleanly.
    let rv = current.metadata.resource_version.clone();
    let patch =
        json!({"metadata": {"resourceVersion": rv}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    match nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Ok(Action::requeue(std::time::Duration::from_millis(100)))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(node = %name, %cidr, "allocated pod CIDR");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_free_ranges() {
        let c = PodCidrs::new("10.42.0.0/16").unwrap();
        let mut taken = HashSet::new();
        assert_eq!(c.first_free(&taken).unwrap(), "10.42.0.0/24");
        taken.insert("10.42.0.0/24".to_string());
        assert_eq!(c.first_free(&taken).unwrap(), "10.42.1.0/24");
        let small = PodCidrs::new("10.1.0.0/24").unwrap();
        assert_eq!(small.first_free(&taken).unwrap(), "10.1.0.0/24");
        taken.insert("10.1.0.0/24".to_string());
        assert!(small.first_free(&taken).is_none());
    }
}
