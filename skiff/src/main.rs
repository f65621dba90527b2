//! skiff: a complete, small Kubernetes in one binary.

use anyhow::Result;

/// mimalloc instead of glibc's malloc: the server allocates and frees many
/// small JSON values per request, where glibc spends its time consolidating
/// and fragments memory under many threads (cluster benchmark: 2.0 instead
/// of 2.8 GB, and more pods running, at the same point of the run).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc v3's option numbering, the
/// version the crate builds): how long freed memory is kept before it goes
/// back to the OS. The default (10 ms, and ten times that for arenas) kept
/// about 30 MB more resident with 10,000 pods stored; 0 returns it at once,
/// at no throughput cost measured.
#[cfg(feature = "mimalloc")]
fn return_freed_memory_at_once() {
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    }
    // SAFETY: sets a plain integer option; mimalloc reads it on each purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

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
    /// Run the control plane: the API server, the scheduler and the controllers.
    Server(Box<ServerArgs>),
    /// Run the scheduler alone, against any API server.
    Scheduler(SchedulerArgs),
    /// Run the controllers alone (garbage collector, namespaces, nodes,
    /// endpoints, workloads, …), against any API server.
    ControllerManager(ControllerManagerArgs),
    /// Run a node agent. Today only simulated nodes (`--simulate`).
    Agent(AgentArgs),
    /// Print the skiff version and the Kubernetes API version it implements.
    Version,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
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
}

impl ControllerFlags {
    /// Starts the controllers in the background (their metrics too, when
    /// the address is free).
    fn spawn(&self, client: kube::Client, cluster_cidr: String, identity: String) -> Result<()> {
        if !self.controller_metrics_address.is_empty() {
            let addr: std::net::SocketAddr = self.controller_metrics_address.parse()?;
            tokio::spawn(async move {
                if let Err(e) = skiff_controllers::metrics::serve(addr).await {
                    tracing::warn!(%addr, error = %e, "controller metrics not served");
                }
            });
        }
        let cfg = skiff_controllers::Config {
            cluster_cidr,
            node_monitor_grace_period: self.node_monitor_grace_period,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
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
    /// Shared secret; also accepted as an admin bearer token.
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// Range Service ClusterIPs come from (k3s's default).
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Range pod addresses come from (each node gets a /24).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
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

/// A kube client from a kubeconfig file.
async fn component_client(path: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    #[cfg(feature = "mimalloc")]
    return_freed_memory_at_once();
    let cli = Cli::parse();
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
                anyhow::bail!("only simulated nodes are available yet: pass --simulate (the real node agent is issue 6)");
            }
            let client = component_client(&a.kubeconfig).await?;
            let opts = skiff_agent::simulate::Options {
                nodes: a.nodes,
                name_prefix: a.name_prefix,
                cpu: a.sim_cpu,
                memory: a.sim_memory,
                pods: a.sim_pods,
            };
            tokio::select! {
                r = skiff_agent::simulate::run(client, opts) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        Command::Scheduler(a) => {
            init_logging(&cli.log_format);
            let client = component_client(&a.kubeconfig).await?;
            a.common.spawn(client, identity(None))?;
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::ControllerManager(a) => {
            init_logging(&cli.log_format);
            let client = component_client(&a.kubeconfig).await?;
            a.common.spawn(client, a.cluster_cidr, identity(None))?;
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Server(a) => {
            init_logging(&cli.log_format);
            let server_identity = identity(Some(&a.data_dir));
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
            };
            let cluster_cidr = cfg.cluster_cidr.clone();
            let running = skiff_apiserver::server::start(cfg).await?;
            if !a.disable_scheduler {
                let kubeconfig =
                    running.component_kubeconfig("scheduler", "system:kube-scheduler", &[])?;
                a.scheduler.spawn(
                    component_client(&kubeconfig).await?,
                    server_identity.clone(),
                )?;
            }
            if !a.disable_controller_manager {
                let kubeconfig = running.component_kubeconfig(
                    "controller",
                    "system:kube-controller-manager",
                    &[],
                )?;
                a.controllers.spawn(
                    component_client(&kubeconfig).await?,
                    cluster_cidr,
                    server_identity,
                )?;
            }
            eprintln!(
                "skiff server ready on https://{}; kubeconfig: {}",
                running.addr,
                running.kubeconfig.display()
            );
            tokio::signal::ctrl_c().await?;
            running.stop();
            Ok(())
        }
    }
}
