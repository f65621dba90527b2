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
pub mod pacing;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod resources;
pub mod rootcacert;
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
    /// The cluster CA (PEM) published to every namespace as
    /// `kube-root-ca.crt` (upstream: `--root-ca-file`, else the CA of the
    /// controller manager's kubeconfig); None: not published.
    pub root_ca: Option<String>,
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
    use futures::FutureExt;
    let cidrs = nodeipam::PodCidrs::new(&cfg.cluster_cidr)?;
    let recorder = |controller: &str| Recorder::start(client.clone(), controller, &cfg.identity);
    // Each on the heap: all of them inline made one future too big for a
    // worker thread's stack in debug builds.
    let controllers = vec![
        namespace::run(client.clone()).boxed(),
        garbagecollector::run(client.clone()).boxed(),
        serviceaccount::run(client.clone()).boxed(),
        resourcequota::run(client.clone()).boxed(),
        nodeipam::run(client.clone(), cidrs, recorder("cidrAllocator")).boxed(),
        endpoints::run(client.clone()).boxed(),
        disruption::run(client.clone()).boxed(),
        podgc::run(client.clone(), cfg.terminated_pod_gc_threshold).boxed(),
        ttlafterfinished::run(client.clone()).boxed(),
        nodelifecycle::run(client.clone(), cfg.node_monitor_grace_period).boxed(),
        replicaset::run(client.clone(), recorder("replicaset-controller")).boxed(),
        deployment::run(client.clone(), recorder("deployment-controller")).boxed(),
        daemonset::run(client.clone(), recorder("daemonset-controller")).boxed(),
        statefulset::run(client.clone(), recorder("statefulset-controller")).boxed(),
        job::run(client.clone(), recorder("job-controller")).boxed(),
        cronjob::run(client.clone(), recorder("cronjob-controller")).boxed(),
        servicelb(client.clone(), cfg.servicelb).boxed(),
        root_ca_publisher(client.clone(), cfg.root_ca.clone()).boxed(),
        volume::run(
            client.clone(),
            volume::Options {
                local_path: cfg.local_storage_path.clone(),
            },
            recorder("persistentvolume-binder-controller"),
        )
        .boxed(),
    ];
    // Returns when the first of them does, as before.
    futures::future::select_all(controllers).await.0
}

async fn root_ca_publisher(client: Client, root_ca: Option<String>) -> anyhow::Result<()> {
    match root_ca {
        Some(ca) => rootcacert::run(client, ca).await,
        None => std::future::pending().await,
    }
}

async fn servicelb(client: Client, enabled: bool) -> anyhow::Result<()> {
    if enabled {
        servicelb::run(client).await
    } else {
        std::future::pending().await
    }
}
