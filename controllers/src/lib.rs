//! skiff's controllers. Each is an ordinary API client (kube-rs): it watches,
//! compares desired and observed state, and acts only through the API.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod garbagecollector;
pub mod job;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod resources;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod volume;

use kube::Client;
use skiff_machinery::client::events::Recorder;

pub struct Config {
    /// Pod addresses; each node gets a /24 of it.
    pub cluster_cidr: String,
    /// How long a node may go without a heartbeat before it is Unknown (upstream: 40 s).
    pub node_monitor_grace_period: std::time::Duration,
    /// Finished pods kept before the oldest are deleted (upstream: 12500).
    pub terminated_pod_gc_threshold: usize,
    /// This process's name in the leader Lease and in its events.
    pub identity: String,
    /// Run the built-in service load balancer (k3s: `--disable servicelb`
    /// turns it off, for another load-balancer implementation).
    pub servicelb: bool,
    /// Where the local-path provisioner makes volumes (k3s:
    /// `--default-local-storage-path`); None: no provisioner, no
    /// `local-path` class (k3s: `--disable local-storage`).
    pub local_storage_path: Option<std::path::PathBuf>,
}

/// Runs every controller while this process holds the
/// `kube-controller-manager` Lease in kube-system, so two servers never both
/// act; returns only if a controller fails irrecoverably.
pub async fn run(client: Client, cfg: Config) -> anyhow::Result<()> {
    let election = skiff_machinery::client::leader::Election::new(
        client.clone(),
        "kube-system",
        "kube-controller-manager",
        &cfg.identity,
    );
    election.run(|| run_all(client.clone(), &cfg)).await
}

async fn run_all(client: Client, cfg: &Config) -> anyhow::Result<()> {
    let cidrs = nodeipam::PodCidrs::new(&cfg.cluster_cidr)?;
    let recorder = |controller: &str| Recorder::start(client.clone(), controller, &cfg.identity);
    tokio::select! {
        r = namespace::run(client.clone()) => r,
        r = garbagecollector::run(client.clone()) => r,
        r = serviceaccount::run(client.clone()) => r,
        r = nodeipam::run(client.clone(), cidrs, recorder("cidrAllocator")) => r,
        r = endpoints::run(client.clone()) => r,
        r = disruption::run(client.clone()) => r,
        r = podgc::run(client.clone(), cfg.terminated_pod_gc_threshold) => r,
        r = ttlafterfinished::run(client.clone()) => r,
        r = nodelifecycle::run(client.clone(), cfg.node_monitor_grace_period) => r,
        r = replicaset::run(client.clone(), recorder("replicaset-controller")) => r,
        r = deployment::run(client.clone(), recorder("deployment-controller")) => r,
        r = daemonset::run(client.clone(), recorder("daemonset-controller")) => r,
        r = statefulset::run(client.clone(), recorder("statefulset-controller")) => r,
        r = job::run(client.clone(), recorder("job-controller")) => r,
        r = cronjob::run(client.clone(), recorder("cronjob-controller")) => r,
        r = servicelb(client.clone(), cfg.servicelb) => r,
        // Boxed: every controller's future inline makes this one too big
        // for a worker thread's stack in debug builds.
        r = Box::pin(volume::run(
            client.clone(),
            volume::Options { local_path: cfg.local_storage_path.clone() },
            recorder("persistentvolume-binder-controller"),
        )) => r,
    }
}

async fn servicelb(client: Client, enabled: bool) -> anyhow::Result<()> {
    if enabled {
        servicelb::run(client).await
    } else {
        std::future::pending().await
    }
}
