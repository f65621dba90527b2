//! skiff: a complete, small Kubernetes in one binary.

use anyhow::{Context, Result};

#[cfg(feature = "mimalloc")]
mod allocator;

use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

mod images_cmd;
mod lab_cmd;
mod proxy_cmd;
mod up_cmd;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A complete, small Kubernetes in one binary",
    propagate_version = true
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A single-node cluster on this machine: the control plane and a node
    /// in one process, its kubeconfig merged into yours as context `skiff`.
    Up(Box<up_cmd::UpArgs>),
    /// A multi-node lab cluster on this machine: a server and N nodes, each
    /// node in its own network namespace (`lab up|down`, `lab node stop|start`).
    Lab(lab_cmd::LabArgs),
    /// Run the control plane: the API server, the scheduler and the controllers.
    Server(Box<ServerArgs>),
    /// Run the scheduler alone, against any API server.
    Scheduler(SchedulerArgs),
    /// Run the controllers alone (garbage collector, namespaces, nodes,
    /// endpoints, workloads, …), against any API server.
    ControllerManager(ControllerManagerArgs),
    /// Run a node agent: this machine's pods as real containers (runc, CNI),
    /// or with `--simulate` many simulated nodes that run nothing.
    Agent(Box<AgentArgs>),
    /// Run the service proxy alone: this node's Services as iptables rules
    /// (`skiff agent` runs it too).
    Proxy(proxy_cmd::ProxyArgs),
    /// Import, list and remove the images of this node's image store.
    Images(images_cmd::ImagesArgs),
    /// Print the skiff version and the Kubernetes API version it implements.
    Version,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Kubeconfig to reach the API server with (or --server and --token).
    #[arg(long, env = "KUBECONFIG", required_unless_present = "server")]
    kubeconfig: Option<PathBuf>,
    /// The server to join, https://HOST:6443, with --token (as k3s's agents).
    #[arg(
        long,
        env = "SKIFF_URL",
        requires = "token",
        conflicts_with = "kubeconfig"
    )]
    server: Option<String>,
    /// The join token: the server's <data-dir>/server/node-token.
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// Simulate nodes: register them and play their pods' lifecycle without running anything.
    #[arg(long)]
    simulate: bool,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Simulated nodes are named <prefix>-0 … <prefix>-<N-1>.
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// Capacity of each simulated node.
    #[arg(long, default_value = "8")]
    sim_cpu: String,
    #[arg(long, default_value = "32Gi")]
    sim_memory: String,
    #[arg(long, default_value_t = 110)]
    sim_pods: u32,
    /// This node's name [default: the hostname].
    #[arg(long)]
    node_name: Option<String>,
    /// This node's address [default: the address of the default route's interface].
    #[arg(long)]
    node_ip: Option<String>,
    /// Folder for the agent's state: images, sandboxes, containers.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Where container logs go (CRI format, as kubelet's /var/log/pods).
    #[arg(long, default_value = "/var/log/pods")]
    pod_log_dir: PathBuf,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// CNI network configs [default: <data-dir>/agent/etc/cni/net.d].
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Folders with CNI plugin binaries, searched in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "/opt/cni/bin,/usr/lib/cni"
    )]
    cni_bin_dir: Vec<PathBuf>,
    /// The whole pod range (traffic inside it is not masqueraded).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Nameservers pods use (the cluster DNS Service's address).
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Extra node labels, key=value.
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// Resources set aside for the system, e.g. cpu=100m,memory=256Mi.
    #[arg(long, default_value = "")]
    system_reserved: String,
    /// Disk usage (percent) at which unused images are removed.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_high_threshold: u8,
    /// Disk usage (percent) image removal brings it down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_low_threshold: u8,
    /// Port of the streaming server (logs, exec, attach, port-forward) the
    /// API server connects to, as kubelet's --port.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Address the streaming server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    kubelet_address: IpAddr,
    /// A registry (host:port) to pull from over plain HTTP; loopback ones
    /// always are. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Pull a registry's images from another endpoint: NAME=HOST[:PORT] or
    /// NAME=URL (e.g. a mirror, or the API host of the default registry).
    /// Repeatable.
    #[arg(long = "registry-mirror")]
    registry_mirrors: Vec<String>,
    /// Do not run the service proxy on this node (as k3s's flag).
    #[arg(long)]
    disable_kube_proxy: bool,
    #[command(flatten)]
    proxy: proxy_cmd::ProxyFlags,
}

impl AgentArgs {
    fn options(&self) -> Result<skiff_agent::kubelet::Options> {
        let node_name = match &self.node_name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
                .trim()
                .to_lowercase(),
        };
        let mut labels = std::collections::BTreeMap::new();
        for l in &self.node_labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--node-label {l:?}: expected key=value"))?;
            labels.insert(k.to_string(), v.to_string());
        }
        let (mut cpu, mut memory) = (0i64, 0i64);
        for kv in self.system_reserved.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--system-reserved {kv:?}: expected name=quantity")
            })?;
            let q = skiff_machinery::quantity::Quantity::parse(v)
                .map_err(|e| anyhow::anyhow!("--system-reserved {kv:?}: {e}"))?;
            match k {
                "cpu" => cpu = q.millis as i64,
                "memory" => memory = (q.millis / 1000) as i64,
                _ => anyhow::bail!("--system-reserved: unknown resource {k:?} (cpu, memory)"),
            }
        }
        let mut registries = skiff_agent::images::registry::RegistryConfig {
            insecure: self.insecure_registries.clone(),
            ..Default::default()
        };
        for m in &self.registry_mirrors {
            let (name, endpoint) = m
                .split_once('=')
                .filter(|(n, e)| !n.is_empty() && !e.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("--registry-mirror {m:?}: expected NAME=ENDPOINT")
                })?;
            registries
                .mirrors
                .insert(name.to_string(), endpoint.to_string());
        }
        Ok(skiff_agent::kubelet::Options {
            node_name,
            node_ip: self.node_ip.clone(),
            data_dir: self.data_dir.clone(),
            pod_log_dir: self.pod_log_dir.clone(),
            runtime: self.runtime.clone(),
            cni_conf_dir: self
                .cni_conf_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("agent/etc/cni/net.d")),
            cni_bin_dirs: self.cni_bin_dir.clone(),
            cluster_cidr: self.cluster_cidr.clone(),
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self.cluster_domain.clone(),
            host_resolv_conf: self.proxy.resolv_conf_text(),
            labels,
            reserved_cpu_millis: cpu,
            reserved_memory: memory,
            image_gc_high_threshold: self.image_gc_high_threshold,
            image_gc_low_threshold: self
                .image_gc_low_threshold
                .min(self.image_gc_high_threshold),
            kubelet_port: self.kubelet_port,
            registries,
        })
    }
}

impl AgentArgs {
    /// The kubeconfig to reach the API server with: the one given, or the
    /// node's own, made by joining with the token (kept for later starts).
    async fn kubeconfig(&self, node: &str) -> Result<PathBuf> {
        if let Some(k) = &self.kubeconfig {
            return Ok(k.clone());
        }
        match self.joining() {
            Some((server, token)) => {
                skiff_agent::join::kubeconfig(server, token, node, &self.data_dir).await
            }
            None => anyhow::bail!("--kubeconfig, or --server with --token, is required"),
        }
    }

    /// The server and token to join with, when no kubeconfig is given.
    fn joining(&self) -> Option<(&str, &str)> {
        match (&self.kubeconfig, &self.server, &self.token) {
            (None, Some(server), Some(token)) => Some((server, token)),
            _ => None,
        }
    }

    /// The streaming server's settings; client certificates are checked
    /// against the CA of the agent's own kubeconfig.
    fn stream_options(
        &self,
        opts: &skiff_agent::kubelet::Options,
        kubeconfig: &std::path::Path,
    ) -> Result<skiff_agent::stream::Options> {
        Ok(skiff_agent::stream::Options {
            address: self.kubelet_address,
            port: self.kubelet_port,
            node_name: opts.node_name.clone(),
            node_ip: opts.node_ip.clone(),
            data_dir: opts.data_dir.clone(),
            pod_log_dir: opts.pod_log_dir.clone(),
            runtime: opts.runtime.clone(),
            client_ca: skiff_agent::stream::tls::cluster_ca(kubeconfig)?,
        })
    }
}

#[derive(clap::Args)]
struct SchedulerArgs {
    /// Kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    #[command(flatten)]
    common: SchedulerFlags,
}

/// Scheduler settings, for `skiff scheduler` and the one inside `skiff server`.
#[derive(clap::Args)]
struct SchedulerFlags {
    /// A KubeSchedulerConfiguration file (profiles, plugins, percentageOfNodesToScore, leaderElection).
    #[arg(long = "scheduler-config", alias = "config")]
    scheduler_config: Option<PathBuf>,
    /// Where the scheduler serves /metrics and /healthz over plain HTTP ("" turns it off).
    #[arg(long, default_value = "127.0.0.1:10251")]
    scheduler_metrics_address: String,
}

impl SchedulerFlags {
    fn configuration(&self) -> Result<skiff_scheduler::Configuration> {
        match &self.scheduler_config {
            None => Ok(Default::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                skiff_scheduler::Configuration::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
        }
    }

    /// Starts the scheduler in the background (its metrics too, when the
    /// address is free).
    fn spawn(&self, client: kube::Client, identity: String) -> Result<()> {
        let config = self.configuration()?;
        config.profiles().map_err(anyhow::Error::msg)?;
        let metrics = std::sync::Arc::new(skiff_scheduler::metrics::Metrics::default());
        if !self.scheduler_metrics_address.is_empty() {
            let addr: std::net::SocketAddr = self.scheduler_metrics_address.parse()?;
            let m = metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = skiff_scheduler::metrics::serve(addr, m).await {
                    tracing::warn!(%addr, error = %e, "scheduler metrics not served");
                }
            });
        }
        let opts = skiff_scheduler::Options {
            config,
            identity,
            metrics,
        };
        tokio::spawn(async move {
            if let Err(e) = skiff_scheduler::run(client, opts).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        });
        Ok(())
    }
}

#[derive(clap::Args)]
struct ControllerManagerArgs {
    /// Kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Range pod addresses come from (each node gets a /24).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    #[command(flatten)]
    common: ControllerFlags,
}

/// Controller settings, for `skiff controller-manager` and the controllers inside `skiff server`.
#[derive(clap::Args)]
struct ControllerFlags {
    /// How long a node may miss heartbeats before it is marked Unknown and tainted (e.g. 40s, 5s).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Finished pods kept before pod GC deletes the oldest.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Where the controllers serve /metrics and /healthz over plain HTTP ("" turns it off).
    #[arg(long, default_value = "127.0.0.1:10252")]
    controller_metrics_address: String,
    /// Do not run a packaged component (k3s's flag): servicelb, or
    /// local-storage (the local-path provisioner and its default class).
    #[arg(long, value_parser = ["servicelb", "local-storage"])]
    disable: Vec<String>,
    /// Where the local-path provisioner makes volumes, on each node (k3s's
    /// flag) [default: <data-dir>/storage; /var/lib/skiff/storage for
    /// `skiff controller-manager`].
    #[arg(long)]
    default_local_storage_path: Option<PathBuf>,
    /// The CA published to every namespace as ConfigMap `kube-root-ca.crt`,
    /// for pods to check the API server with (upstream's flag)
    /// [default: the CA of the controllers' kubeconfig].
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
}

impl ControllerFlags {
    /// Starts the controllers in the background (their metrics too, when
    /// the address is free).
    fn spawn(
        &self,
        client: kube::Client,
        kubeconfig: &std::path::Path,
        cluster_cidr: String,
        identity: String,
        data_dir: &std::path::Path,
    ) -> Result<()> {
        if !self.controller_metrics_address.is_empty() {
            let addr: std::net::SocketAddr = self.controller_metrics_address.parse()?;
            tokio::spawn(async move {
                if let Err(e) = skiff_controllers::metrics::serve(addr).await {
                    tracing::warn!(%addr, error = %e, "controller metrics not served");
                }
            });
        }
        let root_ca = match &self.root_ca_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?,
            ),
            None => skiff_agent::stream::tls::cluster_ca(kubeconfig)
                .inspect_err(|e| tracing::warn!(error = %e, "kube-root-ca.crt not published"))
                .ok(),
        };
        let cfg = skiff_controllers::Config {
            root_ca,
            cluster_cidr,
            node_monitor_grace_period: self.node_monitor_grace_period,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            servicelb: !self.disable.iter().any(|d| d == "servicelb"),
            local_storage_path: (!self.disable.iter().any(|d| d == "local-storage")).then(|| {
                self.default_local_storage_path
                    .clone()
                    .unwrap_or_else(|| data_dir.join("storage"))
            }),
            identity,
        };
        tokio::spawn(async move {
            if let Err(e) = skiff_controllers::run(client, cfg).await {
                tracing::error!(error = %e, "controller manager stopped");
            }
        });
        Ok(())
    }
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Folder for state: the embedded store, certificates, kubeconfig.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Where to write the admin kubeconfig [default: <data-dir>/kubeconfig.yaml].
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// etcd endpoints (http://127.0.0.1:2379[,…]); the embedded store when unset.
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,
    /// The join secret [default: made on first start, kept in
    /// <data-dir>/server/token]; a given one is also an admin bearer token.
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// Range Service ClusterIPs come from (k3s's default).
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Range pod addresses come from (each node gets a /24).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Cluster IP of the kube-dns Service [default: the tenth address of
    /// --service-cidr, 10.43.0.10 as k3s's].
    #[arg(long)]
    cluster_dns: Option<IpAddr>,
    /// Extra names and addresses for the serving certificate.
    #[arg(long)]
    tls_san: Vec<String>,
    /// Address other nodes and pods reach the API server at [default: the bind address, or 127.0.0.1].
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    #[command(flatten)]
    controllers: ControllerFlags,
    /// Do not run the controllers (garbage collector, namespace, …) in this process.
    #[arg(long)]
    disable_controller_manager: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    scheduler: SchedulerFlags,
}

fn init_logging(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `40s`, `2m`, `500ms` or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The address k3s gives the cluster DNS: the service range's tenth.
fn tenth_address(service_cidr: &str) -> Option<IpAddr> {
    let cidr: skiff_machinery::cidr::Cidr = service_cidr.split(',').next()?.parse().ok()?;
    Some(match cidr.addr() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 10).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 10).into()),
    })
}

/// This process's name in leader Leases: the host, and for a server its
/// data dir, so a restarted server takes its leases back at once instead of
/// waiting for them to lapse; otherwise unique per process.
fn identity(data_dir: Option<&std::path::Path>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let suffix = match data_dir {
        Some(dir) => {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let mut h: u32 = 0x811c9dc5;
            for b in dir.to_string_lossy().bytes() {
                h = (h ^ b as u32).wrapping_mul(0x01000193);
            }
            format!("{h:08x}")
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    format!("{}_{suffix}", host.trim())
}

/// A kube client from a kubeconfig file, over HTTP/2, for one of skiff's
/// components, named in its user agent as upstream's binaries name
/// themselves (`kube-scheduler`, `kubelet`, …): the API server names field
/// managers after it.
async fn component_client(path: &std::path::Path, program: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let agent = format!(
        "{program}/v{} (linux/{}) skiff",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&agent)?,
    ));
    skiff_machinery::client::http2::client(cfg)
}

/// The control plane: the API server, and the scheduler and controllers
/// unless disabled, running in the background.
async fn start_server(a: ServerArgs) -> Result<skiff_apiserver::server::Running> {
    let server_identity = identity(Some(&a.data_dir));
    let cluster_dns = a.cluster_dns.or_else(|| tenth_address(&a.service_cidr));
    let data_dir = a.data_dir.clone();
    let cfg = skiff_apiserver::server::Config {
        data_dir: a.data_dir,
        bind_address: a.bind_address,
        https_listen_port: a.https_listen_port,
        write_kubeconfig: a.write_kubeconfig,
        datastore_endpoint: a.datastore_endpoint,
        token: a.token,
        service_cidr: a.service_cidr,
        cluster_cidr: a.cluster_cidr,
        tls_san: a.tls_san,
        advertise_address: a.advertise_address,
        cluster_dns,
    };
    let cluster_cidr = cfg.cluster_cidr.clone();
    let running = skiff_apiserver::server::start(cfg).await?;
    if !a.disable_scheduler {
        let kubeconfig = running.component_kubeconfig("scheduler", "system:kube-scheduler", &[])?;
        a.scheduler.spawn(
            component_client(&kubeconfig, "kube-scheduler").await?,
            server_identity.clone(),
        )?;
    }
    if !a.disable_controller_manager {
        let kubeconfig =
            running.component_kubeconfig("controller", "system:kube-controller-manager", &[])?;
        a.controllers.spawn(
            component_client(&kubeconfig, "kube-controller-manager").await?,
            &kubeconfig,
            cluster_cidr,
            server_identity,
            &data_dir,
        )?;
    }
    Ok(running)
}

/// A real node: the agent, its streaming server and its service proxy,
/// until one of them fails.
async fn run_node(a: AgentArgs) -> Result<()> {
    let opts = a.options()?;
    let kubeconfig = a.kubeconfig(&opts.node_name).await?;
    let client = component_client(&kubeconfig, "kubelet").await?;
    // Without a CA to check clients against, the node still runs
    // pods; only logs/exec/port-forward through the API are off.
    let stream = a
        .stream_options(&opts, &kubeconfig)
        .inspect_err(|e| tracing::warn!(error = %e, "streaming server disabled"))
        .ok();
    let stream_client = client.clone();
    let server = async move {
        match stream {
            Some(s) => skiff_agent::stream::run(stream_client, s).await,
            None => std::future::pending().await,
        }
    };
    let proxy_opts = (!a.disable_kube_proxy)
        .then(|| {
            proxy_cmd::options(
                &a.proxy,
                &opts.node_name,
                &a.cluster_cidr,
                &a.cluster_domain,
            )
        })
        .transpose()?;
    let proxy_client = client.clone();
    let proxy = async move {
        match proxy_opts {
            Some(p) => skiff_proxy::run(proxy_client, p).await,
            None => std::future::pending().await,
        }
    };
    // A node that joined with a token renews its certificate itself, then
    // starts again with it.
    let (joined, node, kc) = (
        a.kubeconfig.is_none(),
        opts.node_name.clone(),
        kubeconfig.clone(),
    );
    let renewal = async move {
        match joined {
            true => skiff_agent::join::renew_when_due(&kc, &node).await,
            false => std::future::pending().await,
        }
    };
    tokio::select! {
        r = skiff_agent::kubelet::run(client, opts) => r,
        r = server => r.map_err(|e| anyhow::anyhow!("streaming server: {e}")),
        r = proxy => r.map_err(|e| anyhow::anyhow!("service proxy: {e}")),
        r = renewal => {
            r?;
            exec_self()
        }
    }
}

/// Returns when certificates due at `renew_at` (Unix seconds) should be
/// renewed; the server renews them by starting again, which issues new
/// ones (the CA's life is ten years, theirs one): no yearly outage.
async fn until_renewal(renew_at: i64) {
    skiff_agent::join::wake_at(renew_at).await;
    tracing::info!("the server's certificates are due for renewal");
}

/// Starts this process again, same arguments, same pid: how a renewed
/// certificate is taken up (containers keep running and are adopted).
fn exec_self() -> Result<()> {
    use std::os::unix::process::CommandExt;
    tracing::info!("starting again with the renewed certificate");
    let err = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!("starting again: {err}"))
}

/// Threads for blocking work (see `main`).
const BLOCKING_THREADS: usize = 16;

fn main() -> Result<()> {
    // `skiff shim` (one per container, started by the agent) takes the
    // shortest path: no CLI parser, no async runtime, no huge pages.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        std::process::exit(skiff_agent::runtime::shim::main(&args[2..]));
    }
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work here is short (store reads, file reads). Tokio's
        // default of 512 threads let a burst of store reads start some 50,
        // each with an allocator heap of its own whose part-used pages stay
        // resident after it goes.
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            println!(
                "skiff {} (Kubernetes {})",
                env!("CARGO_PKG_VERSION"),
                skiff_apiserver::version::GIT_VERSION
            );
            Ok(())
        }
        Command::Agent(a) => {
            init_logging(&cli.log_format);
            if !a.simulate {
                return tokio::select! {
                    r = run_node(*a) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                };
            }
            // Joining with a token, the simulator is a node identity that
            // watches, and each simulated node one that writes for it.
            let client = component_client(&a.kubeconfig(&a.name_prefix).await?, "kubelet").await?;
            let opts = skiff_agent::simulate::Options {
                nodes: a.nodes,
                name_prefix: a.name_prefix.clone(),
                cpu: a.sim_cpu.clone(),
                memory: a.sim_memory.clone(),
                pods: a.sim_pods,
            };
            let clients = match a.joining() {
                Some((server, token)) => {
                    let mut each = std::collections::HashMap::new();
                    for name in skiff_agent::simulate::node_names(&opts) {
                        let dir = a.data_dir.join("agent").join("simulated").join(&name);
                        let kc = skiff_agent::join::kubeconfig(server, token, &name, &dir).await?;
                        each.insert(name, component_client(&kc, "kubelet").await?);
                    }
                    skiff_agent::simulate::Clients::PerNode(client, std::sync::Arc::new(each))
                }
                None => skiff_agent::simulate::Clients::Shared(client),
            };
            tokio::select! {
                r = skiff_agent::simulate::run(clients, opts) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        Command::Proxy(a) => {
            init_logging(&cli.log_format);
            proxy_cmd::run(a).await
        }
        Command::Up(a) => {
            init_logging(&cli.log_format);
            up_cmd::run(*a).await
        }
        Command::Lab(a) => {
            init_logging(&cli.log_format);
            lab_cmd::run(a).await
        }
        Command::Images(a) => {
            init_logging(&cli.log_format);
            images_cmd::run(a).await
        }
        Command::Scheduler(a) => {
            init_logging(&cli.log_format);
            let client = component_client(&a.kubeconfig, "kube-scheduler").await?;
            a.common.spawn(client, identity(None))?;
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::ControllerManager(a) => {
            init_logging(&cli.log_format);
            let client = component_client(&a.kubeconfig, "kube-controller-manager").await?;
            a.common.spawn(
                client,
                &a.kubeconfig,
                a.cluster_cidr,
                identity(None),
                std::path::Path::new("/var/lib/skiff"),
            )?;
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Server(a) => {
            init_logging(&cli.log_format);
            let running = start_server(*a).await?;
            eprintln!(
                "skiff server ready on https://{}; kubeconfig: {}",
                running.addr,
                running.kubeconfig.display()
            );
            let renew = until_renewal(running.renew_at);
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = renew => {
                    running.stop();
                    return exec_self();
                }
            }
            running.stop();
            Ok(())
        }
    }
}
