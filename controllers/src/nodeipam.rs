//! Node IPAM: every node gets a `spec.podCIDR` — a /24 of the cluster CIDR
//! that no other node has. What is taken is read from the cached nodes
//! themselves (plus ranges just written), so a deleted node's range is free
//! again with no bookkeeping.

use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::Client;
use serde_json::json;
use skiff_machinery::client::events::Recorder;
use std::collections::{HashMap, HashSet};
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
    nodes: Store<Node>,
    /// Ranges written to nodes the cache does not show with them yet, by
    /// node name; held across the whole allocation so no range goes twice.
    pending: tokio::sync::Mutex<HashMap<String, String>>,
    recorder: Recorder,
}

pub async fn run(client: Client, cidrs: PodCidrs, recorder: Recorder) -> anyhow::Result<()> {
    let (nodes, node_events) = crate::resources::reflected::<Node>(&client);
    let ctx = Arc::new(Ctx {
        client,
        cidrs,
        nodes: nodes.clone(),
        pending: Default::default(),
        recorder,
    });
    Controller::for_shared_stream("nodeipam", node_events, nodes)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Node>, err: &Error, _: Arc<Ctx>) -> Action {
    match err {
        // Reported on the node as an event; retried when ranges may have freed up.
        Error::Exhausted => Action::requeue(Duration::from_secs(60)),
        Error::Kube(e) => {
            tracing::warn!(error = %e, "node IPAM reconcile failed");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no pod CIDR left in the cluster CIDR")]
    Exhausted,
}

fn pod_cidr(node: &Node) -> Option<&String> {
    node.spec.as_ref()?.pod_cidr.as_ref()
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pod_cidr(&node).is_some() {
        return Ok(Action::await_change());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut pending = ctx.pending.lock().await;
    let cached = ctx.nodes.state();
    // A pending range counts until the cache shows its node with a range, or
    // without the node (deleted).
    let without_range: HashSet<&String> = cached
        .iter()
        .filter(|n| pod_cidr(n).is_none())
        .filter_map(|n| n.metadata.name.as_ref())
        .collect();
    pending.retain(|pending_node, _| without_range.contains(pending_node));
    if pending.contains_key(&name) {
        // Already given one; the cache has not caught up.
        return Ok(Action::await_change());
    }
    let mut taken: HashSet<String> = cached.iter().filter_map(|n| pod_cidr(n).cloned()).collect();
    taken.extend(pending.values().cloned());
    let Some(cidr) = ctx.cidrs.first_free(&taken) else {
        ctx.recorder.record(
            &*node,
            "Normal",
            "CIDRNotAvailable",
            "CIDRNotAvailable",
            format!("Node {name} status is now: CIDRNotAvailable"),
        );
        return Err(Error::Exhausted);
    };
    // Written only over the version read, so a node the cache shows stale is retried.
    let rv = node.metadata.resource_version.clone();
    let patch =
        json!({"metadata": {"resourceVersion": rv}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    match nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Ok(Action::requeue(Duration::from_millis(100)))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(node = %name, %cidr, "allocated pod CIDR");
    pending.insert(name, cidr);
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
