//! The real node agent (skiff's kubelet): registers this machine as a Node,
//! keeps its Lease and status, and runs a [`worker::Worker`] per pod bound
//! to it, with real containers through the runtime. `Ctx` is what every
//! worker shares: the API client, the runtime, the image store, the pod
//! network and the node's settings.

pub mod atomicdir;
pub mod env;
pub mod hooks;
pub mod imagegc;
pub mod imagepull;
pub mod nodeinfo;
pub mod probes;
pub mod status;
pub mod tokens;
pub mod volumes;
pub mod worker;

use crate::images::registry::RegistryConfig;
use crate::images::{ImageStore, Puller};
use crate::network::{Cni, PodNetworkRef};
use crate::node::{self, NodeInfo, LEASE_RENEW_SECS};
use crate::runtime::bundle::{self, BundleInput, ImageDefaults};
use crate::runtime::container::ContainerMeta;
use crate::runtime::sandbox::{Dns, Sandbox};
use crate::runtime::shim::Started;
use crate::runtime::Runtime;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::informers;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a container start waits for the first list of Services before
/// it fails with CreateContainerConfigError (and is retried).
const SERVICES_WAIT: Duration = Duration::from_secs(10);

/// How the agent is set up (`skiff agent` flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub node_name: String,
    pub node_ip: Option<String>,
    pub data_dir: PathBuf,
    pub pod_log_dir: PathBuf,
    pub runtime: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cluster_cidr: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The node's resolver configuration (text), for dnsPolicy Default.
    pub host_resolv_conf: String,
    pub labels: BTreeMap<String, String>,
    pub reserved_cpu_millis: i64,
    pub reserved_memory: i64,
    /// Disk usage (percent) above which unused images are removed, and the
    /// usage to bring it down to (kubelet's 85 and 80).
    pub image_gc_high_threshold: u8,
    pub image_gc_low_threshold: u8,
    /// The port of the streaming server, reported in the node's status.
    pub kubelet_port: u16,
    /// How registries are reached (insecure ones, mirrors).
    pub registries: RegistryConfig,
}

/// An image ready to run: its id, layers and defaults.
pub struct ResolvedImage {
    pub id: String,
    pub defaults: ImageDefaults,
    pub user: Option<String>,
    pub layers: Vec<PathBuf>,
}

/// What all pod workers share.
pub struct Ctx {
    pub client: Client,
    pub runtime: Runtime,
    pub images: Arc<ImageStore>,
    pub pulls: imagepull::ImageManager,
    pub cni: Cni,
    pub node_name: String,
    pub host_ip: String,
    pub dns: Dns,
    pub recorder: Recorder,
    pub allocatable: BTreeMap<String, String>,
    pub tokens: Box<dyn tokens::TokenSource>,
    /// When each image (by id) last started a container, for image GC.
    pub image_last_used: std::sync::Mutex<HashMap<String, std::time::SystemTime>>,
}

impl Ctx {
    pub fn event(&self, pod: &Pod, type_: &str, reason: &str, note: String) {
        let action = match reason {
            "Killing" => "Killing",
            "Started" => "Started",
            "Created" => "Created",
            "Pulled" => "Pulled",
            "BackOff" => "BackOff",
            _ => "Sync",
        };
        self.recorder.record(pod, type_, reason, action, note);
    }

    /// The container's image, pulled if its pull policy says so.
    pub async fn image(
        &self,
        pod: &Pod,
        c: &Container,
    ) -> Result<ResolvedImage, imagepull::ImageFailure> {
        let img = self.pulls.ensure(self, pod, c).await?;
        if let Ok(mut used) = self.image_last_used.lock() {
            used.insert(img.id.clone(), std::time::SystemTime::now());
        }
        Ok(ResolvedImage {
            id: img.id,
            defaults: ImageDefaults {
                entrypoint: img.config.entrypoint,
                cmd: img.config.cmd,
                env: img.config.env,
                working_dir: img.config.working_dir,
            },
            user: img.config.user,
            layers: img.layers,
        })
    }

    /// The container's environment, reading the objects it refers to. The
    /// pod's and node's addresses come from here (`pod_ip`), not from the
    /// status the API may not show yet.
    pub async fn environment(
        &self,
        pod: &Pod,
        pod_ip: Option<&str>,
        c: &Container,
        image_env: &[String],
    ) -> Result<Vec<String>, String> {
        let pod = &self.with_addresses(pod, pod_ip);
        let ns = pod.namespace().unwrap_or_default();
        let (cms, secrets) = env::referenced(c);
        let mut sources = env::Sources {
            node_allocatable: self.allocatable.clone(),
            ..Default::default()
        };
        let cm_api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        for name in cms {
            if let Some(cm) = cm_api.get_opt(&name).await.map_err(|e| e.to_string())? {
                sources.config_maps.insert(name, cm);
            }
        }
        let secret_api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        for name in secrets {
            if let Some(s) = secret_api.get_opt(&name).await.map_err(|e| e.to_string())? {
                sources.secrets.insert(name, s);
            }
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let services = self.services().await?;
        if links {
            sources.services = services
                .state()
                .into_iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
                .map(|s| (*s).clone())
                .collect();
        }
        if !links || ns != "default" {
            let kubernetes = ObjectRef::new("kubernetes").within("default");
            if let Some(k) = services.get(&kubernetes) {
                sources.services.push((*k).clone());
            }
        }
        env::resolve(pod, c, image_env, &sources)
    }

    /// The cluster's Services, from the process's shared cache (the
    /// kubelet's service lister) once it has been filled: a container start
    /// costs no API call for its service variables.
    async fn services(&self) -> Result<Store<Service>, String> {
        tokio::time::timeout(SERVICES_WAIT, informers::cached::<Service>(&self.client))
            .await
            .map_err(|_| {
                // The kubelet's words for the same wait.
                "services have not yet been read at least once, cannot construct envvars"
                    .to_string()
            })?
            .map_err(|e| e.to_string())
    }

    /// `pod` with its and the node's addresses filled in, as the downward
    /// API must show them before the API's copy of the status has them.
    pub fn with_addresses(&self, pod: &Pod, pod_ip: Option<&str>) -> Pod {
        let mut pod = pod.clone();
        let status = pod.status.get_or_insert_with(Default::default);
        if let Some(ip) = pod_ip {
            status.pod_ip = Some(ip.to_string());
            status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: ip.to_string(),
            }]);
        }
        status.host_ip = Some(self.host_ip.clone());
        status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: self.host_ip.clone(),
        }]);
        pod
    }

    /// Mounts the container's root filesystem, writes its bundle and starts
    /// it (in `pid_namespace` when given); the error is the message its
    /// status shows.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_and_start(
        &self,
        pod: &Pod,
        c: &Container,
        meta: &ContainerMeta,
        image: &ResolvedImage,
        env: Vec<String>,
        mounts: Vec<bundle::BindMount>,
        sandbox: &Sandbox,
        pid_namespace: Option<std::path::PathBuf>,
    ) -> Result<Started, String> {
        let runtime = self.runtime.clone();
        let (m, layers) = (meta.clone(), image.layers.clone());
        tokio::task::spawn_blocking(move || runtime.prepare(&m, &layers))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let rootfs = self.runtime.rootfs(&meta.id);
        let user = crate::runtime::user::resolve(
            &rootfs,
            image.user.as_deref(),
            c,
            pod.spec.as_ref().and_then(|s| s.security_context.as_ref()),
        )?;
        let hostname = std::fs::read_to_string(sandbox.hostname_file())
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| pod.name_any());
        let input = BundleInput {
            pod,
            container: c,
            image: &image.defaults,
            env,
            user,
            rootfs,
            sandbox,
            hostname,
            termination_log: self.runtime.termination_log(&meta.id),
            mounts,
            cgroup: self.runtime.cgroup(meta),
            pid_namespace,
        };
        let mut config = bundle::config(&input);
        crate::runtime::attach::annotate(&mut config, c);
        self.event(
            pod,
            "Normal",
            "Created",
            format!("Created container: {}", c.name),
        );
        self.runtime
            .start(meta, &config)
            .await
            .map_err(|e| e.to_string())
    }

    fn network_ref(pod: &Pod) -> PodNetworkRef {
        let uid = pod.uid().unwrap_or_default();
        let ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| crate::network::PortMapping {
                host_port: p.host_port.unwrap_or_default() as u16,
                container_port: p.container_port as u16,
                protocol: p
                    .protocol
                    .clone()
                    .unwrap_or_else(|| "TCP".into())
                    .to_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
            .collect();
        PodNetworkRef {
            container_id: uid.clone(),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            uid,
            port_mappings: ports,
        }
    }

    /// Joins the sandbox to the pod network; returns the pod's IP.
    pub async fn attach_network(&self, pod: &Pod, sandbox: &Sandbox) -> Result<String, String> {
        let att = self
            .cni
            .add(&Self::network_ref(pod), &sandbox.namespace("net"))
            .await
            .map_err(|e| e.to_string())?;
        att.ips
            .first()
            .map(|ip| ip.to_string())
            .ok_or_else(|| "the network plugin gave the pod no address".to_string())
    }

    pub async fn detach_network(&self, pod: &Pod, sandbox: &Sandbox) {
        if let Err(e) = self
            .cni
            .del(&Self::network_ref(pod), &sandbox.namespace("net"))
            .await
        {
            tracing::warn!(pod = %pod.name_any(), error = %e, "detaching the pod network");
        }
    }

    /// Writes the pod's status; false when it did not land.
    pub async fn write_status(&self, pod: &Pod, status: &Value) -> bool {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(pod = %pod.name_any(), error = %e, "status not written");
                false
            }
        }
    }

    /// The last step of a graceful deletion: the containers are gone, so the
    /// object may go (grace 0, only this pod by uid).
    pub async fn finish_deletion(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&pod.name_any(), &dp).await {
            tracing::debug!(pod = %pod.name_any(), error = %e, "final delete");
        }
    }
}

/// Runs the agent until the process ends.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let dirs = crate::runtime::Dirs::new(&opts.data_dir, opts.pod_log_dir.clone());
    let runtime = Runtime::new(dirs, opts.runtime.clone())?;
    let images = Arc::new(ImageStore::open(
        &opts.data_dir.join("agent").join("content"),
    )?);
    // Air-gapped nodes: tarballs dropped here are imported now and as they come.
    let import_dir = opts.data_dir.join("agent").join("images");
    let mut auto = crate::images::autoimport::AutoImport::new(import_dir);
    auto.pass(&images).await;
    tokio::spawn(auto.run(images.clone()));
    let puller = Puller::new((*images).clone(), opts.registries.clone())?;
    let info = nodeinfo::detect(&opts, &runtime).await?;
    let node = node::register_with_retries(&client, &info).await?;
    tracing::info!(node = %info.name, ip = %info.internal_ip, "node registered");
    let cni = Cni::new(crate::network::CniConfig {
        conf_dir: opts.cni_conf_dir.clone(),
        bin_dirs: opts.cni_bin_dirs.clone(),
        cache_dir: opts.data_dir.join("agent").join("cni-cache"),
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        runtime,
        images: images.clone(),
        pulls: imagepull::ImageManager::new(puller),
        cni,
        node_name: info.name.clone(),
        host_ip: info.internal_ip.clone(),
        dns: Dns {
            cluster_dns: opts.cluster_dns.clone(),
            cluster_domain: opts.cluster_domain.clone(),
            host_resolv_conf: opts.host_resolv_conf.clone(),
        },
        recorder: Recorder::start(client.clone(), "kubelet", &info.name),
        allocatable: info.allocatable(),
        tokens: Box::new(tokens::TokenRequest::new(client.clone())),
        image_last_used: Default::default(),
    });
    tokio::spawn(imagegc::run(
        ctx.clone(),
        opts.image_gc_high_threshold,
        opts.image_gc_low_threshold,
    ));
    tokio::spawn(heartbeat(
        client.clone(),
        info.clone(),
        node.metadata.uid.clone(),
        images,
        opts.data_dir.clone(),
    ));
    tokio::spawn(network_sync(client.clone(), opts.clone()));
    run_pods(ctx).await
}

/// The Lease every 10 s; the node's status (with its images) every minute,
/// or at once when a pressure condition changes.
async fn heartbeat(
    client: Client,
    mut info: NodeInfo,
    uid: Option<String>,
    images: Arc<ImageStore>,
    data_dir: PathBuf,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(LEASE_RENEW_SECS));
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = node::renew_lease(&client, &info.name, uid.as_deref()).await {
            tracing::warn!(error = %e, "lease not renewed");
        }
        let dir = data_dir.clone();
        let pressure = tokio::task::spawn_blocking(move || nodeinfo::pressure(&dir))
            .await
            .unwrap_or_default();
        if round.is_multiple_of(6) || pressure != info.pressure {
            info.pressure = pressure;
            let store = images.clone();
            if let Ok(Ok(list)) = tokio::task::spawn_blocking(move || store.list()).await {
                info.images = list.into_iter().map(|i| (i.names, i.size)).collect();
            }
            if let Err(e) = node::report_status(&client, &info).await {
                tracing::warn!(error = %e, "node status not written");
            }
        }
        round += 1;
    }
}

/// Keeps the default CNI config (from this node's podCIDR) and the routes
/// to other nodes' pod ranges current as Nodes change.
async fn network_sync(client: Client, opts: Options) {
    let nodes: Api<Node> = Api::all(client);
    let routes = crate::network::routes::NodeRoutes::new();
    let mut cidrs: HashMap<String, (String, String)> = HashMap::new();
    let mut s = watcher(nodes, watcher::Config::default()).boxed();
    while let Some(ev) = s.next().await {
        let changed = match ev {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                let name = n.name_any();
                let cidr = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .unwrap_or_default();
                let ip = n
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_default();
                cidrs.insert(name, (cidr, ip)) != cidrs.get(&n.name_any()).cloned()
            }
            Ok(watcher::Event::Delete(n)) => cidrs.remove(&n.name_any()).is_some(),
            Ok(watcher::Event::InitDone) => true,
            _ => false,
        };
        if !changed {
            continue;
        }
        let Some((own_cidr, _)) = cidrs.get(&opts.node_name).filter(|(c, _)| !c.is_empty()) else {
            continue;
        };
        if let Err(e) = crate::network::default_conf::ensure(
            &opts.cni_conf_dir,
            own_cidr,
            &opts.data_dir.join("agent"),
        )
        .await
        {
            tracing::warn!(error = %e, "default CNI config not written");
        }
        let peers: Vec<(String, String)> = cidrs
            .iter()
            .filter(|(name, (c, ip))| **name != opts.node_name && !c.is_empty() && !ip.is_empty())
            .map(|(_, (c, ip))| (c.clone(), ip.clone()))
            .collect();
        if let Err(e) = routes.sync(own_cidr, &opts.cluster_cidr, &peers).await {
            tracing::warn!(error = %e, "node routes not synced");
        }
    }
}

/// Watches this node's pods and hands each to its worker.
async fn run_pods(ctx: Arc<Ctx>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    // The kubelet never reads managedFields; they are half of a pod's size.
    let mut stream = watcher(pods, cfg)
        .modify(skiff_machinery::client::compact::for_cache)
        .boxed();
    // Each worker and its channel share one copy of the pod.
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listed: HashSet<String> = HashSet::new();
    let mut initial = true;
    loop {
        tokio::select! {
            Some(uid) = done_rx.recv() => { workers.remove(&uid); }
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        let uid = p.uid().unwrap_or_default();
                        let p = Arc::new(p);
                        if initial {
                            listed.insert(uid.clone());
                        }
                        match workers.get(&uid) {
                            Some(tx) => { let _ = tx.send(Some(p)); }
                            None => {
                                let (tx, rx) = watch::channel(Some(p.clone()));
                                workers.insert(uid.clone(), tx);
                                let w = worker::Worker::new(ctx.clone(), p);
                                let done = done_tx.clone();
                                tokio::spawn(async move {
                                    w.run(rx).await;
                                    let _ = done.send(uid);
                                });
                            }
                        }
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        if let Some(tx) = workers.get(&p.uid().unwrap_or_default()) {
                            let _ = tx.send(None);
                        }
                    }
                    Ok(watcher::Event::Init) => { listed.clear(); initial = true; }
                    Ok(watcher::Event::InitDone) => {
                        if initial {
                            initial = false;
                            remove_orphans(&ctx, &listed).await;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "pod watch"),
                }
            }
        }
    }
}

/// Containers and sandboxes of pods the API no longer has (deleted while
/// no agent ran) are stopped and removed.
async fn remove_orphans(ctx: &Arc<Ctx>, known: &HashSet<String>) {
    for meta in ctx.runtime.list() {
        if !known.contains(&meta.pod_uid) {
            tracing::info!(pod = %meta.pod_name, container = %meta.name, "removing the container of a pod that is gone");
            let _ = ctx.runtime.kill(&meta.id, "SIGKILL").await;
            let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(&meta.id)).await;
            let _ = ctx.runtime.remove(&meta.id).await;
        }
    }
    for e in std::fs::read_dir(&ctx.runtime.dirs.pods)
        .into_iter()
        .flatten()
        .flatten()
    {
        let uid = e.file_name().to_string_lossy().into_owned();
        if known.contains(&uid) {
            continue;
        }
        let sandbox = Sandbox::at(e.path());
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                uid: Some(uid.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        ctx.detach_network(&pod, &sandbox).await;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = sandbox.destroy();
            crate::runtime::cgroups::remove_pod(&uid);
        })
        .await;
    }
}
