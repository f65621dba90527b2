//! `skiff proxy`, and the proxy flags `skiff agent` shares (kube-proxy's
//! names): the service rules and cluster DNS of one node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use skiff_machinery::cidr::Cidr;

/// The flags of the proxy a node runs.
#[derive(clap::Args, Clone)]
pub struct ProxyFlags {
    /// How Services become packet rules: iptables (chains written with
    /// iptables-restore) or nftables (one table, Services as map elements;
    /// much faster syncs with many Services).
    #[arg(long, value_enum, default_value_t = ProxyModeFlag::Iptables)]
    pub proxy_mode: ProxyModeFlag,
    /// Where the proxy serves /healthz and /metrics.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
    /// The least time between two rule syncs (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub iptables_min_sync_period: Duration,
    /// How often all rules are written again, repairing drift.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub iptables_sync_period: Duration,
    /// Port of the node's cluster DNS server, on the node's address (the
    /// kube-dns Service leads there); 0 runs none.
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// Resolver configuration whose nameservers the cluster DNS forwards
    /// other names to, and that pods with dnsPolicy Default get (kubelet's
    /// flag); "" for none, as on a node with no way out.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: String,
}

/// kube-proxy's `--proxy-mode` values (those skiff has).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ProxyModeFlag {
    Iptables,
    Nftables,
}

impl From<ProxyModeFlag> for skiff_proxy::ProxyMode {
    fn from(m: ProxyModeFlag) -> Self {
        match m {
            ProxyModeFlag::Iptables => skiff_proxy::ProxyMode::Iptables,
            ProxyModeFlag::Nftables => skiff_proxy::ProxyMode::Nftables,
        }
    }
}

impl ProxyFlags {
    /// The text of --resolv-conf ("" when it is "" or missing).
    pub fn resolv_conf_text(&self) -> String {
        if self.resolv_conf.is_empty() {
            return String::new();
        }
        std::fs::read_to_string(&self.resolv_conf).unwrap_or_default()
    }
}

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// This node's name, for the Local traffic policies [default: the hostname].
    #[arg(long)]
    hostname_override: Option<String>,
    /// The whole pod range (pod traffic to a cluster IP is not masqueraded).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Remove every rule and chain of the proxy, then exit.
    #[arg(long)]
    cleanup: bool,
    #[command(flatten)]
    flags: ProxyFlags,
}

/// The proxy's options for node `node_name` in `cluster_cidr`.
pub fn options(
    flags: &ProxyFlags,
    node_name: &str,
    cluster_cidr: &str,
    cluster_domain: &str,
) -> Result<skiff_proxy::Options> {
    let cluster_cidr: Cidr = cluster_cidr
        .parse()
        .with_context(|| format!("--cluster-cidr {cluster_cidr:?}"))?;
    Ok(skiff_proxy::Options {
        sync: skiff_proxy::SyncOptions {
            node_name: node_name.to_string(),
            mode: flags.proxy_mode.into(),
            context: skiff_proxy::rules::Context {
                cluster_cidr: Some(cluster_cidr).filter(Cidr::is_ipv4),
            },
            min_interval: flags.iptables_min_sync_period,
            period: flags.iptables_sync_period,
        },
        metrics_addr: Some(flags.healthz_bind_address),
        dns: (flags.dns_port != 0).then(|| skiff_proxy::NodeDns {
            port: flags.dns_port,
            cluster_domain: cluster_domain.to_string(),
            resolv_conf: flags.resolv_conf_text(),
        }),
    })
}

pub async fn run(a: ProxyArgs) -> Result<()> {
    if a.cleanup {
        skiff_proxy::restore::Kernel::remove_all().await?;
        // No nft on the node: no nftables rules of ours either.
        if let Err(e) = skiff_proxy::nft_apply::NftKernel::remove_all().await {
            tracing::warn!(error = %e, "cannot remove the nftables rules");
        }
        return Ok(());
    }
    let kubeconfig = a
        .kubeconfig
        .context("--kubeconfig (or KUBECONFIG) is required")?;
    let node_name = match a.hostname_override {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_lowercase(),
    };
    let opts = options(&a.flags, &node_name, &a.cluster_cidr, &a.cluster_domain)?;
    let client = crate::component_client(&kubeconfig, "kube-proxy").await?;
    tokio::select! {
        r = skiff_proxy::run(client, opts) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
