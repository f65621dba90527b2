//! Running the cluster DNS on a node: on the node's InternalIP (once the
//! node has registered one), published as this node's endpoint of the
//! `kube-dns` Service in kube-system. That Service keeps lookups on the
//! pod's own node (internalTrafficPolicy Local), so each node's proxy
//! answers its own pods, and the slice goes with the node (owned by it).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::dns::{self, DnsMetrics, DnsOptions};
use crate::{Caches, NodeDns};

const SERVICE: &str = "kube-dns";
const NAMESPACE: &str = "kube-system";
const MANAGER: &str = "skiff-proxy";

/// The node's InternalIP, waiting for the agent to register it.
async fn node_address(client: &Client, node: &str) -> (Node, IpAddr) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut waited = Duration::ZERO;
    loop {
        if let Ok(Some(n)) = nodes.get_opt(node).await {
            let ip = n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .and_then(|a| a.address.parse().ok());
            if let Some(ip) = ip {
                return (n, ip);
            }
        }
        if waited.as_secs().is_multiple_of(30) {
            tracing::info!(node, "cluster DNS waiting for the node's InternalIP");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += Duration::from_secs(1);
    }
}

async fn publish(client: &Client, node: &Node, ip: IpAddr, port: u16) -> anyhow::Result<()> {
    let name = format!("{SERVICE}-{}", node.name_any());
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": SERVICE,
                       "endpointslice.kubernetes.io/managed-by": MANAGER},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name_any(),
                                 "uid": node.uid().unwrap_or_default()}]},
        "addressType": family,
        "endpoints": [{"addresses": [ip.to_string()], "nodeName": node.name_any(),
                       "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": port, "protocol": "TCP"}],
    });
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(slice),
    )
    .await?;
    Ok(())
}

pub async fn run(
    client: Client,
    node: &str,
    d: NodeDns,
    caches: Caches,
    metrics: Arc<DnsMetrics>,
) -> anyhow::Result<()> {
    let (n, ip) = node_address(&client, node).await;
    let listen = SocketAddr::new(ip, d.port);
    let opts = DnsOptions {
        listen: vec![listen],
        cluster_domain: d.cluster_domain,
        upstreams: dns::forward::upstreams_from(&d.resolv_conf, &[listen]),
        ttl: 5,
    };
    let serving = dns::serve(opts, caches, metrics);
    let mut serving = std::pin::pin!(serving);
    // Published once listening has begun (binding fails fast).
    tokio::select! {
        r = &mut serving => return r,
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match publish(&client, &n, ip, d.port).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "publishing the node's DNS endpoint failed; retrying");
                tokio::select! {
                    r = &mut serving => return r,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    tracing::info!(%listen, "cluster DNS serving");
    serving.await
}
