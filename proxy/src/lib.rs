//! The service proxy of a node: Services and their EndpointSlices as
//! iptables rules in the node's network namespace, and the cluster DNS that
//! pods use as their nameserver. Run by `skiff agent` on every node, or alone
//! as `skiff proxy`.
//!
//! Both read one pair of informer caches (Services, EndpointSlices); every
//! change to either bumps a counter the rule sync loop (and the DNS index)
//! wait on, so a burst of changes costs one sync.

pub mod dns;
pub mod healthcheck;
pub mod metrics;
pub mod model;
mod nfnetlink;
pub mod nft_apply;
pub mod nft_expr;
pub mod nftables;
mod node_dns;
pub mod restore;
pub mod rules;
pub mod sync;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::Client;
use skiff_machinery::client::informers::{self, Change};
use tokio::sync::watch;

pub use metrics::SyncMetrics;
pub use sync::{ProxyMode, SyncOptions};

#[derive(Debug, Clone)]
pub struct Options {
    pub sync: SyncOptions,
    /// Where `/healthz` and `/metrics` are served (kube-proxy's healthz
    /// port is 10256); None serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// The cluster DNS on this node, if it runs one.
    pub dns: Option<NodeDns>,
}

/// The node's DNS server: on the node's address (its InternalIP), and
/// published as an endpoint of the `kube-dns` Service.
#[derive(Debug, Clone)]
pub struct NodeDns {
    pub port: u16,
    pub cluster_domain: String,
    /// The node's resolver configuration (its text): other names go to its
    /// nameservers; empty, nowhere.
    pub resolv_conf: String,
}

/// The informer caches the proxy works from, and their change counter.
#[derive(Clone)]
pub struct Caches {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub changes: watch::Receiver<u64>,
}

/// Bumps `tx` on every change `changes` announces.
async fn count<K>(changes: impl Stream<Item = Change<K>>, tx: watch::Sender<u64>) {
    let mut changes = std::pin::pin!(changes);
    while changes.next().await.is_some() {
        tx.send_modify(|n| *n += 1);
    }
}

/// The process's shared Service and EndpointSlice caches (the agent's
/// too, when it runs the proxy); returns once both hold a full list.
pub async fn caches(client: Client) -> anyhow::Result<Caches> {
    let (services, svc_changes) = informers::subscribe::<Service>(&client);
    let (slices, slice_changes) = informers::subscribe::<EndpointSlice>(&client);
    let (tx, changes) = watch::channel(0u64);
    tokio::spawn(count(svc_changes, tx.clone()));
    tokio::spawn(count(slice_changes, tx));
    services.wait_until_ready().await?;
    slices.wait_until_ready().await?;
    Ok(Caches {
        services,
        slices,
        changes,
    })
}

/// Bridged pod traffic must pass iptables, or a reply from a pod to a pod
/// on the same bridge skips the un-DNAT of its Service address.
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Runs the proxy until its caches' watches end (never, in practice).
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    match std::fs::read_to_string(BRIDGE_NF) {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => {
            if let Err(e) = std::fs::write(BRIDGE_NF, "1") {
                tracing::warn!(error = %e, "cannot enable {BRIDGE_NF}: pods may not reach Services on their own node");
            }
        }
        Err(_) => tracing::warn!(
            "no {BRIDGE_NF} (module br_netfilter): pods may not reach Services on their own node"
        ),
    }
    let caches = caches(client.clone()).await?;
    let metrics = Arc::new(SyncMetrics::default());
    let dns_metrics = Arc::new(dns::DnsMetrics::default());
    if let Some(addr) = opts.metrics_addr {
        let (m, d) = (metrics.clone(), dns_metrics.clone());
        tokio::spawn(async move {
            let served = skiff_machinery::plain_http::serve(addr, move |path| match path {
                "/healthz" | "/livez" => Some(m.health()),
                "/metrics" => {
                    let mut out = String::new();
                    m.render(&mut out);
                    d.render(&mut out);
                    Some(("200 OK", out))
                }
                _ => None,
            });
            if let Err(e) = served.await {
                tracing::error!(%addr, error = %e, "proxy metrics server failed");
            }
        });
    }
    if let Some(d) = opts.dns.clone() {
        let (client, caches, node) = (client.clone(), caches.clone(), opts.sync.node_name.clone());
        tokio::spawn(async move {
            if let Err(e) = node_dns::run(client, &node, d, caches, dns_metrics).await {
                tracing::error!(error = %e, "cluster DNS stopped");
            }
        });
    }
    sync::run(
        opts.sync,
        caches.services,
        caches.slices,
        caches.changes,
        metrics,
    )
    .await;
    Ok(())
}
